"""The demo scenario: a popular SKU sells out, and the backorder queue does its job.

Each step is published and its decisions awaited before the next, because orders,
receipts and cancellations travel on different topics and would otherwise race.
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


@dataclass(frozen=True)
class Step:
    story: str
    topic: str
    key: str
    value: bytes
    expect_decisions: int = 0
    expect_dead_letters: int = 0
    # A receipt with nobody waiting decides nothing; the demo waits until intake has
    # recorded it (its message on sku-commands), since the next order must come after it.
    expect_recorded: bool = False


@dataclass
class Scenario:
    run_id: str
    sku: str
    steps: list[Step] = field(default_factory=list)
    position: int = 0  # where the allocation log was when the last decision was seen

    def order_id(self, n: int) -> str:
        return f"O-{self.run_id}-{n}"


def scenario(run_id: str, settings: Settings) -> Scenario:
    """About a dozen events that tell the story; ids carry the run id so runs never mix."""
    topics = settings.topics
    sku = f"TEE-RED-M-{run_id}"
    plan = Scenario(run_id=run_id, sku=sku)
    start = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)

    def event_id(name: str) -> str:
        return str(uuid.uuid5(DEMO_NAMESPACE, f"{run_id}:{name}"))

    def at(minutes: int) -> str:
        return (start + timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z")

    def order(n: int, customer: str, quantity: int, minutes: int, priority: int = 0) -> bytes:
        return json.dumps(
            {
                "type": "OrderPlaced",
                "event_id": event_id(f"order-{n}"),
                "occurred_at": at(minutes),
                "order_id": plan.order_id(n),
                "customer_id": customer,
                "priority": priority,
                "lines": [{"line_id": "1", "sku": sku, "quantity": quantity}],
            }
        ).encode()

    def receipt(n: int, quantity: int, minutes: int) -> bytes:
        return json.dumps(
            {
                "type": "StockReceived",
                "event_id": event_id(f"receipt-{n}"),
                "occurred_at": at(minutes),
                "receipt_id": f"R-{run_id}-{n}",
                "sku": sku,
                "quantity": quantity,
            }
        ).encode()

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
    cancel = json.dumps(
        {
            "type": "OrderCancelled",
            "event_id": event_id("cancel-1"),
            "occurred_at": at(90),
            "order_id": plan.order_id(1),
            "reason": "customer_request",
        }
    ).encode()
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
    return plan


@dataclass
class Observer:
    """What the demo shows as it goes; the CLI prints, tests collect."""

    on_step: Callable[[Step], None] | None = None
    on_decision: Callable[[dict[str, Any]], None] | None = None
    on_dead_letter: Callable[[dict[str, Any]], None] | None = None


@dataclass
class _Watch:
    """Reads the demo's own decisions and dead letters off the output topics."""

    plan: Scenario
    settings: Settings
    consumer: AIOKafkaConsumer
    observer: Observer
    decisions: list[dict[str, Any]] = field(default_factory=list)
    dead_letters: list[dict[str, Any]] = field(default_factory=list)
    position: int = 0  # the highest allocation-log position among the decisions seen
    recorded: int = 0  # intake's messages for the demo's SKU

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
        want_recorded = self.recorded + 1 if step.expect_recorded else 0
        async with asyncio.timeout(seconds):
            while (
                len(found) < step.expect_decisions
                or len(self.dead_letters) < want_dead
                or self.recorded < want_recorded
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
            if record.topic == topics.decisions and body.get("sku") == self.plan.sku:
                if body["decision_id"] not in known:  # a relay's resend is deduped here
                    found[body["decision_id"]] = (source_position(record) or 0, body)
            elif record.topic == topics.sku_commands and body.get("sku") == self.plan.sku:
                self.recorded += 1
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
            await producer.send_and_wait(step.topic, step.value, key=step.key.encode())
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
    """The SKU's queue and demand history from the HTTP API, as of the demo's last decision
    (`min_position`: the API waits until its read models have reached it)."""
    import httpx

    params = {"min_position": str(plan.position)}
    async with httpx.AsyncClient(base_url=api_url, timeout=15) as client:
        position = await client.get(f"/skus/{plan.sku}", params=params)
        queue = await client.get(f"/skus/{plan.sku}/backorders", params=params)
        demand = await client.get(f"/skus/{plan.sku}/demand", params=params)
        for answer in (position, queue, demand):
            answer.raise_for_status()
    return {"position": position.json(), "queue": queue.json(), "demand": demand.json()}
