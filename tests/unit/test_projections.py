"""Each read model's handling of each SKU event: given these events, these rows."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from eventsourcing.persistence import Tracking

from events.commands import ExpectInbound, PlaceLine, ReceiveStock, ShipLine, SkuCommands
from events.commands import ShipmentSource as CommandSource
from projections.catalog import PROJECTIONS
from projections.models import (
    EVENTS,
    BackorderQueue,
    Change,
    DemandHistory,
    OrderStatus,
    Projection,
    SkuPositions,
    fact_of,
)
from projections.queries import FILL_ORDER, order_status
from projections.runner import AllocationLog, ReadModels, follow
from projections.store import ReadStore
from services.adapters.store import application_env
from services.adapters.wakeup import Wakeup
from services.allocation.application import Allocation
from services.allocation.domain import Sku
from services.operations.replay import events_of
from tests.harness import until
from tests.unit.stories import T0, SkuStory, cause_id


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ReadStore]:
    found = ReadStore(f"sqlite:///{tmp_path}/read")
    yield found
    found.close()


def project(store: ReadStore, projection: type[Projection], events: Sequence[object]) -> str:
    model = projection(store)
    with store.transaction() as tx:
        model.create(tx, model.name)
        for event in events:
            list(model.apply(event, tx, model.name))
    return model.name


def rows(store: ReadStore, sql: str) -> list[dict[str, Any]]:
    return store.read(sql)


@pytest.fixture
def story() -> SkuStory:
    return SkuStory("SKU-1")


def given(story: SkuStory) -> list[object]:
    """Stock 3; O-1 takes 2; O-2 wants 3 (1 allocated, 2 queued); O-3 wants 1 (queued)."""
    events = story.receive(3)
    events += story.place("O-1", 2, minutes=1)
    events += story.place("O-2", 3, minutes=2)
    events += story.place("O-3", 1, minutes=3)
    return events


# --- backorder queue ---------------------------------------------------------------------


def test_queue_gains_a_row_when_a_line_is_backordered(store: ReadStore, story: SkuStory) -> None:
    table = project(store, BackorderQueue, given(story))

    queued = rows(
        store, f"SELECT order_id, quantity, customer_id FROM {table} ORDER BY {FILL_ORDER}"
    )
    assert queued == [
        {"order_id": "O-2", "quantity": 2, "customer_id": "C-O-2"},
        {"order_id": "O-3", "quantity": 1, "customer_id": "C-O-3"},
    ]


def test_queue_row_shrinks_on_a_partial_fill_and_goes_on_a_full_one(
    store: ReadStore, story: SkuStory
) -> None:
    events = given(story) + story.receive(1)
    table = project(store, BackorderQueue, events)
    assert rows(store, f"SELECT order_id, quantity FROM {table}") == [
        {"order_id": "O-2", "quantity": 1},
        {"order_id": "O-3", "quantity": 1},
    ]

    project_more = story.receive(2)
    model = BackorderQueue(store)
    with store.transaction() as tx:
        for event in project_more:
            list(model.apply(event, tx, table))
    assert rows(store, f"SELECT order_id FROM {table}") == []


def test_queue_row_goes_when_its_backorder_is_cancelled(store: ReadStore, story: SkuStory) -> None:
    events = given(story) + story.cancel("O-3") + story.cancel("O-2", 1)
    table = project(store, BackorderQueue, events)

    assert rows(store, f"SELECT order_id, quantity FROM {table}") == [
        {"order_id": "O-2", "quantity": 1}
    ]


def test_queue_ignores_allocations_releases_rejections_and_receipts(
    store: ReadStore, story: SkuStory
) -> None:
    events = story.receive(2)
    events += story.place("O-1", 2)
    events += story.cancel("O-1")
    events += story.place("O-2", 5, backorders_allowed=False)
    table = project(store, BackorderQueue, events)

    assert rows(store, f"SELECT * FROM {table}") == []


# --- SKU positions -----------------------------------------------------------------------


def test_sku_position_follows_every_movement_of_stock(store: ReadStore, story: SkuStory) -> None:
    events = given(story)
    table = project(store, SkuPositions, events)
    assert rows(store, f"SELECT * FROM {table}") == [
        {
            "sku": "SKU-1",
            "received": 3,
            "shipped": 0,
            "on_hand": 3,
            "available": 0,
            "allocated": 3,
            "backordered": 3,
            "open_backorders": 2,
            "inbound": 0,
            "backorders": None,
            "backorder_limit": None,
            "max_wait_days": None,
        }
    ]

    later = story.receive(2) + story.cancel("O-1")  # fills O-2; the release fills O-3
    model = SkuPositions(store)
    with store.transaction() as tx:
        for event in later:
            list(model.apply(event, tx, table))
    assert rows(store, f"SELECT * FROM {table}") == [
        {
            "sku": "SKU-1",
            "received": 5,
            "shipped": 0,
            "on_hand": 5,
            "available": 1,
            "allocated": 4,
            "backordered": 0,
            "open_backorders": 0,
            "inbound": 0,
            "backorders": None,
            "backorder_limit": None,
            "max_wait_days": None,
        }
    ]


def test_sku_position_counts_a_cancelled_backorder_out(store: ReadStore, story: SkuStory) -> None:
    table = project(store, SkuPositions, given(story) + story.cancel("O-2"))

    [row] = rows(store, f"SELECT backordered, open_backorders, allocated, available FROM {table}")
    # O-2's queued 2 leave the queue; its allocated 1 is released and fills O-3.
    assert row == {"backordered": 0, "open_backorders": 0, "allocated": 3, "available": 0}


# --- demand history ----------------------------------------------------------------------


def test_demand_counts_each_kind_of_movement_on_the_day_of_its_cause(
    store: ReadStore, story: SkuStory
) -> None:
    events = given(story)
    events += story.receive(1, cause=story.next_cause(minutes=60 * 24))  # the next day
    events += story.cancel("O-3", cause=story.next_cause(minutes=60 * 24))
    events += story.place("O-4", 2, minutes=60 * 24, backorders_allowed=False)
    events += story.place("O-5", 2, minutes=0, cancelled_before_placement=1)
    table = project(store, DemandHistory, events)

    got = {r["day"]: r for r in rows(store, f"SELECT * FROM {table} ORDER BY day")}
    first, second = got["2026-11-25"], got["2026-11-26"]
    assert (first["ordered"], first["allocated"], first["backordered"], first["received"]) == (
        8,
        3,
        4,
        3,
    )
    assert first["cancelled"] == 1  # O-5's unit cancelled before the order arrived
    assert (second["received"], second["filled"], second["cancelled"], second["rejected"]) == (
        1,
        1,
        1,
        2,
    )
    assert second["ordered"] == 2


# --- order status ------------------------------------------------------------------------


def test_order_lines_follow_allocation_backorder_fill_and_cancellation(
    store: ReadStore, story: SkuStory
) -> None:
    events = given(story) + story.receive(1) + story.cancel("O-3")
    table = project(store, OrderStatus, events)

    got = {
        r["order_id"]: (
            r["ordered"],
            r["allocated"],
            r["backordered"],
            r["cancelled"],
            r["rejected"],
        )
        for r in rows(store, f"SELECT * FROM {table}")
    }
    assert got == {
        "O-1": (2, 2, 0, 0, 0),
        "O-2": (3, 2, 1, 0, 0),
        "O-3": (1, 0, 0, 1, 0),
    }


def test_order_line_records_rejections_and_early_cancellations(
    store: ReadStore, story: SkuStory
) -> None:
    events = story.place("O-1", 4, cancelled_before_placement=1, backorders_allowed=False)
    table = project(store, OrderStatus, events)

    [row] = rows(store, f"SELECT ordered, allocated, cancelled, rejected FROM {table}")
    assert row == {"ordered": 4, "allocated": 0, "cancelled": 1, "rejected": 3}


@pytest.mark.parametrize(
    ("lines", "status"),
    [
        ([(2, 0, 0, 0, 0)], "allocated"),
        ([(1, 1, 0, 0, 0)], "partially_backordered"),
        ([(2, 0, 0, 0, 0), (0, 3, 0, 0, 0)], "partially_backordered"),
        ([(0, 2, 0, 0, 0)], "backordered"),
        ([(0, 2, 3, 0, 0)], "backordered"),  # shipped, but all that is outstanding is owed
        ([(1, 2, 3, 0, 0)], "partially_backordered"),
        ([(1, 0, 1, 0, 0)], "partially_shipped"),
        ([(1, 0, 0, 0, 0), (0, 0, 2, 0, 0)], "partially_shipped"),
        ([(0, 0, 2, 0, 0)], "shipped"),
        ([(0, 0, 1, 1, 1)], "shipped"),
        ([(0, 0, 0, 2, 0)], "cancelled"),
        ([(0, 0, 0, 1, 1)], "cancelled"),  # nothing outstanding: cancelled before rejected
        ([(0, 0, 0, 0, 2)], "rejected"),
        ([(1, 0, 0, 0, 1)], "allocated"),
    ],
)
def test_order_status_is_derived_from_what_its_lines_hold_in_the_contracts_precedence(
    lines: list[tuple[int, int, int, int, int]], status: str
) -> None:
    """(allocated, backordered, shipped, cancelled, rejected) per line."""
    assert (
        order_status(
            [
                {"allocated": a, "backordered": b, "shipped": s, "cancelled": c, "rejected": r}
                for a, b, s, c, r in lines
            ]
        )
        == status
    )


# --- version 2: shipments, policies, inbounds, promised dates, expiry ----------------------


def day(n: float) -> datetime:
    return T0 + timedelta(days=n)


def stored_time(moment: datetime | None) -> str | None:
    """A time as the SQLite store keeps it (ISO text)."""
    return None if moment is None else moment.isoformat()


def apply_more(store: ReadStore, projection: type[Projection], table: str, events: Any) -> set[Any]:
    model = projection(store)
    changes: set[Any] = set()
    with store.transaction() as tx:
        for event in events:
            changes.update(model.apply(event, tx, table))
    return changes


def promised(story: SkuStory) -> list[object]:
    """Nothing in stock. PO-1 brings 3 on day 5: O-1's 2 units are promised for day 5, O-2's
    3 (units 3 to 5 of the queue) have no date."""
    events = story.expect("PO-1", 3, day(5))
    events += story.place("O-1", 2, minutes=1)
    events += story.place("O-2", 3, minutes=2)
    return events


def test_queue_rows_carry_their_promised_date_and_follow_each_change_of_it(
    store: ReadStore, story: SkuStory
) -> None:
    table = project(store, BackorderQueue, promised(story))
    query = f"SELECT order_id, quantity, eta FROM {table} ORDER BY {FILL_ORDER}"
    assert rows(store, query) == [
        {"order_id": "O-1", "quantity": 2, "eta": stored_time(day(5))},
        {"order_id": "O-2", "quantity": 3, "eta": None},
    ]

    # PO-2 covers O-2's last unit on day 9; PO-1 is revised to day 7.
    later = story.expect("PO-2", 5, day(9)) + story.expect("PO-1", 3, day(7))
    changes = apply_more(store, BackorderQueue, table, later)

    assert rows(store, query) == [
        {"order_id": "O-1", "quantity": 2, "eta": stored_time(day(7))},
        {"order_id": "O-2", "quantity": 3, "eta": stored_time(day(9))},
    ]
    assert changes == {
        Change("backorder-queue", "O-1|1"),
        Change("backorder-queue", "O-2|1"),
    }, "a new promised date is a change of the queue row, for the stream"


def test_an_order_line_has_the_date_of_its_queued_units_and_none_once_none_are_queued(
    store: ReadStore, story: SkuStory
) -> None:
    events = promised(story) + story.expect("PO-1", 3, day(7))
    table = project(store, OrderStatus, events)
    query = f"SELECT order_id, backordered, eta FROM {table} ORDER BY order_id"
    assert rows(store, query) == [
        {"order_id": "O-1", "backordered": 2, "eta": stored_time(day(7))},
        {"order_id": "O-2", "backordered": 3, "eta": None},
    ]

    apply_more(store, OrderStatus, table, story.receive(3, inbound_id="PO-1"))  # fills O-1

    assert rows(store, query) == [
        {"order_id": "O-1", "backordered": 0, "eta": None},
        {"order_id": "O-2", "backordered": 2, "eta": None},
    ]


def test_a_shipment_takes_units_off_allocated_and_on_hand_never_off_available(
    store: ReadStore, story: SkuStory
) -> None:
    events = story.receive(5) + story.place("O-1", 3) + story.ship("O-1", 2)
    table = project(store, SkuPositions, events)

    [row] = rows(store, f"SELECT received, shipped, on_hand, available, allocated FROM {table}")
    assert row == {"received": 5, "shipped": 2, "on_hand": 3, "available": 2, "allocated": 1}


def test_order_lines_count_shipped_units(store: ReadStore, story: SkuStory) -> None:
    events = story.receive(5) + story.place("O-1", 3) + story.ship("O-1", 2)
    events += story.cancel("O-1")  # only the unit still allocated is released
    table = project(store, OrderStatus, events)

    [row] = rows(store, f"SELECT ordered, allocated, shipped, cancelled FROM {table}")
    assert row == {"ordered": 3, "allocated": 0, "shipped": 2, "cancelled": 1}


def test_a_refused_shipment_line_changes_no_read_model(store: ReadStore, story: SkuStory) -> None:
    events = story.receive(1) + story.place("O-1", 3)
    refused = story.ship("O-1", 2)  # more than the one unit allocated
    assert [type(event) for event in refused] == [Sku.ShipmentLineRefused]
    for projection in (BackorderQueue, SkuPositions, DemandHistory, OrderStatus):
        table = project(store, projection, events)
        before = rows(store, f"SELECT * FROM {table}")
        assert not apply_more(store, projection, table, refused)
        assert rows(store, f"SELECT * FROM {table}") == before, projection.name
        with store.transaction() as tx:
            for view_table in projection(store).views(table).values():
                tx.execute(f"DROP TABLE {view_table}")


@pytest.mark.parametrize("named_by", ["policy", "inbound"])
def test_a_sku_is_known_as_soon_as_a_policy_or_an_inbound_names_it(
    store: ReadStore, story: SkuStory, named_by: str
) -> None:
    if named_by == "policy":
        events = story.set_policy("deny", max_wait_days=5)
    else:
        events = story.expect("PO-1", 4, day(3))
    table = project(store, SkuPositions, events)

    [row] = rows(store, f"SELECT * FROM {table}")
    counters = {k: v for k, v in row.items() if k in SkuPositions.COUNTERS}
    assert row["sku"] == "SKU-1"
    assert counters == {
        **dict.fromkeys(SkuPositions.COUNTERS, 0),
        "inbound": 4 if named_by == "inbound" else 0,
    }
    policy = (row["backorders"], row["backorder_limit"], row["max_wait_days"])
    assert policy == (("deny", None, 5) if named_by == "policy" else (None, None, None))


def test_the_policy_columns_hold_the_latest_policy_and_a_limit_only_with_limit(
    store: ReadStore, story: SkuStory
) -> None:
    table = project(store, SkuPositions, story.set_policy("limit", limit=10, max_wait_days=30))
    query = f"SELECT backorders, backorder_limit, max_wait_days FROM {table}"
    assert rows(store, query) == [
        {"backorders": "limit", "backorder_limit": 10, "max_wait_days": 30}
    ]

    apply_more(store, SkuPositions, table, story.set_policy("allow", limit=10))

    assert rows(store, query) == [
        {"backorders": "allow", "backorder_limit": None, "max_wait_days": None}
    ]


def test_inbound_is_what_the_open_inbounds_still_expect_through_revisions_receipts_and_withdrawals(
    store: ReadStore, story: SkuStory
) -> None:
    table = project(store, SkuPositions, [])
    inbounds = SkuPositions(store).views(table)["inbounds"]

    def now(events: list[object]) -> tuple[int, dict[str, int]]:
        apply_more(store, SkuPositions, table, events)
        [position] = rows(store, f"SELECT inbound FROM {table}")
        open_ones = rows(store, f"SELECT inbound_id, quantity FROM {inbounds}")
        return position["inbound"], {r["inbound_id"]: r["quantity"] for r in open_ones}

    assert now(story.expect("PO-1", 10, day(5)) + story.expect("PO-2", 4, day(8))) == (
        14,
        {"PO-1": 10, "PO-2": 4},
    )
    assert now(story.receive(3, inbound_id="PO-1")) == (11, {"PO-1": 7, "PO-2": 4})
    assert now(story.expect("PO-1", 5, day(6))) == (9, {"PO-1": 5, "PO-2": 4})  # a revision
    # More than PO-2 still expects: it takes what is left, never below zero, and closes.
    assert now(story.receive(6, inbound_id="PO-2")) == (5, {"PO-1": 5})
    assert now(story.receive(2, inbound_id="PO-X")) == (5, {"PO-1": 5})  # not one of its own
    assert now(story.expect("PO-1", 0, day(6))) == (0, {})  # withdrawn
    assert now(story.expect("PO-2", 3, day(9))) == (3, {"PO-2": 3})  # a closed one again
    [date_row] = rows(store, f"SELECT expected_at FROM {inbounds}")
    assert date_row["expected_at"] == stored_time(day(9))
    assert story.sku.inbound == 3, "the read model agrees with the SKU"


def test_demand_counts_shipments_and_expiries_on_their_days_expiries_also_as_cancelled(
    store: ReadStore, story: SkuStory
) -> None:
    events = story.receive(2) + story.place("O-1", 2) + story.place("O-2", 3)  # O-2 queued
    events += story.set_policy("allow", max_wait_days=2)
    events += story.ship("O-1", 2, cause=story.next_cause(minutes=60 * 24))  # the next day
    events += story.tick(day(3))  # O-2 has waited 3 days: expired
    events += story.place("O-3", 1, minutes=60 * 24 * 3)
    events += story.cancel("O-3", cause=story.next_cause(minutes=60 * 24 * 3))
    table = project(store, DemandHistory, events)

    got = {
        r["day"]: (r["shipped"], r["cancelled"], r["expired"])
        for r in rows(store, f"SELECT * FROM {table} ORDER BY day")
    }
    assert got == {
        "2026-11-25": (0, 0, 0),
        "2026-11-26": (2, 0, 0),
        "2026-11-28": (0, 4, 3),  # O-2's 3 expired, O-3's 1 cancelled by its customer
    }


def test_order_lines_count_an_expiry_as_cancelled_and_forget_its_date(
    store: ReadStore, story: SkuStory
) -> None:
    events = story.expect("PO-1", 5, day(10)) + story.place("O-1", 2)
    events += story.set_policy("allow", max_wait_days=1) + story.tick(day(1))
    table = project(store, OrderStatus, events)

    [row] = rows(store, f"SELECT backordered, cancelled, eta FROM {table}")
    assert row == {"backordered": 0, "cancelled": 2, "eta": None}


# --- streams ---------------------------------------------------------------------------


def _commands(sku: str, position: int, *commands: Any) -> SkuCommands:
    return SkuCommands(sku=sku, position=position, commands=list(commands))


def _an_allocation_log(tmp_path: Path) -> Allocation:
    """Stock 2 of S; O-1 takes 2 and ships 1; O-2 waits for 3, promised by PO-1 on day 4."""
    allocation = Allocation(env=application_env(f"sqlite:///{tmp_path}/log", "allocation"))

    def cause(n: int, minutes: float = 0) -> dict[str, Any]:
        return {"causation_id": cause_id(n), "occurred_at": T0 + timedelta(minutes=minutes)}

    def line(n: int, order_id: str, quantity: int) -> PlaceLine:
        return PlaceLine(
            **cause(n, n),
            order_id=order_id,
            line_id="1",
            line_index=0,
            customer_id="C-1",
            priority=0,
            quantity=quantity,
        )

    source = CommandSource(topic="shipments", partition=0, offset=0)
    allocation.apply_commands(
        [
            _commands("S", 1000, ReceiveStock(**cause(1), receipt_id="R-1", quantity=2)),
            _commands("S", 2000, line(2, "O-1", 2)),
            _commands(
                "S",
                3000,
                ShipLine(
                    **cause(3),
                    shipment_id="SH-1",
                    order_id="O-1",
                    line_id="1",
                    quantity=1,
                    source=source,
                ),
            ),
            _commands(
                "S",
                4000,
                ExpectInbound(**cause(4), inbound_id="PO-1", quantity=5, expected_at=day(4)),
            ),
            _commands("S", 5000, line(5, "O-2", 3)),
        ],
        Tracking("sku-commands-0", 5000),
    )
    return allocation


def test_the_streamed_rows_carry_the_new_columns(tmp_path: Path) -> None:
    models = ReadModels(ReadStore(f"sqlite:///{tmp_path}/read"), _an_allocation_log(tmp_path))
    while models.catch_up():
        pass

    latest = {(row["topic"], row["key"]): row["value"] for row in models.outbox()}
    queued = json.loads(latest["backorder-queue", "O-2|1"])
    assert (queued["quantity"], queued["eta"]) == (3, "2026-11-29T10:00:00+00:00")
    demand = json.loads(latest["demand-history", "S|2026-11-25"])
    assert (demand["shipped"], demand["expired"], demand["received"]) == (1, 0, 2)


# --- pages: the read models take the log a page at a time ---------------------------------


def _full_log(tmp_path: Path, seed: int = 21) -> Allocation:
    """An allocation log with every kind of event the read models read, over several SKUs
    (the integration tests' history: policies, inbounds, receipts against them, shipments,
    expiries, cancellations, rejections)."""
    from tests.integration.test_read_models import full_history

    allocation = Allocation(env=application_env(f"sqlite:///{tmp_path}/log", "allocation"))
    history = full_history(seed, inputs=300)
    for start in range(0, len(history), 50):
        allocation.apply_commands(history[start : start + 50], Tracking("history", start + 1))
    return allocation


def _every_row(store: ReadStore, projection: Projection, table: str) -> dict[str, Any]:
    """Each of the generation's tables, row by row (their keys are their first columns)."""
    return {
        view: store.read(f"SELECT * FROM {view_table} ORDER BY 1, 2, 3")
        for view, view_table in projection.views(table).items()
    }


