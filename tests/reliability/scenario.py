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
from tests.harness import drained, isolated_settings, publish
from tests.reliability.checker import Report, check
from tests.reliability.workload import Workload, workload

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
    a chunk is retried while the broker is away."""
    names = {
        "orders": settings.topics.orders,
        "cancellations": settings.topics.cancellations,
        "receipts": settings.topics.receipts,
    }
    messages = [(names[kind], key, value) for kind, key, value in work.messages]
    chunk = max(1, len(messages) // 100)
    pause = seconds / 100
    for start in range(0, len(messages), chunk):
        for attempt in range(120):
            try:
                await publish(settings, messages[start : start + chunk])
                break
            except Exception:
                if attempt == 119:
                    raise
                await asyncio.sleep(1.0)
        await asyncio.sleep(pause)


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
