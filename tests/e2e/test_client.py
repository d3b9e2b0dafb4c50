"""The client on the real broker: what it publishes is the contract's message on the contract's
topic with the contract's key; its decisions subscriber hands typed decisions to the handlers
of its own consumer group; and against `fulfillment run`, an order and a receipt published
with it come back as LineBackordered then BackorderFilled."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest

from events.decisions import AllocationDecision
from events.inputs import InputEvent
from fulfillment_client import (
    BackorderFilled,
    CancelledLine,
    ClientTopics,
    FulfillmentClient,
    LineAllocated,
    LineBackordered,
    OrderLine,
    ShippedLine,
    make_broker,
)
from services.adapters.kafka import ensure_topics
from services.adapters.settings import Settings
from tests.browser import RunningService
from tests.harness import T0, as_json, isolated_settings, publish, read_topic, until

pytestmark = pytest.mark.kafka

SCHEMAS = Path(__file__).resolve().parents[2] / "events" / "schemas"
SKU = "SKU-CLIENT-1"


def client_for(settings: Settings) -> FulfillmentClient:
    """A client on the broker and the (renamed) topics these settings give the service."""
    return FulfillmentClient(
        make_broker(settings.kafka_bootstrap_servers),
        topics=ClientTopics.model_validate(settings.topics.model_dump()),
    )


def schema_errors(body: Any, message_type: str) -> list[str]:
    """What the contract's JSON Schema (formats checked too) finds wrong with a message."""
    schema = json.loads((SCHEMAS / f"{message_type}.json").read_text())
    validator = jsonschema_rs.validator_for(schema, validate_formats=True)
    return [error.message for error in validator.iter_errors(body)]


def decision(kind: str, order_id: str, **extra: Any) -> dict[str, Any]:
    """A decision as the service writes it (the tests below play the service)."""
    return {
        "decision_id": str(uuid.uuid4()),
        "causation_id": str(uuid.uuid4()),
        "occurred_at": T0.isoformat(),
        "order_id": order_id,
        "line_id": "1",
        "sku": SKU,
        "quantity": 2,
        "type": kind,
        **extra,
    }


@pytest.fixture
async def topics_ready(kafka_bootstrap: str, tmp_path: Path) -> Settings:
    """Topics of this test's own, created as the service creates them."""
    settings = isolated_settings(kafka_bootstrap, f"sqlite:///{tmp_path}/unused")
    await ensure_topics(settings)
    return settings


async def test_each_input_is_published_as_the_contracts_message_on_its_topic_with_its_key(
    topics_ready: Settings,
) -> None:
    topics = topics_ready.topics
    async with client_for(topics_ready) as client:
        placed = await client.place_order(
            "O-1", "C-42", [OrderLine(line_id="1", sku=SKU, quantity=2)], priority=5
        )
        cancelled = await client.cancel_order("O-1", [CancelledLine(line_id="1", quantity=1)])
        received = await client.receive_stock("R-1", SKU, 4)
        shipped = await client.dispatch_shipment(
            "S-1", "O-1", [ShippedLine(line_id="1", quantity=1)]
        )
        policy = await client.set_backorder_policy(SKU, "deny")
        inbound = await client.expect_inbound("PO-1", SKU, 10, T0 + timedelta(days=9))
        ticked = await client.tick_clock(occurred_at=T0)
    sent: list[tuple[InputEvent, str, str | None]] = [
        (placed, topics.orders, "O-1"),
        (cancelled, topics.cancellations, "O-1"),
        (received, topics.receipts, SKU),
        (shipped, topics.shipments, "O-1"),
        (policy, topics.policies, SKU),
        (inbound, topics.inbound, SKU),
        (ticked, topics.clock, None),
    ]

    for event, topic, key in sent:
        # Everything on the topic: the one message, sent once.
        (record,) = await read_topic(topics_ready, topic, until=bool, to_end=True)
        body = json.loads(record.value)
        message_type = type(event).__name__
        assert record.key == (None if key is None else key.encode()), message_type
        assert schema_errors(body, message_type) == [], message_type
        assert body["type"] == message_type
        assert body["event_id"] == str(event.event_id)
        assert type(event).model_validate(body) == event


