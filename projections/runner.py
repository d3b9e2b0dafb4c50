"""Feeds the read models from the allocation log, and rebuilds them without downtime.

A pull loop over `select_notifications` (SQLite cannot be subscribed to), one transaction
per page: every projection's rows, its position and the changes to stream go in together,
so a restart resumes exactly where the last commit left off.

Each read model lives in generation tables (`backorder_queue_g1`, ...) behind a view with
the stable name (`backorder_queue`). A rebuild fills the next generation from position
zero while the live one keeps serving, then swaps the view in one transaction.

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
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from eventsourcing.persistence import Notification

from projections.models import NAMES, PROJECTIONS, Change, Projection
from projections.store import ReadStore, Tx
from services.adapters.faults import crash_point
from services.adapters.logs import get_logger
from services.adapters.retries import supervise
from services.allocation.application import Allocation

log = get_logger(__name__)

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Live:
    generation: int
    position: int


def table(name: str, generation: int) -> str:
    return f"{name}_g{generation}"


class ReadModels:
    """The read-model store: its bookkeeping tables, positions and generations."""

    def __init__(self, store: ReadStore, allocation: Allocation) -> None:
        self.store = store
        self.allocation = allocation
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
        lock = " FOR UPDATE" if self.store.postgres else ""  # SQLite: the write lock holds
        live = tx.one(f"SELECT generation FROM projection_positions WHERE name = ?{lock}", [name])
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

    def _page(self, after: int, limit: int) -> list[tuple[int, Any]]:
        notifications: Sequence[Notification] = self.allocation.recorder.select_notifications(
            start=after, limit=limit, inclusive_of_start=False
        )
        return [(n.id, self.allocation.mapper.to_domain_event(n)) for n in notifications]

    def catch_up(self, limit: int = 500, *, stream: bool = True) -> int:
        """Applies one page to every read model that is behind; returns events applied."""
        page = self._page(self.position(), limit)
        if not page:
            return 0
        with self.store.transaction() as tx:
            live = self.live(tx, lock=True)  # re-read under the lock: a rebuild may have swapped
            changes: set[Change] = set()
            for name, projection in self.projections.items():
                current = live[name]
                todo = [(nid, event) for nid, event in page if nid > current.position]
                if not todo:
                    continue
                target = table(name, current.generation)
                for _, event in todo:
                    changes.update(projection.apply(event, tx, target))
                tx.execute(
                    "UPDATE projection_positions SET position = ? WHERE name = ?",
                    [todo[-1][0], name],
                )
            if stream and changes:
                self._stream(tx, changes)
        crash_point("projections.after_commit")
        return len(page)

    def _stream(self, tx: Tx, changes: Iterable[Change]) -> None:
        """Queues the changed rows' current state (a tombstone for a closed backorder)."""
        for change in sorted(changes, key=lambda c: (c.topic, c.key)):
            if change.topic == "backorder-queue":
                order_id, line_id = change.key.split("|", 1)
                row = tx.one(
                    "SELECT * FROM backorder_queue WHERE order_id = ? AND line_id = ?",
                    [order_id, line_id],
                )
            else:
                sku, day = change.key.rsplit("|", 1)
                row = tx.one(
                    "SELECT * FROM demand_daily WHERE sku = ? AND day = ?",
                    [sku, day_value(self.store, day)],
                )
            tx.execute(
                "INSERT INTO projection_outbox (topic, key, value) VALUES (?, ?, ?)",
                [change.topic, change.key, None if row is None else json.dumps(row, default=_text)],
            )

    # --- rebuilding ----------------------------------------------------------------------

    def rebuild(self, name: str, progress: Progress | None = None, page: int = 1000) -> Live:
        """Builds `name` from zero into its next generation, then swaps it in atomically."""
        projection = self.projections[name]
        generation = self.live()[name].generation + 1
        target = table(name, generation)
        with self.store.transaction() as tx:
            self._create(tx, projection, target)
        position = 0
        total = self.head()
        while True:
            events = self._page(position, page)
            if not events:
                break
            with self.store.transaction() as tx:
                for _, event in events:
                    projection.apply(event, tx, target)
            position = events[-1][0]
            total = max(total, position)
            if progress:
                progress(position, total)
        with self.store.transaction() as tx:
            live = self.live(tx, lock=True)[name]
            # Events the live model took while we rebuilt: apply them too, under the lock.
            while True:
                events = self._page(position, page)
                if not events:
                    break
                for _, event in events:
                    projection.apply(event, tx, target)
                position = events[-1][0]
            self._swap(tx, projection, live.generation, generation)
            tx.execute(
                "UPDATE projection_positions SET generation = ?, position = ? WHERE name = ?",
                [generation, position, name],
            )
            self._record_version(tx, projection)
        if progress:
            progress(position, max(total, position))
        log.info("read model rebuilt", name=name, generation=generation, position=position)
        return Live(generation, position)

    # --- streaming outbox ----------------------------------------------------------------

    def outbox(self, limit: int = 500) -> list[dict[str, Any]]:
        return self.store.read(
            "SELECT id, topic, key, value FROM projection_outbox ORDER BY id LIMIT ?", [limit]
        )

    def forget_outbox(self, up_to: int) -> None:
        with self.store.transaction() as tx:
            tx.execute("DELETE FROM projection_outbox WHERE id <= ?", [up_to])


def _text(value: Any) -> str:
    """A row's value as JSON text: times and days in ISO 8601 on both stores."""
    if isinstance(value, date | datetime):
        return value.isoformat()
    return str(value)


def day_value(store: ReadStore, day: str) -> Any:
    return date.fromisoformat(day) if store.postgres else day


async def follow(
    models: ReadModels, stopping: asyncio.Event, idle: float = 0.05, page: int = 500
) -> None:
    """Keeps the read models caught up until asked to stop; errors wait out the retry
    policy (services.adapters.retries), however long the store is away."""

    async def step() -> None:
        if not await asyncio.to_thread(models.catch_up, page):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), timeout=idle)

    def retrying(error: Exception) -> None:
        log.warning("read models retrying after error", error=repr(error))

    await supervise(step, stopping=stopping, on_error=retrying)