@pytest.mark.parametrize("page", [100_000, 37])
def test_a_page_applied_at_once_leaves_the_rows_its_events_leave_one_by_one(
    tmp_path: Path, store: ReadStore, page: int
) -> None:
    allocation = _full_log(tmp_path)
    events = list(events_of(allocation))
    log = AllocationLog(allocation)
    for projection in (kind(store) for kind in PROJECTIONS):
        one_by_one, paged = f"{projection.name}_one_by_one", f"{projection.name}_paged"
        kinds: set[str] = set()
        with store.transaction() as tx:
            projection.create(tx, one_by_one)
            projection.create(tx, paged)
            singly: set[Change] = set()
            for position, event in events:
                singly.update(projection.apply(event, tx, one_by_one, position))
            at_once: set[Change] = set()
            position = 0
            while (found := log.page(position, page)).count:
                at_once.update(projection.apply_page(tx, paged, found.facts))
                kinds.update(fact["kind"] for fact in found.facts)
                position = found.last

        assert kinds == set(EVENTS), "the log has every kind of event the read models read"
        expected = _every_row(store, projection, one_by_one)
        assert all(expected.values()), f"{projection.name}: rows to compare"
        assert _every_row(store, projection, paged) == expected, projection.name
        assert at_once == singly, f"{projection.name}: the same rows changed, for the streams"


