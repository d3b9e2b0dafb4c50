"""Test helpers: isolated settings, the service in-process, publishing and reading topics."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import ConsumerRecord

from services.adapters.kafka import source_position
from services.adapters.settings import Settings, Topics
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
        TOPIC_SKU_COMMANDS=topics.sku_commands,
        TOPIC_DECISIONS=topics.decisions,
        TOPIC_DEAD_LETTERS=topics.dead_letters,
        TOPIC_DEMAND_HISTORY=topics.demand_history,
        TOPIC_BACKORDER_QUEUE=topics.backorder_queue,
        KAFKA_SESSION_TIMEOUT_MS=str(settings.kafka_session_timeout_ms),
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


def receipt(receipt_id: str, sku: str, quantity: int, *, minutes: float = 0) -> dict[str, Any]:
    return {
        "type": "StockReceived",
        "event_id": event_id(),
        "occurred_at": at(minutes),
        "receipt_id": receipt_id,
        "sku": sku,
        "quantity": quantity,
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


async def publish(settings: Settings, messages: Sequence[tuple[str, str, bytes]]) -> None:
    """(topic, key, value) in order; waits for every acknowledgement."""
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
                await producer.send(topic, value, key=key.encode())
                for topic, key, value in messages
            ]
            await asyncio.gather(*futures)
    finally:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(30):
                await producer.stop()


def as_json(body: dict[str, Any]) -> bytes:
    return json.dumps(body).encode()


async def read_topic(
    settings: Settings,
    topic: str,
    *,
    until: Callable[[list[ConsumerRecord]], bool],
    timeout: float = 60,
    settle: float = 0.0,
) -> list[ConsumerRecord]:
    """Everything on a topic from the start, until `until` holds (then `settle` s more)."""
    consumer = AIOKafkaConsumer(**settings.kafka_client_options(), enable_auto_commit=False)
    await consumer.start()
    records: list[ConsumerRecord] = []
    try:
        partitions: set[int] = set()
        for _ in range(100):
            partitions = consumer.partitions_for_topic(topic) or set()
            if partitions:
                break
            await consumer._client.force_metadata_update()
            await asyncio.sleep(0.1)
        assigned = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(assigned)
        await consumer.seek_to_beginning(*assigned)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        settle_until: float | None = None
        while loop.time() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for part in batch.values():
                records.extend(part)
            if settle_until is None and until(records):
                settle_until = loop.time() + settle
            if settle_until is not None and loop.time() >= settle_until:
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
