"""One AsyncAPI 3.0 document for every topic of the contract, built with faststream.

Documentation only: the workers in `services/` consume and produce with aiokafka directly
(see the `services/adapters/kafka.py` docstring). The `FastStream` app built here is never run and
its broker never connects; the handlers below are never called. `build_app()` declares what
flows on each topic and `asyncapi_document()` renders it, with a few additions faststream
0.7.8 cannot express (see `_complete`).

Topic names and the server address are the defaults from `services.adapters.settings`, not the
environment, so the document is the same wherever it is generated.
"""

from __future__ import annotations

import json
import tomllib
from importlib import metadata
from pathlib import Path
from typing import Annotated, Any

from faststream import FastStream
from faststream.kafka import KafkaBroker
from faststream.specification import AsyncAPI
from pydantic import Field

from events.commands import SkuCommands, Tick
from events.dead_letters import DeadLetter
from events.decisions import DECISION_TYPES, AllocationDecision
from events.inputs import (
    BackorderPolicySet,
    ClockTicked,
    InboundExpected,
    OrderCancelled,
    OrderPlaced,
    ShipmentDispatched,
    StockReceived,
)
from events.topics import DEFAULT_BROKER, DEFAULT_TOPICS

TITLE = "fulfillment"
PACKAGE = "fulfillment"
_PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"

# The discriminated union of the decisions, titled so that faststream names its schema
# `AllocationDecision` (a `oneOf` of the decision models with `discriminator: type`) rather
# than `<channel>:Message:Payload`.
AllocationDecisionPayload = Annotated[AllocationDecision, Field(title="AllocationDecision")]

ORDER_KEY = "`order_id` of the order, as a UTF-8 string."
SKU_KEY = "`sku`, as a UTF-8 string."
DEAD_LETTER_KEY = "The key of the original message, unchanged (absent if it had none)."
CLOCK_KEY = "No key: a tick is for every SKU."
TICK_KEY = "No key: intake's relay writes one copy of each tick to every partition."
SOURCE_POSITION = (
    "The message's `position` as decimal ASCII digits: intake's notification id x 1000 + "
    "the SKU's index in that notification; increasing per partition. The allocation stage "
    "tracks it instead of Kafka offsets."
)
TICK_POSITION = (
    "The tick's `position` as decimal ASCII digits: intake's notification id x 1000, the "
    "same in every partition's copy; increasing per partition with the SKU messages around "
    "it. The allocation stage tracks it instead of Kafka offsets."
)
DECISION_NAMES = ", ".join(decision.__name__ for decision in DECISION_TYPES)


def default_topics() -> dict[str, str]:
    """The contract's topic names: the document must not depend on the environment."""
    names = (
        "orders",
        "cancellations",
        "receipts",
        "shipments",
        "policies",
        "inbound",
        "clock",
        "sku_commands",
        "decisions",
        "dead_letters",
    )
    return {name: DEFAULT_TOPICS[name] for name in names}


def package_version() -> str:
    """The version in pyproject.toml (the source of truth in a checkout), else as installed."""
    if _PYPROJECT.is_file():
        project = tomllib.loads(_PYPROJECT.read_text(encoding="utf-8")).get("project", {})
        if project.get("name") == PACKAGE and isinstance(project.get("version"), str):
            return str(project["version"])
    return metadata.version(PACKAGE)