def test_the_log_is_read_as_the_mapper_reads_it(tmp_path: Path, store: ReadStore) -> None:
    """The runner decodes the stored state itself (orjson, only what the read models read):
    each event reads as the library's mapper decodes it, times in ISO text."""
    allocation = _full_log(tmp_path, seed=22)
    # An event recorded before its class had `eta` (version 1 of the contract): no field.
    with sqlite3.connect(tmp_path / "log-allocation.db") as connection:
        [(rowid, state)] = connection.execute(
            "SELECT rowid, state FROM stored_events WHERE topic LIKE '%.LineBackordered' LIMIT 1"
        ).fetchall()
        older = json.loads(state)
        del older["eta"]
        connection.execute(
            "UPDATE stored_events SET state = ? WHERE rowid = ?",
            [json.dumps(older).encode(), rowid],
        )
    log = AllocationLog(allocation)
    assert log.plain_json

    page = log.page(0, 100_000)
    by_position = {fact.pop("notification_id"): fact for fact in page.facts}
    expected = {
        position: fact
        for position, event in events_of(allocation)
        if (fact := fact_of(event)) is not None
    }

    assert by_position == expected
    assert by_position[rowid]["eta"] is None  # the class's default
    assert page.count == allocation.recorder.max_notification_id()
    assert len(page.facts) < page.count, "events no read model reads are skipped"


