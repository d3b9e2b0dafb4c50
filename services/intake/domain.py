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
SHIPMENT_NAMESPACE = uuid5(NAMESPACE_URL, "urn:fulfillment:shipment")
POLICY_NAMESPACE = uuid5(NAMESPACE_URL, "urn:fulfillment:sku-policy")
INBOUND_NAMESPACE = uuid5(NAMESPACE_URL, "urn:fulfillment:inbound")
TICK_NAMESPACE = uuid5(NAMESPACE_URL, "urn:fulfillment:tick")


def order_aggregate_id(order_id: str) -> UUID:
    return uuid5(ORDER_NAMESPACE, order_id)


def receipt_aggregate_id(receipt_id: str) -> UUID:
    return uuid5(RECEIPT_NAMESPACE, receipt_id)


def shipment_aggregate_id(shipment_id: str) -> UUID:
    return uuid5(SHIPMENT_NAMESPACE, shipment_id)


def policy_aggregate_id(sku: str) -> UUID:
    return uuid5(POLICY_NAMESPACE, sku)


def inbound_aggregate_id(sku: str, inbound_id: str) -> UUID:
    """An inbound is its SKU's: a purchase order for several SKUs is one inbound each."""
    return uuid5(INBOUND_NAMESPACE, f"{sku}\n{inbound_id}")


def tick_aggregate_id(event_id: str) -> UUID:
    return uuid5(TICK_NAMESPACE, event_id)


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


class UnknownOrderError(IntakeError):
    pass


class ConflictingShipmentError(IntakeError):
    pass


class ShippedLine(TypedDict):
    line_id: str
    sku: str
    quantity: int


class ShipmentOrigin(TypedDict):
    """The shipment message's coordinates, for the dead letter of a line that over-ships."""

    topic: str
    partition: int
    offset: int


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
        inbound_id: str | None = None  # version 2

    def __init__(
        self,
        *,
        receipt_id: str,
        event_id: str,
        occurred_at: datetime,
        sku: str,
        quantity: int,
        inbound_id: str | None = None,
    ) -> None:
        self.receipt_id = receipt_id
        self.event_id = event_id
        self.sku = sku
        self.quantity = quantity
        self.inbound_id = inbound_id

    @classmethod
    def record(
        cls,
        *,
        receipt_id: str,
        event_id: str,
        occurred_at: datetime,
        sku: str,
        quantity: int,
        inbound_id: str | None = None,
    ) -> Receipt:
        return cls._create(
            cls.Recorded,
            id=receipt_aggregate_id(receipt_id),
            receipt_id=receipt_id,
            event_id=event_id,
            occurred_at=occurred_at,
            sku=sku,
            quantity=quantity,
            inbound_id=inbound_id,
        )

    def is_duplicate(
        self, event_id: str, sku: str, quantity: int, inbound_id: str | None = None
    ) -> bool:
        mine = (self.sku, self.quantity, getattr(self, "inbound_id", None))
        if event_id == self.event_id or (sku, quantity, inbound_id) == mine:
            return True
        raise ConflictingReceiptError(
            f"receipt {self.receipt_id} was already recorded as {self.quantity} of {self.sku}; "
            "a receipt cannot change: publish a new receipt id for more stock"
        )


