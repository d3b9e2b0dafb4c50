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
import multiprocessing
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord
from eventsourcing.application import Application
from eventsourcing.persistence import StoredEvent, Tracking
from eventsourcing.postgres import PostgresApplicationRecorder
from eventsourcing.sqlite import SQLiteApplicationRecorder
from eventsourcing.utils import get_topic, resolve_topic
from psycopg.sql import SQL, Identifier

from events.commands import Tick
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
    source_position,
    tracking_name,
)
from services.adapters.logs import get_logger
from services.adapters.settings import Settings
from services.allocation.application import Allocation, apply_message
from services.allocation.domain import Deadlines, Sku
from services.intake.application import Input, Intake
from services.intake.consumer import IntakeHandler
from services.kernel.positions import PER_NOTIFICATION, IntakePosition
from services.operations.replay import (
    DECISIONS,
    MemoryAllocation,
    Share,
    in_shares,
    sku_commands_of,
)

log = get_logger(__name__)

Progress = Callable[[str, int, int], None]  # phase, done, total
BATCH = 1_000  # inputs per transaction
RESTORE_TRACKING = "restore:intake"  # the batches a restore recorded in intake's store
WRITE_BATCH = 5_000  # sku-commands messages re-derived between two writes of their events


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
    # Orders whose cancellation came before them: the position of their placement (the
    # cancellation left no command of its own, and intake recorded it just before).
    cancelled_first: dict[str, int] = field(default_factory=dict)
    cancellations: str = ""  # the cancellations topic

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
            commands = body.get("commands", [])
            causes = [c.get("causation_id") for c in commands]
            for command in commands:
                if command.get("type") == "PlaceLine" and command.get("cancelled_before_placement"):
                    order = command.get("order_id")
                    known = self.cancelled_first.get(order)
                    self.cancelled_first[order] = (
                        notification if known is None else min(known, notification)
                    )
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

    def position_of(self, record: Any, body: dict[str, Any]) -> tuple[int, int] | None:
        """Where intake recorded the input: its position, and 0 (or -1: just before the
        input at that position). Where intake recorded the commands it caused, else its
        refusal (allocation's dead letters of a shipment carry allocation's positions: the
        commands tell first), else, for a cancellation that came before its order, just
        before the order."""
        event_id = body.get("event_id")
        found = self.by_event_id.get(event_id) if isinstance(event_id, str) else None
        if found is None:
            found = self.by_source.get((record.topic, record.partition, record.offset))
        if found is not None:
            return found, 0
        if record.topic == self.cancellations and isinstance(body.get("order_id"), str):
            placed = self.cancelled_first.get(body["order_id"])
            if placed is not None:
                return placed, -1
        return None


def in_intake_order(records: Iterable[Any], anchors: Anchors) -> tuple[list[Any], int]:
    """The inputs in the order intake took them (see the module's docstring); and how many
    of them the topics placed exactly. An input's place: its own intake position if known,
    else right after the input before it in its partition.

    Positions within a partition need not follow its offsets: intake records a fetch's
    events aggregate by aggregate, so an order whose cancellation came first in the fetch
    is recorded with it, ahead of orders before it in its partition."""
    keyed: list[tuple[tuple[int, int, str, int, int], Any]] = []
    anchored = 0
    by_partition: dict[tuple[str, int], list[Any]] = {}
    for record in records:
        by_partition.setdefault((record.topic, record.partition), []).append(record)
    seen_ids: set[str] = set()
    for (topic, partition), items in by_partition.items():
        last = 0
        for record in sorted(items, key=lambda r: r.offset):
            body = _body(record)
            event_id = body.get("event_id")
            event_id = event_id if isinstance(event_id, str) else None
            place = anchors.position_of(record, body)
            if place is not None and event_id is not None and event_id in seen_ids:
                place = None  # a re-publication: its first copy is the one intake recorded
            if place is None:
                keyed.append(((last, 1, topic, partition, record.offset), record))
            else:
                anchored += 1
                last = max(last, place[0])
                keyed.append(((place[0], place[1], topic, partition, record.offset), record))
            if event_id is not None:
                seen_ids.add(event_id)
    keyed.sort(key=lambda pair: pair[0])
    return [record for _, record in keyed], anchored


