"""Test helpers: isolated settings, the service in-process, publishing and reading topics."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import ConsumerRecord

from services.adapters.kafka import partitions_of, source_position
from services.adapters.settings import Settings, Topics
from services.entrypoints.bootstrap import build_allocation, build_intake, build_read_models
from services.entrypoints.runner import STAGES, Service

T0 = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def isolated_settings(bootstrap: str, database_url: str, **overrides: Any) -> Settings:
    """Settings with topics and a consumer group no other test shares."""
    tag = uuid.uuid4().hex[:10]
    topics = Topics(
        orders=f"t{tag}.orders",
        cancellations=f"t{tag}.cancellations",
        receipts=f"t{tag}.receipts",
        shipments=f"t{tag}.shipments",
        policies=f"t{tag}.sku-policies",
        inbound=f"t{tag}.inbound",
        clock=f"t{tag}.clock",
        sku_commands=f"t{tag}.sku-commands",
        decisions=f"t{tag}.allocation-decisions",
        dead_letters=f"t{tag}.dlq",
        demand_history=f"t{tag}.demand-history",
        backorder_queue=f"t{tag}.backorder-queue",
    )
    options: dict[str, Any] = {
        "kafka_bootstrap_servers": bootstrap,
        "database_url": database_url,
        "topics": topics,
        "consumer_group": f"test-{tag}",
        "batch_timeout_ms": 20,
        "relay_idle_interval": 0.02,
        "http_host": "127.0.0.1",
        "http_port": free_port(),
        "clock_interval_seconds": 0,  # tests publish the ticks they want, at chosen times
    }
    options.update(overrides)
    return Settings(**options)


def environment(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment that gives a subprocess these settings."""
    topics = settings.topics
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TOPIC_", "FULFILLMENT_"))}
    env.update(
        KAFKA_BOOTSTRAP_SERVERS=settings.kafka_bootstrap_servers,
        DATABASE_URL=settings.database_url,
        CONSUMER_GROUP=settings.consumer_group,
        HTTP_HOST=settings.http_host,
        HTTP_PORT=str(settings.http_port),
        BATCH_TIMEOUT_MS=str(settings.batch_timeout_ms),
        RELAY_IDLE_INTERVAL=str(settings.relay_idle_interval),
        TOPIC_PARTITIONS=str(settings.topic_partitions),
        SKU_COMMANDS_PARTITIONS=str(settings.sku_commands_partitions),
        TOPIC_ORDERS=topics.orders,
        TOPIC_CANCELLATIONS=topics.cancellations,
        TOPIC_RECEIPTS=topics.receipts,
        TOPIC_SHIPMENTS=topics.shipments,
        TOPIC_POLICIES=topics.policies,
        TOPIC_INBOUND=topics.inbound,
        TOPIC_CLOCK=topics.clock,
        TOPIC_SKU_COMMANDS=topics.sku_commands,
        TOPIC_DECISIONS=topics.decisions,
        TOPIC_DEAD_LETTERS=topics.dead_letters,
        TOPIC_DEMAND_HISTORY=topics.demand_history,
        TOPIC_BACKORDER_QUEUE=topics.backorder_queue,
        KAFKA_SESSION_TIMEOUT_MS=str(settings.kafka_session_timeout_ms),
        CLOCK_INTERVAL_SECONDS=str(settings.clock_interval_seconds),
        LOG_LEVEL="INFO",
    )
    env.update(extra)
    return env


