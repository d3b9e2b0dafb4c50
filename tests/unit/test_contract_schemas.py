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
from typing import Any

import pytest
import yaml

from events import generate
from events.asyncapi import asyncapi_document, build_app
from events.commands import SkuCommands
from events.dead_letters import DeadLetter
from events.decisions import DECISION_TYPES
from events.generate import MESSAGES, Message

REPO = Path(__file__).resolve().parents[2]
CONTRACT_DOC = REPO / "docs" / "contract.md"
REGENERATE = "run `make schemas` (python -m events.generate) and commit the result"

MESSAGES_BY_NAME = {message.model.__name__: message for message in MESSAGES}


@cache
def rendered() -> dict[Path, str]:
    return generate.render()


def _name(path: Path) -> str:
    return str(path.relative_to(REPO))


@pytest.mark.parametrize(
    "relative",
    [f"events/schemas/{name}.json" for name in MESSAGES_BY_NAME] + ["events/asyncapi.yaml"],
)
def test_committed_file_matches_the_models(relative: str) -> None:
    path = REPO / relative
    expected = rendered()[path]
    assert path.is_file(), f"{relative} is missing: {REGENERATE}"
    actual = path.read_text(encoding="utf-8")
    assert actual == expected, f"{relative} has drifted from the models: {REGENERATE}"


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
    return MESSAGES_BY_NAME[example["type"]]


def _example_id(example: dict[str, Any]) -> str:
    return model_of(example).model.__name__


EXAMPLES = documented_examples()


def test_every_message_is_documented_with_an_example() -> None:
    documented = {model_of(example).model.__name__ for example in EXAMPLES}
    expected = {"OrderPlaced", "OrderCancelled", "StockReceived", "DeadLetter", "SkuCommands"}
    assert expected <= documented
    assert documented & {decision.__name__ for decision in DECISION_TYPES}


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
    """The public contract's three input examples, with their `…` filled in."""
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
    ]
    for example in examples:
        test_documented_example_is_valid(example)


# --- The AsyncAPI document ----------------------------------------------------------------


def _resolve(document: dict[str, Any], ref: str) -> Any:
    node: Any = document
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


def payloads_by_topic(document: dict[str, Any]) -> dict[str, dict[str, set[str]]]:
    """topic -> action (send/receive) -> names of the payload schemas."""
    found: dict[str, dict[str, set[str]]] = {}
    for operation in document["operations"].values():
        channel = _resolve(document, operation["channel"]["$ref"])
        for reference in operation["messages"]:
            message = _resolve(document, _resolve(document, reference["$ref"])["$ref"])
            payload = message["payload"]["$ref"].removeprefix("#/components/schemas/")
            found.setdefault(channel["address"], {}).setdefault(operation["action"], set()).add(
                payload
            )
    return found


def test_asyncapi_names_all_six_topics_and_their_messages() -> None:
    document = yaml.safe_load((REPO / "events" / "asyncapi.yaml").read_text(encoding="utf-8"))
    assert document["asyncapi"].startswith("3.")
    assert document["info"]["title"] == "fulfillment"
    assert payloads_by_topic(document) == {
        "orders": {"receive": {"OrderPlaced"}},
        "cancellations": {"receive": {"OrderCancelled"}},
        "receipts": {"receive": {"StockReceived"}},
        "sku-commands": {"receive": {"SkuCommands"}, "send": {"SkuCommands"}},
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


def test_asyncapi_describes_keys_and_the_source_position_header() -> None:
    document = asyncapi_document()
    for message in document["components"]["messages"].values():
        assert message["bindings"]["kafka"]["key"]["description"]
        assert "correlationId" not in message
    sku_commands = [
        message
        for name, message in document["components"]["messages"].items()
        if name.startswith("sku-commands:")
    ]
    assert len(sku_commands) == 2
    for message in sku_commands:
        assert message["headers"]["required"] == ["source-position"]


def test_documentation_app_declares_but_does_not_connect() -> None:
    app = build_app()
    (broker,) = app.brokers
    assert not broker.running
