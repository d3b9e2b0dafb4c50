"""Allocation's Kafka edge: decode sku-commands, apply once per position, record it."""

from __future__ import annotations

from collections.abc import Sequence

from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord
from eventsourcing.persistence import Tracking

from events.commands import SkuCommands
from services.allocation.application import Allocation
from services.faults import crash_point
from services.logs import get_logger

log = get_logger(__name__)


def tracking_name(topic: str, partition: int) -> str:
    return f"{topic}-{partition}"


class AllocationHandler:
    """The tracked position is intake's (the message's `position`), never the Kafka offset:
    a relay that resends after a crash writes the same positions at new offsets."""

    stage = "allocation"

    def __init__(self, allocation: Allocation) -> None:
        self.allocation = allocation
        self.positions: dict[TopicPartition, int] = {}

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

    def handle(self, partition: TopicPartition, records: Sequence[ConsumerRecord]) -> None:
        known = self.positions.get(partition)
        if known is None:
            self.assigned(partition)
            known = self.positions[partition]
        messages = [SkuCommands.model_validate_json(record.value) for record in records]
        fresh = [message for message in messages if message.position > known]
        if not fresh:
            return
        last = max(message.position for message in fresh)
        try:
            self.allocation.apply_commands(
                fresh, Tracking(tracking_name(partition.topic, partition.partition), last)
            )
        except Exception:
            self.positions.pop(partition, None)
            raise
        self.positions[partition] = last
        crash_point("allocation.after_commit")
