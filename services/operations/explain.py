"""Why an order's lines went as they did: each decision with the input that caused it, and
every receipt or release that served someone else while a line waited, with the queue rule
that put them ahead.

Everything comes from the SKUs' own events: each event carries its input's event id
(`causation_id`), business time and intake position, and the events one input caused follow
one another in the SKU's stream, the first of them naming the input's kind (a LinePlaced is
an OrderPlaced, a StockReceived a StockReceived, ...). A line queued behind others is served
after them in the queue's order (services/allocation/queue.py): higher priority, then the
earlier order, then the earlier arrival. Who was ahead, and why, follows from the entries of
the two lines: from their LineBackordered events, or, for a line queued before the events
read, from the SKU as it was just before the fill (its snapshots make that cheap).

Only a SKU's events from the order's placement on are read, and only until every line of
the order there is settled: a hot SKU's long history is not.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError

from services.allocation.application import Allocation
from services.allocation.domain import Sku, line_key, sku_aggregate_id
from services.allocation.queue import QueueEntry
from services.intake.application import Intake
from services.intake.domain import Order, order_aggregate_id
from services.operations.inspection import version_at_position, version_recorded_by

InputKind = Literal[
    "OrderPlaced",
    "OrderCancelled",
    "StockReceived",
    "ShipmentDispatched",
    "BackorderPolicySet",
    "InboundExpected",
    "ClockTicked",
]
# Why a line served while another waited was ahead of it: the queue's order, rule by rule.
AheadBy = Literal["priority", "order time", "arrival"]

# Events of one SKU read at a time.
PAGE = 1000
# How far apart the clocks of intake's and allocation's processes may be: a SKU's events
# about an order are read from this long before intake recorded the order.
CLOCK_SKEW = timedelta(minutes=5)


@dataclass(frozen=True)
class InputCause:
    """The input that caused a decision: its kind, event id and business time."""

    input: InputKind
    event_id: UUID
    occurred_at: datetime


@dataclass(frozen=True)
class ExplainedDecision:
    decision: str  # the decision's type, as published (LineAllocated, BackorderFilled, ...)
    quantity: int
    cause: InputCause
    recorded_at: datetime  # when the service took it
    queue_position: int | None = None  # LineBackordered
    remaining: int | None = None  # fills and cancellations: still queued; shipments: allocated
    reason: str | None = None  # rejections and cancellations
    eta: datetime | None = None  # LineBackordered, BackorderEtaChanged
    previous_eta: datetime | None = None  # BackorderEtaChanged
    shipment_id: str | None = None  # LineShipped


@dataclass(frozen=True)
class ServedLine:
    """A line filled while the explained one waited, and the rule that put it ahead."""

    order_id: str
    line_id: str
    units: int
    ahead_by: AheadBy
    priority: int
    placed_at: datetime  # its order's business time
    arrival: int  # intake position of the command that queued it


@dataclass(frozen=True)
class ReleasedUnits:
    order_id: str
    line_id: str
    units: int


@dataclass
class ServedAhead:
    """One receipt or release that filled others while the line waited."""

    cause: InputCause
    waiting: int  # units the line still waited for when the input came
    receipt_id: str | None = None  # a receipt: its id and units
    received: int | None = None
    released: list[ReleasedUnits] = field(default_factory=list)  # a cancellation's releases
    served: list[ServedLine] = field(default_factory=list)  # in fill order
    line_got: int = 0  # units the line itself got from the input, after them


@dataclass
class LineExplanation:
    line_id: str
    sku: str
    # From the line's placement at its SKU; None while the SKU has not placed it yet.
    line_index: int | None = None
    customer_id: str | None = None
    priority: int | None = None
    placed_at: datetime | None = None
    ordered: int | None = None
    cancelled_before_placement: int = 0
    arrival: int | None = None  # its place in the queue's order, if it was ever queued
    decisions: list[ExplainedDecision] = field(default_factory=list)
    served_ahead: list[ServedAhead] = field(default_factory=list)


@dataclass(frozen=True)
class OrderExplanation:
    order_id: str
    lines: list[LineExplanation]


def input_kind(event: object) -> InputKind | None:
    """The kind of input an event of a SKU comes from, for the events that say it: the
    first event an input causes at a SKU always does."""
    if isinstance(event, Sku.LinePlaced):
        return "OrderPlaced"
    if isinstance(event, Sku.StockReceived):
        return "StockReceived"
    if isinstance(event, Sku.LineShipped | Sku.ShipmentLineRefused):
        return "ShipmentDispatched"
    if isinstance(event, Sku.PolicySet):
        return "BackorderPolicySet"
    if isinstance(event, Sku.InboundExpected):
        return "InboundExpected"
    if isinstance(event, Sku.BackorderCancelled):
        return "ClockTicked" if event.reason == "expired" else "OrderCancelled"
    if isinstance(event, Sku.AllocationReleased):
        return "OrderCancelled"
    return None


def ahead_by(served: QueueEntry, waiting: QueueEntry) -> AheadBy:
    """The first rule of the queue's order that tells the two apart."""
    if served.priority_rank != waiting.priority_rank:
        return "priority"
    if served.placed_at != waiting.placed_at:
        return "order time"
    return "arrival"  # the same arrival: lines of one order, in their order


