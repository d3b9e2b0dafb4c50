"""Seeded, deterministic workloads: the same flags give the same messages on every run."""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from events.commands import (
    CancelLine,
    ExpectInbound,
    PlaceLine,
    ReceiveStock,
    ShipLine,
    ShipmentSource,
    SkuCommands,
)
from services.kernel.positions import IntakePosition
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


# --- one SKU, command by command (hot_sku, eta) ------------------------------------------


class SkuScript:
    """One SKU's sku-commands messages in intake order, as the relay numbers them: each
    command its own intake notification, so positions only grow (IntakePosition).

    Ids and times are derived from the running count, so the same calls give the same
    messages on every run."""

    def __init__(self, sku: str, start: datetime = T0) -> None:
        self.sku = sku
        self.start = start
        self.messages: list[SkuCommands] = []
        self._notification = 0

    def _add(self, command: PlaceLine | ReceiveStock | ShipLine | ExpectInbound) -> None:
        self.messages.append(
            SkuCommands(
                sku=self.sku,
                position=IntakePosition(self._notification).message_position,
                commands=[command],
            )
        )

    def _cause(self) -> tuple[uuid.UUID, datetime]:
        """The next command's event id and business time (one second apart)."""
        self._notification += 1
        count = self._notification
        return uuid.uuid5(uuid.NAMESPACE_URL, f"bench:{self.sku}:{count}"), self.start + timedelta(
            seconds=count
        )

    def place(self, order_id: str, quantity: int = 1, priority: int = 0) -> None:
        causation_id, when = self._cause()
        self._add(
            PlaceLine(
                causation_id=causation_id,
                occurred_at=when,
                order_id=order_id,
                line_id="L1",
                line_index=0,
                customer_id=f"C-{self._notification % 97}",
                priority=priority,
                quantity=quantity,
            )
        )

    def receive(self, receipt_id: str, quantity: int, inbound_id: str | None = None) -> None:
        causation_id, when = self._cause()
        self._add(
            ReceiveStock(
                causation_id=causation_id,
                occurred_at=when,
                receipt_id=receipt_id,
                quantity=quantity,
                inbound_id=inbound_id,
            )
        )

    def ship(self, order_id: str, quantity: int = 1) -> None:
        causation_id, when = self._cause()
        self._add(
            ShipLine(
                causation_id=causation_id,
                occurred_at=when,
                shipment_id=f"S-{order_id}",
                order_id=order_id,
                line_id="L1",
                quantity=quantity,
                source=ShipmentSource(topic="shipments", partition=0, offset=self._notification),
            )
        )

    def expect(self, inbound_id: str, quantity: int, expected_at: datetime) -> None:
        causation_id, when = self._cause()
        self._add(
            ExpectInbound(
                causation_id=causation_id,
                occurred_at=when,
                inbound_id=inbound_id,
                quantity=quantity,
                expected_at=expected_at,
            )
        )

    def take(self) -> list[SkuCommands]:
        """The messages added since the last take."""
        taken, self.messages = self.messages, []
        return taken


def hot_sku_messages(
    lines: int, *, queued: int = 1_000, unshipped: int = 1_000, receipt_units: int = 10
) -> list[SkuCommands]:
    """One SKU's whole flow, `lines` one-unit order lines long: every line is backordered
    when placed (no stock is left available), filled by a receipt of `receipt_units` units
    once `queued` lines wait behind it, and shipped `unshipped` lines after that. So about
    `queued` lines are queued and `unshipped` allocated at any time, whatever `lines` is:
    everything before them is settled."""
    script = SkuScript("HOT")
    for n in range(1, lines + 1):
        script.place(f"O-{n}")
        if n % receipt_units == 0 and n >= queued + receipt_units:
            script.receive(f"R-{n}", receipt_units)  # fills the head: lines up to n - queued
        shipped = n - queued - unshipped
        if shipped >= 1:
            script.ship(f"O-{shipped}")
    return script.take()


ETA_PROBES = ("new_line", "priority_line", "receipt", "inbound_receipt")


@dataclass
class EtaWorkload:
    """A SKU with a long queue, its inbounds, and probe commands measured against it."""

    queue: list[SkuCommands]  # `lines` one-unit lines placed with no stock: all queued
    inbounds: list[SkuCommands]  # ExpectInbound: weekly, together covering half the queue
    probes: list[tuple[str, list[SkuCommands]]]  # (one of ETA_PROBES, its commands), in order


def eta_workload(lines: int, inbounds: int, per_probe: int, rounds: int = 1) -> EtaWorkload:
    """Probes, `per_probe` commands each, `rounds` times: a new line (joins the tail), a
    priority line (goes ahead of every ordinary line: every queued line moves back), a
    one-unit receipt (fills the head: every queued line moves forward) and a one-unit receipt
    against the earliest open inbound (the head and that inbound move together).

    Without the inbounds applied, the same messages apply: a receipt's inbound_id then names
    nothing and it is a plain receipt."""
    script = SkuScript("ETA")
    for n in range(lines):
        script.place(f"O-{n}")
    queue = script.take()
    size = max(1, lines // (2 * max(1, inbounds)))
    for number in range(inbounds):
        script.expect(f"IN-{number}", size, T0 + timedelta(days=7 * (number + 1)))
    expected = script.take()
    received_against = 0
    probes: list[tuple[str, list[SkuCommands]]] = []
    for round_ in range(rounds):
        for kind in ETA_PROBES:
            for n in range(per_probe):
                name = f"{kind}-{round_}-{n}"
                if kind == "new_line":
                    script.place(f"N-{name}")
                elif kind == "priority_line":
                    script.place(f"P-{name}", priority=1)
                elif kind == "receipt":
                    script.receive(f"R-{name}", 1)
                else:
                    earliest = min(received_against // size, max(0, inbounds - 1))
                    script.receive(f"R-{name}", 1, inbound_id=f"IN-{earliest}")
                    received_against += 1
            probes.append((kind, script.take()))
    return EtaWorkload(queue=queue, inbounds=expected, probes=probes)
