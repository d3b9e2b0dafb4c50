"""Our internal topic `sku-commands` is written by intake's relay alone.

A message that the relay did not write is dead-lettered, once, and never applied; one that
it wrote and this version cannot read is never skipped (its commands are owed to the SKUs).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiokafka.structs import ConsumerRecord
from eventsourcing.persistence import Tracking

from events.commands import SkuCommands
from services.adapters.kafka import SOURCE_POSITION_HEADER
from services.adapters.settings import Settings
from services.allocation.application import Allocation
from services.allocation.consumer import UnreadableCommandError, decode
from services.allocation.outbox import allocation_outgoing
from services.entrypoints.bootstrap import build_allocation
from services.kernel.dead_letters import RefusedInput
from services.operations.replay import events_of
from tests.harness import consumer_record
from tests.histories import random_history, sku_states

TOPIC = "sku-commands"


def record(value: bytes, *, position: str | None, offset: int = 7) -> ConsumerRecord:
    headers = [] if position is None else [(SOURCE_POSITION_HEADER, position.encode())]
    return consumer_record(
        value, topic=TOPIC, key=b"SKU-0", partition=2, offset=offset, headers=headers
    )


def relayed(position_in_header: int | None = None) -> ConsumerRecord:
    """A message as intake's relay writes it (or with another position in its header)."""
    [message] = random_history(3, skus=1, inputs=1)
    header = message.position if position_in_header is None else position_in_header
    return record(message.model_dump_json().encode(), position=str(header))


def test_a_message_as_intake_relay_writes_it_is_read() -> None:
    decoded = decode(relayed())
    assert decoded.refusal is None
    assert isinstance(decoded.commands, SkuCommands)
    assert decoded.commands.sku == "SKU-0"


@pytest.mark.parametrize(
    ("value", "position"),
    [
        (b"not json at all", None),
        (b'{"sku": "SKU-0"}', None),
        (b"\xff\xfe binary", "not-a-number"),
    ],
)
def test_a_message_without_the_relay_mark_is_refused(value: bytes, position: str | None) -> None:
    decoded = decode(record(value, position=position))
    assert decoded.commands is None
    assert decoded.refusal is not None
    assert "not written by intake's relay" in decoded.refusal.error
    assert decoded.refusal.source["topic"] == TOPIC
    assert (decoded.refusal.source["partition"], decoded.refusal.source["offset"]) == (2, 7)


def test_a_valid_body_without_the_relay_mark_is_refused_not_applied() -> None:
    good = relayed()
    decoded = decode(record(good.value, position=None))
    assert decoded.commands is None
    assert decoded.refusal is not None


def test_a_message_whose_mark_disagrees_with_its_body_is_refused() -> None:
    decoded = decode(relayed(position_in_header=123_456))
    assert decoded.commands is None
    assert decoded.refusal is not None
    assert "header says 123456" in decoded.refusal.error


def test_a_relayed_message_this_version_cannot_read_stops_its_partition_not_skipped() -> None:
    with pytest.raises(UnreadableCommandError, match=r"intake position 5000.*waits"):
        decode(record(b'{"sku": "SKU-0", "position": 5000, "commands": "?"}', position="5000"))


def _dead_letters(allocation: Allocation) -> list[Any]:
    return [event for _, event in events_of(allocation) if isinstance(event, RefusedInput.Recorded)]


def test_a_refused_message_is_dead_lettered_once_however_often_it_is_delivered(
    tmp_path: Path,
) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path}/store")
    allocation = build_allocation(settings)
    refusal = decode(record(b"junk", position=None)).refusal
    assert refusal is not None
    history = random_history(4, skus=3, inputs=20)
    now = datetime.now(UTC)
    first = allocation.apply_commands(
        history[:10], Tracking(f"{TOPIC}-2", history[9].position), refused=[refusal], failed_at=now
    )
    again = allocation.apply_commands(history[10:], None, refused=[refusal], failed_at=now)
    alone = allocation.apply_commands([], None, refused=[refusal], failed_at=now)

    assert (len(first.dead_lettered), len(again.dead_lettered), len(alone.dead_lettered)) == (
        1,
        0,
        0,
    )
    [letter] = _dead_letters(allocation)
    assert letter.source["payload"] == "junk"
    # The allocation relay publishes it to the dead-letter topic, with the contract's fields.
    [notification_id] = [
        nid for nid, event in events_of(allocation) if isinstance(event, RefusedInput.Recorded)
    ]
    [outgoing] = allocation_outgoing(settings)(letter, notification_id)
    assert outgoing.topic == settings.topics.dead_letters
    assert b'"source_topic":"sku-commands"' in outgoing.value
    assert b"not written by intake's relay" in outgoing.value
    # The good messages around it were applied as if it had never been there.
    reference = build_allocation(Settings(database_url=f"sqlite:///{tmp_path}/reference"))
    reference.apply_commands(history, None)
    skus = ["SKU-0", "SKU-1", "SKU-2"]
    assert sku_states(allocation, skus) == sku_states(reference, skus)