@contextlib.asynccontextmanager
async def running(settings: Settings, stages: Sequence[str] = STAGES) -> AsyncIterator[Service]:
    """The service, started in this event loop and stopped cleanly on exit."""
    service = Service(settings, stages)
    task = asyncio.create_task(service.run())
    started = asyncio.create_task(service.started.wait())
    done, _ = await asyncio.wait({task, started}, timeout=60, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        task.result()  # raises what made it stop
    assert started in done, "the service did not start within 60 s"
    try:
        yield service
    finally:
        service.stop()
        await asyncio.wait_for(task, timeout=60)


def event_id() -> str:
    return str(uuid.uuid4())


def at(minutes: float) -> str:
    return (T0 + timedelta(minutes=minutes)).isoformat()


def order(
    order_id: str,
    lines: Sequence[tuple[str, str, int]],
    *,
    minutes: float = 0,
    priority: int = 0,
    customer_id: str = "C-1",
    eid: str | None = None,
) -> dict[str, Any]:
    return {
        "type": "OrderPlaced",
        "event_id": eid or event_id(),
        "occurred_at": at(minutes),
        "order_id": order_id,
        "customer_id": customer_id,
        "priority": priority,
        "lines": [{"line_id": lid, "sku": sku, "quantity": qty} for lid, sku, qty in lines],
    }


def receipt(
    receipt_id: str,
    sku: str,
    quantity: int,
    *,
    minutes: float = 0,
    inbound_id: str | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": "StockReceived",
        "event_id": event_id(),
        "occurred_at": at(minutes),
        "receipt_id": receipt_id,
        "sku": sku,
        "quantity": quantity,
    }
    if inbound_id is not None:
        body["inbound_id"] = inbound_id
    return body


def shipment(
    shipment_id: str,
    order_id: str,
    lines: Sequence[tuple[str, int]],
    *,
    minutes: float = 0,
) -> dict[str, Any]:
    return {
        "type": "ShipmentDispatched",
        "event_id": event_id(),
        "occurred_at": at(minutes),
        "shipment_id": shipment_id,
        "order_id": order_id,
        "lines": [{"line_id": lid, "quantity": qty} for lid, qty in lines],
    }


def policy(
    sku: str,
    backorders: str,
    *,
    limit: int | None = None,
    max_wait_days: int | None = None,
    minutes: float = 0,
) -> dict[str, Any]:
    return {
        "type": "BackorderPolicySet",
        "event_id": event_id(),
        "occurred_at": at(minutes),
        "sku": sku,
        "backorders": backorders,
        "limit": limit,
        "max_wait_days": max_wait_days,
    }


def inbound(
    inbound_id: str, sku: str, quantity: int, *, days: float, minutes: float = 0
) -> dict[str, Any]:
    """Expected `days` after T0."""
    return {
        "type": "InboundExpected",
        "event_id": event_id(),
        "occurred_at": at(minutes),
        "inbound_id": inbound_id,
        "sku": sku,
        "quantity": quantity,
        "expected_at": (T0 + timedelta(days=days)).isoformat(),
    }


def tick(*, days: float) -> dict[str, Any]:
    """A clock tick `days` after T0."""
    return {
        "type": "ClockTicked",
        "event_id": event_id(),
        "occurred_at": (T0 + timedelta(days=days)).isoformat(),
    }


def cancellation(
    order_id: str, lines: Sequence[tuple[str, int | None]] | None = None, *, minutes: float = 0
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": "OrderCancelled",
        "event_id": event_id(),
        "occurred_at": at(minutes),
        "order_id": order_id,
        "reason": "customer_request",
    }
    if lines is not None:
        body["lines"] = [
            {"line_id": lid} if qty is None else {"line_id": lid, "quantity": qty}
            for lid, qty in lines
        ]
    return body


async def publish(settings: Settings, messages: Sequence[tuple[str, str | None, bytes]]) -> None:
    """(topic, key, value) in order (key None: none); waits for every acknowledgement."""
    producer = AIOKafkaProducer(
        **settings.kafka_client_options(),
        acks="all",
        enable_idempotence=True,
        max_request_size=4 * 1024 * 1024,
    )
    await producer.start()
    try:
        async with asyncio.timeout(60):  # a send stuck across a broker restart fails, not hangs
            futures = [
                await producer.send(topic, value, key=None if key is None else key.encode())
                for topic, key, value in messages
            ]
            await asyncio.gather(*futures)
    finally:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(30):
                await producer.stop()


async def until(
    holds: Callable[[], bool], *, what: str, timeout: float = 60, every: float = 0.2
) -> None:
    """Waits for an effect, checking `holds` (run in a thread: it may read a store) until it
    is true; fails with `what` after `timeout` s. Tests wait for effects, never for time."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await asyncio.to_thread(holds):
        if loop.time() >= deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        await asyncio.sleep(every)


def as_json(body: dict[str, Any]) -> bytes:
    return json.dumps(body).encode()


async def read_topic(
    settings: Settings,
    topic: str,
    *,
    until: Callable[[list[ConsumerRecord]], bool],
    timeout: float = 60,
    to_end: bool = False,
) -> list[ConsumerRecord]:
    """Everything on a topic from the start, until `until` holds; with `to_end`, then also
    everything up to the topic's end as it stands at that moment. After `drained`, that is
    all the service will publish: a test can assert that nothing more (no duplicate) came."""
    consumer = AIOKafkaConsumer(**settings.kafka_client_options(), enable_auto_commit=False)
    await consumer.start()
    records: list[ConsumerRecord] = []
    try:
        partitions = await partitions_of(consumer, topic, wait_seconds=10)
        assigned = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(assigned)
        await consumer.seek_to_beginning(*assigned)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        ends: dict[TopicPartition, int] | None = None
        while loop.time() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for part in batch.values():
                records.extend(part)
            if ends is None and until(records):
                if not to_end:
                    return records
                ends = await consumer.end_offsets(assigned)
            if ends is not None and all(
                [await consumer.position(tp) >= ends[tp] for tp in assigned]
            ):
                return records
        raise AssertionError(
            f"timed out after {timeout}s on {topic}: {len(records)} records so far"
        )
    finally:
        await consumer.stop()


def consumer_record(
    value: bytes | None,
    *,
    topic: str,
    key: bytes | None = b"k",
    partition: int = 0,
    offset: int = 0,
    headers: Sequence[tuple[str, bytes]] = (),
) -> ConsumerRecord:
    """A record as the consumer hands it to a stage's handler (for the edges' unit tests)."""
    return ConsumerRecord(
        topic=topic,
        partition=partition,
        offset=offset,
        timestamp=0,
        timestamp_type=0,
        key=key,
        value=value,
        checksum=None,
        serialized_key_size=len(key or b""),
        serialized_value_size=len(value or b""),
        headers=tuple(headers),
    )


def bodies(records: Sequence[ConsumerRecord]) -> list[dict[str, Any]]:
    return [json.loads(record.value) for record in records]


def position(record: ConsumerRecord) -> int:
    found = source_position(record)
    assert found is not None, "record has no source-position header"
    return found


def in_decision_order(records: Sequence[ConsumerRecord]) -> list[dict[str, Any]]:
    """Decisions across partitions, in the order the service took them, deduplicated."""
    seen: set[str] = set()
    ordered = []
    for record in sorted(records, key=position):
        body = json.loads(record.value)
        if body["decision_id"] not in seen:
            seen.add(body["decision_id"])
            ordered.append(body)
    return ordered


async def _last_positions(settings: Settings) -> tuple[dict[TopicPartition, int], dict[int, int]]:
    """End offsets of the input topics; the last position on each sku-commands partition."""
    consumer = AIOKafkaConsumer(**settings.kafka_client_options(), enable_auto_commit=False)
    await consumer.start()
    try:
        topics = settings.topics
        await consumer._client.force_metadata_update()
        inputs = [
            TopicPartition(topic, p)
            for topic in topics.inputs()
            for p in consumer.partitions_for_topic(topic) or ()
        ]
        commands = [
            TopicPartition(topics.sku_commands, p)
            for p in consumer.partitions_for_topic(topics.sku_commands) or ()
        ]
        ends = await consumer.end_offsets(inputs + commands)
        last: dict[int, int] = {}
        readable = [tp for tp in commands if ends[tp] > 0]
        if readable:
            consumer.assign(readable)
            for tp in readable:
                consumer.seek(tp, max(0, ends[tp] - 5))
            async with asyncio.timeout(60):  # fail, never hang, if a fetch gets stuck
                while not all([await consumer.position(tp) >= ends[tp] for tp in readable]):
                    batch = await consumer.getmany(timeout_ms=1000)
                    for tp, records in batch.items():
                        for record in records:
                            # Only what intake's relay wrote (marked) is owed to allocation.
                            position = source_position(record)
                            if position is not None:
                                last[tp.partition] = max(last.get(tp.partition, 0), position)
        return {tp: ends[tp] for tp in inputs}, last
    finally:
        await consumer.stop()


def _behind(settings: Settings, ends: dict[TopicPartition, int], last: dict[int, int]) -> list[str]:
    intake = build_intake(settings)
    allocation = build_allocation(settings)
    models = build_read_models(settings, allocation)
    behind = []
    for tp, end in ends.items():
        done = intake.process_recorder.max_tracking_id(f"{tp.topic}-{tp.partition}")
        if end and (done is None or done < end - 1):
            behind.append(f"intake {tp.topic}-{tp.partition}: {done} < {end - 1}")
    head = intake.recorder.max_notification_id() or 0
    relayed = intake.process_recorder.max_tracking_id(f"relay:{settings.topics.sku_commands}")
    if (relayed or 0) < head:
        behind.append(f"relay sku-commands: {relayed} < {head}")
    for partition, position in last.items():
        name = f"{settings.topics.sku_commands}-{partition}"
        done = allocation.process_recorder.max_tracking_id(name)
        if (done or 0) < position:
            behind.append(f"allocation {name}: {done} < {position}")
    allocation_head = allocation.recorder.max_notification_id() or 0
    decided = allocation.process_recorder.max_tracking_id(f"relay:{settings.topics.decisions}")
    if (decided or 0) < allocation_head:
        behind.append(f"relay decisions: {decided} < {allocation_head}")
    if models.position() < allocation_head:
        behind.append(f"read models: {models.position()} < {allocation_head}")
    models.store.close()
    return behind


async def drained(settings: Settings, timeout: float = 240) -> None:
    """Waits until every stage has applied everything published so far."""
    deadline = time.monotonic() + timeout
    behind: list[str] = ["not checked yet"]
    while time.monotonic() < deadline:
        ends, last = await _last_positions(settings)
        behind = await asyncio.to_thread(_behind, settings, ends, last)
        if not behind:
            # Once more: the relays may have published more commands meanwhile.
            ends, last = await _last_positions(settings)
            behind = await asyncio.to_thread(_behind, settings, ends, last)
            if not behind:
                return
        await asyncio.sleep(1.0)
    raise AssertionError(f"not drained after {timeout} s: {behind[:8]}")
