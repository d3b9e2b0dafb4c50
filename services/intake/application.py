"""Intake: records each input once (or dead-letters it) with its Kafka position, atomically."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application, ProcessingEvent
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import ProcessRecorder, Recording, Tracking
from eventsourcing.postgres import PostgresAggregateRecorder
from eventsourcing.sqlite import SQLiteAggregateRecorder
from psycopg.sql import SQL, Identifier

from events.inputs import (
    BackorderPolicySet,
    ClockTicked,
    InboundExpected,
    InputEvent,
    OrderCancelled,
    OrderPlaced,
    ShipmentDispatched,
    StockReceived,
)
from services.intake.domain import (
    HeldCancellation,
    InboundSupply,
    IntakeError,
    Order,
    Receipt,
    RequestedCancellation,
    Shipment,
    ShipmentOrigin,
    SkuPolicy,
    Tick,
    inbound_aggregate_id,
    order_aggregate_id,
    policy_aggregate_id,
    receipt_aggregate_id,
    shipment_aggregate_id,
    tick_aggregate_id,
)
from services.kernel.caching import forget_cached
from services.kernel.dead_letters import RefusedInput, Source
from services.kernel.processing import collect

A = TypeVar("A", bound=Aggregate)


@dataclass(frozen=True)
class Input:
    """One consumed message: decoded into a contract event, or the reason it could not be."""

    source: Source
    event: InputEvent | None = None
    error: str | None = None


@dataclass
class IntakeOutcome:
    recorded: int = 0
    duplicates: int = 0
    dead_lettered: list[str] = field(default_factory=list)
    # What the commit recorded, with its log positions: handed to the relay in this process.
    recordings: list[Recording[UUID]] = field(default_factory=list)


class Intake(Application[UUID]):
    """Validated, deduplicated input history: its notification log feeds everything else."""

    name = "intake"

    def construct_recorder(self) -> ProcessRecorder:
        return self.factory.process_recorder()

    @property
    def process_recorder(self) -> ProcessRecorder:
        assert isinstance(self.recorder, ProcessRecorder)
        return self.recorder

    def record_inputs(
        self,
        inputs: Sequence[Input],
        tracking: Tracking | Sequence[Tracking],
        *,
        failed_at: datetime,
        backorders_allowed: bool = True,
    ) -> IntakeOutcome:
        """Applies one fetch (from one partition or several) and records it with each
        partition's position: one commit (see services.adapters.recorders)."""
        trackings = [tracking] if isinstance(tracking, Tracking) else list(tracking)
        if len(trackings) > 1 and not getattr(self.recorder, "records_many_trackings", False):
            raise ValueError("this store records one position a commit: one partition per call")
        try:
            return self._record_inputs(inputs, trackings, failed_at, backorders_allowed)
        except Exception:
            # Cached aggregates were mutated in place: forget them, the retry reads the store.
            self.forget_cached()
            raise

    def _record_inputs(
        self,
        inputs: Sequence[Input],
        trackings: Sequence[Tracking],
        failed_at: datetime,
        backorders_allowed: bool,
    ) -> IntakeOutcome:
        batch = _Batch(self, absent=self._absent(inputs))
        outcome = IntakeOutcome()
        for item in inputs:
            if item.event is None:
                batch.dead_letter(item.source, item.error or "not a valid event", failed_at)
                outcome.dead_lettered.append(item.error or "")
                continue
            try:
                changed = self._apply(batch, item, failed_at, backorders_allowed)
            except IntakeError as error:
                batch.dead_letter(item.source, str(error), failed_at)
                outcome.dead_lettered.append(str(error))
                continue
            if changed:
                outcome.recorded += 1
            else:
                outcome.duplicates += 1
        processing = ProcessingEvent[UUID](tracking=trackings[0])
        if len(trackings) > 1:
            processing.saved_kwargs["more_tracking"] = trackings[1:]
        collect(processing, batch.aggregates.values())
        outcome.recordings = self._record(processing)
        return outcome

    def _absent(self, inputs: Sequence[Input]) -> set[UUID]:
        """The batch's aggregates that have no events yet: most orders are new, and asking
        for each one alone costs a round trip per order on PostgreSQL."""
        wanted: set[UUID] = set()
        for item in inputs:
            event = item.event
            if isinstance(event, OrderPlaced | OrderCancelled):
                wanted.add(order_aggregate_id(event.order_id))
            elif isinstance(event, StockReceived):
                wanted.add(receipt_aggregate_id(event.receipt_id))
            elif isinstance(event, ShipmentDispatched):
                wanted.add(shipment_aggregate_id(event.shipment_id))
                wanted.add(order_aggregate_id(event.order_id))
            elif isinstance(event, BackorderPolicySet):
                wanted.add(policy_aggregate_id(event.sku))
            elif isinstance(event, InboundExpected):
                wanted.add(inbound_aggregate_id(event.sku, event.inbound_id))
            elif isinstance(event, ClockTicked):
                wanted.add(tick_aggregate_id(str(event.event_id)))
        return wanted - existing(self.recorder, sorted(wanted))

    def forget_cached(self) -> None:
        forget_cached(self.repository)

    def _apply(
        self, batch: _Batch, item: Input, failed_at: datetime, backorders_allowed: bool
    ) -> bool:
        event = item.event
        if isinstance(event, OrderPlaced):
            return self._place(batch, event, backorders_allowed, failed_at)
        if isinstance(event, OrderCancelled):
            return self._cancel(batch, event, item.source)
        if isinstance(event, StockReceived):
            return self._receive(batch, event)
        if isinstance(event, ShipmentDispatched):
            return self._ship(batch, event, item.source)
        if isinstance(event, BackorderPolicySet):
            return self._set_policy(batch, event)
        if isinstance(event, InboundExpected):
            return self._expect(batch, event)
        if isinstance(event, ClockTicked):
            return self._tick(batch, event)
        raise IntakeError(f"unsupported event type {type(event).__name__}")

    def _place(
        self, batch: _Batch, event: OrderPlaced, backorders_allowed: bool, failed_at: datetime
    ) -> bool:
        lines = [(line.line_id, line.sku, line.quantity) for line in event.lines]
        details: dict[str, Any] = {
            "event_id": str(event.event_id),
            "occurred_at": event.occurred_at,
            "customer_id": event.customer_id,
            "priority": event.priority,
            "lines": lines,
            "backorders_allowed": backorders_allowed,
        }
        order = batch.get(Order, order_aggregate_id(event.order_id))
        if order is None:
            batch.add(Order.place(order_id=event.order_id, **details))
            return True
        if order.is_duplicate_placement(str(event.event_id), lines):
            return False
        for held in order.place_awaited(**details):
            batch.dead_letter(
                held["source"],
                f"cancellation {held['event_id']} names line(s) that order {event.order_id} "
                "does not have; nothing of it was applied",
                failed_at,
            )
        return True

    def _cancel(self, batch: _Batch, event: OrderCancelled, source: Source) -> bool:
        order = batch.get(Order, order_aggregate_id(event.order_id))
        if order is not None and order.has_seen(str(event.event_id)):
            return False
        lines = (
            None
            if event.lines is None
            else [
                RequestedCancellation(line_id=line.line_id, quantity=line.quantity)
                for line in event.lines
            ]
        )
        if order is None or not order.placed:
            held = HeldCancellation(
                event_id=str(event.event_id),
                occurred_at=event.occurred_at,
                lines=lines,
                reason=event.reason,
                source=source,
            )
            if order is None:
                batch.add(Order.hold_first_cancellation(event.order_id, held))
            else:
                order.hold_cancellation(held)
            return True
        order.cancel(
            event_id=str(event.event_id),
            occurred_at=event.occurred_at,
            lines=lines,
            reason=event.reason,
        )
        return True

    def _receive(self, batch: _Batch, event: StockReceived) -> bool:
        receipt = batch.get(Receipt, receipt_aggregate_id(event.receipt_id))
        if receipt is not None:
            receipt.is_duplicate(str(event.event_id), event.sku, event.quantity, event.inbound_id)
            return False
        batch.add(
            Receipt.record(
                receipt_id=event.receipt_id,
                event_id=str(event.event_id),
                occurred_at=event.occurred_at,
                sku=event.sku,
                quantity=event.quantity,
                inbound_id=event.inbound_id,
            )
        )
        return True

    def _ship(self, batch: _Batch, event: ShipmentDispatched, source: Source) -> bool:
        lines = [(line.line_id, line.quantity) for line in event.lines]
        shipment = batch.get(Shipment, shipment_aggregate_id(event.shipment_id))
        if shipment is not None:
            return not shipment.is_duplicate(str(event.event_id), event.order_id, lines)
        batch.add(
            Shipment.dispatch(
                batch.get(Order, order_aggregate_id(event.order_id)),
                order_id=event.order_id,
                shipment_id=event.shipment_id,
                event_id=str(event.event_id),
                occurred_at=event.occurred_at,
                lines=lines,
                origin=ShipmentOrigin(
                    topic=source["topic"], partition=source["partition"], offset=source["offset"]
                ),
            )
        )
        return True

    def _set_policy(self, batch: _Batch, event: BackorderPolicySet) -> bool:
        policy = batch.get(SkuPolicy, policy_aggregate_id(event.sku))
        if policy is None:
            policy = SkuPolicy.start(event.sku)
            batch.add(policy)
        elif policy.has_seen(str(event.event_id)):
            return False
        policy.set(
            event_id=str(event.event_id),
            occurred_at=event.occurred_at,
            backorders=event.backorders,
            limit=event.limit,
            max_wait_days=event.max_wait_days,
        )
        return True

    def _expect(self, batch: _Batch, event: InboundExpected) -> bool:
        inbound = batch.get(InboundSupply, inbound_aggregate_id(event.sku, event.inbound_id))
        if inbound is None:
            inbound = InboundSupply.start(event.sku, event.inbound_id)
            batch.add(inbound)
        elif inbound.has_seen(str(event.event_id)):
            return False
        inbound.expect(
            event_id=str(event.event_id),
            occurred_at=event.occurred_at,
            quantity=event.quantity,
            expected_at=event.expected_at,
        )
        return True

    def _tick(self, batch: _Batch, event: ClockTicked) -> bool:
        if batch.get(Tick, tick_aggregate_id(str(event.event_id))) is not None:
            return False
        batch.add(Tick.record(event_id=str(event.event_id), occurred_at=event.occurred_at))
        return True


