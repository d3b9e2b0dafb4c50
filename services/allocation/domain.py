"""The Sku aggregate: every allocation rule of the contract, for one SKU, and nothing else;
and Deadlines, which tells a tick which SKUs may have backorders to expire.

Pure: no clocks, no configuration, no I/O. Time and identity come in with the commands, so
replaying the same commands gives the same events and the same decision ids.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from hashlib import sha1
from typing import Any, Literal
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate
from typing_extensions import ReadOnly, TypedDict

from services.allocation.queue import BackorderQueue, QueueEntry

SKU_NAMESPACE = uuid5(NAMESPACE_URL, "urn:fulfillment:sku")
DEADLINES_NAMESPACE = uuid5(NAMESPACE_URL, "urn:fulfillment:deadlines")
DECISION_NAMESPACE = uuid5(NAMESPACE_URL, "urn:fulfillment:decision")


def sku_aggregate_id(sku: str) -> UUID:
    return uuid5(SKU_NAMESPACE, sku)


def deadlines_aggregate_id(scope: str) -> UUID:
    return uuid5(DEADLINES_NAMESPACE, scope)


def line_key(order_id: str, line_id: str) -> str:
    # Ids are printable, so a newline can never occur inside one.
    return f"{order_id}\n{line_id}"


# The namespace's part of every decision id's SHA-1, hashed once (see decision_id).
_DECISION_HASH = sha1(DECISION_NAMESPACE.bytes, usedforsecurity=False)  # an id, not a secret


def decision_id(kind: str, cause: Cause, sku: str, order_id: str, line_id: str) -> UUID:
    """One command moves one line at most once per decision type, so this is unique; one
    input can be several commands for a SKU (a cancellation of two of its lines), so the
    command's step within the input is part of it.

    uuid5(DECISION_NAMESPACE, name), computed as uuid5 does (SHA-1 of the namespace's bytes
    and the name, its first 16 bytes, version 5) from a hash of the namespace made once:
    half the cost, and a replay makes one for every decision."""
    name = f"{kind}\n{cause.causation_id}\n{cause.step}\n{sku}\n{order_id}\n{line_id}"
    digest = _DECISION_HASH.copy()
    digest.update(name.encode())
    return UUID(bytes=digest.digest()[:16], version=5)


BackorderMode = Literal["allow", "deny", "limit"]


class LineView(TypedDict):
    """A line's account at this SKU:
    allocated + backordered + shipped + cancelled + rejected = ordered.

    What the Sku hands out is a copy of its line, and read-only to the type checker: no
    reader can move a line's quantities behind the aggregate's back."""

    order_id: ReadOnly[str]
    line_id: ReadOnly[str]
    customer_id: ReadOnly[str]
    priority: ReadOnly[int]
    placed_at: ReadOnly[datetime]
    ordered: ReadOnly[int]
    allocated: ReadOnly[int]
    backordered: ReadOnly[int]
    shipped: ReadOnly[int]
    cancelled: ReadOnly[int]
    rejected: ReadOnly[int]
    eta: ReadOnly[datetime | None]  # the last promised date stated for its queued units


class Line(LineView):
    """The Sku's own account of a line: only its events' `apply` move these counters.

    A plain dict, so snapshots store it as JSON as they always have."""

    allocated: int
    backordered: int
    shipped: int
    cancelled: int
    rejected: int
    eta: datetime | None


class Policy(TypedDict):
    """How the SKU treats what its stock cannot cover (contract: BackorderPolicySet)."""

    backorders: BackorderMode
    limit: int | None
    max_wait_days: int | None


class Inbound(TypedDict):
    quantity: int
    expected_at: datetime


class _Lines(Mapping[str, LineView]):
    """The Sku's lines by key, read-only: each line read is a copy."""

    __slots__ = ("_lines",)

    def __init__(self, lines: dict[str, Line]) -> None:
        self._lines = lines

    def __getitem__(self, key: str) -> LineView:
        return self._lines[key].copy()

    def __iter__(self) -> Iterator[str]:
        return iter(self._lines)

    def __len__(self) -> int:
        return len(self._lines)

    def __repr__(self) -> str:
        return repr(self._lines)