class Shipment(Aggregate):
    """A shipment, recorded once per shipment id, its lines resolved to their SKUs."""

    class Dispatched(Aggregate.Created):
        shipment_id: str
        event_id: str
        occurred_at: datetime
        order_id: str
        lines: list[ShippedLine]
        origin: ShipmentOrigin

    def __init__(
        self,
        *,
        shipment_id: str,
        event_id: str,
        occurred_at: datetime,
        order_id: str,
        lines: list[ShippedLine],
        origin: ShipmentOrigin,
    ) -> None:
        self.shipment_id = shipment_id
        self.event_id = event_id
        self.order_id = order_id
        self.lines = lines

    @classmethod
    def dispatch(
        cls,
        order: Order | None,
        *,
        order_id: str,
        shipment_id: str,
        event_id: str,
        occurred_at: datetime,
        lines: list[tuple[str, int]],
        origin: ShipmentOrigin,
    ) -> Shipment:
        """Resolves each line to its SKU through the order; an unknown line refuses it all."""
        if order is None or not order.placed:
            raise UnknownOrderError(
                f"unknown_order: order {order_id} is not known to this service; "
                f"nothing of shipment {shipment_id} was applied"
            )
        unknown = [line_id for line_id, _ in lines if line_id not in order.lines]
        if unknown:
            raise UnknownLineError(
                f"unknown_line: order {order.order_id} has no line(s) "
                f"{', '.join(map(repr, unknown))}; nothing of shipment {shipment_id} was applied"
            )
        return cls._create(
            cls.Dispatched,
            id=shipment_aggregate_id(shipment_id),
            shipment_id=shipment_id,
            event_id=event_id,
            occurred_at=occurred_at,
            order_id=order.order_id,
            lines=[
                ShippedLine(line_id=line_id, sku=order.lines[line_id]["sku"], quantity=quantity)
                for line_id, quantity in lines
            ],
            origin=origin,
        )

    def is_duplicate(self, event_id: str, order_id: str, lines: list[tuple[str, int]]) -> bool:
        """The same event again, or the same content under another event id."""
        mine = sorted((line["line_id"], line["quantity"]) for line in self.lines)
        if event_id == self.event_id or (order_id, sorted(lines)) == (self.order_id, mine):
            return True
        raise ConflictingShipmentError(
            f"conflict: shipment {self.shipment_id} was already recorded with other content; "
            "a shipment cannot change: publish a new shipment id for what else left"
        )


class SkuPolicy(Aggregate):
    """The backorder policies a SKU was given, in the order they came."""

    class Started(Aggregate.Created):
        sku: str

    class Set(Aggregate.Event):
        sku: str
        event_id: str
        occurred_at: datetime
        backorders: str
        limit: int | None
        max_wait_days: int | None

        def apply(self, aggregate: Any) -> None:
            aggregate.event_ids.append(self.event_id)

    def __init__(self, sku: str) -> None:
        self.sku = sku
        self.event_ids: list[str] = []

    @classmethod
    def start(cls, sku: str) -> SkuPolicy:
        return cls._create(cls.Started, id=policy_aggregate_id(sku), sku=sku)

    def has_seen(self, event_id: str) -> bool:
        return event_id in self.event_ids

    def set(
        self,
        *,
        event_id: str,
        occurred_at: datetime,
        backorders: str,
        limit: int | None,
        max_wait_days: int | None,
    ) -> None:
        self.trigger_event(
            self.Set,
            sku=self.sku,
            event_id=event_id,
            occurred_at=occurred_at,
            backorders=backorders,
            limit=limit if backorders == "limit" else None,
            max_wait_days=max_wait_days,
        )


class InboundSupply(Aggregate):
    """One inbound of one SKU: what was expected, revision after revision."""

    class Started(Aggregate.Created):
        sku: str
        inbound_id: str

    class Expected(Aggregate.Event):
        sku: str
        inbound_id: str
        event_id: str
        occurred_at: datetime
        quantity: int
        expected_at: datetime

        def apply(self, aggregate: Any) -> None:
            aggregate.event_ids.append(self.event_id)

    def __init__(self, sku: str, inbound_id: str) -> None:
        self.sku = sku
        self.inbound_id = inbound_id
        self.event_ids: list[str] = []

    @classmethod
    def start(cls, sku: str, inbound_id: str) -> InboundSupply:
        return cls._create(
            cls.Started, id=inbound_aggregate_id(sku, inbound_id), sku=sku, inbound_id=inbound_id
        )

    def has_seen(self, event_id: str) -> bool:
        return event_id in self.event_ids

    def expect(
        self, *, event_id: str, occurred_at: datetime, quantity: int, expected_at: datetime
    ) -> None:
        self.trigger_event(
            self.Expected,
            sku=self.sku,
            inbound_id=self.inbound_id,
            event_id=event_id,
            occurred_at=occurred_at,
            quantity=quantity,
            expected_at=expected_at,
        )


class Tick(Aggregate):
    """A clock tick, recorded once per event id."""

    class Recorded(Aggregate.Created):
        event_id: str
        occurred_at: datetime

    def __init__(self, event_id: str, occurred_at: datetime) -> None:
        self.event_id = event_id
        self.occurred_at = occurred_at

    @classmethod
    def record(cls, *, event_id: str, occurred_at: datetime) -> Tick:
        return cls._create(
            cls.Recorded, id=tick_aggregate_id(event_id), event_id=event_id, occurred_at=occurred_at
        )
