"""The contract's inputs built from business fields, where each goes, and decisions read back.

Pure: nothing here connects, so a caller (or a unit test) can build and check a message
without a broker. The models are the contract's own (`events/`), so a message the client
builds is exactly one the service accepts, validated before it leaves.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal
from uuid import UUID, uuid4

from pydantic import BaseModel, ConfigDict, TypeAdapter

from events.decisions import DECISION_TYPES, AllocationDecision
from events.inputs import (
    BackorderPolicySet,
    CancelledLine,
    ClockTicked,
    InboundExpected,
    InputEvent,
    OrderCancelled,
    OrderLine,
    OrderPlaced,
    ShipmentDispatched,
    ShippedLine,
    StockReceived,
)
from events.topics import DEFAULT_TOPICS

BackorderRule = Literal["allow", "deny", "limit"]


class ClientTopics(BaseModel):
    """The topics a client writes and reads: the contract's defaults unless renamed.

    The names are the service's own settings (TOPIC_ORDERS, ..., TOPIC_DECISIONS), so a client
    pointed at a renamed deployment uses the same values the service was given."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    orders: str = DEFAULT_TOPICS["orders"]
    cancellations: str = DEFAULT_TOPICS["cancellations"]
    receipts: str = DEFAULT_TOPICS["receipts"]
    shipments: str = DEFAULT_TOPICS["shipments"]
    policies: str = DEFAULT_TOPICS["policies"]
    inbound: str = DEFAULT_TOPICS["inbound"]
    clock: str = DEFAULT_TOPICS["clock"]
    decisions: str = DEFAULT_TOPICS["decisions"]

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> ClientTopics:
        """The defaults, renamed by the TOPIC_<NAME> variables the service reads too."""
        source = os.environ if environ is None else environ
        renamed = {
            name: source[f"TOPIC_{name.upper()}"]
            for name in cls.model_fields
            if source.get(f"TOPIC_{name.upper()}")
        }
        return cls(**renamed)


@dataclass(frozen=True)
class Destination:
    """Where one input goes: its topic, and its key as the contract names it (None: no key)."""

    topic: str
    key: str | None


# Per input: the ClientTopics field naming its topic, and the field that is its key (None:
# published without a key), as the contract's topic table says.
ROUTES: dict[type[InputEvent], tuple[str, str | None]] = {
    OrderPlaced: ("orders", "order_id"),
    OrderCancelled: ("cancellations", "order_id"),
    StockReceived: ("receipts", "sku"),
    ShipmentDispatched: ("shipments", "order_id"),
    BackorderPolicySet: ("policies", "sku"),
    InboundExpected: ("inbound", "sku"),
    ClockTicked: ("clock", None),
}


def topic_of(kind: type[InputEvent], topics: ClientTopics) -> str:
    """The topic that carries one kind of input (each input topic carries only its own)."""
    try:
        field, _ = ROUTES[kind]
    except KeyError:
        raise TypeError(f"not an input of the contract: {kind.__name__}") from None
    name: str = getattr(topics, field)
    return name


def destination(event: InputEvent, topics: ClientTopics) -> Destination:
    """The contract's topic and key for an input: the key keeps one order's (or one SKU's)
    inputs on one partition, in the order they were published."""
    topic = topic_of(type(event), topics)
    _, key_field = ROUTES[type(event)]
    key: str | None = None if key_field is None else getattr(event, key_field)
    return Destination(topic, key)


def encode(event: InputEvent) -> bytes:
    """The message value: the model's JSON, every field written (`type` included)."""
    return event.model_dump_json().encode()


def _stamp(event_id: UUID | None, occurred_at: datetime | None) -> dict[str, Any]:
    """An input's identity and business time: a fresh UUID and now (UTC) unless given; the
    event id is the service's idempotency key, so a retry must pass the same one again."""
    return {
        "event_id": uuid4() if event_id is None else event_id,
        "occurred_at": datetime.now(UTC) if occurred_at is None else occurred_at,
    }


