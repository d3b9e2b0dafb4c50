"""Re-derive decisions from intake's recorded inputs, without Kafka and without a store.

Intake's log is the validated, deduplicated input history: applying it in order to fresh
SKUs must give the same decisions, ids included, as the live service took (`replay`). The
same re-derivation under changed policies is a what-if (services/operations/what_if.py).

Fast because nothing is stored: the SKU aggregates live in memory and apply the commands
with the allocation stage's own rules (services.allocation.application.apply_message); their
decisions are read off as light records. The live decisions are read straight from the
allocation log's rows (one JSON parse each, as the read models read it) where the store
holds the library's plain JSON, else through the library. An in-memory store of the
library (eventsourcing.popo) was 345 commands/s here: it rebuilt every SKU from its
events at every batch.
"""

from __future__ import annotations

import gc
import multiprocessing
import traceback
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from multiprocessing import connection
from multiprocessing.connection import Connection
from typing import Any, NamedTuple, TypeVar, cast
from uuid import UUID

import orjson
from eventsourcing.application import Application
from eventsourcing.domain import DomainEvent
from eventsourcing.utils import get_topic, resolve_topic

from events.commands import SetPolicy, SkuCommands, SkuCommandsMessage
from events.decisions import Decision
from projections.models import OrderDecisions
from projections.runner import AllocationLog
from services.allocation.application import Allocation, apply_message
from services.allocation.domain import Cause, Deadlines, Sku, sku_aggregate_id
from services.allocation.translate import decision_message
from services.intake.application import Intake
from services.intake.translate import sku_command_messages, tick_message
from services.kernel.positions import IntakePosition

Progress = Callable[[int, int], None]

# The SKU events that are decisions, by class name (the contract's decision types).
DECISIONS = OrderDecisions.DECISIONS


class DecisionRecord(NamedTuple):
    """A decision as replays compare it: its id says which input, step, SKU and line; the
    rest, what it did. Times are ISO text, as the log holds them."""

    sku: str
    kind: str
    decision_id: str  # hex
    order_id: str
    line_id: str
    quantity: int
    occurred_at: Any  # a datetime or its ISO text (as read): `occurred` gives the datetime
    reason: str | None
    queue_position: int | None
    remaining: int | None
    eta: str | None

    @property
    def occurred(self) -> datetime:
        moment = self.occurred_at
        return moment if isinstance(moment, datetime) else datetime.fromisoformat(moment)

    @property
    def what(self) -> tuple[Any, ...]:
        """What two runs must agree on (the id covers the input, step, SKU and line)."""
        return (self.kind, self.decision_id, self.quantity, self.reason, self.queue_position,
                self.remaining, self.eta)  # fmt: skip


def record_of(event: Any) -> DecisionRecord | None:
    """A domain event as a DecisionRecord; None for events that are not decisions."""
    kind = type(event).__name__
    if kind not in DECISIONS:
        return None
    eta = getattr(event, "eta", None)
    remaining = getattr(event, "remaining_backordered", None)
    if remaining is None:
        remaining = getattr(event, "remaining_allocated", None)
    return DecisionRecord(
        event.sku,
        kind,
        event.decision_id.hex,
        event.order_id,
        event.line_id,
        event.quantity,
        event.occurred_at,  # a datetime here, ISO text from the log: see occurred
        getattr(event, "reason", None),
        getattr(event, "queue_position", None),
        remaining,
        None if eta is None else eta.isoformat(),
    )


def _record_of_state(kind: str, state: dict[str, Any]) -> DecisionRecord:
    """A decision's stored JSON (the library's transcoding) as a DecisionRecord."""
    eta = state.get("eta")
    remaining = state.get("remaining_backordered", state.get("remaining_allocated"))
    return DecisionRecord(
        state["sku"],
        kind,
        state["decision_id"]["_data_"],
        state["order_id"],
        state["line_id"],
        state["quantity"],
        state["occurred_at"]["_data_"],
        state.get("reason", "cancelled" if kind == "BackorderCancelled" else None),
        state.get("queue_position"),
        remaining,
        None if eta is None else eta["_data_"],
    )


