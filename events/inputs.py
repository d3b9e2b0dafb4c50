"""Messages other services publish to us: orders, cancellations, stock receipts."""

from __future__ import annotations

from typing import Literal
from uuid import UUID

from pydantic import Field, model_validator

from events.common import (
    MAX_LINES_PER_ORDER,
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


InputMessage = OrderPlaced | OrderCancelled | StockReceived

# Which event types each input topic carries, by the contract's default topic names' roles.
ORDER_EVENTS: dict[str, type[InputEvent]] = {"OrderPlaced": OrderPlaced}
CANCELLATION_EVENTS: dict[str, type[InputEvent]] = {"OrderCancelled": OrderCancelled}
RECEIPT_EVENTS: dict[str, type[InputEvent]] = {"StockReceived": StockReceived}
