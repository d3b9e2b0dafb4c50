"""In-process figures: the Sku aggregate, decoding, and the two applications on a store.

One big SKU (hot_sku, eta) is bench/one_sku.py."""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from aiokafka.structs import ConsumerRecord
from eventsourcing.application import Application
from eventsourcing.persistence import Tracking

from bench.workload import SkuCommand, order_bodies, sku_command_stream
from events.commands import SkuCommands
from services.adapters.kafka import tracking_name
from services.adapters.settings import Settings
from services.allocation.application import Allocation, apply_command
from services.allocation.domain import Cause, Sku
from services.entrypoints.bootstrap import build_allocation, build_intake
from services.intake.application import Input, Intake
from services.intake.consumer import IntakeHandler
from services.kernel.positions import IntakePosition

T = TypeVar("T")


def _rate(count: int, seconds: float) -> float:
    return round(count / seconds, 1) if seconds > 0 else 0.0


def _rounds(run: Callable[[], float], rounds: int) -> dict[str, float]:
    """Runs `run` (which returns its own timed seconds) and keeps the best and the median."""
    times = [run() for _ in range(rounds)]
    return {"best_s": round(min(times), 4), "median_s": round(statistics.median(times), 4)}


# --- 1. domain ---------------------------------------------------------------------------


def bench_domain(commands: int, skus: int, rounds: int, collect_every: int = 500) -> dict[str, Any]:
    """Sku commands applied in memory; pending events are collected every `collect_every`
    commands, as the application does once per batch."""
    stream = sku_command_stream(commands, skus)
    calls: list[tuple[str, Cause, SkuCommand]] = [
        (
            sku,
            Cause(
                command.causation_id,
                command.occurred_at,
                IntakePosition(n + 1).command_position,
            ),
            command,
        )
        for n, (sku, command) in enumerate(stream)
    ]
    events = 0

    def run() -> float:
        nonlocal events
        aggregates = {sku: Sku.register(sku) for sku in {sku for sku, _ in stream}}
        collected = 0
        started = time.perf_counter()
        for n, (sku, cause, command) in enumerate(calls, 1):
            aggregate = aggregates[sku]
            apply_command(aggregate, cause, command)
            if n % collect_every == 0:
                collected += sum(len(a.collect_events()) for a in aggregates.values())
        collected += sum(len(a.collect_events()) for a in aggregates.values())
        elapsed = time.perf_counter() - started
        events = collected
        return elapsed

    timing = _rounds(run, rounds)
    kinds = {
        kind: sum(type(c).__name__ == kind for _, c in stream)
        for kind in ("PlaceLine", "CancelLine", "ReceiveStock")
    }
    return {
        "commands": commands,
        "skus": skus,
        "mix": kinds,
        "events": events,
        "rounds": rounds,
        **timing,
        "commands_per_s": _rate(commands, timing["best_s"]),
        "events_per_s": _rate(events, timing["best_s"]),
    }


# --- 2. decode ---------------------------------------------------------------------------


def consumer_record(topic: str, offset: int, key: str, value: bytes) -> ConsumerRecord:
    return ConsumerRecord(
        topic=topic,
        partition=0,
        offset=offset,
        timestamp=int(time.time() * 1000),
        timestamp_type=0,
        key=key.encode(),
        value=value,
        checksum=None,
        serialized_key_size=len(key),
        serialized_value_size=len(value),
        headers=[],
    )


def bench_decode(messages: int, skus: int, rounds: int) -> dict[str, Any]:
    settings = Settings(database_url="sqlite:///unused/bench")
    handler = IntakeHandler(Intake(), settings)  # in-memory: decode never touches the store
    bodies = order_bodies(messages, skus).orders
    records = [
        consumer_record(settings.topics.orders, n, body["order_id"], json.dumps(body).encode())
        for n, body in enumerate(bodies)
    ]
    failures = sum(handler.decode(record).event is None for record in records)

    def run() -> float:
        started = time.perf_counter()
        for record in records:
            handler.decode(record)
        return time.perf_counter() - started

    timing = _rounds(run, rounds)
    return {
        "messages": messages,
        "mean_bytes": round(statistics.mean(len(r.value) for r in records)),
        "rejected": failures,
        "rounds": rounds,
        **timing,
        "messages_per_s": _rate(messages, timing["best_s"]),
    }