def live_decisions(
    allocation: Allocation, page: int = 50_000, share: Share | None = None
) -> Iterator[DecisionRecord]:
    """The allocation log's decisions in log order, read as the read models read the log;
    with a share, only its SKUs' (the others are not even parsed). The store leaves out
    the events known not to be decisions (half the log: placements, receipts, ...)."""
    log = AllocationLog(allocation)
    held: dict[Any, bool] = {}
    kinds: dict[str, str | None] = {}
    others = _not_decisions()
    position = 0
    while True:
        rows = (
            None
            if share is None
            else log.stored_share(position, page, share.index, share.of, leaving_out=others)
        )
        if rows is None:
            rows = log.stored(position, page, leaving_out=others)
        if rows is None:  # not the library's plain JSON: its mapper decodes
            for found in _through_the_library(allocation, position):
                if share is None or share.holds_sku(found.sku, held):
                    yield found
            return
        count = 0
        for row in rows:
            count += 1
            position, topic, state = row[0], row[3], row[4]
            if share is not None and not share.holds_id(row[1], held):
                continue
            kind = kinds.get(topic, "")
            if kind == "":
                name = resolve_topic(topic).__name__
                kind = kinds[topic] = name if name in DECISIONS else None
            if kind is not None:
                fields = orjson.loads(state)
                if fields.get("class_version", 1) != 1:  # to be upcast by its class
                    yield from _through_the_library(allocation, position - 1, limit=1)
                    continue
                yield _record_of_state(kind, fields)
        if count < page:
            return


def _not_decisions() -> list[str]:
    """The topics of the allocation log's events that are not decisions. Only a filter
    for the store: a row of any other topic is still checked (a renamed class's)."""
    return sorted(
        get_topic(cls)
        for owner in (Sku, Deadlines)
        for cls in vars(owner).values()
        if isinstance(cls, type) and issubclass(cls, DomainEvent) and cls.__name__ not in DECISIONS
    )


def _through_the_library(
    allocation: Allocation, after: int, limit: int | None = None
) -> Iterator[DecisionRecord]:
    for _, event in events_of(allocation, start=after, limit=limit):
        found = record_of(event)
        if found is not None:
            yield found


def events_of(
    app: Application[Any], page: int = 1000, *, start: int = 0, limit: int | None = None
) -> Iterator[tuple[int, Any]]:
    """Recorded events with their notification ids, in log order, after `start`."""
    position, left = start, limit
    while left is None or left > 0:
        size = page if left is None else min(page, left)
        notifications = app.recorder.select_notifications(
            start=position, limit=size, inclusive_of_start=False
        )
        if not notifications:
            return
        for notification in notifications:
            yield notification.id, app.mapper.to_domain_event(notification)
        position = notifications[-1].id
        if left is not None:
            left -= len(notifications)


def sku_commands_of(
    intake: Intake, wanted: Callable[[str], bool] | None = None
) -> Iterator[SkuCommandsMessage]:
    """What intake's relay would publish to sku-commands, a tick once (not per partition).
    `wanted`: only inputs that touch one of those SKUs are translated (a worker's share)."""

    def elsewhere(raw: dict[str, Any]) -> bool:
        """An input for none of the wanted SKUs (read from the stored JSON, not decoded)."""
        skus = _skus_named(raw)
        return bool(skus) and not any(wanted(sku) for sku in skus)  # type: ignore[misc]

    for notification_id, event in stored_events(intake, skip=elsewhere if wanted else None):
        yield from sku_command_messages(event, notification_id, wanted)
        tick = tick_message(event, notification_id)
        if tick is not None:
            yield tick


