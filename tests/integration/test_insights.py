"""The insight figures, on both stores, equal a recomputation straight from the decisions:
a history with every kind of input (policies, inbounds, receipts, shipments, cancellations,
expiries), fed to the read models as the service feeds them, then asked as the API asks."""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from projections.insight_queries import InsightQueries
from projections.runner import ReadModels
from projections.store import ReadStore
from services.allocation.application import Allocation
from services.allocation.domain import Sku
from services.operations.replay import events_of
from tests.integration.test_read_models import _allocation, _drain

COUNTERS = (
    "ordered",
    "withdrawn",
    "allocated",
    "backordered",
    "rejected",
    "rejected_denied",
    "rejected_limit",
    "filled",
    "fill_wait_seconds",
    "expired",
    "cancelled_waiting",
    "released",
    "received",
    "shipped",
)
Counters = dict[str, int]
QUEUE_MOVES = (Sku.LineBackordered, Sku.BackorderFilled, Sku.BackorderCancelled)


class Recomputed:
    """The insights, event by event from the SKUs' recorded decisions, in log order."""

    def __init__(self, allocation: Allocation, now: datetime) -> None:
        self.daily: dict[tuple[str, date], Counters] = defaultdict(lambda: defaultdict(int))
        self.fill_times: dict[tuple[str, date, int], int] = defaultdict(int)
        self.short_days: dict[str, set[date]] = defaultdict(set)
        self.waiting: dict[tuple[str, str, str], datetime] = {}
        self.units: dict[str, int] = defaultdict(int)
        self.short_since: dict[str, datetime] = {}
        for _, event in events_of(allocation):
            if isinstance(event, Sku.Recorded) and hasattr(event, "occurred_at"):
                day = self.daily[(event.sku, event.occurred_at.date())]
                self._count(event, day)
                if isinstance(event, QUEUE_MOVES):
                    self._queue(event, day)
        for sku, since in self.short_since.items():
            self._short(sku, since, now)

    @staticmethod
    def _count(event: Any, day: Counters) -> None:
        if isinstance(event, Sku.LinePlaced):
            day["ordered"] += event.ordered
            day["withdrawn"] += event.cancelled_before_placement
        elif isinstance(event, Sku.LineAllocated):
            day["allocated"] += event.quantity
        elif isinstance(event, Sku.LineRejected):
            day["rejected"] += event.quantity
            reason = "denied" if event.reason == "backorders_denied" else "limit"
            day[f"rejected_{reason}"] += event.quantity
        elif isinstance(event, Sku.AllocationReleased):
            day["released"] += event.quantity
        elif isinstance(event, Sku.StockReceived):
            day["received"] += event.quantity
        elif isinstance(event, Sku.LineShipped):
            day["shipped"] += event.quantity

    def _queue(self, event: Any, day: Counters) -> None:
        sku, when = event.sku, event.occurred_at
        line = (sku, event.order_id, event.line_id)
        before = self.units[sku]
        if isinstance(event, Sku.LineBackordered):
            day["backordered"] += event.quantity
            self.waiting[line] = when
            self.units[sku] += event.quantity
        else:
            if isinstance(event, Sku.BackorderFilled):
                waited = max(0, round((when - self.waiting[line]).total_seconds()))
                day["filled"] += event.quantity
                day["fill_wait_seconds"] += waited * event.quantity
                self.fill_times[(sku, when.date(), waited)] += event.quantity
            elif event.reason == "expired":
                day["expired"] += event.quantity
            else:
                day["cancelled_waiting"] += event.quantity
            if event.remaining_backordered == 0:
                del self.waiting[line]
            self.units[sku] -= event.quantity
        if not before and self.units[sku]:
            self.short_since[sku] = when
        elif before and not self.units[sku]:
            self._short(sku, self.short_since.pop(sku), when)

    def _short(self, sku: str, start: datetime, end: datetime) -> None:
        day = start.date()
        while day <= max(start, end).date():
            self.short_days[sku].add(day)
            day += timedelta(days=1)

    def over(self, sku: str, first: date, last: date) -> Counters:
        total: Counters = defaultdict(int)
        for (name, day), counters in self.daily.items():
            if name == sku and first <= day <= last:
                for counter, amount in counters.items():
                    total[counter] += amount
        return total

    def waits(self, sku: str | None, first: date, last: date) -> list[int]:
        """Every filled unit's wait, one entry per unit."""
        return sorted(
            wait
            for (name, day, wait), count in self.fill_times.items()
            if (sku is None or name == sku) and first <= day <= last
            for _ in range(count)
        )


def nearest_rank(waits: list[int], share: float) -> int | None:
    return waits[math.ceil(share * len(waits)) - 1] if waits else None


