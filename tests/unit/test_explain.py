"""Explaining an order (issue 12, point 1): each decision about a line with the input that
caused it, and every receipt or release that filled someone else while the line waited,
with the queue rule that put them ahead (services/allocation/queue.py: higher priority, then
the earlier order, then the earlier arrival). Stories of one SKU, read from its events."""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator

from services.allocation.domain import Cause, Sku
from services.allocation.queue import QueueEntry
from services.operations.explain import (
    InputCause,
    LineExplanation,
    ReleasedUnits,
    ServedAhead,
    ServedLine,
    explain_events,
)
from tests.unit.stories import SkuStory, at, cause_id, day

SKU = "SKU-RED-M"


def _no_queue_needed(version: int) -> Iterable[QueueEntry]:
    raise AssertionError(f"every queued line was in the events read (asked for {version})")


def explain(
    story: SkuStory, order_id: str, *line_ids: str, events: Iterable[object] | None = None
) -> dict[str, LineExplanation]:
    lines = dict.fromkeys(line_ids or ("1",), SKU)
    read = story.history if events is None else events
    return explain_events(order_id, lines, read, _no_queue_needed)


def decisions(line: LineExplanation) -> list[tuple[str, int, str]]:
    return [(d.decision, d.quantity, d.cause.input) for d in line.decisions]


def test_each_decision_names_the_input_that_caused_it_its_event_id_and_business_time() -> None:
    story = SkuStory(SKU)
    story.receive(2)  # position 1
    story.place("O-1", 5, minutes=30)  # position 2: 2 allocated, 3 queued
    story.receive(3)  # position 3: the 3 filled
    story.ship("O-1", 5)  # position 4

    [line] = explain(story, "O-1").values()

    assert decisions(line) == [
        ("LineAllocated", 2, "OrderPlaced"),
        ("LineBackordered", 3, "OrderPlaced"),
        ("BackorderFilled", 3, "StockReceived"),
        ("LineShipped", 5, "ShipmentDispatched"),
    ]
    assert line.decisions[0].cause == InputCause("OrderPlaced", cause_id(2), at(30))
    assert line.decisions[2].cause == InputCause("StockReceived", cause_id(3), at(0))
    assert line.decisions[2].remaining == 0
    assert (line.decisions[3].shipment_id, line.decisions[3].remaining) == ("S-1", 0)
    assert (line.ordered, line.priority, line.placed_at, line.arrival) == (5, 0, at(30), 2)
    assert line.served_ahead == []  # nobody else was served while it waited


def test_a_receipt_that_went_to_a_higher_priority_line_says_it_was_ahead_by_priority() -> None:
    story = SkuStory(SKU)
    story.place("O-1", 3, minutes=0)  # queued first
    story.place("O-2", 2, minutes=60, priority=5)  # later, but more urgent
    story.receive(2)  # "Tuesday's" stock

    [line] = explain(story, "O-1").values()

    assert line.served_ahead == [
        ServedAhead(
            cause=InputCause("StockReceived", cause_id(3), at(0)),
            waiting=3,
            receipt_id="R-3",
            received=2,
            served=[ServedLine("O-2", "1", 2, "priority", 5, at(60), 2)],
            line_got=0,
        )
    ]
    assert decisions(line) == [("LineBackordered", 3, "OrderPlaced")]


def test_an_order_placed_earlier_that_arrived_later_is_ahead_by_order_time() -> None:
    story = SkuStory(SKU)
    story.place("O-LATE", 3, minutes=30)
    story.place("O-EARLY", 2, minutes=10)  # occurred before O-LATE, reached the SKU after
    story.receive(4)

    [line] = explain(story, "O-LATE").values()

    [served] = line.served_ahead
    assert served.served == [ServedLine("O-EARLY", "1", 2, "order time", 0, at(10), 2)]
    assert (served.waiting, served.line_got) == (3, 2)  # it got the rest, after O-EARLY
    assert decisions(line)[-1] == ("BackorderFilled", 2, "StockReceived")


def test_with_the_same_priority_and_order_time_the_earlier_arrival_is_ahead() -> None:
    story = SkuStory(SKU)
    story.place("O-1", 2, minutes=5)
    story.place("O-2", 2, minutes=5)
    story.receive(1)
    story.receive(3)

    [line] = explain(story, "O-2").values()

    assert [(s.cause.event_id, s.served, s.line_got) for s in line.served_ahead] == [
        (cause_id(3), [ServedLine("O-1", "1", 1, "arrival", 0, at(5), 1)], 0),
        (cause_id(4), [ServedLine("O-1", "1", 1, "arrival", 0, at(5), 1)], 2),
    ]


