"""docs/contract.md, "Allocation rules (per SKU)": one test per rule, as given / when / then.

Each test gives a Sku some commands, then issues one and asserts the events it emitted.
"""

from __future__ import annotations

from dataclasses import FrozenInstanceError
from pathlib import Path
from uuid import uuid4

import pytest
from eventsourcing.persistence import Tracking

from events.commands import CancelLine, PlaceLine, ReceiveStock, SkuCommands
from events.decisions import BackorderFilled, LineBackordered, LineRejected
from services.allocation.application import Allocation
from services.allocation.domain import Cause, Sku
from services.allocation.translate import decision_message
from tests.unit.stories import SkuStory, at, decided

# --- a new line ---------------------------------------------------------------------------


def test_a_new_line_takes_what_is_available() -> None:
    story = SkuStory()
    story.receive(10)

    events = story.place("O-1", 4)

    assert decided(events) == [("LineAllocated", "O-1", "1", 4)]
    assert (story.sku.available, story.sku.allocated) == (6, 4)


def test_what_it_could_not_get_goes_on_the_backorder_queue() -> None:
    story = SkuStory()
    story.receive(3)

    events = story.place("O-1", 5)

    assert decided(events) == [
        ("LineAllocated", "O-1", "1", 3),
        ("LineBackordered", "O-1", "1", 2, 1),
    ]
    assert story.queue() == [("O-1", "1", 2)]
    assert story.sku.available == 0


def test_with_nothing_available_the_whole_line_is_backordered() -> None:
    story = SkuStory()

    events = story.place("O-1", 5)

    assert decided(events) == [("LineBackordered", "O-1", "1", 5, 1)]


def test_placing_a_line_records_what_was_ordered() -> None:
    story = SkuStory()

    events = story.place("O-1", 5, line_id="7", line_index=3, priority=2, minutes=4)

    placed = [event for event in events if isinstance(event, Sku.LinePlaced)]
    assert len(placed) == 1
    assert (placed[0].order_id, placed[0].line_id, placed[0].line_index) == ("O-1", "7", 3)
    assert (placed[0].ordered, placed[0].priority, placed[0].occurred_at) == (5, 2, at(4))
    assert placed[0].cancelled_before_placement == 0


def test_a_new_line_never_takes_stock_ahead_of_the_queue() -> None:
    story = SkuStory()
    story.place("O-1", 5)

    events = story.place("O-2", 1, priority=9)

    assert decided(events) == [("LineBackordered", "O-2", "1", 1, 1)]
    assert story.queue() == [("O-2", "1", 1), ("O-1", "1", 5)]


# --- the queue's order --------------------------------------------------------------------


def test_queue_serves_higher_priority_first() -> None:
    story = SkuStory()
    story.place("O-LOW", 2, priority=0)
    backordered = story.place("O-HIGH", 2, priority=5)

    events = story.receive(2)

    assert decided(backordered) == [("LineBackordered", "O-HIGH", "1", 2, 1)]
    assert decided(events) == [("BackorderFilled", "O-HIGH", "1", 2, 0)]
    assert story.queue() == [("O-LOW", "1", 2)]


def test_queue_serves_earlier_order_time_before_later() -> None:
    story = SkuStory()
    story.place("O-LATE", 2, minutes=30)
    backordered = story.place("O-EARLY", 2, minutes=10)

    events = story.receive(2)

    assert decided(backordered) == [("LineBackordered", "O-EARLY", "1", 2, 1)]
    assert decided(events) == [("BackorderFilled", "O-EARLY", "1", 2, 0)]


def test_priority_outranks_order_time() -> None:
    story = SkuStory()
    story.place("O-EARLY", 2, minutes=0, priority=0)
    story.place("O-LATE-URGENT", 2, minutes=60, priority=1)

    events = story.receive(2)

    assert decided(events) == [("BackorderFilled", "O-LATE-URGENT", "1", 2, 0)]


