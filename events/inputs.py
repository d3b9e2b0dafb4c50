"""Messages other services publish to us: orders, cancellations, stock receipts."""

from __future__ import annotations

from typing import Any, Literal
from uuid import UUID

from pydantic import Field, model_validator

from events.common import (
    MAX_LINES_PER_ORDER,
    MAX_QUANTITY,
    MAX_QUEUE_LIMIT,
    BusinessTime,
    ContractModel,
    Identifier,
    Quantity,
)


class InputEvent(ContractModel):
    """Fields every input event carries."""

    event_id: UUID = Field(description="Unique per event: the idempotency key.")
    occurred_at: BusinessTime
    schema_version: int = Field(default=1, ge=1, description="Version of this event's schema.")


class OrderLine(ContractModel):
    line_id: Identifier = Field(description="Unique within the order.")
    sku: Identifier
    quantity: Quantity


class OrderPlaced(InputEvent):
    """A customer's order; topic `orders`, key `order_id`."""

    type: Literal["OrderPlaced"] = "OrderPlaced"
    order_id: Identifier
    customer_id: Identifier
    priority: int = Field(
        default=0,
        strict=True,
        ge=-1_000_000,
        le=1_000_000,
        description="Higher is served first from the backorder queue.",
    )
    lines: list[OrderLine] = Field(min_length=1, max_length=MAX_LINES_PER_ORDER)

    @model_validator(mode="after")
    def _line_ids_are_unique(self) -> OrderPlaced:
        ids = [line.line_id for line in self.lines]
        if len(set(ids)) != len(ids):
            raise ValueError("line_id values must be unique within an order")
        return self


class CancelledLine(ContractModel):
    line_id: Identifier
    quantity: Quantity | None = Field(
        default=None, description="Absent: all that the line still has outstanding."
    )


class OrderCancelled(InputEvent):
    """Cancels a whole order or some of its lines; topic `cancellations`, key `order_id`."""

    type: Literal["OrderCancelled"] = "OrderCancelled"
    order_id: Identifier
    lines: list[CancelledLine] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_LINES_PER_ORDER,
        description="Absent: the whole order, everything still outstanding.",
    )
    reason: str | None = Field(default=None, max_length=256)

    @model_validator(mode="after")
    def _line_ids_are_unique(self) -> OrderCancelled:
        if self.lines is not None:
            ids = [line.line_id for line in self.lines]
            if len(set(ids)) != len(ids):
                raise ValueError("line_id values must be unique within a cancellation")
        return self


class StockReceived(InputEvent):
    """Stock that arrived for a SKU; topic `receipts`, key `sku`."""

    type: Literal["StockReceived"] = "StockReceived"
    receipt_id: Identifier
    sku: Identifier
    quantity: Quantity
    inbound_id: Identifier | None = Field(
        default=None,
        description="The inbound of this SKU that this stock arrived for: its expected "
        "quantity goes down by this receipt's (never below 0). Absent, or an inbound the SKU "
        "does not have: plain stock.",
    )


class ShippedLine(ContractModel):
    line_id: Identifier
    quantity: Quantity = Field(description="Units that left, out of the line's allocated.")


class ShipmentDispatched(InputEvent):
    """Allocated units that left the warehouse; topic `shipments`, key `order_id`."""

    type: Literal["ShipmentDispatched"] = "ShipmentDispatched"
    shipment_id: Identifier = Field(description="The same id again: a duplicate, or a conflict.")
    order_id: Identifier
    lines: list[ShippedLine] = Field(min_length=1, max_length=MAX_LINES_PER_ORDER)

    @model_validator(mode="after")
    def _line_ids_are_unique(self) -> ShipmentDispatched:
        ids = [line.line_id for line in self.lines]
        if len(set(ids)) != len(ids):
            raise ValueError("line_id values must be unique within a shipment")
        return self


class BackorderPolicySet(InputEvent):
    """How a SKU treats what its stock cannot cover; topic `sku-policies`, key `sku`."""

    type: Literal["BackorderPolicySet"] = "BackorderPolicySet"
    sku: Identifier
    backorders: Literal["allow", "deny", "limit"] = Field(
        description="allow: queue it; deny: reject it; limit: queue it while the SKU's queue "
        "holds at most `limit` units, reject the excess."
    )
    limit: int | None = Field(
        default=None,
        strict=True,
        ge=0,
        le=MAX_QUEUE_LIMIT,
        description="Units the queue may hold in all; required with `limit`, ignored otherwise.",
    )
    max_wait_days: int | None = Field(
        default=None,
        strict=True,
        ge=1,
        le=3650,
        description="How long a backorder may wait before it expires; null: no limit.",
    )

    @model_validator(mode="before")
    @classmethod
    def _limit_only_with_limit(cls, data: Any) -> Any:
        """`limit` is ignored unless backorders is 'limit': whatever it holds then."""
        if isinstance(data, dict) and data.get("backorders") != "limit":
            return {key: value for key, value in data.items() if key != "limit"}
        return data

    @model_validator(mode="after")
    def _limit_comes_with_limit(self) -> BackorderPolicySet:
        if self.backorders == "limit" and self.limit is None:
            raise ValueError("`limit` is required when backorders is 'limit'")
        return self


class InboundExpected(InputEvent):
    """Supply on its way to a SKU, for promised dates; topic `inbound`, key `sku`."""

    type: Literal["InboundExpected"] = "InboundExpected"
    inbound_id: Identifier = Field(
        description="With the SKU, identifies the inbound: the same pair again is a revision."
    )
    sku: Identifier
    quantity: int = Field(
        strict=True, ge=0, le=MAX_QUANTITY, description="Units expected; 0 withdraws it."
    )
    expected_at: BusinessTime


class ClockTicked(InputEvent):
    """Time, as an input, so that replays see the same time; topic `clock`, no key."""

    type: Literal["ClockTicked"] = "ClockTicked"


InputMessage = (
    OrderPlaced
    | OrderCancelled
    | StockReceived
    | ShipmentDispatched
    | BackorderPolicySet
    | InboundExpected
    | ClockTicked
)

# Which event types each input topic carries, by the contract's default topic names' roles.
ORDER_EVENTS: dict[str, type[InputEvent]] = {"OrderPlaced": OrderPlaced}
CANCELLATION_EVENTS: dict[str, type[InputEvent]] = {"OrderCancelled": OrderCancelled}
RECEIPT_EVENTS: dict[str, type[InputEvent]] = {"StockReceived": StockReceived}
SHIPMENT_EVENTS: dict[str, type[InputEvent]] = {"ShipmentDispatched": ShipmentDispatched}
POLICY_EVENTS: dict[str, type[InputEvent]] = {"BackorderPolicySet": BackorderPolicySet}
INBOUND_EVENTS: dict[str, type[InputEvent]] = {"InboundExpected": InboundExpected}
CLOCK_EVENTS: dict[str, type[InputEvent]] = {"ClockTicked": ClockTicked}
