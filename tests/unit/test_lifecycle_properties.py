"""Properties of every history of version 2: random placements, receipts (for an inbound or
not), cancellations, shipments (some asking too much), policies, inbounds (new, revised,
withdrawn) and ticks (mostly later, sometimes earlier), against one SKU.

A reference model restates the contract from scratch after each command: the decisions it
must emit (its own, then one BackorderEtaChanged per queued line whose date moved, in queue
order), each line's account from the decisions, and every queued line's date from the open
inbounds and the queue. The aggregate keeps its dates by looking only near the inbounds'
boundaries; the model walks everything, so the two are independent.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pytest
from eventsourcing.domain import Snapshot
from eventsourcing.persistence import Tracking
from hypothesis import given, settings
from hypothesis import strategies as st

from events.commands import (
    CancelLine,
    PlaceLine,
    ReceiveStock,
    SetPolicy,
    SkuCommand,
    SkuCommands,
    SkuCommandsMessage,
    Tick,
    TickCommand,
)
from services.allocation import queue as backorder_queue
from services.allocation.application import Allocation, apply_command
from services.allocation.domain import BackorderMode, Cause, ShipmentSource, Sku, line_key
from services.allocation.queue import BackorderQueue, QueueEntry
from tests.unit.stories import Decision, cause_id, day, event_fields, placed_once, told

SKU = "SKU-LIFE"
MODEST = settings(max_examples=150, deadline=None)
INBOUND_IDS = ("PO-1", "PO-2", "PO-3")


@pytest.fixture(scope="module", autouse=True)
def small_queue_blocks() -> Iterator[None]:
    """Blocks of a few entries, so that these short histories split, empty and cross
    blocks of the queue as 50,000 queued lines would."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(backorder_queue, "BLOCK", 4)
        yield


# --- the inputs -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Place:
    order_id: str
    quantity: int
    priority: int
    half_days: int  # the order's time, in half days after T0
    cancelled_before: int
    backorders_allowed: bool


@dataclass(frozen=True)
class Receive:
    quantity: int
    inbound_id: str | None


@dataclass(frozen=True)
class Cancel:
    line: int  # which line: see Model.pick
    quantity: int | None


@dataclass(frozen=True)
class Ship:
    line: int  # which line: see Model.pick
    quantity: int | None  # None: all the line holds allocated (or 1 when it holds none)


@dataclass(frozen=True)
class Policy:
    backorders: BackorderMode
    limit: int | None
    max_wait_days: int | None


@dataclass(frozen=True)
class Expect:
    inbound_id: str
    quantity: int  # 0 withdraws
    expected_day: int


@dataclass(frozen=True)
class TickAfter:
    half_days: int  # from the last tick; negative: a tick earlier than the last one


Step = Place | Receive | Cancel | Ship | Policy | Expect | TickAfter

order_ids = st.sampled_from([f"O-{n}" for n in range(20)])
places = st.builds(
    Place,
    order_id=order_ids,
    quantity=st.integers(1, 8),
    priority=st.integers(0, 1),
    half_days=st.integers(0, 12),
    cancelled_before=st.sampled_from([0, 0, 0, 0, 0, 1, 9]),
    backorders_allowed=st.sampled_from([True, True, True, False]),
)
receipts = st.builds(
    Receive,
    quantity=st.integers(1, 6),
    inbound_id=st.sampled_from([None, None, *INBOUND_IDS, "PO-X"]),
)
lines = st.integers(0, 29)
cancellations = st.builds(Cancel, line=lines, quantity=st.none() | st.integers(1, 6))
shipments = st.builds(Ship, line=lines, quantity=st.none() | st.none() | st.integers(1, 6))
policies = st.builds(
    Policy,
    backorders=st.sampled_from(["allow", "allow", "allow", "deny", "limit"]),
    limit=st.integers(0, 20),
    max_wait_days=st.sampled_from([None, 1, 2, 3, 4]),
)
inbounds = st.builds(
    Expect,
    inbound_id=st.sampled_from(INBOUND_IDS),
    quantity=st.sampled_from([0, 1, 2, 3, 4, 5, 8, 12]),
    expected_day=st.integers(-2, 10),
)
ticks = st.builds(TickAfter, half_days=st.sampled_from([-4, -1, 1, 2, 3, 4, 6]))
# Weighted: placements fill the queue that the other inputs then move. (one_of would
# pick each distinct strategy as often as the others, repeated or not.)
kinds: list[st.SearchStrategy[Step]] = [
    *[places] * 6,
    *[inbounds] * 2,
    *[receipts] * 2,
    cancellations,
    *[shipments] * 2,
    *[policies] * 2,
    *[ticks] * 2,
]
steps = st.sampled_from(kinds).flatmap(lambda kind: kind)


