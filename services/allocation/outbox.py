"""Allocation's way out: its log, as decisions (key order_id) and dead letters. The relay
publishes what this translates to."""

from __future__ import annotations

from typing import Any

from services.adapters.relay import Outgoing, Translate
from services.adapters.settings import Settings
from services.allocation.translate import decision_message, over_shipment_letter
from services.kernel.dead_letters import dead_letter_message


def allocation_outgoing(settings: Settings) -> Translate:
    topics = settings.topics

    def translate(event: Any, notification_id: int) -> list[Outgoing]:
        decision = decision_message(event)
        if decision is not None:
            value = decision.model_dump_json().encode()
            return [Outgoing(topics.decisions, decision.order_id, value, notification_id)]
        dead = dead_letter_message(event) or over_shipment_letter(event)
        if dead is not None:
            value = dead.model_dump_json().encode()
            return [Outgoing(topics.dead_letters, dead.key, value, notification_id)]
        return []

    return translate
