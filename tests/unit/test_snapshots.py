"""A SKU keeps every line it held, so its snapshots grow with it: they are spaced by its size
(at least the configured interval, at least half its lines), and a cold load through the
latest one gives the state the live application holds."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path
from typing import Any

from eventsourcing.persistence import Tracking

from services.adapters.store import application_env
from services.allocation.application import Allocation
from services.allocation.domain import Sku, sku_aggregate_id
from tests.histories import random_history, sku_states


class SmallIntervalAllocation(Allocation):
    snapshotting_intervals = {Sku: 10}  # noqa: RUF012 - eventsourcing's class-level config


def test_snapshots_are_spaced_by_the_sku_size_and_restore_its_state(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/store"
    env = application_env(url, "allocation")
    history = random_history(11, skus=3, inputs=900)
    live = SmallIntervalAllocation(env=env)
    taken: dict[tuple[object, int], int] = {}  # (SKU id, version): lines held then
    assert live.snapshots is not None
    snapshots = live.snapshots
    put = snapshots.put

    def spy(events: list[Any], **kwargs: object) -> object:
        for event in events:
            taken[event.originator_id, event.originator_version] = len(event.state["lines"])
        return put(events, **kwargs)

    snapshots.put = spy  # type: ignore[method-assign,assignment]
    for start in range(0, len(history), 25):
        batch = history[start : start + 25]
        live.apply_commands(batch, Tracking("sku-commands-0", batch[-1].position))

    skus = ["SKU-0", "SKU-1", "SKU-2"]
    assert len(taken) >= 10, "the history is long enough for several snapshots"
    for sku in skus:
        stored = snapshots.recorder.select_events(sku_aggregate_id(sku))
        versions = [event.originator_version for event in stored]
        assert versions == sorted(versions)
        assert versions, f"{sku} was never snapshotted"
        for before, after in pairwise(versions):
            lines = taken[sku_aggregate_id(sku), after]
            assert after - before >= max(10, lines // 2), (sku, before, after, lines)

    reopened = SmallIntervalAllocation(env=env)  # a cold load: snapshot, then later events
    assert sku_states(reopened, skus) == sku_states(live, skus)
    live.close()
    reopened.close()
