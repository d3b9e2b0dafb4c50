"""The dead-letter topic for SREs: list what is there, re-drive what can now be applied.

Re-driven messages go back to their source topic with their original key and bytes; intake
deduplicates by event id and business identity, so re-driving twice has one effect. Letters
that re-driving cannot fix are kept, each with the reason and what to do instead.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Sequence
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


# The reason allocation gives a shipment line that asked for more than its line held
# (services/allocation/translate.py over_shipment_letter); the contract's reason name.
OVER_SHIPMENT = "over_shipment:"


@dataclass(frozen=True)
class Kept(Letter):
    """A selected letter that was not re-driven, and why: what the SRE should do instead."""

    why: str


def why_kept(letter: Letter, inputs: Sequence[str]) -> str | None:
    """Why re-driving this letter would not apply what it stands for; None if it may.

    A letter from our internal sku-commands topic was not intake's, so it would only be
    refused again. An over-shipment was found by allocation after intake had recorded the
    shipment: its payload carries the shipment's event id and shipment id, so intake would
    ignore it as a duplicate (or, edited, refuse it as a conflict): re-driving it would
    report success and change nothing."""
    source = letter.letter.source_topic
    if source not in inputs:
        return (
            f"from internal topic {source}: it was not an input, so re-driving would only "
            "refuse it again; publish the input it stood for to its input topic instead"
        )
    if letter.letter.error.startswith(OVER_SHIPMENT):
        return (
            "an over-shipment: the rest of its shipment was applied and its shipment id is "
            "recorded, so intake would ignore it as a duplicate; check what really left, and "
            "once the line holds those units allocated, publish them as a shipment with a new "
            "shipment_id"
        )
    return None


@dataclass(frozen=True)
class Redrive:
    sent: list[Letter]
    kept: list[Kept]  # selected, but not re-drivable: each says why


async def redrive(
    settings: Settings,
    *,
    select: Callable[[Letter], bool],
    dry_run: bool = False,
) -> Redrive:
    """Re-publishes the selected letters to their source topics, but those `why_kept`
    keeps (from our internal topic, over-shipments).

    Safe to repeat: intake deduplicates what it already applied, and a message that is
    still bad is dead-lettered again, with its new reason."""
    inputs = settings.topics.inputs()
    letters: list[Letter] = []
    kept: list[Kept] = []
    for letter in await list_letters(settings):
        if not select(letter):
            continue
        why = why_kept(letter, inputs)
        if why is None:
            letters.append(letter)
        else:
            kept.append(Kept(letter.partition, letter.offset, letter.letter, why))
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
