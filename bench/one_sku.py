"""One SKU with a long history (hot_sku) or a long queue (eta), through the Allocation
application on a real store and, for eta, in memory on the Sku.

hot_sku shows that a SKU's cost follows its open lines, not its history: commands/s,
snapshot size and cold load time stay flat over 100,000 lines placed, filled and shipped.
eta shows what keeping promised dates costs a command on a SKU with a long queue: the Sku
looks only at lines near inbound boundaries, never walks the queue.
"""

from __future__ import annotations

import bisect
import statistics
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from itertools import accumulate
from typing import Any, Literal
from uuid import UUID

from eventsourcing.application import Application, ProcessingEvent
from eventsourcing.domain import DomainEventProtocol
from eventsourcing.persistence import AggregateRecorder, EventStore, Mapper, Recording, Tracking

from bench.workload import ETA_PROBES, EtaWorkload, eta_workload, hot_sku_messages
from events.commands import SkuCommands
from events.topics import DEFAULT_TOPICS
from services.adapters.kafka import tracking_name
from services.adapters.settings import Settings
from services.adapters.store import application_env, ensure_schema
from services.allocation.application import Allocation, apply_command
from services.allocation.domain import Cause, Sku, sku_aggregate_id
from services.entrypoints.bootstrap import build_allocation, cache_env
from services.kernel.positions import IntakePosition

Snapshotting = Literal["service", "eventsourcing"]
SNAPSHOTTING: tuple[Snapshotting, ...] = ("service", "eventsourcing")
TRACKING = tracking_name(DEFAULT_TOPICS["sku_commands"], 0)


def _rate(count: int, seconds: float) -> float:
    return round(count / seconds, 1) if seconds > 0 else 0.0


def _chunks(items: Sequence[SkuCommands], size: int) -> list[Sequence[SkuCommands]]:
    return [items[start : start + size] for start in range(0, len(items), size)]


# --- the application, measured ------------------------------------------------------------


class CountingSnapshots(EventStore[UUID]):
    """The snapshot store, counting the snapshots put in it."""

    def __init__(self, mapper: Mapper[UUID], recorder: AggregateRecorder) -> None:
        super().__init__(mapper, recorder)
        self.taken = 0

    def put(
        self, domain_events: Sequence[DomainEventProtocol[UUID]], **kwargs: Any
    ) -> list[Recording[UUID]]:
        self.taken += len(domain_events)
        return super().put(domain_events, **kwargs)


class MeasuredAllocation(Allocation):
    """The service's Allocation, unchanged, plus the time its snapshots take and their
    count: what the snapshot override is for is seen, not guessed."""

    name = "allocation"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.snapshot_seconds = 0.0
        super().__init__(*args, **kwargs)

    def construct_snapshot_store(self) -> EventStore[UUID]:
        recorder = self.factory.aggregate_recorder(purpose="snapshots")
        return CountingSnapshots(self.mapper, recorder)

    @property
    def snapshots_taken(self) -> int:
        return self.snapshots.taken if isinstance(self.snapshots, CountingSnapshots) else 0

    def _take_snapshots(self, processing: ProcessingEvent[UUID]) -> None:
        started = time.perf_counter()
        self._snapshot(processing)
        self.snapshot_seconds += time.perf_counter() - started

    def _snapshot(self, processing: ProcessingEvent[UUID]) -> None:
        super()._take_snapshots(processing)


class EventsourcingSnapshotting(MeasuredAllocation):
    """Allocation without its snapshot override: eventsourcing 9.5's own
    Application._take_snapshots, a snapshot at every multiple of snapshotting_intervals[Sku]
    (500) events, each of the SKU re-read from the store at that version (take_snapshot:
    the last snapshot at or before it, then the events after it)."""

    name = "allocation"  # else eventsourcing names it after the class: other PG tables

    def _snapshot(self, processing: ProcessingEvent[UUID]) -> None:
        Application._take_snapshots(self, processing)


def open_allocation(
    database_url: str, snapshotting: Snapshotting = "service"
) -> MeasuredAllocation:
    """As services.entrypoints.bootstrap.build_allocation builds it (same environment)."""
    settings = Settings(database_url=database_url)
    ensure_schema(database_url)
    env = application_env(database_url, "allocation", **cache_env(settings))
    kind = EventsourcingSnapshotting if snapshotting == "eventsourcing" else MeasuredAllocation
    return kind(env=env)


