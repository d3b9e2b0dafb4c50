"""Disaster recovery: the stores rebuilt from Kafka when the database is lost and the
topics are not (docs/operations.md, "A lost database").

Intake's store is rebuilt from the input topics, then allocation's from intake's log (as
allocation would have consumed it: each SKU on its partition, ticks on every one), then the
read models from allocation's log; the consumers' and relays' positions are set so that the
service, started again, goes on from where the topics are and publishes nothing twice that
the topics already hold.

**The order of the inputs.** What intake decided depends on the order it took inputs from
different topics (an order and a receipt for one SKU race on two topics), and Kafka keeps
only each partition's order. The topics intake wrote keep the rest: every sku-commands
message carries the intake position of the input behind it (its commands' causation ids are
the inputs' event ids), and every dead letter the position of the input it refused. Inputs
are replayed in that order; an input that left no trace there (an exact duplicate, a
cancellation kept for an order not seen yet) keeps its place after the input before it in
its own partition, which is where intake took it. Without sku-commands (its retention ran
out) the inputs are merged by their Kafka timestamps: the cross-topic order is then an
approximation, and the restore says so.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord
from eventsourcing.persistence import Tracking
from eventsourcing.utils import resolve_topic

from events.commands import SkuCommandsMessage, Tick
from events.inputs import (
    BackorderPolicySet,
    InboundExpected,
    OrderCancelled,
    OrderPlaced,
    ShipmentDispatched,
    StockReceived,
)
from projections.runner import AllocationLog, ReadModels
from services.adapters.kafka import (
    SOURCE_POSITION_HEADER,
    header,
    sku_partition,
    tracking_name,
)
from services.adapters.logs import get_logger
from services.adapters.settings import Settings
from services.allocation.application import Allocation
from services.intake.application import Input, Intake
from services.intake.consumer import IntakeHandler
from services.kernel.positions import PER_NOTIFICATION, IntakePosition
from services.operations.replay import DECISIONS, sku_commands_of

log = get_logger(__name__)

Progress = Callable[[str, int, int], None]  # phase, done, total
BATCH = 1_000  # inputs (or sku-commands messages) per transaction


class RestoreRefusedError(Exception):
    """The restore would not be safe: nothing was written."""


@dataclass
class RestoreReport:
    inputs: int = 0
    recorded: int = 0  # intake notifications after the restore
    ordered_by: str = "sku-commands"  # or "timestamps" (approximate)
    anchored: int = 0  # inputs whose intake position the topics told
    sku_partitions: int = 0
    sku_messages: int = 0
    decisions: int = 0
    decisions_on_topic: int = 0
    decisions_missing_from_topic: int = 0  # to be published when the service starts
    decisions_not_rederived: int = 0  # on the topic but not re-derived: should be 0
    read_model_position: int = 0
    notes: list[str] = field(default_factory=list)


# --- reading the topics -------------------------------------------------------------------


async def read_topics(settings: Settings, topics: Sequence[str]) -> dict[str, list[Any]]:
    """Every record of each topic, from its start to its end when asked (records published
    meanwhile are left for the service)."""
    consumer = AIOKafkaConsumer(
        **settings.kafka_client_options(),
        enable_auto_commit=False,
        isolation_level="read_committed",
        max_partition_fetch_bytes=8 * 1024 * 1024,
    )
    await consumer.start()
    found: dict[str, list[Any]] = {topic: [] for topic in topics}
    try:
        await consumer._client.force_metadata_update()
        partitions = [
            TopicPartition(topic, partition)
            for topic in topics
            for partition in sorted(consumer.partitions_for_topic(topic) or ())
        ]
        ends = await consumer.end_offsets(partitions) if partitions else {}
        wanted = [p for p in partitions if ends[p] > 0]
        if not wanted:
            return found
        consumer.assign(wanted)
        await consumer.seek_to_beginning(*wanted)
        # Done when every partition's position reaches its end offset when asked (robust to
        # offsets that hold no record: transaction markers, compaction).
        while True:
            batch = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            for partition, records in batch.items():
                end = ends[partition]
                found[partition.topic] += [r for r in records if r.offset < end]
            positions = [await consumer.position(p) for p in wanted]
            if all(at >= ends[p] for at, p in zip(positions, wanted, strict=True)):
                return found
    finally:
        await consumer.stop()


async def _topic_names(settings: Settings) -> set[str]:
    consumer = AIOKafkaConsumer(**settings.kafka_client_options())
    await consumer.start()
    try:
        return set(await consumer.topics())
    finally:
        await consumer.stop()


# --- the order intake took them in --------------------------------------------------------


@dataclass
class Anchors:
    """Intake positions the output topics tell, by input event id and by input coordinates."""

    by_event_id: dict[str, int] = field(default_factory=dict)
    by_source: dict[tuple[str, int, int], int] = field(default_factory=dict)
    sku_home: dict[str, int] = field(default_factory=dict)  # SKU -> its sku-commands partition

    def learn_sku_commands(self, records: Iterable[Any]) -> None:
        for record in records:
            try:
                body = json.loads(record.value)
            except (TypeError, ValueError):
                continue
            position = body.get("position")
            if not isinstance(position, int):
                continue
            notification = IntakePosition.of_message(position).notification_id
            causes = [c.get("causation_id") for c in body.get("commands", [])]
            if isinstance(body.get("tick"), dict):
                causes.append(body["tick"].get("causation_id"))
            elif isinstance(body.get("sku"), str):
                self.sku_home.setdefault(body["sku"], record.partition)
            for cause in causes:
                if isinstance(cause, str):
                    known = self.by_event_id.get(cause)
                    self.by_event_id[cause] = (
                        notification if known is None else min(known, notification)
                    )

    def learn_dead_letters(self, records: Iterable[Any], inputs: set[str]) -> None:
        """Intake's dead letters (of the input topics) and the position that refused each."""
        for record in records:
            position = header(record, SOURCE_POSITION_HEADER)
            try:
                body = json.loads(record.value)
                mark = int(position) if position is not None else None
            except (TypeError, ValueError):
                continue
            if mark is None or body.get("source_topic") not in inputs:
                continue
            self.by_source[(body["source_topic"], body["partition"], body["offset"])] = mark

    def position_of(self, record: Any, event_id: str | None) -> int | None:
        """The intake position of the input (`event_id`: its own, read once by the caller):
        where intake recorded the commands it caused, else where it recorded its refusal
        (allocation's dead letters of a shipment carry allocation's positions: the commands
        tell first)."""
        found = self.by_event_id.get(event_id) if event_id is not None else None
        if found is not None:
            return found
        return self.by_source.get((record.topic, record.partition, record.offset))


