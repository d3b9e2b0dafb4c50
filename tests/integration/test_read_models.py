"""The read models on both real stores: equal to a recomputation, restartable, rebuildable,
and a store made by an older release upgraded when it opens."""

from __future__ import annotations

import itertools
import random
from collections import defaultdict
from datetime import date, datetime, timedelta
from typing import Any
from uuid import NAMESPACE_URL, uuid5

import pytest
from eventsourcing.persistence import Tracking

from events.commands import (
    ExpectInbound,
    PlaceLine,
    ReceiveStock,
    SetPolicy,
    ShipLine,
    ShipmentSource,
    SkuCommand,
    SkuCommands,
    SkuCommandsMessage,
    Tick,
    TickCommand,
)
from projections.catalog import NAMES
from projections.queries import FILL_ORDER
from projections.runner import Live, ReadModels
from projections.store import ReadStore
from services.adapters.settings import Settings
from services.allocation.application import Allocation
from services.allocation.domain import Sku
from services.entrypoints.bootstrap import build_allocation
from services.operations.replay import events_of
from tests.histories import random_history

COUNTERS = (
    "ordered",
    "allocated",
    "backordered",
    "filled",
    "cancelled",
    "rejected",
    "received",
    "shipped",
    "expired",
)


def full_history(seed: int, *, inputs: int = 300, prefix: str = "") -> list[SkuCommandsMessage]:
    """random_history's receipts, orders and cancellations, and between them every input of
    version 2: policies (allow, deny, limit, max_wait_days), inbounds with revisions and
    withdrawals, receipts against inbounds (and against ones the SKU does not have),
    shipments (some asking for more than the line holds) and clock ticks."""
    rng = random.Random(seed * 7919)
    placed: dict[str, list[tuple[str, str]]] = defaultdict(list)  # SKU -> (order, line)
    messages: list[SkuCommandsMessage] = []
    for n, group in itertools.groupby(
        random_history(seed, inputs=inputs, prefix=prefix), key=lambda m: m.position // 1000
    ):
        inputs_of_n = list(group)
        messages.extend(inputs_of_n)
        when = max(command.occurred_at for m in inputs_of_n for command in m.commands)
        for message in inputs_of_n:
            for command in message.commands:
                if isinstance(command, PlaceLine):
                    placed[message.sku].append((command.order_id, command.line_id))
        kind = rng.random()
        cause: dict[str, Any] = {
            "causation_id": uuid5(NAMESPACE_URL, f"full:{seed}:{prefix}:{n}"),
            "occurred_at": when + timedelta(minutes=5),
        }
        sku = rng.choice(sorted(placed)) if placed else "SKU-0"
        extra: SkuCommand | None = None
        if kind < 0.06:
            backorders = rng.choice(["allow", "allow", "deny", "limit", "limit"])
            extra = SetPolicy(
                **cause,
                backorders=backorders,
                limit=rng.randint(0, 15) if backorders == "limit" else None,
                max_wait_days=rng.choice([None, 1, 2, 3]),
            )
        elif kind < 0.18:
            extra = ExpectInbound(
                **cause,
                inbound_id=f"{prefix}PO-{rng.randint(1, 4)}",
                quantity=rng.choice([0, rng.randint(1, 15), rng.randint(1, 15)]),
                expected_at=when + timedelta(days=rng.uniform(-2, 10)),
            )
        elif kind < 0.25:
            extra = ReceiveStock(
                **cause,
                receipt_id=f"{prefix}R-in-{n}",
                quantity=rng.randint(1, 10),
                inbound_id=f"{prefix}PO-{rng.randint(1, 5)}",  # PO-5 is never expected
            )
        elif kind < 0.45 and placed[sku]:
            order_id, line_id = rng.choice(placed[sku])
            extra = ShipLine(
                **cause,
                shipment_id=f"{prefix}SH-{n}",
                order_id=order_id,
                line_id=line_id,
                quantity=rng.randint(1, 3),
                source=ShipmentSource(topic="shipments", partition=0, offset=n),
            )
        elif kind < 0.52:
            messages.append(Tick(position=n * 1000 + 600, tick=TickCommand(**cause)))
        if extra is not None:
            messages.append(SkuCommands(sku=sku, position=n * 1000 + 500, commands=[extra]))
    return messages


def _allocation(database_url: str, seed: int, inputs: int = 300) -> Allocation:
    allocation = build_allocation(Settings(database_url=database_url))
    history = full_history(seed, inputs=inputs)
    for start in range(0, len(history), 50):
        allocation.apply_commands(history[start : start + 50], Tracking("history", start + 1))
    return allocation


def _drain(models: ReadModels, page: int = 500) -> None:
    while models.catch_up(page):
        pass