def _feed(app: Allocation, messages: Sequence[SkuCommands], batch: int) -> tuple[list[float], int]:
    """`batch` messages per apply_commands call (one transaction), tracked as the consumer
    tracks them; returns each transaction's seconds and the events recorded."""
    seconds, events = [], 0
    for chunk in _chunks(messages, batch):
        started = time.perf_counter()
        outcome = app.apply_commands(chunk, Tracking(TRACKING, chunk[-1].position))
        seconds.append(time.perf_counter() - started)
        events += outcome.events
    return seconds, events


def _last_snapshot(app: Allocation, sku: str) -> tuple[int, int] | None:
    """(bytes, version) of the SKU's newest snapshot in the store, if it has one."""
    assert app.snapshots is not None
    found = app.snapshots.recorder.select_events(sku_aggregate_id(sku), desc=True, limit=1)
    return (len(found[0].state), found[0].originator_version) if found else None


def _cold_load(database_url: str, sku: str, tries: int = 3) -> tuple[float, Sku]:
    """Milliseconds for a fresh Allocation (nothing cached) to read the SKU: its newest
    snapshot and the events after it. Best of `tries`, each a new application."""
    best = float("inf")
    loaded: Sku | None = None
    for _ in range(tries):
        cold = build_allocation(Settings(database_url=database_url))
        try:
            started = time.perf_counter()
            found: Sku = cold.repository.get(sku_aggregate_id(sku))
            best = min(best, time.perf_counter() - started)
        finally:
            cold.close()
        assert isinstance(found, Sku)
        loaded = found
    assert loaded is not None
    return round(1000 * best, 1), loaded


def _look_at(app: Allocation, database_url: str, sku: str) -> dict[str, Any]:
    """The SKU's size now: open lines, its state encoded as a snapshot would be, its newest
    stored snapshot, and a cold load."""
    aggregate = app.sku(sku)
    state = app.mapper.to_stored_event(Sku.Snapshot.take(aggregate)).state
    snapshot = _last_snapshot(app, sku)
    cold_ms, loaded = _cold_load(database_url, sku)
    assert loaded.version == aggregate.version
    assert len(loaded.lines) == len(aggregate.lines)
    return {
        "lines_held": len(aggregate.lines),
        "queued_lines": len(aggregate.queue),
        "state_bytes": len(state),
        "last_snapshot_bytes": snapshot[0] if snapshot else None,
        "events_after_last_snapshot": aggregate.version - snapshot[1] if snapshot else None,
        "cold_load_ms": cold_ms,
    }


# --- hot_sku ------------------------------------------------------------------------------


class _Part:
    """A stretch of the run: its time, its commands, the snapshots taken in it."""

    def __init__(self, app: MeasuredAllocation) -> None:
        self.app = app
        self.transactions: list[float] = []
        self.commands = 0
        self._snapshots = app.snapshots_taken
        self._snapshot_seconds = app.snapshot_seconds

    @property
    def seconds(self) -> float:
        return sum(self.transactions)

    def figures(self) -> dict[str, Any]:
        """Commands/s over the stretch, and from its median transaction: the median shrugs
        off a pause the machine took for something else."""
        median = statistics.median(self.transactions)
        return {
            "commands": self.commands,
            "commands_per_s": _rate(self.commands, self.seconds),
            "median_transaction_ms": round(1000 * median, 1),
            "commands_per_s_at_median": _rate(self.commands, median * len(self.transactions)),
            "snapshots_taken": self.app.snapshots_taken - self._snapshots,
            "snapshot_seconds": round(self.app.snapshot_seconds - self._snapshot_seconds, 3),
        }