def in_intake_order(records: Iterable[Any], anchors: Anchors) -> tuple[list[Any], int]:
    """The inputs in the order intake took them (see the module's docstring); and how many
    of them the topics placed exactly. An input's place: its own intake position if known,
    else right after the input before it in its partition."""
    keyed: list[tuple[tuple[int, int, str, int, int], Any]] = []
    anchored = 0
    by_partition: dict[tuple[str, int], list[Any]] = {}
    for record in records:
        by_partition.setdefault((record.topic, record.partition), []).append(record)
    seen_ids: set[str] = set()
    for (topic, partition), items in by_partition.items():
        last = 0
        for record in sorted(items, key=lambda r: r.offset):
            event_id = _event_id(record)
            position = anchors.position_of(record, event_id)
            if position is not None and event_id is not None and event_id in seen_ids:
                position = None  # a re-publication: its first copy is the one intake recorded
            if position is not None and position < last:
                position = None  # never before an input intake took earlier in this partition
            if position is None:
                keyed.append(((last, 1, topic, partition, record.offset), record))
            else:
                anchored += 1
                last = max(last, position)
                keyed.append(((position, 0, topic, partition, record.offset), record))
            if event_id is not None:
                seen_ids.add(event_id)
    keyed.sort(key=lambda pair: pair[0])
    return [record for _, record in keyed], anchored


def by_timestamps(records: Iterable[Any]) -> list[Any]:
    return sorted(records, key=lambda r: (r.timestamp, r.topic, r.partition, r.offset))


def _event_id(record: Any) -> str | None:
    try:
        body = json.loads(record.value)
    except (TypeError, ValueError):
        return None
    found = body.get("event_id") if isinstance(body, dict) else None
    return found if isinstance(found, str) else None


def pinned_partitions(anchors: Anchors, topic_partitions: int) -> int:
    """The sku-commands partition count the lost stores had pinned: the least count that puts
    every SKU the topic saw on the partition it was on (partitions added later stay unused);
    the topic's count if the topic tells nothing."""
    if not anchors.sku_home:
        return topic_partitions
    for count in range(1, topic_partitions + 1):
        if all(sku_partition(sku, count) == p for sku, p in anchors.sku_home.items()):
            return count
    return topic_partitions


# --- rebuilding the stores ----------------------------------------------------------------


