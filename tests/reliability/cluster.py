"""The service as real OS processes, so that faults are real: SIGKILL, SIGSTOP, restarts."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition

from events.commands import SkuCommands
from services.adapters.settings import Settings
from services.entrypoints.bootstrap import build_allocation, build_intake, build_read_models
from tests.harness import environment

CLI = str(Path(sys.executable).parent / "fulfillment")


class Process:
    """One `fulfillment run` process of some stages."""

    def __init__(
        self, name: str, settings: Settings, stages: Sequence[str], logs: Path, **env: str
    ) -> None:
        self.name = name
        self.stages = list(stages)
        self.env = environment(settings, **env)
        self.log_path = logs / f"{name}.log"
        self.popen: subprocess.Popen[bytes] | None = None
        self.kills = 0

    def start(self, **env: str) -> Process:
        command = [CLI, "run"]
        for stage in self.stages:
            command += ["--stage", stage]
        log = self.log_path.open("ab")
        self.popen = subprocess.Popen(
            command, env={**self.env, **env}, stdout=log, stderr=subprocess.STDOUT
        )
        return self

    @property
    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def kill9(self) -> None:
        if self.alive:
            assert self.popen is not None
            self.popen.send_signal(signal.SIGKILL)
            self.popen.wait(timeout=30)
            self.kills += 1

    def pause(self) -> None:
        assert self.popen is not None
        self.popen.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.popen is not None
        self.popen.send_signal(signal.SIGCONT)

    def stop(self) -> int | None:
        """SIGTERM, as an orchestrator would; returns the exit code."""
        if self.popen is None:
            return None
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        return self.popen.returncode

    def died_by_itself(self) -> bool:
        """Exited with SIGKILL without our asking: a crash point fired."""
        return self.popen is not None and self.popen.poll() == -signal.SIGKILL

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def leads(self, role: str) -> bool:
        """Whether this process publishes `role` now, as its /metrics says (METRICS_PORT)."""
        port = self.env.get("METRICS_PORT")
        assert port, f"{self.name} has no METRICS_PORT"
        if not self.alive:
            return False
        try:
            text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
        except httpx.HTTPError:
            return False
        return f'fulfillment_leading{{role="{role}"}} 1.0' in text


async def _last_positions(settings: Settings) -> tuple[dict[TopicPartition, int], dict[int, int]]:
    """End offsets of the input topics; the last position on each sku-commands partition."""
    consumer = AIOKafkaConsumer(**settings.kafka_client_options(), enable_auto_commit=False)
    await consumer.start()
    try:
        topics = settings.topics
        await consumer._client.force_metadata_update()
        inputs = [
            TopicPartition(topic, p)
            for topic in topics.inputs()
            for p in consumer.partitions_for_topic(topic) or ()
        ]
        commands = [
            TopicPartition(topics.sku_commands, p)
            for p in consumer.partitions_for_topic(topics.sku_commands) or ()
        ]
        ends = await consumer.end_offsets(inputs + commands)
        last: dict[int, int] = {}
        readable = [tp for tp in commands if ends[tp] > 0]
        if readable:
            consumer.assign(readable)
            for tp in readable:
                consumer.seek(tp, max(0, ends[tp] - 5))
            async with asyncio.timeout(60):  # fail, never hang, if a fetch gets stuck
                while not all([await consumer.position(tp) >= ends[tp] for tp in readable]):
                    batch = await consumer.getmany(timeout_ms=1000)
                    for tp, records in batch.items():
                        for record in records:
                            position = SkuCommands.model_validate_json(record.value).position
                            last[tp.partition] = max(last.get(tp.partition, 0), position)
        return {tp: ends[tp] for tp in inputs}, last
    finally:
        await consumer.stop()


def _behind(settings: Settings, ends: dict[TopicPartition, int], last: dict[int, int]) -> list[str]:
    intake = build_intake(settings)
    allocation = build_allocation(settings)
    models = build_read_models(settings, allocation)
    behind = []
    for tp, end in ends.items():
        done = intake.process_recorder.max_tracking_id(f"{tp.topic}-{tp.partition}")
        if end and (done is None or done < end - 1):
            behind.append(f"intake {tp.topic}-{tp.partition}: {done} < {end - 1}")
    head = intake.recorder.max_notification_id() or 0
    relayed = intake.process_recorder.max_tracking_id(f"relay:{settings.topics.sku_commands}")
    if (relayed or 0) < head:
        behind.append(f"relay sku-commands: {relayed} < {head}")
    for partition, position in last.items():
        name = f"{settings.topics.sku_commands}-{partition}"
        done = allocation.process_recorder.max_tracking_id(name)
        if (done or 0) < position:
            behind.append(f"allocation {name}: {done} < {position}")
    allocation_head = allocation.recorder.max_notification_id() or 0
    decided = allocation.process_recorder.max_tracking_id(f"relay:{settings.topics.decisions}")
    if (decided or 0) < allocation_head:
        behind.append(f"relay decisions: {decided} < {allocation_head}")
    if models.position() < allocation_head:
        behind.append(f"read models: {models.position()} < {allocation_head}")
    models.store.close()
    return behind


async def drained(settings: Settings, timeout: float = 240) -> None:
    """Waits until every stage has applied everything published so far."""
    deadline = time.monotonic() + timeout
    behind: list[str] = ["not checked yet"]
    while time.monotonic() < deadline:
        ends, last = await _last_positions(settings)
        behind = await asyncio.to_thread(_behind, settings, ends, last)
        if not behind:
            # Once more: the relays may have published more commands meanwhile.
            ends, last = await _last_positions(settings)
            behind = await asyncio.to_thread(_behind, settings, ends, last)
            if not behind:
                return
        await asyncio.sleep(1.0)
    raise AssertionError(f"not drained after {timeout} s: {behind[:8]}")
