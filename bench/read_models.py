"""How fast the read models follow the allocation log, and how fast they rebuild from zero.

    .venv/bin/python -m bench.read_models [--events N] [--stores sqlite,postgres]

Fills a fresh allocation store with a log of at least `--events` events (orders,
cancellations and receipts from bench/workload.py, with inbounds, receipts against them,
shipments and policies between them, applied with Allocation.apply_commands as the
allocation stage does), then times, per store:

- `catch_up`: the live feed (projections.runner.follow, streaming on) from zero to the head;
- `rebuild_all`: every read model rebuilt from zero (ReadModels.rebuild_all);
- `read_facts`: only reading the log as the read models do (AllocationLog: no SQL written);
- `answers`: milliseconds per answer of the insight questions and an order's decisions;
- `read_and_decode`: only reading it with the library (select_notifications) and decoding
  each event with the application's mapper, as the read models did before they read it
  themselves: the bound that this way of reading put on both figures.

Prints one JSON document (events/s of each, per store) on stdout; progress on stderr.
PostgreSQL comes from DATABASE_URL_TEST (or DATABASE_URL, or --postgres-url), in a fresh
`?schema=` dropped afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from eventsourcing.persistence import Tracking

from bench.run import Stores, log, machine, postgres_base, quiet_logging, stdout_to_stderr
from bench.workload import sku_command_stream, sku_names
from events.commands import (
    ExpectInbound,
    PlaceLine,
    ReceiveStock,
    SetPolicy,
    ShipLine,
    ShipmentSource,
    SkuCommand,
    SkuCommands,
)
from projections.insight_queries import InsightQueries
from projections.queries import Queries
from projections.runner import ReadModels, follow
from projections.store import ReadStore
from services.adapters.settings import Settings
from services.allocation.application import Allocation
from services.entrypoints.bootstrap import build_allocation
from tests.harness import T0

STORES = ("sqlite", "postgres")
EVENTS_PER_COMMAND = 1.6  # measured on this workload; only sizes the stream generated


def log_messages(commands: int, skus: int, seed: int = 7, supply: float = 2.0) -> list[SkuCommands]:
    """Each SKU's opening stock, then sku_command_stream's orders, cancellations and
    receipts (the receipts bringing `supply` times the demand since the last) and, between
    them, what a warehouse adds: inbounds (revised, and received against), shipments of
    placed lines (some asking more than the line holds: refused) and now and then a backorder
    policy. One message per command, positions growing, as the relay numbers them."""
    rng = random.Random(seed)
    placed: dict[str, list[tuple[str, str]]] = defaultdict(list)
    inbounds: dict[str, list[str]] = defaultdict(list)
    messages: list[SkuCommands] = []

    def add(sku: str, command: SkuCommand) -> None:
        messages.append(SkuCommands(sku=sku, position=len(messages) + 1, commands=[command]))

    def cause(when: datetime) -> dict[str, Any]:
        return {"causation_id": uuid.UUID(int=rng.getrandbits(128), version=4), "occurred_at": when}

    for number, sku in enumerate(sku_names(skus)):  # what each SKU has when the log starts
        opening = cause(T0 - timedelta(hours=1))
        add(
            sku, ReceiveStock(**opening, receipt_id=f"R-open-{number}", quantity=rng.randint(5, 40))
        )
    stream = sku_command_stream(commands, skus, seed=seed, supply=supply)
    for index, (sku, planned) in enumerate(stream):
        command = planned
        if isinstance(planned, ReceiveStock) and inbounds[sku] and rng.random() < 0.5:
            command = planned.model_copy(update={"inbound_id": rng.choice(inbounds[sku])})
        add(sku, command)
        if isinstance(command, PlaceLine):
            placed[sku].append((command.order_id, command.line_id))
        when = command.occurred_at + timedelta(milliseconds=500)
        roll = rng.random()
        if roll < 0.15 and placed[sku]:
            order_id, line_id = placed[sku][rng.randrange(len(placed[sku]))]
            add(
                sku,
                ShipLine(
                    **cause(when),
                    shipment_id=f"SH-{index}",
                    order_id=order_id,
                    line_id=line_id,
                    quantity=rng.randint(1, 2),
                    source=ShipmentSource(topic="shipments", partition=0, offset=index),
                ),
            )
        elif roll < 0.20:
            if not inbounds[sku] or rng.random() < 0.5:
                inbounds[sku].append(f"PO-{index}")
            add(
                sku,
                ExpectInbound(
                    **cause(when),
                    inbound_id=rng.choice(inbounds[sku]),
                    quantity=rng.choice([0, rng.randint(1, 20), rng.randint(1, 20)]),
                    expected_at=when + timedelta(days=rng.uniform(1, 20)),
                ),
            )
        elif roll < 0.203:
            backorders = rng.choice(["allow", "allow", "limit", "deny"])
            add(
                sku,
                SetPolicy(
                    **cause(when),
                    backorders=backorders,
                    limit=rng.randint(5, 50) if backorders == "limit" else None,
                ),
            )
    return messages


def fill(url: str, events: int, skus: int, batch: int = 500) -> Allocation:
    """A fresh allocation store whose log holds at least `events` events."""
    allocation: Allocation = build_allocation(Settings(database_url=url))
    messages = log_messages(int(events / EVENTS_PER_COMMAND) + 1000, skus)
    started = time.perf_counter()
    for number, start in enumerate(range(0, len(messages), batch)):
        chunk = messages[start : start + batch]
        allocation.apply_commands(chunk, Tracking("bench.sku-commands-0", number))
        if (allocation.recorder.max_notification_id() or 0) >= events:
            break
    head = allocation.recorder.max_notification_id() or 0
    log(f"  log filled: {head} events in {time.perf_counter() - started:.1f} s")
    if head < events:
        log(f"  (the workload gave {head} events, fewer than the {events} asked for)")
    return allocation


def _rate(count: int, seconds: float) -> float:
    return round(count / seconds, 1) if seconds > 0 else 0.0


def time_catch_up(models: ReadModels, head: int) -> dict[str, Any]:
    """The live feed from zero to the head: `follow` as the service runs it, streaming on."""

    async def run() -> float:
        stopping = asyncio.Event()
        started = time.perf_counter()
        feed = asyncio.create_task(follow(models, stopping))
        # The bench watches the position from outside the feed (the feed is what is timed).
        while await asyncio.to_thread(models.position) < head:  # noqa: ASYNC110
            await asyncio.sleep(0.005)
        elapsed = time.perf_counter() - started
        stopping.set()
        await feed
        return elapsed

    seconds = asyncio.run(run())
    queued = models.store.read("SELECT COUNT(*) AS n FROM projection_outbox")[0]["n"]
    return {
        "events": head,
        "seconds": round(seconds, 3),
        "events_per_s": _rate(head, seconds),
        "changes_streamed": int(queued),
    }


def time_rebuild_all(models: ReadModels, head: int) -> dict[str, Any]:
    started = time.perf_counter()
    models.rebuild_all()
    seconds = time.perf_counter() - started
    return {"events": head, "seconds": round(seconds, 3), "events_per_s": _rate(head, seconds)}


def time_read_and_decode(allocation: Allocation, head: int, page: int = 5000) -> dict[str, Any]:
    """Reading every notification and decoding it once: no read model is written."""
    recorder, mapper = allocation.recorder, allocation.mapper
    position = 0
    started = time.perf_counter()
    while True:
        notifications = recorder.select_notifications(
            start=position, limit=page, inclusive_of_start=False
        )
        if not notifications:
            break
        for notification in notifications:
            mapper.to_domain_event(notification)
        position = notifications[-1].id
    seconds = time.perf_counter() - started
    return {"events": head, "seconds": round(seconds, 3), "events_per_s": _rate(head, seconds)}


def time_read_facts(models: ReadModels, head: int, page: int = 5000) -> dict[str, Any]:
    """Reading every event as the read models do (AllocationLog): no read model is written."""
    position = 0
    started = time.perf_counter()
    while (found := models.log.page(position, page)).count:
        position = found.last
    seconds = time.perf_counter() - started
    return {"events": head, "seconds": round(seconds, 3), "events_per_s": _rate(head, seconds)}


def time_answers(models: ReadModels, calls: int = 20) -> dict[str, Any]:
    """Milliseconds per answer (median and worst of `calls`) of the planners' questions and
    an order's decisions, asked as the API asks them, over the caught-up read models."""
    insights = InsightQueries(models.store)
    queries = Queries(models.store)
    now = datetime.now(UTC)
    start, end = insights.window(None, None)
    short = insights.shortages(start, end, 20, now)
    sku = short[0]["sku"] if short else "SKU-0"
    order = models.store.read("SELECT order_id FROM order_lines LIMIT 1")[0]["order_id"]
    questions: dict[str, Callable[[], object]] = {
        "shortages_top20": lambda: insights.shortages(start, end, 20, now),
        "overview_30_days": lambda: insights.overview(start, end, "day", now),
        "sku_series_30_days": lambda: insights.sku(sku, start, end, "day", now),
        "slow_movers_top50": lambda: insights.slow_movers(30, end, 50),
        "order_decisions": lambda: queries.decisions(order),
    }
    timings: dict[str, Any] = {}
    for name, ask in questions.items():
        seconds = []
        for _ in range(calls):
            started = time.perf_counter()
            ask()
            seconds.append(time.perf_counter() - started)
        seconds.sort()
        timings[name] = {
            "median_ms": round(seconds[len(seconds) // 2] * 1000, 2),
            "max_ms": round(seconds[-1] * 1000, 2),
        }
    return timings


def bench_store(url: str, events: int, skus: int) -> dict[str, Any]:
    allocation = fill(url, events, skus)
    head = allocation.recorder.max_notification_id() or 0
    store = ReadStore(url)
    try:
        models = ReadModels(store, allocation)
        result: dict[str, Any] = {
            "log_events": head,
            "read_and_decode": time_read_and_decode(allocation, head),
            "read_facts": time_read_facts(models, head),
            "catch_up": time_catch_up(models, head),
            "rebuild_all": time_rebuild_all(models, head),
            "answers": time_answers(models),
        }
        log(
            f"  catch_up {result['catch_up']['events_per_s']:,.0f} events/s, "
            f"rebuild_all {result['rebuild_all']['events_per_s']:,.0f} events/s"
        )
        return result
    finally:
        store.close()
        allocation.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.read_models", description=__doc__)
    parser.add_argument("--events", type=int, default=100_000, help="log events (at least)")
    parser.add_argument("--stores", default=",".join(STORES), help="sqlite, postgres or both")
    parser.add_argument("--skus", type=int, default=2_000, help="SKUs the log spreads over")
    parser.add_argument("--postgres-url", default=None, help="base PostgreSQL URL")
    args = parser.parse_args(argv)
    kinds = [kind.strip() for kind in args.stores.split(",") if kind.strip()]
    unknown = sorted(set(kinds) - set(STORES))
    if unknown:
        raise SystemExit(f"unknown store: {', '.join(unknown)}")
    quiet_logging()
    results: dict[str, Any] = {}
    with stdout_to_stderr():
        facts = machine()
        stores = Stores(postgres_base(args.postgres_url) if "postgres" in kinds else None, False)
        try:
            for kind in kinds:
                log(f"read models [{kind}]")
                results[kind] = bench_store(stores.url(kind), args.events, args.skus)
        finally:
            stores.close()
    document = {
        "benchmark": "read_models",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": facts,
        "events": args.events,
        "skus": args.skus,
        "results": results,
    }
    print(json.dumps(document, indent=2))


if __name__ == "__main__":
    main()
