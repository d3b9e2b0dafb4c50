"""Session-wide real servers, and a store per test on SQLite and on PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import infrastructure


@pytest.fixture(scope="session")
def exclusive_servers() -> Iterator[None]:
    """One test run at a time on this machine's servers (see infrastructure.claim_servers)."""
    try:
        claim = infrastructure.claim_servers()
    except RuntimeError as busy:
        pytest.exit(str(busy), returncode=3)
    with claim:
        yield


@pytest.fixture(scope="session")
def kafka_bootstrap(exclusive_servers: None) -> Iterator[str]:
    servers, container = infrastructure.kafka_bootstrap_servers()
    yield servers
    if container is not None:
        container.stop()  # type: ignore[attr-defined]


@pytest.fixture(scope="session")
def postgres_base_url(exclusive_servers: None) -> Iterator[str]:
    url, container = infrastructure.postgres_url()
    yield url
    if container is not None:
        container.stop()  # type: ignore[attr-defined]


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty store: a SQLite file, or a PostgreSQL schema of its own."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/fulfillment"
    base: str = request.getfixturevalue("postgres_base_url")
    separator = "&" if "?" in base else "?"
    return f"{base}{separator}schema=t_{uuid.uuid4().hex[:12]}"


def pytest_collection_modifyitems(items: list[Any]) -> None:
    for item in items:
        if "database_url" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.postgres)
