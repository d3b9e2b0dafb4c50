"""The clock stage: time, published as an input (ClockTicked on the clock topic), so that
expiries are decided from recorded ticks and a replay sees the same time.

Of the processes that run the stage, the one that leads `clock` publishes; the others stand
by (services/adapters/leadership.py), so the ticks come at the configured pace however many
processes run it.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from datetime import UTC, datetime

from aiokafka import AIOKafkaProducer

from events.inputs import ClockTicked
from services.adapters.leadership import STANDBY_RETRY, Leadership
from services.adapters.logs import get_logger
from services.adapters.metrics import PUBLISHED
from services.adapters.retries import supervise
from services.adapters.settings import Settings

log = get_logger(__name__)


class Clock:
    """Publishes a tick every `clock_interval_seconds` while it leads."""

    def __init__(self, settings: Settings, producer: AIOKafkaProducer) -> None:
        self.settings = settings
        self.producer = producer
        self.stopping = asyncio.Event()

    async def run(self) -> None:
        if not self.settings.clock_interval_seconds:
            log.info("clock: CLOCK_INTERVAL_SECONDS=0, this process publishes no ticks")
            await self.stopping.wait()
            return
        leadership = Leadership(self.settings.database_url, "clock")
        try:
            await supervise(
                lambda: self._step(leadership), stopping=self.stopping, on_error=self._retrying
            )
        finally:
            await asyncio.to_thread(leadership.step_down)

    def stop(self) -> None:
        self.stopping.set()

    async def _step(self, leadership: Leadership) -> None:
        if not await asyncio.to_thread(leadership.lead):
            await self._sleep(STANDBY_RETRY)
            return
        await self._sleep(self.settings.clock_interval_seconds)  # a tick marks time passed
        if self.stopping.is_set():
            return
        tick = ClockTicked(event_id=uuid.uuid4(), occurred_at=datetime.now(UTC))
        topic = self.settings.topics.clock
        await self.producer.send_and_wait(topic, tick.model_dump_json().encode())
        PUBLISHED.labels(topic).inc()

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), seconds)

    def _retrying(self, error: Exception) -> None:
        log.warning("clock retrying after error", error=repr(error))
