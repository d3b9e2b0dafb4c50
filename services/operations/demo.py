"""The demo scenario: a popular SKU sells out, and the backorder queue does its job; then the
rest of a backorder's life: a promised date, a revision that moves it, a shipment, a SKU
that takes no backorders (a lost sale), and a backorder that waits too long and expires.

Each step is published and its effect awaited before the next, because orders, receipts,
cancellations, shipments, policies, inbounds and ticks travel on different topics and
would otherwise race.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from services.adapters.kafka import partitions_of, source_position
from services.adapters.settings import Settings

DEMO_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:fulfillment:demo")
DAY = 24 * 60  # minutes


@dataclass(frozen=True)
class Step:
    story: str
    topic: str
    key: str | None  # None: a clock tick, which has no key
    value: bytes
    expect_decisions: int = 0
    expect_dead_letters: int = 0
    # An input that decides nothing (a receipt with nobody waiting, a policy) is awaited
    # until intake has recorded it (its command on sku-commands), since what comes next on
    # another topic must come after it.
    expect_recorded: bool = False

    @property
    def event_id(self) -> str | None:
        try:
            body = json.loads(self.value)
        except ValueError:
            return None
        return str(body["event_id"]) if isinstance(body, dict) and "event_id" in body else None


@dataclass
class Scenario:
    run_id: str
    sku: str  # the SKU whose story the demo reads back: queue, dates, demand
    limited_sku: str  # a limited edition that takes no backorders
    steps: list[Step] = field(default_factory=list)
    position: int = 0  # where the allocation log was when the last decision was seen

    @property
    def skus(self) -> tuple[str, str]:
        return (self.sku, self.limited_sku)

    def order_id(self, n: int) -> str:
        return f"O-{self.run_id}-{n}"


def scenario(run_id: str, settings: Settings) -> Scenario:
    """About twenty events that tell the story; ids carry the run id so runs never mix.

    Business times are fixed (the week of 2026-11-25), so the story, its dates and its
    demand history are the same at every run; its one clock tick is published by the demo.
    """
    topics = settings.topics
    sku = f"TEE-RED-M-{run_id}"
    mug = f"MUG-LTD-{run_id}"
    plan = Scenario(run_id=run_id, sku=sku, limited_sku=mug)
    start = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
    inbound_id = f"PO-{run_id}-1"

    def event_id(name: str) -> str:
        return str(uuid.uuid5(DEMO_NAMESPACE, f"{run_id}:{name}"))

    def at(minutes: int) -> str:
        return (start + timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z")

    def message(type_: str, name: str, minutes: int, **fields: Any) -> bytes:
        body = {"type": type_, "event_id": event_id(name), "occurred_at": at(minutes), **fields}
        return json.dumps(body).encode()

    def order(
        n: int, customer: str, quantity: int, minutes: int, *, priority: int = 0, item: str = sku
    ) -> bytes:
        return message(
            "OrderPlaced",
            f"order-{n}",
            minutes,
            order_id=plan.order_id(n),
            customer_id=customer,
            priority=priority,
            lines=[{"line_id": "1", "sku": item, "quantity": quantity}],
        )

    def receipt(n: int, quantity: int, minutes: int, item: str = sku) -> bytes:
        return message(
            "StockReceived",
            f"receipt-{n}",
            minutes,
            receipt_id=f"R-{run_id}-{n}",
            sku=item,
            quantity=quantity,
        )

    def policy(
        name: str, item: str, backorders: str, max_wait_days: int | None, minutes: int
    ) -> bytes:
        return message(
            "BackorderPolicySet",
            name,
            minutes,
            sku=item,
            backorders=backorders,
            limit=None,
            max_wait_days=max_wait_days,
        )

    add = plan.steps.append
    add(Step("5 units arrive", topics.receipts, sku, receipt(1, 5, 0), expect_recorded=True))
    add(Step("C-1 orders 2: allocated", topics.orders, plan.order_id(1), order(1, "C-1", 2, 5), 1))
    add(Step("C-2 orders 3: sold out", topics.orders, plan.order_id(2), order(2, "C-2", 3, 10), 1))
    add(
        Step(
            "C-3 orders 2: backordered", topics.orders, plan.order_id(3), order(3, "C-3", 2, 15), 1
        )
    )
    add(
        Step(
            "C-4 orders 1: queued behind",
            topics.orders,
            plan.order_id(4),
            order(4, "C-4", 1, 20),
            1,
        )
    )
    add(
        Step(
            "VIP C-5 orders 2 at priority 10: jumps the queue",
            topics.orders,
            plan.order_id(5),
            order(5, "C-5", 2, 25, priority=10),
            1,
        )
    )
    add(
        Step(
            "C-4's order published twice: ignored",
            topics.orders,
            plan.order_id(4),
            order(4, "C-4", 1, 20),
        )
    )
    add(
        Step(
            "a malformed message: dead-lettered",
            topics.orders,
            plan.order_id(99),
            b"{this is not json",
            expect_dead_letters=1,
        )
    )
    add(
        Step(
            "3 units arrive: the head first, one fill partial",
            topics.receipts,
            sku,
            receipt(2, 3, 60),
            2,
        )
    )
    cancel = message(
        "OrderCancelled", "cancel-1", 90, order_id=plan.order_id(1), reason="customer_request"
    )
    add(
        Step(
            "C-1 cancels: 2 units released fill the next backorders",
            topics.cancellations,
            plan.order_id(1),
            cancel,
            3,
        )
    )
    add(
        Step(
            "C-6 orders 2: nothing left, first in the queue for the next receipt",
            topics.orders,
            plan.order_id(6),
            order(6, "C-6", 2, 120),
            1,
        )
    )

    # The rest of a backorder's life: dates, shipments, a lost sale, an expiry.
    add(
        Step(
            f"{sku}'s policy: a backorder may wait 7 days at most",
            topics.policies,
            sku,
            policy("policy-1", sku, "allow", 7, 150),
            expect_recorded=True,
        )
    )
    expected = message(
        "InboundExpected",
        "inbound-1",
        180,
        inbound_id=inbound_id,
        sku=sku,
        quantity=4,
        expected_at=at(6 * DAY),
    )
    add(
        Step(
            f"{inbound_id} will bring 4 units on Dec 1: C-6's backorder gets a date",
            topics.inbound,
            sku,
            expected,
            1,
        )
    )
    add(
        Step(
            "two days later C-7 orders 1: backordered, with that date",
            topics.orders,
            plan.order_id(7),
            order(7, "C-7", 1, 2 * DAY + 60),
            1,
        )
    )
    revised = message(
        "InboundExpected",
        "inbound-1-revised",
        2 * DAY + 120,
        inbound_id=inbound_id,
        sku=sku,
        quantity=4,
        expected_at=at(9 * DAY),
    )
    add(
        Step(
            f"{inbound_id} slips to Dec 4: both waiting customers' dates move",
            topics.inbound,
            sku,
            revised,
            2,
        )
    )
    shipment = message(
        "ShipmentDispatched",
        "shipment-1",
        2 * DAY + 180,
        shipment_id=f"S-{run_id}-1",
        order_id=plan.order_id(2),
        lines=[{"line_id": "1", "quantity": 2}],
    )
    add(
        Step(
            "a shipment takes 2 of C-2's 3 units: 1 still to ship",
            topics.shipments,
            plan.order_id(2),
            shipment,
            1,
        )
    )
    add(
        Step(
            f"{mug} is a limited edition: backorders denied",
            topics.policies,
            mug,
            policy("policy-2", mug, "deny", None, 2 * DAY + 190),
            expect_recorded=True,
        )
    )
    add(
        Step(
            "2 mugs arrive, the last there will be",
            topics.receipts,
            mug,
            receipt(3, 2, 2 * DAY + 200, item=mug),
            expect_recorded=True,
        )
    )
    add(
        Step(
            "C-8 orders 3 mugs: 2 allocated, 1 rejected (a lost sale)",
            topics.orders,
            plan.order_id(8),
            order(8, "C-8", 3, 2 * DAY + 240, item=mug),
            2,
        )
    )
    tick = json.dumps(
        {"type": "ClockTicked", "event_id": event_id("tick-1"), "occurred_at": at(7 * DAY + 180)}
    ).encode()
    add(
        Step(
            "the clock says Dec 2 12:00: C-6 has waited past 7 days, its backorder expires",
            topics.clock,
            None,
            tick,
            1,
        )
    )
    return plan


@dataclass
class Observer:
    """What the demo shows as it goes; the CLI prints, tests collect."""

    on_step: Callable[[Step], None] | None = None
    on_decision: Callable[[dict[str, Any]], None] | None = None
    on_dead_letter: Callable[[dict[str, Any]], None] | None = None


@dataclass
class _Watch:
    """Reads the demo's own decisions, dead letters and recorded commands off the topics."""

    plan: Scenario
    settings: Settings
    consumer: AIOKafkaConsumer
    observer: Observer
    decisions: list[dict[str, Any]] = field(default_factory=list)
    dead_letters: list[dict[str, Any]] = field(default_factory=list)
    position: int = 0  # the highest allocation-log position among the decisions seen
    recorded: set[str] = field(default_factory=set)  # event ids intake turned into commands

    async def pin_start(self) -> None:
        topics = self.settings.topics
        partitions = [
            TopicPartition(topic, p)
            for topic in (topics.decisions, topics.dead_letters, topics.sku_commands)
            for p in await partitions_of(self.consumer, topic, wait_seconds=10)
        ]
        self.consumer.assign(partitions)
        await self.consumer.seek_to_end(*partitions)
        for partition in partitions:  # fix the start before anything is published
            await self.consumer.position(partition)

    async def step(self, step: Step, seconds: float) -> None:
        found: dict[str, tuple[int, dict[str, Any]]] = {}
        want_dead = len(self.dead_letters) + step.expect_dead_letters
        want_recorded = step.event_id if step.expect_recorded else None
        async with asyncio.timeout(seconds):
            while (
                len(found) < step.expect_decisions
                or len(self.dead_letters) < want_dead
                or (want_recorded is not None and want_recorded not in self.recorded)
            ):
                await self._poll(found)
        # Decisions for different orders travel on different partitions: put them back in
        # the order the service took them.
        for position, body in sorted(found.values(), key=lambda item: item[0]):
            self.position = max(self.position, position)
            self.decisions.append(body)
            if self.observer.on_decision:
                self.observer.on_decision(body)

    async def _poll(self, found: dict[str, tuple[int, dict[str, Any]]]) -> None:
        topics = self.settings.topics
        known = {d["decision_id"] for d in self.decisions}
        batch = await self.consumer.getmany(timeout_ms=200)
        for record in (record for records in batch.values() for record in records):
            body = json.loads(record.value)
            if record.topic == topics.decisions and body.get("sku") in self.plan.skus:
                if body["decision_id"] not in known:  # a relay's resend is deduped here
                    found[body["decision_id"]] = (source_position(record) or 0, body)
            elif record.topic == topics.sku_commands and body.get("sku") in self.plan.skus:
                self.recorded.update(str(c["causation_id"]) for c in body["commands"])
            elif record.topic == topics.dead_letters and self.plan.run_id in (body["key"] or ""):
                self.dead_letters.append(body)
                if self.observer.on_dead_letter:
                    self.observer.on_dead_letter(body)


