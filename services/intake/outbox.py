"""Intake's way out: its log, as messages for `sku-commands` (one partition per SKU, for
good) and for the dead-letter topic. The relay publishes what this translates to."""

from __future__ import annotations

from typing import Any

from services.adapters.kafka import sku_partition
from services.adapters.relay import Outgoing, Translate
from services.adapters.settings import Settings
from services.intake.translate import sku_command_messages
from services.kernel.dead_letters import dead_letter_message


def intake_outgoing(settings: Settings, sku_partitions: int) -> Translate:
    """`sku_partitions` is the pinned sku-commands partition count (check_partition_count)."""
    topics = settings.topics

    def translate(event: Any, notification_id: int) -> list[Outgoing]:
        out = [
            Outgoing(
                topics.sku_commands,
                message.sku,
                message.model_dump_json().encode(),
                message.position,
                sku_partition(message.sku, sku_partitions),
            )
            for message in sku_command_messages(event, notification_id)
        ]
        dead = dead_letter_message(event)
        if dead is not None:
            out.append(
                Outgoing(
                    topics.dead_letters, dead.key, dead.model_dump_json().encode(), notification_id
                )
            )
        return out

    return translate