histories = st.lists(steps, min_size=10, max_size=60).map(lambda steps: placed_once(steps, Place))


# --- the reference model --------------------------------------------------------------------


@dataclass
class Account:
    """A line's account from the decisions: ordered = the five counters' sum."""

    order_id: str
    priority: int
    placed_at: datetime
    arrival: int
    ordered: int
    allocated: int = 0
    backordered: int = 0
    shipped: int = 0
    cancelled: int = 0
    rejected: int = 0
    stated_eta: datetime | None = None  # in LineBackordered or the last BackorderEtaChanged

    def parts(self) -> tuple[int, int, int, int, int]:
        return (self.allocated, self.backordered, self.shipped, self.cancelled, self.rejected)


@dataclass
class Model:
    accounts: dict[str, Account] = field(default_factory=dict)
    inbounds: dict[str, tuple[int, datetime]] = field(default_factory=dict)
    policy: Policy | None = None
    received: int = 0

    # --- what the decisions say -------------------------------------------------------

    def pick(self, line: int, holds: Callable[[Account], int]) -> str:
        """An order whose line holds something (by `holds`), or, for a high `line` or when
        none does, any order id: known, settled or never placed."""
        holders = sorted(a.order_id for a in self.accounts.values() if holds(a))
        if line < 20 and holders:
            return holders[line % len(holders)]
        return f"O-{line % 20}"

    @property
    def shipped(self) -> int:
        return sum(account.shipped for account in self.accounts.values())

    @property
    def allocated(self) -> int:
        return sum(account.allocated for account in self.accounts.values())

    @property
    def available(self) -> int:
        return self.received - self.shipped - self.allocated

    def queue(self) -> list[Account]:
        waiting = [account for account in self.accounts.values() if account.backordered]
        return sorted(waiting, key=lambda a: (-a.priority, a.placed_at, a.arrival))

    def etas(self) -> dict[str, datetime | None]:
        """Every queued line's date from scratch: the open inbounds by (expected_at,
        inbound_id) cover the queue from its head, unit by unit."""
        schedule: list[tuple[int, datetime]] = []
        covered = 0
        for inbound_id in sorted(self.inbounds, key=lambda i: (self.inbounds[i][1], i)):
            covered += self.inbounds[inbound_id][0]
            schedule.append((covered, self.inbounds[inbound_id][1]))
        etas: dict[str, datetime | None] = {}
        units = 0
        for account in self.queue():
            units += account.backordered
            etas[line_key(account.order_id, "1")] = next(
                (expected_at for covered, expected_at in schedule if covered >= units), None
            )
        return etas

    def take(self, event: object) -> None:
        """Moves the accounts as one recorded event says."""
        if isinstance(event, Sku.LinePlaced):
            self.accounts[line_key(event.order_id, event.line_id)] = Account(
                event.order_id,
                event.priority,
                event.occurred_at,
                event.position,
                event.ordered,
                cancelled=event.cancelled_before_placement,
            )
            return
        if not isinstance(event, Sku.Decided):
            return
        account = self.accounts[line_key(event.order_id, event.line_id)]
        quantity = event.quantity
        if isinstance(event, Sku.LineAllocated):
            account.allocated += quantity
        elif isinstance(event, Sku.LineBackordered):
            account.backordered += quantity
            account.stated_eta = event.eta
        elif isinstance(event, Sku.BackorderFilled):
            account.backordered -= quantity
            account.allocated += quantity
        elif isinstance(event, Sku.BackorderCancelled):
            account.backordered -= quantity
            account.cancelled += quantity
        elif isinstance(event, Sku.AllocationReleased):
            account.allocated -= quantity
            account.cancelled += quantity
        elif isinstance(event, Sku.LineShipped):
            account.allocated -= quantity
            account.shipped += quantity
        elif isinstance(event, Sku.LineRejected):
            account.rejected += quantity
        elif isinstance(event, Sku.BackorderEtaChanged):
            account.stated_eta = event.eta

    # --- what the contract says a command must decide ----------------------------------

    def fills(self, available: int) -> list[Decision]:
        """Stock fills the head of the queue first; applied to the model as it goes."""
        rows: list[Decision] = []
        while available and self.queue():
            head = self.queue()[0]
            filled = min(available, head.backordered)
            available -= filled
            head.backordered -= filled
            head.allocated += filled
            rows.append(("BackorderFilled", head.order_id, "1", filled, head.backordered))
        return rows

    def own_decisions(self, call: Call, clock: datetime) -> list[Decision]:
        """The command's own decisions, on a scratch copy of the accounts."""
        scratch = Model(
            {key: Account(**vars(account)) for key, account in self.accounts.items()},
            dict(self.inbounds),
            self.policy,
            self.received,
        )
        return scratch._decide(call, clock)

    def _decide(self, call: Call, clock: datetime) -> list[Decision]:
        step = call.step
        if isinstance(step, Place):
            return self._place(step, call.cause)
        if isinstance(step, Receive):
            return self.fills(self.available + step.quantity)
        if isinstance(step, Cancel):
            return self._cancel(call.kwargs["order_id"], step.quantity)
        if isinstance(step, Ship):
            return self._ship(call.kwargs["order_id"], call.kwargs["quantity"])
        if isinstance(step, TickAfter):
            return self._expire(clock)
        return []

    def _place(self, step: Place, cause: Cause) -> list[Decision]:
        cancelled = min(step.cancelled_before, step.quantity)
        wanted = step.quantity - cancelled
        taken = min(self.available, wanted)
        rest = wanted - taken
        policy = self.policy or Policy("allow" if step.backorders_allowed else "deny", None, None)
        queued, reason = rest, ""
        if policy.backorders == "deny":
            queued, reason = 0, "backorders_denied"
        elif policy.backorders == "limit":
            assert policy.limit is not None
            room = max(0, policy.limit - sum(a.backordered for a in self.accounts.values()))
            queued, reason = min(rest, room), "backorder_limit"
        rows: list[Decision] = []
        if taken:
            rows.append(("LineAllocated", step.order_id, "1", taken))
        if queued:
            account = Account(step.order_id, step.priority, cause.occurred_at, cause.position, 0)
            account.backordered = queued
            self.accounts[line_key(step.order_id, "1")] = account
            place = self.queue().index(account) + 1
            eta = self.etas()[line_key(step.order_id, "1")]
            rows.append(("LineBackordered", step.order_id, "1", queued, place, eta))
        if rest - queued:
            rows.append(("LineRejected", step.order_id, "1", rest - queued, reason))
        return rows

    def _cancel(self, order_id: str, quantity: int | None) -> list[Decision]:
        account = self.accounts.get(line_key(order_id, "1"))
        if account is None:
            return []
        outstanding = account.allocated + account.backordered
        to_cancel = outstanding if quantity is None else min(quantity, outstanding)
        from_queue = min(to_cancel, account.backordered)
        released = to_cancel - from_queue
        rows: list[Decision] = []
        available = self.available
        if from_queue:
            account.backordered -= from_queue
            rows.append(
                ("BackorderCancelled", order_id, "1", from_queue, account.backordered, "cancelled")
            )
        if released:
            account.allocated -= released
            rows.append(("AllocationReleased", order_id, "1", released))
            rows += self.fills(available + released)
        return rows

    def _ship(self, order_id: str, quantity: int) -> list[Decision]:
        account = self.accounts.get(line_key(order_id, "1"))
        if account is None or quantity > account.allocated:
            return []  # refused: over_shipment, no decision
        return [("LineShipped", order_id, "1", quantity, account.allocated - quantity, "S")]

    def _expire(self, clock: datetime) -> list[Decision]:
        if self.policy is None or self.policy.max_wait_days is None:
            return []
        days = self.policy.max_wait_days
        return [
            ("BackorderCancelled", a.order_id, "1", a.backordered, 0, "expired")
            for a in self.queue()
            if a.placed_at + timedelta(days=days) <= clock
        ]

    def eta_changes(self) -> list[Decision]:
        """After a command's own decisions: every queued line whose date differs from the
        last one stated, in queue order, with its queued quantity now."""
        etas = self.etas()
        return [
            ("BackorderEtaChanged", a.order_id, "1", a.backordered, etas[key], a.stated_eta)
            for a in self.queue()
            if etas[key := line_key(a.order_id, "1")] != a.stated_eta
        ]

    def note_inputs(self, step: Step) -> None:
        """What the inputs themselves say about stock, policy and expected supply."""
        if isinstance(step, Receive):
            self.received += step.quantity
            inbound = self.inbounds.get(step.inbound_id) if step.inbound_id else None
            if inbound is not None and step.inbound_id is not None:
                left = max(0, inbound[0] - step.quantity)
                if left:
                    self.inbounds[step.inbound_id] = (left, inbound[1])
                else:
                    del self.inbounds[step.inbound_id]
        elif isinstance(step, Policy):
            self.policy = (
                step
                if step.backorders == "limit"
                else Policy(step.backorders, None, step.max_wait_days)
            )
        elif isinstance(step, Expect):
            if step.quantity:
                self.inbounds[step.inbound_id] = (step.quantity, day(step.expected_day))
            else:
                self.inbounds.pop(step.inbound_id, None)


