"""Our internal topic `sku-commands` (key `sku`): intake's validated history, per SKU.

One message per intake notification and SKU. `position` (also in the `source-position`
header) is intake's notification id x 1000 + the SKU's index in that notification: unique
and increasing per partition, so the allocation stage tracks it instead of Kafka offsets.
"""

from __future__ import annotations

from typing import Annotated, Literal
from uuid import UUID

from pydantic import Field

from events.common import BusinessTime, ContractModel, Identifier, Quantity


class PlaceLine(ContractModel):
    type: Literal["PlaceLine"] = "PlaceLine"
    causation_id: UUID
    occurred_at: BusinessTime
    order_id: Identifier
    line_id: Identifier
    line_index: int = Field(ge=0, description="The line's place in its order.")
    customer_id: Identifier
    priority: int
    quantity: Quantity
    cancelled_before_placement: int = Field(
        default=0, ge=0, description="Cancelled by a cancellation that arrived first."
    )
    backorders_allowed: bool = True


class CancelLine(ContractModel):
    type: Literal["CancelLine"] = "CancelLine"
    causation_id: UUID
    occurred_at: BusinessTime
    order_id: Identifier
    line_id: Identifier
    quantity: Quantity | None = Field(default=None, description="None: all outstanding.")
    reason: str | None = None


class ReceiveStock(ContractModel):
    type: Literal["ReceiveStock"] = "ReceiveStock"
    causation_id: UUID
    occurred_at: BusinessTime
    receipt_id: Identifier
    quantity: Quantity


SkuCommand = Annotated[PlaceLine | CancelLine | ReceiveStock, Field(discriminator="type")]


class SkuCommands(ContractModel):
    sku: Identifier
    position: int = Field(ge=1)
    commands: list[SkuCommand] = Field(min_length=1)
