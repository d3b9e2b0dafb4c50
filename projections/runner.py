"""Feeds the read models from the allocation log, and rebuilds them without downtime.

A pull loop over `select_notifications` (SQLite cannot be subscribed to), one transaction
per page: every projection's rows, its position and the changes to stream go in together,
so a restart resumes exactly where the last commit left off. Each event is read and
decoded once (`AllocationLog`), each read model writes a page's effect with a few
statements (projections/models.py), and pages grow while the feed is behind (`follow`).

Each read model lives in generation tables (`backorder_queue_g1`, ...) behind a view with
the stable name (`backorder_queue`). A rebuild fills the next generation from position
zero while the live one keeps serving, then swaps the view in one transaction;
`rebuild_all` does it for every read model in one pass over the log.

Each read model's table shape has a version (`Projection.version`, kept in
`projection_versions`). A store that holds an older shape (made by an older release) is
upgraded when it opens: the read model gets an empty next generation at position zero, in
one transaction, and the feed refills it from the log like any lagging read model. Nothing
breaks at start; until it has caught up, its answers say so (`X-Projection-Lag`), and its
rows are streamed again as they are refilled (the last message per key is the row as it is).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import orjson
from eventsourcing.application import Application
from eventsourcing.persistence import DatetimeAsISO, JSONTranscoder, Notification
from eventsourcing.postgres import PostgresApplicationRecorder
from eventsourcing.sqlite import SQLiteApplicationRecorder
from eventsourcing.utils import resolve_topic
from psycopg.rows import tuple_row
from psycopg.sql import SQL, Identifier

from projections.catalog import NAMES, PROJECTIONS
from projections.models import (
    DEFAULTS,
    FIELDS,
    KINDS,
    TIMES,
    Change,
    Fact,
    Projection,
    fact_of,
)
from projections.store import ReadStore, Tx
from services.adapters.faults import crash_point
from services.adapters.logs import get_logger
from services.adapters.retries import supervise
from services.adapters.wakeup import Wakeup
from services.allocation.application import Allocation

log = get_logger(__name__)

Progress = Callable[[int, int], None]
# Events per transaction of a rebuild. Its tables are new and read by no one until the swap,
# so big pages cost only memory (tens of MB), and they fold more events into each row
# written: a SKU's row is written once per page, not once per 500 events.
REBUILD_PAGE = 50_000


@dataclass(frozen=True)
class Page:
    """Events of the log read at once: how many, the position of the last, and the Facts
    among them (those a read model reads), each with its position (`notification_id`).
    No object per event but the Facts: see projections.models.Fact."""

    count: int
    last: int
    facts: list[Fact]

    def after(self, position: int) -> list[Fact]:
        """The page's Facts after `position` (all of them, usually)."""
        facts = self.facts
        if not facts or facts[0]["notification_id"] > position:
            return facts
        return [fact for fact in facts if fact["notification_id"] > position]


@dataclass(frozen=True)
class Live:
    generation: int
    position: int


@dataclass(frozen=True)
class Step:
    """What one `advance` did: log events read and applied, changes queued for the streams."""

    applied: int
    queued: int


def table(name: str, generation: int) -> str:
    return f"{name}_g{generation}"


