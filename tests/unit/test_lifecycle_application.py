"""Version 2 through the Allocation application on SQLite (no broker): ticks visit only the
SKUs the Deadlines index names, a redelivered tick has no effect, a restart keeps the
deadlines, and one input's promised dates are restated once, after all its decisions."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from eventsourcing.persistence import Tracking

from events.commands import (
    CancelLine,
    ExpectInbound,
    PlaceLine,
    SetPolicy,
    SkuCommand,
    SkuCommands,
    SkuCommandsMessage,
    Tick,
    TickCommand,
)
from services.allocation.application import Allocation, AllocationOutcome
from services.allocation.domain import Sku, deadlines_aggregate_id
from tests.unit.stories import cause_id, day, told

PARTITION = "sku-commands-0"


class VisitRecordingAllocation(Allocation):
    """Remembers which SKUs it loaded or registered, so a test can tell whom a tick visited."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.visited: list[str] = []

    def sku(self, sku: str) -> Sku:
        self.visited.append(sku)
        return super().sku(sku)


@pytest.fixture
def store(tmp_path: Path) -> dict[str, str]:
    return {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(tmp_path / "a.db")}


@pytest.fixture
def app(store: dict[str, str]) -> Iterator[VisitRecordingAllocation]:
    allocation = VisitRecordingAllocation(env=store)
    yield allocation
    allocation.close()


# --- messages as intake's relay writes them ---------------------------------------------------


def message(sku: str, notification: int, *commands: SkuCommand) -> SkuCommands:
    return SkuCommands(sku=sku, position=notification * 1000, commands=list(commands))


def policy(notification: int, max_wait_days: int | None) -> SetPolicy:
    return SetPolicy(
        causation_id=cause_id(notification),
        occurred_at=day(0),
        backorders="allow",
        max_wait_days=max_wait_days,
    )


def line(
    notification: int,
    order_id: str,
    quantity: int,
    *,
    placed: datetime | None = None,
    line_id: str = "1",
    line_index: int = 0,
    priority: int = 0,
) -> PlaceLine:
    return PlaceLine(
        causation_id=cause_id(notification),
        occurred_at=placed or day(0),
        order_id=order_id,
        line_id=line_id,
        line_index=line_index,
        customer_id=f"C-{order_id}",
        priority=priority,
        quantity=quantity,
    )


def inbound(
    notification: int, inbound_id: str, quantity: int, expected_at: datetime
) -> ExpectInbound:
    return ExpectInbound(
        causation_id=cause_id(notification),
        occurred_at=day(0),
        inbound_id=inbound_id,
        quantity=quantity,
        expected_at=expected_at,
    )


def tick(notification: int, moment: datetime) -> Tick:
    return Tick(
        position=notification * 1000,
        tick=TickCommand(causation_id=cause_id(notification), occurred_at=moment),
    )


def apply(app: Allocation, *messages: SkuCommandsMessage) -> AllocationOutcome:
    """Applies a batch as the consumer does: tracked at its last position."""
    return app.apply_commands(messages, Tracking(PARTITION, messages[-1].position))


def recorded_since(app: Allocation, notification_id: int) -> list[object]:
    notifications = app.recorder.select_notifications(start=notification_id + 1, limit=1000)
    return [app.mapper.to_domain_event(n) for n in notifications]


def last_notification(app: Allocation) -> int:
    return app.recorder.max_notification_id() or 0


def three_skus(app: Allocation) -> None:
    """SKU-A waits 2 days at most, SKU-C 10 days, SKU-B has no max_wait_days: each has a
    line of 3 queued since day 0."""
    apply(
        app,
        message("SKU-A", 1, policy(1, 2)),
        message("SKU-C", 2, policy(2, 10)),
        message("SKU-A", 3, line(3, "O-A", 3)),
        message("SKU-B", 4, line(4, "O-B", 3)),
        message("SKU-C", 5, line(5, "O-C", 3)),
    )


def sku_version(app: Allocation, name: str) -> int:
    sku = app.find_sku(name)
    assert sku is not None
    return sku.version


# --- ticks --------------------------------------------------------------------------------


def test_the_deadlines_index_holds_each_sku_s_next_deadline_and_no_other_sku(
    app: VisitRecordingAllocation,
) -> None:
    three_skus(app)

    assert app.deadlines(PARTITION).due_times == {"SKU-A": day(2), "SKU-C": day(10)}


