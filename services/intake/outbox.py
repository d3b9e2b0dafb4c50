"""Intake's way out: its log, as messages for `sku-commands` (one partition per SKU, for
good; a tick to every partition) and for the dead-letter topic. The relay publishes what
this translates to."""

from __future__ import annotations

from typing import Any

from services.adapters.kafka import sku_partition
from services.adapters.relay import Outgoing, Translate
from services.adapters.settings import Settings
from services.intake.translate import sku_command_messages, tick_message
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
        tick = tick_message(event, notification_id)
        if tick is not None:  # every SKU must see it: one copy to every partition, no key
            value = tick.model_dump_json().encode()
            out += [
                Outgoing(topics.sku_commands, None, value, tick.position, partition)
                for partition in range(sku_partitions)
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
