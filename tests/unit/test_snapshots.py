"""A SKU keeps every line it held, so its snapshots grow with it: they are spaced by its size
(at least the configured interval, at least half its lines), and a cold load through the
latest one gives the state the live application holds. Snapshots stored by the previous
version of the Sku still load."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path
from typing import Any

from eventsourcing.persistence import StoredEvent, Tracking

from services.adapters.store import application_env
from services.allocation.application import Allocation
from services.allocation.domain import Cause, Sku, sku_aggregate_id
from services.allocation.queue import QueueEntry
from tests.histories import random_history, sku_states
from tests.unit.stories import SkuStory, at, cause_id, decided, event_fields


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
            taken[event.originator_id, event.originator_version] = len(event.mutate(None).lines)
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


# A snapshot of SKU-OLD after _previous_history, as the Sku of class_version 1 stored it
# (taken by that code; only the line breaks are ours): public `lines` and `queue`, and
# queue entries as plain lists [-priority, placed_at, arrival, line_index, key].
V1_SNAPSHOT = r"""
{"timestamp":{"_type_":"datetime_iso","_data_":"2026-11-27T09:24:04.387556+00:00"},
 "topic":"services.allocation.domain:Sku",
 "state":{
  "_created_on":{"_type_":"datetime_iso","_data_":"2026-11-27T09:24:04.385216+00:00"},
  "_modified_on":{"_type_":"datetime_iso","_data_":"2026-11-27T09:24:04.385608+00:00"},
  "sku":"SKU-OLD","received":2,"available":0,
  "lines":{
   "O-1\n1":{"order_id":"O-1","line_id":"1","customer_id":"C-O-1","priority":0,
    "placed_at":{"_type_":"datetime_iso","_data_":"2026-11-25T10:00:00+00:00"},
    "ordered":3,"allocated":2,"backordered":1,"cancelled":0,"rejected":0},
   "O-2\n1":{"order_id":"O-2","line_id":"1","customer_id":"C-O-2","priority":5,
    "placed_at":{"_type_":"datetime_iso","_data_":"2026-11-25T10:01:00+00:00"},
    "ordered":2,"allocated":0,"backordered":2,"cancelled":0,"rejected":0},
   "O-3\n2":{"order_id":"O-3","line_id":"2","customer_id":"C-O-3","priority":0,
    "placed_at":{"_type_":"datetime_iso","_data_":"2026-11-25T10:02:00+00:00"},
    "ordered":4,"allocated":0,"backordered":3,"cancelled":1,"rejected":0},
   "O-4\n1":{"order_id":"O-4","line_id":"1","customer_id":"C-O-4","priority":0,
    "placed_at":{"_type_":"datetime_iso","_data_":"2026-11-25T09:59:00+00:00"},
    "ordered":1,"allocated":0,"backordered":1,"cancelled":0,"rejected":0}
  },
  "queue":[
   [-5,{"_type_":"datetime_iso","_data_":"2026-11-25T10:01:00+00:00"},3,0,"O-2\n1"],
   [0,{"_type_":"datetime_iso","_data_":"2026-11-25T09:59:00+00:00"},5,0,"O-4\n1"],
   [0,{"_type_":"datetime_iso","_data_":"2026-11-25T10:00:00+00:00"},2,0,"O-1\n1"],
   [0,{"_type_":"datetime_iso","_data_":"2026-11-25T10:02:00+00:00"},4,1,"O-3\n2"]
  ],
  "last_position":6
 }
}
"""


def _previous_history(story: SkuStory) -> None:
    story.receive(2)
    story.place("O-1", 3)
    story.place("O-2", 2, priority=5, minutes=1)
    story.place("O-3", 4, line_id="2", line_index=1, minutes=2)
    story.place("O-4", 1, minutes=-1)
    story.cancel("O-3", 1, line_id="2")


def test_a_snapshot_stored_by_the_previous_version_still_loads() -> None:
    """Given a SKU's snapshot in the previous version's shape, when the SKU is loaded from
    it, then it holds what the same history gives today, and decides the next input alike."""
    app = Allocation(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    assert app.snapshots is not None
    old = StoredEvent(
        originator_id=sku_aggregate_id("SKU-OLD"),
        originator_version=12,
        topic="eventsourcing.domain:Snapshot",
        state=V1_SNAPSHOT.encode(),
    )
    app.snapshots.recorder.insert_events([old])
    today = SkuStory("SKU-OLD")
    _previous_history(today)

    loaded = app.find_sku("SKU-OLD")

    assert loaded is not None
    assert all(isinstance(entry, QueueEntry) for entry in loaded.queue)
    assert (loaded.version, loaded.last_position, loaded.received, loaded.available) == (
        today.sku.version,
        today.sku.last_position,
        today.sku.received,
        today.sku.available,
    )
    assert (loaded.lines, loaded.queue) == (today.sku.lines, today.sku.queue)
    receipt = Cause(cause_id(7), at(5), 7)
    for sku in (loaded, today.sku):
        sku.receive_stock(receipt, receipt_id="R-7", quantity=4)
    events = loaded.collect_events()
    assert event_fields(events) == event_fields(today.sku.collect_events())
    assert decided(events) == [
        ("BackorderFilled", "O-2", "1", 2, 0),
        ("BackorderFilled", "O-4", "1", 1, 0),
        ("BackorderFilled", "O-1", "1", 1, 0),
    ]
    app.close()