def test_queue_serves_arrival_order_when_priority_and_time_tie() -> None:
    story = SkuStory()
    story.place("O-FIRST", 2, minutes=5)
    second = story.place("O-SECOND", 2, minutes=5)

    events = story.receive(3)

    assert decided(second) == [("LineBackordered", "O-SECOND", "1", 2, 2)]
    assert decided(events) == [
        ("BackorderFilled", "O-FIRST", "1", 2, 0),
        ("BackorderFilled", "O-SECOND", "1", 1, 1),
    ]


def test_queue_position_reported_when_backordered() -> None:
    story = SkuStory()
    positions = [
        decided(story.place("O-A", 1, minutes=10)),
        decided(story.place("O-B", 1, minutes=20)),
        decided(story.place("O-C", 1, minutes=15)),
        decided(story.place("O-D", 1, minutes=99, priority=1)),
        decided(story.place("O-E", 1, minutes=20)),
    ]

    assert [rows[0][-1] for rows in positions] == [1, 2, 2, 1, 5]
    assert [order for order, _, _ in story.queue()] == ["O-D", "O-A", "O-C", "O-B", "O-E"]


def test_queue_position_counts_only_what_is_still_queued() -> None:
    story = SkuStory()
    story.place("O-A", 1)
    story.place("O-B", 1)
    story.receive(1)
    story.cancel("O-B")

    events = story.place("O-C", 1)

    assert decided(events) == [("LineBackordered", "O-C", "1", 1, 1)]


def test_lines_of_one_order_queue_in_line_order() -> None:
    story = SkuStory()
    story.place("O-1", 1, line_id="a", line_index=0)
    second = story.place("O-1", 1, line_id="b", line_index=1)

    events = story.receive(1)

    assert decided(second) == [("LineBackordered", "O-1", "b", 1, 2)]
    assert decided(events) == [("BackorderFilled", "O-1", "a", 1, 0)]


# --- stock that becomes available ---------------------------------------------------------


def test_receipt_fills_the_head_of_the_queue_first() -> None:
    story = SkuStory()
    story.place("O-1", 3)
    story.place("O-2", 3)

    events = story.receive(3)

    assert decided(events) == [("BackorderFilled", "O-1", "1", 3, 0)]
    assert story.queue() == [("O-2", "1", 3)]
    assert story.line("O-1")["allocated"] == 3


def test_partial_fill_when_stock_is_not_enough() -> None:
    story = SkuStory()
    story.place("O-1", 10)

    events = story.receive(4)

    assert decided(events) == [("BackorderFilled", "O-1", "1", 4, 6)]
    assert story.queue() == [("O-1", "1", 6)]
    assert story.sku.available == 0


def test_nobody_behind_the_head_is_served_while_the_head_waits() -> None:
    story = SkuStory()
    story.place("O-BIG", 10)
    story.place("O-SMALL", 1)

    events = story.receive(5)

    assert decided(events) == [("BackorderFilled", "O-BIG", "1", 5, 5)]
    assert story.line("O-SMALL")["allocated"] == 0
    assert story.queue() == [("O-BIG", "1", 5), ("O-SMALL", "1", 1)]


def test_a_receipt_fills_down_the_queue_and_the_rest_becomes_available() -> None:
    story = SkuStory()
    story.place("O-1", 2)
    story.place("O-2", 3)

    events = story.receive(10)

    assert decided(events) == [
        ("BackorderFilled", "O-1", "1", 2, 0),
        ("BackorderFilled", "O-2", "1", 3, 0),
    ]
    assert story.queue() == []
    assert (story.sku.available, story.sku.allocated, story.sku.received) == (5, 5, 10)


def test_a_fill_removes_the_filled_line_by_its_key() -> None:
    """A fill is always decided for the head, but applying one (as a replay does) takes
    off the line it names, never just the head."""
    story = SkuStory()
    story.place("O-1", 1)
    story.place("O-2", 1)
    story.place("O-3", 1)

    story.sku.trigger_event(
        Sku.BackorderFilled,
        position=4,
        sku=story.sku.sku,
        decision_id=uuid4(),
        causation_id=uuid4(),
        occurred_at=at(0),
        order_id="O-2",
        line_id="1",
        quantity=1,
        remaining_backordered=0,
    )

    assert [entry.key for entry in story.sku.queue] == ["O-1\n1", "O-3\n1"]
    assert story.sku.lines["O-2\n1"]["allocated"] == 1


