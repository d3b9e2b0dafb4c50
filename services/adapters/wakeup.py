"""Wakes a follower of a log (a relay, the read models) as soon as its writer commits.

A follower that polls on a timer adds half its interval to every order's answer. Instead it
waits on a `Wakeup`: in the writer's process the consumer loop calls `set()` after each
commit; in another process a `LogWatcher` sets it when the store says something changed
(PostgreSQL: LISTEN on the channel eventsourcing NOTIFYs on every insert; SQLite, which has
no notifications: `PRAGMA data_version`, a check of the WAL index that costs microseconds).
The wait keeps a timeout all the same, so a lost signal costs one interval, never progress.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from pathlib import Path
from typing import Any

from services.adapters.logs import get_logger

log = get_logger(__name__)


class Wakeup:
    """A level-triggered signal: a `set()` before the follower waits is not lost."""

    def __init__(self) -> None:
        self._event = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    def set(self) -> None:
        """From the event loop's thread."""
        self._event.set()

    def set_threadsafe(self) -> None:
        """From any thread (a watcher's); a no-op before the first wait bound the loop."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._event.set)

    async def wait(self, seconds: float, stopping: asyncio.Event | None = None) -> None:
        """Returns when set (clearing it), when `stopping` is set, or after `seconds`."""
        self._loop = asyncio.get_running_loop()
        if not self._event.is_set():
            waits = [asyncio.ensure_future(self._event.wait())]
            if stopping is not None:
                waits.append(asyncio.ensure_future(stopping.wait()))
            try:
                await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiting in waits:
                    waiting.cancel()
        self._event.clear()


class Commits:
    """Every follower of one log, each with a Wakeup of its own: a Wakeup's wait clears it,
    so one signal must not be shared by two followers (the relay and the read models)."""

    def __init__(self) -> None:
        self.followers: list[Wakeup] = []

    def follower(self) -> Wakeup:
        wakeup = Wakeup()
        self.followers.append(wakeup)
        return wakeup

    def set(self) -> None:
        for wakeup in self.followers:
            wakeup.set()

    def set_threadsafe(self) -> None:
        for wakeup in self.followers:
            wakeup.set_threadsafe()


class LogWatcher:
    """Sets a Wakeup when another process commits to an application's store.

    PostgreSQL: a connection LISTENs on the recorder's channel (eventsourcing NOTIFYs it in
    every insert transaction, so the signal arrives at commit). SQLite: a thread reads
    `PRAGMA data_version` every `poll_seconds` (it changes when another connection commits).
    """

    def __init__(
        self, recorder: Any, wakeup: Wakeup | Commits, poll_seconds: float = 0.002
    ) -> None:
        self.recorder = recorder
        self.wakeup = wakeup
        self.poll_seconds = poll_seconds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        channel = getattr(self.recorder, "channel_name", None)
        target = self._listen if channel else self._poll
        self._thread = threading.Thread(target=target, name="log-watcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _listen(self) -> None:
        import psycopg
        from psycopg import sql

        # The store's own connection settings (eventsourcing keeps them on its pool).
        options = {
            key: value
            for key, value in self.recorder.datastore.pool.kwargs.items()
            if key in ("dbname", "host", "port", "user", "password")
        }
        while not self._stop.is_set():
            try:
                with psycopg.connect(**options, autocommit=True, connect_timeout=10) as connection:
                    connection.execute(
                        sql.SQL("LISTEN {}").format(sql.Identifier(self.recorder.channel_name))
                    )
                    while not self._stop.is_set():
                        for _ in connection.notifies(timeout=0.5, stop_after=1):
                            self.wakeup.set_threadsafe()
            except psycopg.Error as error:  # the store is away: the follower's timer still runs
                log.warning("log watcher lost its connection; reconnecting", error=repr(error))
                self._stop.wait(1.0)

    def _poll(self) -> None:
        path = Path(self.recorder.datastore.pool.db_name)
        connection: sqlite3.Connection | None = None
        last: int | None = None
        while not self._stop.wait(self.poll_seconds):
            try:
                if connection is None:
                    connection = sqlite3.connect(path, timeout=1, check_same_thread=False)
                version = int(connection.execute("PRAGMA data_version").fetchone()[0])
            except sqlite3.Error:
                if connection is not None:
                    with contextlib.suppress(sqlite3.Error):
                        connection.close()
                connection, last = None, None
                continue
            if last is not None and version != last:
                self.wakeup.set_threadsafe()
            last = version
        if connection is not None:
            connection.close()