def test_a_tick_expires_the_due_lines_and_visits_only_the_skus_it_is_due_for(
    app: VisitRecordingAllocation,
) -> None:
    three_skus(app)
    untouched = {name: sku_version(app, name) for name in ("SKU-B", "SKU-C")}
    before = last_notification(app)
    app.visited.clear()

    outcome = apply(app, tick(6, day(2)))

    assert app.visited == ["SKU-A"]
    assert outcome.applied == 1
    assert told(recorded_since(app, before)) == [
        ("BackorderCancelled", "O-A", "1", 3, 0, "expired")
    ]
    assert {name: sku_version(app, name) for name in ("SKU-B", "SKU-C")} == untouched
    sku_a = app.find_sku("SKU-A")
    assert sku_a is not None
    assert sku_a.queued_lines() == []
    assert app.deadlines(PARTITION).due_times == {"SKU-C": day(10)}
    assert app.process_recorder.max_tracking_id(PARTITION) == 6000


def test_a_tick_before_every_deadline_visits_no_sku(app: VisitRecordingAllocation) -> None:
    three_skus(app)
    app.visited.clear()

    outcome = apply(app, tick(6, day(1.5)))

    assert app.visited == []
    assert outcome.events == 0
    assert app.deadlines(PARTITION).due_times == {"SKU-A": day(2), "SKU-C": day(10)}


def test_a_redelivered_tick_has_no_effect(app: VisitRecordingAllocation) -> None:
    three_skus(app)
    apply(app, tick(6, day(2)))
    before = last_notification(app)

    # Resent by the relay ahead of a new message, in one batch of the partition.
    apply(app, tick(6, day(2)), message("SKU-B", 7, line(7, "O-B2", 1)))

    assert told(recorded_since(app, before)) == [("LineBackordered", "O-B2", "1", 1, 2, None)]
    assert app.deadlines(PARTITION).due_times == {"SKU-C": day(10)}


def test_a_redelivered_tick_does_not_expire_lines_placed_after_it(
    app: VisitRecordingAllocation,
) -> None:
    three_skus(app)
    apply(app, tick(6, day(2)))
    # An order from day -5, placed after the tick: already past its 2 days at that tick.
    apply(app, message("SKU-A", 7, line(7, "O-LATE", 1, placed=day(-5))))
    assert app.deadlines(PARTITION).due_times["SKU-A"] == day(-3)
    before = last_notification(app)
    app.visited.clear()

    apply(app, tick(6, day(2)), message("SKU-B", 8, line(8, "O-B2", 1)))

    assert "SKU-A" in app.visited  # due, visited, but it has applied a later position
    assert told(recorded_since(app, before)) == [("LineBackordered", "O-B2", "1", 1, 2, None)]
    sku_a = app.find_sku("SKU-A")
    assert sku_a is not None
    assert [queued["order_id"] for queued in sku_a.queued_lines()] == ["O-LATE"]


def test_the_next_tick_expires_a_line_placed_after_the_last_one(
    app: VisitRecordingAllocation,
) -> None:
    three_skus(app)
    apply(app, tick(6, day(2)))
    apply(app, message("SKU-A", 7, line(7, "O-LATE", 1, placed=day(-5))))
    before = last_notification(app)

    apply(app, tick(8, day(2)))  # the same time, a new tick

    assert told(recorded_since(app, before)) == [
        ("BackorderCancelled", "O-LATE", "1", 1, 0, "expired")
    ]
    assert app.deadlines(PARTITION).due_times == {"SKU-C": day(10)}


def test_a_line_that_left_the_queue_costs_a_visit_that_expires_nothing(
    app: VisitRecordingAllocation,
) -> None:
    three_skus(app)
    cancel = CancelLine(causation_id=cause_id(6), occurred_at=day(1), order_id="O-A", line_id="1")
    apply(app, message("SKU-A", 6, cancel))
    assert app.deadlines(PARTITION).due_times["SKU-A"] == day(2)  # a lower bound, not exact
    app.visited.clear()
    before = last_notification(app)

    apply(app, tick(7, day(2)))

    assert app.visited == ["SKU-A"]
    assert told(recorded_since(app, before)) == []
    assert app.deadlines(PARTITION).due_times == {"SKU-C": day(10)}


