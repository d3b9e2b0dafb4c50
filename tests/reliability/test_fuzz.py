"""Bad input at scale: hypothesis draws a mix of good events and bad messages of every kind
(arbitrary bytes, non-UTF-8, JSON that is not an object, wrong types, missing fields,
unknown types, boundary values, oversize bodies) on all seven input topics, publishes them
interleaved to a running service on a real broker and both stores, and checks: every bad
message has exactly one dead letter that says why, every good event is applied, and the
service keeps running.

Shipments take what is allocated, which only the service knows: a second phase, once the
first has drained, ships from the allocations the decisions show (all of a line, a unit,
one more than is allocated), mixed with bad shipments and receipts against inbounds."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from aiokafka.structs import ConsumerRecord
from hypothesis import HealthCheck, Phase, given, seed
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from events.common import MAX_MESSAGE_BYTES, MAX_QUANTITY, MAX_QUEUE_LIMIT
from services.adapters.kafka import INPUT_MAX_BYTES, SOURCE_POSITION_HEADER
from services.adapters.settings import Settings
from services.entrypoints.bootstrap import build_allocation, build_intake
from services.entrypoints.runner import Service
from services.intake.application import Intake
from services.intake.consumer import IntakeHandler
from services.intake.domain import tick_aggregate_id
from tests.harness import (
    consumer_record,
    drained,
    in_decision_order,
    isolated_settings,
    publish,
    read_topic,
    running,
)

pytestmark = pytest.mark.kafka

SEED = int(os.environ.get("FUZZ_SEED", "20261125"))
EXAMPLES = 30  # hypothesis examples; each adds a random subset of the kinds to the mix
SAFE = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_."
ROLES = ("orders", "cancellations", "receipts", "shipments", "policies", "inbound", "clock")
TYPES = {
    "orders": "OrderPlaced",
    "cancellations": "OrderCancelled",
    "receipts": "StockReceived",
    "shipments": "ShipmentDispatched",
    "policies": "BackorderPolicySet",
    "inbound": "InboundExpected",
    "clock": "ClockTicked",
}
KNOWN_FIELDS = {
    "shipment_id",
    "backorders",
    "limit",
    "max_wait_days",
    "inbound_id",
    "expected_at",
    "type",
    "event_id",
    "occurred_at",
    "schema_version",
    "order_id",
    "customer_id",
    "priority",
    "lines",
    "reason",
    "receipt_id",
    "sku",
    "quantity",
    "line_id",
}

# Printable for the contract: anything but C0/C1 controls (and surrogates, not UTF-8).
printable = st.characters(blacklist_categories=("Cc", "Cs"))
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(10**30), 10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=12,
)
unknown_fields = st.dictionaries(
    st.text(min_size=1, max_size=12).filter(lambda name: name not in KNOWN_FIELDS),
    json_values,
    max_size=3,
)
zones = st.integers(-14 * 60 + 1, 14 * 60 - 1).map(lambda m: timezone(timedelta(minutes=m)))
times = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31))


@dataclass
class Case:
    """One message: good (reason is None) or bad with the fragment its dead letter names."""

    kind: str
    role: str
    key: str | None
    value: bytes
    reason: str | None = None
    body: dict[str, Any] | None = None
    cancelled: dict[str, int] | None = None  # a good order: what a good cancellation took
    target: Case | None = None  # a good cancellation: the order it cancels...
    takes: dict[str, int] | None = None  # ...and what it takes from each line
    # A good shipment: per line, (quantity shipped, allocated left after it)...
    ships: dict[str, tuple[int, int]] = field(default_factory=dict)
    over: list[str] = field(default_factory=list)  # ...and its lines refused: over_shipment

    @property
    def good(self) -> bool:
        return self.reason is None

    @property
    def letters(self) -> int:
        """How many dead letters it must have: one per line that over-ships, one if bad."""
        return len(self.over) if self.good else 1

    def show(self) -> str:
        return f"{self.kind} on {self.role} key {self.key!r}: {self.value[:300]!r}"


@dataclass
class Mix:
    """The messages drawn so far, and what the good ones must have done."""

    tag: str
    cases: list[Case] = field(default_factory=list)
    pending: list[Case] = field(default_factory=list)  # the example being drawn
    counter: int = 0

    def commit(self) -> None:
        for case in self.pending:
            if case.target is not None:
                case.target.cancelled = case.takes
        self.cases.extend(self.pending)
        self.pending = []

    def next_id(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.tag}-{self.counter}"

    @property
    def policy_skus(self) -> list[str]:
        """SKUs that get policies and no orders: what a policy does to orders and ticks is
        the reliability workload's and the unit tests' business; here, that it is applied."""
        return [f"P{self.tag}-{n}" for n in range(3)]

    @property
    def inbound_ids(self) -> list[str]:
        """Few, so that inbounds get revised and withdrawn."""
        return [f"PO{self.tag}-{n}" for n in range(4)]

    @property
    def skus(self) -> list[str]:
        return [
            *(f"S{self.tag}-{n}" for n in range(5)),
            f"S{self.tag}-\N{SNOWMAN}\u00e9\u4e2d",
            f"S{self.tag}-".ljust(64, "\N{SNOWMAN}"),  # 64 characters: the longest allowed
        ]

    def good_orders(self) -> list[Case]:
        return [c for c in self.cases if c.good and c.role == "orders" and c.kind != "redelivery"]

    def good_receipts(self) -> list[Case]:
        return [c for c in self.cases if c.good and c.role == "receipts"]


def encode(body: Any, ascii_only: bool = True) -> bytes:
    return json.dumps(body, ensure_ascii=ascii_only).encode()


def when(data: st.DataObject) -> str:
    return data.draw(times).replace(tzinfo=data.draw(zones)).isoformat()


def new_order(mix: Mix, data: st.DataObject, lines: int | None = None) -> dict[str, Any]:
    suffix = data.draw(st.text(SAFE, max_size=6))
    count = lines or data.draw(st.integers(1, 4))
    body: dict[str, Any] = {
        "type": "OrderPlaced",
        "event_id": str(uuid.uuid4()),
        "occurred_at": when(data),
        "order_id": mix.next_id("O") + suffix,
        "customer_id": data.draw(st.text(printable, min_size=1, max_size=64)),
        "lines": [
            {
                "line_id": f"{n}:" + data.draw(st.text(printable, max_size=4)),
                "sku": data.draw(st.sampled_from(mix.skus)),
                "quantity": data.draw(st.integers(1, 40) | st.sampled_from([1, 1_000_000])),
            }
            for n in range(count)
        ],
    }
    if data.draw(st.booleans()):
        body["priority"] = data.draw(st.integers(-1_000_000, 1_000_000))
    if data.draw(st.booleans()):
        body["schema_version"] = data.draw(st.integers(1, 3))
    return body


def new_receipt(mix: Mix, data: st.DataObject) -> dict[str, Any]:
    return {
        "type": "StockReceived",
        "event_id": str(uuid.uuid4()),
        "occurred_at": when(data),
        "receipt_id": mix.next_id("R") + data.draw(st.text(printable, max_size=6)),
        "sku": data.draw(st.sampled_from(mix.skus)),
        "quantity": data.draw(st.integers(1, 30) | st.just(1_000_000)),
    }


def new_shipment(mix: Mix, data: st.DataObject) -> dict[str, Any]:
    """A well-formed shipment from an order nobody placed (so: unknown_order)."""
    return {
        "type": "ShipmentDispatched",
        "event_id": str(uuid.uuid4()),
        "occurred_at": when(data),
        "shipment_id": mix.next_id("SH") + data.draw(st.text(printable, max_size=6)),
        "order_id": mix.next_id("GHOST"),
        "lines": [{"line_id": "1", "quantity": data.draw(st.integers(1, 5))}],
    }


def new_policy(mix: Mix, data: st.DataObject) -> dict[str, Any]:
    backorders = data.draw(st.sampled_from(["allow", "deny", "limit"]))
    body: dict[str, Any] = {
        "type": "BackorderPolicySet",
        "event_id": str(uuid.uuid4()),
        "occurred_at": when(data),
        "sku": data.draw(st.sampled_from(mix.policy_skus)),
        "backorders": backorders,
    }
    if backorders == "limit" or data.draw(st.booleans()):  # ignored unless limit
        body["limit"] = data.draw(
            st.integers(0, MAX_QUEUE_LIMIT) | st.sampled_from([0, MAX_QUEUE_LIMIT])
        )
    if data.draw(st.booleans()):
        body["max_wait_days"] = data.draw(
            st.none() | st.integers(1, 3650) | st.sampled_from([1, 3650])
        )
    return body


def new_inbound(mix: Mix, data: st.DataObject) -> dict[str, Any]:
    return {
        "type": "InboundExpected",
        "event_id": str(uuid.uuid4()),
        "occurred_at": when(data),
        "inbound_id": data.draw(st.sampled_from(mix.inbound_ids)),
        "sku": data.draw(st.sampled_from(mix.skus)),
        "quantity": data.draw(st.integers(0, 60) | st.sampled_from([0, 1, MAX_QUANTITY])),
        "expected_at": when(data),
    }


def new_tick(data: st.DataObject) -> dict[str, Any]:
    return {"type": "ClockTicked", "event_id": str(uuid.uuid4()), "occurred_at": when(data)}


def good_order(mix: Mix, data: st.DataObject) -> list[Case]:
    body = new_order(mix, data)
    extra = data.draw(unknown_fields)
    body.update(extra)
    if data.draw(st.booleans()):
        body["lines"][0].update(data.draw(unknown_fields))  # unknown fields in a line too
    kind = "order+unknown fields" if extra else "order"
    value = encode(body, ascii_only=data.draw(st.booleans()))
    return [Case(kind, "orders", body["order_id"], value, body=body)]


def good_receipt(mix: Mix, data: st.DataObject) -> list[Case]:
    body = {**new_receipt(mix, data), **data.draw(unknown_fields)}
    return [Case("receipt", "receipts", body["sku"], encode(body), body=body)]


def good_policy(mix: Mix, data: st.DataObject) -> list[Case]:
    body = {**new_policy(mix, data), **data.draw(unknown_fields)}
    return [Case(f"policy {body['backorders']}", "policies", body["sku"], encode(body), body=body)]


def good_inbound(mix: Mix, data: st.DataObject) -> list[Case]:
    body = {**new_inbound(mix, data), **data.draw(unknown_fields)}
    kind = "inbound withdrawal" if body["quantity"] == 0 else "inbound"
    return [Case(kind, "inbound", body["sku"], encode(body), body=body)]


def good_tick(mix: Mix, data: st.DataObject) -> list[Case]:
    """A tick, keyed or not: the contract names no key for the clock topic, and, as on
    every topic, the key is not what intake reads."""
    body = {**new_tick(data), **data.draw(unknown_fields)}
    key = data.draw(st.none() | st.just(mix.next_id("K")))
    return [
        Case("tick" if key is None else "tick with a key", "clock", key, encode(body), body=body)
    ]


def good_cancellation(mix: Mix, data: st.DataObject) -> list[Case]:
    """Cancels a good order drawn earlier (whole, or some lines): at most once per order."""
    targeted = {id(c.target) for c in mix.pending}
    # Draws first, in a shape that does not depend on what was drawn before (hypothesis
    # checks that), then applies them to the orders drawn so far.
    pick = data.draw(st.integers(0, 2**16))
    whole = data.draw(st.booleans())
    picks = data.draw(
        st.lists(
            st.tuples(st.integers(0, 3), st.none() | st.integers(1, 60)), min_size=1, max_size=4
        )
    )
    occurred_at = when(data)
    reason = data.draw(st.text(printable, max_size=40))
    open_orders = [
        c
        for c in mix.good_orders()
        if c.cancelled is None and c.kind.startswith("order") and id(c) not in targeted
    ]
    if not open_orders:
        return []
    target = open_orders[pick % len(open_orders)]
    assert target.body is not None
    body: dict[str, Any] = {
        "type": "OrderCancelled",
        "event_id": str(uuid.uuid4()),
        "occurred_at": occurred_at,
        "order_id": target.body["order_id"],
        "reason": reason,
    }
    ordered = {line["line_id"]: line["quantity"] for line in target.body["lines"]}
    if whole:
        expected = dict(ordered)  # the whole order
    else:
        ids = sorted(ordered)
        chosen = {ids[n % len(ids)]: quantity for n, quantity in picks}
        lines = []
        expected = dict.fromkeys(ordered, 0)
        for line_id, quantity in chosen.items():
            lines.append(
                {"line_id": line_id, **({} if quantity is None else {"quantity": quantity})}
            )
            expected[line_id] = (
                ordered[line_id] if quantity is None else min(quantity, ordered[line_id])
            )
        body["lines"] = lines
    # The order is marked when the example completes (Mix.commit): an aborted draw leaves
    # no trace.
    return [
        Case(
            "cancellation",
            "cancellations",
            body["order_id"],
            encode(body),
            body=body,
            target=target,
            takes=expected,
        )
    ]


def _classify(value: bytes) -> str:
    """Why intake must refuse arbitrary bytes, per the contract's order of checks."""
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        return "value is not UTF-8 text"
    try:
        data = json.loads(text)
    except ValueError:
        return "value is not JSON"
    if not isinstance(data, dict):
        return "not an object"
    return "unknown type"


