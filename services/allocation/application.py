"""Allocation: applies sku-commands to Sku aggregates, tracking intake positions atomically."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application, ProcessingEvent
from eventsourcing.persistence import (
    JSONTranscoder,
    ProcessRecorder,
    Recording,
    Tracking,
    Transcoding,
)

from events.commands import (
    CancelLine,
    ExpectInbound,
    PlaceLine,
    ReceiveStock,
    SetPolicy,
    ShipLine,
    SkuCommand,
    SkuCommandsMessage,
    Tick,
)
from services.allocation.domain import (
    Cause,
    Deadlines,
    ShipmentSource,
    Sku,
    deadlines_aggregate_id,
    sku_aggregate_id,
)
from services.allocation.queue import BackorderQueue, QueueEntry
from services.kernel.caching import forget_cached
from services.kernel.dead_letters import RefusedInput, Source, refused_input_id
from services.kernel.positions import IntakePosition
from services.kernel.processing import collect


@dataclass
class AllocationOutcome:
    applied: int = 0
    skipped: int = 0
    events: int = 0
    dead_lettered: list[str] = field(default_factory=list)  # reasons, newly recorded only
    # What the commit recorded, with its log positions: handed to the relay in this process.
    recordings: list[Recording[UUID]] = field(default_factory=list)


class QueueEntryAsList(Transcoding):
    """A Sku's queue entry in its snapshots: its fields in fill order, as a JSON list."""

    type = QueueEntry
    name = "sku_queue_entry"

    def encode(self, obj: QueueEntry) -> list[Any]:
        return [obj.priority_rank, obj.placed_at, obj.arrival, obj.line_index, obj.key]

    def decode(self, data: list[Any]) -> QueueEntry:
        return QueueEntry(*data)


class BackorderQueueAsList(Transcoding):
    """A Sku's queue in its snapshots: [entry, queued units] pairs in fill order."""

    type = BackorderQueue
    name = "sku_backorder_queue"

    def encode(self, obj: BackorderQueue) -> list[Any]:
        return [[entry, units] for entry, units in obj.pairs()]

    def decode(self, data: list[Any]) -> BackorderQueue:
        return BackorderQueue([(entry, units) for entry, units in data])


@dataclass(frozen=True)
class Refusal:
    """A sku-commands message that is not intake's: dead-lettered, never applied."""

    source: Source
    error: str


