"""Writes the contract's exact form from the models: `python -m events.generate [--check]`.

- `events/schemas/<Model>.json`: one JSON Schema (draft 2020-12) per message model.
- `events/asyncapi.yaml`: one AsyncAPI 3.0 document for all topics (see `events/asyncapi.py`).

Output is deterministic (pydantic's key order, `indent=2`, a trailing newline), so running
it twice gives byte-identical files. `--check` writes nothing, names the files that differ
from the models and exits 1 if any do; `make schemas` regenerates them.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema
from pydantic_core import core_schema

from events.asyncapi import asyncapi_document, default_topics
from events.commands import SkuCommands, Tick
from events.dead_letters import DeadLetter
from events.decisions import (
    AllocationReleased,
    BackorderCancelled,
    BackorderEtaChanged,
    BackorderFilled,
    LineAllocated,
    LineBackordered,
    LineRejected,
    LineShipped,
)
from events.inputs import (
    BackorderPolicySet,
    ClockTicked,
    InboundExpected,
    OrderCancelled,
    OrderPlaced,
    ShipmentDispatched,
    StockReceived,
)

EVENTS_DIR = Path(__file__).resolve().parent
SCHEMAS_DIR = EVENTS_DIR / "schemas"
ASYNCAPI_FILE = EVENTS_DIR / "asyncapi.yaml"
JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
ID_PREFIX = "urn:fulfillment:schema:"

Mode = Literal["validation", "serialization"]


@dataclass(frozen=True)
class Message:
    model: type[BaseModel]
    # Inputs: "validation", what we accept (fields with defaults are optional).
    # Outputs: "serialization", what we write: the relays use `model_dump_json()`, which
    # always writes every field, so every field is marked required (see AllFieldsWritten).
    mode: Mode
    topic: str
    key: str | None  # what the Kafka key is; None: written without one (`x-key: null`)
    description: str | None = None  # instead of the model's docstring


TOPICS = default_topics()  # defaults, not the environment
DECISION_TOPIC = TOPICS["decisions"]
MESSAGES: tuple[Message, ...] = (
    Message(OrderPlaced, "validation", TOPICS["orders"], "order_id"),
    Message(OrderCancelled, "validation", TOPICS["cancellations"], "order_id"),
    Message(StockReceived, "validation", TOPICS["receipts"], "sku"),
    Message(ShipmentDispatched, "validation", TOPICS["shipments"], "order_id"),
    Message(BackorderPolicySet, "validation", TOPICS["policies"], "sku"),
    Message(InboundExpected, "validation", TOPICS["inbound"], "sku"),
    Message(ClockTicked, "validation", TOPICS["clock"], None),
    Message(LineAllocated, "serialization", DECISION_TOPIC, "order_id"),
    Message(LineBackordered, "serialization", DECISION_TOPIC, "order_id"),
    Message(BackorderFilled, "serialization", DECISION_TOPIC, "order_id"),
    Message(AllocationReleased, "serialization", DECISION_TOPIC, "order_id"),
    Message(BackorderCancelled, "serialization", DECISION_TOPIC, "order_id"),
    Message(LineRejected, "serialization", DECISION_TOPIC, "order_id"),
    Message(LineShipped, "serialization", DECISION_TOPIC, "order_id"),
    Message(BackorderEtaChanged, "serialization", DECISION_TOPIC, "order_id"),
    Message(
        DeadLetter,
        "serialization",
        TOPICS["dead_letters"],
        "the original message's key",
        "An input message the service could not apply: where it came from, why, and its "
        "original bytes.",
    ),
    Message(
        SkuCommands,
        "serialization",
        TOPICS["sku_commands"],
        "sku",
        "Internal: intake's validated history for one SKU and one intake notification; "
        "the allocation stage applies it. Header `source-position` repeats `position`.",
    ),
    Message(
        Tick,
        "serialization",
        TOPICS["sku_commands"],
        None,
        "Internal: a clock tick as intake recorded it. Intake's relay writes one copy to every "
        "partition, without a key, so that every SKU sees it; the allocation stage expires "
        "the backorders past their SKU's `max_wait_days`. Header `source-position` repeats "
        "`position`.",
    ),
)


class AllFieldsWritten(GenerateJsonSchema):
    """Serialization schemas with every field required: our producers write them all.

    The same as pydantic's `json_schema_serialization_defaults_required=True`, without
    changing the models' config.
    """

    def field_is_required(
        self,
        field: core_schema.ModelField | core_schema.DataclassField | core_schema.TypedDictField,
        total: bool,
    ) -> bool:
        if self.mode == "serialization":
            return True
        return super().field_is_required(field, total)


def message_schema(message: Message) -> dict[str, Any]:
    """One model's JSON Schema, with `$schema`, `$id`, title, description, topic and key."""
    generated = message.model.model_json_schema(
        mode=message.mode, schema_generator=AllFieldsWritten
    )
    name = message.model.__name__
    docstring = generated.pop("description", None)
    description = message.description or docstring
    if description is None:
        raise ValueError(f"{name} has no docstring: give it a description in MESSAGES")
    head: dict[str, Any] = {
        "$schema": JSON_SCHEMA_DIALECT,
        "$id": f"{ID_PREFIX}{name}",
        "title": generated.pop("title", name),
        "description": description,
        "x-topic": message.topic,
        "x-key": message.key,
    }
    return head | generated


def render_json(data: Any) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def render_yaml(data: Any) -> str:
    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)
    return "# Generated by `python -m events.generate` (make schemas). Do not edit.\n" + text


def render() -> dict[Path, str]:
    """Every generated file's absolute path and its exact text."""
    files = {
        SCHEMAS_DIR / f"{message.model.__name__}.json": render_json(message_schema(message))
        for message in MESSAGES
    }
    files[ASYNCAPI_FILE] = render_yaml(asyncapi_document())
    return files


def stale_schemas(files: dict[Path, str]) -> list[Path]:
    """Schema files on disk that no model generates any more."""
    if not SCHEMAS_DIR.is_dir():
        return []
    return sorted(path for path in SCHEMAS_DIR.glob("*.json") if path not in files)


def drifted(files: dict[Path, str]) -> list[Path]:
    """Generated files whose content on disk differs (or that are missing)."""
    return [
        path
        for path, text in files.items()
        if not path.is_file() or path.read_text(encoding="utf-8") != text
    ]


def _relative(path: Path) -> str:
    try:
        return str(path.relative_to(EVENTS_DIR.parent))
    except ValueError:
        return str(path)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m events.generate",
        description="Write events/schemas/*.json and events/asyncapi.yaml from the models.",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 and name the files that differ from the models",
    )
    args = parser.parse_args(argv)
    files = render()
    changed = drifted(files)
    stale = stale_schemas(files)
    if args.check:
        for path in changed:
            print(f"drifted: {_relative(path)}", file=sys.stderr)
        for path in stale:
            print(f"stale (no model generates it): {_relative(path)}", file=sys.stderr)
        if changed or stale:
            print("run `make schemas` and commit the result", file=sys.stderr)
            return 1
        print(f"{len(files)} generated files match the models")
        return 0
    SCHEMAS_DIR.mkdir(parents=True, exist_ok=True)
    for path in changed:
        with path.open("w", encoding="utf-8", newline="\n") as handle:
            handle.write(files[path])
        print(f"wrote {_relative(path)}")
    for path in stale:
        path.unlink()
        print(f"removed {_relative(path)}")
    if not changed and not stale:
        print(f"{len(files)} generated files already match the models")
    return 0


if __name__ == "__main__":
    sys.exit(main())