async def play(
    settings: Settings,
    run_id: str | None = None,
    *,
    observer: Observer | None = None,
    step_timeout: float = 60.0,
) -> tuple[Scenario, list[dict[str, Any]], list[dict[str, Any]]]:
    """Publishes the scenario step by step; returns the decisions and dead letters it got."""
    plan = scenario(run_id or uuid.uuid4().hex[:8], settings)
    observer = observer or Observer()
    options = settings.kafka_client_options()
    consumer = AIOKafkaConsumer(**options, enable_auto_commit=False)
    producer = AIOKafkaProducer(**options, acks="all", enable_idempotence=True)
    await consumer.start()
    await producer.start()
    watch = _Watch(plan, settings, consumer, observer)
    try:
        await watch.pin_start()
        for step in plan.steps:
            if observer.on_step:
                observer.on_step(step)
            key = None if step.key is None else step.key.encode()
            await producer.send_and_wait(step.topic, step.value, key=key)
            await watch.step(step, step_timeout)
        # Anything unexpected (say, from the duplicate) would show up now.
        await asyncio.sleep(1.0)
        extra: dict[str, tuple[int, dict[str, Any]]] = {}
        await watch._poll(extra)
        watch.decisions.extend(body for _, body in sorted(extra.values(), key=lambda i: i[0]))
    finally:
        await producer.stop()
        await consumer.stop()
    plan.position = watch.position
    return plan, watch.decisions, watch.dead_letters


async def read_back(settings: Settings, plan: Scenario, api_url: str) -> dict[str, Any]:
    """The SKU's position, queue (with its dates) and weekly demand history from the HTTP
    API, as of the demo's last decision (`min_position`: the API waits until its read
    models have reached it)."""
    import httpx

    params = {"min_position": str(plan.position)}
    async with httpx.AsyncClient(base_url=api_url, timeout=15) as client:
        position = await client.get(f"/skus/{plan.sku}", params=params)
        queue = await client.get(f"/skus/{plan.sku}/backorders", params=params)
        demand = await client.get(f"/skus/{plan.sku}/demand", params={**params, "bucket": "week"})
        for answer in (position, queue, demand):
            answer.raise_for_status()
    return {"position": position.json(), "queue": queue.json(), "demand": demand.json()}