def by_timestamps(records: Iterable[Any]) -> list[Any]:
    return sorted(records, key=lambda r: (r.timestamp, r.topic, r.partition, r.offset))


def _body(record: Any) -> dict[str, Any]:
    try:
        body = json.loads(record.value)
    except (TypeError, ValueError):
        return {}
    return body if isinstance(body, dict) else {}


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
    dead-lettered alike; then each partition's position.

    A transaction records its events aggregate by aggregate, so a batch never holds two
    inputs for one aggregate (an order and its cancellation): then the log's order is the
    inputs' order, which is the order intake's own log had (the anchors are its positions).
    """
    handler = IntakeHandler(intake, settings)
    batch: list[tuple[Any, Input]] = []
    touched: set[tuple[Any, ...]] = set()

    last: dict[tuple[str, int], int] = {}  # each partition's last offset
    batches = 0

    def flush() -> None:
        nonlocal batches
        batches += 1
        for record, _ in batch:
            key = (record.topic, record.partition)
            last[key] = max(last.get(key, -1), record.offset)
        # A partition's inputs need not come in offset order (see in_intake_order), so its
        # position is recorded once all of them are; meanwhile the batches are counted.
        intake.record_inputs(
            [decoded for _, decoded in batch],
            Tracking(RESTORE_TRACKING, batches),
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
    for (topic, partition), offset in sorted(last.items()):
        intake.process_recorder.insert_tracking(Tracking(tracking_name(topic, partition), offset))
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
    *,
    progress: Progress | None = None,
    workers: int = 1,
) -> int:
    """Intake's log applied as allocation consumes it: each SKU's messages in log order,
    a tick visiting each SKU whose deadline may have come; then each partition's deadlines
    index (as the running service keeps one a partition) and position. Returns the
    messages applied.

    Re-derived in memory and written in bulk, a worker a core over its share of the SKUs:
    allocation's own batches (load, apply, commit a batch at a time) ran at 8,000
    messages/s (`make bench`, replay). Each SKU's events are the ones the service recorded;
    only how the log interleaves SKUs differs, as it does between two runs of the service.
    A deadlines index holds, per SKU, the due time its last note left: it is rebuilt from
    those (its own history is an index's, no decision's)."""
    head = intake.recorder.max_notification_id() or 0
    writer = _Writer(allocation)
    if workers <= 1:
        count, due = derive_share(intake, allocation, None, write=writer.write, progress=progress)
    else:
        count, due = _in_processes((intake, allocation), workers, progress)
    indexes = {p: Deadlines.start(tracking_name(topic, p)) for p in range(partitions)}
    for sku, at in sorted(due.items()):
        indexes[sku_partition(sku, partitions)].note(sku, (True, at))
    kept = [index for index in indexes.values() if index.due_times]  # saved once it holds one
    writer.write("events", [event for index in kept for event in index.collect_events()])
    writer.write("snapshots", _snapshots(allocation, kept))
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


Write = Callable[[str, list[Any]], None]  # ("events" | "snapshots", domain events)


class _Writer:
    """Records domain events (or snapshots) into allocation's store, encoded fast."""

    def __init__(self, allocation: Allocation) -> None:
        self.allocation = allocation
        self.encode = stored_event_encoder(allocation)

    def write(self, kind: str, events: list[Any]) -> None:
        self.record(kind, [self.encode(event) for event in events])

    def record(self, kind: str, stored: list[StoredEvent]) -> None:
        if not stored:
            return
        if kind == "snapshots":
            assert self.allocation.snapshots is not None
            self.allocation.snapshots.recorder.insert_events(stored)
        else:
            self.allocation.recorder.insert_events(stored)