def stored_events(
    app: Application[Any],
    page: int = 10_000,
    *,
    skip: Callable[[dict[str, Any]], bool] | None = None,
) -> Iterator[tuple[int, Any]]:
    """Every event of an application's log with its position, as its mapper would decode
    them, but read in pages straight from the store's table and parsed with orjson: the
    library's json with an object hook per dict took half a replay's reading. Logs the
    library would decode otherwise (a cipher, compression, another store) go through it."""
    reader = AllocationLog(app)
    names = getattr(app.mapper.transcoder, "names", {})
    if not reader.plain_json:
        yield from events_of(app)
        return
    classes: dict[str, type[Any]] = {}
    position = 0
    while True:
        rows = reader.stored(position, page)
        if rows is None:
            yield from events_of(app, start=position)
            return
        count = 0
        for row in rows:
            count += 1
            position, originator_id, version, topic, state = row
            fields = orjson.loads(state)
            if skip is not None and skip(fields):
                continue
            cls = classes.get(topic)
            if cls is None:
                cls = classes[topic] = resolve_topic(topic)
            _typed(fields, names)  # in place
            fields["originator_id"] = (
                originator_id if isinstance(originator_id, UUID) else UUID(originator_id)
            )
            fields["originator_version"] = version
            at, upto = fields.pop("class_version", 1), getattr(cls, "class_version", 1)
            while at < upto:  # as the mapper upcasts an event stored by an older class
                getattr(cls, f"upcast_v{at}_v{at + 1}")(fields)
                at += 1
            event = object.__new__(cls)
            object.__setattr__(event, "__dict__", fields)
            yield position, event
        if count < page:
            return


def _skus_named(raw: dict[str, Any]) -> list[str]:
    """The SKUs an intake event's stored state names (none: a tick, or an event that
    commands nothing)."""
    sku = raw.get("sku")
    if isinstance(sku, str):
        return [sku]
    lines = raw.get("lines")
    if not isinstance(lines, list):
        return []
    return [line["sku"] for line in lines if isinstance(line, dict) and "sku" in line]


# What orjson makes of JSON objects and arrays: only these can hold a transcoded value.
_NESTED = (dict, list)


def _typed(value: Any, names: dict[str, Any]) -> Any:
    """A value of stored JSON as the library's transcoder decodes it: `{"_type_": name,
    "_data_": ...}` by that name's transcoding, lists and dicts through. Lists and dicts are
    decoded in place (they are the caller's, freshly parsed), and plain values, most of
    them, are left as they are without a call each."""
    if type(value) is dict:
        kind = value.get("_type_")
        if kind is not None and len(value) == 2 and "_data_" in value:
            return names[kind].decode(_typed(value["_data_"], names))
        for key, item in value.items():  # only values change: iterating stays valid
            if type(item) in _NESTED:
                value[key] = _typed(item, names)
        return value
    if type(value) is list:
        for index, item in enumerate(value):
            if type(item) in _NESTED:
                value[index] = _typed(item, names)
    return value


def intake_head(intake: Intake) -> int:
    return intake.recorder.max_notification_id() or 0


@dataclass
class PolicyOverride:
    """A policy to impose on a SKU for a what-if (the contract's BackorderPolicySet)."""

    backorders: str
    limit: int | None = None
    max_wait_days: int | None = None


@dataclass(frozen=True)
class Share:
    """One of `of` workers' part of the SKUs, by a stable hash of each SKU's aggregate id
    (a replay runs a worker a core: SKUs are decided independently, ticks by everyone)."""

    index: int
    of: int

    def holds_sku(self, sku: str, known: dict[Any, bool]) -> bool:
        found = known.get(sku)
        if found is None:
            found = known[sku] = self._holds(sku_aggregate_id(sku))
        return found

    def holds_id(self, originator_id: Any, known: dict[Any, bool]) -> bool:
        """`originator_id` as a store returns it: a UUID, or its text (SQLite)."""
        found = known.get(originator_id)
        if found is None:
            found = known[originator_id] = self._holds(UUID(str(originator_id)))
        return found

    def _holds(self, aggregate_id: UUID) -> bool:
        # The id's last byte: SKU ids are name-based UUIDs (hashes), so the shares are even,
        # and PostgreSQL can pick a share's rows itself (AllocationLog.stored_share).
        return aggregate_id.bytes[15] % self.of == self.index


