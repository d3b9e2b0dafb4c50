"""The generated contract files match the models, and the documented examples match both.

`jsonschema` is not installed: examples are validated by their pydantic model, and checked
against their JSON Schema's `required`, `properties` and `type` constant.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any, get_args

import pytest
import yaml

from events import generate
from events.asyncapi import asyncapi_document, build_app, default_topics
from events.commands import SkuCommands, SkuCommandsMessage, Tick
from events.dead_letters import DeadLetter
from events.decisions import DECISION_TYPES
from events.generate import MESSAGES, Message
from events.inputs import (
    CANCELLATION_EVENTS,
    CLOCK_EVENTS,
    INBOUND_EVENTS,
    ORDER_EVENTS,
    POLICY_EVENTS,
    RECEIPT_EVENTS,
    SHIPMENT_EVENTS,
    ShipmentDispatched,
)
from events.topics import DEFAULT_TOPICS

REPO = Path(__file__).resolve().parents[2]
CONTRACT_DOC = REPO / "docs" / "contract.md"
REGENERATE = "run `make schemas` (python -m events.generate) and commit the result"

MESSAGES_BY_NAME = {message.model.__name__: message for message in MESSAGES}
DECISIONS = "allocation-decisions"

# Every message of the contract: its topic and its key (None: written without a key).
CONTRACT_MESSAGES: dict[str, tuple[str, str | None]] = {
    "OrderPlaced": ("orders", "order_id"),
    "OrderCancelled": ("cancellations", "order_id"),
    "StockReceived": ("receipts", "sku"),
    "ShipmentDispatched": ("shipments", "order_id"),
    "BackorderPolicySet": ("sku-policies", "sku"),
    "InboundExpected": ("inbound", "sku"),
    "ClockTicked": ("clock", None),
    **{decision.__name__: (DECISIONS, "order_id") for decision in DECISION_TYPES},
    "DeadLetter": ("fulfillment-dlq", "the original message's key"),
    "SkuCommands": ("sku-commands", "sku"),
    "Tick": ("sku-commands", None),
}
TEN_TOPICS = [
    "orders",
    "cancellations",
    "receipts",
    "shipments",
    "sku-policies",
    "inbound",
    "clock",
    "sku-commands",
    "allocation-decisions",
    "fulfillment-dlq",
]
DRIFT_CHECKED = [f"events/schemas/{name}.json" for name in MESSAGES_BY_NAME] + [
    "events/asyncapi.yaml"
]


@cache
def rendered() -> dict[Path, str]:
    return generate.render()


def _name(path: Path) -> str:
    return str(path.relative_to(REPO))


@pytest.mark.parametrize("relative", DRIFT_CHECKED)
def test_committed_file_matches_the_models(relative: str) -> None:
    path = REPO / relative
    expected = rendered()[path]
    assert path.is_file(), f"{relative} is missing: {REGENERATE}"
    actual = path.read_text(encoding="utf-8")
    assert actual == expected, f"{relative} has drifted from the models: {REGENERATE}"


def test_the_drift_check_covers_every_generated_file() -> None:
    assert sorted(_name(path) for path in rendered()) == sorted(DRIFT_CHECKED)


def test_every_message_of_the_contract_is_generated_with_its_topic_and_key() -> None:
    """`x-key` is null for the messages written without a key: clock ticks, both kinds."""
    schemas = {
        name: json.loads(rendered()[generate.SCHEMAS_DIR / f"{name}.json"])
        for name in MESSAGES_BY_NAME
    }
    generated = {name: (schema["x-topic"], schema["x-key"]) for name, schema in schemas.items()}
    assert generated == CONTRACT_MESSAGES


def test_every_model_the_service_reads_or_writes_has_a_schema() -> None:
    """What intake accepts on its input topics, every decision type and both shapes of a
    sku-commands message: a model added to the code must be added to the contract."""
    inputs = {
        **ORDER_EVENTS,
        **CANCELLATION_EVENTS,
        **RECEIPT_EVENTS,
        **SHIPMENT_EVENTS,
        **POLICY_EVENTS,
        **INBOUND_EVENTS,
        **CLOCK_EVENTS,
    }
    models = [*inputs.values(), *DECISION_TYPES, DeadLetter, *get_args(SkuCommandsMessage)]
    assert {model.__name__ for model in models} == set(MESSAGES_BY_NAME)
    for model in models:
        assert MESSAGES_BY_NAME[model.__name__].model is model


def test_no_stale_schema_files() -> None:
    stale = [_name(path) for path in generate.stale_schemas(rendered())]
    assert not stale, f"no model generates {stale}: {REGENERATE}"


def test_generation_depends_on_neither_the_environment_nor_the_hash_seed() -> None:
    """Another process, other settings in its environment and another hash seed must
    generate exactly the committed files (`--check` compares without writing)."""
    env = {
        **os.environ,
        "PYTHONHASHSEED": "12345",
        "TOPIC_ORDERS": "not-the-contracts-orders",
        "TOPIC_DECISIONS": "elsewhere",
        "KAFKA_BOOTSTRAP_SERVERS": "broker.invalid:9999",
    }
    checked = subprocess.run(
        [sys.executable, "-m", "events.generate", "--check"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_check_names_drifted_files_without_writing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(generate, "SCHEMAS_DIR", tmp_path / "schemas")
    monkeypatch.setattr(generate, "ASYNCAPI_FILE", tmp_path / "asyncapi.yaml")
    assert generate.main(["--check"]) == 1  # nothing written yet
    assert not (tmp_path / "schemas").exists()

    assert generate.main([]) == 0
    assert generate.main(["--check"]) == 0

    drifted = tmp_path / "schemas" / "OrderPlaced.json"
    drifted.write_text("{}\n", encoding="utf-8")
    stale = tmp_path / "schemas" / "Removed.json"
    stale.write_text("{}\n", encoding="utf-8")
    capsys.readouterr()
    assert generate.main(["--check"]) == 1
    err = capsys.readouterr().err
    assert "OrderPlaced.json" in err
    assert "Removed.json" in err
    assert "StockReceived.json" not in err
    assert drifted.read_text(encoding="utf-8") == "{}\n"
    assert stale.exists()


def test_every_schema_has_id_title_and_description() -> None:
    for name, message in MESSAGES_BY_NAME.items():
        schema = generate.message_schema(message)
        assert schema["$id"] == f"urn:fulfillment:schema:{name}"
        assert schema["title"] == name
        assert schema["description"]
        assert schema["x-topic"] == message.topic


def test_output_schemas_require_every_field() -> None:
    """We write outputs with `model_dump_json()`: every field, `type` included, is there."""
    for message in MESSAGES:
        if message.mode == "serialization":
            schema = generate.message_schema(message)
            assert schema["required"] == list(schema["properties"]), message.model.__name__


# --- The examples in docs/contract.md ------------------------------------------------------


def documented_examples() -> list[dict[str, Any]]:
    text = CONTRACT_DOC.read_text(encoding="utf-8")
    blocks = re.findall(r"```json\n(.*?)```", text, flags=re.DOTALL)
    return [json.loads(block) for block in blocks]


def model_of(example: dict[str, Any]) -> Message:
    if "source_topic" in example:
        return MESSAGES_BY_NAME[DeadLetter.__name__]
    if "commands" in example:
        return MESSAGES_BY_NAME[SkuCommands.__name__]
    if "tick" in example:
        return MESSAGES_BY_NAME[Tick.__name__]
    return MESSAGES_BY_NAME[example["type"]]


def _example_id(example: dict[str, Any]) -> str:
    return model_of(example).model.__name__


EXAMPLES = documented_examples()


def test_every_message_is_documented_with_an_example() -> None:
    documented = {model_of(example).model.__name__ for example in EXAMPLES}
    assert documented == set(CONTRACT_MESSAGES)


def test_the_documented_over_shipment_letter_carries_the_refused_line_as_a_shipment() -> None:
    letters = [
        example
        for example in EXAMPLES
        if "source_topic" in example and example["error"].startswith("over_shipment:")
    ]
    assert letters, "docs/contract.md shows no over_shipment dead letter"
    for letter in letters:
        assert letter["source_topic"] == "shipments"
        refused = ShipmentDispatched.model_validate_json(letter["payload"])
        assert len(refused.lines) == 1
        assert letter["key"] == refused.order_id


def test_the_topics_table_of_the_docs_names_every_topic_setting_key_and_message() -> None:
    text = CONTRACT_DOC.read_text(encoding="utf-8")
    rows = {
        cells[0].strip("`"): cells
        for line in text.splitlines()
        if line.startswith("| `")
        for cells in [[cell.strip() for cell in line.strip("|").split("|")]]
        if len(cells) == 5
    }
    settings = {topic: name for name, topic in DEFAULT_TOPICS.items()}
    for topic in TEN_TOPICS:
        assert topic in rows, f"docs/contract.md has no row for topic {topic}"
        assert rows[topic][1] == f"`TOPIC_{settings[topic].upper()}`"
    for name, (topic, key) in CONTRACT_MESSAGES.items():
        _, _, _, key_cell, messages_cell = rows[topic]
        if topic != DECISIONS:
            assert f"`{name}`" in messages_cell, f"{name} missing from the row of {topic}"
        if key is None:
            assert "none" in key_cell, f"{topic}: {name} has no key"
        elif " " not in key:
            assert f"`{key}`" in key_cell


@pytest.mark.parametrize("example", EXAMPLES, ids=_example_id)
def test_documented_example_is_valid(example: dict[str, Any]) -> None:
    message = model_of(example)
    message.model.model_validate_json(json.dumps(example))

    schema = json.loads(rendered()[generate.SCHEMAS_DIR / f"{message.model.__name__}.json"])
    missing = set(schema.get("required", [])) - set(example)
    assert not missing, f"example lacks required {sorted(missing)}"
    unknown = set(example) - set(schema["properties"])
    assert not unknown, f"example has fields the schema does not know: {sorted(unknown)}"
    if "type" in example:
        assert schema["properties"]["type"]["const"] == example["type"]


def test_contract_examples_validate_with_placeholders_filled() -> None:
    """The public contract's seven input examples, with their `…` filled in."""
    event_id = "5a8d1c1e-4f43-4e8c-9a57-0f1b2c3d4e5f"
    at = "2026-11-25T10:00:00Z"
    examples = [
        {
            "type": "OrderPlaced",
            "event_id": event_id,
            "occurred_at": at,
            "order_id": "O-1001",
            "customer_id": "C-42",
            "priority": 0,
            "lines": [{"line_id": "1", "sku": "SKU-RED-M", "quantity": 2}],
        },
        {
            "type": "OrderCancelled",
            "event_id": event_id,
            "occurred_at": at,
            "order_id": "O-1001",
            "lines": [{"line_id": "1", "quantity": 1}],
            "reason": "customer_request",
        },
        {
            "type": "StockReceived",
            "event_id": event_id,
            "occurred_at": at,
            "receipt_id": "R-77",
            "sku": "SKU-RED-M",
            "quantity": 10,
        },
        {
            "type": "ShipmentDispatched",
            "event_id": event_id,
            "occurred_at": at,
            "shipment_id": "S-9",
            "order_id": "O-1001",
            "lines": [{"line_id": "1", "quantity": 2}],
        },
        {
            "type": "BackorderPolicySet",
            "event_id": event_id,
            "occurred_at": at,
            "sku": "SKU-RED-M",
            "backorders": "limit",
            "limit": 100,
            "max_wait_days": 30,
        },
        {
            "type": "InboundExpected",
            "event_id": event_id,
            "occurred_at": at,
            "inbound_id": "PO-7",
            "sku": "SKU-RED-M",
            "quantity": 40,
            "expected_at": "2026-12-10T00:00:00Z",
        },
        {"type": "ClockTicked", "event_id": event_id, "occurred_at": "2026-12-01T10:00:00Z"},
    ]
    for example in examples:
        test_documented_example_is_valid(example)


