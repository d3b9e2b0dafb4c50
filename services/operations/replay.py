"""Re-derive decisions from intake's recorded inputs, without Kafka.

Intake's log is the validated, deduplicated input history: applying it in order to a fresh
allocation store must give the same decisions, ids included, as the live service took.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from eventsourcing.application import Application

from events.commands import SkuCommandsMessage
from events.decisions import Decision
from services.allocation.application import Allocation
from services.allocation.translate import decision_message
from services.intake.application import Intake
from services.intake.translate import sku_command_messages, tick_message
from services.kernel.positions import IntakePosition

Progress = Callable[[int, int], None]


def events_of(app: Application[Any], page: int = 1000) -> Iterator[tuple[int, Any]]:
    """Every recorded event with its notification id, in log order."""
    position = 0
    while True:
        notifications = app.recorder.select_notifications(
            start=position, limit=page, inclusive_of_start=False
        )
        if not notifications:
            return
        for notification in notifications:
            yield notification.id, app.mapper.to_domain_event(notification)
        position = notifications[-1].id


def sku_commands_of(intake: Intake) -> Iterator[SkuCommandsMessage]:
    """What intake's relay would publish to sku-commands, a tick once (not per partition)."""
    for notification_id, event in events_of(intake):
        yield from sku_command_messages(event, notification_id)
        tick = tick_message(event, notification_id)
        if tick is not None:
            yield tick


def rederive(
    intake: Intake, into: Allocation, progress: Progress | None = None, batch: int = 500
) -> int:
    """Applies intake's whole log to `into`, in batches; returns the commands applied."""
    total = intake.recorder.max_notification_id() or 0
    pending: list[SkuCommandsMessage] = []
    applied = 0
    for message in sku_commands_of(intake):
        pending.append(message)
        if len(pending) >= batch:
            into.apply_commands(pending, tracking=None)
            applied += len(pending)
            if progress:
                progress(IntakePosition.of_message(message.position).notification_id, total)
            pending = []
    if pending:
        into.apply_commands(pending, tracking=None)
        applied += len(pending)
    if progress:
        progress(total, total)
    return applied


def decisions_of(allocation: Allocation) -> list[Decision]:
    """The decisions in the order the allocation store took them."""
    found = []
    for _, event in events_of(allocation):
        decision = decision_message(event)
        if decision is not None:
            found.append(decision)
    return found