@dataclass
class MemoryAllocation:
    """The allocation stage's rules over SKUs kept in memory: what a replay or a what-if
    re-derives. Nothing is stored; the live stores are never touched.

    `default_policy` is given to every SKU that has no policy of its own until it gets one;
    `policies` are imposed on their SKUs from their first input on, and those SKUs' own
    policy inputs are ignored (what-ifs)."""

    default_policy: PolicyOverride | None = None
    policies: dict[str, PolicyOverride] = field(default_factory=dict)
    skus: dict[str, Sku] = field(default_factory=dict)
    deadlines: Deadlines = field(default_factory=lambda: Deadlines.start("all"))
    commands: int = 0
    share: Share | None = None  # only these SKUs (a worker's part), else all
    _held: dict[Any, bool] = field(default_factory=dict)

    def apply(self, messages: Iterable[SkuCommandsMessage]) -> list[DecisionRecord]:
        """Applies the messages in order; returns the decisions they took."""
        touched: dict[str, Sku] = {}

        def sku_named(name: str) -> Sku:
            found = self.skus.get(name)
            if found is None:
                found = self.skus[name] = Sku.register(name)
            touched[name] = found
            return found

        share = self.share
        for message in messages:
            if isinstance(message, SkuCommands):
                if share is not None and not share.holds_sku(message.sku, self._held):
                    continue
                self.commands += len(message.commands)
                if self.policies or self.default_policy:
                    message = self._imposed(message, sku_named)  # noqa: PLW2901
                    if not message.commands:
                        continue
            elif share is None or share.index == 0:
                self.commands += 1  # a tick: every worker applies it, one counts it
            apply_message(message, self.deadlines, sku_named)
        decided: list[DecisionRecord] = []
        for sku in touched.values():
            for event in sku.collect_events():
                found = record_of(event)
                if found is not None:
                    decided.append(found)
        self.deadlines.collect_events()  # its events matter to no one here
        return decided

    def _imposed(self, message: SkuCommands, sku_named: Callable[[str], Sku]) -> SkuCommands:
        """The message under the what-if's policies: a SKU seen for the first time gets its
        imposed policy (or the default) just before its first input; an imposed SKU's own
        policy inputs are dropped."""
        imposed = self.policies.get(message.sku)
        if message.sku not in self.skus:
            policy = imposed or self.default_policy
            if policy is not None:
                first = message.commands[0]
                position = IntakePosition.of_message(message.position).command_position - 1
                sku = sku_named(message.sku)
                sku.set_policy(
                    Cause(_imposed_cause(message.sku), first.occurred_at, position),
                    backorders=policy.backorders,  # type: ignore[arg-type]
                    limit=policy.limit,
                    max_wait_days=policy.max_wait_days,
                )
                self.deadlines.note(sku.sku, sku.deadline_news())
        if imposed is None:
            return message
        kept = [c for c in message.commands if not isinstance(c, SetPolicy)]
        return (
            message
            if len(kept) == len(message.commands)
            else message.model_copy(update={"commands": kept})
        )


def _imposed_cause(sku: str) -> UUID:
    from uuid import NAMESPACE_URL, uuid5

    return uuid5(NAMESPACE_URL, f"urn:fulfillment:what-if-policy:{sku}")


