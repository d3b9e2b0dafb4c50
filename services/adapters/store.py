"""Turns DATABASE_URL into eventsourcing's persistence settings for each application."""

from __future__ import annotations

import contextlib
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from services.adapters.recorders import POSTGRES_RECORDER_TOPIC, SQLITE_RECORDER_TOPIC


class DatabaseUrlError(ValueError):
    pass


def is_postgres(database_url: str) -> bool:
    return database_url.startswith(("postgresql://", "postgres://"))


def sqlite_path(database_url: str, application: str) -> Path:
    """SQLite keeps one tracking table per file, so each application gets its own file."""
    base = database_url.removeprefix("sqlite:///")
    if not base or base == ":memory:":
        raise DatabaseUrlError(
            "DATABASE_URL sqlite:/// needs a file path, e.g. sqlite:///data/fulfillment"
        )
    base = base.removesuffix(".db").removesuffix(".sqlite")
    return Path(f"{base}-{application}.db")


def application_env(database_url: str, application: str, **extra: str) -> dict[str, str]:
    """The environment an eventsourcing Application is constructed with."""
    env: dict[str, str] = {}
    if is_postgres(database_url):
        parts = urlsplit(database_url)
        if not parts.hostname or not parts.path.strip("/"):
            raise DatabaseUrlError(
                f"DATABASE_URL {redact(database_url)!r} needs a host and a database name, "
                "e.g. postgresql://user:pass@127.0.0.1:5432/fulfillment"
            )
        try:
            port = parts.port or 5432
        except ValueError as error:
            raise DatabaseUrlError(f"DATABASE_URL has a bad port: {error}") from None
        env.update(
            PERSISTENCE_MODULE="eventsourcing.postgres",
            POSTGRES_DBNAME=unquote(parts.path.strip("/")),
            POSTGRES_HOST=parts.hostname,
            POSTGRES_PORT=str(port),
            POSTGRES_USER=unquote(parts.username or ""),
            POSTGRES_PASSWORD=unquote(parts.password or ""),
            POSTGRES_POOL_SIZE="4",
            POSTGRES_MAX_OVERFLOW="4",
            POSTGRES_CONNECT_TIMEOUT="10",
            POSTGRES_PRE_PING="y",
            PROCESS_RECORDER_TOPIC=POSTGRES_RECORDER_TOPIC,
        )
        schema = parse_qs(parts.query).get("schema")
        if schema:
            env["POSTGRES_SCHEMA"] = schema[0]
    elif database_url.startswith("sqlite:///"):
        path = sqlite_path(database_url, application)
        path.parent.mkdir(parents=True, exist_ok=True)
        env.update(
            PERSISTENCE_MODULE="eventsourcing.sqlite",
            SQLITE_DBNAME=str(path),
            SQLITE_LOCK_TIMEOUT="30",
            PROCESS_RECORDER_TOPIC=SQLITE_RECORDER_TOPIC,
        )
    else:
        raise DatabaseUrlError(
            f"DATABASE_URL {redact(database_url)!r} is neither sqlite:///PATH "
            "nor postgresql://USER:PASSWORD@HOST:PORT/DB"
        )
    env.update(extra)
    return env


def redact(database_url: str) -> str:
    """The URL without its password, for logs and errors."""
    parts = urlsplit(database_url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return parts._replace(netloc=netloc).geturl()
    return database_url


def postgres_dsn(database_url: str) -> tuple[str, str | None]:
    """The connection string psycopg takes (our `?schema=` removed), and that schema."""
    parts = urlsplit(database_url)
    schema = parse_qs(parts.query).get("schema")
    return parts._replace(query="").geturl(), schema[0] if schema else None


def ensure_schema(database_url: str) -> None:
    """Creates the PostgreSQL schema named by ?schema= (eventsourcing expects it to exist)."""
    if not is_postgres(database_url):
        return
    dsn, schema = postgres_dsn(database_url)
    if schema is None:
        return
    import psycopg
    from psycopg import sql

    # Another process may create it at the same moment: IF NOT EXISTS does not cover that.
    racing = (psycopg.errors.UniqueViolation, psycopg.errors.DuplicateSchema)
    with (
        psycopg.connect(dsn, autocommit=True, connect_timeout=10) as connection,
        contextlib.suppress(*racing),
    ):
        connection.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