def arbitrary_bytes(mix: Mix, data: st.DataObject) -> list[Case]:
    value = data.draw(st.binary(max_size=80))
    role = data.draw(st.sampled_from(ROLES))
    return [Case("arbitrary bytes", role, mix.next_id("K"), value, reason=_classify(value))]


def not_utf8(mix: Mix, data: st.DataObject) -> list[Case]:
    body = new_order(mix, data)
    choice = data.draw(st.sampled_from(["latin-1", "utf-16", "raw"]))
    if choice == "raw":
        value = data.draw(st.binary(max_size=20)) + b"\xff\xfe\x80" + encode(body)
    elif choice == "latin-1":
        value = encode(body)[:-1] + ', "note": "Caf\u00e9"}'.encode("latin-1")
    else:
        value = json.dumps(body, ensure_ascii=False).encode("utf-16")
    return [
        Case(
            f"not UTF-8 ({choice})",
            "orders",
            body["order_id"],
            value,
            reason="value is not UTF-8 text",
        )
    ]


def not_an_object(mix: Mix, data: st.DataObject) -> list[Case]:
    value = data.draw(json_values.filter(lambda v: not isinstance(v, dict)))
    role = data.draw(st.sampled_from(ROLES))
    return [Case("JSON non-object", role, mix.next_id("K"), encode(value), reason="not an object")]


WRONG_TYPES: dict[str, list[Any]] = {
    "quantity": ["2", 2.5, True, None, [2], {"n": 2}, 2.0, "1e3"],
    "event_id": ["not-a-uuid", 123, None, ""],
    "occurred_at": [1_700_000_000, "yesterday", None, "2026-13-01T00:00:00Z", True],
    "order_id": [42, None, ["O-1"], {"id": 1}],
    "customer_id": [7, False],
    "priority": ["1", 1.5, True],
    "lines": ["1 x SKU", {"line_id": "1"}, None, 3],
    "schema_version": [0, -1, "v2"],
}


def wrong_type(mix: Mix, data: st.DataObject) -> list[Case]:
    name = data.draw(st.sampled_from(sorted(WRONG_TYPES)))
    wrong = data.draw(st.sampled_from(WRONG_TYPES[name]))
    if name == "quantity" and data.draw(st.booleans()):
        body = new_receipt(mix, data)
        body["quantity"] = wrong
        return [
            Case(
                f"receipt quantity={wrong!r}",
                "receipts",
                body["sku"],
                encode(body),
                reason="quantity:",
            )
        ]
    body = new_order(mix, data)
    key = body["order_id"]
    where = name
    if name == "quantity":
        body["lines"][-1]["quantity"] = wrong
        where = f"lines.{len(body['lines']) - 1}.quantity"
    else:
        body[name] = wrong
    return [Case(f"order {name}={wrong!r}", "orders", key, encode(body), reason=f"{where}:")]


