"""What /metrics says of a stage's progress, on the real broker and both real stores: a
consumer's lag per partition; the conservation check, which finds nothing wrong in read
models fed from a real allocation log and exactly the row changed by hand (logged by its
key); each read model's lag behind the log."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from aiokafka import TopicPartition
from eventsourcing.persistence import Tracking
from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from projections.monitoring import (
    check_conservation,
    record_projection_lag,
    run_conservation_check,
)
from projections.runner import ReadModels
from services.adapters.kafka import BatchConsumer, Batches, ensure_topics
from services.adapters.settings import Settings
from services.entrypoints.bootstrap import build_allocation, build_read_models
from tests.harness import as_json, isolated_settings, order, publish, until
from tests.integration.test_read_models import full_history


class StuckStage:
    """A stage that cannot apply anything until released (as when its store refuses every
    write): each batch rolls back and is read again."""

    def __init__(self, stage: str) -> None:
        self.stage = stage
        self.stuck = True
        self.applied = 0

    def assigned(self, partition: TopicPartition) -> int | None:
        return None

    def handle(self, batches: Batches) -> None:
        if self.stuck:
            raise RuntimeError("the store refuses the batch")
        self.applied += sum(len(records) for records in batches.values())

    def revoked(self, partitions: Sequence[TopicPartition]) -> None:
        pass


def _consumer_lags(stage: str, topic: str, partitions: int) -> list[float | None]:
    return [
        REGISTRY.get_sample_value(
            "fulfillment_consumer_lag", {"stage": stage, "topic": topic, "partition": str(p)}
        )
        for p in range(partitions)
    ]


async def test_a_stage_that_cannot_apply_its_batches_shows_them_as_lag_until_it_can(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    settings = isolated_settings(kafka_bootstrap, f"sqlite:///{tmp_path}/unused")
    await ensure_topics(settings)
    orders = settings.topics.orders
    messages = [as_json(order(f"O-{n}", [("1", "SKU-lag", 1)])) for n in range(5)]
    await publish(settings, [(orders, "one-partition", value) for value in messages])
    stage = StuckStage(f"lag-{settings.consumer_group}")
    consumer = BatchConsumer(settings, [orders], settings.consumer_group, stage)
    running = asyncio.create_task(consumer.run())
    try:
        partitions = settings.topic_partitions
        await until(
            lambda: (
                sorted(map(str, _consumer_lags(stage.stage, orders, partitions)))
                == ["0.0", "0.0", "5.0"]
            ),
            what="the five records it cannot apply as the lag of their partition",
        )
        failures = REGISTRY.get_sample_value(
            "fulfillment_batch_failures_total", {"stage": stage.stage}
        )
        assert (failures or 0) >= 1

        stage.stuck = False
        await until(
            lambda: _consumer_lags(stage.stage, orders, partitions) == [0.0] * partitions,
            what="no lag once the stage applied them",
        )
        assert stage.applied == 5
    finally:
        consumer.stop()
        await asyncio.wait_for(running, timeout=60)


@pytest.fixture
def models(database_url: str) -> Iterator[ReadModels]:
    """Read models fed from a real allocation log: receipts, orders, cancellations,
    policies, inbounds, shipments and ticks, as intake's relay would send them."""
    settings = Settings(database_url=database_url)
    allocation = build_allocation(settings)
    history = full_history(12, inputs=150)
    for start in range(0, len(history), 50):
        allocation.apply_commands(history[start : start + 50], Tracking("history", start + 1))
    read_models = build_read_models(settings, allocation)
    yield read_models
    read_models.store.close()


def _catch_up(models: ReadModels) -> None:
    while models.catch_up(500):
        pass


def _violations(models: ReadModels) -> dict[str, int]:
    return {finding.check: finding.violations for finding in check_conservation(models.store)}


def _change_by_hand(models: ReadModels, name: str, sets: str, where: str) -> None:
    """An UPDATE of the live generation's table, as someone with SQL access might do."""
    generation = models.live()[name].generation
    with models.store.transaction() as tx:
        tx.execute(f"UPDATE {name}_g{generation} SET {sets} WHERE {where}")


def _first(models: ReadModels, sql: str) -> dict[str, object]:
    rows = models.store.read(sql)
    assert rows, sql
    return rows[0]


