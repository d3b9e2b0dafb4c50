"""A lost database, restored from Kafka (`fulfillment restore --from-kafka`) to the state it
had: the same decisions (ids included, per SKU), the same read models, the same intake
aggregates; and the service, started again, goes on without losing or doubling anything."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest

from projections.catalog import NAMES
from projections.store import ReadStore
from services.adapters.settings import Settings
from services.adapters.store import is_postgres, postgres_dsn, sqlite_path
from services.entrypoints.bootstrap import build_allocation, build_intake
from services.entrypoints.runner import STAGES
from services.operations.replay import events_of, live_decisions, per_sku
from tests.harness import drained, environment
from tests.reliability.checker import check
from tests.reliability.cluster import Process
from tests.reliability.scenario import publish_slowly, scenario_settings
from tests.reliability.workload import workload

pytestmark = pytest.mark.kafka

CLI = str(Path(sys.executable).parent / "fulfillment")
# What may differ between two stores with the same history: positions. The allocation log
# numbers SKUs' decisions as they interleave (SKUs are decided in parallel); intake's log
# numbers a cancellation that came before its order where the topics cannot tell
# (services/operations/restore.py), so a queue entry's `arrival` (an intake position) may
# shift by a few, its order in the queue kept. Read-model generations differ too.
LOG_POSITIONS = {"order_decisions": "position", "backorder_queue": "arrival"}


def state(settings: Settings) -> dict[str, Any]:
    """What must come back: every SKU's decisions in order, every read model's rows (log
    positions aside), and intake's aggregates with their versions."""
    intake, allocation = build_intake(settings), build_allocation(settings)
    store = ReadStore(settings.database_url)
    try:
        versions: dict[Any, int] = {}
        for _, event in events_of(intake):
            versions[event.originator_id] = event.originator_version
        tables: dict[str, Any] = {}
        for name, projection in NAMES.items():
            for view in projection(store).views(name):
                rows = store.read(f"SELECT * FROM {view}")
                dropped = LOG_POSITIONS.get(view)
                tables[view] = sorted(
                    tuple(sorted((k, str(v)) for k, v in row.items() if k != dropped))
                    for row in rows
                )
        return {
            "decisions": per_sku(live_decisions(allocation)),
            "intake": versions,
            "tables": tables,
        }
    finally:
        store.close()
        intake.close()
        allocation.close()


def run_restore(settings: Settings) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI, "restore", "--from-kafka"],
        env=environment(settings),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def lose_the_database(settings: Settings) -> None:
    url = settings.database_url
    if is_postgres(url):
        dsn, schema = postgres_dsn(url)
        assert schema, "the test's PostgreSQL store has a schema of its own"
        with psycopg.connect(dsn, autocommit=True) as connection:
            connection.execute(f'DROP SCHEMA "{schema}" CASCADE')
        return
    folder = sqlite_path(url, "intake").parent
    shutil.rmtree(folder)
    folder.mkdir()


async def test_a_lost_database_is_restored_from_kafka_to_the_state_it_had(
    kafka_bootstrap: str, database_url: str, tmp_path: Path
) -> None:
    settings = scenario_settings(kafka_bootstrap, database_url)
    service = Process("service", settings, STAGES, tmp_path).start()
    try:
        await publish_slowly(settings, workload(41, orders=300), seconds=3)
        await drained(settings)
    finally:
        assert service.stop() == 0, service.log()
    before = await asyncio.to_thread(state, settings)
    assert sum(map(len, before["decisions"].values())) > 300

    await asyncio.to_thread(lose_the_database, settings)
    restored = await asyncio.to_thread(run_restore, settings)
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert "restored" in restored.stdout
    after = await asyncio.to_thread(state, settings)
    assert after["decisions"] == before["decisions"]
    assert after["intake"] == before["intake"]
    for view, rows in before["tables"].items():
        assert after["tables"][view] == rows, view

    # Started again, it goes on: new inputs decided once, nothing republished twice.
    again = Process("again", settings, STAGES, tmp_path).start()
    try:
        await publish_slowly(settings, workload(42, orders=100), seconds=2)
        await drained(settings)
        report = await check(settings, "restored from kafka", 1, tmp_path)
    finally:
        assert again.stop() == 0, again.log()
    assert report.ok, report.line()


def test_restore_refuses_a_store_that_is_not_empty(
    kafka_bootstrap: str, database_url: str, tmp_path: Path
) -> None:
    settings = scenario_settings(kafka_bootstrap, database_url)
    intake = build_intake(settings)
    from datetime import UTC, datetime

    from eventsourcing.persistence import Tracking

    from services.intake.application import Input
    from services.kernel.dead_letters import Source

    source = Source(
        topic=settings.topics.orders, partition=0, offset=0, key="O", payload="{",
        payload_encoding="utf-8",
    )  # fmt: skip
    intake.record_inputs(
        [Input(source, error="not JSON")], Tracking("x-0", 0), failed_at=datetime.now(UTC)
    )
    intake.close()
    refused = run_restore(settings)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "not empty" in refused.stdout
