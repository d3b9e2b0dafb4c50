"""The Sku aggregate: every allocation rule of the contract, for one SKU, and nothing else.

Pure: no clocks, no configuration, no I/O. Time and identity come in with the commands, so
replaying the same commands gives the same events and the same decision ids.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from operator import attrgetter
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate
from typing_extensions import ReadOnly, TypedDict

SKU_NAMESPACE = uuid5(NAMESPACE_URL, "urn:fulfillment:sku")
DECISION_NAMESPACE = uuid5(NAMESPACE_URL, "urn:fulfillment:decision")


def sku_aggregate_id(sku: str) -> UUID:
    return uuid5(SKU_NAMESPACE, sku)


def line_key(order_id: str, line_id: str) -> str:
    # Ids are printable, so a newline can never occur inside one.
    return f"{order_id}\n{line_id}"


def decision_id(kind: str, cause: Cause, sku: str, order_id: str, line_id: str) -> UUID:
    """One command moves one line at most once per decision type, so this is unique; one
    input can be several commands for a SKU (a cancellation of two of its lines), so the
    command's step within the input is part of it."""
    return uuid5(
        DECISION_NAMESPACE,
        f"{kind}\n{cause.causation_id}\n{cause.step}\n{sku}\n{order_id}\n{line_id}",
    )


