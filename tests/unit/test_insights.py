"""The insight read model's rules: given these decisions, these figures (docs/read-models.md,
"Insights")."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

from projections.insight_queries import days_short, lost, percentile, rates, time_to_fill
from projections.insights import SkuInsights
from projections.store import ReadStore
from tests.unit.stories import T0, SkuStory, day


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ReadStore]:
    found = ReadStore(f"sqlite:///{tmp_path}/read")
    yield found
    found.close()


def insights(store: ReadStore, events: Sequence[object]) -> dict[str, list[dict[str, Any]]]:
    """Each insight table after the events, one by one."""
    model = SkuInsights(store)
    with store.transaction() as tx:
        model.create(tx, model.name)
        for position, event in enumerate(events, start=1):
            model.apply(event, tx, model.name, position)
    return {
        view: store.read(f"SELECT * FROM {table} ORDER BY 1, 2")
        for view, table in model.views(model.name).items()
    }


def daily(tables: dict[str, list[dict[str, Any]]], on: date | None = None) -> dict[str, Any]:
    wanted = (on or T0.date()).isoformat()
    [row] = [r for r in tables["insights_daily"] if r["day"] == wanted]
    return row


def test_units_met_at_order_time_are_allocated_the_rest_backordered(store: ReadStore) -> None:
    story = SkuStory("SKU-1")
    events = story.receive(3) + story.place("O-1", 5)
    row = daily(insights(store, events))
    assert (row["ordered"], row["allocated"], row["backordered"], row["received"]) == (5, 3, 2, 3)
    assert rates(row) == {"fill_rate": 0.6, "backorder_rate": 0.4}


def test_units_cancelled_before_the_order_reached_the_sku_are_not_demand_it_could_meet(
    store: ReadStore,
) -> None:
    story = SkuStory("SKU-1")
    events = story.receive(2) + story.place("O-1", 4, cancelled_before_placement=2)
    row = daily(insights(store, events))
    assert (row["ordered"], row["withdrawn"], row["allocated"]) == (4, 2, 2)
    assert rates(row)["fill_rate"] == 1.0


def test_rejections_are_counted_by_reason(store: ReadStore) -> None:
    story = SkuStory("SKU-1")
    events = story.set_policy("limit", limit=1) + story.place("O-1", 3)
    events += story.set_policy("deny") + story.place("O-2", 2)
    row = daily(insights(store, events))
    assert (row["backordered"], row["rejected"]) == (1, 4)
    assert (row["rejected_limit"], row["rejected_denied"]) == (2, 2)
    assert lost(row) == 4


def test_a_fill_records_how_long_its_units_waited_on_the_day_they_were_filled(
    store: ReadStore,
) -> None:
    story = SkuStory("SKU-1")
    events = story.place("O-1", 2)  # at T0
    events += story.receive(1, cause=story.next_cause(minutes=90))  # 1 unit after 90 min
    events += story.receive(5, cause=story.next_cause(minutes=60 * 26))  # next day, 26 h
    tables = insights(store, events)
    assert [(r["day"], r["wait_seconds"], r["units"]) for r in tables["insights_fill_times"]] == [
        (T0.date().isoformat(), 90 * 60, 1),
        ((T0 + timedelta(days=1)).date().isoformat(), 26 * 3600, 1),
    ]
    assert daily(tables, T0.date())["fill_wait_seconds"] == 90 * 60
    assert tables["insights_waiting"] == []  # filled: no longer waiting


def test_expired_and_customer_cancelled_backorders_are_lost_demand(store: ReadStore) -> None:
    story = SkuStory("SKU-1")
    events = story.set_policy(max_wait_days=2) + story.place("O-1", 3) + story.place("O-2", 2)
    events += story.cancel("O-2", 1)
    events += story.tick(day(3))
    tables = insights(store, events)
    assert daily(tables)["cancelled_waiting"] == 1
    expired_day = daily(tables, day(3).date())
    assert expired_day["expired"] == 4  # O-1's 3 and O-2's 1 left
    assert lost(expired_day) == 4


def test_a_sku_is_short_from_the_first_unit_queued_until_the_queue_is_empty(
    store: ReadStore,
) -> None:
    story = SkuStory("SKU-1")
    events = story.place("O-1", 2)  # short from T0
    events += story.place("O-2", 1, minutes=10)
    events += story.receive(3, cause=story.next_cause(minutes=60 * 50))  # empty: stretch ends
    events += story.place("O-3", 1, minutes=60 * 72)  # short again, still
    tables = insights(store, events)
    [stretch] = tables["insights_stockouts"]
    assert stretch["started_at"] == T0.isoformat()
    assert stretch["ended_at"] == (T0 + timedelta(hours=50)).isoformat()
    [now] = tables["insights_skus"]
    assert (now["waiting_units"], now["waiting_lines"]) == (1, 1)
    assert now["short_since"] == (T0 + timedelta(hours=72)).isoformat()
    [waiting] = tables["insights_waiting"]
    assert (waiting["order_id"], waiting["backordered_at"]) == ("O-3", now["short_since"])


def test_a_partial_fill_keeps_the_line_waiting_and_the_sku_short(store: ReadStore) -> None:
    story = SkuStory("SKU-1")
    events = story.place("O-1", 3) + story.receive(2, cause=story.next_cause(minutes=5))
    tables = insights(store, events)
    assert tables["insights_stockouts"] == []
    assert [(w["order_id"], w["line_id"]) for w in tables["insights_waiting"]] == [("O-1", "1")]
    assert tables["insights_skus"][0]["waiting_units"] == 1


def test_time_to_fill_is_the_unit_weighted_nearest_rank_percentile() -> None:
    waits = [(60, 9), (3600, 1)]  # nine units waited a minute, one an hour
    assert percentile(waits, 0.5) == 60
    assert percentile(waits, 0.9) == 60  # the 9th of 10 units
    assert percentile(waits, 0.91) == 3600
    assert time_to_fill(waits) == {
        "time_to_fill_p50_seconds": 60,
        "time_to_fill_p90_seconds": 60,
        "time_to_fill_max_seconds": 3600,
    }
    assert time_to_fill([])["time_to_fill_p50_seconds"] is None


def test_days_short_count_each_calendar_day_of_a_stretch_inside_the_range() -> None:
    first, last = date(2026, 11, 1), date(2026, 11, 30)
    stretches = [(date(2026, 10, 30), date(2026, 11, 2)), (date(2026, 11, 2), date(2026, 11, 3))]
    assert days_short(stretches, first, last) == {date(2026, 11, d) for d in (1, 2, 3)}


def test_without_demand_there_is_no_rate() -> None:
    counters = {"ordered": 2, "withdrawn": 2, "allocated": 0, "backordered": 0}
    assert rates(counters) == {"fill_rate": None, "backorder_rate": None}


def test_business_time_running_backwards_never_makes_a_negative_wait(store: ReadStore) -> None:
    story = SkuStory("SKU-1")
    events = story.place("O-1", 1, minutes=60)
    events += story.receive(1, cause=story.next_cause(minutes=-60))  # before the order
    tables = insights(store, events)
    assert [r["wait_seconds"] for r in tables["insights_fill_times"]] == [0]
    [stretch] = tables["insights_stockouts"]
    assert stretch["ended_at"] == stretch["started_at"] == (T0 + timedelta(hours=1)).isoformat()