# --- The AsyncAPI document ----------------------------------------------------------------


def _resolve(document: dict[str, Any], ref: str) -> Any:
    node: Any = document
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


def messages_by_topic(document: dict[str, Any]) -> list[tuple[str, str, str, dict[str, Any]]]:
    """(topic, action (send/receive), payload schema name, message) for every operation."""
    found = []
    for operation in document["operations"].values():
        channel = _resolve(document, operation["channel"]["$ref"])
        for reference in operation["messages"]:
            message = _resolve(document, _resolve(document, reference["$ref"])["$ref"])
            payload = message["payload"]["$ref"].removeprefix("#/components/schemas/")
            found.append((channel["address"], operation["action"], payload, message))
    return found


def payloads_by_topic(document: dict[str, Any]) -> dict[str, dict[str, set[str]]]:
    """topic -> action (send/receive) -> names of the payload schemas."""
    found: dict[str, dict[str, set[str]]] = {}
    for topic, action, payload, _ in messages_by_topic(document):
        found.setdefault(topic, {}).setdefault(action, set()).add(payload)
    return found


def committed_asyncapi() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(
        (REPO / "events" / "asyncapi.yaml").read_text(encoding="utf-8")
    )
    return loaded


def test_asyncapi_names_all_ten_topics_and_their_messages() -> None:
    document = committed_asyncapi()
    assert document["asyncapi"].startswith("3.")
    assert document["info"]["title"] == "fulfillment"
    assert payloads_by_topic(document) == {
        "orders": {"receive": {"OrderPlaced"}},
        "cancellations": {"receive": {"OrderCancelled"}},
        "receipts": {"receive": {"StockReceived"}},
        "shipments": {"receive": {"ShipmentDispatched"}},
        "sku-policies": {"receive": {"BackorderPolicySet"}},
        "inbound": {"receive": {"InboundExpected"}},
        "clock": {"receive": {"ClockTicked"}},
        "sku-commands": {"receive": {"SkuCommands", "Tick"}, "send": {"SkuCommands", "Tick"}},
        "allocation-decisions": {"send": {"AllocationDecision"}},
        "fulfillment-dlq": {"send": {"DeadLetter"}},
    }
    union = document["components"]["schemas"]["AllocationDecision"]
    assert union["discriminator"] == "type"
    assert [item["$ref"].rsplit("/", 1)[-1] for item in union["oneOf"]] == [
        decision.__name__ for decision in DECISION_TYPES
    ]
    for decision in DECISION_TYPES:
        assert "type" in document["components"]["schemas"][decision.__name__]["required"]


