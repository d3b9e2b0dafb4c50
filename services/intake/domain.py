"""Intake's aggregates: what was ordered, cancelled and received, deduplicated.

Pure: the worker decodes messages and passes in plain values, time included.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypedDict
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate

from services.kernel.dead_letters import Source

ORDER_NAMESPACE = uuid5(NAMESPACE_URL, "urn:fulfillment:order")
RECEIPT_NAMESPACE = uuid5(NAMESPACE_URL, "urn:fulfillment:receipt")


def order_aggregate_id(order_id: str) -> UUID:
    return uuid5(ORDER_NAMESPACE, order_id)


def receipt_aggregate_id(receipt_id: str) -> UUID:
    return uuid5(RECEIPT_NAMESPACE, receipt_id)


class PlacedLine(TypedDict):
    line_id: str
    sku: str
    quantity: int
    cancelled_before_placement: int


class CancelledLine(TypedDict):
    line_id: str
    sku: str
    quantity: int | None


class RequestedCancellation(TypedDict):
    line_id: str
    quantity: int | None


class HeldCancellation(TypedDict):
    event_id: str
    occurred_at: datetime
    lines: list[RequestedCancellation] | None
    reason: str | None
    source: Source


class IntakeError(Exception):
    """Base of the reasons an input is dead-lettered by intake's rules."""


class ConflictingOrderError(IntakeError):
    pass


class UnknownLineError(IntakeError):
    pass


class ConflictingReceiptError(IntakeError):
    pass


class Order(Aggregate):
    """One order as intake knows it: its lines, and cancellations that came first."""

    class Placed(Aggregate.Created):
        order_id: str
        event_id: str
        occurred_at: datetime
        customer_id: str
        priority: int
        lines: list[PlacedLine]
        backorders_allowed: bool

        def apply(self, aggregate: Any) -> None:
            aggregate._record_placement(self)

    class CancellationArrivedFirst(Aggregate.Created):
        order_id: str
        cancellation: HeldCancellation

        def apply(self, aggregate: Any) -> None:
            aggregate.held.append(self.cancellation)
            aggregate.event_ids.append(self.cancellation["event_id"])

    class CancellationHeld(Aggregate.Event):
        cancellation: HeldCancellation

        def apply(self, aggregate: Any) -> None:
            aggregate.held.append(self.cancellation)
            aggregate.event_ids.append(self.cancellation["event_id"])

    class PlacedAfterCancellation(Aggregate.Event):
        order_id: str
        event_id: str
        occurred_at: datetime
        customer_id: str
        priority: int
        lines: list[PlacedLine]
        backorders_allowed: bool

        def apply(self, aggregate: Any) -> None:
            aggregate._record_placement(self)
            aggregate.held = []

    class CancellationAccepted(Aggregate.Event):
        order_id: str
        event_id: str
        occurred_at: datetime
        lines: list[CancelledLine]
        reason: str | None

        def apply(self, aggregate: Any) -> None:
            aggregate.event_ids.append(self.event_id)

    def __init__(self, order_id: str) -> None:
        self.order_id = order_id
        self.placed = False
        self.customer_id: str | None = None
        self.lines: dict[str, PlacedLine] = {}
        self.held: list[HeldCancellation] = []
        self.event_ids: list[str] = []

    def _record_placement(self, event: Order.Placed | Order.PlacedAfterCancellation) -> None:
        self.placed = True
        self.customer_id = event.customer_id
        self.lines = {line["line_id"]: line for line in event.lines}
        self.event_ids.append(event.event_id)

    # --- commands ---------------------------------------------------------------------

    @classmethod
    def place(
        cls,
        *,
        order_id: str,
        event_id: str,
        occurred_at: datetime,
        customer_id: str,
        priority: int,
        lines: list[tuple[str, str, int]],
        backorders_allowed: bool,
    ) -> Order:
        return cls._create(
            cls.Placed,
            id=order_aggregate_id(order_id),
            order_id=order_id,
            event_id=event_id,
            occurred_at=occurred_at,
            customer_id=customer_id,
            priority=priority,
            lines=[_placed(line, 0) for line in lines],
            backorders_allowed=backorders_allowed,
        )

    @classmethod
    def hold_first_cancellation(cls, order_id: str, cancellation: HeldCancellation) -> Order:
        """A cancellation may overtake its order; it is kept until the order arrives."""
        return cls._create(
            cls.CancellationArrivedFirst,
            id=order_aggregate_id(order_id),
            order_id=order_id,
            cancellation=cancellation,
        )

    def place_awaited(
        self,
        *,
        event_id: str,
        occurred_at: datetime,
        customer_id: str,
        priority: int,
        lines: list[tuple[str, str, int]],
        backorders_allowed: bool,
    ) -> list[HeldCancellation]:
        """Places an order, applying cancellations that came first; returns those that
        name lines the order does not have (to be dead-lettered)."""
        if self.placed:
            raise ConflictingOrderError(self.order_id)  # callers check is_duplicate first
        known = {line_id for line_id, _, _ in lines}
        cancelled: dict[str, int] = {}
        quantities = {line_id: quantity for line_id, _, quantity in lines}
        rejected: list[HeldCancellation] = []
        for held in self.held:
            if held["lines"] is not None and any(
                line["line_id"] not in known for line in held["lines"]
            ):
                rejected.append(held)
                continue
            requested = held["lines"] or [
                RequestedCancellation(line_id=line_id, quantity=None) for line_id in known
            ]
            for line in requested:
                left = quantities[line["line_id"]] - cancelled.get(line["line_id"], 0)
                wanted = left if line["quantity"] is None else min(line["quantity"], left)
                cancelled[line["line_id"]] = cancelled.get(line["line_id"], 0) + wanted
        self.trigger_event(
            self.PlacedAfterCancellation,
            order_id=self.order_id,
            event_id=event_id,
            occurred_at=occurred_at,
            customer_id=customer_id,
            priority=priority,
            lines=[_placed(line, cancelled.get(line[0], 0)) for line in lines],
            backorders_allowed=backorders_allowed,
        )
        return rejected

    def is_duplicate_placement(self, event_id: str, lines: list[tuple[str, str, int]]) -> bool:
        """The same event again, or the same lines under another event id."""
        if not self.placed:
            return False
        if event_id in self.event_ids:
            return True
        mine = sorted(
            (line["line_id"], line["sku"], line["quantity"]) for line in self.lines.values()
        )
        if mine == sorted(lines):
            return True
        raise ConflictingOrderError(
            f"order {self.order_id} was already placed with other lines; "
            "an order's lines cannot change: publish a cancellation and a new order instead"
        )

    def has_seen(self, event_id: str) -> bool:
        return event_id in self.event_ids

    def hold_cancellation(self, cancellation: HeldCancellation) -> None:
        self.trigger_event(self.CancellationHeld, cancellation=cancellation)

    def cancel(
        self,
        *,
        event_id: str,
        occurred_at: datetime,
        lines: list[RequestedCancellation] | None,
        reason: str | None,
    ) -> None:
        """Resolves each cancelled line to its SKU; an unknown line refuses the whole message."""
        if lines is None:
            resolved = [
                CancelledLine(line_id=line["line_id"], sku=line["sku"], quantity=None)
                for line in self.lines.values()
            ]
        else:
            unknown = [line["line_id"] for line in lines if line["line_id"] not in self.lines]
            if unknown:
                raise UnknownLineError(
                    f"order {self.order_id} has no line(s) {', '.join(map(repr, unknown))}; "
                    "nothing of this cancellation was applied"
                )
            resolved = [
                CancelledLine(
                    line_id=line["line_id"],
                    sku=self.lines[line["line_id"]]["sku"],
                    quantity=line["quantity"],
                )
                for line in lines
            ]
        self.trigger_event(
            self.CancellationAccepted,
            order_id=self.order_id,
            event_id=event_id,
            occurred_at=occurred_at,
            lines=resolved,
            reason=reason,
        )