def test_a_receipt_records_the_stock_received() -> None:
    story = SkuStory()

    events = story.receive(7)

    received = [event for event in events if isinstance(event, Sku.StockReceived)]
    assert [(event.receipt_id, event.quantity) for event in received] == [("R-1", 7)]
    assert decided(events) == []
    assert (story.sku.received, story.sku.available) == (7, 7)


# --- cancelling ---------------------------------------------------------------------------


def test_cancelling_removes_backordered_quantity_first() -> None:
    story = SkuStory()
    story.receive(2)
    story.place("O-1", 5)  # 2 allocated, 3 backordered

    events = story.cancel("O-1", 2)

    assert decided(events) == [("BackorderCancelled", "O-1", "1", 2)]
    line = story.line("O-1")
    assert (line["allocated"], line["backordered"], line["cancelled"]) == (2, 1, 2)
    assert story.queue() == [("O-1", "1", 1)]


def test_cancelling_then_releases_allocated_quantity() -> None:
    story = SkuStory()
    story.receive(2)
    story.place("O-1", 5)  # 2 allocated, 3 backordered

    events = story.cancel("O-1", 4)

    assert decided(events) == [
        ("BackorderCancelled", "O-1", "1", 3),
        ("AllocationReleased", "O-1", "1", 1),
    ]
    line = story.line("O-1")
    assert (line["allocated"], line["backordered"], line["cancelled"]) == (1, 0, 4)
    assert story.queue() == []
    assert story.sku.available == 1


def test_released_stock_is_at_once_offered_to_the_queue() -> None:
    story = SkuStory()
    story.receive(5)
    story.place("O-1", 5)
    story.place("O-2", 3)
    story.place("O-3", 3)

    events = story.cancel("O-1")

    assert decided(events) == [
        ("AllocationReleased", "O-1", "1", 5),
        ("BackorderFilled", "O-2", "1", 3, 0),
        ("BackorderFilled", "O-3", "1", 2, 1),
    ]
    assert story.sku.available == 0
    assert story.queue() == [("O-3", "1", 1)]


def test_cancelling_a_whole_line_cancels_everything_outstanding() -> None:
    story = SkuStory()
    story.receive(2)
    story.place("O-1", 5)

    events = story.cancel("O-1", None)

    assert decided(events) == [
        ("BackorderCancelled", "O-1", "1", 3),
        ("AllocationReleased", "O-1", "1", 2),
    ]
    assert story.line("O-1")["cancelled"] == 5


def test_cancelling_more_than_outstanding_cancels_what_is_outstanding() -> None:
    story = SkuStory()
    story.receive(1)
    story.place("O-1", 3)

    events = story.cancel("O-1", 1000)

    assert decided(events) == [
        ("BackorderCancelled", "O-1", "1", 2),
        ("AllocationReleased", "O-1", "1", 1),
    ]
    line = story.line("O-1")
    assert (line["ordered"], line["cancelled"], line["allocated"], line["backordered"]) == (
        3,
        3,
        0,
        0,
    )


def test_cancelling_a_line_with_nothing_outstanding_decides_nothing() -> None:
    story = SkuStory()
    story.place("O-1", 3)
    story.cancel("O-1")

    events = story.cancel("O-1", 1)

    assert decided(events) == []
    assert story.line("O-1")["cancelled"] == 3


def test_cancelling_a_line_the_sku_does_not_have_decides_nothing() -> None:
    story = SkuStory()
    story.receive(3)

    events = story.cancel("O-NOPE")

    assert events == []
    assert story.sku.available == 3


def test_cancelling_what_was_rejected_decides_nothing() -> None:
    story = SkuStory()
    story.place("O-1", 3, backorders_allowed=False)

    events = story.cancel("O-1")

    assert decided(events) == []
    assert story.line("O-1")["rejected"] == 3


def test_a_cancellation_that_came_first_is_never_allocated() -> None:
    story = SkuStory()
    story.receive(10)

    events = story.place("O-1", 5, cancelled_before_placement=2)

    assert decided(events) == [("LineAllocated", "O-1", "1", 3)]
    line = story.line("O-1")
    assert (line["ordered"], line["cancelled"], line["allocated"]) == (5, 2, 3)