def _moment(value: Any) -> datetime | None:
    """A stored time (ISO text on SQLite, a datetime on PostgreSQL) as a datetime."""
    return datetime.fromisoformat(value) if isinstance(value, str) else value


TABLE_ORDER = {
    "backorder_queue": f"sku, {FILL_ORDER}",
    "sku_positions": "sku",
    "inbounds": "sku, inbound_id",
    "demand_daily": "sku, day",
    "order_lines": "order_id, line_id",
    "order_decisions": "position",
    "insights_daily": "sku, day",
    "insights_fill_times": "sku, day, wait_seconds",
    "insights_stockouts": "sku, started_at, ended_at",
    "insights_skus": "sku",
    "insights_waiting": "sku, order_id, line_id",
}


def _table(store: ReadStore, name: str) -> list[dict[str, Any]]:
    return [
        {key: str(value) for key, value in row.items()}
        for row in store.read(f"SELECT * FROM {name} ORDER BY {TABLE_ORDER[name]}")
    ]


def _recomputed(allocation: Allocation) -> dict[str, Any]:
    """What the read models must hold, straight from the SKUs' events and aggregates. Order
    lines come from the decisions alone: a SKU forgets a line once it is settled."""
    kinds = {
        Sku.LineAllocated: "allocated",
        Sku.LineBackordered: "backordered",
        Sku.BackorderFilled: "filled",
        Sku.BackorderCancelled: "cancelled",
        Sku.AllocationReleased: "cancelled",
        Sku.LineRejected: "rejected",
        Sku.StockReceived: "received",
        Sku.LineShipped: "shipped",
    }
    moves = {
        Sku.LineAllocated: {"allocated": 1},
        Sku.LineBackordered: {"backordered": 1},
        Sku.BackorderFilled: {"backordered": -1, "allocated": 1},
        Sku.BackorderCancelled: {"backordered": -1, "cancelled": 1},
        Sku.AllocationReleased: {"allocated": -1, "cancelled": 1},
        Sku.LineShipped: {"allocated": -1, "shipped": 1},
        Sku.LineRejected: {"rejected": 1},
    }
    demand: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    lines: dict[tuple[str, str], dict[str, Any]] = {}
    skus: set[str] = set()
    # Not the SKUs' creation, the deadlines index or dead letters: what the SKUs recorded.
    recorded: list[Any] = [e for _, e in events_of(allocation) if isinstance(e, Sku.Recorded)]
    for event in recorded:
        skus.add(event.sku)
        day = event.occurred_at.date().isoformat()
        if isinstance(event, Sku.LinePlaced):
            demand[(event.sku, day)]["ordered"] += event.ordered
            demand[(event.sku, day)]["cancelled"] += event.cancelled_before_placement
            lines[(event.order_id, event.line_id)] = {
                "ordered": event.ordered,
                "allocated": 0,
                "backordered": 0,
                "shipped": 0,
                "cancelled": event.cancelled_before_placement,
                "rejected": 0,
                "eta": None,
            }
            continue
        if type(event) in kinds:
            demand[(event.sku, day)][kinds[type(event)]] += event.quantity
        if isinstance(event, Sku.BackorderCancelled) and event.reason == "expired":
            demand[(event.sku, day)]["expired"] += event.quantity
        if not isinstance(event, Sku.Decided):
            continue
        line = lines[(event.order_id, event.line_id)]
        for counter, sign in moves.get(type(event), {}).items():
            line[counter] += sign * event.quantity
        if isinstance(event, Sku.LineBackordered | Sku.BackorderEtaChanged):
            line["eta"] = event.eta
        if not line["backordered"]:
            line["eta"] = None
    aggregates = {sku: allocation.find_sku(sku) for sku in sorted(skus)}
    found = {sku: a for sku, a in aggregates.items() if a is not None}
    return {
        "sku_positions": {
            sku: (
                a.received,
                a.shipped,
                a.on_hand,
                a.available,
                a.allocated,
                a.backordered,
                len(a.queue),
                a.inbound,
                *(
                    (a.policy["backorders"], a.policy["limit"], a.policy["max_wait_days"])
                    if a.policy
                    else (None, None, None)
                ),
            )
            for sku, a in found.items()
        },
        "inbounds": {
            (sku, inbound_id): (inbound["quantity"], inbound["expected_at"])
            for sku, a in found.items()
            for inbound_id, inbound in a.inbounds.items()
        },
        "backorder_queue": {
            sku: [
                (line["order_id"], line["line_id"], line["backordered"], line["eta"])
                for line in a.queued_lines()
            ]
            for sku, a in found.items()
            if a.queue
        },
        "order_lines": {key: tuple(line.values()) for key, line in lines.items()},
        "demand_daily": {
            key: {kind: count for kind, count in value.items() if count}
            for key, value in demand.items()
        },
    }


