"""The composition root: builds each stage's application from settings. Nothing at import."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

import psycopg
from eventsourcing.persistence import PersistenceError

from services.adapters import faults
from services.adapters.retries import STARTUP
from services.adapters.settings import Settings
from services.adapters.store import application_env, ensure_schema
from services.allocation.application import Allocation
from services.intake.application import Intake

if TYPE_CHECKING:
    from projections.runner import ReadModels

T = TypeVar("T")


def cache_env(settings: Settings) -> dict[str, str]:
    # One writer per aggregate (partitioning gives it), so the cache need not fast-forward.
    return {
        "AGGREGATE_CACHE_MAXSIZE": str(settings.aggregate_cache_size),
        "AGGREGATE_CACHE_FASTFORWARD": "n",
    }


# What losing the race below looks like (on SQLite: the file locked by another process
# switching it to WAL as it opens it, which eventsourcing does not wrap).
_RACE_LOST = (
    PersistenceError,
    psycopg.errors.UniqueViolation,
    psycopg.errors.DuplicateObject,
    sqlite3.OperationalError,
)


def _racing(build: Callable[[], T]) -> T:
    """Stages started together create the same schema, tables and views at once, and
    PostgreSQL's IF NOT EXISTS is not safe against that race: the loser retries (STARTUP)."""
    return STARTUP.call(_RACE_LOST, build)


def build_intake(settings: Settings) -> Intake:
    def build() -> Intake:
        ensure_schema(settings.database_url)
        env = application_env(settings.database_url, "intake", **cache_env(settings))
        return Intake(env=env)

    intake = _racing(build)
    faults.arm_transaction(intake.recorder, "intake")
    return intake


def build_allocation(settings: Settings) -> Allocation:
    def build() -> Allocation:
        ensure_schema(settings.database_url)
        env = application_env(settings.database_url, "allocation", **cache_env(settings))
        return Allocation(env=env)

    allocation = _racing(build)
    faults.arm_transaction(allocation.recorder, "allocation")
    return allocation


def build_read_models(settings: Settings, allocation: Allocation) -> ReadModels:
    from projections.runner import ReadModels  # only the processes that keep read models
    from projections.store import ReadStore

    return _racing(lambda: ReadModels(ReadStore(settings.database_url), allocation))