def test_asyncapi_lists_the_topics_in_the_contracts_order() -> None:
    assert list(default_topics().values()) == TEN_TOPICS
    document = committed_asyncapi()
    addresses = [channel["address"] for channel in document["channels"].values()]
    assert list(dict.fromkeys(addresses)) == TEN_TOPICS
    operations = [
        _resolve(document, operation["channel"]["$ref"])["address"]
        for operation in document["operations"].values()
    ]
    assert list(dict.fromkeys(operations)) == TEN_TOPICS


def test_asyncapi_decisions_channel_names_every_decision_type() -> None:
    description = asyncapi_document()["channels"][DECISIONS]["description"]
    for decision in DECISION_TYPES:
        assert decision.__name__ in description
    assert "six" not in description


def test_asyncapi_describes_every_messages_key() -> None:
    document = asyncapi_document()
    for message in document["components"]["messages"].values():
        assert message["bindings"]["kafka"]["key"]["description"]
        assert "correlationId" not in message
    payload_names = {name: name for name in CONTRACT_MESSAGES} | {
        "AllocationDecision": DECISION_TYPES[0].__name__
    }
    for topic, _, payload, message in messages_by_topic(document):
        expected_topic, key = CONTRACT_MESSAGES[payload_names[payload]]
        assert topic == expected_topic
        described = message["bindings"]["kafka"]["key"]
        if key is None:
            assert described["type"] == "null", f"{payload} on {topic} is written without a key"
            assert described["description"].startswith("No key")
        else:
            assert described["type"] == "string"
            assert (f"`{key}`" if " " not in key else "original") in described["description"]


