"""The Kafka edge shared by the stages: topics, producers and the batch consumer loop.

We drive aiokafka directly rather than through faststream subscribers: exactly-once effect
needs per-partition batches, seeks from positions kept in the database, and a rebalance
listener that waits for the batch in flight; faststream's batch subscriber mixes
partitions in one batch and its ack policies commit offsets we must not trust.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import CommitFailedError, KafkaError, TopicAlreadyExistsError
from aiokafka.partitioner import murmur2
from aiokafka.structs import ConsumerRecord

from events.common import MAX_MESSAGE_BYTES
from services.adapters.logs import get_logger
from services.adapters.metrics import (
    BATCH_FAILURES,
    BATCH_SECONDS,
    CONSUMED,
    forget_consumer_lag,
    record_consumer_lag,
)
from services.adapters.retries import STARTUP, supervise
from services.adapters.settings import Settings
from services.kernel.dead_letters import Source

log = get_logger(__name__)

SOURCE_POSITION_HEADER = "source-position"
# The longest a consumer goes without committing Kafka's offsets (see _commit_offsets).
COMMIT_EVERY_SECONDS = 0.5
# Input topics we create accept up to 2 MiB, so that an oversize input reaches intake and is
# dead-lettered with a reason instead of failing in its producer; the DLQ has room for a
# dead letter that wraps such an input (base64 grows it by a third).
INPUT_MAX_BYTES = 2 * MAX_MESSAGE_BYTES
DEAD_LETTER_MAX_BYTES = 4 * MAX_MESSAGE_BYTES


class ConfigurationError(RuntimeError):
    """Misconfiguration the operator must fix; the message says how."""


async def ensure_topics(settings: Settings) -> dict[str, int]:
    """Creates missing topics; returns every topic's partition count."""
    topics = settings.topics
    wanted = {
        **dict.fromkeys(topics.inputs(), settings.topic_partitions),
        # Time is one ordered stream: intake records ticks in the order they were published.
        topics.clock: 1,
        topics.sku_commands: settings.sku_commands_partitions,
        topics.decisions: settings.topic_partitions,
        topics.dead_letters: settings.topic_partitions,
        topics.demand_history: settings.topic_partitions,
        topics.backorder_queue: settings.topic_partitions,
    }
    admin = AIOKafkaAdminClient(**settings.kafka_client_options(), request_timeout_ms=15000)
    try:
        await admin.start()
    except KafkaError as error:
        raise ConfigurationError(
            f"cannot reach Kafka at {settings.kafka_bootstrap_servers} ({error}); "
            "start it (make kafka) or set KAFKA_BOOTSTRAP_SERVERS"
        ) from error
    try:
        existing = set(await admin.list_topics())
        missing = [
            NewTopic(
                name=name,
                num_partitions=count,
                replication_factor=settings.topic_replication_factor,
                topic_configs=_topic_configs(settings, name),
            )
            for name, count in wanted.items()
            if name not in existing
        ]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(missing)
            log.info("topics created", topics=[topic.name for topic in missing])

        async def described() -> dict[str, int]:
            descriptions = await admin.describe_topics(list(wanted))
            counts = {d["topic"]: len(d["partitions"]) for d in descriptions}
            missing = [name for name in wanted if not counts.get(name)]
            if missing:  # a new topic's metadata can lag its creation
                raise _MetadataLagError(counts, missing)
            return counts

        try:
            return await STARTUP.call_async(_MetadataLagError, described)
        except _MetadataLagError as lag:
            # Still not described (a loaded broker): a topic this call created has the
            # count it was created with; one it did not, no count to go on from. A count
            # of 0 would be pinned for good (check_partition_count) and route nothing.
            created = {topic.name for topic in missing}
            unknown = [name for name in lag.missing if name not in created]
            if unknown:
                raise ConfigurationError(
                    f"Kafka at {settings.kafka_bootstrap_servers} does not describe "
                    f"{unknown}: is it healthy? The service starts again once it does"
                ) from lag
            return {**lag.counts, **{name: wanted[name] for name in lag.missing}}
    finally:
        await admin.close()


class _MetadataLagError(Exception):
    """Some topic has no partitions yet in the broker's answer: asked again (STARTUP)."""

    def __init__(self, counts: dict[str, int], missing: list[str]) -> None:
        super().__init__(f"no partitions yet for {missing}")
        self.counts = counts
        self.missing = missing


def _topic_configs(settings: Settings, name: str) -> dict[str, str]:
    topics = settings.topics
    if name == topics.dead_letters:
        return {"max.message.bytes": str(DEAD_LETTER_MAX_BYTES)}
    if name in topics.inputs():
        return {"max.message.bytes": str(INPUT_MAX_BYTES)}
    if name in (topics.demand_history, topics.backorder_queue):
        return {"cleanup.policy": "compact"}  # the latest row per key is what matters
    return {}


