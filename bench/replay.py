"""How fast an SRE's replays run: `fulfillment replay` (re-derive and compare), a what-if, and
`fulfillment restore --from-kafka`'s re-derivation, in commands a second.

    .venv/bin/python -m bench.run --only replay [--replay-orders N] [--stores sqlite,postgres]

The history is the reliability suite's workload (tests/reliability/workload.py: orders of
one to three lines, receipts, cancellations, policies, inbounds, shipments, clock ticks,
duplicates and malformed messages) recorded by intake's own handler, as its consumer
records a fetch (no broker: what is timed is the replay). The live allocation store is then
derived from it as the service would have, and the replays read both.
"""

from __future__ import annotations

import os
import time
from collections import defaultdict
from typing import Any

from aiokafka import TopicPartition

from bench.run import log
from services.adapters.settings import Settings
from services.allocation.application import Allocation
from services.entrypoints.bootstrap import build_allocation, build_intake
from services.intake.application import Intake
from services.intake.consumer import IntakeHandler
from services.operations.replay import MemoryAllocation, compare_job, in_shares, merged, rederive
from services.operations.what_if import parse_policy, what_if_in_shares
from tests.harness import consumer_record
from tests.reliability.workload import workload

FETCH = 500  # records per intake fetch, across the topics


def record_history(intake: Intake, settings: Settings, orders: int, skus: int) -> int:
    """The workload through intake's handler, a fetch at a time; returns the messages."""
    handler = IntakeHandler(intake, settings)
    offsets: dict[TopicPartition, int] = defaultdict(int)
    fetch: dict[TopicPartition, list[Any]] = defaultdict(list)
    messages = workload(11, orders=orders, skus=skus).messages
    for number, (kind, key, value) in enumerate(messages, start=1):
        partition = TopicPartition(getattr(settings.topics, kind), 0)
        fetch[partition].append(
            consumer_record(
                value,
                topic=partition.topic,
                key=key.encode() if key else None,
                offset=offsets[partition],
            )
        )
        offsets[partition] += 1
        if number % FETCH == 0:
            handler.handle(dict(fetch))
            fetch.clear()
    if fetch:
        handler.handle(dict(fetch))
    return len(messages)


def bench_replay(url: str, *, args: Any) -> dict[str, Any]:
    """The figures on one store (args: bench.run's, for --replay-orders and --replay-skus)."""
    orders, skus = args.replay_orders, args.replay_skus
    settings = Settings(database_url=url)
    intake, live = build_intake(settings), build_allocation(settings)
    started = time.perf_counter()
    messages = record_history(intake, settings, orders, skus)
    log(f"  intake recorded {messages} messages in {time.perf_counter() - started:.1f} s")
    started = time.perf_counter()
    commands = rederive(intake, live)
    stored = time.perf_counter() - started
    log(f"  live allocation derived: {commands} messages in {stored:.1f} s")

    def timed(name: str, run: Any) -> dict[str, Any]:
        began = time.perf_counter()
        count, extra = run()
        seconds = time.perf_counter() - began
        rate = count / seconds if seconds else 0.0
        log(f"  {name}: {count} commands in {seconds:.2f} s = {rate:,.0f} commands/s")
        return {
            "commands": count,
            "seconds": round(seconds, 3),
            "commands_per_s": round(rate),
            **extra,
        }

    workers = len(os.sched_getaffinity(0))

    def stores() -> tuple[Intake, Allocation]:
        return build_intake(settings), build_allocation(settings)

    def compare(processes: int) -> Any:
        def run() -> tuple[int, dict[str, Any]]:
            found = merged(in_shares(stores, MemoryAllocation(), compare_job, processes))
            assert found.identical, f"replay differs: {found.mismatched_skus[:5]}"
            return found.commands, {"workers": processes, "decisions": found.live}

        return run

    def deny(processes: int) -> Any:
        def run() -> tuple[int, dict[str, Any]]:
            engine = MemoryAllocation(default_policy=parse_policy("deny"))
            found = what_if_in_shares(stores, engine, processes)
            return found.commands, {
                "workers": processes,
                "lines_changed": found.totals.lines_changed,
            }

        return run

    try:
        return {
            "inputs": messages,
            "intake_events": intake.recorder.max_notification_id() or 0,
            "replay": timed(f"replay, {workers} workers", compare(workers)),
            "replay_one_worker": timed("replay, 1 worker", compare(1)),
            "what_if_default_deny": timed(f"what-if deny, {workers} workers", deny(workers)),
            "what_if_one_worker": timed("what-if deny, 1 worker", deny(1)),
            "into_the_store": {
                "sku_messages": commands,
                "seconds": round(stored, 3),
                "note": "re-derived into a store to keep (what restore does): every event written",
            },
        }
    finally:
        intake.close()
        live.close()