def test_read_models_fed_from_the_log_add_up_in_every_check(models: ReadModels) -> None:
    _catch_up(models)
    moved = _first(
        models,
        "SELECT SUM(shipped) AS shipped, SUM(backordered) AS backordered, "
        "SUM(cancelled) AS cancelled, SUM(rejected) AS rejected FROM order_lines",
    )
    assert all(int(str(total)) > 0 for total in moved.values()), moved  # a history worth it

    started = time.time()
    findings = run_conservation_check(models.store)

    assert {f.check: (f.violations, f.examples) for f in findings} == {
        "sku_stock": (0, []),
        "order_lines": (0, []),
        "sku_lines": (0, []),
    }
    for check in ("sku_stock", "order_lines", "sku_lines"):
        labels = {"check": check}
        assert REGISTRY.get_sample_value("fulfillment_conservation_violations", labels) == 0
    checked = REGISTRY.get_sample_value("fulfillment_conservation_checked_timestamp_seconds")
    assert started <= (checked or 0) <= time.time()


def test_a_sku_whose_stock_was_changed_by_hand_is_one_violation_named_in_the_log(
    models: ReadModels,
) -> None:
    _catch_up(models)
    sku = str(_first(models, "SELECT sku FROM sku_positions ORDER BY sku")["sku"])
    _change_by_hand(models, "sku_positions", "available = available + 1", f"sku = '{sku}'")

    with capture_logs() as logs:
        findings = run_conservation_check(models.store)

    assert {f.check: f.violations for f in findings} == {
        "sku_stock": 1,
        "order_lines": 0,
        "sku_lines": 0,
    }
    labels = {"check": "sku_stock"}
    assert REGISTRY.get_sample_value("fulfillment_conservation_violations", labels) == 1
    [logged] = [entry for entry in logs if entry.get("check") == "sku_stock"]
    assert logged["log_level"] == "error"
    assert [example["sku"] for example in logged["examples"]] == [sku]


def test_a_sku_that_adds_up_but_holds_a_negative_count_is_a_violation(
    models: ReadModels,
) -> None:
    _catch_up(models)
    sku = str(_first(models, "SELECT sku FROM sku_positions ORDER BY sku")["sku"])
    # available + allocated = on_hand = received - shipped still: only the sign is wrong.
    _change_by_hand(
        models,
        "sku_positions",
        "available = -1, on_hand = on_hand - available - 1, received = received - available - 1",
        f"sku = '{sku}'",
    )

    assert _violations(models) == {"sku_stock": 1, "order_lines": 0, "sku_lines": 0}


def test_an_order_line_whose_parts_were_changed_by_hand_is_one_violation(
    models: ReadModels,
) -> None:
    _catch_up(models)
    line = _first(models, "SELECT order_id, line_id FROM order_lines ORDER BY order_id, line_id")
    _change_by_hand(
        models,
        "order_lines",
        "cancelled = cancelled + 1",
        f"order_id = '{line['order_id']}' AND line_id = '{line['line_id']}'",
    )

    [finding] = [f for f in check_conservation(models.store) if f.check == "order_lines"]

    assert finding.violations == 1
    assert [(e["order_id"], e["line_id"]) for e in finding.examples] == [
        (line["order_id"], line["line_id"])
    ]
    assert _violations(models) == {"sku_stock": 0, "order_lines": 1, "sku_lines": 0}


def test_units_a_sku_holds_for_no_line_are_a_violation_of_its_lines_sums(
    models: ReadModels,
) -> None:
    _catch_up(models)
    sku = str(
        _first(models, "SELECT sku FROM sku_positions WHERE available > 0 ORDER BY sku")["sku"]
    )
    # Stock still adds up on the SKU's row: one unit moved from available to allocated.
    _change_by_hand(
        models,
        "sku_positions",
        "available = available - 1, allocated = allocated + 1",
        f"sku = '{sku}'",
    )

    assert _violations(models) == {"sku_stock": 0, "order_lines": 0, "sku_lines": 1}


def test_each_read_model_reports_its_position_and_how_far_it_lags_the_log(
    models: ReadModels,
) -> None:
    head = models.head()
    assert head > 500

    before = record_projection_lag(models)
    models.catch_up(500)
    applied = models.position()
    halfway = record_projection_lag(models)
    _catch_up(models)
    after = record_projection_lag(models)

    assert set(before) == set(models.projections)
    assert set(before.values()) == {head}
    assert 0 < applied < head
    assert set(halfway.values()) == {head - applied}
    assert set(after.values()) == {0}
    for name in models.projections:
        labels = {"read_model": name}
        assert REGISTRY.get_sample_value("fulfillment_projection_lag", labels) == 0
        assert REGISTRY.get_sample_value("fulfillment_projection_position", labels) == head