def test_asyncapi_clock_has_no_key() -> None:
    document = asyncapi_document()
    (clock,) = [message for topic, _, _, message in messages_by_topic(document) if topic == "clock"]
    assert clock["bindings"]["kafka"]["key"]["type"] == "null"
    assert "No key" in document["channels"]["clock"]["description"]


def test_asyncapi_documents_the_source_position_header_for_both_sku_commands_shapes() -> None:
    document = asyncapi_document()
    shapes: dict[tuple[str, str], dict[str, Any]] = {}
    for topic, action, payload, message in messages_by_topic(document):
        if topic != "sku-commands":
            assert "headers" not in message, f"{payload} on {topic} has no headers"
            continue
        shapes[(action, payload)] = message
    assert set(shapes) == {
        (action, payload) for action in ("send", "receive") for payload in ("SkuCommands", "Tick")
    }
    for (_, payload), message in shapes.items():
        headers = message["headers"]
        assert headers["required"] == ["source-position"]
        position = headers["properties"]["source-position"]
        assert position["pattern"] == "^[0-9]+$"
        assert "notification id x 1000" in position["description"]
        # A SkuCommands is one of its notification's SKUs; a tick is the notification's own.
        assert ("SKU's index" in position["description"]) == (payload == "SkuCommands")
    tick = document["components"]["schemas"]["Tick"]
    assert tick["properties"]["tick"]["$ref"] == "#/components/schemas/TickCommand"
    assert "TickCommand" in document["components"]["schemas"]


def test_documentation_app_declares_but_does_not_connect() -> None:
    app = build_app()
    (broker,) = app.brokers
    assert not broker.running