# The entries of a SKU's queue as they were at one of its versions.
QueueAt = Callable[[int], Iterable[QueueEntry]]


@dataclass
class _Input:
    """The input being read: the events it caused follow one another."""

    causation_id: UUID
    occurred_at: datetime
    kind: InputKind | None
    receipt_id: str | None = None
    received: int | None = None
    released: list[ReleasedUnits] = field(default_factory=list)

    def cause(self) -> InputCause:
        if self.kind is None:
            raise ValueError(f"no event of input {self.causation_id} says what kind it is")
        return InputCause(self.kind, self.causation_id, self.occurred_at)


@dataclass
class _Line:
    explanation: LineExplanation
    allocated: int = 0
    backordered: int = 0
    entry: QueueEntry | None = None
    served: dict[UUID, ServedAhead] = field(default_factory=dict)  # by input, while waiting

    @property
    def settled(self) -> bool:
        return not self.allocated and not self.backordered


def explain_events(
    order_id: str,
    lines: Mapping[str, str],
    events: Iterable[object],
    queue_at: QueueAt,
) -> dict[str, LineExplanation]:
    """The order's lines at one SKU (`lines`: line id → SKU), explained from the SKU's events
    from before their placement on; stops reading once every one of them is settled. A line
    whose placement is not among the events is left out."""
    reading = _Reading(order_id, lines, queue_at)
    current: _Input | None = None
    for event in events:
        causation_id = getattr(event, "causation_id", None)
        if not isinstance(event, Sku.Recorded) or causation_id is None:
            continue  # the SKU's registration
        if current is None or causation_id != current.causation_id:
            if reading.all_settled():
                break  # nothing later is about the order's lines
            occurred_at: datetime = getattr(event, "occurred_at")  # noqa: B009 - every caused event has it
            current = _Input(causation_id, occurred_at, input_kind(event))
        elif current.kind is None:
            current.kind = input_kind(event)
        reading.read(event, current)
    for line in reading.found.values():
        line.explanation.served_ahead = list(line.served.values())
    return {line_id: line.explanation for line_id, line in reading.found.items()}