# --- 3. allocation_store -----------------------------------------------------------------


def _chunks(items: Sequence[T], size: int) -> list[Sequence[T]]:
    return [items[start : start + size] for start in range(0, len(items), size)]


def _close(app: Application[Any]) -> None:
    app.close()


def bench_allocation_store(
    database_url: str, commands: int, skus: int, batch: int
) -> dict[str, Any]:
    """One SkuCommands message per command (as the relay publishes one per notification and
    SKU), `batch` messages per apply_commands call: one transaction each."""
    stream = sku_command_stream(commands, skus, seed=3)
    messages = [
        SkuCommands(sku=sku, position=n + 1, commands=[command])
        for n, (sku, command) in enumerate(stream)
    ]
    app: Allocation = build_allocation(Settings(database_url=database_url))
    try:
        events = applied = 0
        batches = _chunks(messages, batch)
        started = time.perf_counter()
        for number, chunk in enumerate(batches):
            outcome = app.apply_commands(chunk, Tracking("bench.sku-commands-0", number))
            events += outcome.events
            applied += outcome.applied
        elapsed = time.perf_counter() - started
    finally:
        _close(app)
    return {
        "commands": commands,
        "batch": batch,
        "transactions": len(batches),
        "applied": applied,
        "events": events,
        "seconds": round(elapsed, 3),
        "commands_per_s": _rate(commands, elapsed),
        "events_per_s": _rate(events, elapsed),
        "ms_per_transaction": round(1000 * elapsed / len(batches), 3),
    }


# --- 4. intake_store ---------------------------------------------------------------------


def bench_intake_store(database_url: str, orders: int, skus: int, batch: int) -> dict[str, Any]:
    """Receipts, then orders, then cancellations (10% of orders), each topic in batches of
    `batch` decoded inputs: one record_inputs call (one transaction) per batch."""
    settings = Settings(database_url=database_url)
    topics = settings.topics
    work = order_bodies(orders, skus, seed=4, cancel_fraction=0.1)
    handler = IntakeHandler(Intake(), settings)
    by_topic: list[tuple[str, list[Input]]] = []
    for topic, bodies, key in (
        (topics.receipts, work.receipts, "sku"),
        (topics.orders, work.orders, "order_id"),
        (topics.cancellations, work.cancellations, "order_id"),
    ):
        records = [
            consumer_record(topic, n, body[key], json.dumps(body).encode())
            for n, body in enumerate(bodies)
        ]
        by_topic.append((topic, [handler.decode(record) for record in records]))
    total = sum(len(inputs) for _, inputs in by_topic)
    app: Intake = build_intake(settings)
    recorded = duplicates = dead = transactions = 0
    try:
        started = time.perf_counter()
        for topic, inputs in by_topic:
            for number, chunk in enumerate(_chunks(inputs, batch)):
                offset = number * batch + len(chunk) - 1
                outcome = app.record_inputs(
                    chunk,
                    Tracking(tracking_name(topic, 0), offset),
                    failed_at=datetime.now(UTC),
                )
                recorded += outcome.recorded
                duplicates += outcome.duplicates
                dead += len(outcome.dead_lettered)
                transactions += 1
        elapsed = time.perf_counter() - started
    finally:
        _close(app)
    return {
        "inputs": total,
        "mix": {
            name: len(inputs)
            for name, inputs in zip(
                ("receipts", "orders", "cancellations"), (i for _, i in by_topic), strict=True
            )
        },
        "batch": batch,
        "transactions": transactions,
        "recorded": recorded,
        "duplicates": duplicates,
        "dead_lettered": dead,
        "seconds": round(elapsed, 3),
        "inputs_per_s": _rate(total, elapsed),
        "ms_per_transaction": round(1000 * elapsed / max(1, transactions), 3),
    }