# --- driving the aggregate ------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """One command as issued: the Sku method, its cause and arguments (so it can be issued
    again exactly, to a fresh Sku)."""

    step: Step
    method: str
    cause: Cause
    kwargs: dict[str, Any]

    def issue(self, sku: Sku) -> list[object]:
        getattr(sku, self.method)(self.cause, **self.kwargs)
        return list(sku.collect_events())


def position_of(index: int) -> int:
    return (index + 1) * 1000


def call_of(index: int, step: Step, model: Model, clock: datetime) -> Call:
    """The command for a step; a shipment of "everything" is sized from the line now."""
    cause = Cause(cause_id(index), day(index / 100), position_of(index))
    if isinstance(step, Place):
        placed = Cause(cause.causation_id, day(step.half_days / 2), cause.position)
        return Call(
            step,
            "place_line",
            placed,
            {
                "order_id": step.order_id,
                "line_id": "1",
                "line_index": 0,
                "customer_id": f"C-{step.order_id}",
                "priority": step.priority,
                "quantity": step.quantity,
                "cancelled_before_placement": step.cancelled_before,
                "backorders_allowed": step.backorders_allowed,
            },
        )
    if isinstance(step, Receive):
        kwargs = {"receipt_id": f"R-{index}", "quantity": step.quantity}
        return Call(step, "receive_stock", cause, {**kwargs, "inbound_id": step.inbound_id})
    if isinstance(step, Cancel):
        order_id = model.pick(step.line, lambda a: a.allocated + a.backordered)
        kwargs = {"order_id": order_id, "line_id": "1", "quantity": step.quantity}
        return Call(step, "cancel_line", cause, kwargs)
    if isinstance(step, Ship):
        order_id = model.pick(step.line, lambda a: a.allocated)
        account = model.accounts.get(line_key(order_id, "1"))
        held = account.allocated if account else 0
        quantity = step.quantity if step.quantity is not None else max(held, 1)
        kwargs = {
            "shipment_id": "S",
            "order_id": order_id,
            "line_id": "1",
            "quantity": quantity,
            "source": ShipmentSource("shipments", 0, index),
        }
        return Call(step, "ship_line", cause, kwargs)
    if isinstance(step, Policy):
        kwargs = {
            "backorders": step.backorders,
            "limit": step.limit,
            "max_wait_days": step.max_wait_days,
        }
        return Call(step, "set_policy", cause, kwargs)
    if isinstance(step, Expect):
        kwargs = {
            "inbound_id": step.inbound_id,
            "quantity": step.quantity,
            "expected_at": day(step.expected_day),
        }
        return Call(step, "expect_inbound", cause, kwargs)
    return Call(step, "expire", Cause(cause.causation_id, clock, cause.position), {})


def fresh_sku(name: str = SKU) -> Sku:
    sku = Sku.register(name)
    sku.collect_events()
    return sku


@dataclass
class Run:
    """A history issued to a Sku, with the model kept beside it."""

    calls: list[Call]
    events: list[list[object]]
    sku: Sku


def inputs_of(history: list[Step], together: int) -> list[list[int]]:
    """The steps' indexes grouped into inputs: up to `together` placements, cancellations
    or shipments in a row make one input (as an order's lines of one SKU do); any other
    step is an input of its own."""
    inputs: list[list[int]] = []
    for index, step in enumerate(history):
        groupable = isinstance(step, Place | Cancel | Ship)
        last = inputs[-1] if inputs else []
        if (
            groupable
            and last
            and len(last) < together
            and isinstance(history[last[-1]], Place | Cancel | Ship)
        ):
            last.append(index)
        else:
            inputs.append([index])
    return inputs


def run(history: list[Step], check: bool = True, together: int = 1) -> Run:
    """Issues every step; with `check`, asserts each command's decisions and the invariants
    right after it. With `together` > 1, commands in a row form one input (begin_input ..
    end_input, as the application applies a sku-commands message): the dates it moved are
    restated once, at its end."""
    sku, model = fresh_sku(), Model()
    calls: list[Call] = []
    emitted: list[list[object]] = []
    clock = day(0)
    for group in inputs_of(history, together):
        bracketed = len(group) > 1
        if bracketed:
            sku.begin_input()
        for index in group:
            step = history[index]
            if isinstance(step, TickAfter):
                clock = clock + timedelta(days=step.half_days / 2)
            call = call_of(index, step, model, clock)
            events, expected = issue_beside_model(sku, model, call, clock, bracketed)
            calls.append(call)
            emitted.append(events)
            if check:
                assert told(events) == expected, (index, step)
                assert_accounts_and_stock(sku, model)
        if bracketed:
            expected = model.eta_changes()
            sku.end_input(calls[-1].cause)
            restated = list(sku.collect_events())
            for event in restated:
                model.take(event)
            emitted[-1] += restated
            assert not check or told(restated) == expected, group
        if check:
            assert_dates(sku, model)
    return Run(calls, emitted, sku)


def issue_beside_model(
    sku: Sku, model: Model, call: Call, clock: datetime, bracketed: bool
) -> tuple[list[object], list[Decision]]:
    """Issues one command and moves the model with it: (its events, the decisions the model
    expected of it: its own, then, unless an input is open, the dates it moved)."""
    expected = model.own_decisions(call, clock)
    events = call.issue(sku)
    for event in events:
        if not isinstance(event, Sku.BackorderEtaChanged):
            model.take(event)
    model.note_inputs(call.step)
    if not bracketed:
        expected += model.eta_changes()  # from the dates stated so far, not the aggregate's
    for event in events:
        if isinstance(event, Sku.BackorderEtaChanged):
            model.take(event)
    return events, expected


# --- invariants -----------------------------------------------------------------------------


def assert_accounts_and_stock(sku: Sku, model: Model) -> None:
    """Conservation, version 2, per line and per SKU; the SKU keeps exactly its open lines."""
    for account in model.accounts.values():
        assert min(account.parts()) >= 0, account
        assert sum(account.parts()) == account.ordered, account
    open_lines = {k for k, a in model.accounts.items() if a.allocated or a.backordered}
    assert set(sku.lines) == open_lines
    for key in open_lines:
        live, account = sku.lines[key], model.accounts[key]
        assert (
            live["allocated"],
            live["backordered"],
            live["shipped"],
            live["cancelled"],
            live["rejected"],
        ) == account.parts()
        assert live["ordered"] == account.ordered
    assert (sku.received, sku.shipped) == (model.received, model.shipped)
    assert sku.available >= 0
    assert sku.on_hand == model.received - model.shipped >= 0
    assert sku.available + model.allocated == model.received - model.shipped
    assert sku.allocated == model.allocated
    assert sku.backordered == sum(a.backordered for a in model.accounts.values())
    if sku.backordered:
        assert sku.available == 0, "stock is never left available while anyone waits"


def assert_dates(sku: Sku, model: Model) -> None:
    """Every queued line's date is what a walk from scratch gives, and what was last stated."""
    assert sku.inbounds == {
        inbound_id: {"quantity": quantity, "expected_at": expected_at}
        for inbound_id, (quantity, expected_at) in model.inbounds.items()
    }
    assert sku.inbound == sum(quantity for quantity, _ in model.inbounds.values())
    queued = sku.queued_lines()
    expected_queue = model.queue()
    assert [line["order_id"] for line in queued] == [a.order_id for a in expected_queue]
    etas = model.etas()
    for line in queued:
        key = line_key(line["order_id"], line["line_id"])
        assert line["eta"] == etas[key] == model.accounts[key].stated_eta, line


# --- properties -----------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(histories)
def test_every_command_decides_as_the_contract_says_and_conserves_quantity(
    history: list[Step],
) -> None:
    """(a), (b), (c), (e): each command's own decisions, then exactly the date changes of
    the queued lines whose date moved; conservation per line and SKU; every queued line's
    date from scratch equals the one last stated; the SKU holds exactly its open lines."""
    run(history)


@MODEST
@given(histories, st.integers(2, 4))
def test_an_input_of_several_commands_restates_each_moved_date_once_at_its_end(
    history: list[Step], together: int
) -> None:
    """Contract, "Order of the decisions of one input": an order's lines of one SKU (or a
    cancellation's, a shipment's) first decide, then each queued line whose date moved is
    told once, in queue order."""
    run(history, together=together)


@MODEST
@given(histories)
def test_no_line_is_told_a_date_it_was_already_told(history: list[Step]) -> None:
    """(c) on the decisions alone: every BackorderEtaChanged names the date last stated for
    the line as previous, and a different one as new."""
    stated: dict[str, datetime | None] = {}
    for events in run(history, check=False).events:
        for event in events:
            if isinstance(event, Sku.LineBackordered):
                stated[line_key(event.order_id, event.line_id)] = event.eta
            elif isinstance(event, Sku.BackorderEtaChanged):
                key = line_key(event.order_id, event.line_id)
                assert key in stated, "a date change for a line never backordered"
                assert event.previous_eta == stated[key] != event.eta
                stated[key] = event.eta


@pytest.fixture(scope="module")
def mapper_app() -> Iterator[Allocation]:
    app = Allocation(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    yield app
    app.close()


@MODEST
@given(histories, st.data())
def test_replaying_the_same_commands_gives_the_same_decisions_and_ids(
    mapper_app: Allocation, history: list[Step], data: st.DataObject
) -> None:
    """(d): into a fresh Sku, and from a stored snapshot taken part way."""
    original = run(history, check=False)
    expected = [event for events in original.events for event in events]

    replayed = fresh_sku()
    again = [event for call in original.calls for event in call.issue(replayed)]

    assert event_fields(again) == event_fields(expected)
    ids = [event.decision_id for event in again if isinstance(event, Sku.Decided)]
    assert len(ids) == len(set(ids))

    cut = data.draw(st.integers(0, len(original.calls)), label="snapshot after")
    partway = fresh_sku()
    for call in original.calls[:cut]:
        call.issue(partway)
    stored = mapper_app.mapper.to_stored_event(Snapshot.take(partway))
    snapshot = mapper_app.mapper.to_domain_event(stored)
    assert isinstance(snapshot, Snapshot)
    restored = snapshot.mutate(None)
    assert isinstance(restored, Sku)
    rest = [event for call in original.calls[cut:] for event in call.issue(restored)]
    expected_rest = [event for events in original.events[cut:] for event in events]
    assert event_fields(rest) == event_fields(expected_rest)
    assert (restored.lines, restored.queue, restored.inbounds, restored.policy) == (
        original.sku.lines,
        original.sku.queue,
        original.sku.inbounds,
        original.sku.policy,
    )


# --- the queue's running totals -------------------------------------------------------------


@MODEST
@given(
    st.lists(st.tuples(st.integers(0, 30), st.integers(0, 5)), min_size=1, max_size=60),
    st.lists(st.tuples(st.integers(0, 40), st.integers(0, 40)), max_size=10),
)
def test_the_queue_s_running_totals_agree_with_a_walk_from_the_head(
    changes: list[tuple[int, int]], windows: list[tuple[int, int]]
) -> None:
    """BackorderQueue against a plain sorted list: adds, partial changes and removals, then
    places and the lines whose last unit falls in a window."""
    queue = BackorderQueue()
    plain: dict[str, tuple[QueueEntry, int]] = {}
    for line, units in changes:
        key = f"O-{line}\n1"
        if key in plain:
            queue.set_units(key, units)
            if units:
                plain[key] = (plain[key][0], units)
            else:
                del plain[key]
        elif units:
            entry = QueueEntry(-(line % 3), day(line % 4), line, 0, key)
            queue.add(entry, units)
            plain[key] = (entry, units)
    ordered = sorted(plain.values())
    assert list(queue) == [entry for entry, _ in ordered]
    assert queue.total_units == sum(units for _, units in ordered)
    assert (queue.head(), len(queue)) == (ordered[0][0] if ordered else None, len(ordered))
    counted = [sum(units for _, units in ordered[: n + 1]) for n in range(len(ordered))]
    for low, high in windows:
        expected = [(e, c) for (e, _), c in zip(ordered, counted, strict=True) if low < c <= high]
        assert list(queue.covering(low, high)) == expected
    for line in range(32):
        probe = QueueEntry(-(line % 3), day(line % 4), line, 1, f"P-{line}")
        ahead = bisect.bisect_left([entry for entry, _ in ordered], probe)
        assert queue.place_of(probe) == (ahead, sum(units for _, units in ordered[:ahead]))
    rebuilt = BackorderQueue(queue.pairs())
    assert rebuilt.pairs() == queue.pairs()
    assert list(rebuilt.covering(0, 10**6)) == list(queue.covering(0, 10**6))


# --- ticks through the Deadlines index ---------------------------------------------------------

SKUS = ("SKU-A", "SKU-B", "SKU-C")


@dataclass(frozen=True)
class ForSku:
    sku: str
    step: Place | Receive | Cancel | Policy


scoped_steps = st.one_of(
    st.builds(
        ForSku,
        sku=st.sampled_from(SKUS),
        step=st.one_of(
            st.builds(
                Place,
                order_id=order_ids,
                quantity=st.integers(1, 6),
                priority=st.integers(0, 1),
                half_days=st.integers(0, 12),
                cancelled_before=st.just(0),
                backorders_allowed=st.just(True),
            ),
            st.builds(Receive, quantity=st.integers(1, 6), inbound_id=st.none()),
            st.builds(Cancel, line=st.integers(0, 9), quantity=st.none() | st.integers(1, 4)),
            st.builds(
                Policy,
                backorders=st.just("allow"),
                limit=st.none(),
                max_wait_days=st.none() | st.integers(1, 4),
            ),
        ),
    ),
    st.builds(TickAfter, half_days=st.sampled_from([-3, 1, 2, 3, 5])),
)


def scoped_command(index: int, step: Place | Receive | Cancel | Policy) -> SkuCommand:
    causation_id = cause_id(index)
    if isinstance(step, Place):
        return PlaceLine(
            causation_id=causation_id,
            occurred_at=day(step.half_days / 2),
            order_id=step.order_id,
            line_id="1",
            line_index=0,
            customer_id=f"C-{step.order_id}",
            priority=step.priority,
            quantity=step.quantity,
        )
    if isinstance(step, Receive):
        return ReceiveStock(
            causation_id=causation_id,
            occurred_at=day(0),
            receipt_id=f"R-{index}",
            quantity=step.quantity,
        )
    if isinstance(step, Cancel):
        return CancelLine(
            causation_id=causation_id,
            occurred_at=day(0),
            order_id=f"O-{step.line}",
            line_id="1",
            quantity=step.quantity,
        )
    return SetPolicy(
        causation_id=causation_id,
        occurred_at=day(0),
        backorders=step.backorders,
        limit=step.limit,
        max_wait_days=step.max_wait_days,
    )


@settings(max_examples=80, deadline=None)
@given(st.lists(scoped_steps, min_size=5, max_size=40), st.lists(st.integers(1, 5), min_size=1))
def test_ticks_through_the_deadlines_index_expire_what_visiting_every_sku_would(
    history: list[ForSku | TickAfter], batch_sizes: list[int]
) -> None:
    """The index may hold a SKU too early (a visit that expires nothing), never too late:
    the application decides as if every tick visited every SKU of the partition."""
    messages: list[SkuCommandsMessage] = []
    everywhere = {name: fresh_sku(name) for name in SKUS}
    expected: dict[str, list[object]] = {name: [] for name in SKUS}
    clock = day(0)
    for index, item in enumerate(history):
        position = (index + 1) * 1000
        if isinstance(item, TickAfter):
            clock = clock + timedelta(days=item.half_days / 2)
            tick = TickCommand(causation_id=cause_id(index), occurred_at=clock)
            messages.append(Tick(position=position, tick=tick))
            for name, sku in everywhere.items():
                sku.expire(Cause(tick.causation_id, clock, position * 1000))
                expected[name] += sku.collect_events()
        else:
            command = scoped_command(index, item.step)
            messages.append(SkuCommands(sku=item.sku, position=position, commands=[command]))
            sku = everywhere[item.sku]
            cause = Cause(command.causation_id, command.occurred_at, position * 1000)
            sku.begin_input()
            apply_command(sku, cause, command)
            sku.end_input(cause)
            expected[item.sku] += sku.collect_events()

    app = Allocation(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    start = 0
    for size in batch_sizes * len(messages):
        if start >= len(messages):
            break
        batch = messages[start : start + size]
        start += size
        app.apply_commands(batch, Tracking("sku-commands-0", batch[-1].position))
        due = app.deadlines("sku-commands-0").due_times
        for name in SKUS:
            stored = app.find_sku(name)
            deadline = stored.next_deadline() if stored else None
            if deadline is not None:
                assert name in due, (name, deadline)
                assert due[name] <= deadline, (name, due[name], deadline)
    notifications = app.recorder.select_notifications(start=0, limit=10_000)
    recorded = [app.mapper.to_domain_event(n) for n in notifications]
    app.close()

    for name in SKUS:
        got = [e for e in recorded if isinstance(e, Sku.Decided) and e.sku == name]
        want = [e for e in expected[name] if isinstance(e, Sku.Decided)]
        assert event_fields(got) == event_fields(want), name