def test_a_cancellations_release_re_offered_to_someone_else_names_what_was_released() -> None:
    story = SkuStory(SKU)
    story.receive(2)
    story.place("O-1", 2)  # takes the 2
    story.place("O-2", 2, priority=1)  # queued ahead of O-3
    story.place("O-3", 1)
    story.cancel("O-1")  # position 5: releases 2, which go to O-2

    waiting = explain(story, "O-3")["1"]
    cancelled = explain(story, "O-1")["1"]

    assert waiting.served_ahead == [
        ServedAhead(
            cause=InputCause("OrderCancelled", cause_id(5), at(0)),
            waiting=1,
            released=[ReleasedUnits("O-1", "1", 2)],
            served=[ServedLine("O-2", "1", 2, "priority", 1, at(0), 3)],
        )
    ]
    assert decisions(cancelled) == [
        ("LineAllocated", 2, "OrderPlaced"),
        ("AllocationReleased", 2, "OrderCancelled"),
    ]


def test_an_expired_backorder_was_cancelled_by_a_clock_tick() -> None:
    story = SkuStory(SKU)
    story.set_policy("allow", max_wait_days=2)
    story.place("O-1", 3)
    story.tick(day(3))  # position 3

    [line] = explain(story, "O-1").values()

    assert decisions(line) == [
        ("LineBackordered", 3, "OrderPlaced"),
        ("BackorderCancelled", 3, "ClockTicked"),
    ]
    assert line.decisions[-1].cause == InputCause("ClockTicked", cause_id(3), day(3))
    assert line.decisions[-1].reason == "expired"


def test_a_promised_date_that_moved_is_explained_by_the_input_that_moved_it() -> None:
    story = SkuStory(SKU)
    story.expect("PO-1", 5, day(4))
    story.place("O-1", 3)  # promised day 4
    story.expect("PO-1", 5, day(6))  # position 3: the supplier is two days late

    [line] = explain(story, "O-1").values()

    changed = line.decisions[-1]
    assert (changed.decision, changed.cause.input, changed.cause.event_id) == (
        "BackorderEtaChanged",
        "InboundExpected",
        cause_id(3),
    )
    assert (changed.previous_eta, changed.eta) == (day(4), day(6))


def test_another_line_of_the_same_order_served_first_is_named_too() -> None:
    story = SkuStory(SKU)
    # One order, two lines of this SKU: one input, a command (and an arrival) per line.
    first = story.next_cause()
    second = Cause(first.causation_id, first.occurred_at, story.next_cause().position, step=1)
    story.sku.begin_input()
    story.place("O-1", 2, line_id="a", line_index=0, cause=first)
    story.place("O-1", 2, line_id="b", line_index=1, cause=second)
    story.sku.end_input(second)
    story.receive(2)

    explained = explain(story, "O-1", "a", "b")

    assert explained["a"].served_ahead == []
    [served] = explained["b"].served_ahead
    assert served.served == [ServedLine("O-1", "a", 2, "arrival", 0, at(0), 1)]


def test_a_line_queued_before_the_events_read_is_compared_as_the_sku_held_it() -> None:
    story = SkuStory(SKU)
    story.place("O-1", 2, priority=3)  # queued long before O-2
    before = copy.deepcopy(story.sku)
    start = len(story.history)
    story.place("O-2", 2)
    story.receive(2)
    asked: list[int] = []

    def queue_at(version: int) -> Iterable[QueueEntry]:
        asked.append(version)
        return before.queue  # O-1 is still queued just before its fill

    [line] = explain_events("O-2", {"1": SKU}, story.history[start:], queue_at).values()

    [served] = line.served_ahead
    assert served.served == [ServedLine("O-1", "1", 2, "priority", 3, at(0), 1)]
    assert asked == [story.history[-1].originator_version - 1]  # type: ignore[attr-defined]


def test_reading_stops_once_every_line_of_the_order_is_settled() -> None:
    story = SkuStory(SKU)
    story.receive(1)
    story.place("O-1", 1)
    story.ship("O-1", 1)  # settled
    settled_at = len(story.history)
    for n in range(5):
        story.place(f"O-{n + 2}", 1)
    read: list[object] = []

    def reading(events: list[object]) -> Iterator[object]:
        for event in events:
            read.append(event)
            yield event

    [line] = explain(story, "O-1", events=reading(story.history)).values()

    assert decisions(line)[-1] == ("LineShipped", 1, "ShipmentDispatched")
    assert len(read) == settled_at + 1  # the first event of the next input, and no more
    assert isinstance(read[-1], Sku.LinePlaced)


def test_a_line_whose_placement_is_not_among_the_events_is_left_out() -> None:
    story = SkuStory(SKU)
    story.place("O-1", 1)
    later = len(story.history)
    story.receive(1)

    assert explain(story, "O-1", events=story.history[later:]) == {}