def _projected(store: ReadStore) -> dict[str, Any]:
    queue: dict[str, list[tuple[str, str, int, datetime | None]]] = defaultdict(list)
    for row in store.read(f"SELECT * FROM backorder_queue ORDER BY sku, {FILL_ORDER}"):
        queue[row["sku"]].append(
            (row["order_id"], row["line_id"], row["quantity"], _moment(row["eta"]))
        )
    return {
        "sku_positions": {
            row["sku"]: (
                row["received"],
                row["shipped"],
                row["on_hand"],
                row["available"],
                row["allocated"],
                row["backordered"],
                row["open_backorders"],
                row["inbound"],
                row["backorders"],
                row["backorder_limit"],
                row["max_wait_days"],
            )
            for row in store.read("SELECT * FROM sku_positions")
        },
        "inbounds": {
            (row["sku"], row["inbound_id"]): (row["quantity"], _moment(row["expected_at"]))
            for row in store.read("SELECT * FROM inbounds")
        },
        "backorder_queue": dict(queue),
        "order_lines": {
            (row["order_id"], row["line_id"]): (
                row["ordered"],
                row["allocated"],
                row["backordered"],
                row["shipped"],
                row["cancelled"],
                row["rejected"],
                _moment(row["eta"]),
            )
            for row in store.read("SELECT * FROM order_lines")
        },
        "demand_daily": {
            (row["sku"], str(row["day"])): {c: int(row[c]) for c in COUNTERS if row[c]}
            for row in store.read("SELECT * FROM demand_daily")
        },
    }


def _assert_equal(projected: dict[str, Any], expected: dict[str, Any]) -> None:
    for name, rows in expected.items():
        assert projected[name] == rows, name


@pytest.mark.parametrize("page", [500, 5000])
def test_every_read_model_equals_a_recomputation_from_the_decisions(
    database_url: str, page: int
) -> None:
    """In pages of 500 events, or the whole log in one (as the feed takes it when behind)."""
    allocation = _allocation(database_url, seed=11)
    models = ReadModels(ReadStore(database_url), allocation)
    _drain(models, page)

    projected, expected = _projected(models.store), _recomputed(allocation)
    _assert_equal(projected, expected)
    assert models.position() == models.head()
    # The history exercises every kind of movement, so the comparison means something.
    assert len(expected["backorder_queue"]) > 0
    assert len(expected["order_lines"]) > 100
    assert len(expected["inbounds"]) > 0
    totals = {
        kind: sum(day.get(kind, 0) for day in expected["demand_daily"].values())
        for kind in COUNTERS
    }
    assert all(totals.values()), totals
    assert any(eta for rows in expected["backorder_queue"].values() for *_, eta in rows)
    assert any(position[-3] for position in expected["sku_positions"].values())  # policies
    for ordered, allocated, backordered, shipped, cancelled, rejected, _ in expected[
        "order_lines"
    ].values():
        assert allocated + backordered + shipped + cancelled + rejected == ordered


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

    _assert_equal(_projected(again.store), _recomputed(allocation))


def test_a_rebuild_equals_the_live_read_model_row_by_row(database_url: str) -> None:
    allocation = _allocation(database_url, seed=13, inputs=200)
    models = ReadModels(ReadStore(database_url), allocation)
    _drain(models)
    live = {name: _table(models.store, name) for name in TABLE_ORDER}
    assert live["inbounds"], "the companion table has rows to rebuild"

    for name in NAMES:
        rebuilt = models.rebuild(name)
        assert rebuilt.generation == 2
        assert _table(models.store, name) == live[name], name
    # Companion tables are rebuilt with their read model.
    for name in TABLE_ORDER:
        assert _table(models.store, name) == live[name], name

    # All of them in one pass over the log, in pages smaller than the log.
    head = models.head()
    assert models.rebuild_all(page=300) == {
        name: Live(generation=3, position=head) for name in NAMES
    }
    assert models.live() == {name: Live(generation=3, position=head) for name in NAMES}
    for name in TABLE_ORDER:
        assert _table(models.store, name) == live[name], name