@dataclass(frozen=True)
class Cause:
    """The input that moves stock: its event id, business time and intake position, and
    which of the input's commands for this SKU this is (`step`)."""

    causation_id: UUID
    occurred_at: datetime
    position: int
    step: int = 0


@dataclass(frozen=True)
class ShipmentSource:
    """Where a shipment came from: the coordinates of its dead letter if a line over-ships."""

    topic: str
    partition: int
    offset: int


class Sku(Aggregate):
    """One SKU's stock, backorder queue, policy and expected supply; the single writer of
    its allocations."""

    class Registered(Aggregate.Created):
        sku: str

    class Recorded(Aggregate.Event):
        """Base of the SKU's events: each carries the intake position of its command."""

        position: int
        sku: str

        def apply(self, aggregate: Any) -> None:
            aggregate.last_position = max(aggregate.last_position, self.position)

    class Decided(Recorded):
        """Base of the events that are published as decisions."""

        decision_id: UUID
        causation_id: UUID
        occurred_at: datetime
        order_id: str
        line_id: str
        quantity: int

    class LinePlaced(Recorded):
        causation_id: UUID
        occurred_at: datetime
        order_id: str
        line_id: str
        line_index: int
        customer_id: str
        priority: int
        ordered: int
        cancelled_before_placement: int

        def apply(self, aggregate: Any) -> None:
            super().apply(aggregate)
            key = line_key(self.order_id, self.line_id)
            aggregate._lines[key] = Line(
                order_id=self.order_id,
                line_id=self.line_id,
                customer_id=self.customer_id,
                priority=self.priority,
                placed_at=self.occurred_at,
                ordered=self.ordered,
                allocated=0,
                backordered=0,
                shipped=0,
                cancelled=self.cancelled_before_placement,
                rejected=0,
                eta=None,
            )
            if self.cancelled_before_placement == self.ordered:
                del aggregate._lines[key]  # all cancelled before it came: settled at once

    class LineAllocated(Decided):
        def apply(self, aggregate: Any) -> None:
            super().apply(aggregate)
            aggregate.available -= self.quantity
            aggregate._lines[line_key(self.order_id, self.line_id)]["allocated"] += self.quantity

    class LineBackordered(Decided):
        queue_position: int
        line_index: int
        arrival: int
        # Repeated from the line so that read models of the queue need no other event.
        customer_id: str
        priority: int
        placed_at: datetime
        eta: datetime | None = None  # version 2; None in events recorded before it

        def apply(self, aggregate: Any) -> None:
            super().apply(aggregate)
            key = line_key(self.order_id, self.line_id)
            line = aggregate._lines[key]
            line["backordered"] += self.quantity
            line["eta"] = self.eta
            entry = QueueEntry(
                -line["priority"], line["placed_at"], self.arrival, self.line_index, key
            )
            aggregate._queue.add(entry, line["backordered"])
            aggregate._moved_units += self.quantity

    class LineRejected(Decided):
        reason: str

        def apply(self, aggregate: Any) -> None:
            super().apply(aggregate)
            key = line_key(self.order_id, self.line_id)
            aggregate._lines[key]["rejected"] += self.quantity
            aggregate._forget_if_settled(key)

    class StockReceived(Recorded):
        causation_id: UUID
        occurred_at: datetime
        receipt_id: str
        quantity: int
        inbound_id: str | None = None  # version 2

        def apply(self, aggregate: Any) -> None:
            super().apply(aggregate)
            aggregate.received += self.quantity
            aggregate.available += self.quantity
            inbound = aggregate._inbounds.get(self.inbound_id) if self.inbound_id else None
            if inbound is not None:
                taken = min(self.quantity, inbound["quantity"])
                inbound["quantity"] -= taken
                if not inbound["quantity"]:
                    del aggregate._inbounds[self.inbound_id]
                aggregate._moved_units += taken

    class BackorderFilled(Decided):
        remaining_backordered: int

        def apply(self, aggregate: Any) -> None:
            super().apply(aggregate)
            key = line_key(self.order_id, self.line_id)
            line = aggregate._lines[key]
            line["backordered"] -= self.quantity
            line["allocated"] += self.quantity
            aggregate.available -= self.quantity
            aggregate._queue.set_units(key, line["backordered"])
            aggregate._moved_units += self.quantity

    class BackorderCancelled(Decided):
        remaining_backordered: int
        reason: str = "cancelled"  # version 2: or "expired"

        def apply(self, aggregate: Any) -> None:
            super().apply(aggregate)
            key = line_key(self.order_id, self.line_id)
            line = aggregate._lines[key]
            line["backordered"] -= self.quantity
            line["cancelled"] += self.quantity
            aggregate._queue.set_units(key, line["backordered"])
            aggregate._moved_units += self.quantity
            aggregate._forget_if_settled(key)

    class AllocationReleased(Decided):
        def apply(self, aggregate: Any) -> None:
            super().apply(aggregate)
            key = line_key(self.order_id, self.line_id)
            line = aggregate._lines[key]
            line["allocated"] -= self.quantity
            line["cancelled"] += self.quantity
            aggregate.available += self.quantity
            aggregate._forget_if_settled(key)

    class LineShipped(Decided):
        remaining_allocated: int
        shipment_id: str

        def apply(self, aggregate: Any) -> None:
            super().apply(aggregate)
            key = line_key(self.order_id, self.line_id)
            line = aggregate._lines[key]
            line["allocated"] -= self.quantity
            line["shipped"] += self.quantity
            aggregate.shipped += self.quantity
            aggregate._forget_if_settled(key)

    class ShipmentLineRefused(Recorded):
        """A shipment line asked for more than the line held allocated: no effect, and a
        dead letter (reason over_shipment) for whoever sent it."""

        causation_id: UUID
        occurred_at: datetime
        shipment_id: str
        order_id: str
        line_id: str
        quantity: int
        allocated: int
        source_topic: str
        source_partition: int
        source_offset: int

    class BackorderEtaChanged(Decided):
        eta: datetime | None
        previous_eta: datetime | None

        def apply(self, aggregate: Any) -> None:
            super().apply(aggregate)
            aggregate._lines[line_key(self.order_id, self.line_id)]["eta"] = self.eta

    class PolicySet(Recorded):
        causation_id: UUID
        occurred_at: datetime
        backorders: str
        limit: int | None
        max_wait_days: int | None

        def apply(self, aggregate: Any) -> None:
            super().apply(aggregate)
            aggregate.policy = Policy(
                backorders=self.backorders,  # type: ignore[typeddict-item]
                limit=self.limit if self.backorders == "limit" else None,
                max_wait_days=self.max_wait_days,
            )
            aggregate._deadline_reset = True

    class InboundExpected(Recorded):
        causation_id: UUID
        occurred_at: datetime
        inbound_id: str
        quantity: int
        expected_at: datetime

        def apply(self, aggregate: Any) -> None:
            super().apply(aggregate)
            inbounds = aggregate._inbounds
            before = inbounds.get(self.inbound_id)
            aggregate._reach = max(aggregate._reach, aggregate.inbound)
            if before is not None and before["expected_at"] == self.expected_at:
                aggregate._moved_units += abs(self.quantity - before["quantity"])
            else:
                aggregate._dates_moved = True  # a new date: the schedule's order may change
            if self.quantity:
                inbounds[self.inbound_id] = Inbound(
                    quantity=self.quantity, expected_at=self.expected_at
                )
            else:
                inbounds.pop(self.inbound_id, None)
            aggregate._reach = max(aggregate._reach, aggregate.inbound)

    # The version of the state in snapshots (eventsourcing): 2 since `lines` and `queue`
    # became private and queue entries QueueEntry; 3 since version 2 of the contract
    # (shipments, policies, inbounds, the queue's running totals). Older snapshots are
    # upcast by upcast_v1_v2 and upcast_v2_v3.
    class_version = 3

    # What the command being applied moved, for the promised dates (see _restate_etas) and
    # the deadlines; reset as each command starts. Class defaults, so a state restored from
    # any snapshot has them.
    _moved_units = 0
    _dates_moved = False
    _reach = 0
    _deadline_reset = False
    _earliest_queued: datetime | None = None
    # Between begin_input and end_input: the dates are restated once, for the whole input.
    _input_open = False
    _moved_from: int | None = None  # units ahead of the first place the queue moved at

    def __init__(self, sku: str) -> None:
        self.sku = sku
        self.received = 0
        self.shipped = 0
        self.available = 0
        self.policy: Policy | None = None
        # Private: only the events' apply() change them; readers get copies (see `lines`).
        self._lines: dict[str, Line] = {}  # the open lines: a settled line is forgotten
        self._queue = BackorderQueue()  # the open backorders in fill order, with totals
        self._inbounds: dict[str, Inbound] = {}  # open inbounds by inbound_id
        self.last_position = 0

    @staticmethod
    def upcast_v1_v2(state: dict[str, Any]) -> None:
        """A snapshot taken before class_version 2: public `lines` and `queue`, whose
        entries were lists [-priority, placed_at, arrival, line_index, key]. eventsourcing
        calls this when it restores such a snapshot (Snapshot.mutate)."""
        state["_lines"] = state.pop("lines")
        state["_queue"] = [QueueEntry(*entry) for entry in state.pop("queue")]

    @staticmethod
    def upcast_v2_v3(state: dict[str, Any]) -> None:
        """Before version 2 of the contract: no shipments, policy or inbounds, settled
        lines kept, and the queue a plain sorted list."""
        lines: dict[str, Any] = state["_lines"]
        for line in lines.values():
            line.setdefault("shipped", 0)
            line.setdefault("eta", None)
        queued = [(entry, lines[entry.key]["backordered"]) for entry in state["_queue"]]
        state["_queue"] = BackorderQueue(queued)
        state["_lines"] = {
            key: line for key, line in lines.items() if line["allocated"] or line["backordered"]
        }
        state.setdefault("shipped", 0)
        state.setdefault("policy", None)
        state.setdefault("_inbounds", {})

    @classmethod
    def register(cls, sku: str) -> Sku:
        return cls._create(cls.Registered, id=sku_aggregate_id(sku), sku=sku)

    # --- reading ----------------------------------------------------------------------

    @property
    def on_hand(self) -> int:
        """Stock in the warehouse: received and not shipped."""
        return self.received - self.shipped

    @property
    def allocated(self) -> int:
        return self.on_hand - self.available

    @property
    def backordered(self) -> int:
        return self._queue.total_units

    @property
    def inbound(self) -> int:
        """Units expected on open inbounds."""
        return sum(inbound["quantity"] for inbound in self._inbounds.values())

    @property
    def inbounds(self) -> dict[str, Inbound]:
        """Open inbounds by id: copies."""
        return {key: Inbound(**value) for key, value in self._inbounds.items()}

    @property
    def lines(self) -> Mapping[str, LineView]:
        """The open lines (something allocated or backordered), by line_key; each read is a
        copy. A settled line is forgotten: the SKU grows with its open lines only."""
        return _Lines(self._lines)

    @property
    def queue(self) -> tuple[QueueEntry, ...]:
        """The open backorders' entries, in fill order."""
        return tuple(self._queue)

    def queued_lines(self) -> list[LineView]:
        """The open backorders, in fill order: copies, so a reader cannot change them."""
        return [self._lines[entry.key].copy() for entry in self._queue]

    def effective_policy(self, backorders_allowed: bool = True) -> Policy:
        """The SKU's policy; without one, allow (deny if the service's default denies)."""
        if self.policy is not None:
            return self.policy
        return Policy(
            backorders="allow" if backorders_allowed else "deny", limit=None, max_wait_days=None
        )

    def has_applied(self, position: int) -> bool:
        """Commands are numbered by intake's log; one already applied must not act again."""
        return position <= self.last_position

    def next_deadline(self) -> datetime | None:
        """When the oldest queued line expires under the policy's max_wait_days, if any."""
        days = self.policy["max_wait_days"] if self.policy else None
        if days is None or not self._queue:
            return None
        return min(entry.placed_at for entry in self._queue) + timedelta(days=days)

    def deadline_news(self) -> tuple[bool, datetime | None]:
        """What the last command did to the SKU's deadlines: (True, exact next deadline) if
        they must be looked at anew (a policy changed), else (False, the earliest deadline of
        lines it queued, if any): the Deadlines index only ever moves earlier on its own."""
        if self._deadline_reset:
            return True, self.next_deadline()
        days = self.policy["max_wait_days"] if self.policy else None
        if days is None or self._earliest_queued is None:
            return False, None
        return False, self._earliest_queued + timedelta(days=days)

    # --- commands ---------------------------------------------------------------------

    def begin_input(self) -> None:
        """The commands of one input follow (one sku-commands message: an order's lines of
        this SKU, a cancellation's, a shipment's).

        Contract, "Order of the decisions of one input, per SKU": the input's own decisions,
        then one BackorderEtaChanged per queued line whose date moved. Restated after each
        command, an order with two lines of this SKU told a line behind them of its date
        twice, between the two lines' decisions; so end_input restates them once."""
        self._begin()
        self._input_open = True

    def end_input(self, cause: Cause) -> None:
        """Restates the dates the input's commands moved; `cause`: its last command's."""
        self._input_open = False
        self._restate_etas(cause)

    def place_line(
        self,
        cause: Cause,
        *,
        order_id: str,
        line_id: str,
        line_index: int,
        customer_id: str,
        priority: int,
        quantity: int,
        cancelled_before_placement: int = 0,
        backorders_allowed: bool = True,
    ) -> None:
        """A new line takes what is available; the rest is backordered, or rejected as far
        as the SKU's policy says (`backorders_allowed`: the default when it has none)."""
        if self.has_applied(cause.position) or line_key(order_id, line_id) in self._lines:
            return
        self._begin()
        cancelled = min(cancelled_before_placement, quantity)
        self._record(
            self.LinePlaced,
            cause,
            order_id=order_id,
            line_id=line_id,
            line_index=line_index,
            customer_id=customer_id,
            priority=priority,
            ordered=quantity,
            cancelled_before_placement=cancelled,
        )
        wanted = quantity - cancelled
        # Stock is never left available while anyone waits, so a non-empty queue means none.
        taken = min(self.available, wanted)
        if taken:
            self._decide(self.LineAllocated, cause, order_id, line_id, taken)
        rest = wanted - taken
        policy = self.effective_policy(backorders_allowed)
        queued, reason = rest, ""
        if policy["backorders"] == "deny":
            queued, reason = 0, "backorders_denied"
        elif policy["backorders"] == "limit":
            room = max(0, (policy["limit"] or 0) - self._queue.total_units)
            queued, reason = min(rest, room), "backorder_limit"
        if queued:
            key = line_key(order_id, line_id)
            entry = QueueEntry(-priority, cause.occurred_at, cause.position, line_index, key)
            ahead, units_ahead = self._queue.place_of(entry)
            self._moved_at(units_ahead)
            self._decide(
                self.LineBackordered,
                cause,
                order_id,
                line_id,
                queued,
                queue_position=ahead + 1,
                line_index=line_index,
                arrival=cause.position,
                customer_id=customer_id,
                priority=priority,
                placed_at=cause.occurred_at,
                eta=self._eta_of(units_ahead + queued, self._schedule()),
            )
            self._earliest_queued = cause.occurred_at
        if rest - queued:
            self._decide(self.LineRejected, cause, order_id, line_id, rest - queued, reason=reason)
        self._restate_etas(cause)

    def receive_stock(
        self, cause: Cause, *, receipt_id: str, quantity: int, inbound_id: str | None = None
    ) -> None:
        """Received stock fills the head of the queue first; the rest becomes available. A
        receipt for one of the SKU's inbounds takes its quantity off what that one expects."""
        if self.has_applied(cause.position):
            return
        self._begin()
        self._moved_at(0)
        expected = self._inbounds.get(inbound_id) if inbound_id else None
        earliest = bool(expected) and inbound_id == min(
            self._inbounds, key=lambda i: (self._inbounds[i]["expected_at"], i)
        )
        taken = min(quantity, expected["quantity"]) if expected else 0
        before = self._moved_units
        self._record(
            self.StockReceived,
            cause,
            receipt_id=receipt_id,
            quantity=quantity,
            inbound_id=inbound_id,
        )
        self._fill_queue(cause)
        if earliest and self._moved_units - before == 2 * taken:
            # The stock the earliest inbound was expected to bring came, and filled as much
            # from the head: every queued line and every inbound boundary moved forward by
            # the same units, so no date changed (the usual receipt, with nothing to look at).
            self._moved_units = before
        self._restate_etas(cause)

    def cancel_line(
        self, cause: Cause, *, order_id: str, line_id: str, quantity: int | None
    ) -> None:
        """Queued quantity goes first, then allocated stock is released and re-offered;
        shipped units are never touched."""
        if self.has_applied(cause.position):
            return
        line = self._lines.get(line_key(order_id, line_id))
        if line is None:
            return  # unknown here, or settled: nothing outstanding
        self._begin()
        self._moved_at(0)
        outstanding = line["allocated"] + line["backordered"]
        to_cancel = outstanding if quantity is None else min(quantity, outstanding)
        from_queue = min(to_cancel, line["backordered"])
        if from_queue:
            self._decide(
                self.BackorderCancelled,
                cause,
                order_id,
                line_id,
                from_queue,
                remaining_backordered=line["backordered"] - from_queue,
                reason="cancelled",
            )
        released = to_cancel - from_queue
        if released:
            self._decide(self.AllocationReleased, cause, order_id, line_id, released)
            self._fill_queue(cause)
        self._restate_etas(cause)

    def ship_line(
        self,
        cause: Cause,
        *,
        shipment_id: str,
        order_id: str,
        line_id: str,
        quantity: int,
        source: ShipmentSource,
    ) -> None:
        """Allocated units leave: on-hand stock goes down with them, available does not.
        More than the line holds allocated is refused whole (over_shipment)."""
        if self.has_applied(cause.position):
            return
        line = self._lines.get(line_key(order_id, line_id))
        held = 0 if line is None else line["allocated"]
        if quantity > held:
            self._record(
                self.ShipmentLineRefused,
                cause,
                shipment_id=shipment_id,
                order_id=order_id,
                line_id=line_id,
                quantity=quantity,
                allocated=held,
                source_topic=source.topic,
                source_partition=source.partition,
                source_offset=source.offset,
            )
            return
        self._decide(
            self.LineShipped,
            cause,
            order_id,
            line_id,
            quantity,
            remaining_allocated=held - quantity,
            shipment_id=shipment_id,
        )

    def set_policy(
        self,
        cause: Cause,
        *,
        backorders: BackorderMode,
        limit: int | None,
        max_wait_days: int | None,
    ) -> None:
        """Governs lines placed after it; queued lines stay queued, but max_wait_days holds
        for every one of them."""
        if self.has_applied(cause.position):
            return
        self._begin()
        self._record(
            self.PolicySet,
            cause,
            backorders=backorders,
            limit=limit if backorders == "limit" else None,
            max_wait_days=max_wait_days,
        )

    def expect_inbound(
        self, cause: Cause, *, inbound_id: str, quantity: int, expected_at: datetime
    ) -> None:
        """A new inbound, a revision of one (its quantity and date replaced), or, with 0,
        its withdrawal; queued lines whose promised date moves are told."""
        if self.has_applied(cause.position):
            return
        self._begin()
        self._moved_at(0)
        self._record(
            self.InboundExpected,
            cause,
            inbound_id=inbound_id,
            quantity=quantity,
            expected_at=expected_at,
        )
        self._restate_etas(cause)

    def expire(self, cause: Cause) -> None:
        """At a tick, the queued quantity of every line waiting longer than max_wait_days
        (from its order's time to the tick's) is cancelled, reason expired."""
        if self.has_applied(cause.position):
            return
        days = self.policy["max_wait_days"] if self.policy else None
        if days is None:
            return
        self._begin()
        self._moved_at(0)
        oldest = cause.occurred_at - timedelta(days=days)
        for entry in [entry for entry in self._queue if entry.placed_at <= oldest]:
            line = self._lines[entry.key]
            self._decide(
                self.BackorderCancelled,
                cause,
                line["order_id"],
                line["line_id"],
                line["backordered"],
                remaining_backordered=0,
                reason="expired",
            )
        self._restate_etas(cause)

    # --- rules shared by the commands ---------------------------------------------------

    def _begin(self) -> None:
        """A command starts: nothing of it has moved the deadlines, the queue or the
        inbounds yet. Within an input (begin_input) the moves add up until end_input."""
        self._deadline_reset = False
        self._earliest_queued = None
        if self._input_open:
            return
        self._moved_units = 0
        self._dates_moved = False
        self._reach = self.inbound
        self._moved_from = None

    def _moved_at(self, units_ahead: int) -> None:
        """The queue (or the inbounds) moved from this many units after its head: the lines
        ending at or before it keep their place and, with the inbounds unchanged, their
        dates. 0 for anything that moves the head or the inbounds."""
        if self._moved_from is None or units_ahead < self._moved_from:
            self._moved_from = units_ahead

    def _fill_queue(self, cause: Cause) -> None:
        """Strictly in order: nobody behind the head is served while the head waits."""
        while self.available and self._queue:
            head = self._queue.head()
            assert head is not None
            line = self._lines[head.key]
            filled = min(self.available, line["backordered"])
            self._decide(
                self.BackorderFilled,
                cause,
                line["order_id"],
                line["line_id"],
                filled,
                remaining_backordered=line["backordered"] - filled,
            )

    def _forget_if_settled(self, key: str) -> None:
        """A line with nothing allocated and nothing queued is done at this SKU; commands
        that could still name it are refused by position before they reach it."""
        line = self._lines[key]
        if not line["allocated"] and not line["backordered"]:
            del self._lines[key]

    def _schedule(self) -> list[tuple[int, datetime]]:
        """The open inbounds in the order they cover the queue (earliest expected first,
        then inbound_id): each one's last covered unit, counted from the head, and date."""
        covered, schedule = 0, []
        for inbound_id in sorted(
            self._inbounds, key=lambda i: (self._inbounds[i]["expected_at"], i)
        ):
            covered += self._inbounds[inbound_id]["quantity"]
            schedule.append((covered, self._inbounds[inbound_id]["expected_at"]))
        return schedule

    @staticmethod
    def _eta_of(units: int, schedule: list[tuple[int, datetime]]) -> datetime | None:
        """The date of the inbound that covers the `units`-th queued unit; None past all."""
        for covered, expected_at in schedule:
            if covered >= units:
                return expected_at
        return None

    def _restate_etas(self, cause: Cause) -> None:
        """Tells every queued line whose promised date moved, in queue order.

        A line's date follows from how many units are queued up to it and the inbounds'
        cumulative quantities. If this command moved queued units or inbound quantities by
        W in all, a line's date can only have moved if it now ends within W units of one
        of the inbounds' cumulative boundaries; only those lines are looked at. A new date
        (or a new or withdrawn inbound) can reorder the schedule: then every line within
        what was or is covered is looked at. The queue keeps running totals, so finding
        those lines costs no walk from the head."""
        if self._input_open:
            return  # end_input restates once for all the input's commands
        if not self._dates_moved and not (self._moved_units and (self._inbounds or self._reach)):
            return  # nothing moved, or no date to move: nothing to look at
        schedule = self._schedule()
        if self._dates_moved:
            windows = [(0, max(self._reach, self.inbound) + self._moved_units)]
        else:
            width, floor = self._moved_units, self._moved_from or 0
            windows = []
            for boundary in [0, *(covered for covered, _ in schedule)]:
                low, high = max(floor, boundary - width), boundary + width
                if low >= high:
                    continue
                if windows and low <= windows[-1][1]:
                    windows[-1] = (windows[-1][0], max(windows[-1][1], high))
                else:
                    windows.append((low, high))
        for low, high in windows:
            for entry, units in list(self._queue.covering(low, high)):
                line = self._lines[entry.key]
                eta = self._eta_of(units, schedule)
                if eta != line["eta"]:
                    self._decide(
                        self.BackorderEtaChanged,
                        cause,
                        line["order_id"],
                        line["line_id"],
                        line["backordered"],
                        eta=eta,
                        previous_eta=line["eta"],
                    )

    def _record(self, event_class: type[Sku.Recorded], cause: Cause, **fields: Any) -> None:
        """Records an event of this SKU caused by `cause` (its position, id and time).

        What Aggregate.trigger_event does (the next version, a timestamp, the event applied
        by its `mutate`, then pending), without what the SKU never needs: its check of an
        explicit TOPIC (the SKU declares none) and two copies of the arguments. The same
        event, a fifth cheaper to make: replays make one for every decision and placement."""
        make: Any = event_class  # the library's dataclass events: mypy sees no fields
        event = make(
            originator_id=self.id,
            originator_version=self.version + 1,
            timestamp=event_class.create_timestamp(),
            position=cause.position,
            sku=self.sku,
            causation_id=cause.causation_id,
            occurred_at=cause.occurred_at,
            **fields,
        )
        event.mutate(self)
        self.pending_events.append(event)

    def _decide(
        self,
        event_class: type[Sku.Decided],
        cause: Cause,
        order_id: str,
        line_id: str,
        quantity: int,
        **extra: Any,
    ) -> None:
        self._record(
            event_class,
            cause,
            decision_id=decision_id(event_class.__name__, cause, self.sku, order_id, line_id),
            order_id=order_id,
            line_id=line_id,
            quantity=quantity,
            **extra,
        )


