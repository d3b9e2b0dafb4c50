"""How fast an SRE's replays run: `fulfillment replay` (re-derive and compare), a what-if, and
`fulfillment restore --from-kafka`'s re-derivation, in commands a second.

    .venv/bin/python -m bench.run --only replay [--replay-orders N] [--stores sqlite,postgres]

`fulfillment replay` (and its what-if) are also run as an SRE runs them, in a process of
their own on the same stores, and timed from outside it.

The history is the reliability suite's workload (tests/reliability/workload.py: orders of
one to three lines, receipts, cancellations, policies, inbounds, shipments, clock ticks,
duplicates and malformed messages) recorded by intake's own handler, as its consumer
records a fetch (no broker: what is timed is the replay). The live allocation store is then
derived from it as the service would have, and the replays read both.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from aiokafka import TopicPartition

from bench.run import log
from services.adapters.settings import Settings
from services.allocation.application import Allocation
from services.entrypoints.bootstrap import build_allocation, build_intake
from services.intake.application import Intake
from services.intake.consumer import IntakeHandler
from services.operations.replay import MemoryAllocation, compare_job, in_shares, merged, rederive
from services.operations.restore import restore_allocation, restore_intake
from services.operations.what_if import parse_policy, what_if_in_shares
from tests.harness import consumer_record
from tests.reliability.workload import workload

FETCH = 500  # records per intake fetch, across the topics


def history_records(settings: Settings, orders: int, skus: int) -> list[Any]:
    """The workload as the consumer hands records to intake, in the order it takes them."""
    offsets: dict[TopicPartition, int] = defaultdict(int)
    records = []
    for kind, key, value in workload(11, orders=orders, skus=skus).messages:
        partition = TopicPartition(getattr(settings.topics, kind), 0)
        records.append(
            consumer_record(
                value,
                topic=partition.topic,
                key=key.encode() if key else None,
                offset=offsets[partition],
            )
        )
        offsets[partition] += 1
    return records


def record_history(intake: Intake, settings: Settings, records: list[Any]) -> list[Any]:
    """The records through intake's handler, a fetch at a time; returns them in the order
    it took them (a fetch's partitions one after the other), which a restore replays."""
    handler = IntakeHandler(intake, settings)
    taken: list[Any] = []
    for start in range(0, len(records), FETCH):
        fetch: dict[TopicPartition, list[Any]] = defaultdict(list)
        for record in records[start : start + FETCH]:
            fetch[TopicPartition(record.topic, record.partition)].append(record)
        handler.handle(dict(fetch))
        taken += [record for batch in fetch.values() for record in batch]
    return taken


CLI = str(Path(sys.executable).parent / "fulfillment")


def from_outside(url: str, *command: str) -> dict[str, Any]:
    """The command as an SRE runs it (`fulfillment replay ...` on the store), timed from
    outside its process: start-up, imports and the report included."""
    began = time.perf_counter()
    done = subprocess.run(
        [CLI, *command],
        env={**os.environ, "DATABASE_URL": url},
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    seconds = time.perf_counter() - began
    found = re.search(r"commands (\d+)", done.stdout)
    if done.returncode != 0 or found is None:
        raise RuntimeError(f"fulfillment {' '.join(command)} failed:\n{done.stdout}{done.stderr}")
    count = int(found.group(1))
    log(f"  fulfillment {' '.join(command)}: {count} commands in {seconds:.2f} s")
    return {
        "commands": count,
        "seconds": round(seconds, 3),
        "commands_per_s": round(count / seconds),
        "note": "the CLI, timed from outside its process",
    }


def bench_replay(url: str, *, args: Any, fresh_stores: Any) -> dict[str, Any]:
    """The figures on one store (args: bench.run's, for --replay-orders and --replay-skus;
    `fresh_stores`: bench.run's Stores, for an empty store of the same kind to restore into)."""
    orders, skus = args.replay_orders, args.replay_skus
    settings = Settings(database_url=url)
    intake, live = build_intake(settings), build_allocation(settings)
    started = time.perf_counter()
    records = history_records(settings, orders, skus)
    records = record_history(intake, settings, records)
    messages = len(records)
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

    def restored(into: str) -> dict[str, Any]:
        """`fulfillment restore`'s two re-derivations, into an empty store: intake's from
        the input records (in the order intake took them), allocation's from intake's log."""
        target = Settings(database_url=into)
        intake_again, allocation_again = build_intake(target), build_allocation(target)
        try:
            began = time.perf_counter()
            restore_intake(intake_again, target, records)
            intake_seconds = time.perf_counter() - began
            log(f"  restore, intake: {messages} inputs in {intake_seconds:.2f} s")
            found = timed(
                f"restore, allocation, {workers} workers",
                lambda: (
                    restore_allocation(
                        intake_again,
                        allocation_again,
                        target.topics.sku_commands,
                        target.sku_commands_partitions,
                        workers=workers,
                    ),
                    {"workers": workers},
                ),
            )
            return {
                "intake": {
                    "inputs": messages,
                    "seconds": round(intake_seconds, 3),
                    "inputs_per_s": round(messages / intake_seconds),
                },
                "allocation": found,
            }
        finally:
            intake_again.close()
            allocation_again.close()

    try:
        return {
            "inputs": messages,
            "intake_events": intake.recorder.max_notification_id() or 0,
            "replay": timed(f"replay, {workers} workers", compare(workers)),
            "replay_one_worker": timed("replay, 1 worker", compare(1)),
            "what_if_default_deny": timed(f"what-if deny, {workers} workers", deny(workers)),
            "what_if_one_worker": timed("what-if deny, 1 worker", deny(1)),
            "cli_replay": from_outside(url, "replay"),
            "cli_what_if_default_deny": from_outside(
                url, "replay", "--what-if", "--default-policy", "deny"
            ),
            "restore": restored(
                fresh_stores.url("sqlite" if url.startswith("sqlite") else "postgres")
            ),
            "into_the_store_by_batches": {
                "sku_messages": commands,
                "seconds": round(stored, 3),
                "note": "allocation's own batches into a store (what restore did before)",
            },
        }
    finally:
        intake.close()
        live.close()
