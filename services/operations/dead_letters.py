"""The dead-letter topic for SREs: list what is there, re-drive what can now be applied.

Re-driven messages go back to their source topic with their original key and bytes; intake
deduplicates by event id and business identity, so re-driving twice has one effect.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition

from events.dead_letters import DeadLetter
from services.adapters.kafka import make_producer, partitions_of
from services.adapters.settings import Settings

REDRIVEN_FROM_HEADER = "redriven-from"


@dataclass(frozen=True)
class Letter:
    partition: int
    offset: int
    letter: DeadLetter

    def original(self) -> bytes:
        if self.letter.payload_encoding == "base64":
            return base64.b64decode(self.letter.payload)
        return self.letter.payload.encode("utf-8")


async def _read(consumer: AIOKafkaConsumer, topic: str) -> list[Letter]:
    partitions = [TopicPartition(topic, p) for p in sorted(await partitions_of(consumer, topic))]
    consumer.assign(partitions)
    await consumer.seek_to_beginning(*partitions)
    ends = await consumer.end_offsets(partitions)
    found: list[Letter] = []
    while [p for p in partitions if await consumer.position(p) < ends[p]]:
        batch = await consumer.getmany(timeout_ms=500)
        for records in batch.values():
            for record in records:
                if record.offset < ends[TopicPartition(record.topic, record.partition)]:
                    letter = DeadLetter.model_validate_json(record.value)
                    found.append(Letter(record.partition, record.offset, letter))
    return sorted(found, key=lambda x: (x.letter.failed_at, x.partition, x.offset))


async def list_letters(settings: Settings) -> list[Letter]:
    consumer = AIOKafkaConsumer(**settings.kafka_client_options(), enable_auto_commit=False)
    await consumer.start()
    try:
        return await _read(consumer, settings.topics.dead_letters)
    finally:
        await consumer.stop()


@dataclass(frozen=True)
class Redrive:
    sent: list[Letter]
    kept: list[Letter]  # selected, but not re-drivable (from our internal topic)


async def redrive(
    settings: Settings,
    *,
    select: Callable[[Letter], bool],
    dry_run: bool = False,
) -> Redrive:
    """Re-publishes the selected letters to their source topics.

    Safe to repeat: intake deduplicates what it already applied, and a message that is
    still bad is dead-lettered again, with its new reason. Letters from our internal
    sku-commands topic are kept: they were not intake's, so they would only be refused
    again; the input they stood for belongs on an input topic."""
    inputs = settings.topics.inputs()
    selected = [letter for letter in await list_letters(settings) if select(letter)]
    letters = [letter for letter in selected if letter.letter.source_topic in inputs]
    kept = [letter for letter in selected if letter.letter.source_topic not in inputs]
    if dry_run or not letters:
        return Redrive(letters, kept)
    producer = make_producer(settings)
    await producer.start()
    try:
        futures = [
            await producer.send(
                letter.letter.source_topic,
                letter.original(),
                key=None if letter.letter.key is None else letter.letter.key.encode(),
                headers=[
                    (
                        REDRIVEN_FROM_HEADER,
                        f"{settings.topics.dead_letters}:{letter.partition}:{letter.offset}".encode(),
                    )
                ],
            )
            for letter in letters
        ]
        for future in futures:
            await future
    finally:
        await producer.stop()
    return Redrive(letters, kept)
