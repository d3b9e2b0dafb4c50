"""Properties of every history: random commands against one SKU, checked after each one.

A small reference model restates the allocation rules independently of the aggregate; the
aggregate's decisions must equal the model's, and the contract's invariants must hold.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from eventsourcing.domain import Snapshot
from eventsourcing.persistence import Tracking
from hypothesis import given, settings
from hypothesis import strategies as st

from events.commands import CancelLine, PlaceLine, ReceiveStock, SkuCommand, SkuCommands
from services.allocation.application import Allocation
from services.allocation.domain import Cause, Sku
from services.allocation.translate import decision_message
from tests.unit.stories import Decision, at, cause_id, decided, event_fields, placed_once

SKU = "SKU-PROP"
MODEST = settings(max_examples=150, deadline=None)


@dataclass(frozen=True)
class Place:
    order_id: str
    quantity: int
    priority: int
    minutes: int
    cancelled_before: int
    backorders_allowed: bool


@dataclass(frozen=True)
class Receive:
    quantity: int


@dataclass(frozen=True)
class Cancel:
    order_id: str
    quantity: int | None


Step = Place | Receive | Cancel

order_ids = st.sampled_from([f"O-{n}" for n in range(10)])
places = st.builds(
    Place,
    order_id=order_ids,
    quantity=st.integers(1, 12),
    priority=st.integers(-1, 2),
    minutes=st.integers(0, 5),
    cancelled_before=st.sampled_from([0, 0, 0, 0, 1, 3, 20]),
    backorders_allowed=st.sampled_from([True, True, True, False]),
)
receives = st.builds(Receive, quantity=st.integers(1, 8))
cancels = st.builds(Cancel, order_id=order_ids, quantity=st.none() | st.integers(1, 15))


histories = st.lists(
    st.one_of(places, places, places, receives, cancels), min_size=8, max_size=40
).map(lambda steps: placed_once(steps, Place))


def position_of(index: int) -> int:
    """Positions as the allocation application numbers them: message position x 1000."""
    return (index + 1) * 1000


def cause_of(index: int, step: Step) -> Cause:
    minutes = step.minutes if isinstance(step, Place) else 100 + index
    return Cause(cause_id(index), at(minutes), position_of(index))


def apply(sku: Sku, index: int, step: Step, cause: Cause | None = None) -> list[Any]:
    """Issues one step as a command and returns the events it emitted."""
    cause = cause or cause_of(index, step)
    if isinstance(step, Place):
        sku.place_line(
            cause,
            order_id=step.order_id,
            line_id="1",
            line_index=0,
            customer_id=f"C-{step.order_id}",
            priority=step.priority,
            quantity=step.quantity,
            cancelled_before_placement=step.cancelled_before,
            backorders_allowed=step.backorders_allowed,
        )
    elif isinstance(step, Receive):
        sku.receive_stock(cause, receipt_id=f"R-{index}", quantity=step.quantity)
    else:
        sku.cancel_line(cause, order_id=step.order_id, line_id="1", quantity=step.quantity)
    return list(sku.collect_events())


def fresh_sku() -> Sku:
    sku = Sku.register(SKU)
    sku.collect_events()
    return sku


# --- the reference model ------------------------------------------------------------------


@dataclass
class ModelLine:
    order_id: str
    priority: int
    minutes: int
    arrival: int
    ordered: int
    allocated: int = 0
    backordered: int = 0
    cancelled: int = 0
    rejected: int = 0


class Model:
    """The contract's allocation rules, restated as plainly as possible."""

    def __init__(self) -> None:
        self.received = 0
        self.available = 0
        self.lines: dict[str, ModelLine] = {}

    def queue(self) -> list[ModelLine]:
        waiting = [line for line in self.lines.values() if line.backordered]
        return sorted(waiting, key=lambda line: (-line.priority, line.minutes, line.arrival))

    def step(self, index: int, step: Step) -> list[Decision]:
        if isinstance(step, Place):
            return self.place(index, step)
        if isinstance(step, Receive):
            self.received += step.quantity
            self.available += step.quantity
            return self.fill()
        return self.cancel(step)

    def place(self, index: int, step: Place) -> list[Decision]:
        if step.order_id in self.lines:
            return []
        line = ModelLine(step.order_id, step.priority, step.minutes, index, step.quantity)
        self.lines[step.order_id] = line
        line.cancelled = min(step.cancelled_before, step.quantity)
        wanted = step.quantity - line.cancelled
        taken = min(self.available, wanted)
        decisions: list[Decision] = []
        if taken:
            self.available -= taken
            line.allocated = taken
            decisions.append(("LineAllocated", step.order_id, "1", taken))
        rest = wanted - taken
        if rest and not step.backorders_allowed:
            line.rejected = rest
            decisions.append(("LineRejected", step.order_id, "1", rest, "backorders_denied"))
        elif rest:
            line.backordered = rest
            position = self.queue().index(line) + 1
            decisions.append(("LineBackordered", step.order_id, "1", rest, position))
        return decisions

    def cancel(self, step: Cancel) -> list[Decision]:
        line = self.lines.get(step.order_id)
        if line is None:
            return []
        outstanding = line.allocated + line.backordered
        to_cancel = outstanding if step.quantity is None else min(step.quantity, outstanding)
        from_queue = min(to_cancel, line.backordered)
        released = to_cancel - from_queue
        decisions: list[Decision] = []
        if from_queue:
            line.backordered -= from_queue
            line.cancelled += from_queue
            decisions.append(("BackorderCancelled", step.order_id, "1", from_queue))
        if released:
            line.allocated -= released
            line.cancelled += released
            self.available += released
            decisions.append(("AllocationReleased", step.order_id, "1", released))
            decisions += self.fill()
        return decisions

    def fill(self) -> list[Decision]:
        decisions: list[Decision] = []
        while self.available and self.queue():
            head = self.queue()[0]
            filled = min(self.available, head.backordered)
            head.backordered -= filled
            head.allocated += filled
            self.available -= filled
            decisions.append(("BackorderFilled", head.order_id, "1", filled, head.backordered))
        return decisions