@pytest.mark.parametrize("rebuilt", ["order_lines", "all"])
def test_the_live_read_model_keeps_serving_and_advancing_during_a_rebuild(
    database_url: str, rebuilt: str
) -> None:
    allocation = _allocation(database_url, seed=14, inputs=150)
    models = ReadModels(ReadStore(database_url), allocation)
    _drain(models)
    more = full_history(99, inputs=60, prefix="late-")
    # Positions after the first history's, so the SKUs apply them.
    shifted = [m.model_copy(update={"position": m.position + 10_000_000}) for m in more]
    served: list[int] = []

    def meanwhile(done: int, total: int) -> None:
        if shifted:
            allocation.apply_commands([shifted.pop(0)], None)
            models.catch_up()  # the live model keeps taking events...
            served.append(len(models.store.read("SELECT * FROM order_lines")))  # ...and serving

    if rebuilt == "all":
        models.rebuild_all(meanwhile, page=10)
    else:
        models.rebuild(rebuilt, meanwhile, page=10)
    _drain(models)

    assert served
    assert served[-1] >= served[0]
    projected, expected = _projected(models.store), _recomputed(allocation)
    if rebuilt == "all":
        _assert_equal(projected, expected)
        assert {live.generation for live in models.live().values()} == {2}
    assert projected["order_lines"] == expected["order_lines"]
    assert models.live()["order_lines"].position == models.head()


# --- a store made by an older release ---------------------------------------------------


def _version_1_tables(store: ReadStore) -> dict[str, str]:
    """The read models' tables as the release of version 1 of the contract created them."""
    ts, day = store.timestamp_type, store.date_type
    return {
        "backorder_queue": "CREATE TABLE backorder_queue_g1 (sku TEXT NOT NULL, order_id "
        "TEXT NOT NULL, line_id TEXT NOT NULL, customer_id TEXT NOT NULL, priority INTEGER "
        f"NOT NULL, placed_at {ts} NOT NULL, arrival BIGINT NOT NULL, line_index INTEGER NOT "
        "NULL, quantity INTEGER NOT NULL, PRIMARY KEY (sku, order_id, line_id))",
        "sku_positions": "CREATE TABLE sku_positions_g1 (sku TEXT PRIMARY KEY, received "
        "BIGINT NOT NULL, available BIGINT NOT NULL, allocated BIGINT NOT NULL, backordered "
        "BIGINT NOT NULL, open_backorders BIGINT NOT NULL)",
        "demand_daily": f"CREATE TABLE demand_daily_g1 (sku TEXT NOT NULL, day {day} NOT "
        "NULL, ordered BIGINT NOT NULL, allocated BIGINT NOT NULL, backordered BIGINT NOT "
        "NULL, filled BIGINT NOT NULL, cancelled BIGINT NOT NULL, rejected BIGINT NOT NULL, "
        "received BIGINT NOT NULL, PRIMARY KEY (sku, day))",
        "order_lines": "CREATE TABLE order_lines_g1 (order_id TEXT NOT NULL, line_id TEXT "
        "NOT NULL, sku TEXT NOT NULL, customer_id TEXT NOT NULL, ordered INTEGER NOT NULL, "
        "allocated INTEGER NOT NULL, backordered INTEGER NOT NULL, cancelled INTEGER NOT "
        f"NULL, rejected INTEGER NOT NULL, placed_at {ts} NOT NULL, "
        "PRIMARY KEY (order_id, line_id))",
    }


def test_a_store_of_an_older_shape_is_refilled_from_the_log_when_it_opens(
    database_url: str,
) -> None:
    allocation = _allocation(database_url, seed=15, inputs=150)
    head = allocation.recorder.max_notification_id() or 0
    store = ReadStore(database_url)
    old = _version_1_tables(store)
    with store.transaction() as tx:  # what version 1 left: its tables, all caught up
        tx.execute(
            "CREATE TABLE projection_positions (name TEXT PRIMARY KEY, "
            "generation INTEGER NOT NULL, position BIGINT NOT NULL)"
        )
        for name, create in old.items():
            tx.execute(create)
            tx.execute(f"CREATE VIEW {name} AS SELECT * FROM {name}_g1")
            tx.execute("INSERT INTO projection_positions VALUES (?, 1, ?)", [name, head])
        tx.execute(
            "INSERT INTO demand_daily_g1 VALUES ('SKU-0', ?, 1, 1, 0, 0, 0, 0, 0)",
            [date(2026, 11, 2) if store.postgres else "2026-11-02"],
        )

    models = ReadModels(store, allocation)

    newer = {name: Live(generation=1, position=0) for name in NAMES if name not in old}
    assert models.live() == {
        **{name: Live(generation=2, position=0) for name in old},
        **newer,  # read models the older release did not have: made, empty
    }, "each read model starts again from the start of the log, in a new generation"
    _drain(models)
    _assert_equal(_projected(store), _recomputed(allocation))
    again = ReadModels(ReadStore(database_url), allocation)  # the next start: nothing to do
    assert again.live() == {
        **{name: Live(generation=2, position=head) for name in old},
        **{name: Live(generation=1, position=head) for name in newer},
    }