def bench_hot_sku(
    database_url: str,
    lines: int,
    batch: int,
    *,
    queued: int = 1_000,
    unshipped: int = 1_000,
    snapshotting: Snapshotting = "service",
    parts: int = 5,
) -> dict[str, Any]:
    """One SKU, `lines` one-unit lines placed, filled (receipts of 10 units) and shipped,
    `batch` messages a transaction as the consumer applies them. About `queued` lines wait
    and `unshipped` are allocated at any time. At the end of each fifth of the run: its
    commands/s, then (untimed) the lines held, the state's and the last snapshot's size,
    and a cold load."""
    messages = hot_sku_messages(lines, queued=queued, unshipped=unshipped)
    chunks = _chunks(messages, batch)
    ends = {round(len(chunks) * (part + 1) / parts) for part in range(parts)}
    app = open_allocation(database_url, snapshotting)
    by_part: list[dict[str, Any]] = []
    try:
        running, placed, events = 0.0, 0, 0
        part = _Part(app)
        for number, chunk in enumerate(chunks, start=1):
            [seconds], recorded = _feed(app, chunk, batch)
            part.transactions.append(seconds)
            part.commands += len(chunk)
            events += recorded
            placed += sum(message.commands[0].type == "PlaceLine" for message in chunk)
            if number in ends:
                running += part.seconds
                by_part.append(
                    {"lines_placed": placed, **part.figures(), **_look_at(app, database_url, "HOT")}
                )
                part = _Part(app)
        final = app.sku("HOT")
        assert final.shipped == max(0, lines - queued - unshipped), "every settled line shipped"
    finally:
        app.close()
    first, last = by_part[0], by_part[-1]
    return {
        "lines": lines,
        "commands": len(messages),
        "events": events,
        "batch": batch,
        "snapshotting": snapshotting,
        "open_lines_kept": {"queued": queued, "unshipped": unshipped},
        "seconds": round(running, 3),
        "snapshot_seconds": round(app.snapshot_seconds, 3),
        "snapshots_taken": app.snapshots_taken,
        "commands_per_s": {
            "whole_run": _rate(len(messages), running),
            "first_fifth": first["commands_per_s"],
            "last_fifth": last["commands_per_s"],
            "last_over_first": round(last["commands_per_s"] / first["commands_per_s"], 3),
        },
        "commands_per_s_at_median": {
            "first_fifth": first["commands_per_s_at_median"],
            "last_fifth": last["commands_per_s_at_median"],
            "last_over_first": round(
                last["commands_per_s_at_median"] / first["commands_per_s_at_median"], 3
            ),
        },
        "lines_held_at_end": last["lines_held"],
        "shipped_units": final.shipped,
        "state_bytes": {"start": first["state_bytes"], "end": last["state_bytes"]},
        "last_snapshot_bytes": {
            "start": first["last_snapshot_bytes"],
            "end": last["last_snapshot_bytes"],
        },
        "cold_load_ms": {"start": first["cold_load_ms"], "end": last["cold_load_ms"]},
        "by_fifth": by_part,
    }


# --- eta ----------------------------------------------------------------------------------


def _apply(sku: Sku, messages: Sequence[SkuCommands], collect_every: int = 500) -> int:
    """Applies messages as the application does, without a store; pending events are
    collected every `collect_every` messages (a batch). Returns the events."""
    events = 0
    for number, message in enumerate(messages, start=1):
        for index, command in enumerate(message.commands):
            position = IntakePosition.of_message(message.position, index).command_position
            cause = Cause(command.causation_id, command.occurred_at, position, step=index)
            apply_command(sku, cause, command)
        if number % collect_every == 0:
            events += len(sku.collect_events())
    return events + len(sku.collect_events())


def etas_from_scratch(sku: Sku) -> list[datetime | None]:
    """Every queued line's promised date by a walk of the whole queue: what a command would
    cost if keeping the dates meant recomputing them."""
    schedule = sorted(sku.inbounds.items(), key=lambda item: (item[1]["expected_at"], item[0]))
    covered = list(accumulate(inbound["quantity"] for _, inbound in schedule))
    dates = [inbound["expected_at"] for _, inbound in schedule]
    etas: list[datetime | None] = []
    units = 0
    for line in sku.queued_lines():
        units += line["backordered"]
        at = bisect.bisect_left(covered, units)
        etas.append(dates[at] if at < len(dates) else None)
    return etas


def _probe_figures(
    seconds: dict[str, list[float]], events: dict[str, int], commands: dict[str, int]
) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    for kind in ETA_PROBES:
        per_round = commands[kind] // len(seconds[kind])
        figures[kind] = {
            "us_per_command_best": round(1e6 * min(seconds[kind]) / per_round, 1),
            "us_per_command_median": round(1e6 * statistics.median(seconds[kind]) / per_round, 1),
            "events_per_command": round(events[kind] / commands[kind], 2),
        }
    return figures