class AllocationLog:
    """The allocation log as the read models read it: Pages of Facts, each event read once
    and decoded once.

    eventsourcing's `select_notifications` builds a Notification per event (its originator
    id parsed as a UUID) and the mapper's `to_domain_event` decodes every field (UUIDs,
    every time): together they cost more than all the read models' SQL (bench/read_models.py,
    read_and_decode). So when the log is the library's own SQLite or PostgreSQL table in its
    plain JSON (no cipher, no compression), a page is one query of the columns needed, each
    state is read with orjson (times kept as the ISO text it holds), and events no read
    model reads are not decoded at all. Any other recorder or mapper, or an event stored
    by an older version of its class (to be upcast), goes through the library.
    """

    def __init__(self, allocation: Application[Any]) -> None:
        self.recorder = allocation.recorder
        self.mapper = allocation.mapper
        transcoder = self.mapper.transcoder
        self.plain_json = (
            type(transcoder) is JSONTranscoder
            and isinstance(transcoder.names.get("datetime_iso"), DatetimeAsISO)
            and self.mapper.cipher is None
            and self.mapper.compressor is None
        )
        self._rows: Callable[[int, int], Iterator[Sequence[Any]]] | None = None
        if self.plain_json and isinstance(self.recorder, SQLiteApplicationRecorder):
            self._rows = self._sqlite_rows
        elif self.plain_json and isinstance(self.recorder, PostgresApplicationRecorder):
            self._rows = self._postgres_rows
        self._kinds: dict[str, tuple[str, type[Any]] | None] = {}

    def page(self, after: int, limit: int) -> Page:
        """Up to `limit` events after position `after`, in log order. Each row is decoded
        as it is read, so that the page's raw rows are not all alive at once."""
        facts: list[Fact] = []
        count, last = 0, after
        if self._rows is None:
            stored: Iterable[Notification | Sequence[Any]] = self.recorder.select_notifications(
                start=after, limit=limit, inclusive_of_start=False
            )
        else:
            stored = self._rows(after, limit)
        for row in stored:
            if isinstance(row, Notification):
                last, fact = row.id, self._fact(row.topic, row.state, row)
            else:
                last, fact = row[0], self._fact(row[3], row[4], row)
            count += 1
            if fact is not None:
                fact["notification_id"] = last
                facts.append(fact)
        return Page(count, last, facts)

    def stored(
        self, after: int, limit: int, *, leaving_out: Sequence[str] = ()
    ) -> Iterator[Sequence[Any]] | None:
        """Up to `limit` stored rows after position `after`, as the store holds them:
        (position, originator_id, originator_version, topic, state as JSON bytes). None when
        the log is not the library's plain JSON in SQLite or PostgreSQL: then only its mapper
        can read it. For other readers of the whole log (replays). `leaving_out`: topics
        whose rows the store skips (they count towards no page: a page shorter than `limit`
        is still the last)."""
        if self._rows is None:
            return None
        if not leaving_out:
            return self._rows(after, limit)
        if isinstance(self.recorder, PostgresApplicationRecorder):
            return self._postgres_query(
                self._postgres_select("AND topic <> ALL(%s)"), (after, list(leaving_out), limit)
            )
        return self._sqlite_query(
            f"AND topic NOT IN ({', '.join('?' * len(leaving_out))})", (after, *leaving_out, limit)
        )

    def stored_share(
        self, after: int, limit: int, index: int, of: int, *, leaving_out: Sequence[str] = ()
    ) -> Iterator[Sequence[Any]] | None:
        """`stored`, only the rows of aggregates whose id's last byte is `index` modulo `of`
        (a replay worker's share), filtered by PostgreSQL so the others never cross the
        wire; None on other stores (filter the rows of `stored`)."""
        if self._rows is None or not isinstance(self.recorder, PostgresApplicationRecorder):
            return None
        statement = self._postgres_select(
            "AND get_byte(uuid_send(originator_id), 15) %% %s = %s AND topic <> ALL(%s)"
        )
        return self._postgres_query(statement, (after, of, index, list(leaving_out), limit))

    def _postgres_select(self, condition: str = "") -> Any:
        """The rows after a position (the first parameter), in log order, up to a number
        (the last): with `condition` on them, its parameters between."""
        recorder = self.recorder
        assert isinstance(recorder, PostgresApplicationRecorder)
        return SQL(
            "SELECT notification_id, originator_id, originator_version, topic, state "
            "FROM {schema}.{table} WHERE notification_id > %s "
            + condition
            + " ORDER BY notification_id LIMIT %s"
        ).format(
            schema=Identifier(recorder.datastore.schema),
            table=Identifier(recorder.events_table_name),
        )

    def _postgres_query(self, statement: Any, params: Sequence[Any]) -> Iterator[Sequence[Any]]:
        """Rows in PostgreSQL's binary format: the states' bytes as they are, where the text
        format sends them in hex for the client to decode (a third of a replay's reading)."""
        recorder = self.recorder
        assert isinstance(recorder, PostgresApplicationRecorder)
        with (
            recorder.datastore.get_connection() as connection,
            connection.cursor(row_factory=tuple_row, binary=True) as cursor,
        ):
            cursor.execute(statement, params, prepare=True)
            yield from cursor  # rows are made as they are read

    def _sqlite_rows(self, after: int, limit: int) -> Iterator[Sequence[Any]]:
        return self._sqlite_query("", (after, limit))

    def _sqlite_query(self, condition: str, params: Sequence[Any]) -> Iterator[Sequence[Any]]:
        """`_postgres_select`'s rows, from SQLite."""
        recorder = self.recorder
        assert isinstance(recorder, SQLiteApplicationRecorder)
        with recorder.datastore.transaction(commit=False) as cursor:
            rows = cursor.sqlite_cursor  # iterated: one row alive at a time
            rows.row_factory = None
            rows.execute(
                "SELECT rowid, originator_id, originator_version, topic, state "
                f"FROM {recorder.events_table_name} WHERE rowid > ? {condition} "
                "ORDER BY rowid LIMIT ?",
                params,
            )
            yield from rows

    def _postgres_rows(self, after: int, limit: int) -> Iterator[Sequence[Any]]:
        yield from self._postgres_query(self._postgres_select(), (after, limit))

    def _fact(self, topic: str, state: bytes, stored: Notification | Sequence[Any]) -> Fact | None:
        if topic not in self._kinds:
            cls = resolve_topic(topic)
            kind = KINDS.get(cls)
            self._kinds[topic] = None if kind is None else (kind, cls)
        found = self._kinds[topic]
        if found is None:
            return None
        if not self.plain_json:
            return self._through_mapper(stored)
        kind, cls = found
        fields: dict[str, Any] = orjson.loads(state)
        if fields.pop("class_version", 1) != getattr(cls, "class_version", 1):
            return self._through_mapper(stored)  # to be upcast by its class
        for name in TIMES:
            value = fields.get(name)
            if value is not None:
                fields[name] = value["_data_"]  # ISO text: a Fact's times are
        for name, default in DEFAULTS[kind].items():
            fields.setdefault(name, default)
        fact = {name: fields[name] for name in FIELDS[kind]}
        fact["kind"] = kind
        return fact

    def _through_mapper(self, stored: Notification | Sequence[Any]) -> Fact | None:
        if not isinstance(stored, Notification):  # a row read directly: the library's shape
            position, originator_id, version, topic, state = stored
            if isinstance(self.recorder, SQLiteApplicationRecorder):
                originator_id = self.recorder.convert_originator_id(originator_id)
            stored = Notification(
                id=position,
                originator_id=originator_id,
                originator_version=version,
                topic=topic,
                state=bytes(state),
            )
        return fact_of(self.mapper.to_domain_event(stored))


