"""The whole service in-process on a real Kafka: orders in, decisions out.

Receipts go first (untimed; they also warm up the consumer groups). Then a burst of orders
measures throughput, and a paced stream measures latency below saturation. An order line is
"decided" once LineAllocated + LineBackordered (+ LineRejected) cover its quantity, whatever
order the partitions interleave in, so completion needs no guessing. Latency is the decision
record's timestamp minus its order record's timestamp (both CreateTime, same host clock).
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import ConsumerRecord

from bench.workload import order_bodies
from services.adapters.settings import Settings
from services.entrypoints.runner import Service
from tests.harness import isolated_settings, running

# The stages that turn orders into decisions; the others (read models, HTTP) can be added.
PIPELINE = ("intake", "allocation", "relay")
PLACEMENT_DECISIONS = {"LineAllocated", "LineBackordered", "LineRejected"}


@dataclass
class Phase:
    """The orders of one phase and what has been decided about them."""

    name: str
    orders: list[dict[str, Any]]
    outstanding: dict[str, dict[str, int]] = field(default_factory=dict)  # event_id: line: qty
    sent_ms: dict[str, int] = field(default_factory=dict)  # event_id: order record timestamp
    latencies_ms: list[int] = field(default_factory=list)
    decisions: int = 0
    open_orders: int = 0
    first_sent_ms: int | None = None
    last_decision_ms: int | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        for body in self.orders:
            self.outstanding[body["event_id"]] = {
                line["line_id"]: line["quantity"] for line in body["lines"]
            }
        self.open_orders = len(self.orders)

    def decided(self, body: dict[str, Any], record: ConsumerRecord) -> None:
        lines = self.outstanding.get(body["causation_id"])
        if lines is None:
            return
        self.decisions += 1
        sent = self.sent_ms.get(body["causation_id"])
        if sent is not None:
            self.latencies_ms.append(record.timestamp - sent)
        if body["type"] not in PLACEMENT_DECISIONS or body["line_id"] not in lines:
            return
        lines[body["line_id"]] -= body["quantity"]
        if lines[body["line_id"]] <= 0:
            del lines[body["line_id"]]
            if not lines:
                self.open_orders -= 1
                if self.open_orders == 0:
                    self.last_decision_ms = record.timestamp
                    self.done.set()

    def report(self, elapsed: float | None) -> dict[str, Any]:
        span_s = (
            (self.last_decision_ms - self.first_sent_ms) / 1000
            if self.last_decision_ms is not None and self.first_sent_ms is not None
            else None
        )
        result: dict[str, Any] = {
            "orders": len(self.orders),
            "lines": sum(len(body["lines"]) for body in self.orders),
            "decisions": self.decisions,
            "complete": self.done.is_set(),
            "undecided_orders": self.open_orders,
            "seconds": None if span_s is None else round(span_s, 3),
            "wall_seconds": None if elapsed is None else round(elapsed, 3),
        }
        if span_s:
            result["orders_per_s"] = round(len(self.orders) / span_s, 1)
            result["decisions_per_s"] = round(self.decisions / span_s, 1)
        if self.latencies_ms:
            ordered = sorted(self.latencies_ms)
            result["latency_ms"] = {
                "p50": _percentile(ordered, 50),
                "p90": _percentile(ordered, 90),
                "p99": _percentile(ordered, 99),
                "max": ordered[-1],
                "mean": round(statistics.mean(ordered), 1),
            }
        return result


def _percentile(ordered: Sequence[int], pct: float) -> int:
    index = min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


class DecisionWatch:
    """Reads the decisions topic from the start and hands each new decision to its phase."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.phases: list[Phase] = []
        self.seen: set[str] = set()
        self.duplicates = 0
        self.stopping = asyncio.Event()
        self.consumer = AIOKafkaConsumer(
            **settings.kafka_client_options(), enable_auto_commit=False
        )

    async def start(self) -> None:
        await self.consumer.start()
        topic = self.settings.topics.decisions
        partitions: set[int] = set()
        for _ in range(100):
            partitions = self.consumer.partitions_for_topic(topic) or set()
            if partitions:
                break
            await self.consumer._client.force_metadata_update()
            await asyncio.sleep(0.1)
        assigned = [TopicPartition(topic, p) for p in sorted(partitions)]
        self.consumer.assign(assigned)
        await self.consumer.seek_to_beginning(*assigned)

    async def run(self) -> None:
        while not self.stopping.is_set():
            batches = await self.consumer.getmany(timeout_ms=50, max_records=5000)
            for records in batches.values():
                for record in records:
                    body = json.loads(record.value)
                    if body["decision_id"] in self.seen:
                        self.duplicates += 1
                        continue
                    self.seen.add(body["decision_id"])
                    for phase in self.phases:
                        phase.decided(body, record)

    async def stop(self) -> None:
        self.stopping.set()
        await self.consumer.stop()