def rederive_in_memory(
    intake: Intake,
    engine: MemoryAllocation,
    progress: Progress | None = None,
    batch: int = 2_000,
) -> Iterator[DecisionRecord]:
    """Intake's whole log through `engine`, in batches; the decisions, in order per SKU."""
    total = intake_head(intake)
    pending: list[SkuCommandsMessage] = []
    last = 0
    share, held = engine.share, engine._held
    wanted = None if share is None else (lambda sku: share.holds_sku(sku, held))
    for message in sku_commands_of(intake, wanted):
        pending.append(message)
        if len(pending) >= batch:
            yield from engine.apply(pending)
            last = IntakePosition.of_message(message.position).notification_id
            if progress:
                progress(last, total)
            pending = []
    if pending:
        yield from engine.apply(pending)
    if progress:
        progress(total, total)


def rederive(
    intake: Intake, into: Allocation, progress: Progress | None = None, batch: int = 500
) -> int:
    """Applies intake's whole log to the store of `into`, in batches; returns the commands
    applied. Slower than in memory (every event is stored): for a store to keep."""
    total = intake_head(intake)
    pending: list[SkuCommandsMessage] = []
    applied = 0
    for message in sku_commands_of(intake):
        pending.append(message)
        if len(pending) >= batch:
            into.apply_commands(pending, tracking=None)
            applied += len(pending)
            if progress:
                progress(IntakePosition.of_message(message.position).notification_id, total)
            pending = []
    if pending:
        into.apply_commands(pending, tracking=None)
        applied += len(pending)
    if progress:
        progress(total, total)
    return applied


def decisions_of(allocation: Allocation) -> list[Decision]:
    """The decisions in the order the allocation store took them, as published."""
    found = []
    for _, event in events_of(allocation):
        decision = decision_message(event)
        if decision is not None:
            found.append(decision)
    return found


def per_sku(records: Iterable[DecisionRecord]) -> dict[str, list[tuple[Any, ...]]]:
    """Each SKU's decisions in its order: SKUs on different partitions are decided in
    parallel, so only each SKU's own sequence means anything."""
    grouped: dict[str, list[tuple[Any, ...]]] = {}
    for record in records:
        grouped.setdefault(record.sku, []).append(record.what)
    return grouped


@dataclass
class ReplayReport:
    commands: int = 0
    live: int = 0
    rederived: int = 0
    mismatched_skus: list[str] = field(default_factory=list)

    @property
    def identical(self) -> bool:
        return not self.mismatched_skus and self.live == self.rederived


def replay(
    intake: Intake,
    live: Allocation,
    progress: Progress | None = None,
    *,
    engine: MemoryAllocation | None = None,
) -> ReplayReport:
    """Re-derives every decision from intake's inputs in memory and compares them, SKU by
    SKU, with the live allocation log's (ids included); with a share in `engine`, its SKUs."""
    engine = engine or MemoryAllocation()
    rederived = per_sku(rederive_in_memory(intake, engine, progress))
    actual = per_sku(live_decisions(live, share=engine.share))
    return ReplayReport(
        commands=engine.commands,
        live=sum(map(len, actual.values())),
        rederived=sum(map(len, rederived.values())),
        mismatched_skus=sorted(
            sku for sku in rederived.keys() | actual.keys() if rederived.get(sku) != actual.get(sku)
        ),
    )


def merged(reports: Iterable[ReplayReport]) -> ReplayReport:
    """The workers' reports as one (their SKUs do not overlap)."""
    total = ReplayReport()
    for report in reports:
        total.commands += report.commands
        total.live += report.live
        total.rederived += report.rederived
        total.mismatched_skus += report.mismatched_skus
    total.mismatched_skus.sort()
    return total


# --- a worker a core ----------------------------------------------------------------------

T = TypeVar("T")
Stores = Callable[[], tuple[Intake, Allocation]]
Job = Callable[[Intake, Allocation, MemoryAllocation, Progress], T]