def _day(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(value)


@pytest.fixture
def fed(database_url: str) -> tuple[ReadModels, Recomputed, datetime]:
    allocation = _allocation(database_url, seed=31, inputs=400)
    models = ReadModels(ReadStore(database_url), allocation)
    _drain(models)
    last = max(e.occurred_at for _, e in events_of(allocation) if hasattr(e, "occurred_at"))
    now = last + timedelta(days=1)
    return models, Recomputed(allocation, now), now


def test_the_daily_insights_equal_the_decisions_counted_day_by_day(
    fed: tuple[ReadModels, Recomputed, datetime],
) -> None:
    models, recomputed, _ = fed
    stored = {
        (row["sku"], _day(row["day"])): {c: int(row[c]) for c in COUNTERS if row[c]}
        for row in models.store.read("SELECT * FROM insights_daily")
    }
    expected = {
        key: {c: n for c, n in counters.items() if n}
        for key, counters in recomputed.daily.items()
        if any(counters.values())
    }
    assert stored == {key: counters for key, counters in stored.items() if counters}
    assert {k: v for k, v in stored.items() if v} == expected
    fill_times = {
        (row["sku"], _day(row["day"]), int(row["wait_seconds"])): int(row["units"])
        for row in models.store.read("SELECT * FROM insights_fill_times")
    }
    assert fill_times == dict(recomputed.fill_times)
    waiting = {
        (row["sku"], row["order_id"], row["line_id"])
        for row in models.store.read("SELECT * FROM insights_waiting")
    }
    assert waiting == set(recomputed.waiting)
    # The history means something: every kind of figure is there.
    totals = {c: sum(d.get(c, 0) for d in expected.values()) for c in COUNTERS}
    assert all(totals.values()), totals


def test_the_waiting_lines_are_the_skus_queues(
    fed: tuple[ReadModels, Recomputed, datetime],
) -> None:
    models, _, _ = fed
    queues = {
        (row["sku"], row["order_id"], row["line_id"])
        for row in models.store.read("SELECT * FROM backorder_queue")
    }
    waiting = {
        (row["sku"], row["order_id"], row["line_id"])
        for row in models.store.read("SELECT * FROM insights_waiting")
    }
    assert queues
    assert waiting == queues
    for row in models.store.read("SELECT * FROM insights_skus"):
        sku = models.allocation.find_sku(row["sku"])
        assert sku is not None
        assert (int(row["waiting_units"]), int(row["waiting_lines"])) == (
            sku.backordered,
            len(sku.queue),
        )


def test_shortages_and_sku_series_equal_the_recomputation_over_any_range(
    fed: tuple[ReadModels, Recomputed, datetime],
) -> None:
    models, recomputed, now = fed
    queries = InsightQueries(models.store)
    days = sorted({day for _, day in recomputed.daily})
    # The whole history, and a window in its middle that cuts stretches out of stock.
    for first, last in [(days[0], days[-1]), (days[len(days) // 3], days[2 * len(days) // 3])]:
        shortages = queries.shortages(first, last, 1000, now)
        assert shortages, "some SKU was short"
        for shortage in shortages:
            sku = shortage["sku"]
            counted = recomputed.over(sku, first, last)
            waits = recomputed.waits(sku, first, last)
            demanded = counted["ordered"] - counted["withdrawn"]
            assert shortage["unmet"] == counted["backordered"] + counted["rejected"]
            assert shortage["fill_rate"] == (
                round(counted["allocated"] / demanded, 4) if demanded else None
            )
            assert shortage["lost"] == (
                counted["rejected"] + counted["expired"] + counted["cancelled_waiting"]
            )
            assert shortage["time_to_fill_p50_seconds"] == nearest_rank(waits, 0.5)
            assert shortage["time_to_fill_p90_seconds"] == nearest_rank(waits, 0.9)
            assert shortage["time_to_fill_max_seconds"] == (max(waits) if waits else None)
            assert shortage["days_out_of_stock"] == len(
                {d for d in recomputed.short_days[sku] if first <= d <= last}
            )
            assert shortage["waiting_units"] == recomputed.units.get(sku, 0)
        ranks = [(-s["unmet"], -s["waiting_units"], s["sku"]) for s in shortages]
        assert ranks == sorted(ranks)

    sku = shortages[0]["sku"]
    found = queries.sku(sku, days[0], days[-1], "week", now)
    assert found is not None
    weeks = found["series"]
    assert {w["bucket_start"] for w in weeks} == {
        (d - timedelta(days=d.weekday())).isoformat()
        for d in (days[0] + timedelta(n) for n in range((days[-1] - days[0]).days + 1))
    }
    counted = recomputed.over(sku, days[0], days[-1])
    for counter in ("ordered", "allocated", "backordered", "filled", "expired", "received"):
        assert sum(w[counter] for w in weeks) == counted[counter] == found["summary"][counter]
    assert sum(w["days_out_of_stock"] for w in weeks) == found["summary"]["days_out_of_stock"]


def test_the_overview_adds_up_every_sku(fed: tuple[ReadModels, Recomputed, datetime]) -> None:
    models, recomputed, now = fed
    days = sorted({day for _, day in recomputed.daily})
    overview = InsightQueries(models.store).overview(days[0], days[-1], "day", now)
    skus = {sku for sku, _ in recomputed.daily}
    for counter in ("ordered", "allocated", "backordered", "rejected", "filled", "shipped"):
        assert overview["totals"][counter] == sum(
            recomputed.over(sku, days[0], days[-1])[counter] for sku in skus
        )
    waits = recomputed.waits(None, days[0], days[-1])
    assert overview["totals"]["time_to_fill_p90_seconds"] == nearest_rank(waits, 0.9)
    assert overview["now"]["units_waiting"] == sum(recomputed.units.values())
    assert overview["now"]["open_backorders"] == len(recomputed.waiting)
    oldest = min(recomputed.waiting.values())
    assert overview["now"]["oldest_backorder_age_seconds"] == int(
        (now - oldest.astimezone(UTC)).total_seconds()
    )
    assert len(overview["series"]) == (days[-1] - days[0]).days + 1
