"""Streams read-model changes to Kafka from the outbox the runner fills in its transactions.

Values are the rows' current state and keys are stable (`sku|day`, `order_id|line_id`; a
tombstone when a backorder closes), so the topics can be compacted and a resend after a
crash is harmless: the last message per key is always the row as it is.
"""

from __future__ import annotations

import asyncio
import contextlib

from aiokafka import AIOKafkaProducer

from projections.runner import ReadModels
from services.adapters.leadership import STANDBY_RETRY, Leadership
from services.adapters.logs import get_logger
from services.adapters.metrics import PUBLISHED
from services.adapters.retries import supervise
from services.adapters.settings import Settings
from services.adapters.wakeup import Wakeup

log = get_logger(__name__)


async def publish_changes(
    models: ReadModels,
    producer: AIOKafkaProducer,
    settings: Settings,
    stopping: asyncio.Event,
    changed: Wakeup | None = None,
) -> None:
    """Publishes the outbox in order while this process leads (see services.adapters.leadership).

    With the outbox empty it waits for `changed` (which the read models' feed sets after a
    commit that queued changes: projections.runner.follow) for at most its idle interval;
    without one, it polls at that interval."""
    topics = {
        "demand-history": settings.topics.demand_history,
        "backorder-queue": settings.topics.backorder_queue,
    }
    leadership = Leadership(settings.database_url, "projections:publish")

    async def step() -> None:
        idle = settings.relay_idle_interval * 4
        if not await asyncio.to_thread(leadership.lead):
            idle = STANDBY_RETRY  # another process publishes the changes
        elif await _publish_page(models, producer, topics):
            return
        elif changed is not None:
            await changed.wait(idle, stopping)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), timeout=idle)

    def retrying(error: Exception) -> None:
        log.warning("read-model publisher retrying after error", error=repr(error))

    try:
        await supervise(step, stopping=stopping, on_error=retrying)
    finally:
        await asyncio.to_thread(leadership.step_down)


async def _publish_page(
    models: ReadModels, producer: AIOKafkaProducer, topics: dict[str, str]
) -> bool:
    """Publishes the oldest page of the outbox, then forgets it; False if it was empty."""
    rows = await asyncio.to_thread(models.outbox)
    if not rows:
        return False
    futures = [
        await producer.send(
            topics[row["topic"]],
            value=None if row["value"] is None else str(row["value"]).encode(),
            key=str(row["key"]).encode(),
        )
        for row in rows
    ]
    await asyncio.gather(*futures)
    await asyncio.to_thread(models.forget_outbox, max(int(r["id"]) for r in rows))
    for row in rows:
        PUBLISHED.labels(topics[row["topic"]]).inc()
    return True