class LineView(TypedDict):
    """A line's account at this SKU: allocated + backordered + cancelled + rejected = ordered.

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
    cancelled: ReadOnly[int]
    rejected: ReadOnly[int]


class Line(LineView):
    """The Sku's own account of a line: only its events' `apply` move these counters.

    A plain dict, so snapshots store it as JSON as they always have."""

    allocated: int
    backordered: int
    cancelled: int
    rejected: int


@dataclass(frozen=True, order=True, slots=True)
class QueueEntry:
    """A backordered line's place in the queue; entries sort in fill order: higher
    priority first, then the earlier order, then the earlier arrival, then the line's
    index in its order. The key makes every entry distinct, so the order is total."""

    priority_rank: int  # -priority: a higher priority sorts first
    placed_at: datetime
    arrival: int  # intake position of the command that backordered the line
    line_index: int
    key: str  # line_key(order_id, line_id)

    @classmethod
    def of(cls, line: LineView, arrival: int, line_index: int) -> QueueEntry:
        return cls(
            -line["priority"],
            line["placed_at"],
            arrival,
            line_index,
            line_key(line["order_id"], line["line_id"]),
        )


# The part of a queue entry that its line knows: what Sku._dequeue bisects on.
_PRIORITY_RANK_AND_TIME = attrgetter("priority_rank", "placed_at")


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


class Sku(Aggregate):
    """One SKU's stock and backorder queue; the single writer of its allocations."""

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
            aggregate._lines[line_key(self.order_id, self.line_id)] = Line(
                order_id=self.order_id,
                line_id=self.line_id,
                customer_id=self.customer_id,
                priority=self.priority,
                placed_at=self.occurred_at,
                ordered=self.ordered,
                allocated=0,
                backordered=0,
                cancelled=self.cancelled_before_placement,
                rejected=0,
            )

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

        def apply(self, aggregate: Any) -> None:
            super().apply(aggregate)
            key = line_key(self.order_id, self.line_id)
            line = aggregate._lines[key]
            line["backordered"] += self.quantity
            bisect.insort(aggregate._queue, QueueEntry.of(line, self.arrival, self.line_index))

    class LineRejected(Decided):
        reason: str

        def apply(self, aggregate: Any) -> None:
            super().apply(aggregate)
            aggregate._lines[line_key(self.order_id, self.line_id)]["rejected"] += self.quantity

    class StockReceived(Recorded):
        causation_id: UUID
        occurred_at: datetime
        receipt_id: str
        quantity: int

        def apply(self, aggregate: Any) -> None:
            super().apply(aggregate)
            aggregate.received += self.quantity
            aggregate.available += self.quantity

    class BackorderFilled(Decided):
        remaining_backordered: int

        def apply(self, aggregate: Any) -> None:
            super().apply(aggregate)
            key = line_key(self.order_id, self.line_id)
            line = aggregate._lines[key]
            line["backordered"] -= self.quantity
            line["allocated"] += self.quantity
            aggregate.available -= self.quantity
            if line["backordered"] == 0:
                aggregate._dequeue(key)

    class BackorderCancelled(Decided):
        remaining_backordered: int

        def apply(self, aggregate: Any) -> None:
            super().apply(aggregate)
            key = line_key(self.order_id, self.line_id)
            line = aggregate._lines[key]
            line["backordered"] -= self.quantity
            line["cancelled"] += self.quantity
            if line["backordered"] == 0:
                aggregate._dequeue(key)

    class AllocationReleased(Decided):
        def apply(self, aggregate: Any) -> None:
            super().apply(aggregate)
            line = aggregate._lines[line_key(self.order_id, self.line_id)]
            line["allocated"] -= self.quantity
            line["cancelled"] += self.quantity
            aggregate.available += self.quantity

    # The version of the state in snapshots (eventsourcing): 2 since `lines` and `queue`
    # became private and queue entries QueueEntry; older snapshots go through upcast_v1_v2.
    class_version = 2

    def __init__(self, sku: str) -> None:
        self.sku = sku
        self.received = 0
        self.available = 0
        # Private: only the events' apply() change them; readers get copies (see `lines`).
        self._lines: dict[str, Line] = {}
        self._queue: list[QueueEntry] = []  # the open backorders, kept sorted in fill order
        self.last_position = 0

    @staticmethod
    def upcast_v1_v2(state: dict[str, Any]) -> None:
        """A snapshot taken before class_version 2: public `lines` and `queue`, whose
        entries were lists [-priority, placed_at, arrival, line_index, key]. eventsourcing
        calls this when it restores such a snapshot (Snapshot.mutate)."""
        state["_lines"] = state.pop("lines")
        state["_queue"] = [QueueEntry(*entry) for entry in state.pop("queue")]

    @classmethod
    def register(cls, sku: str) -> Sku:
        return cls._create(cls.Registered, id=sku_aggregate_id(sku), sku=sku)

    # --- reading ----------------------------------------------------------------------

    @property
    def allocated(self) -> int:
        return self.received - self.available

    @property
    def backordered(self) -> int:
        return sum(self._lines[entry.key]["backordered"] for entry in self._queue)

    @property
    def lines(self) -> Mapping[str, LineView]:
        """Every line the SKU ever held, by line_key; each read is a copy."""
        return _Lines(self._lines)

    @property
    def queue(self) -> tuple[QueueEntry, ...]:
        """The open backorders' entries, in fill order."""
        return tuple(self._queue)

    def queued_lines(self) -> list[LineView]:
        """The open backorders, in fill order: copies, so a reader cannot change them."""
        return [self._lines[entry.key].copy() for entry in self._queue]

    def has_applied(self, position: int) -> bool:
        """Commands are numbered by intake's log; one already applied must not act again."""
        return position <= self.last_position

    # --- commands ---------------------------------------------------------------------

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
        """A new line takes what is available; the rest is backordered (or rejected)."""
        if self.has_applied(cause.position) or line_key(order_id, line_id) in self._lines:
            return
        cancelled = min(cancelled_before_placement, quantity)
        self.trigger_event(
            self.LinePlaced,
            position=cause.position,
            sku=self.sku,
            causation_id=cause.causation_id,
            occurred_at=cause.occurred_at,
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
        if not rest:
            return
        if not backorders_allowed:
            self._decide(
                self.LineRejected, cause, order_id, line_id, rest, reason="backorders_not_allowed"
            )
            return
        line = self._lines[line_key(order_id, line_id)]
        entry = QueueEntry.of(line, cause.position, line_index)
        self._decide(
            self.LineBackordered,
            cause,
            order_id,
            line_id,
            rest,
            queue_position=bisect.bisect(self._queue, entry) + 1,
            line_index=line_index,
            arrival=cause.position,
            customer_id=customer_id,
            priority=priority,
            placed_at=line["placed_at"],
        )

    def receive_stock(self, cause: Cause, *, receipt_id: str, quantity: int) -> None:
        """Received stock fills the head of the queue first; the rest becomes available."""
        if self.has_applied(cause.position):
            return
        self.trigger_event(
            self.StockReceived,
            position=cause.position,
            sku=self.sku,
            causation_id=cause.causation_id,
            occurred_at=cause.occurred_at,
            receipt_id=receipt_id,
            quantity=quantity,
        )
        self._fill_queue(cause)

    def cancel_line(
        self, cause: Cause, *, order_id: str, line_id: str, quantity: int | None
    ) -> None:
        """Queued quantity goes first, then allocated stock is released and re-offered."""
        if self.has_applied(cause.position):
            return
        line = self._lines.get(line_key(order_id, line_id))
        if line is None:
            return
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
            )
        released = to_cancel - from_queue
        if released:
            self._decide(self.AllocationReleased, cause, order_id, line_id, released)
            self._fill_queue(cause)

    # --- rules shared by the commands ---------------------------------------------------

    def _fill_queue(self, cause: Cause) -> None:
        """Strictly in order: nobody behind the head is served while the head waits."""
        while self.available and self._queue:
            line = self._lines[self._queue[0].key]
            filled = min(self.available, line["backordered"])
            self._decide(
                self.BackorderFilled,
                cause,
                line["order_id"],
                line["line_id"],
                filled,
                remaining_backordered=line["backordered"] - filled,
            )

    def _dequeue(self, key: str) -> None:
        """Takes a line off the queue by its key, once nothing of it is backordered.

        The line knows the head of its entry (priority, order time), not its arrival, so a
        bisection finds the first entry with that head and the key is sought from there: a
        fill (always of the head of the queue) is found at once, a cancellation among the
        few lines placed with the same priority at the same time."""
        line = self._lines[key]
        queue = self._queue
        index = bisect.bisect_left(
            queue, (-line["priority"], line["placed_at"]), key=_PRIORITY_RANK_AND_TIME
        )
        while queue[index].key != key:
            index += 1
        del queue[index]

    def _decide(
        self,
        event_class: type[Sku.Decided],
        cause: Cause,
        order_id: str,
        line_id: str,
        quantity: int,
        **extra: Any,
    ) -> None:
        self.trigger_event(
            event_class,
            position=cause.position,
            sku=self.sku,
            decision_id=decision_id(event_class.__name__, cause, self.sku, order_id, line_id),
            causation_id=cause.causation_id,
            occurred_at=cause.occurred_at,
            order_id=order_id,
            line_id=line_id,
            quantity=quantity,
            **extra,
        )
