"""Each read model's handling of each SKU event: given these events, these rows."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from projections.models import BackorderQueue, DemandHistory, OrderStatus, Projection, SkuPositions
from projections.queries import FILL_ORDER, order_status
from projections.store import ReadStore
from tests.unit.stories import SkuStory


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
            "available": 0,
            "allocated": 3,
            "backordered": 3,
            "open_backorders": 2,
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
            "available": 1,
            "allocated": 4,
            "backordered": 0,
            "open_backorders": 0,
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
        ([(2, 0, 0, 0)], "allocated"),
        ([(1, 1, 0, 0)], "partially_backordered"),
        ([(2, 0, 0, 0), (0, 3, 0, 0)], "partially_backordered"),
        ([(0, 2, 0, 0)], "backordered"),
        ([(0, 0, 2, 0)], "cancelled"),
        ([(0, 0, 1, 1)], "rejected"),
        ([(1, 0, 0, 1)], "allocated"),
    ],
)
def test_order_status_is_derived_from_what_its_lines_hold(
    lines: list[tuple[int, int, int, int]], status: str
) -> None:
    assert (
        order_status(
            [
                {"allocated": a, "backordered": b, "cancelled": c, "rejected": r}
                for a, b, c, r in lines
            ]
        )
        == status
    )