@dataclass
class _Reading:
    """What the events read so far tell about the order's lines at one SKU."""

    order_id: str
    lines: Mapping[str, str]
    queue_at: QueueAt
    found: dict[str, _Line] = field(default_factory=dict)
    entries: dict[str, QueueEntry] = field(default_factory=dict)  # known so far, by line key

    def all_settled(self) -> bool:
        return len(self.found) == len(self.lines) and all(
            line.settled for line in self.found.values()
        )

    def read(self, event: Sku.Recorded, current: _Input) -> None:
        """One event: what it tells about the order's lines, the queue and the input."""
        ours = (
            getattr(event, "order_id", None) == self.order_id
            and getattr(event, "line_id", "") in self.lines
        )
        if isinstance(event, Sku.StockReceived):
            current.receipt_id, current.received = event.receipt_id, event.quantity
        elif isinstance(event, Sku.AllocationReleased):
            current.released.append(ReleasedUnits(event.order_id, event.line_id, event.quantity))
        elif isinstance(event, Sku.LineBackordered):
            key = line_key(event.order_id, event.line_id)
            self.entries[key] = QueueEntry(
                -event.priority, event.placed_at, event.arrival, event.line_index, key
            )
        if isinstance(event, Sku.LinePlaced) and ours:
            self.found[event.line_id] = _Line(
                LineExplanation(
                    line_id=event.line_id,
                    sku=event.sku,
                    line_index=event.line_index,
                    customer_id=event.customer_id,
                    priority=event.priority,
                    placed_at=event.occurred_at,
                    ordered=event.ordered,
                    cancelled_before_placement=event.cancelled_before_placement,
                )
            )
            return
        if not isinstance(event, Sku.Decided):
            return
        line = self.found.get(event.line_id) if ours else None
        if line is not None:
            self._decided(line, event, current)
        if isinstance(event, Sku.BackorderFilled):
            # Anyone else filled, another line of this order included, while one waited.
            for waiting in self.found.values():
                if waiting is not line and waiting.backordered:
                    self._served(waiting, event, current)

    def _decided(self, line: _Line, event: Sku.Decided, current: _Input) -> None:
        """A decision about one of the order's lines: recorded, and its account moved."""
        facts: dict[str, Any] = {}
        if isinstance(event, Sku.LineAllocated):
            line.allocated += event.quantity
        elif isinstance(event, Sku.LineBackordered):
            line.backordered += event.quantity
            line.entry = self.entries[line_key(event.order_id, event.line_id)]
            line.explanation.arrival = event.arrival
            facts = {"queue_position": event.queue_position, "eta": event.eta}
        elif isinstance(event, Sku.BackorderFilled):
            line.backordered -= event.quantity
            line.allocated += event.quantity
            facts = {"remaining": event.remaining_backordered}
            if current.causation_id in line.served:
                line.served[current.causation_id].line_got += event.quantity
        elif isinstance(event, Sku.BackorderCancelled):
            line.backordered -= event.quantity
            facts = {"remaining": event.remaining_backordered, "reason": event.reason}
        elif isinstance(event, Sku.AllocationReleased):
            line.allocated -= event.quantity
        elif isinstance(event, Sku.LineShipped):
            line.allocated -= event.quantity
            facts = {"remaining": event.remaining_allocated, "shipment_id": event.shipment_id}
        elif isinstance(event, Sku.LineRejected):
            facts = {"reason": event.reason}
        elif isinstance(event, Sku.BackorderEtaChanged):
            facts = {"eta": event.eta, "previous_eta": event.previous_eta}
        line.explanation.decisions.append(
            ExplainedDecision(
                decision=type(event).__name__,
                quantity=event.quantity,
                cause=current.cause(),
                recorded_at=event.timestamp,
                **facts,
            )
        )

    def _served(self, waiting: _Line, fill: Sku.BackorderFilled, current: _Input) -> None:
        """Someone else was filled while `waiting` waited: who, and by which rule ahead."""
        key = line_key(fill.order_id, fill.line_id)
        if key not in self.entries:
            # Queued before the events read: the SKU as it was just before the fill has it.
            at = fill.originator_version - 1
            self.entries.update((entry.key, entry) for entry in self.queue_at(at))
        entry = self.entries[key]
        assert waiting.entry is not None, "a waiting line was queued"
        record = waiting.served.get(current.causation_id)
        if record is None:
            record = ServedAhead(
                cause=current.cause(),
                waiting=waiting.backordered,
                receipt_id=current.receipt_id,
                received=current.received,
                released=current.released,  # the input's, as it is read
            )
            waiting.served[current.causation_id] = record
        record.served.append(
            ServedLine(
                order_id=fill.order_id,
                line_id=fill.line_id,
                units=fill.quantity,
                ahead_by=ahead_by(entry, waiting.entry),
                priority=-entry.priority_rank,
                placed_at=entry.placed_at,
                arrival=entry.arrival,
            )
        )


# --- over the allocation store ------------------------------------------------------------