def derive_share(
    intake: Intake,
    allocation: Allocation,
    share: Share | None,
    *,
    write: Write,
    progress: Progress | None = None,
) -> tuple[int, dict[str, datetime]]:
    """The share's SKUs (all: None) re-derived from intake's log in memory, their events
    and snapshots handed to `write` in batches. Returns the messages applied (ticks
    counted by share 0, so that shares add up) and each SKU's due time in the deadlines."""
    head = intake.recorder.max_notification_id() or 0
    skus: dict[str, Sku] = {}
    touched: dict[str, Sku] = {}
    deadlines = Deadlines.start("restore")  # in memory: see restore_allocation

    def sku_named(name: str) -> Sku:
        found = skus.get(name)
        if found is None:
            found = skus[name] = Sku.register(name)
        touched[name] = found
        return found

    def flush() -> None:
        events: list[Any] = []
        for sku in touched.values():
            events += sku.collect_events()
        touched.clear()
        deadlines.collect_events()
        write("events", events)

    held: dict[Any, bool] = {}
    wanted = None if share is None else (lambda sku: share.holds_sku(sku, held))
    count = 0
    for seen, message in enumerate(sku_commands_of(intake, wanted), start=1):
        apply_message(message, deadlines, sku_named)
        count += not isinstance(message, Tick) or share is None or share.index == 0
        if seen % WRITE_BATCH == 0:
            flush()
            if progress:
                at = IntakePosition.of_message(message.position).notification_id
                progress("allocation", at, head)
    flush()
    write("snapshots", _snapshots(allocation, skus.values()))
    return count, dict(deadlines.due_times)


def _snapshots(allocation: Allocation, aggregates: Iterable[Sku | Deadlines]) -> list[Any]:
    """A snapshot of each aggregate long enough that the service would have taken one, so
    that the service, started again, loads it without replaying its whole history."""
    if allocation.snapshots is None:
        return []
    interval = allocation.snapshotting_intervals[Sku]
    return [Sku.Snapshot.take(a) for a in aggregates if a.version >= interval]


def _in_processes(
    stores: tuple[Intake, Allocation], workers: int, progress: Progress | None
) -> tuple[int, dict[str, datetime]]:
    """derive_share with a process a share (replay's workers: services.operations.replay
    in_shares). Each records its events itself, one at a time (a lock: SQLite's writers
    would otherwise wait in its busy handler's sleeps)."""
    envs = (dict(stores[0].env), dict(stores[1].env))
    writing = multiprocessing.get_context("fork").Lock()  # inherited by the forked workers

    def job(
        intake: Intake, allocation: Allocation, engine: MemoryAllocation, report: Any
    ) -> tuple[int, dict[str, datetime]]:
        writer = _Writer(allocation)

        def write(kind: str, events: list[Any]) -> None:
            stored = [writer.encode(event) for event in events]
            with writing:
                writer.record(kind, stored)

        def advance(_: str, at: int, head: int) -> None:
            report(at, head)

        return derive_share(intake, allocation, engine.share, write=write, progress=advance)

    results = in_shares(
        lambda: (Intake(env=envs[0]), Allocation(env=envs[1])),
        MemoryAllocation(),
        job,
        workers,
        None if progress is None else (lambda at, head: progress("allocation", at, head)),
    )
    due: dict[str, datetime] = {}
    for _, found in results:
        due.update(found)  # the shares' SKUs do not overlap
    return sum(count for count, _ in results), due


class _NotPlainError(Exception):
    """A value the fast encoder leaves to the library."""