def _placed(line: tuple[str, str, int], cancelled: int) -> PlacedLine:
    line_id, sku, quantity = line
    return PlacedLine(
        line_id=line_id, sku=sku, quantity=quantity, cancelled_before_placement=cancelled
    )


class Receipt(Aggregate):
    """A stock receipt, recorded once per receipt id."""

    class Recorded(Aggregate.Created):
        receipt_id: str
        event_id: str
        occurred_at: datetime
        sku: str
        quantity: int

    def __init__(
        self, receipt_id: str, event_id: str, occurred_at: datetime, sku: str, quantity: int
    ) -> None:
        self.receipt_id = receipt_id
        self.event_id = event_id
        self.sku = sku
        self.quantity = quantity

    @classmethod
    def record(
        cls, *, receipt_id: str, event_id: str, occurred_at: datetime, sku: str, quantity: int
    ) -> Receipt:
        return cls._create(
            cls.Recorded,
            id=receipt_aggregate_id(receipt_id),
            receipt_id=receipt_id,
            event_id=event_id,
            occurred_at=occurred_at,
            sku=sku,
            quantity=quantity,
        )

    def is_duplicate(self, event_id: str, sku: str, quantity: int) -> bool:
        if event_id == self.event_id or (sku, quantity) == (self.sku, self.quantity):
            return True
        raise ConflictingReceiptError(
            f"receipt {self.receipt_id} was already recorded as {self.quantity} of {self.sku}; "
            "a receipt cannot change: publish a new receipt id for more stock"
        )
