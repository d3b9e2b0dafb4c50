"""Builders shared by the unit tests: a Sku driven command by command, and contract events.

Each command gets the next intake position and a fresh cause, like intake's log would give.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from uuid import UUID, uuid5

from events.inputs import CancelledLine, OrderCancelled, OrderLine, OrderPlaced, StockReceived
from services.allocation.domain import BackorderMode, Cause, ShipmentSource, Sku

T0 = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
S = TypeVar("S")
CAUSE_NAMESPACE = UUID("6f1d3a52-9a0e-4d47-9c1e-0f3a2b1c4d5e")

Decision = tuple[Any, ...]


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def cause_id(n: int) -> UUID:
    """A stable event id per number, so two runs of one story have the same causes."""
    return uuid5(CAUSE_NAMESPACE, str(n))


def decided(events: Sequence[object]) -> list[Decision]:
    """The decisions among the events, as (type, order_id, line_id, quantity, *extra).

    extra is queue_position for LineBackordered, remaining_backordered for BackorderFilled
    and reason for LineRejected.
    """
    rows: list[Decision] = []
    for event in events:
        if not isinstance(event, Sku.Decided):
            continue
        row: Decision = (type(event).__name__, event.order_id, event.line_id, event.quantity)
        if isinstance(event, Sku.LineBackordered):
            row = (*row, event.queue_position)
        elif isinstance(event, Sku.BackorderFilled):
            row = (*row, event.remaining_backordered)
        elif isinstance(event, Sku.LineRejected):
            row = (*row, event.reason)
        rows.append(row)
    return rows


def day(days: float) -> datetime:
    """A moment `days` after T0 (negative: before it): for dates, deadlines and ticks."""
    return T0 + timedelta(days=days)


MINUTES_A_DAY = 24 * 60  # SkuStory.place takes its order time in minutes after T0


def told(events: Sequence[object]) -> list[Decision]:
    """The decisions among the events with every field version 2 gave them, as
    (type, order_id, line_id, quantity, *extra).

    extra is queue_position and eta for LineBackordered, remaining_backordered for
    BackorderFilled, remaining_backordered and reason for BackorderCancelled, reason for
    LineRejected, remaining_allocated and shipment_id for LineShipped, eta and previous_eta
    for BackorderEtaChanged.
    """
    rows: list[Decision] = []
    for event in events:
        if not isinstance(event, Sku.Decided):
            continue
        row: Decision = (type(event).__name__, event.order_id, event.line_id, event.quantity)
        if isinstance(event, Sku.LineBackordered):
            row = (*row, event.queue_position, event.eta)
        elif isinstance(event, Sku.BackorderFilled):
            row = (*row, event.remaining_backordered)
        elif isinstance(event, Sku.BackorderCancelled):
            row = (*row, event.remaining_backordered, event.reason)
        elif isinstance(event, Sku.LineRejected):
            row = (*row, event.reason)
        elif isinstance(event, Sku.LineShipped):
            row = (*row, event.remaining_allocated, event.shipment_id)
        elif isinstance(event, Sku.BackorderEtaChanged):
            row = (*row, event.eta, event.previous_eta)
        rows.append(row)
    return rows


def eta_changes(events: Sequence[object]) -> list[Decision]:
    """The BackorderEtaChanged decisions as (order_id, quantity, eta, previous_eta)."""
    return [
        (event.order_id, event.quantity, event.eta, event.previous_eta)
        for event in events
        if isinstance(event, Sku.BackorderEtaChanged)
    ]


def placed_once(steps: Sequence[S], placement: type) -> list[S]:
    """Intake records an order once: a second placement (a step of type `placement` naming
    an order already placed) never reaches the SKU, so histories drop it."""
    seen: set[str] = set()
    kept: list[S] = []
    for step in steps:
        if isinstance(step, placement):
            order_id: str = getattr(step, "order_id")  # noqa: B009 - S is any step type
            if order_id in seen:
                continue
            seen.add(order_id)
        kept.append(step)
    return kept


def event_fields(events: Sequence[object]) -> list[tuple[str, dict[str, Any]]]:
    """Every field of every event but the wall-clock timestamp the library adds."""
    return [
        (type(event).__name__, {k: v for k, v in vars(event).items() if k != "timestamp"})
        for event in events
    ]


class SkuStory:
    """One SKU, given commands and then a command whose events are returned."""

    def __init__(self, sku: str = "SKU-RED-M") -> None:
        self.sku = Sku.register(sku)
        self.position = 0
        self.history: list[object] = []
        self.sku.collect_events()

    def _collect(self) -> list[object]:
        events: list[object] = list(self.sku.collect_events())
        self.history += events
        return events

    def next_cause(self, minutes: float = 0, causation_id: UUID | None = None) -> Cause:
        self.position += 1
        return Cause(causation_id or cause_id(self.position), at(minutes), self.position)

    def place(
        self,
        order_id: str,
        quantity: int,
        *,
        line_id: str = "1",
        line_index: int = 0,
        priority: int = 0,
        minutes: float = 0,
        cancelled_before_placement: int = 0,
        backorders_allowed: bool = True,
        cause: Cause | None = None,
    ) -> list[object]:
        self.sku.place_line(
            cause or self.next_cause(minutes),
            order_id=order_id,
            line_id=line_id,
            line_index=line_index,
            customer_id=f"C-{order_id}",
            priority=priority,
            quantity=quantity,
            cancelled_before_placement=cancelled_before_placement,
            backorders_allowed=backorders_allowed,
        )
        return self._collect()

    def receive(
        self, quantity: int, *, cause: Cause | None = None, inbound_id: str | None = None
    ) -> list[object]:
        cause = cause or self.next_cause()
        self.sku.receive_stock(
            cause, receipt_id=f"R-{cause.position}", quantity=quantity, inbound_id=inbound_id
        )
        return self._collect()

    def cancel(
        self,
        order_id: str,
        quantity: int | None = None,
        *,
        line_id: str = "1",
        cause: Cause | None = None,
    ) -> list[object]:
        self.sku.cancel_line(
            cause or self.next_cause(), order_id=order_id, line_id=line_id, quantity=quantity
        )
        return self._collect()

    def ship(
        self,
        order_id: str,
        quantity: int,
        *,
        line_id: str = "1",
        shipment_id: str = "S-1",
        cause: Cause | None = None,
    ) -> list[object]:
        self.sku.ship_line(
            cause or self.next_cause(),
            shipment_id=shipment_id,
            order_id=order_id,
            line_id=line_id,
            quantity=quantity,
            source=ShipmentSource("shipments", 0, self.position),
        )
        return self._collect()

    def set_policy(
        self,
        backorders: BackorderMode = "allow",
        *,
        limit: int | None = None,
        max_wait_days: int | None = None,
        cause: Cause | None = None,
    ) -> list[object]:
        self.sku.set_policy(
            cause or self.next_cause(),
            backorders=backorders,
            limit=limit,
            max_wait_days=max_wait_days,
        )
        return self._collect()

    def expect(
        self,
        inbound_id: str,
        quantity: int,
        expected_at: datetime,
        *,
        cause: Cause | None = None,
    ) -> list[object]:
        self.sku.expect_inbound(
            cause or self.next_cause(),
            inbound_id=inbound_id,
            quantity=quantity,
            expected_at=expected_at,
        )
        return self._collect()

    def tick(self, moment: datetime, *, cause: Cause | None = None) -> list[object]:
        self.position += 1
        self.sku.expire(cause or Cause(cause_id(self.position), moment, self.position))
        return self._collect()

    def line(self, order_id: str, line_id: str = "1") -> dict[str, Any]:
        """The line's account from every decision so far, settled lines included; an open
        line's state in the SKU must agree with it."""
        account: dict[str, Any] = {}
        for event in self.history:
            if getattr(event, "order_id", None) != order_id or event.line_id != line_id:  # type: ignore[attr-defined]
                continue
            if isinstance(event, Sku.LinePlaced):
                account = {
                    "ordered": event.ordered,
                    "allocated": 0,
                    "backordered": 0,
                    "shipped": 0,
                    "cancelled": event.cancelled_before_placement,
                    "rejected": 0,
                }
            elif isinstance(event, Sku.LineAllocated):
                account["allocated"] += event.quantity
            elif isinstance(event, Sku.LineBackordered):
                account["backordered"] += event.quantity
            elif isinstance(event, Sku.BackorderFilled):
                account["backordered"] -= event.quantity
                account["allocated"] += event.quantity
            elif isinstance(event, Sku.BackorderCancelled):
                account["backordered"] -= event.quantity
                account["cancelled"] += event.quantity
            elif isinstance(event, Sku.AllocationReleased):
                account["allocated"] -= event.quantity
                account["cancelled"] += event.quantity
            elif isinstance(event, Sku.LineShipped):
                account["allocated"] -= event.quantity
                account["shipped"] += event.quantity
            elif isinstance(event, Sku.LineRejected):
                account["rejected"] += event.quantity
        assert account, f"no line {order_id}/{line_id} was placed"
        key = f"{order_id}\n{line_id}"
        settled = not account["allocated"] and not account["backordered"]
        assert (key not in self.sku.lines) == settled, "a line is kept exactly while it is open"
        if not settled:
            live = self.sku.lines[key]
            assert {name: live[name] for name in account} == account  # type: ignore[literal-required]
        return account

    def queue(self) -> list[tuple[str, str, int]]:
        return [
            (line["order_id"], line["line_id"], line["backordered"])
            for line in self.sku.queued_lines()
        ]