REQUIRED = {
    "orders": ["event_id", "occurred_at", "order_id", "customer_id", "lines"],
    "receipts": ["event_id", "occurred_at", "receipt_id", "sku", "quantity"],
    "cancellations": ["event_id", "occurred_at", "order_id"],
    "shipments": ["event_id", "occurred_at", "shipment_id", "order_id", "lines"],
    "policies": ["event_id", "occurred_at", "sku", "backorders"],
    "inbound": ["event_id", "occurred_at", "inbound_id", "sku", "quantity", "expected_at"],
    "clock": ["event_id", "occurred_at"],
}


def new_body(role: str, mix: Mix, data: st.DataObject) -> dict[str, Any]:
    """A well-formed body for the role's topic."""
    if role == "orders":
        return new_order(mix, data)
    if role == "receipts":
        return new_receipt(mix, data)
    if role == "shipments":
        return new_shipment(mix, data)
    if role == "policies":
        return new_policy(mix, data)
    if role == "inbound":
        return new_inbound(mix, data)
    if role == "clock":
        return new_tick(data)
    return {
        "type": "OrderCancelled",
        "event_id": str(uuid.uuid4()),
        "occurred_at": when(data),
        "order_id": mix.next_id("O"),
    }


def missing_field(mix: Mix, data: st.DataObject) -> list[Case]:
    role = data.draw(st.sampled_from(ROLES))
    body = new_body(role, mix, data)
    name = data.draw(st.sampled_from([*REQUIRED[role], "type", "line sku"]))
    if name == "line sku" and role == "orders":
        del body["lines"][0]["sku"]
        reason = "lines.0.sku: Field required"
    elif name in ("type", "line sku"):
        body.pop("type")
        reason = "unknown type None"
    else:
        del body[name]
        reason = f"{name}: Field required"
    key = str(body.get("order_id") or body.get("sku") or mix.next_id("K"))
    return [Case(f"{role} without {name}", role, key, encode(body), reason=reason)]


def unknown_type(mix: Mix, data: st.DataObject) -> list[Case]:
    role = data.draw(st.sampled_from(ROLES))
    body = new_order(mix, data)
    other = data.draw(
        st.sampled_from(sorted(set(TYPES.values()) - {TYPES[role]}))
        | st.text(max_size=20).filter(lambda t: t not in TYPES.values())
        | st.sampled_from([None, 1, ["OrderPlaced"], "orderplaced", "OrderPlaced "])
    )
    body["type"] = other
    return [
        Case(
            f"type {other!r} on {role}", role, body["order_id"], encode(body), reason="unknown type"
        )
    ]


def out_of_range(mix: Mix, data: st.DataObject) -> list[Case]:
    quantity = data.draw(
        st.sampled_from([0, -1, 1_000_001, 10**20, -(10**20)])
        | st.integers(max_value=0)
        | st.integers(min_value=1_000_001)
    )
    reason = "greater than or equal to 1" if quantity < 1 else "less than or equal to 1000000"
    if data.draw(st.booleans()):
        body = new_receipt(mix, data)
        body["quantity"] = quantity
        return [
            Case(
                f"receipt quantity {quantity}",
                "receipts",
                body["sku"],
                encode(body),
                reason=f"quantity: Input should be {reason}",
            )
        ]
    body = new_order(mix, data)
    body["lines"][0]["quantity"] = quantity
    return [
        Case(
            f"order quantity {quantity}",
            "orders",
            body["order_id"],
            encode(body),
            reason=f"lines.0.quantity: Input should be {reason}",
        )
    ]


def bad_id(mix: Mix, data: st.DataObject) -> list[Case]:
    name = data.draw(st.sampled_from(["order_id", "customer_id", "line_id", "sku"]))
    problem = data.draw(st.sampled_from(["65 characters", "empty", "control character"]))
    if problem == "65 characters":
        value = data.draw(st.text(printable, min_size=65, max_size=65))
        reason = "String should have at most 64 characters"
    elif problem == "empty":
        value, reason = "", "String should have at least 1 character"
    else:
        control = data.draw(st.sampled_from(["\n", "\t", "\x00", "\x1b", "\x7f", "\x85", "\x9f"]))
        value, reason = "id" + control + "x", "String should match pattern"
    body = new_order(mix, data)
    key = body["order_id"]
    if name in ("line_id", "sku"):
        body["lines"][0][name] = value
        where = f"lines.0.{name}"
    else:
        body[name] = value
        where = name
    return [Case(f"{name} {problem}", "orders", key, encode(body), reason=f"{where}: {reason}")]


def naive_time(mix: Mix, data: st.DataObject) -> list[Case]:
    body = new_receipt(mix, data)
    body["occurred_at"] = data.draw(times).isoformat()  # RFC 3339 needs a zone
    return [
        Case(
            "time without zone",
            "receipts",
            body["sku"],
            encode(body),
            reason="occurred_at: Input should have timezone info",
        )
    ]


def lone_surrogate(mix: Mix, data: st.DataObject) -> list[Case]:
    body = new_order(mix, data)
    body["customer_id"] = "C-\ud800"  # valid JSON escape, not a Unicode string
    return [
        Case(
            "lone surrogate",
            "orders",
            body["order_id"],
            encode(body),
            reason="customer_id: Input should be a valid string",
        )
    ]


def duplicate_line_ids(mix: Mix, data: st.DataObject) -> list[Case]:
    body = new_order(mix, data, lines=2)
    body["lines"][1]["line_id"] = body["lines"][0]["line_id"]
    return [
        Case(
            "duplicate line ids",
            "orders",
            body["order_id"],
            encode(body),
            reason="line_id values must be unique",
        )
    ]


def conflicting_order(mix: Mix, data: st.DataObject) -> list[Case]:
    """An order id seen before with other lines: same key, so it arrives after the first."""
    pick = data.draw(st.integers(0, 2**16))
    earlier = [c for c in mix.good_orders() if c.kind.startswith("order")]
    if not earlier:
        return []
    first = earlier[pick % len(earlier)]
    assert first.body is not None
    body = {**first.body, "event_id": str(uuid.uuid4())}
    body["lines"] = [{**line, "quantity": line["quantity"] % 40 + 1} for line in body["lines"]]
    if body["lines"] == first.body["lines"]:
        body["lines"] = [*body["lines"], {"line_id": "extra", "sku": mix.skus[0], "quantity": 1}]
    return [
        Case(
            "conflicting order",
            "orders",
            first.key,
            encode(body),
            reason="already placed with other lines",
        )
    ]


def unknown_line_cancellation(mix: Mix, data: st.DataObject) -> list[Case]:
    pick = data.draw(st.integers(0, 2**16))
    occurred_at = when(data)
    earlier = mix.good_orders()
    if not earlier:
        return []
    target = earlier[pick % len(earlier)]
    assert target.body is not None
    body = {
        "type": "OrderCancelled",
        "event_id": str(uuid.uuid4()),
        "occurred_at": occurred_at,
        "order_id": target.body["order_id"],
        "lines": [{"line_id": "no-such-line"}],
    }
    return [
        Case("cancel unknown line", "cancellations", target.key, encode(body), reason="line(s)")
    ]


# The fields of the four version-2 inputs, with values of the wrong type for each.
WRONG_TYPES_V2: dict[tuple[str, str], list[Any]] = {
    ("policies", "backorders"): ["ALLOW", "maybe", None, 1, ["allow"]],
    ("policies", "limit"): ["5", 2.5, True, [5]],
    ("policies", "max_wait_days"): ["30", 1.5, True, {"days": 3}],
    ("inbound", "quantity"): ["5", 2.5, True, None],
    ("inbound", "expected_at"): ["tomorrow", 1_700_000_000, None, "2026-02-30T00:00:00Z"],
    ("shipments", "lines.0.quantity"): ["1", 1.5, True, None],
    ("shipments", "lines"): ["1 x 2", {"line_id": "1"}, None, 3],
    ("clock", "occurred_at"): [1_700_000_000, "yesterday", None, "2026-13-01T00:00:00Z", True],
}


def _put(body: dict[str, Any], where: str, value: Any) -> None:
    """Sets a field by its dotted path (lines.0.quantity)."""
    *path, last = where.split(".")
    target: Any = body
    for step in path:
        target = target[int(step)] if step.isdigit() else target[step]
    target[last] = value