class Deadlines(Aggregate):
    """For one scope (a sku-commands partition: its SKUs have one writer), when each SKU
    next needs a tick's visit. A tick then visits those SKUs, never every SKU of the scope.

    Each due time is the deadline of a line the SKU queued, or its exact next deadline as
    of the last visit: never later than the SKU's real next deadline, sometimes earlier
    (the line may have been filled since), which costs one visit that expires nothing."""

    class Started(Aggregate.Created):
        scope: str

    class Noted(Aggregate.Event):
        sku: str
        due: datetime | None

        def apply(self, aggregate: Any) -> None:
            if self.due is None:
                aggregate.due_times.pop(self.sku, None)
            else:
                aggregate.due_times[self.sku] = self.due

    def __init__(self, scope: str) -> None:
        self.scope = scope
        self.due_times: dict[str, datetime] = {}

    @classmethod
    def start(cls, scope: str) -> Deadlines:
        return cls._create(cls.Started, id=deadlines_aggregate_id(scope), scope=scope)

    def due(self, at: datetime) -> list[str]:
        """The SKUs to visit at a tick at `at`, in a fixed order (replays repeat it)."""
        return sorted(sku for sku, due in self.due_times.items() if due <= at)

    def note(self, sku: str, news: tuple[bool, datetime | None]) -> None:
        """Takes a SKU's deadline_news(): an exact next deadline, or one that may be
        earlier than the one held."""
        exact, due = news
        held = self.due_times.get(sku)
        if exact:
            if due != held:
                self.trigger_event(self.Noted, sku=sku, due=due)
        elif due is not None and (held is None or due < held):
            self.trigger_event(self.Noted, sku=sku, due=due)
