"""The client builds the contract's own models, routes each to its topic and key, and reads
decisions back typed: checked without a broker (tests/e2e/test_client.py has the broker)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest
from faststream.kafka.publisher.usecase import DefaultPublisher
from faststream.kafka.subscriber.usecase import DefaultSubscriber
from pydantic import ValidationError

from events.decisions import DECISION_TYPES, BackorderFilled, LineBackordered
from events.inputs import InputEvent
from fulfillment_client import (
    BackorderPolicySet,
    CancelledLine,
    ClientTopics,
    ClockTicked,
    FulfillmentClient,
    InboundExpected,
    OrderCancelled,
    OrderLine,
    OrderPlaced,
    ShipmentDispatched,
    ShippedLine,
    StockReceived,
    UnreadableDecisionError,
    make_broker,
    messages,
)
from fulfillment_client.messages import Destination, destination, read_decision

SCHEMAS = Path(__file__).resolve().parents[2] / "events" / "schemas"
WHEN = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
LINE = OrderLine(line_id="1", sku="SKU-RED-M", quantity=2)


def every_input(**stamp: Any) -> list[InputEvent]:
    """One of each of the contract's seven inputs, built by the client."""
    return [
        messages.order_placed("O-1", "C-42", [LINE], priority=3, **stamp),
        messages.order_cancelled("O-1", [CancelledLine(line_id="1")], reason="late", **stamp),
        messages.stock_received("R-1", "SKU-RED-M", 10, inbound_id="PO-7", **stamp),
        messages.shipment_dispatched("S-1", "O-1", [ShippedLine(line_id="1", quantity=1)], **stamp),
        messages.backorder_policy_set("SKU-RED-M", "limit", limit=100, max_wait_days=30, **stamp),
        messages.inbound_expected("PO-7", "SKU-RED-M", 40, WHEN + timedelta(days=15), **stamp),
        messages.clock_ticked(**stamp),
    ]


# The contract's topic table (docs/contract.md, "Topics"): topic and key per input.
CONTRACT_ROUTES: dict[type[InputEvent], tuple[str, str | None]] = {
    OrderPlaced: ("orders", "O-1"),
    OrderCancelled: ("cancellations", "O-1"),
    StockReceived: ("receipts", "SKU-RED-M"),
    ShipmentDispatched: ("shipments", "O-1"),
    BackorderPolicySet: ("sku-policies", "SKU-RED-M"),
    InboundExpected: ("inbound", "SKU-RED-M"),
    ClockTicked: ("clock", None),
}


def decision_body(kind: str, **extra: Any) -> dict[str, Any]:
    return {
        "decision_id": str(uuid4()),
        "causation_id": str(uuid4()),
        "occurred_at": "2026-11-25T10:00:00Z",
        "order_id": "O-1",
        "line_id": "1",
        "sku": "SKU-RED-M",
        "quantity": 2,
        "type": kind,
        **extra,
    }


# The fields each decision type adds to the common ones, with a valid value.
DECISION_EXTRAS: dict[str, dict[str, Any]] = {
    "LineAllocated": {},
    "LineBackordered": {"queue_position": 3, "eta": None},
    "BackorderFilled": {"remaining_backordered": 18},
    "AllocationReleased": {},
    "BackorderCancelled": {"reason": "expired"},
    "LineRejected": {"reason": "backorder_limit"},
    "LineShipped": {"remaining_allocated": 2, "shipment_id": "S-9"},
    "BackorderEtaChanged": {"eta": "2026-12-15T00:00:00Z", "previous_eta": None},
}


def test_every_input_gets_a_fresh_uuid4_event_id_and_the_current_utc_time_unless_given() -> None:
    before = datetime.now(UTC)
    built = every_input()
    after = datetime.now(UTC)

    assert [type(event) for event in built] == list(CONTRACT_ROUTES)
    for event in built:
        assert event.event_id.version == 4
        assert before <= event.occurred_at <= after
        assert event.occurred_at.utcoffset() == timedelta(0)
    assert len({event.event_id for event in built}) == len(built)