def test_a_whole_line_cancelled_before_placement_leaves_nothing_to_allocate() -> None:
    story = SkuStory()
    story.receive(10)

    events = story.place("O-1", 5, cancelled_before_placement=5)

    assert decided(events) == []
    assert story.line("O-1")["cancelled"] == 5
    assert story.sku.available == 10
    assert story.queue() == []


def test_a_cancellation_that_came_first_never_cancels_more_than_ordered() -> None:
    story = SkuStory()

    events = story.place("O-1", 2, cancelled_before_placement=9)

    assert decided(events) == []
    assert story.line("O-1")["cancelled"] == 2


# --- idempotence --------------------------------------------------------------------------


def test_same_command_position_twice_has_one_effect() -> None:
    story = SkuStory()
    receipt = story.next_cause()
    placement = story.next_cause()
    cancellation = story.next_cause()

    assert decided(story.receive(2, cause=receipt)) == []
    assert story.receive(2, cause=receipt) == []
    assert len(decided(story.place("O-1", 5, cause=placement))) == 2
    assert story.place("O-1", 5, cause=placement) == []
    assert len(decided(story.cancel("O-1", 1, cause=cancellation))) == 1
    assert story.cancel("O-1", 1, cause=cancellation) == []

    line = story.line("O-1")
    assert (story.sku.received, line["allocated"], line["backordered"]) == (2, 2, 2)
    assert line["cancelled"] == 1


def test_an_earlier_command_position_has_no_effect() -> None:
    story = SkuStory()
    story.receive(5)

    events = story.receive(5, cause=Cause(uuid4(), at(0), 1))

    assert events == []
    assert story.sku.received == 5


def test_a_line_placed_again_is_ignored() -> None:
    story = SkuStory()
    story.receive(5)
    story.place("O-1", 2)

    events = story.place("O-1", 3)

    assert events == []
    assert story.line("O-1")["ordered"] == 2
    assert story.sku.available == 3


