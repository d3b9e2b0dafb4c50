"""The read models on both real stores: equal to a recomputation, restartable, rebuildable."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from eventsourcing.persistence import Tracking

from projections.queries import FILL_ORDER
from projections.runner import ReadModels
from projections.store import ReadStore
from services.adapters.settings import Settings
from services.allocation.application import Allocation
from services.allocation.domain import Sku
from services.entrypoints.bootstrap import build_allocation
from services.operations.replay import events_of
from tests.histories import random_history


def _allocation(database_url: str, seed: int, inputs: int = 300) -> Allocation:
    allocation = build_allocation(Settings(database_url=database_url))
    history = random_history(seed, inputs=inputs)
    for start in range(0, len(history), 50):
        allocation.apply_commands(history[start : start + 50], Tracking("history", start + 1))
    return allocation


def _drain(models: ReadModels, page: int = 500) -> None:
    while models.catch_up(page):
        pass


def _table(store: ReadStore, name: str) -> list[dict[str, Any]]:
    order = {
        "backorder_queue": f"sku, {FILL_ORDER}",
        "sku_positions": "sku",
        "demand_daily": "sku, day",
        "order_lines": "order_id, line_id",
    }[name]
    return [
        {key: str(value) for key, value in row.items()}
        for row in store.read(f"SELECT * FROM {name} ORDER BY {order}")
    ]


def _recomputed(allocation: Allocation) -> dict[str, Any]:
    """What the read models must hold, straight from the SKUs' events and aggregates."""
    demand: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    kinds = {
        Sku.LineAllocated: "allocated",
        Sku.LineBackordered: "backordered",
        Sku.BackorderFilled: "filled",
        Sku.BackorderCancelled: "cancelled",
        Sku.AllocationReleased: "cancelled",
        Sku.LineRejected: "rejected",
        Sku.StockReceived: "received",
    }
    skus: set[str] = set()
    for _, event in events_of(allocation):
        if isinstance(event, Sku.Registered):
            continue
        day = event.occurred_at.date().isoformat()
        counters = demand[(event.sku, day)]
        skus.add(event.sku)
        if isinstance(event, Sku.LinePlaced):
            counters["ordered"] += event.ordered
            counters["cancelled"] += event.cancelled_before_placement
        elif type(event) in kinds:
            counters[kinds[type(event)]] += event.quantity
    aggregates = {sku: allocation.find_sku(sku) for sku in sorted(skus)}
    return {
        "sku_positions": {
            sku: (a.available, a.allocated, a.backordered, len(a.queue))
            for sku, a in aggregates.items()
            if a is not None
        },
        "backorder_queue": {
            sku: [
                (line["order_id"], line["line_id"], line["backordered"])
                for line in a.queued_lines()
            ]
            for sku, a in aggregates.items()
            if a is not None and a.queue
        },
        "order_lines": {
            (line["order_id"], line["line_id"]): (
                line["ordered"],
                line["allocated"],
                line["backordered"],
                line["cancelled"],
                line["rejected"],
            )
            for a in aggregates.values()
            if a is not None
            for line in a.lines.values()
        },
        "demand_daily": {
            key: {kind: count for kind, count in value.items() if count}
            for key, value in demand.items()
        },
    }


def _projected(store: ReadStore) -> dict[str, Any]:
    queue: dict[str, list[tuple[str, str, int]]] = defaultdict(list)
    for row in store.read(f"SELECT * FROM backorder_queue ORDER BY sku, {FILL_ORDER}"):
        queue[row["sku"]].append((row["order_id"], row["line_id"], row["quantity"]))
    counters = (
        "ordered",
        "allocated",
        "backordered",
        "filled",
        "cancelled",
        "rejected",
        "received",
    )
    return {
        "sku_positions": {
            row["sku"]: (
                row["available"],
                row["allocated"],
                row["backordered"],
                row["open_backorders"],
            )
            for row in store.read("SELECT * FROM sku_positions")
        },
        "backorder_queue": dict(queue),
        "order_lines": {
            (row["order_id"], row["line_id"]): (
                row["ordered"],
                row["allocated"],
                row["backordered"],
                row["cancelled"],
                row["rejected"],
            )
            for row in store.read("SELECT * FROM order_lines")
        },
        "demand_daily": {
            (row["sku"], str(row["day"])): {c: int(row[c]) for c in counters if row[c]}
            for row in store.read("SELECT * FROM demand_daily")
        },
    }


def test_every_read_model_equals_a_recomputation_from_the_decisions(database_url: str) -> None:
    allocation = _allocation(database_url, seed=11)
    models = ReadModels(ReadStore(database_url), allocation)
    _drain(models)

    projected, expected = _projected(models.store), _recomputed(allocation)
    for name in expected:
        assert projected[name] == expected[name], name
    assert models.position() == models.head()
    assert len(expected["backorder_queue"]) > 0
    assert len(expected["order_lines"]) > 100


def test_a_restart_in_the_middle_changes_nothing(database_url: str) -> None:
    allocation = _allocation(database_url, seed=12)
    first = ReadModels(ReadStore(database_url), allocation)
    first.catch_up(100)
    first.catch_up(37)
    first.store.close()
    # A new process: it resumes from the positions committed with the rows.
    again = ReadModels(ReadStore(database_url), allocation)
    assert again.position() == 137
    _drain(again, page=211)

    projected, expected = _projected(again.store), _recomputed(allocation)
    for name in expected:
        assert projected[name] == expected[name], name


def test_a_rebuild_equals_the_live_read_model_row_by_row(database_url: str) -> None:
    allocation = _allocation(database_url, seed=13, inputs=200)
    models = ReadModels(ReadStore(database_url), allocation)
    _drain(models)
    names = ["backorder_queue", "sku_positions", "demand_daily", "order_lines"]
    live = {name: _table(models.store, name) for name in names}

    for name in names:
        rebuilt = models.rebuild(name)
        assert rebuilt.generation == 2
        assert _table(models.store, name) == live[name], name


def test_the_live_read_model_keeps_serving_and_advancing_during_a_rebuild(
    database_url: str,
) -> None:
    allocation = _allocation(database_url, seed=14, inputs=150)
    models = ReadModels(ReadStore(database_url), allocation)
    _drain(models)
    more = random_history(99, inputs=60, prefix="late-")
    # Positions after the first history's, so the SKUs apply them.
    shifted = [m.model_copy(update={"position": m.position + 10_000_000}) for m in more]
    served: list[int] = []

    def meanwhile(done: int, total: int) -> None:
        if shifted:
            allocation.apply_commands([shifted.pop(0)], None)
            models.catch_up()  # the live model keeps taking events...
            served.append(len(models.store.read("SELECT * FROM order_lines")))  # ...and serving

    models.rebuild("order_lines", meanwhile, page=10)
    _drain(models)

    assert served
    assert served[-1] >= served[0]
    projected, expected = _projected(models.store), _recomputed(allocation)
    assert projected["order_lines"] == expected["order_lines"]
    assert models.live()["order_lines"].position == models.head()
