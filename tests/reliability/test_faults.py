"""Faults of the parts around the service: each stage alone, the broker, the database,
rebalances and zombies, and inputs delivered all over again."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from services.adapters.settings import Settings
from services.entrypoints.bootstrap import build_allocation, build_intake
from services.kernel.dead_letters import RefusedInput
from services.operations.replay import events_of
from tests.harness import drained, free_port
from tests.infrastructure import REPO
from tests.reliability.checker import read_all
from tests.reliability.cluster import Process, progressed
from tests.reliability.scenario import (
    ORDERS,
    RESULTS,
    moments,
    publish_slowly,
    run_scenario,
    scenario_settings,
)
from tests.reliability.workload import workload

pytestmark = pytest.mark.kafka

KAFKA = ["bash", str(REPO / "deploy/kafka/kafka.sh")]
POSTGRES = ["bash", str(REPO / "deploy/postgres/postgres.sh")]


@pytest.fixture
def postgres_url(postgres_base_url: str) -> str:
    """Stages in separate processes share one store: PostgreSQL, a schema per test."""
    separator = "&" if "?" in postgres_base_url else "?"
    return f"{postgres_base_url}{separator}schema=r_{uuid.uuid4().hex[:12]}"


def _ours(script: list[str]) -> None:
    if subprocess.run([*script, "status"], capture_output=True, check=False).returncode != 0:
        pytest.fail(
            f"this scenario restarts the server that {script[-1]} runs, and it is not running "
            "here (an external server was given?): run it where the deploy/ scripts own it"
        )


def _split(settings: Settings, logs: Path) -> dict[str, Process]:
    return {
        stage: Process(stage, settings, [stage], logs)
        for stage in ("intake", "allocation", "relay", "projections")
    }


async def until_assigned(processes: list[Process], settings: Settings) -> None:
    """Waits until each process has been given partitions: the rebalance took effect."""
    for _ in range(int(settings.kafka_session_timeout_ms / 1000 * 10) + 300):
        if all("partitions assigned" in process.log() for process in processes):
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"not every one of {[p.name for p in processes]} got partitions")


async def _stop_all(processes: dict[str, Process]) -> None:
    """SIGTERM to each; those we did not kill last must stop cleanly."""
    codes = {name: process.stop() for name, process in processes.items()}
    unclean = {
        name: code
        for name, code in codes.items()
        if code not in (0, None) and not (processes[name].kills and code == -9)
    }
    assert not unclean, unclean


async def test_kill_9_of_each_stage_alone(
    kafka_bootstrap: str, postgres_url: str, tmp_path: Path
) -> None:
    settings = scenario_settings(kafka_bootstrap, postgres_url)
    stages = _split(settings, tmp_path)

    async def inject(publishing: asyncio.Task[None]) -> int:
        for process in stages.values():
            process.start()
        faults, seen = 0, 0
        order = ["intake", "allocation", "relay", "projections"] * 2
        for stage, wait in zip(order, moments(11, len(order), 0.5, 2.0), strict=True):
            seen = await progressed(settings, seen, unless=publishing)
            await asyncio.sleep(wait)
            stages[stage].kill9()
            faults += 1
            await asyncio.sleep(0.5)
            stages[stage].start()
        return faults

    async def finish() -> None:
        return None

    try:
        report = await run_scenario(
            "kill -9 of each stage alone", settings, tmp_path, inject, finish, seed=202
        )
    finally:
        await _stop_all(stages)
    assert report.faults == 8
    assert report.ok, "\n".join(report.details)


async def test_kill_9_of_the_leading_publisher_with_a_standby_ready(
    kafka_bootstrap: str, postgres_url: str, tmp_path: Path
) -> None:
    """Two relay and two projections processes: each time, the one that publishes dies."""
    settings = scenario_settings(kafka_bootstrap, postgres_url)
    roles = {"relay": f"relay:{settings.topics.sku_commands}", "projections": "projections:publish"}
    pairs = {
        stage: [
            Process(f"{stage}-{n}", settings, [stage], tmp_path, METRICS_PORT=str(free_port()))
            for n in (1, 2)
        ]
        for stage in roles
    }
    processes = {
        "intake": Process("intake", settings, ["intake"], tmp_path),
        "allocation": Process("allocation", settings, ["allocation"], tmp_path),
        **{process.name: process for pair in pairs.values() for process in pair},
    }

    async def leader(stage: str) -> Process:
        for _ in range(100):
            leading = [p for p in pairs[stage] if await asyncio.to_thread(p.leads, roles[stage])]
            if leading:
                assert len(leading) == 1, f"two {stage} leaders: {[p.name for p in leading]}"
                return leading[0]
            await asyncio.sleep(0.2)
        raise AssertionError(f"no {stage} process took the lead within 20 s")

    async def inject(publishing: asyncio.Task[None]) -> int:
        for process in processes.values():
            process.start()
        faults, seen = 0, 0
        order = ["relay", "projections"] * 3
        for stage, wait in zip(order, moments(23, len(order), 0.5, 2.0), strict=True):
            seen = await progressed(settings, seen, unless=publishing)
            await asyncio.sleep(wait)
            killed = await leader(stage)
            killed.kill9()
            faults += 1
            await asyncio.sleep(0.5)
            killed.start()
        return faults

    async def finish() -> None:
        return None

    try:
        report = await run_scenario(
            "kill -9 of the leading relay or projections process, a standby ready",
            settings,
            tmp_path,
            inject,
            finish,
            seed=404,
        )
    finally:
        await _stop_all(processes)
    assert report.faults == 6
    assert report.ok, "\n".join(report.details)
    for pair in pairs.values():  # each of a pair led at some point: the standby took over
        assert all("leading: this process publishes" in p.log() for p in pair), [
            p.name for p in pair
        ]


@pytest.mark.broker_restart
async def test_broker_killed_and_restarted_then_restarted_cleanly(
    kafka_bootstrap: str, database_url: str, tmp_path: Path
) -> None:
    _ours(KAFKA)
    settings = scenario_settings(kafka_bootstrap, database_url)
    service = Process(
        "service", settings, ["intake", "allocation", "relay", "projections"], tmp_path
    )
    pid_file = Path(os.environ.get("KAFKA_CACHE_DIR", REPO / ".cache/kafka")) / "kafka.pid"

    async def inject(publishing: asyncio.Task[None]) -> int:
        service.start()
        seen = await progressed(settings, 0, unless=publishing)
        pid = int(pid_file.read_text().strip())
        os.kill(pid, 9)  # kill -9 of the broker
        await asyncio.sleep(2)  # the outage
        await asyncio.to_thread(subprocess.run, [*KAFKA, "start"], check=True)
        await progressed(settings, seen, unless=publishing)
        await asyncio.to_thread(subprocess.run, [*KAFKA, "stop"], check=True)  # clean
        await asyncio.sleep(1)  # the outage
        await asyncio.to_thread(subprocess.run, [*KAFKA, "start"], check=True)
        return 2

    async def finish() -> None:
        return None

    try:
        report = await run_scenario(
            "kill -9 and clean restart of the broker", settings, tmp_path, inject, finish, seed=303
        )
    finally:
        code = service.stop()
        # Whatever happened, leave a broker running for the tests after this one.
        await asyncio.to_thread(subprocess.run, [*KAFKA, "start"], check=False)
    assert code == 0, service.log()[-3000:]
    assert report.ok, "\n".join(report.details)


async def test_postgres_stopped_immediately_and_restarted(
    kafka_bootstrap: str, postgres_url: str, tmp_path: Path
) -> None:
    _ours(POSTGRES)
    settings = scenario_settings(kafka_bootstrap, postgres_url)
    service = Process(
        "service", settings, ["intake", "allocation", "relay", "projections"], tmp_path
    )

    async def inject(publishing: asyncio.Task[None]) -> int:
        service.start()
        faults, seen = 0, 0
        for wait in moments(17, 2, 0.5, 2.0):
            seen = await progressed(settings, seen, unless=publishing)
            await asyncio.sleep(wait)
            await asyncio.to_thread(subprocess.run, [*POSTGRES, "stop", "immediate"], check=True)
            await asyncio.sleep(2)  # the outage
            await asyncio.to_thread(
                subprocess.run, [*POSTGRES, "start"], check=True, capture_output=True
            )
            faults += 1
        return faults

    async def finish() -> None:
        return None

    try:
        report = await run_scenario(
            "PostgreSQL stopped -m immediate and restarted",
            settings,
            tmp_path,
            inject,
            finish,
            seed=404,
        )
    finally:
        code = service.stop()
    assert code == 0, service.log()[-3000:]
    assert report.ok, "\n".join(report.details)


async def test_rebalance_storm_and_a_paused_zombie_apply_nothing_twice(
    kafka_bootstrap: str, postgres_url: str, tmp_path: Path
) -> None:
    settings = scenario_settings(kafka_bootstrap, postgres_url)
    rest = Process(
        "intake-relay-projections", settings, ["intake", "relay", "projections"], tmp_path
    )
    instances = [Process(f"allocation-{n}", settings, ["allocation"], tmp_path) for n in range(3)]

    async def inject(publishing: asyncio.Task[None]) -> int:
        rest.start()
        instances[0].start()  # 1 instance
        seen = await progressed(settings, 0, unless=publishing)
        instances[1].start()
        instances[2].start()  # 3 instances
        await until_assigned(instances, settings)
        seen = await progressed(settings, seen, unless=publishing)
        # A zombie: paused past its session timeout, its partitions move; then it wakes up
        # with a batch in hand, and must not apply it.
        instances[2].pause()
        await asyncio.sleep(settings.kafka_session_timeout_ms / 1000 + 4)
        instances[2].resume()
        seen = await progressed(settings, seen, unless=publishing)
        instances[2].stop()  # 2 instances
        await progressed(settings, seen, unless=publishing)
        instances[1].kill9()  # 1 instance
        return 5

    async def finish() -> None:
        return None

    try:
        report = await run_scenario(
            "rebalance storm 1-3-2-1 with a zombie", settings, tmp_path, inject, finish, seed=505
        )
    finally:
        await _stop_all({p.name: p for p in [rest, *instances]})
    assert report.ok, "\n".join(report.details)


async def test_inputs_delivered_again_and_offsets_reset_have_no_new_effect(
    kafka_bootstrap: str, database_url: str, tmp_path: Path
) -> None:
    settings = scenario_settings(kafka_bootstrap, database_url)
    stages = ["intake", "allocation", "relay", "projections"]
    service = Process("service", settings, stages, tmp_path)
    work = workload(606, orders=min(ORDERS, 500))
    service.start()
    await publish_slowly(settings, work, seconds=5)
    await drained(settings)
    service.stop()
    intake, allocation = build_intake(settings), build_allocation(settings)
    before = (
        intake.recorder.max_notification_id() or 0,
        allocation.recorder.max_notification_id() or 0,
    )
    decided_before = len(await read_all(settings, [settings.topics.decisions]))
    letters_before = len(await read_all(settings, [settings.topics.dead_letters]))

    await publish_slowly(settings, work, seconds=2)  # every input again, at new offsets
    await _reset_groups(settings)  # and every consumer group back to offset zero
    service.start()
    await drained(settings)
    service.stop()

    allocation_after = allocation.recorder.max_notification_id() or 0
    first: list[Any] = []
    again: list[Any] = []
    for position, event in events_of(intake):
        (first if position <= before[0] else again).append(event)
    letters = {
        (e.source["payload"], e.error) for e in first if isinstance(e, RefusedInput.Recorded)
    }
    # No new decision, no new allocation event; intake records nothing new but dead letters
    # for the bad inputs that came again, each for the reason it had the first time.
    assert allocation_after == before[1]
    assert len(await read_all(settings, [settings.topics.decisions])) == decided_before
    assert all(isinstance(e, RefusedInput.Recorded) for e in again)
    assert {(e.source["payload"], e.error) for e in again} <= letters
    new_letters = len(await read_all(settings, [settings.topics.dead_letters])) - letters_before
    assert new_letters == len(again)
    summary = (
        f"inputs delivered again and consumer groups reset to zero: inputs "
        f"{len(work.messages)} x 2, new decisions 0, new allocation events 0, new intake "
        f"records {len(again)} (all dead letters of bad inputs, for the same reasons)"
    )
    await asyncio.to_thread(_append_result, summary)


def _append_result(line: str) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS.open("a") as results:
        results.write(json.dumps({"line": line, "ok": True}) + "\n")
    print(line)


async def _reset_groups(settings: Settings) -> None:
    consumer = AIOKafkaConsumer(**settings.kafka_client_options(), enable_auto_commit=False)
    await consumer.start()
    await consumer._client.force_metadata_update()
    topics = settings.topics
    groups = {
        f"{settings.consumer_group}-intake": topics.inputs(),
        f"{settings.consumer_group}-allocation": [topics.sku_commands],
    }
    await consumer.stop()
    for group, names in groups.items():
        member = AIOKafkaConsumer(
            **settings.kafka_client_options(), group_id=group, enable_auto_commit=False
        )
        await member.start()
        await member._client.force_metadata_update()
        partitions = [
            TopicPartition(name, p)
            for name in names
            for p in member.partitions_for_topic(name) or ()
        ]
        member.assign(partitions)
        await member.commit(dict.fromkeys(partitions, 0))
        await member.stop()
