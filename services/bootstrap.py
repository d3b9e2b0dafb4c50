"""The composition root: builds each stage's application from settings. Nothing at import."""

from __future__ import annotations

from projections.runner import ReadModels
from projections.store import ReadStore
from services import faults
from services.allocation.application import Allocation
from services.intake.application import Intake
from services.settings import Settings
from services.store import application_env, ensure_schema


def cache_env(settings: Settings) -> dict[str, str]:
    # One writer per aggregate (partitioning gives it), so the cache need not fast-forward.
    return {
        "AGGREGATE_CACHE_MAXSIZE": str(settings.aggregate_cache_size),
        "AGGREGATE_CACHE_FASTFORWARD": "n",
    }


def build_intake(settings: Settings) -> Intake:
    ensure_schema(settings.database_url)
    intake = Intake(env=application_env(settings.database_url, "intake", **cache_env(settings)))
    faults.arm_transaction(intake.recorder, "intake")
    return intake


def build_allocation(settings: Settings) -> Allocation:
    ensure_schema(settings.database_url)
    allocation = Allocation(
        env=application_env(settings.database_url, "allocation", **cache_env(settings))
    )
    faults.arm_transaction(allocation.recorder, "allocation")
    return allocation


def build_read_models(settings: Settings, allocation: Allocation) -> ReadModels:
    return ReadModels(ReadStore(settings.database_url), allocation)