def build_app() -> FastStream:
    """A FastStream app that declares every topic; nothing connects until `run()`, never
    called for it."""
    topics = default_topics()
    broker = KafkaBroker(
        DEFAULT_BROKER,
        description="Default address; set KAFKA_BOOTSTRAP_SERVERS. "
        "Topic names are defaults too; set TOPIC_ORDERS, TOPIC_CANCELLATIONS, ...",
    )

    @broker.subscriber(
        topics["orders"],
        title=topics["orders"],
        description=f"Input: customers' orders, published by other services. Key: {ORDER_KEY}",
    )
    async def orders(message: OrderPlaced) -> None:
        """Documentation only; the workers in services/ consume with aiokafka directly."""

    @broker.subscriber(
        topics["cancellations"],
        title=topics["cancellations"],
        description="Input: cancellations of whole orders or of some lines, published by "
        f"other services. Key: {ORDER_KEY}",
    )
    async def cancellations(message: OrderCancelled) -> None:
        """Documentation only; the workers in services/ consume with aiokafka directly."""

    @broker.subscriber(
        topics["receipts"],
        title=topics["receipts"],
        description=f"Input: stock received for a SKU, published by other services. Key: {SKU_KEY}",
    )
    async def receipts(message: StockReceived) -> None:
        """Documentation only; the workers in services/ consume with aiokafka directly."""

    @broker.subscriber(
        topics["shipments"],
        title=topics["shipments"],
        description="Input: allocated units that left the warehouse, published by other "
        f"services. Key: {ORDER_KEY}",
    )
    async def shipments(message: ShipmentDispatched) -> None:
        """Documentation only; the workers in services/ consume with aiokafka directly."""

    @broker.subscriber(
        topics["policies"],
        title=topics["policies"],
        description="Input: how a SKU treats what its stock cannot cover (allow, deny or "
        f"limit backorders; how long they may wait), published by other services. Key: {SKU_KEY}",
    )
    async def policies(message: BackorderPolicySet) -> None:
        """Documentation only; the workers in services/ consume with aiokafka directly."""

    @broker.subscriber(
        topics["inbound"],
        title=topics["inbound"],
        description="Input: supply on its way to a SKU, for promised dates (a new inbound, a "
        f"revision, or a withdrawal with quantity 0), published by other services. Key: {SKU_KEY}",
    )
    async def inbound(message: InboundExpected) -> None:
        """Documentation only; the workers in services/ consume with aiokafka directly."""

    @broker.subscriber(
        topics["clock"],
        title=topics["clock"],
        description="Input: time. The service's clock stage publishes one tick every "
        "CLOCK_INTERVAL_SECONDS; anyone may publish one. Backorders past their SKU's "
        "`max_wait_days` expire at a tick. No key: a tick is for every SKU.",
    )
    async def clock(message: ClockTicked) -> None:
        """Documentation only; the workers in services/ consume with aiokafka directly."""

    @broker.subscriber(
        topics["sku_commands"],
        title=f"{topics['sku_commands']}:allocation",
        description="Internal, read by the allocation stage: intake's validated history. "
        "One SkuCommands per intake notification and SKU, keyed by `sku`; one Tick per "
        "recorded clock tick in every partition, without a key. Both carry the header "
        "`source-position`.",
    )
    async def sku_commands(message: SkuCommands) -> None:
        """Documentation only; the workers in services/ consume with aiokafka directly.
        Ticks on this channel are added by `_complete`."""

    broker.publisher(
        topics["sku_commands"],
        title=f"{topics['sku_commands']}:intake",
        description="Internal, written by intake's relay (the same messages as "
        f"`{topics['sku_commands']}:allocation` reads): a SkuCommands to its SKU's partition, "
        "a Tick to every partition. Both carry the header `source-position`.",
        schema=SkuCommands,
    )
    broker.publisher(
        topics["decisions"],
        title=topics["decisions"],
        description="Output: one message per allocation decision, in the order they were "
        f"taken; `type` tells which decision it is ({DECISION_NAMES}). Readers skip types "
        f"they do not know. Key: {ORDER_KEY}",
        schema=AllocationDecisionPayload,
    )
    broker.publisher(
        topics["dead_letters"],
        title=topics["dead_letters"],
        description="Output: input messages the service could not apply, with the reason "
        f"and the original bytes. Key: {DEAD_LETTER_KEY}",
        schema=DeadLetter,
    )

    return FastStream(
        broker,
        specification=AsyncAPI(
            title=TITLE,
            version=package_version(),
            description="Allocation and backorders per SKU, over Kafka. Messages are JSON "
            "objects in UTF-8; readers ignore unknown fields. The JSON Schema of each "
            "message is also in events/schemas/; docs/contract.md explains the rules.",
        ),
    )


def asyncapi_document() -> dict[str, Any]:
    """The AsyncAPI document as plain JSON-compatible data, in a stable key order."""
    app = build_app()
    document: dict[str, Any] = json.loads(app.schema.to_specification().to_json())
    _complete(document)
    return _stable(document)


def _stable(document: dict[str, Any]) -> dict[str, Any]:
    """A fixed order for faststream's output, which follows a `WeakSet` of subscribers and
    publishers (memory addresses): channels, operations and messages in topic order (inputs,
    internal, outputs), schemas by name, top-level keys as AsyncAPI lists them."""
    topic_order = list(default_topics().values())

    def channel_rank(name: str) -> tuple[int, str]:
        address = document["channels"][name]["address"]
        rank = topic_order.index(address) if address in topic_order else len(topic_order)
        return rank, name

    channels = sorted(document["channels"], key=channel_rank)
    document["channels"] = {name: document["channels"][name] for name in channels}
    by_channel = {
        name: operation["channel"]["$ref"].removeprefix("#/channels/")
        for name, operation in document["operations"].items()
    }
    document["operations"] = {
        name: document["operations"][name]
        for name in sorted(document["operations"], key=lambda op: channel_rank(by_channel[op]))
    }
    components = document["components"]
    message_order = [
        reference["$ref"].removeprefix("#/components/messages/")
        for channel in document["channels"].values()
        for reference in channel["messages"].values()
    ]
    components["messages"] = {
        name: components["messages"][name]
        for name in sorted(components["messages"], key=message_order.index)
    }
    components["schemas"] = dict(sorted(components["schemas"].items()))
    first = ["asyncapi", "info", "defaultContentType", "servers", "channels", "operations"]
    ordered = {key: document[key] for key in first if key in document}
    ordered.update((key, value) for key, value in document.items() if key not in ordered)
    return ordered


