"""What the service decided, published to `allocation-decisions` (key `order_id`)."""

from __future__ import annotations

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


class BackorderFilled(Decision):
    """Queued quantity got stock, from a receipt or a release."""

    type: Literal["BackorderFilled"] = "BackorderFilled"
    remaining_backordered: int = Field(ge=0)


class AllocationReleased(Decision):
    """Allocated stock given back by a cancellation."""

    type: Literal["AllocationReleased"] = "AllocationReleased"


class BackorderCancelled(Decision):
    """Queued quantity removed by a cancellation."""

    type: Literal["BackorderCancelled"] = "BackorderCancelled"


class LineRejected(Decision):
    """Not accepted because the SKU's policy denies backorders: a lost sale."""

    type: Literal["LineRejected"] = "LineRejected"
    reason: str


AllocationDecision = Annotated[
    LineAllocated
    | LineBackordered
    | BackorderFilled
    | AllocationReleased
    | BackorderCancelled
    | LineRejected,
    Field(discriminator="type"),
]

DECISION_TYPES: tuple[type[Decision], ...] = (
    LineAllocated,
    LineBackordered,
    BackorderFilled,
    AllocationReleased,
    BackorderCancelled,
    LineRejected,
)
