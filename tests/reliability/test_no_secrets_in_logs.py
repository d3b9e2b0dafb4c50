"""No secret reaches the logs: the service runs as a process with a Kafka SASL password and
a database password it must never print, at DEBUG level, through good inputs, a dead letter,
a clean stop, and a start that fails on an unreachable database."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import psycopg
import pytest
from psycopg import sql

from services.adapters.settings import Settings
from tests.harness import (
    as_json,
    environment,
    free_port,
    isolated_settings,
    order,
    publish,
    read_topic,
    receipt,
)

pytestmark = pytest.mark.kafka

CLI = str(Path(sys.executable).parent / "fulfillment")
KAFKA_SECRET = "Kafka-S3cr3t-Pa55-7c1e"
DATABASE_SECRET = "S3cr3t-Pa55"


def _with_password(url: str, password: str) -> str:
    parts = urlsplit(url)
    user = parts.username or "fulfillment"
    host = parts.hostname or "127.0.0.1"
    port = f":{parts.port}" if parts.port else ""
    return parts._replace(netloc=f"{user}:{password}@{host}{port}").geturl()


def _database_url(postgres_base_url: str, tmp_path: Path) -> str:
    """The test PostgreSQL with a recognisable password, if the server accepts it (the
    local cluster trusts 127.0.0.1); else SQLite, and only the Kafka secret is checked."""
    url = _with_password(postgres_base_url, DATABASE_SECRET)
    try:
        with psycopg.connect(url, connect_timeout=5) as connection:
            connection.execute("SELECT 1")
    except psycopg.Error:
        return f"sqlite:///{tmp_path}/fulfillment"
    return f"{url}{'&' if '?' in url else '?'}schema=t_secrets_{uuid.uuid4().hex[:12]}"


def _drop_schema(database_url: str) -> None:
    schema = parse_qs(urlsplit(database_url).query).get("schema")
    if not database_url.startswith("postgresql") or not schema:
        return
    dsn = urlsplit(database_url)._replace(query="").geturl()
    with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as connection:
        connection.execute(
            sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema[0]))
        )


def _environment(settings: Settings) -> dict[str, str]:
    return environment(
        settings,
        # PLAINTEXT still connects to the test broker; the SASL options are built and handed
        # to every client all the same, so a leak would show.
        KAFKA_SECURITY_PROTOCOL="PLAINTEXT",
        KAFKA_SASL_MECHANISM="PLAIN",
        KAFKA_SASL_USERNAME="svc-fulfillment",
        KAFKA_SASL_PASSWORD=KAFKA_SECRET,
        API_TOKEN="Api-T0ken-" + KAFKA_SECRET,
        ADMIN_TOKEN="Adm1n-T0ken-" + KAFKA_SECRET,
        LOG_FORMAT="json",
        LOG_LEVEL="DEBUG",
        COLUMNS="1000",  # no wrapping that could split a secret across lines
        PYTHONUNBUFFERED="1",
    )


async def _wait_until_up(port: int, service: asyncio.subprocess.Process) -> None:
    """Publishes only once the service has created its topics and serves HTTP."""
    async with httpx.AsyncClient() as client:
        for _ in range(600):
            if service.returncode is not None:
                raise AssertionError(f"the service exited with {service.returncode}")
            try:
                if (await client.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError("the service did not answer /healthz within 60 s")


def _assert_no_secret(output: str) -> None:
    flat = "".join(output.split())
    for secret in (KAFKA_SECRET, DATABASE_SECRET):
        assert secret not in output, f"{secret!r} printed:\n{output[-3000:]}"
        assert secret not in flat, f"{secret!r} printed across lines"


async def test_a_running_service_never_prints_its_secrets(
    kafka_bootstrap: str, postgres_base_url: str, tmp_path: Path
) -> None:
    settings = isolated_settings(kafka_bootstrap, _database_url(postgres_base_url, tmp_path))
    topics = settings.topics
    log_path = tmp_path / "service.log"
    with log_path.open("w") as log:
        service = await asyncio.create_subprocess_exec(
            CLI, "run", env=_environment(settings), stdout=log, stderr=subprocess.STDOUT
        )
    try:
        await _wait_until_up(settings.http_port, service)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{settings.http_port}") as api:
            assert (await api.get("/backorders")).status_code == 401  # API_TOKEN is set
        await publish(
            settings,
            [
                (topics.receipts, "SKU-S", as_json(receipt("R-1", "SKU-S", 1))),
                (topics.orders, "O-1", as_json(order("O-1", [("1", "SKU-S", 2)]))),
                (topics.orders, "O-2", b'{"type": "OrderPlaced", "password": "not json'),
            ],
        )
        dead = await read_topic(settings, topics.dead_letters, until=lambda r: len(r) >= 1)
        decided = await read_topic(settings, topics.decisions, until=lambda r: len(r) >= 2)
        await asyncio.sleep(1.0)  # let the logs of the last batches out
    finally:
        service.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(service.wait(), 60)
        await asyncio.to_thread(_drop_schema, settings.database_url)
    output = log_path.read_text()
    assert code == 0, output[-3000:]
    assert len(dead) == 1
    assert len(decided) >= 2
    assert '"input dead-lettered"' in output  # the error path was logged...
    assert '"running"' in output
    assert '"stopped"' in output
    _assert_no_secret(output)  # ...and nothing anywhere shows a secret
    if settings.database_url.startswith("postgresql"):
        assert ":***@" in output  # the store is named, its password masked


def test_a_failed_start_names_the_database_without_its_password(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    unreachable = f"postgresql://fulfillment:{DATABASE_SECRET}@127.0.0.1:{free_port()}/nowhere"
    settings = isolated_settings(kafka_bootstrap, unreachable)
    started = subprocess.run(
        [CLI, "run"],
        env=_environment(settings),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = started.stdout + started.stderr
    assert started.returncode == 1, output[-3000:]
    assert "cannot start" in output
    assert "postgresql://fulfillment:***@127.0.0.1" in "".join(output.split())
    _assert_no_secret(output)