OPENING_LOCK = 0x66756C66696C6C  # PostgreSQL advisory lock: a read model's tables being made


class ReadModels:
    """The read-model store: its bookkeeping tables, positions and generations."""

    def __init__(self, store: ReadStore, allocation: Allocation) -> None:
        self.store = store
        self.allocation = allocation
        self.log = AllocationLog(allocation)
        self.projections: dict[str, Projection] = {p.name: p(store) for p in PROJECTIONS}
        self._setup()

    def _setup(self) -> None:
        serial = (
            "BIGSERIAL PRIMARY KEY" if self.store.postgres else "INTEGER PRIMARY KEY AUTOINCREMENT"
        )
        with self.store.transaction() as tx:
            tx.execute(
                "CREATE TABLE IF NOT EXISTS projection_positions (name TEXT PRIMARY KEY, "
                "generation INTEGER NOT NULL, position BIGINT NOT NULL)"
            )
            tx.execute(
                "CREATE TABLE IF NOT EXISTS projection_versions (name TEXT PRIMARY KEY, "
                "version INTEGER NOT NULL)"
            )
            tx.execute(
                f"CREATE TABLE IF NOT EXISTS projection_outbox (id {serial}, "
                "topic TEXT NOT NULL, key TEXT NOT NULL, value TEXT)"
            )
        for name, projection in self.projections.items():
            with self.store.transaction() as tx:
                self._open(tx, name, projection)

    def _open(self, tx: Tx, name: str, projection: Projection) -> None:
        """Creates the read model if the store has none; upgrades an older shape of it."""
        if self.store.postgres:
            # Processes starting at once would each find no row to lock, create the tables,
            # and drop the other's (its views depend on them): one opens at a time. SQLite:
            # the write lock holds.
            tx.execute("SELECT pg_advisory_xact_lock(?)", [OPENING_LOCK])
        live = tx.one("SELECT generation FROM projection_positions WHERE name = ?", [name])
        if live is None:
            self._create(tx, projection, table(name, 1))
            for view, view_table in projection.views(table(name, 1)).items():
                tx.execute(f"CREATE VIEW {view} AS SELECT * FROM {view_table}")
            tx.execute(
                "INSERT INTO projection_positions (name, generation, position) VALUES (?, 1, 0)",
                [name],
            )
        else:
            found = tx.one("SELECT version FROM projection_versions WHERE name = ?", [name])
            # No version recorded: the store predates versions, so it holds version 1.
            if (found["version"] if found else 1) >= projection.version:
                return
            generation = live["generation"] + 1
            self._create(tx, projection, table(name, generation))
            self._swap(tx, projection, live["generation"], generation)
            tx.execute(
                "UPDATE projection_positions SET generation = ?, position = 0 WHERE name = ?",
                [generation, name],
            )
            log.info(
                "read model upgraded: refilling it from the log",
                name=name,
                version=projection.version,
                generation=generation,
            )
        self._record_version(tx, projection)

    def _create(self, tx: Tx, projection: Projection, target: str) -> None:
        """Fresh tables for one generation (left-overs of an interrupted rebuild dropped)."""
        for view_table in projection.views(target).values():
            tx.execute(f"DROP TABLE IF EXISTS {view_table}")
        projection.create(tx, target)

    def _swap(self, tx: Tx, projection: Projection, old: int, new: int) -> None:
        """Points the read model's views at generation `new`; drops generation `old`."""
        name = projection.name
        fresh = projection.views(table(name, new))
        for view, old_table in projection.views(table(name, old)).items():
            tx.execute(f"DROP VIEW IF EXISTS {view}")
            tx.execute(f"DROP TABLE IF EXISTS {old_table}")
        for view, new_table in fresh.items():
            tx.execute(f"CREATE VIEW {view} AS SELECT * FROM {new_table}")

    def _record_version(self, tx: Tx, projection: Projection) -> None:
        tx.execute(
            "INSERT INTO projection_versions (name, version) VALUES (?, ?) "
            "ON CONFLICT (name) DO UPDATE SET version = excluded.version",
            [projection.name, projection.version],
        )

    # --- positions -----------------------------------------------------------------------

    def live(self, tx: Tx | None = None, *, lock: bool = False) -> dict[str, Live]:
        sql = "SELECT name, generation, position FROM projection_positions"
        if lock and self.store.postgres:
            sql += " FOR UPDATE"
        rows = tx.rows(sql) if tx is not None else self.store.read(sql)
        return {r["name"]: Live(r["generation"], r["position"]) for r in rows if r["name"] in NAMES}

    def position(self) -> int:
        """How far every read model has got: the lowest of their positions."""
        return min(live.position for live in self.live().values())

    def head(self) -> int:
        return self.allocation.recorder.max_notification_id() or 0

    # --- feeding -------------------------------------------------------------------------

    def _page(self, after: int, limit: int) -> Page:
        return self.log.page(after, limit)

    def catch_up(self, limit: int = 500, *, stream: bool = True) -> int:
        """Applies one page to every read model that is behind; returns events applied."""
        return self.advance(limit, stream=stream).applied

    def advance(self, limit: int = 500, *, stream: bool = True) -> Step:
        """`catch_up`, saying also how many changes it queued for the streams."""
        page = self._page(self.position(), limit)
        if not page.count:
            return Step(0, 0)
        queued: list[tuple[str, str, str | None]] = []
        with self.store.transaction() as tx:
            live = self.live(tx, lock=True)  # re-read under the lock: a rebuild may have swapped
            positions: list[tuple[int, str]] = []
            for name, projection in self.projections.items():
                current = live[name]
                if current.position >= page.last:
                    continue
                target = table(name, current.generation)
                changes = projection.apply_page(tx, target, page.after(current.position))
                if stream and changes:
                    queued += self._current(tx, projection, target, changes)
                positions.append((page.last, name))
            tx.executemany("UPDATE projection_positions SET position = ? WHERE name = ?", positions)
            if queued:
                queued.sort(key=lambda change: (change[0], change[1]))
                tx.insert_many("projection_outbox", ("topic", "key", "value"), queued)
        crash_point("projections.after_commit")
        return Step(page.count, len(queued))

    def _current(
        self, tx: Tx, projection: Projection, target: str, changes: set[Change]
    ) -> list[tuple[str, str, str | None]]:
        """The changed rows' current state, read in one go: (topic, key, row as JSON), and
        None for a row that is gone (a closed backorder: a tombstone)."""
        rows = tx.select_many(target, projection.key, [change.lookup for change in changes])
        current = {projection.change_key(row): row for row in rows}
        return [(change.topic, change.key, _json(current.get(change.key))) for change in changes]

    # --- rebuilding ----------------------------------------------------------------------

    def rebuild(
        self, name: str, progress: Progress | None = None, page: int = REBUILD_PAGE
    ) -> Live:
        """Builds `name` from zero into its next generation, then swaps it in atomically."""
        return self._rebuild([name], progress, page)[name]

    def rebuild_all(
        self, progress: Progress | None = None, page: int = REBUILD_PAGE
    ) -> dict[str, Live]:
        """Builds every read model from zero into its next generation in ONE pass over the
        log (each page read and decoded once for all of them), then swaps them all in, in
        one transaction."""
        return self._rebuild(list(self.projections), progress, page)

    def _rebuild(self, names: list[str], progress: Progress | None, page: int) -> dict[str, Live]:
        projections = {name: self.projections[name] for name in names}
        live = self.live()
        targets = {name: table(name, live[name].generation + 1) for name in names}
        with self.store.transaction() as tx:
            for name, projection in projections.items():
                self._create(tx, projection, targets[name])
        position = 0
        total = self.head()
        # The next page is read and decoded while this one is written: the store works on
        # the writes (PostgreSQL in its own process; SQLite without holding the GIL) while
        # Python decodes, on the machine's other core.
        with ThreadPoolExecutor(1, thread_name_prefix="rebuild-reader") as reader:
            ahead = reader.submit(self._page, position, page)
            while (events := ahead.result()).count:
                ahead = reader.submit(self._page, events.last, page)
                with self.store.transaction() as tx:
                    self._fill(tx, projections, targets, events)
                position = events.last
                total = max(total, position)
                if progress:
                    progress(position, total)
        with self.store.transaction() as tx:
            now = self.live(tx, lock=True)
            # Events the live models took while we rebuilt: apply them too, under the lock.
            while (events := self._page(position, page)).count:
                self._fill(tx, projections, targets, events)
                position = events.last
            for name, projection in projections.items():
                generation = now[name].generation + 1
                if table(name, generation) != targets[name]:  # swapped by someone meanwhile
                    raise RuntimeError(f"read model {name} changed generation during its rebuild")
                self._swap(tx, projection, now[name].generation, generation)
                tx.execute(
                    "UPDATE projection_positions SET generation = ?, position = ? WHERE name = ?",
                    [generation, position, name],
                )
                self._record_version(tx, projection)
        if progress:
            progress(position, max(total, position))
        rebuilt = {name: Live(live[name].generation + 1, position) for name in names}
        for name, done in rebuilt.items():
            log.info("read model rebuilt", name=name, generation=done.generation, position=position)
        return rebuilt

    @staticmethod
    def _fill(
        tx: Tx, projections: dict[str, Projection], targets: dict[str, str], events: Page
    ) -> None:
        for name, projection in projections.items():
            projection.apply_page(tx, targets[name], events.facts)

    # --- streaming outbox ----------------------------------------------------------------

    def outbox(self, limit: int = 500) -> list[dict[str, Any]]:
        return self.store.read(
            "SELECT id, topic, key, value FROM projection_outbox ORDER BY id LIMIT ?", [limit]
        )

    def forget_outbox(self, up_to: int) -> None:
        with self.store.transaction() as tx:
            tx.execute("DELETE FROM projection_outbox WHERE id <= ?", [up_to])


