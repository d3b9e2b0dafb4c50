"""The runner: a cleanup that fails does not keep the others from running, and the stage table
opens what each stage needs. Kafka is stubbed out (topics, producer); the stores are SQLite."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import prometheus_client
import pytest

from services.adapters.settings import Settings
from services.entrypoints import runner
from services.entrypoints.runner import STAGE_TABLE, STAGES, Service, expand
from services.entrypoints.supervisor import PROCESSES

pytestmark = pytest.mark.timeout(60)


class FakeProducer:
    """Starts; fails to stop, as a producer whose broker went away may."""

    def __init__(self) -> None:
        self.stop_called = False

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        self.stop_called = True
        raise ConnectionError("broker went away")

    async def send(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("nothing to publish in an empty log")


class FakeMetricsServer:
    def __init__(self) -> None:
        self.shut_down = self.closed = False

    def shutdown(self) -> None:
        self.shut_down = True

    def server_close(self) -> None:
        self.closed = True


class Recorded:
    """Stands in for the runner's logger: keeps (level, event, fields)."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict[str, Any]]] = []

    def __getattr__(self, level: str) -> Any:
        def write(event: str, **fields: Any) -> None:
            self.lines.append((level, event, fields))

        return write


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def test_a_failing_cleanup_does_not_skip_the_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(
        database_url=f"sqlite:///{tmp_path}/fulfillment",
        http_host="127.0.0.1",
        metrics_port=free_port(),
        sku_commands_partitions=3,
    )

    async def topics(_: Settings) -> dict[str, int]:
        return {settings.topics.sku_commands: 3}

    producer, metrics, log = FakeProducer(), FakeMetricsServer(), Recorded()
    monkeypatch.setattr(runner, "ensure_topics", topics)
    monkeypatch.setattr(runner, "make_producer", lambda _: producer)
    monkeypatch.setattr(prometheus_client, "start_http_server", lambda *_, **__: (metrics, None))
    monkeypatch.setattr(runner, "log", log)

    service = Service(settings, ["relay"])  # cleanups: the metrics server, then the producer
    running = asyncio.create_task(service.run())
    await asyncio.wait_for(service.started.wait(), timeout=30)
    assert service.intake is not None
    assert service.allocation is not None
    assert service.read_models is None  # the relay needs no read models
    service.stop()
    await asyncio.wait_for(running, timeout=30)  # a cleanup's error ends no clean stop

    assert producer.stop_called
    assert metrics.shut_down
    assert metrics.closed
    failures = [fields for level, event, fields in log.lines if event == "cleanup failed"]
    gone = repr(ConnectionError("broker went away"))
    assert failures == [  # each relay's producer, the last started first
        {"cleanup": f"relay producer ({settings.topics.decisions})", "error": gone},
        {"cleanup": f"relay producer ({settings.topics.sku_commands})", "error": gone},
    ]
    assert log.lines[-1][1] == "stopped"


def test_the_table_names_every_stage_once_in_start_order() -> None:
    assert STAGES == (
        "intake",
        "intake-relay",
        "allocation",
        "allocation-relay",
        "projections",
        "api",
        "clock",
    )
    assert STAGE_TABLE["clock"].needs == frozenset()  # it only publishes ticks
    assert set(STAGE_TABLE) == set(STAGES)
    assert STAGE_TABLE["intake-relay"].needs == {"intake"}
    assert STAGE_TABLE["allocation-relay"].needs == {"allocation"}
    assert all("allocation" in STAGE_TABLE[s].needs for s in ("projections", "api"))


def test_relay_still_names_both_relays() -> None:
    assert expand(["relay"]) == ["intake-relay", "allocation-relay"]
    assert expand(["api", "relay", "intake"]) == [
        "intake",
        "intake-relay",
        "allocation-relay",
        "api",
    ]


def test_the_supervisor_runs_every_stage_once() -> None:
    stages = [stage for group in PROCESSES.values() for stage in group]
    assert sorted(stages) == sorted(STAGES)
    # A log's writer and its relay share a process: the commit wakes the relay directly.
    for writer, relay in (("intake", "intake-relay"), ("allocation", "allocation-relay")):
        assert any(writer in group and relay in group for group in PROCESSES.values())
