"""One SQL store for the read models, on SQLite or PostgreSQL, with the same statements.

Statements are written with `?` placeholders and ISO text or native values as each dialect
wants; this module is the only place that knows the difference. Hand-written because the
read models are plain tables that analysts query directly: an ORM would hide their schema.

Many rows at once (`insert_many`, `upsert_many`, `update_many`, `delete_many`,
`select_many`): the read models write a page of the log as a few statements, not several
per event. SQLite runs one prepared statement over the rows (`executemany`, a C loop in
process); PostgreSQL gets ONE statement over the rows sent as one JSON array, so a page
costs a few round trips whatever its size.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import date, datetime
from pathlib import Path
from typing import Any, Protocol

import orjson

from services.adapters.store import ensure_schema, is_postgres, postgres_dsn, sqlite_path

# Rows per statement when SQLite selects by a list of keys (its limit is on parameters).
SQLITE_KEYS_PER_SELECT = 2_000


class Cursor(Protocol):
    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any: ...
    def fetchall(self) -> list[Any]: ...
    def fetchone(self) -> Any: ...


class Tx:
    """A transaction: statements with `?` placeholders, rows as dicts."""

    def __init__(self, cursor: Any, postgres: bool, types: dict[str, dict[str, str]]) -> None:
        self.cursor = cursor
        self.postgres = postgres
        self._types = types  # PostgreSQL: each table's column types, to cast the JSON rows

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        if sql.startswith(("CREATE TABLE", "DROP TABLE")):
            self._types.clear()  # a table of that name may come back with other columns
        self.cursor.execute(self._sql(sql), [self._value(p) for p in params])

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self.cursor.executemany(self._sql(sql), [[self._value(p) for p in r] for r in rows])

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        self.execute(sql, params)
        return self._fetched()

    def one(self, sql: str, params: Sequence[Any] = ()) -> dict[str, Any] | None:
        found = self.rows(sql, params)
        return found[0] if found else None

    # --- many rows at once -----------------------------------------------------------------
    # Values go as they are, times and days as ISO-8601 text (or as the store returned them):
    # converting each value of a page's rows would cost as much as writing them. SQLite keeps
    # the text; PostgreSQL casts it to the column's type.

    def insert_many(
        self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]
    ) -> None:
        """Inserts the rows (each with `columns`' values, in that order)."""
        if not rows:
            return
        names = ", ".join(columns)
        if self.postgres:
            self._from_json(
                f"INSERT INTO {table} ({names}) SELECT * FROM {{values}}", table, columns, rows
            )
        else:
            marks = ", ".join("?" * len(columns))
            self.cursor.executemany(f"INSERT INTO {table} ({names}) VALUES ({marks})", rows)

    def upsert_many(
        self,
        table: str,
        columns: Sequence[str],
        rows: Sequence[Sequence[Any]],
        *,
        key: Sequence[str],
        add: Sequence[str] = (),
        replace: Sequence[str] = (),
    ) -> None:
        """Inserts the rows; where one with the same `key` exists, adds the `add` columns to
        it and sets the `replace` ones. Keys must be distinct within `rows`."""
        if not rows:
            return
        sets = [f"{c} = {table}.{c} + excluded.{c}" for c in add]
        sets += [f"{c} = excluded.{c}" for c in replace]
        if not sets:  # makes the row known and changes nothing of one that is
            sets = [f"{key[0]} = excluded.{key[0]}"]
        names = ", ".join(columns)
        conflict = f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET {', '.join(sets)}"
        if self.postgres:
            self._from_json(
                f"INSERT INTO {table} ({names}) SELECT * FROM {{values}} {conflict}",
                table,
                columns,
                rows,
            )
        else:
            marks = ", ".join("?" * len(columns))
            self.cursor.executemany(
                f"INSERT INTO {table} ({names}) VALUES ({marks}) {conflict}", rows
            )

    def update_many(
        self,
        table: str,
        columns: Sequence[str],
        rows: Sequence[Sequence[Any]],
        *,
        key: Sequence[str],
        add: Sequence[str] = (),
    ) -> None:
        """For each row, the table's row with the same `key`: the `add` columns are added to,
        the other non-key columns set. A key the table does not hold changes nothing."""
        if not rows:
            return
        changed = [c for c in columns if c not in key]
        if self.postgres:
            sets = ", ".join(
                f"{c} = {table}.{c} + v.{c}" if c in add else f"{c} = v.{c}" for c in changed
            )
            match = " AND ".join(f"{table}.{c} = v.{c}" for c in key)
            self._from_json(
                f"UPDATE {table} SET {sets} FROM {{values}} WHERE {match}", table, columns, rows
            )
            return
        at = {c: f"?{i}" for i, c in enumerate(columns, 1)}  # SQLite's numbered parameters
        sets = ", ".join(f"{c} = {c} + {at[c]}" if c in add else f"{c} = {at[c]}" for c in changed)
        where = " AND ".join(f"{c} = {at[c]}" for c in key)
        self.cursor.executemany(f"UPDATE {table} SET {sets} WHERE {where}", rows)

    def delete_many(self, table: str, key: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """Deletes the rows with these `key` values (those the table does not hold: nothing)."""
        if not rows:
            return
        if self.postgres:
            match = " AND ".join(f"{table}.{c} = v.{c}" for c in key)
            self._from_json(f"DELETE FROM {table} USING {{values}} WHERE {match}", table, key, rows)
            return
        where = " AND ".join(f"{c} = ?" for c in key)
        self.cursor.executemany(f"DELETE FROM {table} WHERE {where}", rows)

    def select_many(
        self, table: str, key: Sequence[str], rows: Sequence[Sequence[Any]]
    ) -> list[dict[str, Any]]:
        """The table's rows with these `key` values (in no particular order)."""
        if not rows:
            return []
        match = " AND ".join(f"t.{c} = v.{c}" for c in key)
        if self.postgres:
            self._from_json(
                f"SELECT t.* FROM {table} AS t JOIN {{values}} ON {match}", table, key, rows
            )
            return self._fetched()
        found: list[dict[str, Any]] = []
        names = ", ".join(key)
        for start in range(0, len(rows), SQLITE_KEYS_PER_SELECT):
            chunk = rows[start : start + SQLITE_KEYS_PER_SELECT]
            marks = ", ".join([f"({', '.join('?' * len(key))})"] * len(chunk))
            # A CTE names the columns; SQLite looks each key up in the table's index.
            self.cursor.execute(
                f"WITH v ({names}) AS (VALUES {marks}) SELECT t.* FROM v JOIN {table} AS t "
                f"ON {match}",
                [value for row in chunk for value in row],
            )
            found += self._fetched()
        return found

    def _from_json(
        self, sql: str, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]
    ) -> None:
        """PostgreSQL: runs `sql` with `{values}` as the rows, sent as ONE JSON array that the
        server takes apart (orjson writes it in C; psycopg adapts arrays value by value in
        Python, which cost more than the statements' work)."""
        types = self._column_types(table)
        picks = ", ".join(f"(r ->> {i})::{types[c]} AS {c}" for i, c in enumerate(columns))
        values = f"(SELECT {picks} FROM jsonb_array_elements(%s::jsonb) AS r) AS v"
        self.cursor.execute(sql.replace("{values}", values), [orjson.dumps(rows).decode()])

    def _column_types(self, table: str) -> dict[str, str]:
        found = self._types.get(table)
        if found is None:
            self.cursor.execute(
                "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
                "WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped",
                [table],
            )
            found = {str(name): str(kind) for name, kind in self.cursor.fetchall()}
            self._types[table] = found
        return found

    def _fetched(self) -> list[dict[str, Any]]:
        names = [column[0] for column in self.cursor.description or ()]
        return [dict(zip(names, row, strict=True)) for row in self.cursor.fetchall()]

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
        self._types: dict[str, dict[str, str]] = {}
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
                yield Tx(connection.cursor(), postgres=True, types=self._types)
            return
        connection = self._sqlite()
        connection.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        try:
            yield Tx(connection.cursor(), postgres=False, types=self._types)
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
