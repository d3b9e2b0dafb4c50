"""Real servers for the tests, found in this order (docs/architecture.md): the environment's
KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL_TEST (or a postgresql DATABASE_URL); a
testcontainers container where a Docker engine answers; else the broker and cluster that
the deploy/ scripts start on this machine. All three are real servers; there are no fakes."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import IO

REPO = Path(__file__).resolve().parent.parent


def _docker_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return (
            subprocess.run(
                ["docker", "info"], capture_output=True, timeout=5, check=False
            ).returncode
            == 0
        )
    except (OSError, subprocess.TimeoutExpired):
        return False


def claim_servers() -> IO[str]:
    """Holds, for the whole test session, a lock that one test run at a time may have.

    The fault scenarios kill and restart the broker and PostgreSQL on this machine's ports, so
    two runs at once (two clones, or a leftover run) would kill each other's servers and fail
    in ways that look like the service's fault. The lock is keyed by the ports, not the
    checkout, and the kernel drops it when the holder dies."""
    ports = f"{os.environ.get('KAFKA_PORT', '9092')}-{os.environ.get('PG_PORT', '5432')}"
    path = Path(tempfile.gettempdir()) / f"fulfillment-tests-{ports}.lock"
    handle = path.open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        handle.close()
        raise RuntimeError(
            f"another test run (pid {holder}) is using the Kafka and PostgreSQL servers on "
            f"ports {ports}; its fault scenarios restart them, so the two runs would break each "
            f"other. Wait for it to finish, or stop it (kill {holder}), then run again."
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    return handle


def kafka_bootstrap_servers() -> tuple[str, object | None]:
    """Returns the bootstrap servers and, for a container, the handle to stop it."""
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        return os.environ["KAFKA_BOOTSTRAP_SERVERS"], None
    if _docker_answers():
        from testcontainers.kafka import KafkaContainer

        container = KafkaContainer().with_kraft()
        container.start()
        return container.get_bootstrap_server(), container
    subprocess.run(["bash", str(REPO / "deploy/kafka/kafka.sh"), "start"], check=True)
    return f"127.0.0.1:{os.environ.get('KAFKA_PORT', '9092')}", None


def postgres_url() -> tuple[str, object | None]:
    for name in ("DATABASE_URL_TEST", "DATABASE_URL"):
        url = os.environ.get(name, "")
        if url.startswith(("postgresql://", "postgres://")):
            return url, None
    if _docker_answers():
        from testcontainers.postgres import PostgresContainer

        container = PostgresContainer("postgres:16")
        container.start()
        url = container.get_connection_url().replace("postgresql+psycopg2://", "postgresql://")
        return url, container
    script = str(REPO / "deploy/postgres/postgres.sh")
    subprocess.run(["bash", script, "start"], check=True, stdout=subprocess.DEVNULL)
    found = subprocess.run(
        ["bash", script, "url", "test"], check=True, capture_output=True, text=True
    )
    return found.stdout.strip().splitlines()[-1], None