async def _send(
    producer: AIOKafkaProducer,
    topic: str,
    bodies: Sequence[dict[str, Any]],
    key: str,
    *,
    rate: float | None = None,
    phase: Phase | None = None,
) -> None:
    futures = []
    started = time.perf_counter()
    for n, body in enumerate(bodies):
        if rate:
            delay = started + n / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
        futures.append(
            (
                body["event_id"],
                await producer.send(topic, json.dumps(body).encode(), key=str(body[key]).encode()),
            )
        )
    for event_id, future in futures:
        metadata = await future
        if phase is not None:
            phase.sent_ms[event_id] = metadata.timestamp
            if phase.first_sent_ms is None or metadata.timestamp < phase.first_sent_ms:
                phase.first_sent_ms = metadata.timestamp


async def _wait_for_notifications(service: Service, count: int, limit_s: float) -> None:
    """Until allocation has recorded `count` events (the receipts and their Registered)."""
    assert service.allocation is not None
    recorder = service.allocation.recorder
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if (await asyncio.to_thread(recorder.max_notification_id) or 0) >= count:
            return
        await asyncio.sleep(0.05)
    raise TimeoutError(f"allocation did not record {count} events within {limit_s} s")


async def _run_phase(
    producer: AIOKafkaProducer,
    settings: Settings,
    watch: DecisionWatch,
    phase: Phase,
    *,
    limit_s: float,
    rate: float | None = None,
) -> dict[str, Any]:
    watch.phases.append(phase)
    started = time.perf_counter()
    await _send(producer, settings.topics.orders, phase.orders, "order_id", rate=rate, phase=phase)
    published = time.perf_counter() - started
    try:
        await asyncio.wait_for(phase.done.wait(), timeout=limit_s)
    except TimeoutError:
        print(f"  {phase.name}: timed out after {limit_s} s", file=sys.stderr)
    result = phase.report(time.perf_counter() - started)
    result["publish_seconds"] = round(published, 3)
    if rate:
        result["target_rate_per_s"] = rate
    return result


async def bench_end_to_end(
    bootstrap: str,
    database_url: str,
    *,
    orders: int,
    skus: int,
    paced_orders: int,
    paced_rate: float,
    limit_s: float,
    keep: bool,
    stages: Sequence[str] = PIPELINE,
) -> dict[str, Any]:
    # The service's own batching defaults, not the tests' quicker ones.
    defaults = Settings.model_fields
    settings = isolated_settings(
        bootstrap,
        database_url,
        batch_timeout_ms=defaults["batch_timeout_ms"].default,
        relay_idle_interval=defaults["relay_idle_interval"].default,
    )
    burst = order_bodies(orders, skus, seed=5, prefix="B")
    paced = order_bodies(paced_orders, skus, seed=6, prefix="P")
    result: dict[str, Any] = {
        "settings": {
            "batch_max_records": settings.batch_max_records,
            "batch_timeout_ms": settings.batch_timeout_ms,
            "relay_idle_interval_s": settings.relay_idle_interval,
            "topic_partitions": settings.topic_partitions,
            "sku_commands_partitions": settings.sku_commands_partitions,
        },
        "stages": list(stages),
        "skus": skus,
        "receipts_cover": "half of the burst's demand",
    }
    service: Service | None = None
    try:
        async with running(settings, stages) as service:
            producer = AIOKafkaProducer(
                **settings.kafka_client_options(), acks="all", enable_idempotence=True, linger_ms=5
            )
            await producer.start()
            watch = DecisionWatch(settings)
            await watch.start()
            reader = asyncio.create_task(watch.run())
            try:
                started = time.perf_counter()
                await _send(producer, settings.topics.receipts, burst.receipts, "sku")
                await _wait_for_notifications(service, 2 * len(burst.receipts), limit_s)
                result["warmup_seconds"] = round(time.perf_counter() - started, 3)
                print(f"  burst of {orders} orders", file=sys.stderr)
                result["burst"] = await _run_phase(
                    producer, settings, watch, Phase("burst", burst.orders), limit_s=limit_s
                )
                if paced_orders:
                    print(f"  {paced_orders} orders at {paced_rate}/s", file=sys.stderr)
                    result["paced"] = await _run_phase(
                        producer,
                        settings,
                        watch,
                        Phase("paced", paced.orders),
                        limit_s=limit_s,
                        rate=paced_rate,
                    )
                result["duplicate_decisions_seen"] = watch.duplicates
            finally:
                await watch.stop()
                reader.cancel()
                await asyncio.gather(reader, return_exceptions=True)
                await producer.stop()
    finally:
        if service is not None:
            for app in (service.intake, service.allocation):
                if app is not None:
                    app.close()
        if not keep:
            await _delete_topics(settings)
    return result


async def _delete_topics(settings: Settings) -> None:
    topics = settings.topics
    admin = AIOKafkaAdminClient(**settings.kafka_client_options(), request_timeout_ms=15000)
    try:
        await admin.start()
        await admin.delete_topics(
            [
                topics.orders,
                topics.cancellations,
                topics.receipts,
                topics.sku_commands,
                topics.decisions,
                topics.dead_letters,
            ]
        )
    except Exception as error:  # cleanup is best effort; the figures are already taken
        print(f"  could not delete topics: {error!r}", file=sys.stderr)
    finally:
        await admin.close()