def _complete(document: dict[str, Any]) -> None:
    """What faststream 0.7.8 cannot declare, added to its output.

    - A second message on `sku-commands`: the Tick. faststream gives a channel one message
      (several handlers become one message with a `oneOf` payload), but a Tick differs from
      a SkuCommands in more than its payload: it has no key. See `_add_ticks`.
    - Message keys: faststream has no Kafka message binding; we add `bindings.kafka.key`,
      `type: "null"` for the messages written without a key.
    - The `source-position` header of `sku-commands`: faststream messages have no headers.
    - `correlationId`: faststream claims every message carries its `correlation_id`
      header; our aiokafka workers neither send nor read one, so it is removed.
    - Discriminators: AsyncAPI requires the discriminator property (`type`) to be required
      in each alternative; pydantic's validation-mode schemas (what faststream uses) leave
      it optional because it has a default. Every message we write carries it.
    """
    topics = default_topics()
    _add_ticks(document, topics["sku_commands"])
    schemas: dict[str, Any] = document["components"]["schemas"]
    for schema in list(schemas.values()):
        _require_discriminators(schema, schemas)
    # Topic -> the schema of its messages' key.
    keys: dict[str, dict[str, str]] = {
        topics["orders"]: _key(ORDER_KEY),
        topics["cancellations"]: _key(ORDER_KEY),
        topics["receipts"]: _key(SKU_KEY),
        topics["shipments"]: _key(ORDER_KEY),
        topics["policies"]: _key(SKU_KEY),
        topics["inbound"]: _key(SKU_KEY),
        topics["clock"]: _no_key(CLOCK_KEY),
        topics["sku_commands"]: _key(SKU_KEY),
        topics["decisions"]: _key(ORDER_KEY),
        topics["dead_letters"]: _key(DEAD_LETTER_KEY),
    }
    messages: dict[str, Any] = document["components"]["messages"]
    for channel in document["channels"].values():
        address = channel["address"]
        for reference in channel["messages"].values():
            name = reference["$ref"].removeprefix("#/components/messages/")
            message = messages[name]
            message.pop("correlationId", None)
            is_tick = message["payload"] == {"$ref": f"#/components/schemas/{Tick.__name__}"}
            key = _no_key(TICK_KEY) if is_tick else dict(keys[address])
            message["bindings"] = {"kafka": {"key": key, "bindingVersion": "0.4.0"}}
            if address == topics["sku_commands"]:
                message["headers"] = {
                    "type": "object",
                    "properties": {
                        "source-position": {
                            "type": "string",
                            "pattern": "^[0-9]+$",
                            "description": TICK_POSITION if is_tick else SOURCE_POSITION,
                        }
                    },
                    "required": ["source-position"],
                }


def _key(description: str) -> dict[str, str]:
    return {"type": "string", "description": description}


def _no_key(description: str) -> dict[str, str]:
    """Written without a key: the Kafka key is null."""
    return {"type": "null", "description": description}


def _add_ticks(document: dict[str, Any], address: str) -> None:
    """Adds the Tick message to every channel (and its operations) at `address`, beside the
    SkuCommands message faststream declared, with its schema in `components`."""
    schema = Tick.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas: dict[str, Any] = document["components"]["schemas"]
    schemas.update(schema.pop("$defs", {}))
    schemas[Tick.__name__] = schema
    for channel_name, channel in document["channels"].items():
        if channel["address"] != address:
            continue
        message_name = f"{channel_name}:{Tick.__name__}"
        document["components"]["messages"][message_name] = {
            "title": message_name,
            "payload": {"$ref": f"#/components/schemas/{Tick.__name__}"},
        }
        channel["messages"][Tick.__name__] = {"$ref": f"#/components/messages/{message_name}"}
        for operation in document["operations"].values():
            if operation["channel"]["$ref"] == f"#/channels/{channel_name}":
                operation["messages"].append(
                    {"$ref": f"#/channels/{channel_name}/messages/{Tick.__name__}"}
                )


def _require_discriminators(node: Any, schemas: dict[str, Any]) -> None:
    if isinstance(node, list):
        for item in node:
            _require_discriminators(item, schemas)
        return
    if not isinstance(node, dict):
        return
    discriminator = node.get("discriminator")
    if isinstance(discriminator, str):
        for alternative in node.get("oneOf", []):
            name = alternative.get("$ref", "").removeprefix("#/components/schemas/")
            target = schemas.get(name)
            if target is not None and discriminator in target.get("properties", {}):
                required = {*target.get("required", []), discriminator}
                target["required"] = [field for field in target["properties"] if field in required]
    for value in node.values():
        _require_discriminators(value, schemas)
