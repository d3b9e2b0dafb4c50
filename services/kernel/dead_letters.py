"""What both applications share about inputs they refuse: where the input came from, the
record of the refusal (an aggregate of either application's store), and its DLQ message.

A refusal is stored, not just published, so that it is published once, in the same
transaction as the position that consumed it, and survives a crash before the relay runs.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypedDict
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate
from eventsourcing.utils import register_topic

from events.dead_letters import DeadLetter

REFUSED_INPUT_NAMESPACE = uuid5(NAMESPACE_URL, "urn:fulfillment:dead-letter")


class Source(TypedDict):
    """Where a message came from, kept so that it can still be dead-lettered later."""

    topic: str
    partition: int
    offset: int
    key: str | None
    payload: str
    payload_encoding: str


def refused_input_id(topic: str, partition: int, offset: int) -> UUID:
    """One refusal per Kafka message, however often the message is delivered."""
    return uuid5(REFUSED_INPUT_NAMESPACE, f"{topic}\n{partition}\n{offset}")


class RefusedInput(Aggregate):
    """An input that was not applied, and why; the relay publishes it to the DLQ topic."""

    class Recorded(Aggregate.Created):
        source: Source
        error: str
        failed_at: datetime

    def __init__(self, source: Source, error: str, failed_at: datetime) -> None:
        self.source = source
        self.error = error
        self.failed_at = failed_at

    @classmethod
    def record(cls, source: Source, error: str, failed_at: datetime) -> RefusedInput:
        return cls._create(
            cls.Recorded,
            id=refused_input_id(source["topic"], source["partition"], source["offset"]),
            source=source,
            error=error,
            failed_at=failed_at,
        )


# Stores written before this class moved here (it was intake's `DeadLetter`) name it by its
# old module path; eventsourcing resolves stored topics through this registry.
register_topic("services.intake.domain:DeadLetter", RefusedInput)
register_topic("services.intake.domain:DeadLetter.Recorded", RefusedInput.Recorded)


def dead_letter_message(event: Any) -> DeadLetter | None:
    """The DLQ message of a recorded refusal; None for any other event."""
    if not isinstance(event, RefusedInput.Recorded):
        return None
    source = event.source
    return DeadLetter(
        source_topic=source["topic"],
        partition=source["partition"],
        offset=source["offset"],
        key=source["key"],
        error=event.error,
        payload=source["payload"],
        payload_encoding="base64" if source["payload_encoding"] == "base64" else "utf-8",
        failed_at=event.failed_at,
    )