def _json(row: dict[str, Any] | None) -> str | None:
    return None if row is None else json.dumps(row, default=_text)


def _text(value: Any) -> str:
    """A row's value as JSON text: times and days in ISO 8601 on both stores."""
    if isinstance(value, date | datetime):
        return value.isoformat()
    return str(value)


async def follow(
    models: ReadModels,
    stopping: asyncio.Event,
    idle: float = 0.05,
    page: int = 500,
    wake: Wakeup | None = None,
    *,
    changed: Wakeup | None = None,
    most: int = 5000,
) -> None:
    """Keeps the read models caught up until asked to stop; errors wait out the retry
    policy (services.adapters.retries), however long the store is away.

    While the feed is behind (a page comes back full) pages double, up to `most`: fewer,
    bigger transactions; once one comes back short it has caught up, and pages are `page`
    again. With nothing to apply it waits for `wake` (set when the allocation log commits)
    for at most `idle` seconds, or, without one, sleeps `idle`. `changed` is set after each
    commit that queued changes for the streams (publish_changes waits on it)."""
    size = page

    async def step() -> None:
        nonlocal size
        done = await asyncio.to_thread(models.advance, size)
        if done.queued and changed is not None:
            changed.set()
        size = min(size * 2, max(most, page)) if done.applied >= size else page
        if done.applied:
            return
        if wake is not None:
            await wake.wait(idle, stopping)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), timeout=idle)

    def retrying(error: Exception) -> None:
        log.warning("read models retrying after error", error=repr(error))

    await supervise(step, stopping=stopping, on_error=retrying)
