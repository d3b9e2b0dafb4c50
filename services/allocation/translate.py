"""The Sku's recorded decisions, translated into the contract's decision messages."""

from __future__ import annotations

import json
from typing import Any

from events.dead_letters import DeadLetter
from events.decisions import (
    AllocationReleased,
    BackorderCancelled,
    BackorderEtaChanged,
    BackorderFilled,
    Decision,
    LineAllocated,
    LineBackordered,
    LineRejected,
    LineShipped,
)
from services.allocation.domain import Sku

_DECISIONS: dict[type[Sku.Decided], type[Decision]] = {
    Sku.LineAllocated: LineAllocated,
    Sku.LineBackordered: LineBackordered,
    Sku.BackorderFilled: BackorderFilled,
    Sku.AllocationReleased: AllocationReleased,
    Sku.BackorderCancelled: BackorderCancelled,
    Sku.LineRejected: LineRejected,
    Sku.LineShipped: LineShipped,
    Sku.BackorderEtaChanged: BackorderEtaChanged,
}


def decision_message(event: Any) -> Decision | None:
    """None for the SKU's events that are not decisions (receipts, placements)."""
    message_class = _DECISIONS.get(type(event))
    if message_class is None:
        return None
    extra: dict[str, Any] = {}
    if isinstance(event, Sku.LineBackordered):
        extra["queue_position"] = event.queue_position
        extra["eta"] = event.eta
    elif isinstance(event, Sku.BackorderFilled):
        extra["remaining_backordered"] = event.remaining_backordered
    elif isinstance(event, Sku.BackorderCancelled | Sku.LineRejected):
        extra["reason"] = event.reason
    elif isinstance(event, Sku.LineShipped):
        extra["remaining_allocated"] = event.remaining_allocated
        extra["shipment_id"] = event.shipment_id
    elif isinstance(event, Sku.BackorderEtaChanged):
        extra["eta"] = event.eta
        extra["previous_eta"] = event.previous_eta
    return message_class(
        decision_id=event.decision_id,
        causation_id=event.causation_id,
        occurred_at=event.occurred_at,
        order_id=event.order_id,
        line_id=event.line_id,
        sku=event.sku,
        quantity=event.quantity,
        **extra,
    )


def over_shipment_letter(event: Any) -> DeadLetter | None:
    """The dead letter of a shipment line that asked for more than its line held.

    Its payload is the refused line as a shipment of its own, not the original message:
    the shipment's other lines were applied, so the original must not come back whole."""
    if not isinstance(event, Sku.ShipmentLineRefused):
        return None
    refused = {
        "type": "ShipmentDispatched",
        "event_id": str(event.causation_id),
        "occurred_at": event.occurred_at.isoformat(),
        "shipment_id": event.shipment_id,
        "order_id": event.order_id,
        "lines": [{"line_id": event.line_id, "quantity": event.quantity}],
    }
    return DeadLetter(
        source_topic=event.source_topic,
        partition=event.source_partition,
        offset=event.source_offset,
        key=event.order_id,
        error=(
            f"over_shipment: line {event.line_id} of order {event.order_id} (SKU {event.sku}) "
            f"held {event.allocated} allocated, shipment {event.shipment_id} asked for "
            f"{event.quantity}; that line had no effect, the shipment's other lines were "
            "applied: publish what did leave as a new shipment id"
        ),
        payload=json.dumps(refused, separators=(",", ":")),
        failed_at=event.timestamp,
    )
