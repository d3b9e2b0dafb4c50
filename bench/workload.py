"""Seeded, deterministic workloads: the same flags give the same messages on every run."""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from events.commands import CancelLine, PlaceLine, ReceiveStock
from tests.harness import T0, cancellation, order, receipt

SkuCommand = PlaceLine | CancelLine | ReceiveStock


def sku_names(count: int) -> list[str]:
    return [f"SKU-{index:03d}" for index in range(count)]


def _uuid(rng: random.Random) -> uuid.UUID:
    return uuid.UUID(int=rng.getrandbits(128), version=4)


def sku_command_stream(
    commands: int, skus: int, seed: int = 1, supply: float = 0.5
) -> list[tuple[str, SkuCommand]]:
    """(sku, command) in intake order: ~75% PlaceLine, ~15% CancelLine, ~10% ReceiveStock.

    Receipts bring in about `supply` of the quantity ordered so far, so queues form, get
    filled and get cancelled from: every rule of the aggregate is exercised.
    """
    rng = random.Random(seed)
    names = sku_names(skus)
    placed: dict[str, list[tuple[str, str]]] = {name: [] for name in names}
    demand = dict.fromkeys(names, 0)
    stream: list[tuple[str, SkuCommand]] = []
    for index in range(commands):
        sku = rng.choice(names)
        when = T0 + timedelta(seconds=index)
        roll = rng.random()
        if roll < 0.10:
            quantity = max(1, int(demand[sku] * supply) or rng.randint(1, 5))
            demand[sku] = 0
            command: SkuCommand = ReceiveStock(
                causation_id=_uuid(rng),
                occurred_at=when,
                receipt_id=f"R-{index}",
                quantity=quantity,
            )
        elif roll < 0.25 and placed[sku]:
            order_id, line_id = rng.choice(placed[sku])
            command = CancelLine(
                causation_id=_uuid(rng),
                occurred_at=when,
                order_id=order_id,
                line_id=line_id,
                quantity=rng.choice([None, 1, 2]),
                reason="customer_request",
            )
        else:
            quantity = rng.randint(1, 5)
            demand[sku] += quantity
            order_id, line_id = f"O-{index}", "L1"
            placed[sku].append((order_id, line_id))
            command = PlaceLine(
                causation_id=_uuid(rng),
                occurred_at=when,
                order_id=order_id,
                line_id=line_id,
                line_index=0,
                customer_id=f"C-{rng.randint(1, 500)}",
                priority=1 if rng.random() < 0.1 else 0,
                quantity=quantity,
            )
        stream.append((sku, command))
    return stream


@dataclass
class Orders:
    """Input bodies as other services publish them (tests.harness builders)."""

    receipts: list[dict[str, Any]] = field(default_factory=list)
    orders: list[dict[str, Any]] = field(default_factory=list)
    cancellations: list[dict[str, Any]] = field(default_factory=list)

    @property
    def demand(self) -> int:
        return sum(line["quantity"] for body in self.orders for line in body["lines"])


def order_bodies(
    count: int,
    skus: int,
    *,
    seed: int = 2,
    supply: float = 0.5,
    cancel_fraction: float = 0.0,
    prefix: str = "O",
) -> Orders:
    """`count` one- or two-line orders over `skus` SKUs; one receipt per SKU covering
    `supply` of that SKU's demand; whole-order cancellations of `cancel_fraction` of them."""
    rng = random.Random(seed)
    names = sku_names(skus)
    result = Orders()
    demand = dict.fromkeys(names, 0)
    for index in range(count):
        chosen = rng.sample(names, 2 if rng.random() < 0.5 else 1)
        lines = [(f"L{n + 1}", sku, rng.randint(1, 5)) for n, sku in enumerate(chosen)]
        for _, sku, quantity in lines:
            demand[sku] += quantity
        result.orders.append(
            order(
                f"{prefix}-{index}",
                lines,
                minutes=index / 60,
                priority=1 if rng.random() < 0.1 else 0,
                customer_id=f"C-{rng.randint(1, 500)}",
                eid=str(_uuid(rng)),
            )
        )
    for sku in names:
        result.receipts.append(receipt(f"R-{prefix}-{sku}", sku, max(1, int(demand[sku] * supply))))
    for body in rng.sample(result.orders, int(count * cancel_fraction)):
        result.cancellations.append(cancellation(body["order_id"], minutes=count / 60))
    return result