def check_partition_count(recorder: Any, topic: str, actual: int) -> int:
    """Pins the sku-commands partition count at its first value and returns it.

    SKUs are pinned to partitions by key, and the relay routes with the pinned count (see
    sku_partition), so partitions added later stay unused instead of moving SKUs away from
    their single writer. Fewer partitions than pinned means the topic was recreated: refused.
    The count is kept as a tracking row (forward-only by design, so it is written once).
    """
    name = f"partition-count:{topic}"
    from eventsourcing.persistence import IntegrityError, Tracking

    if actual < 1:  # never pinned: it would route every SKU nowhere, for good
        raise ConfigurationError(f"topic {topic!r} has no partitions in Kafka's answer")

    stored = recorder.max_tracking_id(name)
    if stored is None:
        try:
            recorder.insert_tracking(Tracking(name, actual))
            return actual
        except IntegrityError:
            # Processes of one service start together: another one pinned it meanwhile.
            stored = recorder.max_tracking_id(name)
            if stored is None:
                raise
    if actual < stored:
        raise ConfigurationError(
            f"topic {topic!r} has {actual} partitions but this store's positions were "
            f"recorded with {stored}: was it recreated? SKUs would move between partitions and "
            f"lose their single writer. Restore {stored} partitions (set "
            f"SKU_COMMANDS_PARTITIONS={stored} and recreate the topic), or rebuild the "
            "allocation store from intake's log."
        )
    if actual > stored:
        log.warning(
            "sku-commands has more partitions than pinned; the extra ones stay unused",
            topic=topic,
            partitions=actual,
            pinned=stored,
        )
    return int(stored)


@functools.lru_cache(maxsize=65536)
def sku_partition(sku: str, partitions: int) -> int:
    """The SKU's home partition: Kafka's default partitioner (murmur2 of the key) over the
    pinned count, never over the broker's current count, which an operator may raise."""
    index: int = (murmur2(sku.encode()) & 0x7FFFFFFF) % partitions
    return index


def make_producer(settings: Settings, **overrides: Any) -> AIOKafkaProducer:
    """Idempotent, fully acknowledged: a relay's resend can duplicate, never reorder."""
    options: dict[str, Any] = {
        **settings.kafka_client_options(),
        "acks": "all",
        "enable_idempotence": True,
        "linger_ms": 1,  # on the path of every order: batches form while a send is in flight
        "max_batch_size": 256 * 1024,
        "max_request_size": DEAD_LETTER_MAX_BYTES + 64 * 1024,
        "request_timeout_ms": 30000,
    }
    options.update(overrides)
    return AIOKafkaProducer(**options)


Batches = dict[TopicPartition, Sequence[ConsumerRecord]]


