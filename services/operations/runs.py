"""Operation runs (rebuilds, re-drives, replays, what-ifs, restores) as rows of
`operation_runs` in the read-model store: any process, the API's or the CLI's, records its
runs there, so every process sees every run, and a restart loses none.

A row says who carries the run out (host and pid) and is touched every HEARTBEAT_SECONDS
while it runs, with its progress. A row left `running` by a process that is gone reads as
`interrupted`: at once on the runner's own host (its pid is gone, or, in the process with
that pid, no run of that row is active: an earlier process had the pid), and elsewhere once
its heartbeat is older than STALE_AFTER.

    with record_run(store, "replay", {"workers": 2}) as run:
        found = work(progress=run.progress)  # (done, total): a Progress callback
        run.result = {"identical": found.identical}
    # done, with its result; failed, with the error, if the block raised
"""

from __future__ import annotations

import json
import os
import socket
import threading
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, cast
from uuid import uuid4

from projections.store import ReadStore
from services.adapters.logs import get_logger

log = get_logger(__name__)

TABLE = "operation_runs"
HEARTBEAT_SECONDS = 2.0
# Long, so that a runner whose heartbeat waits for a busy store (a SQLite rebuild holds its
# write lock a page at a time) is not taken for dead; on its own host a dead runner shows at
# once (its pid).
STALE_AFTER = timedelta(seconds=60)
# Any number, the same in every process: creating the table takes this PostgreSQL lock, so
# that processes starting together do not race on CREATE TABLE IF NOT EXISTS.
CREATE_LOCK = 0x6F70_7275_6E73  # "opruns"

State = Literal["running", "done", "failed", "interrupted"]


def _place() -> str:
    """Where pids mean the same thing: this host, its boot, this pid namespace (containers
    on one host share a host name only if told to; a pid there is another process)."""
    parts = [socket.gethostname()]
    with suppress(OSError):
        parts.append(Path("/proc/sys/kernel/random/boot_id").read_text().strip())
        parts.append(os.readlink("/proc/self/ns/pid"))
    return "/".join(parts)


HOST = socket.gethostname()
PLACE = _place()
# The runs this process carries out now, by their row's token.
_ACTIVE: set[str] = set()


@dataclass(frozen=True)
class RunStatus:
    """A run as its row says, with `interrupted` for one whose runner is gone."""

    id: int
    kind: str
    state: State
    request: dict[str, Any]
    started_at: datetime
    finished_at: datetime | None
    heartbeat_at: datetime
    done: int
    total: int | None
    result: Any
    error: str | None
    host: str
    pid: int


class RunInProgressError(Exception):
    """An exclusive run was asked for while another run of its kind is live."""

    def __init__(self, running: RunStatus) -> None:
        super().__init__(f"a {running.kind} run is in progress: run {running.id}")
        self.running = running


class OperationRuns:
    """The runs recorded in one read-model store (the table is made if missing)."""

    def __init__(self, store: ReadStore) -> None:
        self.store = store
        serial = "BIGSERIAL PRIMARY KEY" if store.postgres else "INTEGER PRIMARY KEY AUTOINCREMENT"
        moment = store.timestamp_type
        with store.transaction() as tx:
            if store.postgres:
                tx.execute("SELECT pg_advisory_xact_lock(?)", [CREATE_LOCK])
            tx.execute(
                f"CREATE TABLE IF NOT EXISTS {TABLE} (id {serial}, kind TEXT NOT NULL, "
                "state TEXT NOT NULL, request TEXT NOT NULL, "
                f"started_at {moment} NOT NULL, finished_at {moment}, "
                f"heartbeat_at {moment} NOT NULL, done BIGINT NOT NULL, total BIGINT, "
                "result TEXT, error TEXT, host TEXT NOT NULL, pid INTEGER NOT NULL, "
                "place TEXT NOT NULL, token TEXT NOT NULL)"
            )

    def begin(
        self, kind: str, request: Mapping[str, Any] | None = None, *, exclusive: bool = False
    ) -> Run:
        """Records a run of `kind` (what was asked: `request`) as running, and starts its
        heartbeat. `exclusive`: RunInProgressError while another run of the kind is live, in any
        process; one whose runner is gone is marked interrupted on the way."""
        now = datetime.now(UTC)
        token = uuid4().hex
        with self.store.transaction() as tx:
            if exclusive:
                if self.store.postgres:  # SQLite: the transaction's write lock already holds
                    tx.execute(f"LOCK TABLE {TABLE} IN SHARE ROW EXCLUSIVE MODE")
                for row in tx.rows(
                    f"SELECT * FROM {TABLE} WHERE kind = ? AND state = 'running'", [kind]
                ):
                    found = _status(row, now)
                    if found.state == "running":
                        raise RunInProgressError(found)
                    tx.execute(f"UPDATE {TABLE} SET state = 'interrupted' WHERE id = ?", [found.id])
            inserted = tx.one(
                f"INSERT INTO {TABLE} (kind, state, request, started_at, heartbeat_at, done, "
                "host, pid, place, token) VALUES (?, 'running', ?, ?, ?, 0, ?, ?, ?, ?) "
                "RETURNING id",
                [kind, json.dumps(dict(request or {})), now, now, HOST, os.getpid(), PLACE, token],
            )
        assert inserted is not None
        run = Run(self, int(inserted["id"]), kind, token)
        log.info("run started", run=run.id, kind=kind)
        return run

    def get(self, run_id: int) -> RunStatus | None:
        rows = self.store.read(f"SELECT * FROM {TABLE} WHERE id = ?", [run_id])
        return _status(rows[0], datetime.now(UTC)) if rows else None

    def latest(self, kinds: Collection[str] | None = None, limit: int = 50) -> list[RunStatus]:
        """The latest runs first (of these kinds only, if given)."""
        where, params = "", []
        if kinds is not None:
            if not kinds:
                return []
            where = f"WHERE kind IN ({', '.join('?' * len(kinds))})"
            params = list(kinds)
        rows = self.store.read(
            f"SELECT * FROM {TABLE} {where} ORDER BY id DESC LIMIT ?", [*params, limit]
        )
        now = datetime.now(UTC)
        return [_status(row, now) for row in rows]