def test_a_given_event_id_and_business_time_are_kept_and_the_time_is_stated_in_utc() -> None:
    event_id = UUID("5a8d1c1e-4f43-4e8c-9a57-0f1b2c3d4e5f")
    paris = datetime(2026, 11, 25, 11, 0, tzinfo=timezone(timedelta(hours=1)))

    for event in every_input(event_id=event_id, occurred_at=paris):
        assert event.event_id == event_id
        assert event.occurred_at == WHEN
        assert event.occurred_at.tzinfo == UTC


def test_the_built_models_carry_the_business_fields_as_given() -> None:
    placed, cancelled, received, shipped, policy, inbound, _ = every_input()

    assert isinstance(placed, OrderPlaced)
    assert (placed.order_id, placed.customer_id, placed.priority) == ("O-1", "C-42", 3)
    assert placed.lines == [LINE]
    assert isinstance(cancelled, OrderCancelled)
    assert cancelled.lines == [CancelledLine(line_id="1", quantity=None)]
    assert cancelled.reason == "late"
    assert isinstance(received, StockReceived)
    assert (received.receipt_id, received.quantity, received.inbound_id) == ("R-1", 10, "PO-7")
    assert isinstance(shipped, ShipmentDispatched)
    assert shipped.lines == [ShippedLine(line_id="1", quantity=1)]
    assert isinstance(policy, BackorderPolicySet)
    assert (policy.backorders, policy.limit, policy.max_wait_days) == ("limit", 100, 30)
    assert isinstance(inbound, InboundExpected)
    assert inbound.expected_at == WHEN + timedelta(days=15)


def test_a_whole_order_cancellation_names_no_lines() -> None:
    assert messages.order_cancelled("O-1").lines is None


def test_a_limit_only_counts_with_the_limit_rule() -> None:
    assert messages.backorder_policy_set("SKU-1", "allow", limit=5).limit is None
    with pytest.raises(ValidationError, match="`limit` is required"):
        messages.backorder_policy_set("SKU-1", "limit")


@pytest.mark.parametrize(
    "build",
    [
        lambda: messages.order_placed("O-1", "C-1", []),
        lambda: messages.order_placed("O-1", "C-1", [LINE, LINE]),
        lambda: messages.order_placed("O-1\n", "C-1", [LINE]),
        lambda: messages.stock_received("R-1", "SKU-1", 0),
        lambda: messages.inbound_expected("PO-1", "SKU-1", 5, datetime(2026, 12, 1)),
        lambda: messages.clock_ticked(occurred_at=datetime(2026, 12, 1)),
    ],
    ids=[
        "no lines",
        "a line id twice",
        "a newline in an id",
        "no units received",
        "an expected time without a zone",
        "a tick without a zone",
    ],
)
def test_what_the_contract_refuses_is_refused_before_it_is_sent(build: Any) -> None:
    with pytest.raises(ValidationError):
        build()


def test_each_input_goes_to_its_contract_topic_with_its_contract_key() -> None:
    topics = ClientTopics()

    for event in every_input():
        topic, key = CONTRACT_ROUTES[type(event)]
        assert destination(event, topics) == Destination(topic, key)


def test_the_routes_are_the_ones_the_contracts_json_schemas_state() -> None:
    topics = ClientTopics()

    for kind, (_, key_field) in messages.ROUTES.items():
        schema = json.loads((SCHEMAS / f"{kind.__name__}.json").read_text())
        assert (schema["x-topic"], schema["x-key"]) == (messages.topic_of(kind, topics), key_field)
    assert set(messages.ROUTES) == set(CONTRACT_ROUTES)


def test_renamed_topics_are_used_and_the_keys_stay() -> None:
    topics = ClientTopics(orders="shop.orders", clock="shop.clock")
    placed, *_, ticked = every_input()

    assert destination(placed, topics) == Destination("shop.orders", "O-1")
    assert destination(ticked, topics) == Destination("shop.clock", None)
    assert topics.receipts == "receipts"