class Allocation(Application[UUID]):
    """One Sku aggregate per SKU; the single writer for the SKUs of its partitions."""

    name = "allocation"
    # The fewest events between two snapshots of a SKU; see _take_snapshots.
    snapshotting_intervals = {Sku: 500}  # noqa: RUF012 - eventsourcing's class-level config

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._snapshot_versions: dict[UUID, int] = {}
        self._deadlines: dict[str, Deadlines] = {}  # see deadlines()

    def register_transcodings(self, transcoder: JSONTranscoder) -> None:
        """Snapshots of a Sku hold its queue entries."""
        super().register_transcodings(transcoder)
        transcoder.register(QueueEntryAsList())
        transcoder.register(BackorderQueueAsList())

    def construct_recorder(self) -> ProcessRecorder:
        return self.factory.process_recorder()

    @property
    def process_recorder(self) -> ProcessRecorder:
        assert isinstance(self.recorder, ProcessRecorder)
        return self.recorder

    def apply_commands(
        self,
        messages: Sequence[SkuCommandsMessage],
        tracking: Tracking | None,
        *,
        refused: Sequence[Refusal] = (),
        failed_at: datetime | None = None,
    ) -> AllocationOutcome:
        """Applies a batch from one partition and records it with its position, and the
        batch's refused messages as dead letters (once each): one commit.

        The partition (its tracking name) is the scope of the deadlines its ticks visit;
        without tracking (a replay of the whole log into a scratch store) one scope holds
        every SKU."""
        return self.apply_batches([(tracking, messages)], refused=refused, failed_at=failed_at)

    def apply_batches(
        self,
        batches: Sequence[tuple[Tracking | None, Sequence[SkuCommandsMessage]]],
        *,
        refused: Sequence[Refusal] = (),
        failed_at: datetime | None = None,
    ) -> AllocationOutcome:
        """Applies one fetch's batches (one per partition, each with its position) in ONE
        commit: the positions go in with the events (see services.adapters.recorders)."""
        trackings = [tracking for tracking, _ in batches if tracking is not None]
        if len(trackings) > 1 and not getattr(self.recorder, "records_many_trackings", False):
            raise ValueError(
                "this store records one position a commit: apply partition by partition"
            )
        try:
            return self._apply_batches(batches, trackings, refused, failed_at)
        except Exception:
            # Cached aggregates were mutated in place: forget them, the retry reads the store.
            self.forget_cached()
            raise

    def _apply_batches(
        self,
        batches: Sequence[tuple[Tracking | None, Sequence[SkuCommandsMessage]]],
        trackings: Sequence[Tracking],
        refused: Sequence[Refusal],
        failed_at: datetime | None,
    ) -> AllocationOutcome:
        skus: dict[str, Sku] = {}
        outcome = AllocationOutcome()
        processing = ProcessingEvent[UUID](tracking=trackings[0] if trackings else None)
        if len(trackings) > 1:
            processing.saved_kwargs["more_tracking"] = list(trackings[1:])

        def sku_named(name: str) -> Sku:
            found = skus.get(name) or self.sku(name)
            skus[name] = found
            return found

        touched_deadlines: list[Deadlines] = []
        for tracking, messages in batches:
            deadlines = self.deadlines(tracking.application_name if tracking else "all")
            for message in messages:
                if apply_message(message, deadlines, sku_named):
                    outcome.applied += 1
                else:
                    outcome.skipped += 1
            if any(isinstance(event, Deadlines.Noted) for event in deadlines.pending_events):
                touched_deadlines.append(deadlines)  # a new index is saved once it holds something
        collect(processing, skus.values())
        collect(processing, touched_deadlines)
        outcome.events = len(processing.events)
        for refusal in refused:
            source = refusal.source
            letter_id = refused_input_id(source["topic"], source["partition"], source["offset"])
            if letter_id in self.repository:
                continue  # delivered again: its dead letter is already recorded
            assert failed_at is not None, "refusals need the time they were refused"
            collect(processing, [RefusedInput.record(source, refusal.error, failed_at)])
            outcome.dead_lettered.append(refusal.error)
        outcome.recordings = self._record(processing)
        self._take_snapshots(processing)
        return outcome

    def _take_snapshots(self, processing: ProcessingEvent[UUID]) -> None:
        """Snapshots the SKUs (and deadline indexes) just recorded, from memory, spaced by
        their size.

        A snapshot costs O(open lines) (or O(SKUs with a deadline)). Taking one every
        max(interval, size / 2) events keeps that cost flat per event, and a cold load
        replays at most half as many events as the aggregate has entries (`make bench`,
        hot_sku: bench/README.md). eventsourcing's own snapshotting would re-read each
        aggregate from the store at the event's version: a second load of the state this
        batch holds, just committed.
        """
        if self.snapshots is None:
            return
        minimum = self.snapshotting_intervals[Sku]
        new_events = Counter(event.originator_id for event in processing.events)
        for aggregate_id, aggregate in processing.aggregates.items():
            if isinstance(aggregate, Sku):
                size = len(aggregate.lines)
            elif isinstance(aggregate, Deadlines):
                size = len(aggregate.due_times)
            else:
                continue
            # First seen in this process: count from before this batch, as if snapshotted then.
            last = self._snapshot_versions.setdefault(
                aggregate_id, aggregate.version - new_events[aggregate_id]
            )
            if aggregate.version - last >= max(minimum, size // 2):
                self.snapshots.put([Sku.Snapshot.take(aggregate)])
                self._snapshot_versions[aggregate_id] = aggregate.version

    def deadlines(self, scope: str) -> Deadlines:
        """The scope's deadlines index, or a new one.

        Kept here between batches: an index is only saved once it holds something, so the
        repository would look for an unsaved one in the store at every batch (a third of a
        small batch's time, profiled). Forgotten with the cache (forget_cached)."""
        found = self._deadlines.get(scope)
        if found is None:
            try:
                found = self.repository.get(
                    deadlines_aggregate_id(scope), deepcopy_from_cache=False
                )
            except AggregateNotFoundError:
                found = Deadlines.start(scope)
            assert isinstance(found, Deadlines)
            self._deadlines[scope] = found
        return found

    def sku(self, sku: str) -> Sku:
        """The SKU's aggregate, or a new one for a SKU never seen."""
        try:
            found: Sku = self.repository.get(sku_aggregate_id(sku), deepcopy_from_cache=False)
        except AggregateNotFoundError:
            return Sku.register(sku)
        assert isinstance(found, Sku)
        return found

    def find_sku(self, sku: str) -> Sku | None:
        try:
            found: Sku = self.repository.get(sku_aggregate_id(sku))
        except AggregateNotFoundError:
            return None
        assert isinstance(found, Sku)
        return found

    def forget_cached(self) -> None:
        forget_cached(self.repository)
        self._deadlines.clear()


SkuNamed = Callable[[str], Sku]


def apply_message(message: SkuCommandsMessage, deadlines: Deadlines, sku_named: SkuNamed) -> bool:
    """The allocation rules for one sku-commands message: its SKU applies its commands (a
    tick: every SKU whose deadline may have come expires what waited too long). False if
    the SKU had applied it already (a message delivered again).

    Where the SKUs come from is the caller's: the store (Allocation) or memory (a replay
    or a what-if, services.operations.replay)."""
    if isinstance(message, Tick):
        tick(message, deadlines, sku_named)
        return True
    sku = sku_named(message.sku)
    first = IntakePosition.of_message(message.position)
    if sku.has_applied(first.command_position):
        return False
    sku.begin_input()  # one input: its dates are restated once, after its decisions
    for index, command in enumerate(message.commands):
        position = IntakePosition.of_message(message.position, index).command_position
        cause = Cause(command.causation_id, command.occurred_at, position, step=index)
        apply_command(sku, cause, command)
        deadlines.note(sku.sku, sku.deadline_news())
    sku.end_input(cause)
    return True


def tick(message: Tick, deadlines: Deadlines, sku_named: SkuNamed) -> None:
    """Visits the SKUs whose deadline may have come, and notes each one's next."""
    at = message.tick.occurred_at
    position = IntakePosition.of_message(message.position).command_position
    cause = Cause(message.tick.causation_id, at, position)
    for name in deadlines.due(at):
        sku = sku_named(name)
        sku.expire(cause)
        deadlines.note(name, (True, sku.next_deadline()))


def apply_command(sku: Sku, cause: Cause, command: SkuCommand) -> None:
    """The one translation from a sku-commands command to the Sku's method."""
    if isinstance(command, PlaceLine):
        sku.place_line(
            cause,
            order_id=command.order_id,
            line_id=command.line_id,
            line_index=command.line_index,
            customer_id=command.customer_id,
            priority=command.priority,
            quantity=command.quantity,
            cancelled_before_placement=command.cancelled_before_placement,
            backorders_allowed=command.backorders_allowed,
        )
    elif isinstance(command, CancelLine):
        sku.cancel_line(
            cause, order_id=command.order_id, line_id=command.line_id, quantity=command.quantity
        )
    elif isinstance(command, ReceiveStock):
        sku.receive_stock(
            cause,
            receipt_id=command.receipt_id,
            quantity=command.quantity,
            inbound_id=command.inbound_id,
        )
    elif isinstance(command, ShipLine):
        source = command.source
        sku.ship_line(
            cause,
            shipment_id=command.shipment_id,
            order_id=command.order_id,
            line_id=command.line_id,
            quantity=command.quantity,
            source=ShipmentSource(source.topic, source.partition, source.offset),
        )
    elif isinstance(command, SetPolicy):
        sku.set_policy(
            cause,
            backorders=command.backorders,
            limit=command.limit,
            max_wait_days=command.max_wait_days,
        )
    elif isinstance(command, ExpectInbound):
        sku.expect_inbound(
            cause,
            inbound_id=command.inbound_id,
            quantity=command.quantity,
            expected_at=command.expected_at,
        )
