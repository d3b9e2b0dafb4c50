"""One SQL store for the read models, on SQLite or PostgreSQL, with the same statements.

Statements are written with `?` placeholders and ISO text or native values as each dialect
wants; this module is the only place that knows the difference. Hand-written because the
read models are plain tables that analysts query directly: an ORM would hide their schema.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import date, datetime
from pathlib import Path
from typing import Any, Protocol

from services.adapters.store import ensure_schema, is_postgres, postgres_dsn, sqlite_path


class Cursor(Protocol):
    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any: ...
    def fetchall(self) -> list[Any]: ...
    def fetchone(self) -> Any: ...


class Tx:
    """A transaction: statements with `?` placeholders, rows as dicts."""

    def __init__(self, cursor: Any, postgres: bool) -> None:
        self.cursor = cursor
        self.postgres = postgres

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        self.cursor.execute(self._sql(sql), [self._value(p) for p in params])

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self.cursor.executemany(self._sql(sql), [[self._value(p) for p in r] for r in rows])

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        self.execute(sql, params)
        names = [column[0] for column in self.cursor.description or ()]
        return [dict(zip(names, row, strict=True)) for row in self.cursor.fetchall()]

    def one(self, sql: str, params: Sequence[Any] = ()) -> dict[str, Any] | None:
        found = self.rows(sql, params)
        return found[0] if found else None

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self.postgres else sql

    def _value(self, value: Any) -> Any:
        if self.postgres or not isinstance(value, date | datetime):
            return value
        return value.isoformat()


class ReadStore:
    """Connections to the read-model store named by DATABASE_URL."""

    def __init__(self, database_url: str) -> None:
        self.postgres = is_postgres(database_url)
        self._local = threading.local()
        if self.postgres:
            from psycopg_pool import ConnectionPool

            ensure_schema(database_url)
            dsn, schema = postgres_dsn(database_url)
            options = {"options": f"-c search_path={schema}"} if schema else {}
            self.pool: Any = ConnectionPool(
                dsn,
                min_size=1,
                max_size=8,
                kwargs=options,
                open=True,
            )
        else:
            self.path: Path = sqlite_path(database_url, "projections")
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self._sqlite() as connection:
                connection.execute("PRAGMA journal_mode=WAL")

    @property
    def timestamp_type(self) -> str:
        return "TIMESTAMPTZ" if self.postgres else "TEXT"

    @property
    def date_type(self) -> str:
        return "DATE" if self.postgres else "TEXT"

    def _sqlite(self) -> sqlite3.Connection:
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            connection = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            connection.execute("PRAGMA busy_timeout=30000")
            self._local.connection = connection
        return connection

    @contextmanager
    def transaction(self, *, write: bool = True) -> Iterator[Tx]:
        """One transaction; SQLite takes its write lock at the start so writers queue."""
        if self.postgres:
            with self.pool.connection() as connection, connection.transaction():
                yield Tx(connection.cursor(), postgres=True)
            return
        connection = self._sqlite()
        connection.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        try:
            yield Tx(connection.cursor(), postgres=False)
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")

    def read(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        with self.transaction(write=False) as tx:
            return tx.rows(sql, params)

    def ping(self) -> None:
        self.read("SELECT 1 AS ok")

    def close(self) -> None:
        if self.postgres:
            self.pool.close()
