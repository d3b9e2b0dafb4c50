"""Seeded random input histories at the contract's level: the bytes other services publish."""

from __future__ import annotations

import json
import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

START = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)


@dataclass
class Workload:
    """Messages as (kind, key, value); kind is orders, cancellations or receipts."""

    seed: int
    messages: list[tuple[str, str, bytes]] = field(default_factory=list)
    duplicates: int = 0
    bad: int = 0

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
    some naming unknown lines), exact re-publications and malformed messages."""
    rng = random.Random(seed)
    names = [f"SKU-{seed}-{n:02d}" for n in range(skus)]
    out = Workload(seed=seed)
    placed: list[tuple[str, list[str]]] = []
    demand = 0

    def event_id() -> str:
        return str(uuid.UUID(int=rng.getrandbits(128), version=4))

    def at(n: int) -> str:
        return (START + timedelta(minutes=n * 7 + rng.randint(0, 5))).isoformat()

    def emit(kind: str, key: str, body: Any) -> None:
        value = body if isinstance(body, bytes) else json.dumps(body).encode()
        out.messages.append((kind, key, value))
        if rng.random() < duplicate_rate:  # the same bytes again, later: at a new offset
            out.duplicates += 1
            later = rng.randint(len(out.messages), len(out.messages) + 40)
            out.messages.insert(min(later, len(out.messages)), (kind, key, value))

    for n in range(orders):
        order_id = f"O-{seed}-{n}"
        quantities = [
            (str(i + 1), sku, rng.randint(1, 5))
            for i, sku in enumerate(rng.sample(names, rng.randint(1, 3)))
        ]
        lines = [{"line_id": i, "sku": sku, "quantity": q} for i, sku, q in quantities]
        demand += sum(q for _, _, q in quantities)
        if rng.random() < 0.02:  # its cancellation overtakes it
            emit("cancellations", order_id, _cancel(order_id, event_id(), at(n), None))
        emit(
            "orders",
            order_id,
            {
                "type": "OrderPlaced",
                "event_id": event_id(),
                "occurred_at": at(n),
                "order_id": order_id,
                "customer_id": f"C-{rng.randint(1, 200)}",
                "priority": rng.choice([0, 0, 0, 0, 1, 5]),
                "lines": lines,
            },
        )
        placed.append((order_id, [i for i, _, _ in quantities]))
        if rng.random() < 0.25:
            sku = rng.choice(names)
            quantity = max(1, int(demand * 0.8 / skus / 2) + rng.randint(0, 6))
            emit(
                "receipts",
                sku,
                {
                    "type": "StockReceived",
                    "event_id": event_id(),
                    "occurred_at": at(n),
                    "receipt_id": f"R-{seed}-{n}",
                    "sku": sku,
                    "quantity": quantity,
                },
            )
        if placed and rng.random() < 0.12:
            target, line_ids = rng.choice(placed)
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
            emit("cancellations", target, _cancel(target, event_id(), at(n), chosen))
        if rng.random() < bad_rate:
            out.bad += 1
            emit("orders", f"BAD-{seed}-{n}", rng.choice(_BAD))
    return out


def _cancel(order_id: str, eid: str, when: str, lines: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": "OrderCancelled",
        "event_id": eid,
        "occurred_at": when,
        "order_id": order_id,
        "reason": "customer_request",
    }
    if lines is not None:
        body["lines"] = lines
    return body


_BAD: list[bytes] = [
    b"{not json",
    b"\xff\xfe\x00",
    b"[1, 2, 3]",
    json.dumps({"type": "OrderShipped", "event_id": str(uuid.uuid4())}).encode(),
    json.dumps({"type": "OrderPlaced", "order_id": "x"}).encode(),
]