def restore_intake(
    intake: Intake,
    settings: Settings,
    records: Sequence[Any],
    progress: Progress | None = None,
) -> None:
    """The inputs recorded as intake's consumer records fetches: decoded, deduplicated,
    dead-lettered alike, with each partition's position.

    A transaction records its events aggregate by aggregate, so a batch never holds two
    inputs for one aggregate (an order and its cancellation): then the log's order is the
    inputs' order, which is the order intake's own log had (the anchors are its positions).
    """
    handler = IntakeHandler(intake, settings)
    batch: list[tuple[Any, Input]] = []
    touched: set[tuple[Any, ...]] = set()

    def flush() -> None:
        last: dict[tuple[str, int], int] = {}
        for record, _ in batch:
            key = (record.topic, record.partition)
            last[key] = max(last.get(key, -1), record.offset)
        intake.record_inputs(
            [decoded for _, decoded in batch],
            [Tracking(tracking_name(t, p), offset) for (t, p), offset in last.items()],
            failed_at=datetime.now(UTC),
            backorders_allowed=settings.backorders_allowed,
        )
        batch.clear()
        touched.clear()

    for done, record in enumerate(records, start=1):
        decoded = handler.decode(record)
        key = aggregate_of(decoded)
        if batch and (len(batch) >= BATCH or (key is not None and key in touched)):
            flush()
        batch.append((record, decoded))
        if key is not None:
            touched.add(key)
        if progress and done % BATCH == 0:
            progress("intake", done, len(records))
    if batch:
        flush()
    if progress:
        progress("intake", len(records), len(records))


def aggregate_of(decoded: Input) -> tuple[Any, ...] | None:
    """The intake aggregate an input writes (None: a refusal of its own)."""
    event = decoded.event
    if isinstance(event, OrderPlaced | OrderCancelled):
        return ("order", event.order_id)
    if isinstance(event, ShipmentDispatched):
        return ("shipment", event.shipment_id)
    if isinstance(event, StockReceived):
        return ("receipt", event.receipt_id)
    if isinstance(event, BackorderPolicySet):
        return ("policy", event.sku)
    if isinstance(event, InboundExpected):
        return ("inbound", event.sku, event.inbound_id)
    return None if event is None else (type(event).__name__, str(event.event_id))


def restore_allocation(
    intake: Intake,
    allocation: Allocation,
    topic: str,
    partitions: int,
    progress: Progress | None = None,
) -> int:
    """Intake's log applied as allocation consumes it: each SKU's messages on its
    partition, a tick on every partition, each partition with its own position (and its own
    deadlines index, as the running service keeps them). Returns the messages applied."""
    head = intake.recorder.max_notification_id() or 0
    pending: dict[int, list[SkuCommandsMessage]] = {}
    count = 0

    def flush() -> None:
        batches = [
            (Tracking(tracking_name(topic, p), max(m.position for m in ms)), ms)
            for p, ms in sorted(pending.items())
            if ms
        ]
        if batches:
            allocation.apply_batches(batches)
        pending.clear()

    for message in sku_commands_of(intake):
        homes = (
            range(partitions)
            if isinstance(message, Tick)
            else [sku_partition(message.sku, partitions)]
        )
        for home in homes:
            pending.setdefault(home, []).append(message)
        count += 1
        if count % BATCH == 0:
            flush()
            if progress:
                progress(
                    "allocation", IntakePosition.of_message(message.position).notification_id, head
                )
    flush()
    # Everything intake's log holds is applied: the messages already on the topic (up to the
    # last notification) are not applied again, whatever their numbering.
    covered = (head + 1) * PER_NOTIFICATION - 1
    for partition in range(partitions):
        allocation.process_recorder.insert_tracking(
            Tracking(tracking_name(topic, partition), covered)
        )
    if progress:
        progress("allocation", head, head)
    return count


def decisions_against_topic(
    allocation: Allocation, on_topic: set[str]
) -> tuple[int, int, int | None, set[str]]:
    """(decisions, of them on the topic, the position before the first missing one or None,
    the ids re-derived)."""
    reader = AllocationLog(allocation)
    kinds: dict[str, bool] = {}
    total = found = 0
    first_missing: int | None = None
    rederived: set[str] = set()
    position = 0
    while True:
        rows = reader.stored(position, 10_000)
        if rows is None:
            raise RestoreRefusedError("the allocation store is not plain JSON: cannot compare")
        count = 0
        for row in rows:
            count += 1
            position, topic, state = row[0], row[3], row[4]
            decision = kinds.get(topic)
            if decision is None:
                decision = kinds[topic] = resolve_topic(topic).__name__ in DECISIONS
            if not decision:
                continue
            decision_id = str(UUID(json.loads(state)["decision_id"]["_data_"]))
            rederived.add(decision_id)
            total += 1
            if decision_id in on_topic:
                found += 1
            elif first_missing is None:
                first_missing = position - 1
        if count < 10_000:
            return total, found, first_missing, rederived