def test_a_policy_without_max_wait_days_takes_the_sku_off_the_deadlines(
    app: VisitRecordingAllocation,
) -> None:
    three_skus(app)

    apply(app, message("SKU-A", 6, policy(6, None)))

    assert app.deadlines(PARTITION).due_times == {"SKU-C": day(10)}


def test_a_longer_max_wait_days_moves_the_sku_s_deadline_later(
    app: VisitRecordingAllocation,
) -> None:
    three_skus(app)

    apply(app, message("SKU-A", 6, policy(6, 4)))
    app.visited.clear()
    outcome = apply(app, tick(7, day(3)))

    assert app.deadlines(PARTITION).due_times == {"SKU-A": day(4), "SKU-C": day(10)}
    assert (app.visited, outcome.events) == ([], 0)


def test_a_restart_continues_with_the_same_deadlines(store: dict[str, str]) -> None:
    first = Allocation(env=store)
    three_skus(first)
    first.close()

    restarted = VisitRecordingAllocation(env=store)
    assert restarted.deadlines(PARTITION).due_times == {"SKU-A": day(2), "SKU-C": day(10)}
    before = last_notification(restarted)
    apply(restarted, tick(6, day(10)))

    assert sorted(restarted.visited) == ["SKU-A", "SKU-C"]
    assert told(recorded_since(restarted, before)) == [
        ("BackorderCancelled", "O-A", "1", 3, 0, "expired"),
        ("BackorderCancelled", "O-C", "1", 3, 0, "expired"),
    ]
    assert restarted.deadlines(PARTITION).due_times == {}
    restarted.close()


class OftenSnapshottingAllocation(Allocation):
    snapshotting_intervals = {Sku: 2}  # noqa: RUF012 - eventsourcing's class-level config


def test_a_restart_reads_the_deadlines_through_their_snapshot(store: dict[str, str]) -> None:
    first = OftenSnapshottingAllocation(env=store)
    for n in range(1, 12):
        apply(
            first,
            message(f"SKU-{n}", 2 * n, policy(2 * n, 1 + n % 3)),
            message(f"SKU-{n}", 2 * n + 1, line(2 * n + 1, f"O-{n}", 1)),
        )
    due = first.deadlines(PARTITION).due_times
    assert first.snapshots is not None
    taken = first.snapshots.recorder.select_events(deadlines_aggregate_id(PARTITION))
    first.close()

    restarted = OftenSnapshottingAllocation(env=store)

    assert len(taken) >= 2
    assert len(due) == 11
    assert restarted.deadlines(PARTITION).due_times == due
    restarted.close()


def test_without_tracking_every_sku_shares_one_deadlines_index(
    app: VisitRecordingAllocation,
) -> None:
    app.apply_commands(
        [message("SKU-A", 1, policy(1, 2)), message("SKU-A", 2, line(2, "O-A", 1))], None
    )

    assert app.deadlines("all").due_times == {"SKU-A": day(2)}
    app.apply_commands([tick(3, day(2))], None)
    assert app.deadlines("all").due_times == {}


# --- promised dates of one input ------------------------------------------------------------


def test_an_order_with_two_lines_of_a_sku_restates_each_date_once_after_both_lines(
    app: VisitRecordingAllocation,
) -> None:
    """Contract, "Order of the decisions of one input, per SKU": the input's own decisions,
    then one BackorderEtaChanged per queued line whose date moved."""
    apply(
        app,
        message("S", 1, inbound(1, "PO-1", 2, day(5))),
        message("S", 2, inbound(2, "PO-2", 3, day(9))),
        message("S", 3, line(3, "O-X", 2)),  # promised day 5
    )
    before = last_notification(app)

    apply(
        app,
        message(
            "S",
            4,
            line(4, "O-U", 1, line_id="a", priority=1),
            line(4, "O-U", 3, line_id="b", line_index=1, priority=1),
        ),
    )

    decisions = [e for e in recorded_since(app, before) if isinstance(e, Sku.Decided)]
    assert told(decisions) == [
        ("LineBackordered", "O-U", "a", 1, 1, day(5)),
        ("LineBackordered", "O-U", "b", 3, 2, day(9)),
        ("BackorderEtaChanged", "O-X", "1", 2, None, day(5)),
    ]
    ids: list[UUID] = [e.decision_id for e in decisions]
    assert len(set(ids)) == len(ids)