def sku_events_from(allocation: Allocation, sku: str, start: int) -> Iterator[object]:
    """The SKU's events from version `start` on, a page at a time (read as they are used)."""
    after = max(0, start - 1)
    while True:
        page = list(allocation.events.get(sku_aggregate_id(sku), gt=after, limit=PAGE))
        yield from page
        if len(page) < PAGE:
            return
        after = page[-1].originator_version


def queue_as_it_was(allocation: Allocation, sku: str) -> QueueAt:
    """The SKU's queue at a version: rebuilt from its last snapshot at or before it."""

    def queue_at(version: int) -> Iterable[QueueEntry]:
        found: Sku = allocation.repository.get(sku_aggregate_id(sku), version=version)
        assert isinstance(found, Sku)
        return found.queue

    return queue_at


def explain_order(
    allocation: Allocation,
    order_id: str,
    lines: Sequence[tuple[str, str]],
    starts: Mapping[str, int] | None = None,
) -> OrderExplanation:
    """The order's lines (line id, SKU), each explained from its SKU's events, read from
    `starts[sku]` (a version at or before the order's placement there; see
    starts_recorded_since and starts_after_position) or else from the SKU's first. If a
    line's placement is not among the events from there, its SKU is read again from the
    first: a wrong start costs time, never a wrong answer."""
    by_sku: dict[str, dict[str, str]] = {}
    for line_id, sku in lines:
        by_sku.setdefault(sku, {})[line_id] = sku
    explained: dict[str, LineExplanation] = {}
    for sku, of_sku in by_sku.items():
        start = max(1, (starts or {}).get(sku, 1))
        queue_at = queue_as_it_was(allocation, sku)
        found: dict[str, LineExplanation] = explain_events(
            order_id, of_sku, sku_events_from(allocation, sku, start), queue_at
        )
        if len(found) < len(of_sku) and start > 1:
            found = explain_events(order_id, of_sku, sku_events_from(allocation, sku, 1), queue_at)
        explained.update(found)
    ordered = [explained.get(line_id) or LineExplanation(line_id, sku) for line_id, sku in lines]
    ordered.sort(key=lambda line: (line.line_index is None, line.line_index or 0))
    return OrderExplanation(order_id, ordered)


def explain_placed_order(
    intake: Intake, allocation: Allocation, order_id: str
) -> OrderExplanation | None:
    """The order as intake recorded it, explained (None: intake never placed it). Its SKUs
    are read from when intake recorded it on."""
    try:
        order: Order = intake.repository.get(order_aggregate_id(order_id))
    except AggregateNotFoundError:
        return None
    if not order.placed:
        return None  # only a cancellation came: nothing was ever placed
    lines = [(line["line_id"], line["sku"]) for line in order.lines.values()]
    starts = starts_recorded_since(allocation, {sku for _, sku in lines}, order.created_on)
    return explain_order(allocation, order_id, lines, starts)


def starts_recorded_since(
    allocation: Allocation, skus: Collection[str], moment: datetime
) -> dict[str, int]:
    """Where to start reading each SKU for an order intake recorded at `moment`: nothing
    about the order was recorded before it (less the clocks' skew)."""
    return {
        sku: max(1, version_recorded_by(allocation, sku_aggregate_id(sku), moment - CLOCK_SKEW))
        for sku in skus
    }


def starts_after_position(
    allocation: Allocation,
    lines: Sequence[tuple[str, str]],
    first_decisions: Mapping[str, int],
    reached: int,
) -> dict[str, int]:
    """Where to start reading each SKU, from the allocation log: the position of the
    order's first decision at the SKU (its placement and the placements of lines settled at
    once come just before it) or, for a SKU with none yet, the position a reader of the log
    has reached without seeing one (the placement comes after it)."""
    per_sku: dict[str, int] = {}
    for _, sku in lines:
        per_sku[sku] = per_sku.get(sku, 0) + 1
    starts: dict[str, int] = {}
    for sku, count in per_sku.items():
        sku_id = sku_aggregate_id(sku)
        if sku in first_decisions:
            starts[sku] = version_at_position(allocation, sku_id, first_decisions[sku]) - count
        else:
            starts[sku] = version_at_position(allocation, sku_id, reached) + 1
    return starts