# --- invariants ---------------------------------------------------------------------------


def assert_conserved(sku: Sku, steps: list[Step]) -> None:
    """Every line adds up to what was ordered, and the SKU's stock to what was received.

    Each side is counted on its own: the lines' allocations from the lines, receipts from
    the history given (`Sku.allocated` is derived from `received - available`, so comparing
    those two would prove nothing)."""
    for line in sku.lines.values():
        parts = (line["allocated"], line["backordered"], line["cancelled"], line["rejected"])
        assert min(parts) >= 0, line
        assert sum(parts) == line["ordered"], line
    held = sum(line["allocated"] for line in sku.lines.values())
    received = sum(step.quantity for step in steps if isinstance(step, Receive))
    assert sku.available >= 0
    assert sku.received == received
    assert sku.available + held == received
    assert sku.allocated == held


def assert_queue_in_order(sku: Sku, arrivals: dict[str, int]) -> None:
    queued = sku.queued_lines()
    keys = [(line["order_id"], line["line_id"]) for line in queued]
    waiting = {
        (line["order_id"], line["line_id"]) for line in sku.lines.values() if line["backordered"]
    }
    assert len(keys) == len(set(keys)) == len(waiting)
    assert set(keys) == waiting
    expected = sorted(
        queued, key=lambda line: (-line["priority"], line["placed_at"], arrivals[line["order_id"]])
    )
    assert queued == expected
    assert sku.backordered == sum(line["backordered"] for line in queued)
    if queued:
        assert sku.available == 0


# --- properties of the aggregate ----------------------------------------------------------


@MODEST
@given(histories)
def test_decisions_follow_the_allocation_rules(steps: list[Step]) -> None:
    sku, model = fresh_sku(), Model()

    for index, step in enumerate(steps):
        assert decided(apply(sku, index, step)) == model.step(index, step), (index, step)

    assert (sku.received, sku.available) == (model.received, model.available)


@MODEST
@given(histories)
def test_quantity_is_conserved_and_nothing_is_negative(steps: list[Step]) -> None:
    sku = fresh_sku()

    for index, step in enumerate(steps):
        apply(sku, index, step)
        assert_conserved(sku, steps[: index + 1])


@MODEST
@given(histories)
def test_the_queue_is_strictly_ordered_and_no_stock_waits_beside_it(steps: list[Step]) -> None:
    sku = fresh_sku()
    arrivals: dict[str, int] = {}

    for index, step in enumerate(steps):
        if isinstance(step, Place):
            arrivals.setdefault(step.order_id, index)
        apply(sku, index, step)
        assert_queue_in_order(sku, arrivals)


@MODEST
@given(histories)
def test_decision_quantities_account_for_the_line(steps: list[Step]) -> None:
    sku = fresh_sku()
    events = [event for index, step in enumerate(steps) for event in apply(sku, index, step)]

    for line in sku.lines.values():
        moved: dict[str, int] = {}
        for row in decided(events):
            if row[1] == line["order_id"]:
                moved[row[0]] = moved.get(row[0], 0) + row[3]
        allocated = moved.get("LineAllocated", 0) + moved.get("BackorderFilled", 0)
        assert allocated - moved.get("AllocationReleased", 0) == line["allocated"]
        assert moved.get("LineRejected", 0) == line["rejected"]
        backordered = moved.get("LineBackordered", 0) - moved.get("BackorderFilled", 0)
        assert backordered - moved.get("BackorderCancelled", 0) == line["backordered"]


@MODEST
@given(histories)
def test_applying_any_command_twice_equals_applying_it_once(steps: list[Step]) -> None:
    once, twice = fresh_sku(), fresh_sku()

    for index, step in enumerate(steps):
        expected = apply(once, index, step)
        first = apply(twice, index, step)
        again = apply(twice, index, step)
        assert again == []
        assert event_fields(first) == event_fields(expected)

    assert (twice.lines, twice.queue) == (once.lines, once.queue)
    assert (twice.received, twice.available, twice.version) == (
        once.received,
        once.available,
        once.version,
    )


