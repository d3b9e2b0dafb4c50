"""What the service decided, published to `allocation-decisions` (key `order_id`)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from pydantic import Field

from events.common import BusinessTime, ContractModel, Identifier, Quantity


class Decision(ContractModel):
    decision_id: UUID = Field(
        description="Deterministic: the same input history gives the same ids. Dedupe on it."
    )
    causation_id: UUID = Field(description="The `event_id` of the input that caused it.")
    occurred_at: BusinessTime = Field(description="The cause's business time.")
    order_id: Identifier
    line_id: Identifier
    sku: Identifier
    quantity: Quantity


class LineAllocated(Decision):
    """Taken from available stock when the order arrived."""

    type: Literal["LineAllocated"] = "LineAllocated"


class LineBackordered(Decision):
    """Put on the SKU's backorder queue."""

    type: Literal["LineBackordered"] = "LineBackordered"
    queue_position: int = Field(ge=1, description="1 = next to be filled.")
    eta: datetime | None = Field(
        default=None,
        description="When the line's last queued unit is expected: the `expected_at` of the "
        "inbound that covers it, in fill order; null when no inbound covers it.",
    )


class BackorderFilled(Decision):
    """Queued quantity got stock, from a receipt or a release."""

    type: Literal["BackorderFilled"] = "BackorderFilled"
    remaining_backordered: int = Field(ge=0)


class AllocationReleased(Decision):
    """Allocated stock given back by a cancellation."""

    type: Literal["AllocationReleased"] = "AllocationReleased"


class BackorderCancelled(Decision):
    """Queued quantity removed: by a cancellation, or because it waited too long."""

    type: Literal["BackorderCancelled"] = "BackorderCancelled"
    reason: Literal["cancelled", "expired"] = Field(
        default="cancelled",
        description="cancelled: an OrderCancelled; expired: a clock tick found it waiting "
        "longer than its SKU's `max_wait_days`.",
    )


class LineRejected(Decision):
    """Not accepted because the SKU's policy denies or limits backorders: a lost sale."""

    type: Literal["LineRejected"] = "LineRejected"
    reason: str = Field(
        description="backorders_denied (the policy denies backorders) or backorder_limit "
        "(the queue is full up to the policy's limit)."
    )


class LineShipped(Decision):
    """Allocated units left the warehouse: `quantity` shipped."""

    type: Literal["LineShipped"] = "LineShipped"
    remaining_allocated: int = Field(ge=0, description="Allocated units still to ship.")
    shipment_id: Identifier


class BackorderEtaChanged(Decision):
    """A queued line's promised date moved; `quantity` is what the line has queued now."""

    type: Literal["BackorderEtaChanged"] = "BackorderEtaChanged"
    eta: datetime | None = Field(description="The new date; null: no inbound covers it now.")
    previous_eta: datetime | None = Field(description="The date stated before; may be null.")


AllocationDecision = Annotated[
    LineAllocated
    | LineBackordered
    | BackorderFilled
    | AllocationReleased
    | BackorderCancelled
    | LineRejected
    | LineShipped
    | BackorderEtaChanged,
    Field(discriminator="type"),
]

DECISION_TYPES: tuple[type[Decision], ...] = (
    LineAllocated,
    LineBackordered,
    BackorderFilled,
    AllocationReleased,
    BackorderCancelled,
    LineRejected,
    LineShipped,
    BackorderEtaChanged,
)