async def test_the_decisions_subscriber_hands_typed_decisions_to_the_handlers_that_want_them(
    topics_ready: Settings,
) -> None:
    decisions = topics_ready.topics.decisions
    backordered = decision("LineBackordered", "O-7", queue_position=1, eta=None, warehouse="W-3")
    filled = decision("BackorderFilled", "O-7", remaining_backordered=0)
    allocated = decision("LineAllocated", "O-7")
    await publish(
        topics_ready,
        [
            (decisions, "O-7", as_json(decision("LineTeleported", "O-7"))),  # a newer type
            (decisions, "O-7", b"not a decision"),
            (decisions, "O-7", as_json(backordered)),
            (decisions, "O-7", as_json(filled)),
            (decisions, "O-7", as_json(allocated)),
        ],
    )
    client = client_for(topics_ready)
    subscriber = client.decisions(f"planning-{uuid.uuid4().hex[:8]}")
    queued: list[LineBackordered] = []
    every: list[AllocationDecision] = []

    @subscriber.on(LineBackordered)
    async def note_queued(decision: LineBackordered) -> None:
        queued.append(decision)

    @subscriber.on_every
    async def note_every(decision: AllocationDecision) -> None:
        every.append(decision)

    async with client:
        await until(lambda: len(every) >= 3, what="three known decisions handled", timeout=30)

    assert [type(found) for found in every] == [LineBackordered, BackorderFilled, LineAllocated]
    assert [str(found.decision_id) for found in every] == [
        backordered["decision_id"],
        filled["decision_id"],
        allocated["decision_id"],
    ]
    assert queued == [every[0]]
    assert queued[0].queue_position == 1


async def test_a_group_reads_on_from_where_it_stopped_and_another_group_reads_everything(
    topics_ready: Settings,
) -> None:
    decisions = topics_ready.topics.decisions
    group = f"billing-{uuid.uuid4().hex[:8]}"
    first, second = decision("LineAllocated", "O-8"), decision("LineAllocated", "O-8")

    async def read_as(group_id: str, count: int) -> list[str]:
        client = client_for(topics_ready)
        seen: list[str] = []

        @client.decisions(group_id).on(LineAllocated)
        async def note(decision: LineAllocated) -> None:
            seen.append(str(decision.decision_id))

        async with client:
            await until(lambda: len(seen) >= count, what=f"{count} decision(s) for {group_id}")
        return seen

    await publish(topics_ready, [(decisions, "O-8", as_json(first))])
    assert await read_as(group, 1) == [first["decision_id"]]
    await publish(topics_ready, [(decisions, "O-8", as_json(second))])
    # One key, one partition, in order: had the first been delivered again, it would come first.
    assert await read_as(group, 1) == [second["decision_id"]]
    assert await read_as(f"audit-{uuid.uuid4().hex[:8]}", 2) == [
        first["decision_id"],
        second["decision_id"],
    ]


async def test_an_order_and_a_receipt_sent_with_the_client_come_back_as_a_backorder_then_its_fill(
    running_service: RunningService,
) -> None:
    client = client_for(running_service.settings)
    subscriber = client.decisions(f"storefront-{uuid.uuid4().hex[:8]}")
    received: list[AllocationDecision] = []

    @subscriber.on_every
    async def note(decision: AllocationDecision) -> None:
        if decision.order_id == "O-100":
            received.append(decision)

    async with client:
        order = await client.place_order(
            "O-100", "C-1", [OrderLine(line_id="1", sku=SKU, quantity=3)], occurred_at=T0
        )
        await until(lambda: len(received) >= 1, what="the order's backorder", timeout=30)
        receipt = await client.receive_stock("R-100", SKU, 3, occurred_at=T0 + timedelta(hours=1))
        await until(lambda: len(received) >= 2, what="the backorder's fill", timeout=30)

    queued, filled = received
    assert isinstance(queued, LineBackordered)
    assert (queued.causation_id, queued.quantity, queued.queue_position) == (order.event_id, 3, 1)
    assert isinstance(filled, BackorderFilled)
    assert (filled.causation_id, filled.quantity) == (receipt.event_id, 3)
    assert filled.remaining_backordered == 0