def order_placed(
    order_id: str,
    customer_id: str,
    lines: Sequence[OrderLine],
    *,
    priority: int = 0,
    event_id: UUID | None = None,
    occurred_at: datetime | None = None,
) -> OrderPlaced:
    """A customer's order; `priority`: higher is served first from a backorder queue."""
    return OrderPlaced(
        **_stamp(event_id, occurred_at),
        order_id=order_id,
        customer_id=customer_id,
        priority=priority,
        lines=list(lines),
    )


def order_cancelled(
    order_id: str,
    lines: Sequence[CancelledLine] | None = None,
    *,
    reason: str | None = None,
    event_id: UUID | None = None,
    occurred_at: datetime | None = None,
) -> OrderCancelled:
    """Cancels the whole order (no `lines`) or what those lines name."""
    return OrderCancelled(
        **_stamp(event_id, occurred_at),
        order_id=order_id,
        lines=None if lines is None else list(lines),
        reason=reason,
    )


def stock_received(
    receipt_id: str,
    sku: str,
    quantity: int,
    *,
    inbound_id: str | None = None,
    event_id: UUID | None = None,
    occurred_at: datetime | None = None,
) -> StockReceived:
    """Stock that arrived; `inbound_id`: the expected inbound it arrived for, if any."""
    return StockReceived(
        **_stamp(event_id, occurred_at),
        receipt_id=receipt_id,
        sku=sku,
        quantity=quantity,
        inbound_id=inbound_id,
    )


def shipment_dispatched(
    shipment_id: str,
    order_id: str,
    lines: Sequence[ShippedLine],
    *,
    event_id: UUID | None = None,
    occurred_at: datetime | None = None,
) -> ShipmentDispatched:
    """Allocated units of an order that left the warehouse."""
    return ShipmentDispatched(
        **_stamp(event_id, occurred_at),
        shipment_id=shipment_id,
        order_id=order_id,
        lines=list(lines),
    )


def backorder_policy_set(
    sku: str,
    backorders: BackorderRule,
    *,
    limit: int | None = None,
    max_wait_days: int | None = None,
    event_id: UUID | None = None,
    occurred_at: datetime | None = None,
) -> BackorderPolicySet:
    """What a SKU does with what its stock cannot cover; `limit` counts only with 'limit'."""
    return BackorderPolicySet(
        **_stamp(event_id, occurred_at),
        sku=sku,
        backorders=backorders,
        limit=limit,
        max_wait_days=max_wait_days,
    )


def inbound_expected(
    inbound_id: str,
    sku: str,
    quantity: int,
    expected_at: datetime,
    *,
    event_id: UUID | None = None,
    occurred_at: datetime | None = None,
) -> InboundExpected:
    """Supply on its way, for promised dates; the same SKU and id again revise it, 0 withdraws."""
    return InboundExpected(
        **_stamp(event_id, occurred_at),
        inbound_id=inbound_id,
        sku=sku,
        quantity=quantity,
        expected_at=expected_at,
    )


def clock_ticked(
    *, event_id: UUID | None = None, occurred_at: datetime | None = None
) -> ClockTicked:
    """Time as an input: expires what waited longer than its SKU's policy allows."""
    return ClockTicked(**_stamp(event_id, occurred_at))


# Each decision's `type` is its model's name.
KNOWN_DECISIONS: frozenset[str] = frozenset(kind.__name__ for kind in DECISION_TYPES)
_DECISION = TypeAdapter[AllocationDecision](AllocationDecision)


class UnreadableDecisionError(ValueError):
    """A message on the decisions topic that is no decision: not a JSON object, or a known
    type with fields the contract does not allow."""


def read_decision(value: bytes | None) -> AllocationDecision | None:
    """The typed decision in a message value; None for a type this version does not know
    (the contract adds types: a reader skips them). Unknown fields are ignored."""
    try:
        body = json.loads(value or b"")
    except ValueError as error:
        raise UnreadableDecisionError(f"not JSON: {error}") from None
    if not isinstance(body, dict):
        raise UnreadableDecisionError(f"not a JSON object but {type(body).__name__}")
    kind = body.get("type")
    if not isinstance(kind, str) or kind not in KNOWN_DECISIONS:
        return None
    try:
        return _DECISION.validate_python(body)
    except ValueError as error:
        raise UnreadableDecisionError(str(error)) from None