class _Batch:
    """The aggregates one batch touches, each read once and saved together."""

    def __init__(self, app: Intake, absent: set[UUID]) -> None:
        self.app = app
        self.absent = absent
        self.aggregates: dict[UUID, Aggregate] = {}

    def get(self, cls: type[A], aggregate_id: UUID) -> A | None:
        found = self.aggregates.get(aggregate_id)
        if found is None:
            if aggregate_id in self.absent:
                return None
            try:
                found = self.app.repository.get(aggregate_id, deepcopy_from_cache=False)
            except AggregateNotFoundError:
                return None
            self.aggregates[aggregate_id] = found
        assert isinstance(found, cls)
        return found

    def add(self, aggregate: Aggregate) -> None:
        self.aggregates[aggregate.id] = aggregate

    def dead_letter(self, source: Source, error: str, failed_at: datetime) -> None:
        self.add(RefusedInput.record(source, error, failed_at))


def existing(recorder: object, ids: Sequence[UUID]) -> set[UUID]:
    """Which of these aggregates have stored events, in one query per 500 ids.

    eventsourcing reads one aggregate at a time and has no such query, so this is the one
    place that reads its tables directly (the events table of the recorder in use). If
    another writer creates one of them meanwhile, our save conflicts on its version and the
    batch is retried: the answer is a hint, never trusted for correctness."""
    found: set[UUID] = set()
    for start in range(0, len(ids), 500):
        chunk = list(ids[start : start + 500])
        if isinstance(recorder, PostgresAggregateRecorder):
            statement = SQL(
                "SELECT DISTINCT originator_id FROM {schema}.{table} WHERE originator_id = ANY(%s)"
            ).format(
                schema=Identifier(recorder.datastore.schema),
                table=Identifier(recorder.events_table_name),
            )
            with recorder.datastore.transaction(commit=False) as cursor:
                cursor.execute(statement, (chunk,))
                found.update(UUID(str(row["originator_id"])) for row in cursor.fetchall())
        elif isinstance(recorder, SQLiteAggregateRecorder):
            marks = ", ".join("?" * len(chunk))
            with recorder.datastore.transaction(commit=False) as cursor:
                cursor.execute(
                    f"SELECT DISTINCT originator_id FROM {recorder.events_table_name} "
                    f"WHERE originator_id IN ({marks})",
                    [aggregate_id.hex for aggregate_id in chunk],
                )
                found.update(UUID(row[0]) for row in cursor.fetchall())
        else:
            found.update(chunk)  # any other store: read each aggregate as usual
    return found