def in_shares(
    stores: Stores,
    engine: MemoryAllocation,
    job: Job[T],
    workers: int,
    progress: Progress | None = None,
) -> list[T]:
    """Runs `job` in `workers` processes, each over its share of the SKUs (each opens the
    stores itself, reads the whole intake log and keeps its SKUs), and returns their results.
    One worker: in this process. `engine.commands` follows the workers' total, for rates.

    Processes, not threads: re-deriving is Python work, and a process a core is what makes
    it scale (the GIL would serialise threads). Forked, so nothing is pickled on the way in
    and the workers start at once; their results come back pickled."""
    if workers <= 1:
        intake, live = stores()
        return [job(intake, live, engine, progress or _ignore)]
    context = multiprocessing.get_context("fork")
    done = [context.Value("q", 0) for _ in range(workers)]
    totals = [context.Value("q", 0) for _ in range(workers)]
    counts = [context.Value("q", 0) for _ in range(workers)]
    pipes = [context.Pipe(duplex=False) for _ in range(workers)]
    opening = context.Lock()
    children = [
        context.Process(
            target=_worker,
            args=(
                stores,
                replace(engine, share=Share(index, workers)),
                job,
                (done[index], totals[index], counts[index]),
                pipes[index][1],
            ),
            kwargs={"opening": opening},
            name=f"replay-{index}",
            daemon=True,
        )
        for index in range(workers)
    ]
    for child in children:
        child.start()
    results: dict[int, T] = {}
    try:
        while len(results) < workers:
            waiting = {pipes[index][0]: index for index in range(workers) if index not in results}
            for ready in connection.wait(list(waiting), timeout=0.05):  # woken by a result
                reader = cast(Connection, ready)
                index = waiting[reader]
                status, payload = reader.recv()
                if status != "ok":
                    raise RuntimeError(f"replay worker {index} failed:\n{payload}")
                results[index] = payload
            engine.commands = sum(count.value for count in counts)
            if progress is not None:
                progress(min(d.value for d in done), max(t.value for t in totals))
            dead = [c for i, c in enumerate(children) if i not in results and not c.is_alive()]
            if dead and not any(reader.poll() for reader, _ in pipes):
                raise RuntimeError(f"replay worker {dead[0].name} died ({dead[0].exitcode})")
    finally:
        for child in children:
            if child.is_alive():
                child.kill()
            child.join()
    return [results[index] for index in range(workers)]


def _ignore(done: int, total: int) -> None:
    """No progress to show."""


def _worker(
    stores: Stores,
    engine: MemoryAllocation,
    job: Job[Any],
    shared: tuple[Any, Any, Any],
    pipe: Connection,
    *,
    opening: Any,
) -> None:
    done, total, commands = shared
    # The process is the replay's alone: what it inherited (modules, the parent's objects)
    # is frozen out of the cyclic collector's scans, and young objects are collected every
    # 20,000 allocations, not 700. A replay makes millions of objects, many long-lived (the
    # SKUs, the decisions kept to compare) and few in cycles: the defaults took a tenth of
    # its time, scanning them again and again.
    gc.freeze()
    gc.set_threshold(20_000, *gc.get_threshold()[1:])

    def progress(position: int, head: int) -> None:
        done.value, total.value, commands.value = position, head, engine.commands

    try:
        # One worker at a time: on PostgreSQL, stores opened at once race to create their
        # tables, and the loser waited half a second (bootstrap's STARTUP retry) in half
        # the runs; one after the other, they wait a tenth of a second at most.
        with opening:
            intake, live = stores()
        result = job(intake, live, engine, progress)
        commands.value = engine.commands
        pipe.send(("ok", result))
    except BaseException:
        pipe.send(("error", traceback.format_exc()))
    finally:
        pipe.close()


def compare_job(
    intake: Intake, live: Allocation, engine: MemoryAllocation, progress: Progress
) -> ReplayReport:
    """`replay` as a worker's job."""
    return replay(intake, live, progress, engine=engine)