@MODEST
@given(histories)
def test_the_same_history_gives_identical_decisions(steps: list[Step]) -> None:
    first, second = fresh_sku(), fresh_sku()

    events = [e for index, step in enumerate(steps) for e in apply(first, index, step)]
    replayed = [e for index, step in enumerate(steps) for e in apply(second, index, step)]

    assert event_fields(events) == event_fields(replayed)
    messages = [m.model_dump() for m in map(decision_message, events) if m is not None]
    assert messages == [m.model_dump() for m in map(decision_message, replayed) if m is not None]
    assert len(messages) == len(decided(events))


@pytest.fixture(scope="module")
def mapper_app() -> Iterator[Allocation]:
    app = Allocation(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    yield app
    app.close()


@MODEST
@given(histories, receives)
def test_a_snapshot_restores_the_same_state(
    mapper_app: Allocation, steps: list[Step], receipt: Receive
) -> None:
    sku = fresh_sku()
    for index, step in enumerate(steps):
        apply(sku, index, step)
    stored = mapper_app.mapper.to_stored_event(Snapshot.take(sku))

    snapshot = mapper_app.mapper.to_domain_event(stored)
    assert isinstance(snapshot, Snapshot)
    restored = snapshot.mutate(None)

    assert isinstance(restored, Sku)
    assert (restored.id, restored.version, restored.sku) == (sku.id, sku.version, sku.sku)
    assert (restored.received, restored.available) == (sku.received, sku.available)
    assert (restored.lines, restored.queue) == (sku.lines, sku.queue)
    assert restored.last_position == sku.last_position
    after = len(steps)
    assert event_fields(apply(restored, after, receipt)) == event_fields(apply(sku, after, receipt))


# --- through the Allocation application ---------------------------------------------------


class SnapshottingAllocation(Allocation):
    """Snapshots every few events, so that reading back goes through snapshots."""

    snapshotting_intervals = {Sku: 4}  # noqa: RUF012 - eventsourcing's class-level config


def command_of(index: int, step: Step) -> SkuCommand:
    cause = cause_of(index, step)
    if isinstance(step, Place):
        return PlaceLine(
            causation_id=cause.causation_id,
            occurred_at=cause.occurred_at,
            order_id=step.order_id,
            line_id="1",
            line_index=0,
            customer_id=f"C-{step.order_id}",
            priority=step.priority,
            quantity=step.quantity,
            cancelled_before_placement=step.cancelled_before,
            backorders_allowed=step.backorders_allowed,
        )
    if isinstance(step, Receive):
        return ReceiveStock(
            causation_id=cause.causation_id,
            occurred_at=cause.occurred_at,
            receipt_id=f"R-{index}",
            quantity=step.quantity,
        )
    return CancelLine(
        causation_id=cause.causation_id,
        occurred_at=cause.occurred_at,
        order_id=step.order_id,
        line_id="1",
        quantity=step.quantity,
    )


@settings(max_examples=40, deadline=None)
@given(histories, st.lists(st.integers(1, 6), min_size=1, max_size=40), st.data())
def test_the_application_decides_like_the_aggregate(
    steps: list[Step], batch_sizes: list[int], data: st.DataObject
) -> None:
    messages = [
        SkuCommands(sku=SKU, position=index + 1, commands=[command_of(index, step)])
        for index, step in enumerate(steps)
    ]
    batches: list[list[SkuCommands]] = []
    for size in batch_sizes * len(messages):
        if sum(map(len, batches)) >= len(messages):
            break
        start = sum(map(len, batches))
        batches.append(messages[start : start + size])
    expected_sku = fresh_sku()
    expected = [e for index, step in enumerate(steps) for e in apply(expected_sku, index, step)]

    with tempfile.TemporaryDirectory() as directory:
        env = {
            "PERSISTENCE_MODULE": "eventsourcing.sqlite",
            "SQLITE_DBNAME": str(Path(directory) / "allocation.db"),
        }
        app = SnapshottingAllocation(env=env)
        for batch in batches:
            app.apply_commands(batch, Tracking("sku-commands-0", batch[-1].position))
        redelivered = data.draw(st.sampled_from(batches))
        outcome = app.apply_commands(redelivered, None)
        notifications = app.recorder.select_notifications(start=0, limit=10_000)
        recorded = [app.mapper.to_domain_event(n) for n in notifications]
        app.close()
        reopened = SnapshottingAllocation(env=env)
        stored_sku = reopened.find_sku(SKU)
        tracked = reopened.process_recorder.max_tracking_id("sku-commands-0")
        reopened.close()

    # A message that moved nothing leaves no mark, so it may count as applied again.
    assert (outcome.applied + outcome.skipped, outcome.events) == (len(redelivered), 0)
    assert tracked == len(steps)
    got = [m.model_dump() for m in map(decision_message, recorded) if m is not None]
    assert got == [m.model_dump() for m in map(decision_message, expected) if m is not None]
    assert stored_sku is not None
    assert_conserved(stored_sku, steps)
    assert (stored_sku.received, stored_sku.available) == (
        expected_sku.received,
        expected_sku.available,
    )
    assert (stored_sku.lines, stored_sku.queue) == (expected_sku.lines, expected_sku.queue)
