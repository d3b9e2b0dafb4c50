"""Publishing the contract's inputs, and subscribing to its decisions, over faststream.

A team either lets the client own a broker (`async with FulfillmentClient() as client`) or
hands it the `KafkaBroker` of its own FastStream app, which then starts and stops it: the
client only registers its publishers (one per input, documented in the app's AsyncAPI) and
its decisions subscribers on it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, TypeVar
from uuid import UUID

from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.publisher.usecase import DefaultPublisher

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
from events.topics import DEFAULT_BROKER
from fulfillment_client import messages
from fulfillment_client.decisions import DecisionSubscriber, StartAt
from fulfillment_client.messages import ROUTES, BackorderRule, ClientTopics

EventT = TypeVar("EventT", bound=InputEvent)
JSON_HEADERS = {"content-type": "application/json"}


def make_broker(bootstrap_servers: str = DEFAULT_BROKER, **options: Any) -> KafkaBroker:
    """A faststream broker whose publishes are acknowledged by every in-sync replica and
    never duplicated by the producer's own retries: an order, once sent, is not lost.
    `options` go to `KafkaBroker` (security, client_id, log_level, ...)."""
    settings: dict[str, Any] = {
        "client_id": "fulfillment-client",
        "acks": "all",
        "enable_idempotence": True,
        **options,
    }
    return KafkaBroker(bootstrap_servers, **settings)


class FulfillmentClient:
    """Typed publishers for the contract's seven inputs and typed decision subscribers.

    Each publish builds the contract's model (a fresh `event_id` and `occurred_at` = now,
    UTC, unless given), sends it to its topic with its key, waits for the broker's
    acknowledgement and returns the event, so the caller knows its `event_id` (a retry
    after a failure should publish that same event again: the service drops the duplicate).
    """

    def __init__(
        self, broker: KafkaBroker | None = None, *, topics: ClientTopics | None = None
    ) -> None:
        self.broker = make_broker() if broker is None else broker
        self.topics = ClientTopics() if topics is None else topics
        self._publishers: dict[type[InputEvent], DefaultPublisher] = {
            kind: self.broker.publisher(
                messages.topic_of(kind, self.topics),
                schema=kind,
                title=f"{messages.topic_of(kind, self.topics)}:{kind.__name__}",
                description=(kind.__doc__ or "").strip(),
            )
            for kind in ROUTES
        }

    async def __aenter__(self) -> FulfillmentClient:
        await self.broker.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.broker.stop(exc_type, exc, traceback)

    def decisions(
        self,
        group_id: str,
        *,
        start_at: StartAt = "earliest",
        ack_policy: AckPolicy = AckPolicy.ACK,
    ) -> DecisionSubscriber:
        """A subscriber to the decisions for the consumer group `group_id`; register its
        handlers before the broker starts (see `DecisionSubscriber`)."""
        if self.broker.running:
            raise RuntimeError("add decision subscribers before the broker starts")
        return DecisionSubscriber(
            self.broker,
            group_id=group_id,
            topic=self.topics.decisions,
            start_at=start_at,
            ack_policy=ack_policy,
        )

    async def publish(self, event: EventT) -> EventT:
        """Sends an input built beforehand (see `fulfillment_client.messages`) to its topic,
        with its key; returns it once the broker has it."""
        where = messages.destination(event, self.topics)
        await self._publishers[type(event)].publish(
            messages.encode(event),
            key=None if where.key is None else where.key.encode(),
            headers=dict(JSON_HEADERS),
        )
        return event

    async def place_order(
        self,
        order_id: str,
        customer_id: str,
        lines: Sequence[OrderLine],
        *,
        priority: int = 0,
        event_id: UUID | None = None,
        occurred_at: datetime | None = None,
    ) -> OrderPlaced:
        """Publishes `OrderPlaced` (topic orders, key order_id)."""
        return await self.publish(
            messages.order_placed(
                order_id,
                customer_id,
                lines,
                priority=priority,
                event_id=event_id,
                occurred_at=occurred_at,
            )
        )

    async def cancel_order(
        self,
        order_id: str,
        lines: Sequence[CancelledLine] | None = None,
        *,
        reason: str | None = None,
        event_id: UUID | None = None,
        occurred_at: datetime | None = None,
    ) -> OrderCancelled:
        """Publishes `OrderCancelled` (topic cancellations, key order_id); no `lines`: the
        whole order."""
        return await self.publish(
            messages.order_cancelled(
                order_id, lines, reason=reason, event_id=event_id, occurred_at=occurred_at
            )
        )

    async def receive_stock(
        self,
        receipt_id: str,
        sku: str,
        quantity: int,
        *,
        inbound_id: str | None = None,
        event_id: UUID | None = None,
        occurred_at: datetime | None = None,
    ) -> StockReceived:
        """Publishes `StockReceived` (topic receipts, key sku)."""
        return await self.publish(
            messages.stock_received(
                receipt_id,
                sku,
                quantity,
                inbound_id=inbound_id,
                event_id=event_id,
                occurred_at=occurred_at,
            )
        )

    async def dispatch_shipment(
        self,
        shipment_id: str,
        order_id: str,
        lines: Sequence[ShippedLine],
        *,
        event_id: UUID | None = None,
        occurred_at: datetime | None = None,
    ) -> ShipmentDispatched:
        """Publishes `ShipmentDispatched` (topic shipments, key order_id)."""
        return await self.publish(
            messages.shipment_dispatched(
                shipment_id, order_id, lines, event_id=event_id, occurred_at=occurred_at
            )
        )

    async def set_backorder_policy(
        self,
        sku: str,
        backorders: BackorderRule,
        *,
        limit: int | None = None,
        max_wait_days: int | None = None,
        event_id: UUID | None = None,
        occurred_at: datetime | None = None,
    ) -> BackorderPolicySet:
        """Publishes `BackorderPolicySet` (topic sku-policies, key sku)."""
        return await self.publish(
            messages.backorder_policy_set(
                sku,
                backorders,
                limit=limit,
                max_wait_days=max_wait_days,
                event_id=event_id,
                occurred_at=occurred_at,
            )
        )

    async def expect_inbound(
        self,
        inbound_id: str,
        sku: str,
        quantity: int,
        expected_at: datetime,
        *,
        event_id: UUID | None = None,
        occurred_at: datetime | None = None,
    ) -> InboundExpected:
        """Publishes `InboundExpected` (topic inbound, key sku)."""
        return await self.publish(
            messages.inbound_expected(
                inbound_id, sku, quantity, expected_at, event_id=event_id, occurred_at=occurred_at
            )
        )

    async def tick_clock(
        self, *, event_id: UUID | None = None, occurred_at: datetime | None = None
    ) -> ClockTicked:
        """Publishes `ClockTicked` (topic clock, no key). Only a system trusted with time
        should: a tick far ahead expires every backorder due by then."""
        return await self.publish(messages.clock_ticked(event_id=event_id, occurred_at=occurred_at))