def _eta_in_memory(work: EtaWorkload, with_inbounds: bool, rounds: int) -> dict[str, Any]:
    sku = Sku.register("ETA")
    started = time.perf_counter()
    _apply(sku, work.queue)
    setup = time.perf_counter() - started
    if with_inbounds:
        _apply(sku, work.inbounds)
    before = {"queued_lines": len(sku.queue), "inbound_units": sku.inbound}
    seconds: dict[str, list[float]] = {kind: [] for kind in ETA_PROBES}
    events = dict.fromkeys(ETA_PROBES, 0)
    commands = dict.fromkeys(ETA_PROBES, 0)
    for kind, messages in work.probes:
        started = time.perf_counter()
        events[kind] += _apply(sku, messages)
        seconds[kind].append(time.perf_counter() - started)
        commands[kind] += len(messages)
    walks = []
    for _ in range(rounds):
        started = time.perf_counter()
        etas = etas_from_scratch(sku)
        walks.append(time.perf_counter() - started)
    assert etas == [line["eta"] for line in sku.queued_lines()], "the Sku's dates are right"
    return {
        "setup_s": round(setup, 3),
        **before,
        "full_queue_walk_us": round(1e6 * min(walks), 1),
        **_probe_figures(seconds, events, commands),
    }


def bench_eta_memory(lines: int, inbounds: int, per_probe: int, rounds: int) -> dict[str, Any]:
    """Probes on a Sku in memory with `lines` queued (and a tenth as many, to show the cost
    does not follow the queue's length), with `inbounds` inbounds and without any."""
    result: dict[str, Any] = {"inbounds": inbounds, "rounds": rounds}
    for size in sorted({max(1, lines // 10), lines}):
        # Probes in proportion, so they neither drain the queue nor use up the inbounds.
        per_size = max(1, per_probe * size // lines)
        work = eta_workload(size, inbounds, per_size, rounds)
        result[f"queue_{size}"] = {
            "per_probe": per_size,
            "without_inbounds": _eta_in_memory(work, False, rounds),
            "with_inbounds": _eta_in_memory(work, True, rounds),
        }
    return result


def _eta_in_store(
    database_url: str, work: EtaWorkload, with_inbounds: bool, batch: int
) -> dict[str, Any]:
    app = open_allocation(database_url)
    try:
        seconds, _ = _feed(app, work.queue, batch)
        setup = {"setup_s": round(sum(seconds), 3), "setup_snapshots": app.snapshots_taken}
        if with_inbounds:
            _feed(app, work.inbounds, batch)
        sku = app.sku("ETA")
        before = {"queued_lines": len(sku.queue), "inbound_units": sku.inbound}
        figures: dict[str, Any] = {}
        for kind, messages in work.probes:
            snapshots, snapshot_seconds = app.snapshots_taken, app.snapshot_seconds
            seconds, events = _feed(app, messages, batch)
            figures[kind] = {
                "commands_per_s": _rate(len(messages), sum(seconds)),
                "median_ms_per_transaction": round(1000 * statistics.median(seconds), 1),
                "events_per_command": round(events / len(messages), 2),
                "snapshots_taken": app.snapshots_taken - snapshots,
                "snapshot_seconds": round(app.snapshot_seconds - snapshot_seconds, 3),
            }
        sku = app.sku("ETA")
        assert etas_from_scratch(sku) == [line["eta"] for line in sku.queued_lines()]
        return {**setup, **before, **figures}
    finally:
        app.close()


def bench_eta_store(
    fresh_url: Callable[[], str], lines: int, inbounds: int, per_probe: int, batch: int
) -> dict[str, Any]:
    """The same probes through Allocation.apply_commands, `batch` messages a transaction,
    each variant on a fresh store. Per-transaction medians, because a snapshot of a SKU
    with this many lines (every lines/2 events: Allocation._take_snapshots) lands in one
    transaction or another."""
    work = eta_workload(lines, inbounds, per_probe)
    return {
        "lines": lines,
        "inbounds": inbounds,
        "per_probe": per_probe,
        "batch": batch,
        "without_inbounds": _eta_in_store(fresh_url(), work, False, batch),
        "with_inbounds": _eta_in_store(fresh_url(), work, True, batch),
    }
