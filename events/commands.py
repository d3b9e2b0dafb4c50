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
    inbound_id: Identifier | None = None


class ShipmentSource(ContractModel):
    """Where the shipment came from, for the dead letter of a line that over-ships."""

    topic: str
    partition: int = Field(ge=0)
    offset: int = Field(ge=0)


class ShipLine(ContractModel):
    type: Literal["ShipLine"] = "ShipLine"
    causation_id: UUID
    occurred_at: BusinessTime
    shipment_id: Identifier
    order_id: Identifier
    line_id: Identifier
    quantity: Quantity
    source: ShipmentSource


class SetPolicy(ContractModel):
    type: Literal["SetPolicy"] = "SetPolicy"
    causation_id: UUID
    occurred_at: BusinessTime
    backorders: Literal["allow", "deny", "limit"]
    limit: int | None = Field(default=None, ge=0)
    max_wait_days: int | None = Field(default=None, ge=1)


class ExpectInbound(ContractModel):
    type: Literal["ExpectInbound"] = "ExpectInbound"
    causation_id: UUID
    occurred_at: BusinessTime
    inbound_id: Identifier
    quantity: int = Field(ge=0, description="0: withdrawn.")
    expected_at: BusinessTime


SkuCommand = Annotated[
    PlaceLine | CancelLine | ReceiveStock | ShipLine | SetPolicy | ExpectInbound,
    Field(discriminator="type"),
]


class SkuCommands(ContractModel):
    """One SKU's commands from one intake notification."""

    sku: Identifier
    position: int = Field(ge=1)
    commands: list[SkuCommand] = Field(min_length=1)


class TickCommand(ContractModel):
    causation_id: UUID
    occurred_at: BusinessTime


class Tick(ContractModel):
    """A clock tick as intake recorded it: sent once to every partition (no key), so every
    SKU sees it; allocation expires the backorders past their SKU's `max_wait_days`."""

    position: int = Field(ge=1)
    tick: TickCommand


# What a sku-commands message is: a SKU's commands, or a tick for all of a partition's SKUs.
SkuCommandsMessage = SkuCommands | Tick
