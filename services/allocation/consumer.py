"""Allocation's Kafka edge: decode sku-commands, apply once per position, record it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord
from eventsourcing.persistence import Recording, Tracking
from pydantic import TypeAdapter

from events.commands import SkuCommandsMessage
from services.adapters.faults import crash_point
from services.adapters.kafka import (
    SOURCE_POSITION_HEADER,
    Batches,
    source_of,
    source_position,
    tracking_name,
)
from services.adapters.logs import get_logger
from services.adapters.metrics import DEAD_LETTERED
from services.allocation.application import Allocation, Refusal

log = get_logger(__name__)

# A SKU's commands, or a tick (see events.commands).
MESSAGES: TypeAdapter[SkuCommandsMessage] = TypeAdapter(SkuCommandsMessage)


class UnreadableCommandError(Exception):
    """A message that intake's relay wrote and this version cannot read.

    It is never skipped: its commands are owed to the SKUs, and the positions after it would
    make it unreachable. The partition waits (retrying, logging this) until a version that
    reads it is deployed."""


@dataclass(frozen=True)
class Decoded:
    commands: SkuCommandsMessage | None = None
    refusal: Refusal | None = None


class AllocationHandler:
    """The tracked position is intake's (the message's `position`), never the Kafka offset:
    a relay that resends after a crash writes the same positions at new offsets."""

    stage = "allocation"

    def __init__(self, allocation: Allocation) -> None:
        self.allocation = allocation
        self.positions: dict[TopicPartition, int] = {}
        # Takes each commit's recordings (the relay of this log in this process, if any).
        self.on_recorded: Callable[[Sequence[Recording[Any]]], None] | None = None

    def assigned(self, partition: TopicPartition) -> int | None:
        position = self.allocation.process_recorder.max_tracking_id(
            tracking_name(partition.topic, partition.partition)
        )
        self.positions[partition] = position or 0
        return None  # Kafka's committed offset is a safe start: it trails the store

    def revoked(self, partitions: Sequence[TopicPartition]) -> None:
        for partition in partitions:
            self.positions.pop(partition, None)
        self.allocation.forget_cached()

    def handle(self, batches: Batches) -> None:
        groups: list[tuple[TopicPartition, list[SkuCommandsMessage]]] = []
        refused: list[Refusal] = []
        for partition, records in batches.items():
            known = self.positions.get(partition)
            if known is None:
                self.assigned(partition)
                known = self.positions[partition]
            decoded = [decode(record) for record in records]
            fresh = [d.commands for d in decoded if d.commands and d.commands.position > known]
            refused += [d.refusal for d in decoded if d.refusal is not None]
            if fresh:
                groups.append((partition, fresh))
        if not groups and not refused:
            return
        self._apply(groups, refused)

    def _apply(
        self,
        groups: list[tuple[TopicPartition, list[SkuCommandsMessage]]],
        refused: list[Refusal],
    ) -> None:
        """One commit for every partition's fresh commands, each with its position."""
        batches = [
            (
                Tracking(
                    tracking_name(partition.topic, partition.partition),
                    max(message.position for message in messages),
                ),
                messages,
            )
            for partition, messages in groups
        ]
        try:
            outcome = self.allocation.apply_batches(
                batches, refused=refused, failed_at=datetime.now(UTC)
            )
        except Exception:
            for partition, _ in groups:
                self.positions.pop(partition, None)
            raise
        for (partition, _), (tracking, _) in zip(groups, batches, strict=True):
            assert tracking is not None
            self.positions[partition] = tracking.notification_id
        crash_point("allocation.after_commit")
        if self.on_recorded is not None:
            self.on_recorded(outcome.recordings)
        DEAD_LETTERED.labels(self.stage).inc(len(outcome.dead_lettered))
        for error in outcome.dead_lettered:
            log.warning("sku-commands message dead-lettered", error=error)


def decode(record: ConsumerRecord) -> Decoded:
    """Only intake's relay writes sku-commands, and it marks every message with its position.

    A message without that mark came from somewhere else: it is dead-lettered, never applied.
    One with the mark that cannot be read is ours and must not be lost: see
    UnreadableCommandError. Raises nothing else."""
    position = source_position(record)
    if position is None:
        return Decoded(
            refusal=Refusal(
                source_of(record),
                f"not written by intake's relay (no integer {SOURCE_POSITION_HEADER!r} header): "
                f"{record.topic} is internal; publish inputs to the orders, receipts or "
                "cancellations topics",
            )
        )
    try:
        commands = MESSAGES.validate_json(record.value or b"")
    except Exception as error:
        reason = " ".join(f"{type(error).__name__}: {error}".split())  # one line, for the logs
        raise UnreadableCommandError(
            f"{record.topic}-{record.partition} offset {record.offset} (intake position "
            f"{position}) cannot be read by this version ({reason}); "
            "the partition waits for a version that reads it"
        ) from error
    if commands.position != position:
        return Decoded(
            refusal=Refusal(
                source_of(record),
                f"its body says position {commands.position} but its {SOURCE_POSITION_HEADER!r} "
                f"header says {position}: not as intake's relay writes; {record.topic} is "
                "internal",
            )
        )
    return Decoded(commands=commands)