class BatchHandler(Protocol):
    """What a stage does with one fetch's batches; its methods run in a worker thread."""

    stage: str

    def assigned(self, partition: TopicPartition) -> int | None:
        """Reads the stage's position for a partition; returns the Kafka offset to resume
        from, or None to resume from Kafka's committed offset."""

    def handle(self, batches: Batches) -> None:
        """Applies every partition's batch and records their positions in one transaction."""

    def revoked(self, partitions: Sequence[TopicPartition]) -> None:
        """Forgets what it cached about partitions it no longer owns."""


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, loop: BatchConsumer) -> None:
        self.loop = loop

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        # Wait for the batch in flight: its commit must land before another owner starts.
        async with self.loop.batch_lock:
            for partition in revoked:
                self.loop.uncommitted.pop(partition, None)
                self.loop.forget_lag(partition)
            await asyncio.to_thread(self.loop.handler.revoked, sorted(revoked))
        log.info("partitions revoked", stage=self.loop.handler.stage, partitions=_names(revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        async with self.loop.batch_lock:
            await self.loop.resume(assigned)
        log.info("partitions assigned", stage=self.loop.handler.stage, partitions=_names(assigned))


class BatchRolledBackError(Exception):
    """A stage's batch failed and was rolled back; its partitions are read again after the
    retry policy's wait."""

    def __init__(self, partitions: Sequence[TopicPartition]) -> None:
        super().__init__(f"batches rolled back: {_names(set(partitions))}")
        self.partitions = list(partitions)


class BatchConsumer:
    """Takes whatever a fetch brought (every partition's batch), hands it to the stage as one
    unit, then commits the offset hints.

    No fixed wait: `getmany` returns as soon as records are there, and the next fetch forms
    while the stage commits the last one, so batches grow with the load by themselves."""

    def __init__(
        self,
        settings: Settings,
        topics: Sequence[str],
        group_id: str,
        handler: BatchHandler,
        *,
        consumer_options: dict[str, Any] | None = None,
        on_commit: Callable[[], None] | None = None,
    ) -> None:
        self.settings = settings
        self.topics = list(topics)
        self.handler = handler
        self.batch_lock = asyncio.Lock()
        self.stopping = asyncio.Event()
        self.group_id = group_id
        self.consumer_options = consumer_options or {}
        self.on_commit = on_commit  # wakes the relay that publishes what was just committed
        self.consumer: Any = None  # created in run(): nothing connects before it
        # Partitions whose batch rolled back, and the offset it started at (see _rewind).
        self.rewinds: dict[TopicPartition, int] = {}
        # Offsets applied but not yet committed to Kafka (see _commit_offsets).
        self.uncommitted: dict[TopicPartition, int] = {}
        self.committing: asyncio.Task[None] | None = None
        self.committed_at = 0.0
        # The lag last recorded per partition: a gauge is set only when its value changes.
        self.lags: dict[TopicPartition, int] = {}

    def _consumer(self) -> AIOKafkaConsumer:
        instance = self.settings.kafka_group_instance_id
        return AIOKafkaConsumer(
            group_instance_id=None if instance is None else f"{instance}-{self.handler.stage}",
            **self.settings.kafka_client_options(),
            group_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            max_partition_fetch_bytes=INPUT_MAX_BYTES + 64 * 1024,
            fetch_max_bytes=16 * MAX_MESSAGE_BYTES,
            session_timeout_ms=self.settings.kafka_session_timeout_ms,
            heartbeat_interval_ms=max(1000, self.settings.kafka_session_timeout_ms // 3),
            **self.consumer_options,
        )

    async def resume(self, partitions: set[TopicPartition]) -> None:
        for partition in sorted(partitions):
            offset = await asyncio.to_thread(self.handler.assigned, partition)
            if offset is not None:
                self.consumer.seek(partition, offset)

    async def run(self, ready: Callable[[], Awaitable[None]] | None = None) -> None:
        self.consumer = self._consumer()
        self.consumer.subscribe(self.topics, listener=_Rebalance(self))
        await self.consumer.start()
        if ready is not None:
            await ready()
        try:
            # A rolled-back batch is read again after the retry policy's wait, which grows
            # while batches keep failing (a store outage) and ends at once on stop().
            await supervise(self._poll, stopping=self.stopping, on=BatchRolledBackError)
        finally:
            if self.committing is not None:
                with contextlib.suppress(Exception):
                    await self.committing
            await self.consumer.stop()

    async def _poll(self) -> None:
        """One fetch, to the stage in one piece; BatchRolledBackError if it failed."""
        await self._rewind()
        fetched = await self.consumer.getmany(
            timeout_ms=self.settings.batch_timeout_ms * 5,
            max_records=self.settings.batch_max_records,
        )
        batches = {partition: records for partition, records in fetched.items() if records}
        if batches and not self.stopping.is_set():
            await self._handle(batches)
        self._record_lag()
        if self.rewinds:
            raise BatchRolledBackError(sorted(self.rewinds))

    def _record_lag(self) -> None:
        """After each fetch, how many records each partition it owns holds past where the stage
        reads next (fulfillment_consumer_lag): a lag that grows is a stage that cannot keep up.
        A batch that rolled back is read again from its start, so its lag counts from there."""
        for partition in self.consumer.assignment():
            lag = consumer_lag(self.consumer, partition, self.rewinds.get(partition))
            if lag is not None and self.lags.get(partition) != lag:
                self.lags[partition] = lag
                record_consumer_lag(self.handler.stage, partition.topic, partition.partition, lag)

    def forget_lag(self, partition: TopicPartition) -> None:
        """A partition revoked: its new owner reports its lag."""
        if self.lags.pop(partition, None) is not None:
            forget_consumer_lag(self.handler.stage, partition.topic, partition.partition)

    async def _rewind(self) -> None:
        """Before reading on after the wait: read again from the batch start, then from the
        position re-read from the store (the handler forgot it when its save failed)."""
        async with self.batch_lock:
            for partition, offset in sorted(self.rewinds.items()):
                if partition in self.consumer.assignment():  # else the new owner resumes it
                    self.consumer.seek(partition, offset)
                    try:
                        await self.resume({partition})
                    except Exception as error:  # the store is still down: wait, then again
                        log.warning(
                            "cannot re-read the stored position; retrying",
                            stage=self.handler.stage,
                            partition=f"{partition.topic}-{partition.partition}",
                            error=repr(error),
                        )
                        raise BatchRolledBackError([partition]) from error
                del self.rewinds[partition]

    async def _handle(self, batches: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        async with self.batch_lock:
            assignment = self.consumer.assignment()
            # A partition lost in a rebalance while the fetch waited: its new owner has it.
            batches = {p: records for p, records in batches.items() if p in assignment}
            if not batches:
                return
            for partition, records in batches.items():
                CONSUMED.labels(self.handler.stage, partition.topic).inc(len(records))
            try:
                with BATCH_SECONDS.labels(self.handler.stage).time():
                    await asyncio.to_thread(self.handler.handle, dict(batches))
            except Exception as error:
                BATCH_FAILURES.labels(self.handler.stage).inc()
                log.warning(
                    "batch rolled back; retrying from the stored position",
                    stage=self.handler.stage,
                    partitions=_names(set(batches)),
                    error=repr(error),
                )
                for partition, records in batches.items():
                    self.rewinds[partition] = records[0].offset  # _rewind, after the wait
                return
        if self.on_commit is not None:
            self.on_commit()
        self.uncommitted.update(
            {partition: records[-1].offset + 1 for partition, records in batches.items()}
        )
        if self.committing is None or self.committing.done():
            self.committing = asyncio.create_task(self._commit_offsets())

    async def _commit_offsets(self) -> None:
        """Commits Kafka's offsets, in the background and at most every COMMIT_EVERY_SECONDS:
        they are only a hint of where to start reading (the store holds the truth), so no
        batch waits for the round trip to the group coordinator."""
        await asyncio.sleep(max(0.0, self.committed_at + COMMIT_EVERY_SECONDS - time.monotonic()))
        offsets, self.uncommitted = self.uncommitted, {}
        self.committed_at = time.monotonic()
        assigned = self.consumer.assignment()
        offsets = {p: offset for p, offset in offsets.items() if p in assigned}
        if offsets:
            with contextlib.suppress(CommitFailedError, KafkaError):
                await self.consumer.commit(offsets)

    def stop(self) -> None:
        self.stopping.set()


def consumer_lag(
    consumer: AIOKafkaConsumer, partition: TopicPartition, reads_next: int | None = None
) -> int | None:
    """The partition's high watermark (as of the last fetch from it) minus the offset the
    consumer reads next (`reads_next`, or its position); None before any fetch from it."""
    highwater: int | None = consumer.highwater(partition)
    if highwater is None:
        return None
    if reads_next is None:
        # aiokafka's `position()` is a coroutine that may wait for a reset; its state says at
        # once, and says nothing while the position is unknown.
        state = consumer._subscription.subscription.assignment.state_value(partition)
        if state is None or not state.has_valid_position:
            return None
        reads_next = int(state.position)
    return max(0, highwater - reads_next)


def _names(partitions: set[TopicPartition]) -> list[str]:
    return [f"{p.topic}-{p.partition}" for p in sorted(partitions)]


def header(record: ConsumerRecord, name: str) -> bytes | None:
    """The value of a message's header, or None if it has none of that name."""
    for key, value in record.headers or ():
        if key == name:
            return bytes(value)
    return None


def source_position(record: ConsumerRecord) -> int | None:
    """The intake or allocation position a relay stamped on a message; None if unmarked."""
    mark = header(record, SOURCE_POSITION_HEADER)
    try:
        return None if mark is None else int(mark)
    except ValueError:
        return None


def tracking_name(topic: str, partition: int) -> str:
    """The name under which a consumer records how far it got in one topic partition."""
    return f"{topic}-{partition}"


async def partitions_of(
    consumer: AIOKafkaConsumer, topic: str, wait_seconds: float = 0
) -> set[int]:
    """The topic's partitions as the broker knows them now, waiting up to `wait_seconds` for
    the topic to appear; LookupError if it does not."""
    deadline = asyncio.get_running_loop().time() + wait_seconds
    while True:
        await consumer._client.force_metadata_update()
        found = consumer.partitions_for_topic(topic)
        if found:
            return set(found)
        if asyncio.get_running_loop().time() >= deadline:
            raise LookupError(f"topic {topic!r} does not exist: has the service run yet?")
        await asyncio.sleep(0.2)


def source_of(record: ConsumerRecord) -> Source:
    """The coordinates and original bytes of a message, for its dead letter."""
    value: bytes = record.value or b""
    try:
        payload, encoding = value.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        payload, encoding = base64.b64encode(value).decode("ascii"), "base64"
    key: bytes | None = record.key
    return Source(
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        key=None if key is None else key.decode("utf-8", errors="replace"),
        payload=payload,
        payload_encoding=encoding,
    )
