"""What every fault scenario shares: a workload flowing while faults are injected, then a
drain and the checker's verdict, printed as one summary line."""

from __future__ import annotations

import asyncio
import json
import os
import random
from collections.abc import Awaitable, Callable
from pathlib import Path

from services.adapters.settings import Settings
from services.adapters.store import is_postgres
from services.entrypoints.bootstrap import build_intake
from services.intake.application import Intake
from services.intake.domain import order_aggregate_id
from tests.harness import drained, isolated_settings, publish
from tests.reliability.checker import Report, check
from tests.reliability.workload import KINDS, Message, Workload, workload

ORDERS = int(os.environ.get("RELIABILITY_ORDERS", "2000"))
RESULTS = Path(os.environ.get("RELIABILITY_RESULTS", "data/reliability-results.jsonl"))


def scenario_settings(kafka: str, database_url: str, **overrides: object) -> Settings:
    options: dict[str, object] = {
        "kafka_session_timeout_ms": 6000,
        "batch_max_records": 200,
        **overrides,
    }
    return isolated_settings(kafka, database_url, **options)


async def publish_slowly(settings: Settings, work: Workload, *, seconds: float = 30) -> None:
    """Publishes the workload over about `seconds`, so that it flows while faults happen;
    a chunk is retried while the broker is away.

    A shipment is held back until intake has recorded the order it ships from: on another
    topic, it could otherwise be read first and be dead-lettered as unknown_order, and a
    dead-lettered shipment applies when it is delivered again (which the redelivery
    scenario does). The rest flows on meanwhile. Shipments still held when everything else
    is out (the service down for good) go out after a while anyway: unknown_order is then a
    legitimate outcome, which the checker accepts like any dead letter."""
    names = {kind: getattr(settings.topics, kind) for kind in KINDS}
    placements = _Placements(settings)
    chunk = max(1, len(work.messages) // 100)
    pause = seconds / 100
    held: list[Message] = []
    for start in range(0, len(work.messages), chunk):
        batch: list[Message] = []
        for kind, key, value in work.messages[start : start + chunk]:
            if kind == "shipments" and key not in work.unplaced:
                held.append((names[kind], key, value))
            else:
                batch.append((names[kind], key, value))
        ready, held = await placements.split(held)
        await _publish_retrying(settings, ready + batch)
        await asyncio.sleep(pause)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + HELD_SHIPMENTS_WAIT
    while held and loop.time() < deadline:
        ready, held = await placements.split(held)
        await _publish_retrying(settings, ready)
        await asyncio.sleep(0.5)
    await _publish_retrying(settings, held)


HELD_SHIPMENTS_WAIT = 30.0  # seconds a shipment waits for its order once the rest is out


async def _publish_retrying(settings: Settings, messages: list[Message]) -> None:
    if not messages:
        return
    for attempt in range(120):
        try:
            await publish(settings, messages)
            return
        except Exception:
            if attempt == 119:
                raise
            await asyncio.sleep(1.0)


class _Placements:
    """Which orders intake has recorded as placed, read from its store."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.intake: Intake | None = None
        self.known: set[str] = set()

    async def split(self, held: list[Message]) -> tuple[list[Message], list[Message]]:
        """The held shipments whose order is placed (in their order), and the others."""
        wanted = {key for _, key, _ in held if key is not None} - self.known
        if wanted:
            await asyncio.to_thread(self._look_up, wanted)
        ready = [message for message in held if message[1] in self.known]
        return ready, [message for message in held if message[1] not in self.known]

    def _look_up(self, order_ids: set[str]) -> None:
        try:
            if self.intake is None:
                self.intake = build_intake(self.settings)
            for order_id in sorted(order_ids):
                events = self.intake.recorder.select_events(order_aggregate_id(order_id))
                if any(event.topic.endswith(_PLACED) for event in events):
                    self.known.add(order_id)
        except Exception:  # the store is away (a fault, or not created yet): ask again later
            self.intake = None


_PLACED = (":Order.Placed", ":Order.PlacedAfterCancellation")


async def run_scenario(
    name: str,
    settings: Settings,
    tmp_path: Path,
    inject: Callable[[asyncio.Task[None]], Awaitable[int]],
    finish: Callable[[], Awaitable[None]],
    *,
    seed: int,
    orders: int = ORDERS,
    seconds: float = 30,
) -> Report:
    """Publishes a seeded workload while `inject` injects faults (returning how many); then
    `finish` leaves the service running clean, everything drains, and the checker judges."""
    work = workload(seed, orders=orders)
    publishing = asyncio.create_task(publish_slowly(settings, work, seconds=seconds))
    faults = await inject(publishing)
    await publishing
    await finish()
    await drained(settings)
    store = "postgres" if is_postgres(settings.database_url) else "sqlite"
    report = await check(settings, f"{name} [{store}]", faults, tmp_path)
    await asyncio.to_thread(_record, report, seed)
    return report


def _record(report: Report, seed: int) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS.open("a") as results:
        results.write(json.dumps({"line": report.line(), "ok": report.ok, "seed": seed}) + "\n")
    print(report.line())


def moments(seed: int, count: int, low: float = 1.0, high: float = 4.0) -> list[float]:
    rng = random.Random(seed)
    return [rng.uniform(low, high) for _ in range(count)]