def wrong_type_v2(mix: Mix, data: st.DataObject) -> list[Case]:
    role, where = data.draw(st.sampled_from(sorted(WRONG_TYPES_V2)))
    wrong = data.draw(st.sampled_from(WRONG_TYPES_V2[role, where]))
    body = new_body(role, mix, data)
    if where == "limit":  # read only with backorders limit
        body["backorders"] = "limit"
    _put(body, where, wrong)
    key = None if role == "clock" else str(body.get("order_id") or body.get("sku"))
    return [Case(f"{role} {where}={wrong!r}", role, key, encode(body), reason=f"{where}:")]


# Values past the version-2 limits: (role, field) -> (values, what the error says).
OUT_OF_RANGE_V2: dict[tuple[str, str], list[tuple[int, str]]] = {
    ("policies", "max_wait_days"): [
        (0, "greater than or equal to 1"),
        (-5, "greater than or equal to 1"),
        (3651, "less than or equal to 3650"),
        (10**20, "less than or equal to 3650"),
    ],
    ("policies", "limit"): [
        (-1, "greater than or equal to 0"),
        (MAX_QUEUE_LIMIT + 1, f"less than or equal to {MAX_QUEUE_LIMIT}"),
    ],
    ("inbound", "quantity"): [
        (-1, "greater than or equal to 0"),
        (MAX_QUANTITY + 1, f"less than or equal to {MAX_QUANTITY}"),
    ],
    ("shipments", "lines.0.quantity"): [
        (0, "greater than or equal to 1"),
        (-3, "greater than or equal to 1"),
        (MAX_QUANTITY + 1, f"less than or equal to {MAX_QUANTITY}"),
    ],
}


def out_of_range_v2(mix: Mix, data: st.DataObject) -> list[Case]:
    role, where = data.draw(st.sampled_from(sorted(OUT_OF_RANGE_V2)))
    value, says = data.draw(st.sampled_from(OUT_OF_RANGE_V2[role, where]))
    body = new_body(role, mix, data)
    if where == "limit":  # read only with backorders limit
        body["backorders"] = "limit"
    _put(body, where, value)
    key = str(body.get("order_id") or body.get("sku"))
    reason = f"{where}: Input should be {says}"
    return [Case(f"{role} {where} {value}", role, key, encode(body), reason=reason)]


def bad_id_v2(mix: Mix, data: st.DataObject) -> list[Case]:
    role, where = data.draw(
        st.sampled_from(
            [
                ("shipments", "shipment_id"),
                ("shipments", "lines.0.line_id"),
                ("policies", "sku"),
                ("inbound", "inbound_id"),
                ("inbound", "sku"),
            ]
        )
    )
    problem = data.draw(st.sampled_from(["65 characters", "empty", "control character"]))
    if problem == "65 characters":
        value = data.draw(st.text(printable, min_size=65, max_size=65))
        says = "String should have at most 64 characters"
    elif problem == "empty":
        value, says = "", "String should have at least 1 character"
    else:
        value, says = "id\tx", "String should match pattern"
    body = new_body(role, mix, data)
    _put(body, where, value)
    key = mix.next_id("K")
    return [Case(f"{role} {where} {problem}", role, key, encode(body), reason=f"{where}: {says}")]


def limit_without_limit(mix: Mix, data: st.DataObject) -> list[Case]:
    body = new_policy(mix, data)
    body["backorders"] = "limit"
    body.pop("limit", None)
    if data.draw(st.booleans()):
        body["limit"] = None
    return [
        Case(
            "limit policy without a limit",
            "policies",
            body["sku"],
            encode(body),
            reason="`limit` is required when backorders is 'limit'",
        )
    ]


def tick_without_zone(mix: Mix, data: st.DataObject) -> list[Case]:
    body = new_tick(data)
    body["occurred_at"] = data.draw(times).isoformat()
    key = data.draw(st.none() | st.just(mix.next_id("K")))
    reason = "occurred_at: Input should have timezone info"
    return [Case("tick without a zone", "clock", key, encode(body), reason=reason)]


def shipment_refused_by_intake(mix: Mix, data: st.DataObject) -> list[Case]:
    """Well-formed, but refused: its order is unknown, or it names a line twice."""
    body = new_shipment(mix, data)
    if data.draw(st.booleans()):
        return [
            Case(
                "shipment for an unknown order",
                "shipments",
                body["order_id"],
                encode(body),
                reason="unknown_order",
            )
        ]
    body["lines"].append(dict(body["lines"][0]))
    reason = "line_id values must be unique"
    return [
        Case(
            "shipment naming a line twice",
            "shipments",
            body["order_id"],
            encode(body),
            reason=reason,
        )
    ]


GOOD = [
    *[good_order] * 4,
    *[good_receipt] * 2,
    *[good_cancellation] * 2,
    good_policy,
    *[good_inbound] * 2,
    good_tick,
]
BAD = [
    arbitrary_bytes,
    not_utf8,
    not_an_object,
    wrong_type,
    missing_field,
    unknown_type,
    out_of_range,
    bad_id,
    naive_time,
    lone_surrogate,
    duplicate_line_ids,
    conflicting_order,
    unknown_line_cancellation,
    wrong_type_v2,
    out_of_range_v2,
    bad_id_v2,
    limit_without_limit,
    tick_without_zone,
    shipment_refused_by_intake,
]