async def test_the_feed_is_woken_by_a_commit_to_the_log_and_wakes_the_publisher(
    tmp_path: Path, store: ReadStore
) -> None:
    """With an hour to wait when idle, the read models still follow a new event at once:
    they wait on the log's Wakeup; a commit that queued changes sets the publisher's."""
    allocation = _an_allocation_log(tmp_path)
    models = ReadModels(store, allocation)
    while models.catch_up():
        pass

    class Counted(Wakeup):
        sets = 0

        def set(self) -> None:
            self.sets += 1
            super().set()

    class Watched(Wakeup):
        waits = 0

        async def wait(self, seconds: float, stopping: asyncio.Event | None = None) -> None:
            self.waits += 1
            await super().wait(seconds, stopping)

    models.forget_outbox(10**9)
    wake, changed, stopping = Watched(), Counted(), asyncio.Event()
    feed = asyncio.create_task(follow(models, stopping, idle=3600, wake=wake, changed=changed))
    try:
        await until(lambda: wake.waits > 0, what="the feed idle, waiting")
        cause = {"causation_id": cause_id(99), "occurred_at": T0 + timedelta(days=1)}
        allocation.apply_commands(
            [_commands("S", 9000, ReceiveStock(**cause, receipt_id="R-2", quantity=3))],
            Tracking("sku-commands-0", 9000),
        )
        wake.set()  # as the allocation consumer does after its commit

        await until(lambda: models.position() == models.head(), what="the receipt applied")
        await until(lambda: changed.sets > 0, what="the publisher woken")
    finally:
        stopping.set()
        await feed
    queued = {(row["topic"], row["key"]) for row in models.outbox()}
    assert ("backorder-queue", "O-2|1") in queued  # the receipt filled O-2's backorder
