"""The Sku's recorded decisions, translated into the contract's decision messages."""

from __future__ import annotations

from typing import Any

from events.decisions import (
    AllocationReleased,
    BackorderCancelled,
    BackorderFilled,
    Decision,
    LineAllocated,
    LineBackordered,
    LineRejected,
)
from services.allocation.domain import Sku

_DECISIONS: dict[type[Sku.Decided], type[Decision]] = {
    Sku.LineAllocated: LineAllocated,
    Sku.LineBackordered: LineBackordered,
    Sku.BackorderFilled: BackorderFilled,
    Sku.AllocationReleased: AllocationReleased,
    Sku.BackorderCancelled: BackorderCancelled,
    Sku.LineRejected: LineRejected,
}


def decision_message(event: Any) -> Decision | None:
    """None for the SKU's events that are not decisions (receipts, placements)."""
    message_class = _DECISIONS.get(type(event))
    if message_class is None:
        return None
    extra: dict[str, Any] = {}
    if isinstance(event, Sku.LineBackordered):
        extra["queue_position"] = event.queue_position
    elif isinstance(event, Sku.BackorderFilled):
        extra["remaining_backordered"] = event.remaining_backordered
    elif isinstance(event, Sku.LineRejected):
        extra["reason"] = event.reason
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
