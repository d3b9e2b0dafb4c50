"""Relays: publish an application's notification log to Kafka, in order, at least once.

The position is recorded after the broker acknowledged; a crash in between resends a few
messages, which consumers make harmless (allocation tracks positions, outside consumers
dedupe on decision_id, the DLQ carries the source coordinates).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaProducer
from eventsourcing.application import Application
from eventsourcing.persistence import Notification, ProcessRecorder, Recording, Tracking

from services.adapters.faults import crash_point
from services.adapters.kafka import SOURCE_POSITION_HEADER
from services.adapters.leadership import STANDBY_RETRY, Leadership
from services.adapters.logs import get_logger
from services.adapters.metrics import PUBLISHED, RELAY_POSITION
from services.adapters.retries import supervise
from services.adapters.settings import Settings
from services.adapters.wakeup import Wakeup

log = get_logger(__name__)

# The longest a relay under load goes without writing how far it got (see Relay._record).
RECORD_EVERY_SECONDS = 0.5
# The most events a relay keeps from its writer's commits while it cannot publish them (a
# standby, a broker outage); older ones are dropped and read from the store when needed.
FRESH_LIMIT = 50_000


@dataclass(frozen=True)
class Outgoing:
    topic: str
    key: str | None
    value: bytes
    position: int
    partition: int | None = None  # None: the producer's partitioner picks it by key


Translate = Callable[[Any, int], list[Outgoing]]


class Relay:
    """Follows one application's notification log and publishes what it translates to."""

    def __init__(
        self,
        name: str,
        app: Application[Any],
        translate: Translate,
        producer: AIOKafkaProducer,
        settings: Settings,
        *,
        wakeup: Wakeup | None = None,
    ) -> None:
        self.name = name
        # Set when the log has a new commit (see services.adapters.wakeup); without one the
        # relay looks again every relay_idle_interval.
        self.wakeup = wakeup
        self.app = app
        self.translate = translate
        self.producer = producer
        self.settings = settings
        self.stopping = asyncio.Event()
        self.tracking_name = f"relay:{name}"
        self.published: int | None = None  # how far it got; None: ask the store
        self.recorded: int | None = None  # how far the store says it got
        # What the log's writer in this process just committed, in log order (see offer).
        self.fresh: deque[tuple[int, Any]] = deque(maxlen=FRESH_LIMIT)
        self.recorded_at = 0.0

    @property
    def recorder(self) -> ProcessRecorder:
        recorder = self.app.recorder
        assert isinstance(recorder, ProcessRecorder)
        return recorder

    def position(self) -> int:
        return self.recorder.max_tracking_id(self.tracking_name) or 0

    def offer(self, recordings: Sequence[Recording[Any]]) -> None:
        """Called by the log's writer in this process after each commit (from its thread)."""
        self.fresh.extend((r.notification.id, r.domain_event) for r in recordings)

    def _take_fresh(self, after: int) -> list[tuple[int, Any]] | None:
        """The events the writer handed over that follow `after` without a gap, or None if
        they do not start right after it (a restart, another writer, an id the store
        skipped): then the store is read, as it always can be."""
        fresh = self.fresh
        while fresh and fresh[0][0] <= after:
            fresh.popleft()
        if not fresh or fresh[0][0] != after + 1:
            return None
        taken: list[tuple[int, Any]] = []
        while fresh and len(taken) < self.settings.relay_batch_size:
            if fresh[0][0] != after + 1 + len(taken):
                break
            taken.append(fresh.popleft())
        return taken

    def _read(self, after: int) -> tuple[list[Outgoing], int]:
        events = self._take_fresh(after)
        if events is None:
            notifications: Sequence[Notification] = self.recorder.select_notifications(
                start=after, limit=self.settings.relay_batch_size, inclusive_of_start=False
            )
            events = [(n.id, self.app.mapper.to_domain_event(n)) for n in notifications]
        out: list[Outgoing] = []
        for notification_id, event in events:
            out.extend(self.translate(event, notification_id))
        last = events[-1][0] if events else after
        return out, last

    async def run(self) -> None:
        leadership = Leadership(self.settings.database_url, f"relay:{self.name}")
        self.published = self.recorded = await asyncio.to_thread(self.position)
        log.info("relay started", relay=self.name, position=self.published)
        try:
            await supervise(
                lambda: self._step(leadership), stopping=self.stopping, on_error=self._retrying
            )
            if leadership.leading and self.published is not None:
                await asyncio.to_thread(self._record, self.published)  # a clean stop: exact
        finally:
            await asyncio.to_thread(leadership.step_down)

    def _retrying(self, error: Exception) -> None:
        log.warning("relay retrying after error", relay=self.name, error=repr(error))
        self.published = None  # the store says how far we got before the error

    async def _step(self, leadership: Leadership) -> None:
        """Publishes one batch of the log while leading, or waits for more (or for the lead)."""
        was_leading = leadership.leading
        if not await asyncio.to_thread(leadership.lead):
            await self._idle(STANDBY_RETRY)  # another process publishes this log
            return
        if self.published is None or not was_leading:  # another leader may have moved it on
            self.published = self.recorded = await asyncio.to_thread(self.position)
        position = self.published
        out, last = await asyncio.to_thread(self._read, position)
        if last == position:
            await self._idle()
            return
        await self.publish(out)
        crash_point("relay.after_publish")
        self.published = last
        RELAY_POSITION.labels(self.name).set(last)
        caught_up = len(out) < self.settings.relay_batch_size
        if caught_up or time.monotonic() - self.recorded_at >= RECORD_EVERY_SECONDS:
            await asyncio.to_thread(self._record, last)

    def _record(self, position: int) -> None:
        """Writes how far the relay got. Not after every batch under load: each is a commit
        of its own, and a crash between two only resends what consumers skip anyway."""
        if self.recorded is not None and position <= self.recorded:
            return
        self.recorder.insert_tracking(Tracking(self.tracking_name, position))
        self.recorded, self.recorded_at = position, time.monotonic()

    async def publish(self, out: Sequence[Outgoing]) -> None:
        """Sends `out` as one record batch per partition (in order within each), and returns
        once the broker acknowledged all of it.

        aiokafka's per-message `send` costs a future, a metadata lookup and a partitioner
        call per message, a tenth of a relay's time under load (profiled); `send_batch` takes
        what we already grouped. Partitions are chosen as `send` would (explicit, else the
        producer's partitioner over the key), so keys keep their partitions."""
        batches: dict[tuple[str, int], Any] = {}
        sent: list[asyncio.Future[Any]] = []
        for topic in {item.topic for item in out}:
            await self.producer.client._wait_on_metadata(topic)
        for item in out:
            key = None if item.key is None else item.key.encode()
            partition = self.producer._partition(
                item.topic, item.partition, None, None, key, item.value
            )
            headers = [(SOURCE_POSITION_HEADER, str(item.position).encode())]
            batch = batches.get((item.topic, partition))
            if batch is None:
                batch = batches[(item.topic, partition)] = self.producer.create_batch()
            if batch.append(timestamp=None, key=key, value=item.value, headers=headers) is None:
                sent.append(await self.producer.send_batch(batch, item.topic, partition=partition))
                batch = batches[(item.topic, partition)] = self.producer.create_batch()
                appended = batch.append(timestamp=None, key=key, value=item.value, headers=headers)
                assert appended is not None, "a message larger than the producer's batch size"
        for (topic, partition), batch in batches.items():
            sent.append(await self.producer.send_batch(batch, topic, partition=partition))
        for acknowledged in sent:
            await acknowledged
        for item in out:
            PUBLISHED.labels(item.topic).inc()

    async def _idle(self, seconds: float | None = None) -> None:
        if seconds is None and self.wakeup is not None:
            await self.wakeup.wait(self.settings.relay_idle_interval, self.stopping)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                self.stopping.wait(), timeout=seconds or self.settings.relay_idle_interval
            )

    def stop(self) -> None:
        self.stopping.set()