def stored_event_encoder(app: Application[Any]) -> Callable[[Any], StoredEvent]:
    """The app's mapper's `to_stored_event`, with the JSON written by orjson where the
    mapper would write plain JSON: the same bytes (tests/unit/test_restore_encoding.py), in
    a fifth of the time; the library's json encoder with its `default` hook was a third of
    a bulk restore's time (profiled). Anything else (a float, an unregistered type, a
    cipher, compression) goes through the mapper."""
    mapper = app.mapper
    transcoder = mapper.transcoder
    types: dict[type, Any] = getattr(transcoder, "types", {})
    if mapper.cipher is not None or mapper.compressor is not None or not types:
        return mapper.to_stored_event
    topics: dict[type, str] = {}

    def plain(value: Any) -> Any:
        kind = type(value)
        if kind is str or kind is int or kind is bool or value is None:
            return value
        if kind is dict:
            return {key: plain(item) for key, item in value.items()}
        if kind is list or kind is tuple:
            return [plain(item) for item in value]
        transcoding = types.get(kind)
        if transcoding is None:
            raise _NotPlainError
        return {"_type_": transcoding.name, "_data_": plain(transcoding.encode(value))}

    def to_stored(event: Any) -> StoredEvent:
        kind = type(event)
        topic = topics.get(kind)
        if topic is None:
            topic = topics[kind] = get_topic(kind)
        state = dict(vars(event))
        originator_id = state.pop("originator_id")
        originator_version = state.pop("originator_version")
        class_version = getattr(kind, "class_version", 1)
        if class_version > 1:
            state["class_version"] = class_version
        try:
            encoded = orjson.dumps({key: plain(item) for key, item in state.items()})
        except (_NotPlainError, TypeError):
            return mapper.to_stored_event(event)
        return StoredEvent(originator_id, originator_version, topic, encoded)

    return to_stored


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


def continue_above(allocation: Allocation, relayed: int, on_topic: int) -> int:
    """Numbers allocation's log so that what its relay publishes next comes after every
    position the decisions topic holds (a consumer may rely on them only increasing in a
    partition): the events after `relayed` move above `on_topic`, keeping their order; with
    none, the last event moves there. Returns the relay's position. The restored log can be
    shorter than the lost one (its deadlines indexes are rebuilt, not replayed), so without
    this the service's next decisions would take positions the topic already used."""
    head = allocation.recorder.max_notification_id() or 0
    if on_topic <= relayed:
        return relayed
    if relayed < head:
        _shift(allocation, after=relayed, by=on_topic - relayed)
        return relayed
    _shift(allocation, after=head - 1, by=on_topic - head)
    return on_topic


def _shift(allocation: Allocation, *, after: int, by: int) -> None:
    """Adds `by` to the position of every event after `after` (written by hand: the library
    has no way to renumber its log). Through a far range, as each row's new position must
    not meet one not yet moved."""
    far = 1 << 40
    recorder = allocation.recorder
    if isinstance(recorder, SQLiteApplicationRecorder):
        table = recorder.events_table_name
        with recorder.datastore.transaction(commit=True) as cursor:
            cursor.execute(f"UPDATE {table} SET rowid = rowid + ? WHERE rowid > ?", (far, after))
            cursor.execute(f"UPDATE {table} SET rowid = rowid - ? WHERE rowid > ?", (far - by, far))
        return
    assert isinstance(recorder, PostgresApplicationRecorder), "a store restore can renumber"
    name = SQL("{schema}.{table}").format(
        schema=Identifier(recorder.datastore.schema), table=Identifier(recorder.events_table_name)
    )
    column = SQL("notification_id")
    with recorder.datastore.transaction(commit=True) as cursor:
        cursor.execute(
            SQL("UPDATE {t} SET {c} = {c} + %s WHERE {c} > %s").format(t=name, c=column),
            (far, after),
        )
        cursor.execute(
            SQL("UPDATE {t} SET {c} = {c} - %s WHERE {c} > %s").format(t=name, c=column),
            (far - by, far),
        )
        cursor.execute(
            SQL(
                "SELECT setval(pg_get_serial_sequence(%s, 'notification_id'), "
                "(SELECT max(notification_id) FROM {t}))"
            ).format(t=name),
            (f"{recorder.datastore.schema}.{recorder.events_table_name}",),
        )


# --- the whole of it ----------------------------------------------------------------------


def restore(
    settings: Settings,
    intake: Intake,
    allocation: Allocation,
    models_factory: Callable[[], ReadModels],
    *,
    progress: Progress | None = None,
    workers: int | None = None,
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
    anchors = Anchors(cancellations=topics.cancellations)
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
        intake,
        allocation,
        topics.sku_commands,
        report.sku_partitions,
        progress=progress,
        workers=workers or len(os.sched_getaffinity(0)),
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
    topic_max = max((source_position(r) or 0 for r in read.get(topics.decisions, [])), default=0)
    relayed = continue_above(
        allocation, head if first_missing is None else first_missing, topic_max
    )
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