def fixed_cases(mix: Mix) -> list[Case]:
    """The boundaries the issue names, each on both sides, and redeliveries of good events."""
    cases: list[Case] = []

    def order_body(order_id: str, lines: list[tuple[str, str, int]]) -> dict[str, Any]:
        return {
            "type": "OrderPlaced",
            "event_id": str(uuid.uuid4()),
            "occurred_at": "2026-11-25T10:00:00+01:00",
            "order_id": order_id,
            "customer_id": "C-1",
            "lines": [{"line_id": i, "sku": s, "quantity": q} for i, s, q in lines],
        }

    def receipt_body(receipt_id: str, sku: str, quantity: int) -> dict[str, Any]:
        return {
            "type": "StockReceived",
            "event_id": str(uuid.uuid4()),
            "occurred_at": "2026-11-25T09:00:00Z",
            "receipt_id": receipt_id,
            "sku": sku,
            "quantity": quantity,
        }

    def good(kind: str, role: str, key: str | None, body: dict[str, Any]) -> Case:
        case = Case(kind, role, key, encode(body, ascii_only=False), body=body)
        cases.append(case)
        return case

    def bad(kind: str, role: str, key: str | None, value: bytes, reason: str) -> None:
        cases.append(Case(kind, role, key, value, reason=reason))

    sku, long_sku = mix.skus[0], mix.skus[-1]
    long_id = mix.next_id("O").ljust(64, "\u00e9")
    assert len(long_id) == len(long_sku) == 64
    boundary = order_body(long_id, [("1", sku, 1), ("2".ljust(64, "x"), long_sku, 1_000_000)])
    boundary["customer_id"] = "C".ljust(64, "\N{SNOWMAN}")
    first = good(
        "boundary order: quantities 1 and 1000000, 64-character ids", "orders", long_id, boundary
    )
    stock = good(
        "receipt of 1000000, 64-character receipt id",
        "receipts",
        long_sku,
        receipt_body(mix.next_id("R").ljust(64, "r"), long_sku, 1_000_000),
    )
    good("receipt of 1", "receipts", sku, receipt_body(mix.next_id("R"), sku, 1))

    too_long = mix.next_id("O").ljust(65, "\u00e9")
    for name, where in (
        ("order_id", "order_id"),
        ("customer_id", "customer_id"),
        ("line_id", "lines.0.line_id"),
        ("sku", "lines.0.sku"),
    ):
        body = order_body(mix.next_id("O"), [("1", sku, 1)])
        if name in ("line_id", "sku"):
            body["lines"][0][name] = too_long
        else:
            body[name] = too_long
        bad(
            f"65-character {name}",
            "orders",
            body["order_id"] if name != "order_id" else "k",
            encode(body),
            f"{where}: String should have at most 64 characters",
        )
    bad(
        "65-character receipt_id",
        "receipts",
        sku,
        encode(receipt_body(too_long, sku, 1)),
        "receipt_id: String should have at most 64",
    )
    for quantity, reason in (
        (0, "greater than or equal to 1"),
        (1_000_001, "less than or equal to 1000000"),
    ):
        body = order_body(mix.next_id("O"), [("1", sku, quantity)])
        bad(
            f"order quantity {quantity}",
            "orders",
            body["order_id"],
            encode(body),
            f"lines.0.quantity: Input should be {reason}",
        )
        bad(
            f"receipt quantity {quantity}",
            "receipts",
            sku,
            encode(receipt_body(mix.next_id("R"), sku, quantity)),
            f"quantity: Input should be {reason}",
        )

    many = order_body(mix.next_id("O"), [(str(n), mix.skus[n % 5], 1) for n in range(500)])
    good("order of 500 lines", "orders", many["order_id"], many)
    too_many = order_body(mix.next_id("O"), [(str(n), sku, 1) for n in range(501)])
    bad(
        "order of 501 lines",
        "orders",
        too_many["order_id"],
        encode(too_many),
        "lines: List should have at most 500 items",
    )
    no_lines = order_body(mix.next_id("O"), [])
    bad(
        "order of 0 lines",
        "orders",
        no_lines["order_id"],
        encode(no_lines),
        "lines: List should have at least 1 item",
    )

    # Exactly 1 MiB is allowed (padded with an unknown field); one byte more is not.
    padded = order_body(mix.next_id("O"), [("1", mix.skus[1], 2)])
    padded["padding"] = ""
    padded["padding"] = "p" * (MAX_MESSAGE_BYTES - len(encode(padded)))
    assert len(encode(padded)) == MAX_MESSAGE_BYTES
    good("order of exactly 1 MiB", "orders", padded["order_id"], padded)
    over = order_body(mix.next_id("O"), [("1", sku, 1)])
    over["padding"] = ""
    over["padding"] = "p" * (MAX_MESSAGE_BYTES + 1 - len(encode(over)))
    bad(
        "order of 1 MiB + 1 byte",
        "orders",
        over["order_id"],
        encode(over),
        f"value of {MAX_MESSAGE_BYTES + 1} bytes is over the 1 MiB limit",
    )
    big = receipt_body(mix.next_id("R"), sku, 1)
    big["padding"] = "\N{SNOWMAN}" * ((INPUT_MAX_BYTES - 8192) // 3)
    bad(
        "receipt of almost 2 MiB",
        "receipts",
        sku,
        encode(big, ascii_only=False),
        "over the 1 MiB limit",
    )

    # Our internal topic is written by intake's relay alone; anything else is refused there.
    # The forged receipt would show in the SKU's received stock if it were applied.
    forged = {
        "sku": sku,
        "position": 10**12,
        "commands": [
            {
                "type": "ReceiveStock",
                "causation_id": str(uuid.uuid4()),
                "occurred_at": "2026-11-25T09:00:00Z",
                "receipt_id": mix.next_id("R"),
                "quantity": 1000,
            }
        ],
    }
    for kind, value in (
        ("well-formed commands without the relay's mark", encode(forged)),
        ("bytes on sku-commands", b"\x00\xff{"),
    ):
        bad(f"{kind} (internal topic)", "sku_commands", sku, value, "not written by intake's relay")

    bad("empty value", "receipts", sku, b"", "value is not JSON")
    bad("non-UTF-8 bytes", "orders", "k", b"\xff\xfe\x00{", "value is not UTF-8 text")
    latin = order_body(mix.next_id("O"), [("1", sku, 1)])
    latin["customer_id"] = "Jos\u00e9"
    bad(
        "JSON in latin-1",
        "orders",
        latin["order_id"],
        json.dumps(latin, ensure_ascii=False).encode("latin-1"),
        "value is not UTF-8 text",
    )
    naive = order_body(mix.next_id("O"), [("1", sku, 1)])
    naive["occurred_at"] = "2026-11-25T10:00:00"
    bad(
        "RFC 3339 without a zone",
        "orders",
        naive["order_id"],
        encode(naive),
        "occurred_at: Input should have timezone info",
    )

    # Version 2's boundaries, each on both sides.
    def policy_body(**fields: Any) -> dict[str, Any]:
        return {
            "type": "BackorderPolicySet",
            "event_id": str(uuid.uuid4()),
            "occurred_at": "2026-11-25T09:00:00Z",
            "sku": mix.policy_skus[0],
            "backorders": "allow",
            **fields,
        }

    boundaries: list[dict[str, Any]] = [
        {"max_wait_days": 1},
        {"max_wait_days": 3650},
        {"max_wait_days": None},
        {"backorders": "limit", "limit": 0},
        {"backorders": "limit", "limit": MAX_QUEUE_LIMIT, "max_wait_days": 30},
        {"backorders": "deny", "limit": None},
    ]
    for fields in boundaries:
        body = policy_body(**fields)
        good(f"policy {fields}", "policies", body["sku"], body)
    for fields, says in (
        ({"max_wait_days": 0}, "max_wait_days: Input should be greater than or equal to 1"),
        ({"max_wait_days": 3651}, "max_wait_days: Input should be less than or equal to 3650"),
        ({"backorders": "limit", "limit": -1}, "limit: Input should be greater than or equal"),
        ({"backorders": "limit", "limit": MAX_QUEUE_LIMIT + 1}, "limit: Input should be less"),
        ({"backorders": "limit"}, "`limit` is required"),
    ):
        body = policy_body(**fields)
        bad(f"policy {fields}", "policies", body["sku"], encode(body), says)

    def inbound_body(inbound_id: str, quantity: int, **fields: Any) -> dict[str, Any]:
        return {
            "type": "InboundExpected",
            "event_id": str(uuid.uuid4()),
            "occurred_at": "2026-11-25T09:00:00Z",
            "inbound_id": inbound_id,
            "sku": sku,
            "quantity": quantity,
            "expected_at": "2026-12-01T00:00:00+01:00",
            **fields,
        }

    # 0 withdraws (here, an inbound never announced: nothing to withdraw, still applied).
    good("inbound of 0", "inbound", sku, inbound_body(mix.next_id("PO"), 0))
    good("inbound of 1000000", "inbound", sku, inbound_body(mix.next_id("PO"), MAX_QUANTITY))
    for quantity, says in ((-1, "greater than or equal to 0"), (MAX_QUANTITY + 1, "less than")):
        body = inbound_body(mix.next_id("PO"), quantity)
        bad(
            f"inbound of {quantity}",
            "inbound",
            sku,
            encode(body),
            f"quantity: Input should be {says}",
        )
    naive_date = inbound_body(mix.next_id("PO"), 5, expected_at="2026-12-01T00:00:00")
    bad(
        "inbound date without a zone",
        "inbound",
        sku,
        encode(naive_date),
        "expected_at: Input should have timezone info",
    )

    tick_at = {"type": "ClockTicked", "occurred_at": "2026-11-25T09:30:00Z"}
    good("tick", "clock", None, {**tick_at, "event_id": str(uuid.uuid4())})
    good("tick with a key", "clock", "some-key", {**tick_at, "event_id": str(uuid.uuid4())})
    no_time = {"type": "ClockTicked", "event_id": str(uuid.uuid4())}
    bad("tick without occurred_at", "clock", None, encode(no_time), "occurred_at: Field required")
    bad("keyed tick without occurred_at", "clock", "k", encode(no_time), "occurred_at: Field")
    bad("empty value", "clock", None, b"", "value is not JSON")

    # The same message again (a producer's retry) is applied once, and is no dead letter.
    cases.append(Case("redelivery", "orders", first.key, first.value, body=first.body))
    cases.append(Case("redelivery", "receipts", stock.key, stock.value, body=stock.body))
    # The same receipt id with another quantity is a conflict (same key: it comes second).
    assert stock.body is not None
    again = {**stock.body, "event_id": str(uuid.uuid4()), "quantity": 7}
    bad("conflicting receipt", "receipts", stock.key, encode(again), "was already recorded as")
    return cases


def draw_mix(tag: str) -> tuple[Mix, int]:
    """Hypothesis draws EXAMPLES batches; each adds some of every kind, in a drawn order."""
    mix = Mix(tag)
    examples = 0

    @seed(SEED)
    @hypothesis_settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(st.data())
    def example(data: st.DataObject) -> None:
        nonlocal examples
        mix.pending = []
        for make in data.draw(st.permutations(GOOD + BAD)):
            if data.draw(st.booleans()):
                mix.pending.extend(make(mix, data))
        mix.commit()
        examples += 1

    example()
    return mix, examples


def riffle(first: list[Case], second: list[Case], rng: Any) -> list[Case]:
    """Interleaves two sequences at random, keeping each one's own order."""
    merged, i, j = [], 0, 0
    while i < len(first) or j < len(second):
        take_first = j >= len(second) or (
            i < len(first) and rng.random() < len(first) / (len(first) + len(second))
        )
        if take_first:
            merged.append(first[i])
            i += 1
        else:
            merged.append(second[j])
            j += 1
    return merged


def _covered(decisions: list[dict[str, Any]], orders: list[Case]) -> dict[tuple[str, str], int]:
    taken: dict[tuple[str, str], int] = Counter()
    for decision in decisions:
        if decision["type"] in ("LineAllocated", "LineBackordered"):
            taken[decision["order_id"], decision["line_id"]] += decision["quantity"]
    return taken


def _all_placed(records: list[ConsumerRecord], orders: list[Case]) -> bool:
    taken = _covered(in_decision_order(records), orders)
    return all(
        taken[body["order_id"], line["line_id"]] == line["quantity"]
        for case in orders
        if (body := case.body) is not None
        for line in body["lines"]
    )


async def test_a_fuzzed_mix_dead_letters_every_bad_message_and_applies_every_good_one(
    kafka_bootstrap: str, database_url: str
) -> None:
    import random

    settings = isolated_settings(kafka_bootstrap, database_url)
    topics = settings.topics
    topic_of = {role: getattr(topics, role) for role in (*ROLES, "sku_commands")}
    mix, examples = draw_mix(uuid.uuid4().hex[:6])
    cases = riffle(mix.cases, fixed_cases(mix), random.Random(SEED))
    orders = [c for c in cases if c.good and c.role == "orders" and c.kind != "redelivery"]
    placed = [c for c in orders if c.cancelled is None]
    assert placed, f"seed {SEED}: no order left uncancelled"

    async with running(settings) as service:
        await publish(settings, [(topic_of[c.role], c.key, c.value) for c in cases])
        await drained(settings)
        decided = await read_topic(
            settings, topics.decisions, until=lambda r: _all_placed(r, placed), timeout=120
        )
        second = second_phase(mix, cases, in_decision_order(decided))
        await publish(settings, [(topic_of[c.role], c.key, c.value) for c in second])
        cases += second
        roles = Counter(c.role for c in cases if c.good)
        assert all(roles[role] for role in ROLES), f"good messages per topic: {roles}"
        bad = [c for c in cases if not c.good]
        kinds = Counter(c.kind.split(" ")[0] for c in bad)
        context = (
            f"seed {SEED}, {examples} examples, {len(cases)} messages ({len(bad)} bad): {kinds}"
        )
        assert examples >= EXAMPLES // 2, context
        assert len(bad) >= 40, context
        assert sum(len(c.ships) for c in second) >= 4, context + f"; shipped {second}"
        assert any(c.over for c in second), context + "; nothing over-shipped"
        where = await _positions(settings, topic_of, cases)
        await drained(settings)
        expected_letters = sum(case.letters for case in cases)
        letters = await read_topic(
            settings,
            topics.dead_letters,
            until=lambda r: len(r) >= expected_letters,
            timeout=120,
            to_end=True,
        )
        decided = await read_topic(
            settings, topics.decisions, until=lambda r: _all_placed(r, placed), to_end=True
        )
        problems = _check_dead_letters(letters, where)
        problems += _check_decisions(decided, orders, placed)
        problems += _check_shipments(in_decision_order(decided), cases)
        problems += await _check_cancellations(settings, orders)
        problems += await _check_receipts_and_liveness(settings, service, mix, cases)
        problems += await asyncio.to_thread(_check_policies_inbounds_and_ticks, settings, cases)
        task = _service_task(service)
        assert task is not None, "the service stopped"
        assert not task.done(), task

    assert not problems, context + "\n" + "\n".join(problems[:40])


def second_phase(mix: Mix, cases: list[Case], decisions: list[dict[str, Any]]) -> list[Case]:
    """Shipments from what the first phase left allocated (the decisions tell, once it
    drained), then receipts against the inbounds it left open."""
    return [
        *_shipments(mix, _shippable(cases, _holdings(decisions))),
        *_receipts_against_inbounds(mix, cases),
    ]


def _shippable(
    cases: list[Case], held: dict[tuple[str, str], tuple[int, int]]
) -> list[tuple[str, dict[str, int]]]:
    """Good orders left alone by cancellations, with their lines that hold allocated units
    and have nothing backordered: no receipt of the second phase can move what those hold
    before a shipment of them arrives."""
    found = []
    for case in cases:
        body = case.body
        if not (case.good and case.role == "orders" and case.kind.startswith("order")):
            continue
        if case.cancelled is not None or body is None:
            continue
        holding = {
            line["line_id"]: held[body["order_id"], line["line_id"]] for line in body["lines"]
        }
        ready = {
            i: allocated for i, (allocated, queued) in holding.items() if allocated and not queued
        }
        if ready:
            found.append((body["order_id"], ready))
    return found


def _shipments(mix: Mix, shippable: list[tuple[str, dict[str, int]]]) -> list[Case]:
    """All of a line; one unit; one more than a line holds (over_shipment, the shipment's
    other line applied); the same shipment again (as bytes, and as content under a new
    event id: no effect) and its id with other content (conflict); a line the order does
    not have (unknown_line); a quantity of 0."""
    out: list[Case] = []

    def shipment(order_id: str, lines: dict[str, int], kind: str = "shipment") -> Case:
        body = {
            "type": "ShipmentDispatched",
            "event_id": str(uuid.uuid4()),
            "occurred_at": "2026-11-26T08:00:00Z",
            "shipment_id": mix.next_id("SH"),
            "order_id": order_id,
            "lines": [{"line_id": i, "quantity": q} for i, q in lines.items()],
        }
        case = Case(kind, "shipments", order_id, encode(body), body=body)
        out.append(case)
        return case

    for n, (order_id, ready) in enumerate(shippable[:12]):
        first, *rest = sorted(ready)
        allocated = ready[first]
        others = [i for i in rest if ready[i] < MAX_QUANTITY]  # one more is still a quantity
        if n % 4 == 0:
            shipment(order_id, dict(ready), "shipment of all").ships = {
                i: (q, 0) for i, q in ready.items()
            }
        elif n % 4 == 1 and others:
            case = shipment(order_id, {first: 1, others[0]: ready[others[0]] + 1}, "over")
            case.ships, case.over = {first: (1, allocated - 1)}, [others[0]]
        elif n % 4 == 1:
            shipment(order_id, {first: 1}).ships = {first: (1, allocated - 1)}
            shipment(order_id, {first: allocated}, "over what is left").over = [first]
        elif n % 4 == 2:
            case = shipment(order_id, {first: 1})
            case.ships = {first: (1, allocated - 1)}
            assert case.body is not None
            out.append(Case("redelivery", "shipments", order_id, case.value, body=case.body))
            again = {**case.body, "event_id": str(uuid.uuid4())}
            out.append(Case("same shipment, new event id", "shipments", order_id, encode(again)))
            other = {**again, "event_id": str(uuid.uuid4())}
            other["lines"] = [{"line_id": first, "quantity": 2}]
            out.append(
                Case(
                    "conflicting shipment", "shipments", order_id, encode(other), reason="conflict"
                )
            )
        else:
            refused = shipment(order_id, {first: 1, "no-such-line": 1}, "unknown line")
            refused.reason = "unknown_line"
            shipment(order_id, {first: 1}).ships = {first: (1, allocated - 1)}
    if shippable:
        order_id, ready = shippable[0]
        refused = shipment(order_id, {sorted(ready)[0]: 0}, "shipment of 0")
        refused.reason = "lines.0.quantity: Input should be greater than or equal to 1"
    return out


def _receipts_against_inbounds(mix: Mix, cases: list[Case]) -> list[Case]:
    """Receipts that take part of what three open inbounds expect, and one that names an
    inbound its SKU never had (plain stock)."""
    out = []
    for (sku, inbound_id), (quantity, _) in sorted(_expected_inbounds(cases).items())[:3]:
        body = {
            "type": "StockReceived",
            "event_id": str(uuid.uuid4()),
            "occurred_at": "2026-11-26T09:00:00Z",
            "receipt_id": mix.next_id("R"),
            "sku": sku,
            "quantity": max(1, min(quantity - 1, 7)),
            "inbound_id": inbound_id,
        }
        out.append(Case("receipt against an inbound", "receipts", sku, encode(body), body=body))
    body = {
        "type": "StockReceived",
        "event_id": str(uuid.uuid4()),
        "occurred_at": "2026-11-26T09:00:00Z",
        "receipt_id": mix.next_id("R"),
        "sku": mix.skus[1],
        "quantity": 2,
        "inbound_id": "PO-that-never-was",
    }
    out.append(Case("receipt against no inbound", "receipts", mix.skus[1], encode(body), body=body))
    return out


def _holdings(decisions: list[dict[str, Any]]) -> dict[tuple[str, str], tuple[int, int]]:
    """(allocated, backordered) of each line, as the decisions add up."""
    moves = {
        "LineAllocated": (1, 0),
        "LineBackordered": (0, 1),
        "BackorderFilled": (1, -1),
        "AllocationReleased": (-1, 0),
        "BackorderCancelled": (0, -1),
        "LineShipped": (-1, 0),
    }
    held: dict[tuple[str, str], tuple[int, int]] = defaultdict(lambda: (0, 0))
    for decision in decisions:
        allocated, backordered = moves.get(decision["type"], (0, 0))
        key = (decision["order_id"], decision["line_id"])
        before = held[key]
        quantity = decision["quantity"]
        held[key] = (before[0] + allocated * quantity, before[1] + backordered * quantity)
    return held


def _expected_inbounds(cases: list[Case]) -> dict[tuple[str, str], tuple[int, datetime]]:
    """The open inbounds the good messages leave, in their order (a SKU's are on one
    partition): the last quantity and date of each, less what receipts against it took."""
    expected: dict[tuple[str, str], tuple[int, datetime]] = {}
    for case in cases:
        body = case.body
        if not case.good or body is None or case.kind == "redelivery":
            continue
        if case.role == "inbound":
            key = (body["sku"], body["inbound_id"])
            if body["quantity"]:
                expected[key] = (body["quantity"], datetime.fromisoformat(body["expected_at"]))
            else:
                expected.pop(key, None)
        elif case.role == "receipts" and body.get("inbound_id"):
            key = (body["sku"], body["inbound_id"])
            if key in expected:
                left = expected[key][0] - body["quantity"]
                if left > 0:
                    expected[key] = (left, expected[key][1])
                else:
                    del expected[key]
    return expected


async def _positions(
    settings: Settings, topic_of: dict[str, str], cases: list[Case]
) -> dict[tuple[str, int, int], Case]:
    """Where each message landed: reads the inputs back and matches on key and bytes."""
    where: dict[tuple[str, int, int], Case] = {}
    for role, topic in topic_of.items():
        sent = [c for c in cases if c.role == role]
        if not sent:
            continue
        waiting: dict[tuple[bytes | None, bytes], list[Case]] = defaultdict(list)
        for case in sent:
            waiting[_key_bytes(case.key), case.value].append(case)
        count = len(sent)

        def enough(records: list[ConsumerRecord], n: int = count) -> bool:
            return len(_sent_by_us(records)) >= n

        for record in _sent_by_us(await read_topic(settings, topic, until=enough)):
            where[topic, record.partition, record.offset] = waiting[record.key, record.value].pop(0)
    return where


def _key_bytes(key: str | None) -> bytes | None:
    return None if key is None else key.encode()


def _sent_by_us(records: list[ConsumerRecord]) -> list[ConsumerRecord]:
    """Leaves out what intake's relay wrote to sku-commands (it marks its messages)."""
    return [r for r in records if SOURCE_POSITION_HEADER not in dict(r.headers or ())]


def _check_dead_letters(
    letters: list[ConsumerRecord], where: dict[tuple[str, int, int], Case]
) -> list[str]:
    """Every bad message has exactly one dead letter, which says why; every line of a good
    shipment that over-ships has one (its payload that line alone); nothing else has any."""
    problems = []
    lettered: Counter[tuple[str, int, int]] = Counter()
    for record in letters:
        letter = json.loads(record.value)
        position = (letter["source_topic"], letter["partition"], letter["offset"])
        lettered[position] += 1
        found = where.get(position)
        if found is None:
            problems.append(f"dead letter for an unknown position {position}")
            continue
        case = found
        if record.key != _key_bytes(case.key):
            problems.append(f"dead letter key {record.key!r}: {case.show()}")
        if case.good and case.over:
            problems += _check_over_shipment(letter, case)
            continue
        if case.good:
            problems.append(f"good message dead-lettered ({letter['error']}): {case.show()}")
            continue
        if not letter["error"] or str(case.reason) not in letter["error"]:
            problems.append(
                f"dead letter says {letter['error']!r}, not {case.reason!r}: {case.show()}"
            )
        raw = (
            base64.b64decode(letter["payload"])
            if letter.get("payload_encoding") == "base64"
            else letter["payload"].encode()
        )
        if raw != case.value:
            problems.append(f"dead letter payload differs from what was sent: {case.show()}")
    for position, case in where.items():
        if lettered[position] != case.letters:
            problems.append(f"{lettered[position]} dead letters, not {case.letters}: {case.show()}")
    return problems


def _check_over_shipment(letter: dict[str, Any], case: Case) -> list[str]:
    """The letter of one refused line: reason over_shipment, its payload that line as a
    shipment of its own (the shipment's other lines were applied)."""
    assert case.body is not None
    refused = json.loads(letter["payload"])
    lines = refused.get("lines", [])
    asked = {line["line_id"]: line["quantity"] for line in case.body["lines"]}
    if not letter["error"].startswith("over_shipment:"):
        return [f"letter says {letter['error']!r}, not over_shipment: {case.show()}"]
    if (
        refused.get("shipment_id") != case.body["shipment_id"]
        or len(lines) != 1
        or lines[0]["line_id"] not in case.over
        or lines[0]["quantity"] != asked[lines[0]["line_id"]]
    ):
        return [f"over_shipment letter names {refused}: {case.show()}"]
    return []


def _check_shipments(decisions: list[dict[str, Any]], cases: list[Case]) -> list[str]:
    """Every line a good shipment ships has one LineShipped of its quantity, with what
    stays allocated; a line that over-ships, a duplicate or a refused shipment has none."""
    problems = []
    shipped: dict[tuple[str, str], list[tuple[int, int]]] = defaultdict(list)
    for decision in decisions:
        if decision["type"] == "LineShipped":
            key = (decision["shipment_id"], decision["line_id"])
            shipped[key].append((decision["quantity"], decision["remaining_allocated"]))
    expected: dict[tuple[str, str], list[tuple[int, int]]] = {}
    for case in cases:
        if case.body is not None and case.role == "shipments" and case.kind != "redelivery":
            for line_id, outcome in case.ships.items():
                expected[case.body["shipment_id"], line_id] = [outcome]
    for key in sorted(expected.keys() | shipped.keys()):
        if shipped.get(key, []) != expected.get(key, []):
            problems.append(
                f"shipment {key[0]} line {key[1]!r}: LineShipped (quantity, remaining) "
                f"{shipped.get(key, [])}, expected {expected.get(key, [])}"
            )
    return problems


def _check_policies_inbounds_and_ticks(settings: Settings, cases: list[Case]) -> list[str]:
    """The SKUs hold the last good policy each was given and the inbounds the good messages
    leave open; intake recorded every good tick (keyed or not)."""
    problems = []
    policies: dict[str, dict[str, Any]] = {}
    ticks: set[str] = set()
    for case in cases:
        body = case.body
        if not case.good or body is None:
            continue
        if case.role == "policies":
            backorders = body["backorders"]
            policies[body["sku"]] = {
                "backorders": backorders,
                "limit": body.get("limit") if backorders == "limit" else None,
                "max_wait_days": body.get("max_wait_days"),
            }
        elif case.role == "clock":
            ticks.add(body["event_id"])
    allocation = build_allocation(settings)
    for sku, policy in policies.items():
        found = allocation.find_sku(sku)
        if found is None or dict(found.policy or {}) != policy:
            problems.append(f"{sku} has policy {found and found.policy}, not {policy}")
    inbounds: dict[str, dict[str, tuple[int, datetime]]] = defaultdict(dict)
    for (sku, inbound_id), expected in _expected_inbounds(cases).items():
        inbounds[sku][inbound_id] = expected
    touched = {c.body["sku"] for c in cases if c.good and c.role == "inbound" and c.body}
    for sku in sorted(touched):
        found = allocation.find_sku(sku)
        held = {} if found is None else found.inbounds
        now = {i: (inbound["quantity"], inbound["expected_at"]) for i, inbound in held.items()}
        if now != inbounds.get(sku, {}):
            problems.append(f"{sku} expects {now}, not {inbounds.get(sku, {})}")
    intake = build_intake(settings)
    for event_id in sorted(ticks):
        if tick_aggregate_id(event_id) not in intake.repository:
            problems.append(f"tick {event_id} was not recorded")
    return problems


def _check_decisions(
    decided: list[ConsumerRecord], orders: list[Case], placed: list[Case]
) -> list[str]:
    """Every good order not cancelled was decided for all its quantity, keyed by order."""
    problems = []
    decisions = in_decision_order(decided)
    taken = _covered(decisions, placed)
    good_ids = {c.body["order_id"] for c in orders if c.body is not None}
    for record in decided:
        if record.key.decode() != json.loads(record.value)["order_id"]:
            problems.append(f"decision keyed {record.key!r}: {record.value[:200]!r}")
    for decision in decisions:
        if decision["order_id"] not in good_ids:
            problems.append(f"decision for an order that was not good: {decision}")
        if decision["type"] == "LineRejected":
            problems.append(f"rejected though backorders are allowed: {decision}")
    for case in placed:
        assert case.body is not None
        for line in case.body["lines"]:
            got = taken[case.body["order_id"], line["line_id"]]
            if got != line["quantity"]:
                problems.append(
                    f"line {line['line_id']!r} decided {got} of {line['quantity']}: {case.show()}"
                )
    return problems


async def _check_cancellations(settings: Settings, orders: list[Case]) -> list[str]:
    """Every good cancellation took what it asked for: the order's read model shows it."""
    problems = []
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{settings.http_port}") as api:
        for case in orders:
            if case.cancelled is None:
                continue
            assert case.body is not None
            expected = {
                line["line_id"]: (line["quantity"], case.cancelled[line["line_id"]])
                for line in case.body["lines"]
            }
            seen: Any = None
            for _ in range(100):
                answer = await api.get(f"/orders/{case.body['order_id']}")
                if answer.status_code == 200:
                    lines = answer.json()["lines"]
                    seen = {line["line_id"]: (line["ordered"], line["cancelled"]) for line in lines}
                    conserved = all(
                        line["allocated"]
                        + line["backordered"]
                        + line["cancelled"]
                        + line["rejected"]
                        == line["ordered"]
                        for line in lines
                    )
                    if seen == expected and conserved:
                        break
                await asyncio.sleep(0.1)
            else:
                problems.append(f"order shows {seen}, not {expected}: {case.show()}")
    return problems


async def _check_receipts_and_liveness(
    settings: Settings, service: Service, mix: Mix, cases: list[Case]
) -> list[str]:
    """Every good receipt was applied once (the SKU received exactly their sum), and the
    service still takes new input after the fuzz."""
    problems = []
    received: dict[str, int] = Counter()
    for case in cases:
        if case.good and case.role == "receipts" and case.kind != "redelivery":
            assert case.body is not None
            received[case.body["sku"]] += case.body["quantity"]
    allocation = await asyncio.to_thread(build_allocation, settings)
    found: dict[str, int] = {}
    for _ in range(100):
        allocation.forget_cached()
        for sku_id in received:
            aggregate = await asyncio.to_thread(allocation.find_sku, sku_id)
            found[sku_id] = 0 if aggregate is None else aggregate.received
        if found == received:
            break
        await asyncio.sleep(0.2)
    else:
        problems.append(f"SKUs received {found}, not {dict(received)}")

    assert _service_task(service) is not None, "the service stopped"
    last = {
        "type": "StockReceived",
        "event_id": str(uuid.uuid4()),
        "occurred_at": "2026-11-26T00:00:00Z",
        "receipt_id": mix.next_id("R"),
        "sku": "after-the-fuzz",
        "quantity": 1,
    }
    await publish(settings, [(settings.topics.receipts, "after-the-fuzz", encode(last))])
    for _ in range(100):
        allocation.forget_cached()
        if await asyncio.to_thread(allocation.find_sku, "after-the-fuzz") is not None:
            break
        await asyncio.sleep(0.2)
    else:
        problems.append("a receipt published after the fuzz was not applied")
    return problems


def _service_task(service: Service) -> asyncio.Task[Any] | None:
    """The task running `service.run()` (tests.harness.running keeps it to itself)."""
    for task in asyncio.all_tasks():
        frame = getattr(task.get_coro(), "cr_frame", None)
        if (
            frame is not None
            and frame.f_code.co_name == "run"
            and (frame.f_locals.get("self") is service)
        ):
            return task
    return None


# Intake's decoder, in-process: whatever the bytes, it returns an event or a reason; it never
# raises (a raise rolls the batch back and retries it forever: the partition stalls).


def _decode(topic: str, value: bytes) -> Any:
    settings = Settings(database_url="sqlite:///unused/fulfillment")
    handler = IntakeHandler(Intake(env={"PERSISTENCE_MODULE": "eventsourcing.popo"}), settings)
    return handler.decode(consumer_record(value, topic=topic))


def _receipt_with(**fields: Any) -> bytes:
    body = {
        "type": "StockReceived",
        "event_id": str(uuid.uuid4()),
        "occurred_at": "2026-11-25T10:00:00Z",
        "receipt_id": "R-1",
        "sku": "S-1",
        "quantity": 1,
    }
    return encode({**body, **fields})


@hypothesis_settings(max_examples=300, deadline=None, database=None)
@given(
    topic=st.sampled_from(["orders", "cancellations", "receipts"]),
    value=st.binary(max_size=200)
    | json_values.map(encode)
    | st.dictionaries(st.sampled_from(sorted(KNOWN_FIELDS)), json_values).map(encode)
    | st.builds(
        lambda at, quantity: _receipt_with(occurred_at=at, quantity=quantity),
        st.datetimes(timezones=st.just(UTC)).map(datetime.isoformat) | st.text(max_size=30),
        json_values,
    ),
)
def test_the_decoder_answers_every_input_without_raising(topic: str, value: bytes) -> None:
    decoded = _decode(topic, value)
    assert (decoded.event is None) != (decoded.error is None)
    if decoded.error is not None:
        assert decoded.error.strip()


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(b"[" * 5000 + b"]" * 5000, id="JSON nested 5000 deep (RecursionError)"),
        pytest.param(
            b'{"type": "StockReceived", "quantity": ' + b"9" * 5000 + b"}",
            id="integer of 5000 digits (ValueError: int max str digits)",
        ),
        pytest.param(
            _receipt_with(occurred_at="9999-12-31T23:59:59-14:00"),
            id="time past year 9999 in UTC (OverflowError)",
        ),
        pytest.param(
            _receipt_with(occurred_at="0001-01-01T00:00:00+14:00"),
            id="time before year 1 in UTC (OverflowError)",
        ),
    ],
)
def test_inputs_that_crash_the_decoder_are_refused_with_a_reason(value: bytes) -> None:
    decoded = _decode("receipts", value)
    assert decoded.event is None
    assert decoded.error
