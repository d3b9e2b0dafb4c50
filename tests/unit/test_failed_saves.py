"""A batch that fails to save leaves no trace: the retry starts from what the store holds."""

from __future__ import annotations

from pathlib import Path

import pytest
from eventsourcing.persistence import IntegrityError, Tracking

from services.adapters.settings import Settings
from services.allocation.application import Allocation
from services.allocation.domain import sku_aggregate_id
from services.entrypoints.bootstrap import build_allocation
from tests.histories import random_history, sku_states


def _versions(allocation: Allocation, sku: str) -> list[int]:
    return [e.originator_version for e in allocation.events.get(sku_aggregate_id(sku))]


def test_a_batch_whose_save_fails_is_forgotten_and_its_retry_applies_once(tmp_path: Path) -> None:
    allocation = build_allocation(Settings(database_url=f"sqlite:///{tmp_path}/store"))
    history = random_history(5, skus=3, inputs=60)
    first, second = history[:30], history[30:]
    allocation.apply_commands(first, Tracking("sku-commands-0", 10))

    # The position only moves forward: recording 5 after 10 fails the whole batch...
    with pytest.raises(IntegrityError):
        allocation.apply_commands(second, Tracking("sku-commands-0", 5))
    # ...and the retry, from the same cache, must not build on what the failure left behind.
    allocation.apply_commands(second, Tracking("sku-commands-0", 20))

    fresh = build_allocation(Settings(database_url=f"sqlite:///{tmp_path}/fresh"))
    fresh.apply_commands(history, Tracking("sku-commands-0", 20))
    stored = build_allocation(Settings(database_url=f"sqlite:///{tmp_path}/store"))  # no cache
    for sku in ("SKU-0", "SKU-1", "SKU-2"):
        versions = _versions(allocation, sku)
        assert versions == list(range(1, len(versions) + 1)), "a gap in the SKU's versions"
    skus = ["SKU-0", "SKU-1", "SKU-2"]
    assert sku_states(stored, skus) == sku_states(fresh, skus)