# --- the whole of it ----------------------------------------------------------------------


def restore(
    settings: Settings,
    intake: Intake,
    allocation: Allocation,
    models_factory: Callable[[], ReadModels],
    progress: Progress | None = None,
) -> RestoreReport:
    """Rebuilds every store from the topics. Refused (nothing written) unless intake's and
    allocation's stores are empty."""
    if intake.recorder.max_notification_id() or allocation.recorder.max_notification_id():
        raise RestoreRefusedError(
            "the store is not empty: restore rebuilds into an empty database. Point "
            "DATABASE_URL at a new one (or drop what is left of the lost one) and run it again."
        )
    topics = settings.topics
    inputs = topics.inputs()
    report = RestoreReport()
    existing = asyncio.run(_topic_names(settings))
    missing = [name for name in inputs if name not in existing]
    if len(missing) == len(inputs):
        raise RestoreRefusedError(
            f"none of the input topics exists ({', '.join(inputs)}): nothing to restore from"
        )
    read = asyncio.run(
        read_topics(
            settings,
            [
                t
                for t in [*inputs, topics.sku_commands, topics.dead_letters, topics.decisions]
                if t in existing
            ],
        )
    )
    records = [record for name in inputs for record in read.get(name, [])]
    report.inputs = len(records)
    anchors = Anchors()
    anchors.learn_sku_commands(read.get(topics.sku_commands, []))
    anchors.learn_dead_letters(read.get(topics.dead_letters, []), set(inputs))
    if anchors.by_event_id:
        ordered, report.anchored = in_intake_order(records, anchors)
    else:
        ordered, report.ordered_by = by_timestamps(records), "timestamps"
        report.notes.append(
            "sku-commands holds nothing (retention?): inputs merged by their Kafka timestamps; "
            "where inputs for one SKU raced on two topics, decisions may differ from the lost ones"
        )
    restore_intake(intake, settings, ordered, progress)
    report.recorded = intake.recorder.max_notification_id() or 0

    topic_partitions = len({r.partition for r in read.get(topics.sku_commands, [])}) or 0
    topic_partitions = max(topic_partitions, settings.sku_commands_partitions)
    report.sku_partitions = pinned_partitions(anchors, topic_partitions)
    for app in (intake, allocation):
        app.process_recorder.insert_tracking(
            Tracking(f"partition-count:{topics.sku_commands}", report.sku_partitions)
        )
    report.sku_messages = restore_allocation(
        intake, allocation, topics.sku_commands, report.sku_partitions, progress
    )

    on_topic = {_decision_id(r) for r in read.get(topics.decisions, [])} - {None}
    total, found, first_missing, rederived = decisions_against_topic(allocation, on_topic)  # type: ignore[arg-type]
    report.decisions, report.decisions_on_topic = total, found
    report.decisions_missing_from_topic = total - found
    report.decisions_not_rederived = len(on_topic - rederived)
    # The relays go on from the topics: intake's outputs are all there (allocation was
    # rebuilt from its log, not from the topic); allocation's relay publishes from the first
    # decision the topic lacks (in order; the ones after it that the topic has go again,
    # with the same decision_id).
    head = allocation.recorder.max_notification_id() or 0
    relayed = head if first_missing is None else first_missing
    if report.recorded:
        intake.process_recorder.insert_tracking(
            Tracking(f"relay:{topics.sku_commands}", report.recorded)
        )
    if relayed:
        allocation.process_recorder.insert_tracking(Tracking(f"relay:{topics.decisions}", relayed))

    models = models_factory()
    rebuilt = models.rebuild_all(
        progress=(lambda done, of: progress("read models", done, of)) if progress else None
    )
    report.read_model_position = min(live.position for live in rebuilt.values())
    log.info("restored from kafka", **{k: v for k, v in report.__dict__.items() if k != "notes"})
    return report


def _decision_id(record: ConsumerRecord) -> str | None:
    try:
        found = json.loads(record.value).get("decision_id")
    except (TypeError, ValueError, AttributeError):
        return None
    return str(found) if found else None