class Run:
    """A run this process carries out. `progress` (a Progress callback) only notes where it
    is: the heartbeat writes it, so the work never waits for the table. Ended once, by
    `done` or `failed`, or as a context manager by how its block ends."""

    def __init__(self, runs: OperationRuns, run_id: int, kind: str, token: str) -> None:
        self.runs = runs
        self.id = run_id
        self.kind = kind
        self.result: Any = None  # what `done` records when the block ends well
        self._token = token
        self._where: tuple[int, int | None] = (0, None)
        self._ended = threading.Event()
        _ACTIVE.add(token)
        self._heartbeat = threading.Thread(
            target=self._beat, name=f"run-{run_id}-heartbeat", daemon=True
        )
        self._heartbeat.start()

    def progress(self, done: int, total: int | None) -> None:
        self._where = (done, total)

    def done(self, result: Any = None) -> None:
        self._end("done", result=result)

    def failed(self, error: BaseException | str) -> None:
        self._end("failed", error=_described(error))

    def __enter__(self) -> Run:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        _: TracebackType | None,
    ) -> None:
        if error is None:
            self.done(self.result)
        elif isinstance(error, Exception):
            self.failed(error)
        else:  # Ctrl-C, an exit: it did not fail, it was stopped
            self._end("interrupted", error=_described(error))

    def _beat(self) -> None:
        while not self._ended.wait(HEARTBEAT_SECONDS):
            done, total = self._where
            try:
                with self.runs.store.transaction() as tx:
                    tx.execute(
                        f"UPDATE {TABLE} SET heartbeat_at = ?, done = ?, total = ? "
                        "WHERE id = ? AND state = 'running'",
                        [datetime.now(UTC), done, total, self.id],
                    )
            except Exception as error:  # the next beat tries again; a run must not die of it
                log.warning("run heartbeat failed", run=self.id, error=repr(error))

    def _end(self, state: State, *, result: Any = None, error: str | None = None) -> None:
        """Records how the run ended. A store that refuses is logged, not raised: the work
        is over either way, and the row, left running with no runner, reads interrupted."""
        if self._ended.is_set():
            return
        self._ended.set()
        if threading.current_thread() is not self._heartbeat:
            self._heartbeat.join()
        done, total = self._where
        now = datetime.now(UTC)
        try:
            with self.runs.store.transaction() as tx:
                tx.execute(
                    f"UPDATE {TABLE} SET state = ?, finished_at = ?, heartbeat_at = ?, "
                    "done = ?, total = ?, result = ?, error = ? WHERE id = ?",
                    [state, now, now, done, total, json.dumps(result, default=str), error, self.id],
                )
        except Exception as failure:
            log.error("run end not recorded", run=self.id, state=state, error=repr(failure))
        finally:
            _ACTIVE.discard(self._token)
        log.info("run ended", run=self.id, kind=self.kind, state=state, error=error)


@contextmanager
def record_run(
    store: ReadStore,
    kind: str,
    request: Mapping[str, Any] | None = None,
    *,
    exclusive: bool = False,
) -> Iterator[Run]:
    """Records the block as a run of `kind`: running (with `run.progress` as it goes), then
    done with `run.result`, failed with the error the block raised, or interrupted (Ctrl-C).
    `exclusive`: raises RunInProgressError, before the block, while a run of the kind is live.
    For the CLI: needs only the read-model store, not the API."""
    with OperationRuns(store).begin(kind, request, exclusive=exclusive) as run:
        yield run


def _status(row: dict[str, Any], now: datetime) -> RunStatus:
    state = cast(State, row["state"])
    heartbeat = _moment(row["heartbeat_at"])
    if state == "running" and not _runner_alive(row, heartbeat, now):
        state = "interrupted"
    return RunStatus(
        id=int(row["id"]),
        kind=row["kind"],
        state=state,
        request=json.loads(row["request"]),
        started_at=_moment(row["started_at"]),
        finished_at=None if row["finished_at"] is None else _moment(row["finished_at"]),
        heartbeat_at=heartbeat,
        done=int(row["done"]),
        total=None if row["total"] is None else int(row["total"]),
        result=None if row["result"] is None else json.loads(row["result"]),
        error=row["error"],
        host=row["host"],
        pid=int(row["pid"]),
    )


def _runner_alive(row: dict[str, Any], heartbeat: datetime, now: datetime) -> bool:
    """Whether the process that runs the row's run is still at it."""
    if row["place"] == PLACE:
        if row["pid"] == os.getpid():
            return row["token"] in _ACTIVE
        if not _pid_alive(int(row["pid"])):
            return False
        # That pid lives: the runner, or a process that got its pid since: the heartbeat says.
    return now - heartbeat <= STALE_AFTER


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    return True


def _moment(value: Any) -> datetime:
    """A stored time: ISO text on SQLite, a datetime on PostgreSQL."""
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    assert isinstance(moment, datetime)
    return moment


def _described(error: BaseException | str) -> str:
    if isinstance(error, str):
        return error
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
