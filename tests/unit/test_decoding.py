"""docs/contract.md, "Wire format": what the intake edge accepts, and why it refuses the rest.

IntakeHandler.decode turns one Kafka record into a contract event or a dead-letter reason.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import pytest
from aiokafka.structs import ConsumerRecord

from events.common import MAX_MESSAGE_BYTES
from events.inputs import OrderCancelled, OrderPlaced, StockReceived
from services.adapters.settings import Settings
from services.intake.application import Input, Intake
from services.intake.consumer import IntakeHandler
from tests.harness import consumer_record

EVENT_ID = "0b5e1d8e-4f7a-4a43-9d5c-1f2e3a4b5c6d"


@pytest.fixture
def handler() -> Iterator[IntakeHandler]:
    intake = Intake(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    yield IntakeHandler(intake, Settings())
    intake.close()


def record(
    value: bytes | None, *, topic: str = "orders", key: bytes | None = b"O-1", offset: int = 5
) -> ConsumerRecord:
    return consumer_record(value, topic=topic, key=key, partition=1, offset=offset)


def order(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": "OrderPlaced",
        "event_id": EVENT_ID,
        "occurred_at": "2026-11-25T10:00:00Z",
        "order_id": "O-1",
        "customer_id": "C-42",
        "priority": 0,
        "lines": [{"line_id": "1", "sku": "SKU-RED-M", "quantity": 2}],
    }
    body.update(changes)
    return body


def line(**changes: Any) -> dict[str, Any]:
    return {"line_id": "1", "sku": "SKU-RED-M", "quantity": 2} | changes


def encoded(body: object) -> bytes:
    return json.dumps(body).encode("utf-8")


def decode(handler: IntakeHandler, body: object, topic: str = "orders") -> Input:
    return handler.decode(record(encoded(body), topic=topic))


def refused(result: Input) -> str:
    assert result.event is None, f"expected a dead-letter reason, got {result.event!r}"
    assert result.error
    return result.error


# --- accepted -----------------------------------------------------------------------------


def test_a_valid_order_is_decoded(handler: IntakeHandler) -> None:
    result = decode(handler, order())

    assert result.error is None
    assert isinstance(result.event, OrderPlaced)
    assert result.event.event_id == UUID(EVENT_ID)
    assert result.event.occurred_at == datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
    assert [(ln.line_id, ln.sku, ln.quantity) for ln in result.event.lines] == [
        ("1", "SKU-RED-M", 2)
    ]
    assert result.source["payload"] == json.dumps(order())
    assert (result.source["topic"], result.source["partition"], result.source["offset"]) == (
        "orders",
        1,
        5,
    )
    assert (result.source["key"], result.source["payload_encoding"]) == ("O-1", "utf-8")


def test_priority_is_optional_and_defaults_to_zero(handler: IntakeHandler) -> None:
    body = order()
    del body["priority"]

    result = decode(handler, body)

    assert isinstance(result.event, OrderPlaced)
    assert result.event.priority == 0
    assert result.event.schema_version == 1


def test_a_cancellation_and_a_receipt_are_decoded_on_their_topics(
    handler: IntakeHandler,
) -> None:
    cancellation = {
        "type": "OrderCancelled",
        "event_id": EVENT_ID,
        "occurred_at": "2026-11-25T10:00:00Z",
        "order_id": "O-1",
    }
    receipt = {
        "type": "StockReceived",
        "event_id": EVENT_ID,
        "occurred_at": "2026-11-25T10:00:00Z",
        "receipt_id": "R-77",
        "sku": "SKU-RED-M",
        "quantity": 10,
    }

    cancelled = decode(handler, cancellation, topic="cancellations").event
    received = decode(handler, receipt, topic="receipts").event

    assert isinstance(cancelled, OrderCancelled)
    assert cancelled.lines is None
    assert isinstance(received, StockReceived)
    assert received.quantity == 10


def test_unknown_extra_fields_are_ignored(handler: IntakeHandler) -> None:
    body = order(channel="web", lines=[line(gift_wrap=True)])

    result = decode(handler, body)

    assert isinstance(result.event, OrderPlaced)
    assert result.event.lines[0].quantity == 2


def test_an_offset_zone_is_converted_to_utc(handler: IntakeHandler) -> None:
    result = decode(handler, order(occurred_at="2026-11-25T12:30:00+02:00"))

    assert isinstance(result.event, OrderPlaced)
    assert result.event.occurred_at == datetime(2026, 11, 25, 10, 30, tzinfo=UTC)
    assert result.event.occurred_at.utcoffset() is not None
    assert result.event.occurred_at.utcoffset() == UTC.utcoffset(None)


def test_limits_themselves_are_accepted(handler: IntakeHandler) -> None:
    lines = [line(line_id=str(i), quantity=1_000_000) for i in range(500)]

    result = decode(handler, order(order_id="O" * 64, lines=lines))

    assert isinstance(result.event, OrderPlaced)
    assert len(result.event.lines) == 500


# --- refused ------------------------------------------------------------------------------


def test_a_value_that_is_not_json_is_refused(handler: IntakeHandler) -> None:
    result = handler.decode(record(b"{not json"))

    assert "not JSON" in refused(result)
    assert result.source["payload"] == "{not json"


def test_a_json_array_is_refused(handler: IntakeHandler) -> None:
    assert "not an object" in refused(decode(handler, [order()]))


def test_a_missing_value_is_refused(handler: IntakeHandler) -> None:
    result = handler.decode(record(None))

    assert "no value" in refused(result)
    assert result.source["payload"] == ""


def test_an_unknown_type_is_refused(handler: IntakeHandler) -> None:
    assert "unknown type 'OrderShipped'" in refused(decode(handler, order(type="OrderShipped")))


def test_a_known_type_on_another_topic_is_refused(handler: IntakeHandler) -> None:
    assert "unknown type" in refused(decode(handler, order(), topic="receipts"))


def test_a_missing_type_is_refused(handler: IntakeHandler) -> None:
    body = order()
    del body["type"]

    assert "unknown type None" in refused(decode(handler, body))


def test_a_missing_field_is_refused(handler: IntakeHandler) -> None:
    body = order()
    del body["customer_id"]

    assert "customer_id" in refused(decode(handler, body))


@pytest.mark.parametrize(
    ("quantity", "why"),
    [
        (0, "zero"),
        (-1, "negative"),
        (1_000_001, "over the limit"),
        ("2", "a string: quantities are strict"),
        (2.0, "a float"),
        (True, "a boolean"),
        (None, "null"),
    ],
)
def test_an_invalid_quantity_is_refused(handler: IntakeHandler, quantity: object, why: str) -> None:
    error = refused(decode(handler, order(lines=[line(quantity=quantity)])))

    assert "lines.0.quantity" in error, why


def test_an_id_of_65_characters_is_refused(handler: IntakeHandler) -> None:
    assert "order_id" in refused(decode(handler, order(order_id="O" * 65)))


def test_an_empty_id_is_refused(handler: IntakeHandler) -> None:
    assert "lines.0.sku" in refused(decode(handler, order(lines=[line(sku="")])))


def test_an_id_with_a_control_character_is_refused(handler: IntakeHandler) -> None:
    assert "customer_id" in refused(decode(handler, order(customer_id="C\n42")))


def test_an_event_id_that_is_not_a_uuid_is_refused(handler: IntakeHandler) -> None:
    assert "event_id" in refused(decode(handler, order(event_id="not-a-uuid")))


def test_a_priority_as_a_string_is_refused(handler: IntakeHandler) -> None:
    assert "priority" in refused(decode(handler, order(priority="1")))


def test_501_lines_are_refused(handler: IntakeHandler) -> None:
    lines = [line(line_id=str(i)) for i in range(501)]

    assert "lines" in refused(decode(handler, order(lines=lines)))


def test_no_lines_are_refused(handler: IntakeHandler) -> None:
    assert "lines" in refused(decode(handler, order(lines=[])))


def test_duplicate_line_ids_are_refused(handler: IntakeHandler) -> None:
    lines = [line(line_id="1", sku="A"), line(line_id="1", sku="B")]

    assert "unique" in refused(decode(handler, order(lines=lines)))


def test_duplicate_line_ids_in_a_cancellation_are_refused(handler: IntakeHandler) -> None:
    body = {
        "type": "OrderCancelled",
        "event_id": EVENT_ID,
        "occurred_at": "2026-11-25T10:00:00Z",
        "order_id": "O-1",
        "lines": [{"line_id": "1"}, {"line_id": "1", "quantity": 1}],
    }

    assert "unique" in refused(decode(handler, body, topic="cancellations"))


def test_a_value_over_1_mib_is_refused(handler: IntakeHandler) -> None:
    value = encoded(order(padding="x" * MAX_MESSAGE_BYTES))

    result = handler.decode(record(value))

    assert "1 MiB" in refused(result)


def test_a_value_of_exactly_1_mib_is_decoded(handler: IntakeHandler) -> None:
    body = order(padding="")
    body["padding"] = "x" * (MAX_MESSAGE_BYTES - len(encoded(body)))
    value = encoded(body)
    assert len(value) == MAX_MESSAGE_BYTES

    assert isinstance(handler.decode(record(value)).event, OrderPlaced)


def test_bytes_that_are_not_utf8_are_refused_and_kept_as_base64(handler: IntakeHandler) -> None:
    value = b'{"type": "OrderPlaced", "order_id": "\xff\xfe"}'

    result = handler.decode(record(value, key=b"O-\xff"))

    assert "not UTF-8" in refused(result)
    assert result.source["payload_encoding"] == "base64"
    assert base64.b64decode(result.source["payload"]) == value
    assert result.source["key"] == "O-\ufffd"


def test_a_time_without_a_zone_is_refused(handler: IntakeHandler) -> None:
    assert "occurred_at" in refused(decode(handler, order(occurred_at="2026-11-25T10:00:00")))


def test_a_date_without_a_time_is_refused(handler: IntakeHandler) -> None:
    assert "occurred_at" in refused(decode(handler, order(occurred_at="2026-11-25")))


def test_a_time_that_is_not_rfc_3339_text_is_refused(handler: IntakeHandler) -> None:
    """A number is not RFC 3339; taken as Unix time it silently becomes another instant."""
    assert "occurred_at" in refused(decode(handler, order(occurred_at=1764064800)))


def test_utf16_text_is_refused_because_the_contract_says_utf8(handler: IntakeHandler) -> None:
    value = json.dumps(order()).encode("utf-16")

    assert "not UTF-8" in refused(handler.decode(record(value)))