def test_same_message_position_twice_is_applied_once(tmp_path: Path) -> None:
    app = Allocation(
        env={"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(tmp_path / "a.db")}
    )
    message = SkuCommands(
        sku="SKU-1",
        position=1,
        commands=[
            ReceiveStock(causation_id=uuid4(), occurred_at=at(0), receipt_id="R-1", quantity=2),
            PlaceLine(
                causation_id=uuid4(),
                occurred_at=at(0),
                order_id="O-1",
                line_id="1",
                line_index=0,
                customer_id="C-1",
                priority=0,
                quantity=3,
            ),
        ],
    )
    first = app.apply_commands([message], Tracking("sku-commands-0", 1))

    again = app.apply_commands([message], None)

    assert (first.applied, first.skipped) == (1, 0)
    assert (again.applied, again.skipped, again.events) == (0, 1, 0)
    sku = app.find_sku("SKU-1")
    assert sku is not None
    assert (sku.received, sku.allocated, sku.backordered) == (2, 2, 1)
    assert app.process_recorder.max_tracking_id("sku-commands-0") == 1


def test_a_cancel_line_command_is_applied_through_the_application(tmp_path: Path) -> None:
    app = Allocation(
        env={"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(tmp_path / "a.db")}
    )
    place = PlaceLine(
        causation_id=uuid4(),
        occurred_at=at(0),
        order_id="O-1",
        line_id="1",
        line_index=0,
        customer_id="C-1",
        priority=0,
        quantity=3,
    )
    cancel = CancelLine(causation_id=uuid4(), occurred_at=at(1), order_id="O-1", line_id="1")
    app.apply_commands([SkuCommands(sku="S", position=1, commands=[place])], None)

    outcome = app.apply_commands([SkuCommands(sku="S", position=2, commands=[cancel])], None)

    assert outcome.applied == 1
    sku = app.find_sku("S")
    assert sku is not None
    assert "O-1\n1" not in sku.lines  # all cancelled: settled, and forgotten
    assert sku.queued_lines() == []


# --- backorder policy ---------------------------------------------------------------------


def test_backorders_denied_turn_the_rest_into_a_rejection() -> None:
    story = SkuStory()
    story.receive(2)

    events = story.place("O-1", 5, backorders_allowed=False)

    assert decided(events) == [
        ("LineAllocated", "O-1", "1", 2),
        ("LineRejected", "O-1", "1", 3, "backorders_denied"),
    ]
    assert story.queue() == []
    line = story.line("O-1")
    assert (line["allocated"], line["rejected"], line["backordered"]) == (2, 3, 0)


def test_backorders_denied_with_nothing_available_reject_the_whole_line() -> None:
    story = SkuStory()

    events = story.place("O-1", 4, backorders_allowed=False)

    assert decided(events) == [("LineRejected", "O-1", "1", 4, "backorders_denied")]


def test_backorders_denied_still_allocate_a_line_that_stock_covers() -> None:
    story = SkuStory()
    story.receive(4)

    events = story.place("O-1", 4, backorders_allowed=False)

    assert decided(events) == [("LineAllocated", "O-1", "1", 4)]


# --- decisions ----------------------------------------------------------------------------


def _history(story: SkuStory) -> list[object]:
    events: list[object] = []
    events += story.receive(3)
    events += story.place("O-1", 5)
    events += story.place("O-2", 2, priority=1)
    events += story.receive(4)
    events += story.cancel("O-1", 1)
    events += story.place("O-3", 2, backorders_allowed=False)
    return events


def test_decision_ids_are_deterministic() -> None:
    first, second = SkuStory(), SkuStory()

    ids = [e.decision_id for e in _history(first) if isinstance(e, Sku.Decided)]
    again = [e.decision_id for e in _history(second) if isinstance(e, Sku.Decided)]

    assert len(ids) == 8
    assert ids == again


def test_decision_ids_differ_for_another_cause() -> None:
    story = SkuStory()
    story.receive(1)
    one = story.place("O-1", 1)
    other = SkuStory()
    other.receive(1)
    other.position += 100

    another = other.place("O-1", 1)

    ids = [e.decision_id for e in one + another if isinstance(e, Sku.Decided)]
    assert len(ids) == 2
    assert len(set(ids)) == 2


def test_decision_ids_are_unique_in_a_history() -> None:
    events = _history(SkuStory())

    ids = [e.decision_id for e in events if isinstance(e, Sku.Decided)]

    assert len(ids) == len(set(ids))


def test_decision_ids_are_unique_when_one_cancellation_releases_two_lines(
    tmp_path: Path,
) -> None:
    """A whole-order cancellation of an order with two lines of one SKU is one sku-commands
    message whose two CancelLine commands share the causation_id. Each release fills the
    head of the queue: two decisions, so two ids (consumers dedupe on decision_id)."""
    app = Allocation(
        env={"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(tmp_path / "a.db")}
    )
    placed = uuid4()

    def place(order_id: str, line_id: str, index: int, quantity: int) -> PlaceLine:
        return PlaceLine(
            causation_id=placed if order_id == "O-1" else uuid4(),
            occurred_at=at(0),
            order_id=order_id,
            line_id=line_id,
            line_index=index,
            customer_id="C-1",
            priority=0,
            quantity=quantity,
        )

    receipt = ReceiveStock(causation_id=uuid4(), occurred_at=at(0), receipt_id="R", quantity=6)
    cancellation = uuid4()
    cancel = [
        CancelLine(causation_id=cancellation, occurred_at=at(1), order_id="O-1", line_id=line)
        for line in ("1", "2")
    ]
    app.apply_commands(
        [
            SkuCommands(sku="S", position=1, commands=[receipt]),
            SkuCommands(
                sku="S", position=2, commands=[place("O-1", "1", 0, 3), place("O-1", "2", 1, 3)]
            ),
            SkuCommands(sku="S", position=3, commands=[place("O-2", "1", 0, 10)]),
        ],
        None,
    )
    before = app.recorder.max_notification_id() or 0

    app.apply_commands([SkuCommands(sku="S", position=4, commands=cancel)], None)

    notifications = app.recorder.select_notifications(start=before + 1, limit=100)
    events = [app.mapper.to_domain_event(n) for n in notifications]
    assert decided(events) == [
        ("AllocationReleased", "O-1", "1", 3),
        ("BackorderFilled", "O-2", "1", 3, 7),
        ("AllocationReleased", "O-1", "2", 3),
        ("BackorderFilled", "O-2", "1", 3, 4),
    ]
    ids = [e.decision_id for e in events if isinstance(e, Sku.Decided)]
    assert len(set(ids)) == len(ids), "two different decisions share a decision_id"
    app.close()


def test_decisions_carry_their_cause() -> None:
    story = SkuStory()
    story.place("O-1", 2)
    cause = story.next_cause(minutes=42)

    events = story.receive(2, cause=cause)

    fills = [e for e in events if isinstance(e, Sku.BackorderFilled)]
    assert len(fills) == 1
    assert (fills[0].causation_id, fills[0].occurred_at) == (cause.causation_id, at(42))
    assert (fills[0].sku, fills[0].position) == ("SKU-RED-M", cause.position)


def test_decisions_translate_to_the_contract_messages() -> None:
    story = SkuStory()
    backordered = story.place("O-1", 3)
    filled = story.receive(1)
    rejected = story.place("O-2", 1, backorders_allowed=False)

    messages = [decision_message(e) for e in backordered + filled + rejected]

    decisions = [m for m in messages if m is not None]
    assert [type(m).__name__ for m in decisions] == [
        "LineBackordered",
        "BackorderFilled",
        "LineRejected",
    ]
    assert isinstance(decisions[0], LineBackordered)
    assert (decisions[0].queue_position, decisions[0].quantity) == (1, 3)
    assert isinstance(decisions[1], BackorderFilled)
    assert (decisions[1].remaining_backordered, decisions[1].quantity) == (2, 1)
    assert isinstance(decisions[2], LineRejected)
    assert decisions[2].reason == "backorders_denied"
    assert {(m.sku, m.order_id) for m in decisions} == {("SKU-RED-M", "O-1"), ("SKU-RED-M", "O-2")}
    assert messages.count(None) == 3  # two LinePlaced and one StockReceived are no decisions


# --- conservation -------------------------------------------------------------------------


def test_quantity_is_conserved_per_line_and_per_sku() -> None:
    story = SkuStory()
    _history(story)

    for line in story.sku.queued_lines() + list(story.sku.lines.values()):
        total = line["allocated"] + line["backordered"] + line["cancelled"] + line["rejected"]
        assert total == line["ordered"]
    held = sum(line["allocated"] for line in story.sku.lines.values())
    assert story.sku.available + held == story.sku.received


def test_stock_is_never_left_available_while_anyone_waits() -> None:
    story = SkuStory()
    story.place("O-1", 2)
    story.receive(1)
    story.place("O-2", 1)
    story.receive(1)

    assert story.queue() == [("O-2", "1", 1)]
    assert story.sku.available == 0


# --- what the SKU hands out ---------------------------------------------------------------


def test_what_the_sku_hands_out_cannot_change_its_queue() -> None:
    story = SkuStory()
    story.place("O-1", 2)
    story.place("O-2", 1)

    queued = story.sku.queued_lines()
    queued[0]["backordered"] = 0  # type: ignore[typeddict-readonly-mutated]
    queued.reverse()
    line = story.sku.lines["O-2\n1"]
    line["allocated"] = 1  # type: ignore[typeddict-readonly-mutated]

    assert story.queue() == [("O-1", "1", 2), ("O-2", "1", 1)]
    assert story.line("O-2")["allocated"] == 0
    assert decided(story.receive(2)) == [("BackorderFilled", "O-1", "1", 2, 0)]


def test_the_sku_s_lines_and_queue_entries_are_read_only() -> None:
    story = SkuStory()
    story.place("O-1", 2)

    with pytest.raises(TypeError):
        story.sku.lines["O-9\n1"] = story.sku.lines["O-1\n1"]  # type: ignore[index]
    with pytest.raises(FrozenInstanceError):
        story.sku.queue[0].key = "O-9\n1"  # type: ignore[misc]

    assert story.queue() == [("O-1", "1", 2)]
    assert list(story.sku.lines) == ["O-1\n1"]