# --- contract input events ---------------------------------------------------------------


def order_placed(
    order_id: str,
    lines: Sequence[tuple[str, str, int]],
    *,
    event_id: UUID,
    priority: int = 0,
    minutes: float = 0,
) -> OrderPlaced:
    return OrderPlaced(
        event_id=event_id,
        occurred_at=at(minutes),
        order_id=order_id,
        customer_id=f"C-{order_id}",
        priority=priority,
        lines=[OrderLine(line_id=i, sku=s, quantity=q) for i, s, q in lines],
    )


def order_cancelled(
    order_id: str,
    lines: Sequence[tuple[str, int | None]] | None = None,
    *,
    event_id: UUID,
    minutes: float = 1,
) -> OrderCancelled:
    return OrderCancelled(
        event_id=event_id,
        occurred_at=at(minutes),
        order_id=order_id,
        lines=None if lines is None else [CancelledLine(line_id=i, quantity=q) for i, q in lines],
        reason="customer_request",
    )


def stock_received(
    receipt_id: str, sku: str, quantity: int, *, event_id: UUID, minutes: float = 2
) -> StockReceived:
    return StockReceived(
        event_id=event_id,
        occurred_at=at(minutes),
        receipt_id=receipt_id,
        sku=sku,
        quantity=quantity,
    )
