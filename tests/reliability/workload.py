"""Seeded random input histories at the contract's level: the bytes other services publish."""

from __future__ import annotations

import json
import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

START = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
MINUTES_PER_ORDER = 7  # business time between two orders of the workload
TICK_EVERY = 25  # orders between two clock ticks

# The input topics, by the `Topics` field that names each one.
KINDS = ("orders", "cancellations", "receipts", "shipments", "policies", "inbound", "clock")

Message = tuple[str, str | None, bytes]


@dataclass
class Workload:
    """Messages as (kind, key, value): kind is one of KINDS, key None on the clock topic.

    A shipment is keyed by the order it ships from; `unplaced` holds the keys of shipments
    that name no order any OrderPlaced has (refused whatever intake has seen: unknown_order,
    or malformed)."""

    seed: int
    messages: list[Message] = field(default_factory=list)
    duplicates: int = 0
    bad: int = 0
    unplaced: set[str] = field(default_factory=set)

    def count(self, kind: str) -> int:
        return sum(1 for k, _, _ in self.messages if k == kind)


def workload(
    seed: int,
    *,
    orders: int = 1000,
    skus: int = 20,
    duplicate_rate: float = 0.05,
    bad_rate: float = 0.01,
) -> Workload:
    """Orders of one to three lines over `skus` SKUs, receipts covering about 80% of the
    demand, cancellations of about one order in eight (some arriving before their order,
    some naming unknown lines), exact re-publications and malformed messages; and, mixed
    with them:

    - backorder policies for about 60% of the SKUs (allow, limit with a cap, deny; most
      with a `max_wait_days` of 1 to 3 days), each changed once or twice along the way;
    - inbounds (some late, some for two SKUs under one id), revised and withdrawn, and
      receipts that name them (or an inbound their SKU does not have);
    - shipments of a unit or two of lines placed a while before (likely allocated: those
      that are not are over_shipment dead letters), some shipping a line's rest; a few
      name an unknown order or line, or reuse a shipment id with other content;
    - clock ticks (no key) every TICK_EVERY orders at the business time reached, and one
      a day past the end, so that backorders past their SKU's `max_wait_days` expire."""
    writer = _Writer(seed, skus, duplicate_rate)
    rng = writer.rng
    changes: dict[int, list[str]] = {}
    for sku in [name for name in writer.names if rng.random() < 0.6]:
        writer.policy(sku, 0)
        for _ in range(rng.randint(1, 2)):
            when = rng.randint(orders // 5, max(orders // 5, orders * 9 // 10))
            changes.setdefault(when, []).append(sku)
    for n in range(orders):
        for sku in changes.get(n, []):
            writer.policy(sku, n)
        writer.order(n)
        if rng.random() < 0.25:
            writer.receipt(n)
        if rng.random() < 0.08:
            writer.inbound(n)
        if n > 15 and rng.random() < 0.2:
            writer.shipment(n)
        if rng.random() < 0.12:
            writer.cancellation(n)
        if n % TICK_EVERY == TICK_EVERY - 1:
            writer.tick(writer.now(n))
        if rng.random() < bad_rate:
            writer.malformed(n)
    writer.tick(writer.now(orders) + timedelta(days=1))
    return writer.out


@dataclass
class _Shipped:
    shipment_id: str
    order_id: str
    lines: list[dict[str, Any]]


class _Writer:
    """The workload's state as it is written: what was placed, shipped and expected."""

    def __init__(self, seed: int, skus: int, duplicate_rate: float) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.duplicate_rate = duplicate_rate
        self.names = [f"SKU-{seed}-{n:02d}" for n in range(skus)]
        self.out = Workload(seed=seed)
        self.demand = 0
        self.placed: list[tuple[str, dict[str, int]]] = []  # order id, ordered per line id
        self.shipped: dict[tuple[str, str], int] = {}  # what was shipped of each line
        self.shipments: list[_Shipped] = []
        self.inbounds: dict[str, dict[str, int]] = {name: {} for name in self.names}
        self.counters = {"inbound": 0, "shipment": 0, "ghost": 0}

    def event_id(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    @staticmethod
    def now(n: int) -> datetime:
        return START + timedelta(minutes=n * MINUTES_PER_ORDER)

    def at(self, n: int) -> str:
        return (self.now(n) + timedelta(minutes=self.rng.randint(0, 5))).isoformat()

    def emit(self, kind: str, key: str | None, body: dict[str, Any] | bytes) -> None:
        value = body if isinstance(body, bytes) else json.dumps(body).encode()
        messages = self.out.messages
        messages.append((kind, key, value))
        if self.rng.random() < self.duplicate_rate:  # the same bytes again, at a new offset
            self.out.duplicates += 1
            later = self.rng.randint(len(messages), len(messages) + 40)
            messages.insert(min(later, len(messages)), (kind, key, value))

    def order(self, n: int) -> None:
        rng = self.rng
        order_id = f"O-{self.seed}-{n}"
        quantities = [
            (str(i + 1), sku, rng.randint(1, 5))
            for i, sku in enumerate(rng.sample(self.names, rng.randint(1, 3)))
        ]
        self.demand += sum(q for _, _, q in quantities)
        if rng.random() < 0.02:  # its cancellation overtakes it
            self.emit("cancellations", order_id, self._cancel(order_id, n, None))
        body = {
            "type": "OrderPlaced",
            "event_id": self.event_id(),
            "occurred_at": self.at(n),
            "order_id": order_id,
            "customer_id": f"C-{rng.randint(1, 200)}",
            "priority": rng.choice([0, 0, 0, 0, 1, 5]),
            "lines": [{"line_id": i, "sku": sku, "quantity": q} for i, sku, q in quantities],
        }
        self.emit("orders", order_id, body)
        self.placed.append((order_id, {i: q for i, _, q in quantities}))

    def receipt(self, n: int) -> None:
        """About 80% of the demand in all; half of those for a SKU with inbounds name one."""
        rng = self.rng
        sku = rng.choice(self.names)
        quantity = max(1, int(self.demand * 0.8 / len(self.names) / 2) + rng.randint(0, 6))
        body: dict[str, Any] = {
            "type": "StockReceived",
            "event_id": self.event_id(),
            "occurred_at": self.at(n),
            "receipt_id": f"R-{self.seed}-{n}",
            "sku": sku,
            "quantity": quantity,
        }
        expected = self.inbounds[sku]
        draw = rng.random()
        if expected and draw < 0.5:
            inbound_id = rng.choice(sorted(expected))
            body["inbound_id"] = inbound_id
            expected[inbound_id] -= quantity
            if expected[inbound_id] <= 0:
                del expected[inbound_id]
        elif draw > 0.97:  # an inbound this SKU does not have: plain stock
            body["inbound_id"] = f"PO-{self.seed}-unknown"
        self.emit("receipts", sku, body)

    def cancellation(self, n: int) -> None:
        rng = self.rng
        target, ordered = rng.choice(self.placed)
        line_ids = sorted(ordered)
        chosen = None
        if rng.random() < 0.5:
            chosen = [
                {"line_id": line_id, "quantity": rng.randint(1, 3)}
                if rng.random() < 0.5
                else {"line_id": line_id}
                for line_id in rng.sample(line_ids, rng.randint(1, len(line_ids)))
            ]
            if rng.random() < 0.05:
                chosen.append({"line_id": "no-such-line"})
        self.emit("cancellations", target, self._cancel(target, n, chosen))

    def _cancel(self, order_id: str, n: int, lines: Any) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": "OrderCancelled",
            "event_id": self.event_id(),
            "occurred_at": self.at(n),
            "order_id": order_id,
            "reason": "customer_request",
        }
        if lines is not None:
            body["lines"] = lines
        return body

    def policy(self, sku: str, n: int) -> None:
        rng = self.rng
        backorders = rng.choice(["allow", "allow", "limit", "limit", "limit", "deny"])
        body: dict[str, Any] = {
            "type": "BackorderPolicySet",
            "event_id": self.event_id(),
            "occurred_at": self.at(n),
            "sku": sku,
            "backorders": backorders,
            "max_wait_days": rng.choice([None, 1, 2, 2, 3]),
        }
        if backorders == "limit":
            body["limit"] = rng.randint(4, 40)
        self.emit("policies", sku, body)

    def inbound(self, n: int) -> None:
        """A new inbound (one in five for two SKUs under one id), a revision or a withdrawal;
        its date up to a day late or six days ahead."""
        rng = self.rng
        sku = rng.choice(self.names)
        expected = self.inbounds[sku]
        draw = rng.random()
        if expected and draw < 0.3:
            inbound_id, quantity = rng.choice(sorted(expected)), rng.randint(5, 60)
        elif expected and draw < 0.45:
            inbound_id, quantity = rng.choice(sorted(expected)), 0
        else:
            self.counters["inbound"] += 1
            inbound_id = f"PO-{self.seed}-{self.counters['inbound']}"
            quantity = rng.randint(5, 60)
        expected_at = self.now(n) + timedelta(days=rng.uniform(-1.0, 6.0))
        targets = [sku]
        if quantity and inbound_id not in expected and rng.random() < 0.2:
            targets.append(rng.choice([name for name in self.names if name != sku]))
        for target in targets:
            body = {
                "type": "InboundExpected",
                "event_id": self.event_id(),
                "occurred_at": self.at(n),
                "inbound_id": inbound_id,
                "sku": target,
                "quantity": quantity,
                "expected_at": expected_at.isoformat(),
            }
            self.emit("inbound", target, body)
            if quantity:
                self.inbounds[target][inbound_id] = quantity
            else:
                self.inbounds[target].pop(inbound_id, None)

    def shipment(self, n: int) -> None:
        """Ships a unit or two (or the rest) of one or two lines of an order placed 15 to 150
        orders before, never more than the workload's own count says is left of a line."""
        rng = self.rng
        self.counters["shipment"] += 1
        shipment_id = f"SH-{self.seed}-{self.counters['shipment']}"
        draw = rng.random()
        lines: list[dict[str, Any]]
        if draw < 0.02:  # an order nobody placed: unknown_order
            self.counters["ghost"] += 1
            order_id = f"O-{self.seed}-ghost-{self.counters['ghost']}"
            self.out.unplaced.add(order_id)
            lines = [{"line_id": "1", "quantity": 1}]
        elif draw < 0.04 and self.shipments:  # a shipment id again, other content: conflict
            earlier = rng.choice(self.shipments)
            order_id, shipment_id = earlier.order_id, earlier.shipment_id
            lines = [{**line, "quantity": line["quantity"] + 1} for line in earlier.lines]
        else:
            recent = self.placed[max(0, len(self.placed) - 150) : len(self.placed) - 15]
            order_id, ordered = rng.choice(recent)
            left = {i: q - self.shipped.get((order_id, i), 0) for i, q in ordered.items()}
            open_lines = sorted(i for i, q in left.items() if q > 0)
            if not open_lines:
                return
            lines = [
                {"line_id": i, "quantity": min(left[i], rng.choice([1, 1, 2, left[i]]))}
                for i in rng.sample(open_lines, rng.randint(1, min(2, len(open_lines))))
            ]
            if draw < 0.06:  # a line the order does not have: unknown_line, all refused
                lines.append({"line_id": "no-such-line", "quantity": 1})
            else:
                self.shipments.append(_Shipped(shipment_id, order_id, lines))
                for line in lines:
                    key = (order_id, line["line_id"])
                    self.shipped[key] = self.shipped.get(key, 0) + line["quantity"]
        body = {
            "type": "ShipmentDispatched",
            "event_id": self.event_id(),
            "occurred_at": self.at(n),
            "shipment_id": shipment_id,
            "order_id": order_id,
            "lines": lines,
        }
        self.emit("shipments", order_id, body)

    def tick(self, when: datetime) -> None:
        body = {"type": "ClockTicked", "event_id": self.event_id(), "occurred_at": when.isoformat()}
        self.emit("clock", None, body)

    def malformed(self, n: int) -> None:
        self.out.bad += 1
        kind, value = self.rng.choice(_BAD)
        key = None if kind == "clock" else f"BAD-{self.seed}-{n}"
        if kind == "shipments":
            self.out.unplaced.add(f"BAD-{self.seed}-{n}")
        self.emit(kind, key, value)


def _bad(body: dict[str, Any]) -> bytes:
    return json.dumps(
        {"event_id": str(uuid.uuid4()), "occurred_at": START.isoformat(), **body}
    ).encode()


# Malformed messages, each on the topic it pretends to belong to.
_BAD: list[tuple[str, bytes]] = [
    ("orders", b"{not json"),
    ("orders", b"\xff\xfe\x00"),
    ("orders", b"[1, 2, 3]"),
    ("orders", json.dumps({"type": "OrderShipped", "event_id": str(uuid.uuid4())}).encode()),
    ("orders", json.dumps({"type": "OrderPlaced", "order_id": "x"}).encode()),
    (
        "shipments",
        _bad({"type": "ShipmentDispatched", "shipment_id": "S", "order_id": "O", "lines": []}),
    ),
    (
        "shipments",
        _bad(
            {
                "type": "ShipmentDispatched",
                "shipment_id": "S",
                "order_id": "O",
                "lines": [{"line_id": "1", "quantity": 0}],
            }
        ),
    ),
    ("policies", _bad({"type": "BackorderPolicySet", "sku": "S", "backorders": "limit"})),
    (
        "policies",
        _bad({"type": "BackorderPolicySet", "sku": "S", "backorders": "allow", "max_wait_days": 0}),
    ),
    (
        "inbound",
        _bad(
            {
                "type": "InboundExpected",
                "inbound_id": "PO",
                "sku": "S",
                "quantity": -1,
                "expected_at": START.isoformat(),
            }
        ),
    ),
    ("inbound", _bad({"type": "InboundExpected", "inbound_id": "PO", "sku": "S", "quantity": 1})),
    ("clock", json.dumps({"type": "ClockTicked", "event_id": str(uuid.uuid4())}).encode()),
    ("clock", b"tick"),
]
