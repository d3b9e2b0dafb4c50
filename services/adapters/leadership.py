"""One active publisher per log: the other processes that could publish it stand by.

Relays and the read-model publisher may run in several processes for availability, but two
publishing one log at once would interleave one's resends with the other's new messages: on
the compacted change topics an older row state could land after a newer one and stay there.
A lock held for as long as a process publishes makes it the leader: on PostgreSQL a
session-level advisory lock on a connection of its own (the server frees it when the session
ends, so a killed leader frees it too); on SQLite an exclusive flock on a file beside the
store (the kernel frees it when the process dies).

Hand-written: none of our libraries elects a leader, and this needs nothing but the store.
"""

from __future__ import annotations

import fcntl
import re
import time
from typing import IO, Any, Protocol

from services.adapters.logs import get_logger
from services.adapters.metrics import LEADING
from services.adapters.store import is_postgres, postgres_dsn, sqlite_path

log = get_logger(__name__)

# How often a process standing by asks for the lead: the longest a log waits for a new
# leader after the old one stopped (a killed one frees its lock at once). A poll interval, not
# an error retry, so not the backoff of services.adapters.retries: standing by is the normal
# state of every process but one, and a growing wait would only lengthen the takeover.
STANDBY_RETRY = 0.25
# How often a leader asks its store whether its session (and so its lock) still stands: a
# round trip per batch would be on the path of every order.
CHECK_EVERY_SECONDS = 0.25


class Lock(Protocol):
    def try_acquire(self) -> bool: ...
    def still_held(self) -> bool: ...
    def release(self) -> None: ...


class AdvisoryLock:
    """A PostgreSQL advisory lock, named per schema (locks are database-wide)."""

    def __init__(self, database_url: str, name: str) -> None:
        self.dsn, schema = postgres_dsn(database_url)
        self.key = f"fulfillment:{schema or 'public'}:{name}"
        self.connection: Any = None

    def try_acquire(self) -> bool:
        import psycopg

        try:
            if self.connection is None:
                self.connection = psycopg.connect(self.dsn, autocommit=True, connect_timeout=10)
            row = self.connection.execute(
                "SELECT pg_try_advisory_lock(hashtextextended(%s, 0))", [self.key]
            ).fetchone()
        except psycopg.Error:
            self.release()
            return False
        return bool(row and row[0])

    def still_held(self) -> bool:
        """The lock lives as long as its session: a session that answers still holds it."""
        import psycopg

        if self.connection is None:
            return False
        try:
            self.connection.execute("SELECT 1")
        except psycopg.Error:
            self.release()
            return False
        return True

    def release(self) -> None:
        connection, self.connection = self.connection, None
        if connection is not None:
            try:
                # Freed now, not when the server notices the session ended: a standby asking
                # right after a clean step-down gets the lead.
                connection.execute("SELECT pg_advisory_unlock_all()")
            except Exception as error:  # a broken session: closing it frees the lock
                log.debug("unlocking before closing failed", error=repr(error))
            try:
                connection.close()  # ends the session, which frees the lock
            except Exception as error:  # a broken session is closed anyway
                log.debug("closing the leader session failed", error=repr(error))


class FileLock:
    """An exclusive flock beside a SQLite store: every process that shares it is local."""

    def __init__(self, database_url: str, name: str) -> None:
        safe = re.sub(r"[^A-Za-z0-9._-]", "_", name)
        self.path = sqlite_path(database_url, f"leader-{safe}").with_suffix(".lock")
        self.handle: IO[str] | None = None

    def try_acquire(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = self.path.open("a")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        self.handle = handle
        return True

    def still_held(self) -> bool:
        return self.handle is not None

    def release(self) -> None:
        handle, self.handle = self.handle, None
        if handle is not None:
            handle.close()  # closing the file drops the flock


class Leadership:
    """Whether this process may publish `name` now; call `lead()` before every batch."""

    def __init__(self, database_url: str, name: str) -> None:
        self.name = name
        self.lock: Lock = (
            AdvisoryLock(database_url, name)
            if is_postgres(database_url)
            else FileLock(database_url, name)
        )
        self.leading = False
        self.standing_by = False
        self.checked_at = 0.0

    def lead(self) -> bool:
        """True while this process is the leader; tries to become it when it is not."""
        if self.leading:
            if time.monotonic() - self.checked_at < CHECK_EVERY_SECONDS:
                return True
            if self.lock.still_held():
                self.checked_at = time.monotonic()
                return True
            self.leading = False
            LEADING.labels(self.name).set(0)
            log.warning("lost the lead (store session gone); trying again", role=self.name)
        if self.lock.try_acquire():
            self.leading, self.standing_by = True, False
            self.checked_at = time.monotonic()
            LEADING.labels(self.name).set(1)
            log.info("leading: this process publishes", role=self.name)
            return True
        if not self.standing_by:
            self.standing_by = True
            LEADING.labels(self.name).set(0)
            log.info("standing by: another process publishes", role=self.name)
        return False

    def step_down(self) -> None:
        self.lock.release()
        self.leading = False
        LEADING.labels(self.name).set(0)
