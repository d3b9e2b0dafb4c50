"""Intake's recorded events, translated into messages for `sku-commands` and the DLQ.

Pure and deterministic: replaying intake's log gives the same messages, positions included.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from uuid import UUID

from events.commands import (
    CancelLine,
    ExpectInbound,
    PlaceLine,
    ReceiveStock,
    SetPolicy,
    ShipLine,
    ShipmentSource,
    SkuCommand,
    SkuCommands,
    Tick,
    TickCommand,
)
from services.intake.domain import InboundSupply, Order, PlacedLine, Receipt, Shipment, SkuPolicy
from services.intake.domain import Tick as RecordedTick
from services.kernel.positions import IntakePosition


def sku_command_messages(
    event: Any, notification_id: int, wanted: Callable[[str], bool] | None = None
) -> list[SkuCommands]:
    """One message per SKU the event touches, numbered in the SKU's order of first mention.
    `wanted`: only those SKUs' messages are made (numbered as among all of them): a replay
    worker's share."""
    per_sku: dict[str, list[SkuCommand]] = {}
    if isinstance(event, Order.Placed | Order.PlacedAfterCancellation):
        for index, line in enumerate(event.lines):
            if _kept(per_sku, line["sku"], wanted):
                per_sku[line["sku"]].append(_place_line(event, index, line))
    elif isinstance(event, Order.CancellationAccepted):
        for cancelled in event.lines:
            if not _kept(per_sku, cancelled["sku"], wanted):
                continue
            per_sku[cancelled["sku"]].append(
                CancelLine(
                    causation_id=UUID(event.event_id),
                    occurred_at=event.occurred_at,
                    order_id=event.order_id,
                    line_id=cancelled["line_id"],
                    quantity=cancelled["quantity"],
                    reason=event.reason,
                )
            )
    elif isinstance(event, Receipt.Recorded):
        per_sku[event.sku] = [
            ReceiveStock(
                causation_id=UUID(event.event_id),
                occurred_at=event.occurred_at,
                receipt_id=event.receipt_id,
                quantity=event.quantity,
                inbound_id=event.inbound_id,
            )
        ]
    elif isinstance(event, Shipment.Dispatched):
        source = ShipmentSource(**event.origin)
        for shipped in event.lines:
            if not _kept(per_sku, shipped["sku"], wanted):
                continue
            per_sku[shipped["sku"]].append(
                ShipLine(
                    causation_id=UUID(event.event_id),
                    occurred_at=event.occurred_at,
                    shipment_id=event.shipment_id,
                    order_id=event.order_id,
                    line_id=shipped["line_id"],
                    quantity=shipped["quantity"],
                    source=source,
                )
            )
    elif isinstance(event, SkuPolicy.Set):
        per_sku[event.sku] = [
            SetPolicy(
                causation_id=UUID(event.event_id),
                occurred_at=event.occurred_at,
                backorders=event.backorders,
                limit=event.limit,
                max_wait_days=event.max_wait_days,
            )
        ]
    elif isinstance(event, InboundSupply.Expected):
        per_sku[event.sku] = [
            ExpectInbound(
                causation_id=UUID(event.event_id),
                occurred_at=event.occurred_at,
                inbound_id=event.inbound_id,
                quantity=event.quantity,
                expected_at=event.expected_at,
            )
        ]
    # Not validated again: every value comes from intake's own log, validated when recorded
    # (and allocation validates what it reads off the topic). A third of a replay's reading.
    return [
        SkuCommands.model_construct(
            sku=sku,
            position=IntakePosition(notification_id, index).message_position,
            commands=commands,
        )
        for index, (sku, commands) in enumerate(per_sku.items())
        if commands
    ]


def _kept(
    per_sku: dict[str, list[SkuCommand]], sku: str, wanted: Callable[[str], bool] | None
) -> bool:
    """Notes the SKU in its order of first mention; whether its commands are wanted."""
    per_sku.setdefault(sku, [])
    return wanted is None or wanted(sku)


def tick_message(event: Any, notification_id: int) -> Tick | None:
    """A recorded tick, as the one message every sku-commands partition gets; else None."""
    if not isinstance(event, RecordedTick.Recorded):
        return None
    return Tick(
        position=IntakePosition(notification_id).message_position,
        tick=TickCommand(causation_id=UUID(event.event_id), occurred_at=event.occurred_at),
    )


def _place_line(
    event: Order.Placed | Order.PlacedAfterCancellation, index: int, line: PlacedLine
) -> PlaceLine:
    return PlaceLine.model_construct(  # not validated again: see sku_command_messages
        causation_id=UUID(event.event_id),
        occurred_at=event.occurred_at,
        order_id=event.order_id,
        line_id=line["line_id"],
        line_index=index,
        customer_id=event.customer_id,
        priority=event.priority,
        quantity=line["quantity"],
        cancelled_before_placement=line["cancelled_before_placement"],
        backorders_allowed=event.backorders_allowed,
    )
