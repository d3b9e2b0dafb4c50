"""Seeded random histories of sku-commands, as intake's relay would number them."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from uuid import NAMESPACE_URL, uuid5

from events.commands import CancelLine, PlaceLine, ReceiveStock, SkuCommand, SkuCommands
from services.allocation.application import Allocation

START = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)


def random_history(
    seed: int, *, skus: int = 6, inputs: int = 300, prefix: str = ""
) -> list[SkuCommands]:
    """Receipts, orders of one to three SKUs and cancellations, over about three weeks."""
    rng = random.Random(seed)
    names = [f"SKU-{n}" for n in range(skus)]
    messages: list[SkuCommands] = []
    placed: list[tuple[str, list[tuple[str, str]]]] = []  # order id, [(line id, sku)]
    for n in range(1, inputs + 1):
        cause = uuid5(NAMESPACE_URL, f"history:{seed}:{n}")
        when = START + timedelta(minutes=n * 97 + rng.randint(0, 60))
        kind = rng.random()
        per_sku: dict[str, list[SkuCommand]] = {}
        if kind < 0.2:
            sku = rng.choice(names)
            per_sku[sku] = [
                ReceiveStock(
                    causation_id=cause,
                    occurred_at=when,
                    receipt_id=f"{prefix}R-{n}",
                    quantity=rng.randint(1, 12),
                )
            ]
        elif kind < 0.85 or not placed:
            order_id = f"{prefix}O-{n}"
            lines = []
            for index, sku in enumerate(rng.sample(names, rng.randint(1, 3))):
                line_id = str(index + 1)
                lines.append((line_id, sku))
                per_sku.setdefault(sku, []).append(
                    PlaceLine(
                        causation_id=cause,
                        occurred_at=when,
                        order_id=order_id,
                        line_id=line_id,
                        line_index=index,
                        customer_id=f"C-{n % 17}",
                        priority=rng.choice([0, 0, 0, 1, 5]),
                        quantity=rng.randint(1, 6),
                        cancelled_before_placement=rng.choice([0, 0, 0, 0, 1]),
                    )
                )
            placed.append((order_id, lines))
        else:
            order_id, lines = rng.choice(placed)
            for line_id, sku in rng.sample(lines, rng.randint(1, len(lines))):
                per_sku.setdefault(sku, []).append(
                    CancelLine(
                        causation_id=cause,
                        occurred_at=when,
                        order_id=order_id,
                        line_id=line_id,
                        quantity=rng.choice([None, 1, 2]),
                    )
                )
        for index, (sku, commands) in enumerate(per_sku.items()):
            messages.append(SkuCommands(sku=sku, position=n * 1000 + index, commands=commands))
    return messages


def sku_states(allocation: Allocation, skus: list[str]) -> dict[str, tuple[object, ...]]:
    """What decides the next decision of each SKU: stock, lines and queue."""
    states: dict[str, tuple[object, ...]] = {}
    for name in skus:
        sku = allocation.find_sku(name)
        assert sku is not None, f"{name} was never recorded"
        states[name] = (sku.available, sku.lines, sku.queue)
    return states
