"""Intake's Kafka edge: decode and validate, call the application once, record the position."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord
from eventsourcing.persistence import Recording, Tracking
from pydantic import ValidationError

from events.common import MAX_MESSAGE_BYTES
from events.inputs import (
    CANCELLATION_EVENTS,
    CLOCK_EVENTS,
    INBOUND_EVENTS,
    ORDER_EVENTS,
    POLICY_EVENTS,
    RECEIPT_EVENTS,
    SHIPMENT_EVENTS,
    InputEvent,
)
from services.adapters.faults import crash_point
from services.adapters.kafka import Batches, source_of, tracking_name
from services.adapters.logs import get_logger
from services.adapters.metrics import DEAD_LETTERED, DUPLICATES
from services.adapters.settings import Settings
from services.intake.application import Input, Intake

log = get_logger(__name__)


class IntakeHandler:
    """Handles one partition's batch of any input topic's events."""

    stage = "intake"

    def __init__(self, intake: Intake, settings: Settings) -> None:
        self.intake = intake
        self.settings = settings
        topics = settings.topics
        self.events_by_topic: dict[str, dict[str, type[InputEvent]]] = {
            topics.orders: ORDER_EVENTS,
            topics.cancellations: CANCELLATION_EVENTS,
            topics.receipts: RECEIPT_EVENTS,
            topics.shipments: SHIPMENT_EVENTS,
            topics.policies: POLICY_EVENTS,
            topics.inbound: INBOUND_EVENTS,
            topics.clock: CLOCK_EVENTS,
        }
        self.positions: dict[TopicPartition, int] = {}
        # Takes each commit's recordings (the relay of this log in this process, if any).
        self.on_recorded: Callable[[Sequence[Recording[Any]]], None] | None = None

    def assigned(self, partition: TopicPartition) -> int | None:
        position = self.intake.process_recorder.max_tracking_id(
            tracking_name(partition.topic, partition.partition)
        )
        self.positions[partition] = -1 if position is None else position
        return self.positions[partition] + 1

    def revoked(self, partitions: Sequence[TopicPartition]) -> None:
        for partition in partitions:
            self.positions.pop(partition, None)
        self.intake.forget_cached()

    def handle(self, batches: Batches) -> None:
        fresh: dict[TopicPartition, list[ConsumerRecord]] = {}
        for partition, records in batches.items():
            known = self.positions.get(partition)
            if known is None:
                known = (self.assigned(partition) or 0) - 1
            news = [record for record in records if record.offset > known]
            if news:
                fresh[partition] = news
        if not fresh:
            return
        self._record(fresh)

    def _record(self, fresh: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        """One commit for the batches of every partition, each with its position."""
        inputs = [self.decode(record) for records in fresh.values() for record in records]
        trackings = [
            Tracking(tracking_name(partition.topic, partition.partition), records[-1].offset)
            for partition, records in fresh.items()
        ]
        try:
            outcome = self.intake.record_inputs(
                inputs,
                trackings,
                failed_at=datetime.now(UTC),
                backorders_allowed=self.settings.backorders_allowed,
            )
        except Exception:
            for partition in fresh:
                self.positions.pop(partition, None)  # re-read from the store on retry
            raise
        for partition, records in fresh.items():
            self.positions[partition] = records[-1].offset
        crash_point("intake.after_commit")
        if self.on_recorded is not None:
            self.on_recorded(outcome.recordings)
        DUPLICATES.labels(self.stage).inc(outcome.duplicates)
        DEAD_LETTERED.labels(self.stage).inc(len(outcome.dead_lettered))
        for error in outcome.dead_lettered:
            log.warning("input dead-lettered", error=error)

    def decode(self, record: ConsumerRecord) -> Input:
        """Never raises: one bad message must not stall its partition."""
        try:
            return self._decode(record)
        except Exception as error:  # the last line of defence; every known case is above
            log.error("decoder failed; dead-lettering", error=repr(error))
            return Input(
                source_of(record),
                error=f"value could not be decoded ({type(error).__name__}: {error})",
            )

    def _decode(self, record: ConsumerRecord) -> Input:
        source = source_of(record)
        value: bytes | None = record.value
        if value is None:
            return Input(source, error="message has no value (a tombstone?); expected a JSON event")
        if len(value) > MAX_MESSAGE_BYTES:
            return Input(
                source,
                error=f"value of {len(value)} bytes is over the 1 MiB limit "
                f"({MAX_MESSAGE_BYTES} bytes)",
            )
        try:
            text = value.decode("utf-8")
        except UnicodeDecodeError as error:
            return Input(source, error=f"value is not UTF-8 text: {error}")
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            return Input(source, error=f"value is not JSON: {error}")
        except (ValueError, RecursionError) as error:  # nesting or numbers past the parser's limits
            return Input(source, error=f"value is JSON beyond our limits: {error}")
        if not isinstance(data, dict):
            return Input(source, error=f"value is JSON {type(data).__name__}, not an object")
        known = self.events_by_topic.get(record.topic, {})
        event_type = data.get("type")
        model = known.get(event_type) if isinstance(event_type, str) else None
        if model is None:
            return Input(
                source,
                error=f"unknown type {event_type!r} on topic {record.topic!r}; "
                f"expected {' or '.join(known) or 'nothing'}",
            )
        try:
            return Input(source, event=model.model_validate(data))
        except ValidationError as error:
            return Input(source, error=f"invalid {event_type}: {_summarise(error)}")
        except (ValueError, RecursionError, OverflowError) as error:
            return Input(source, error=f"invalid {event_type}: {type(error).__name__}: {error}")


def _summarise(error: ValidationError) -> str:
    parts = []
    for detail in error.errors()[:5]:
        where = ".".join(str(item) for item in detail["loc"]) or "(body)"
        parts.append(f"{where}: {detail['msg']}")
    more = error.error_count() - 5
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")