def test_topics_are_renamed_by_the_same_variables_as_the_services() -> None:
    topics = ClientTopics.from_environment(
        {"TOPIC_ORDERS": "shop.orders", "TOPIC_DECISIONS": "shop.decisions", "TOPIC_CLOCK": ""}
    )

    assert (topics.orders, topics.decisions) == ("shop.orders", "shop.decisions")
    assert (topics.clock, topics.receipts) == ("clock", "receipts")


def test_the_message_value_is_the_models_json_with_its_type() -> None:
    for event in every_input():
        body = json.loads(messages.encode(event))

        assert body["type"] == type(event).__name__
        assert body["event_id"] == str(event.event_id)
        assert type(event).model_validate(body) == event


def test_the_client_declares_one_publisher_per_input_on_its_topic_without_connecting() -> None:
    topics = ClientTopics(orders="shop.orders")
    client = FulfillmentClient(make_broker("127.0.0.1:1"), topics=topics)

    publishers = [p for p in client.broker.publishers if isinstance(p, DefaultPublisher)]

    assert len(publishers) == len(client.broker.publishers) == 7
    declared = sorted(publisher.topic for publisher in publishers)
    inputs = ["shop.orders", "cancellations", "receipts", "shipments", "sku-policies", "inbound"]
    assert declared == sorted([*inputs, "clock"])


def test_a_decisions_subscriber_reads_its_groups_topic_and_never_creates_it() -> None:
    client = FulfillmentClient(make_broker("127.0.0.1:1"), topics=ClientTopics(decisions="d"))

    subscriber = client.decisions("shipping-service")

    (declared,) = client.broker.subscribers
    assert isinstance(declared, DefaultSubscriber)
    assert (subscriber.topic, subscriber.group_id) == ("d", "shipping-service")
    assert [topic.name for topic in declared.topics] == ["d"]
    assert declared.topics_to_create == []


def test_a_decisions_subscriber_needs_a_group_of_its_own() -> None:
    client = FulfillmentClient(make_broker("127.0.0.1:1"))

    with pytest.raises(ValueError, match="consumer group"):
        client.decisions("")


@pytest.mark.parametrize("kind", [decision.__name__ for decision in DECISION_TYPES])
def test_each_decision_type_is_read_as_its_own_model(kind: str) -> None:
    body = decision_body(kind, **DECISION_EXTRAS[kind])

    decision = read_decision(json.dumps(body).encode())

    assert decision is not None
    assert type(decision).__name__ == kind
    assert str(decision.decision_id) == body["decision_id"]


def test_a_decision_is_read_with_its_own_fields_typed() -> None:
    filled = read_decision(
        json.dumps(decision_body("BackorderFilled", remaining_backordered=18)).encode()
    )
    queued = read_decision(json.dumps(decision_body("LineBackordered", queue_position=3)).encode())

    assert isinstance(filled, BackorderFilled)
    assert filled.remaining_backordered == 18
    assert filled.occurred_at == WHEN
    assert isinstance(queued, LineBackordered)
    assert (queued.queue_position, queued.eta) == (3, None)


def test_a_decision_type_this_version_does_not_know_is_skipped() -> None:
    newer = decision_body("LineTeleported", planet="Mars")

    assert read_decision(json.dumps(newer).encode()) is None
    assert read_decision(json.dumps({"no": "type"}).encode()) is None
    assert read_decision(json.dumps({"type": ["LineAllocated"]}).encode()) is None


def test_fields_this_version_does_not_know_are_ignored() -> None:
    body = decision_body("LineAllocated", warehouse="W-3", colour="red")

    decision = read_decision(json.dumps(body).encode())

    assert decision is not None
    assert "warehouse" not in decision.model_dump()


@pytest.mark.parametrize(
    "value",
    [
        None,
        b"",
        b"not json",
        b"\xff not UTF-8",
        b"[1, 2]",
        json.dumps(decision_body("LineAllocated", quantity=0)).encode(),
        json.dumps(decision_body("BackorderFilled")).encode(),  # remaining_backordered missing
    ],
    ids=["tombstone", "empty", "not JSON", "not UTF-8", "a list", "quantity 0", "a field missing"],
)
def test_a_message_that_is_no_decision_is_unreadable(value: bytes | None) -> None:
    with pytest.raises(UnreadableDecisionError):
        read_decision(value)
