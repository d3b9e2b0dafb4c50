"""The planners' questions over the insight read model (projections/insights.py): what is
short, one SKU's series, what does not sell, and the whole shop's overview.

Ratios and percentiles are worked out here from the stored counters, so that any range of
days (or weeks) gives exact figures: fill rate = units allocated at order time / units
demanded (ordered less withdrawn before the SKU saw them); time to fill = unit-weighted
nearest-rank percentiles of each filled unit's wait, from backordered to filled.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

from projections.insights import SkuInsights, instant
from projections.queries import api_time, as_day
from projections.store import ReadStore

Bucket = Literal["day", "week"]
COUNTERS = tuple(c for c in SkuInsights.COUNTERS if c != "fill_wait_seconds")
DEFAULT_DAYS = 30


def percentile(waits: Sequence[tuple[int, int]], share: float) -> int | None:
    """The unit-weighted nearest-rank percentile of (wait_seconds, units) pairs: the least
    wait such that at least `share` of the units waited no longer."""
    total = sum(units for _, units in waits)
    if not total:
        return None
    rank = max(1, math.ceil(share * total))
    seen = 0
    for wait, units in sorted(waits):
        seen += units
        if seen >= rank:
            return wait
    return None  # unreachable: seen reaches total


def time_to_fill(waits: Sequence[tuple[int, int]]) -> dict[str, int | None]:
    """p50, p90 and max of the units' waits, in seconds (None when nothing was filled)."""
    longest = max((wait for wait, units in waits if units), default=None)
    return {
        "time_to_fill_p50_seconds": percentile(waits, 0.5),
        "time_to_fill_p90_seconds": percentile(waits, 0.9),
        "time_to_fill_max_seconds": longest,
    }


def rates(counters: dict[str, int]) -> dict[str, float | None]:
    """Fill rate and backorder rate at order time, of the units demanded (None: none)."""
    demanded = counters["ordered"] - counters["withdrawn"]
    if demanded <= 0:
        return {"fill_rate": None, "backorder_rate": None}
    return {
        "fill_rate": round(counters["allocated"] / demanded, 4),
        "backorder_rate": round(counters["backordered"] / demanded, 4),
    }


def lost(counters: dict[str, int]) -> int:
    """Demand that will not be served: rejected at order time, expired or cancelled while
    waiting."""
    return counters["rejected"] + counters["expired"] + counters["cancelled_waiting"]


def days_short(stretches: Iterable[tuple[date, date]], first: date, last: date) -> set[date]:
    """The days from `first` to `last` on which one of the stretches (start and end day,
    inclusive) had the SKU out of stock with demand waiting."""
    found: set[date] = set()
    for start, end in stretches:
        day = max(start, first)
        while day <= min(end, last):
            found.add(day)
            day += timedelta(days=1)
    return found


def bucket_of(day: date, bucket: Bucket) -> date:
    return day - timedelta(days=day.weekday()) if bucket == "week" else day


@dataclass
class InsightQueries:
    store: ReadStore

    # --- windows ---------------------------------------------------------------------------

    def latest_day(self) -> date | None:
        """The last business day the insights hold anything for."""
        rows = self.store.read("SELECT MAX(day) AS day FROM insights_daily")
        return as_day(rows[0]["day"]) if rows and rows[0]["day"] is not None else None

    def window(
        self, start: date | None, end: date | None, days: int = DEFAULT_DAYS
    ) -> tuple[date, date]:
        """The days asked; by default the `days` ending on the last day with any activity
        (today when there is none), so that a history's answers do not depend on when it is
        asked."""
        if end is None:
            end = (
                start + timedelta(days=days - 1)
                if start is not None
                else self.latest_day() or datetime.now(UTC).date()
            )
        if start is None:
            start = end - timedelta(days=days - 1)
        return start, end

    def _days(self, start: date, end: date) -> list[Any]:
        if self.store.postgres:
            return [start, end]
        return [start.isoformat(), end.isoformat()]

    # --- the questions ---------------------------------------------------------------------

    def shortages(self, start: date, end: date, limit: int, now: datetime) -> list[dict[str, Any]]:
        """SKUs by unmet demand in the window (units that stock on hand could not cover when
        they were ordered: backordered or rejected), then by units waiting now."""
        sums = ", ".join(f"SUM({c}) AS {c}" for c in COUNTERS)
        zeros = ", ".join(f"0 AS {c}" for c in COUNTERS)
        rows = self.store.read(
            f"SELECT sku, {sums}, SUM(fill_wait_seconds) AS fill_wait_seconds, "
            "SUM(waiting_units) AS waiting_units, "
            "SUM(backordered) + SUM(rejected) AS unmet FROM ("
            f"SELECT sku, {', '.join(COUNTERS)}, fill_wait_seconds, 0 AS waiting_units "
            "FROM insights_daily WHERE day BETWEEN ? AND ? "
            f"UNION ALL SELECT sku, {zeros}, 0 AS fill_wait_seconds, waiting_units "
            "FROM insights_skus WHERE waiting_units > 0"
            ") AS activity GROUP BY sku "
            "HAVING SUM(backordered) + SUM(rejected) > 0 OR SUM(waiting_units) > 0 "
            "ORDER BY unmet DESC, waiting_units DESC, sku LIMIT ?",
            [*self._days(start, end), limit],
        )
        skus = [row["sku"] for row in rows]
        details = self._details(skus, start, end, now)
        return [
            {
                "sku": row["sku"],
                "unmet": int(row["unmet"]),
                **self._figures({c: int(row[c]) for c in COUNTERS}),
                **details[row["sku"]],
            }
            for row in rows
        ]

    def sku(
        self, sku: str, start: date | None, end: date | None, bucket: Bucket, now: datetime
    ) -> dict[str, Any] | None:
        """A SKU's series per bucket and its totals over the window; None if unknown."""
        state = self.store.read(
            "SELECT sku FROM sku_positions WHERE sku = ? UNION "
            "SELECT sku FROM insights_skus WHERE sku = ?",
            [sku, sku],
        )
        if not state:
            return None
        if start is None or end is None:
            start, end = self._active(sku, start, end)
        first, last = self.window(start, end)
        daily = self._daily([sku], first, last)
        waits = self._fill_times([sku], first, last)
        short = days_short(self._stretches([sku], now).get(sku, []), first, last)
        expected = self._expected(sku, first, last)
        series: dict[date, dict[str, Any]] = {}
        day = first
        while day <= last:
            key = bucket_of(day, bucket)
            entry = series.setdefault(
                key,
                {"counters": dict.fromkeys(COUNTERS, 0), "waits": [], "short": 0, "expected": 0},
            )
            for counter, amount in daily.get((sku, day), {}).items():
                entry["counters"][counter] += amount
            entry["waits"] += waits.get((sku, day), [])
            entry["short"] += day in short
            entry["expected"] += expected.get(day, 0)
            day += timedelta(days=1)
        totals = dict.fromkeys(COUNTERS, 0)
        for counters in daily.values():
            for counter, amount in counters.items():
                totals[counter] += amount
        return {
            "sku": sku,
            "from": first.isoformat(),
            "to": last.isoformat(),
            "bucket": bucket,
            "summary": {
                **self._figures(totals),
                **self._details([sku], first, last, now)[sku],
            },
            "series": [
                {
                    "bucket_start": key.isoformat(),
                    **self._figures(entry["counters"], entry["waits"]),
                    "expected": entry["expected"],
                    "days_out_of_stock": entry["short"],
                }
                for key, entry in series.items()
            ],
        }

    def _active(
        self, sku: str, start: date | None, end: date | None
    ) -> tuple[date | None, date | None]:
        """The range a SKU's series shows when not asked for one: from its first day of
        activity to its last, or to the day its last open inbound is expected if later (so
        expected supply shows), at most ten years."""
        span = self.store.read(
            "SELECT MIN(day) AS first, MAX(day) AS last FROM insights_daily WHERE sku = ?", [sku]
        )[0]
        expected = list(self._expected(sku, date.min, date.max))
        days = [as_day(d) for d in (span["first"], span["last"]) if d is not None] + expected
        if not days:
            return start, end
        start = start or min(days)
        end = end or max(*days, start)
        return start, min(end, start + timedelta(days=3659))

    def slow_movers(self, days: int, end: date, limit: int) -> list[dict[str, Any]]:
        """SKUs with free stock that their demand over the last `days` would not use up in
        those days: no demand first, then by days of cover (free stock / daily demand)."""
        start = end - timedelta(days=days - 1)
        rows = self.store.read(
            "SELECT p.sku, p.on_hand, p.available, p.allocated, "
            "COALESCE(d.ordered, 0) AS ordered, COALESCE(d.shipped, 0) AS shipped, "
            "l.last_ordered FROM sku_positions AS p "
            "LEFT JOIN (SELECT sku, SUM(ordered) AS ordered, SUM(shipped) AS shipped "
            "FROM insights_daily WHERE day BETWEEN ? AND ? GROUP BY sku) AS d ON d.sku = p.sku "
            "LEFT JOIN (SELECT sku, MAX(day) AS last_ordered FROM insights_daily "
            "WHERE ordered > 0 AND day <= ? GROUP BY sku) AS l ON l.sku = p.sku "
            "WHERE p.available > 0 AND COALESCE(d.ordered, 0) < p.available "
            "ORDER BY CASE WHEN COALESCE(d.ordered, 0) = 0 THEN 0 ELSE 1 END, "
            "CAST(p.available AS REAL) / NULLIF(COALESCE(d.ordered, 0), 0) DESC, "
            "p.available DESC, p.sku LIMIT ?",
            [*self._days(start, end), self._days(end, end)[0], limit],
        )
        return [
            {
                "sku": row["sku"],
                "on_hand": int(row["on_hand"]),
                "available": int(row["available"]),
                "allocated": int(row["allocated"]),
                "ordered": int(row["ordered"]),
                "shipped": int(row["shipped"]),
                "days_of_cover": (
                    round(int(row["available"]) * days / int(row["ordered"]), 1)
                    if int(row["ordered"])
                    else None
                ),
                "last_ordered": (
                    None if row["last_ordered"] is None else as_day(row["last_ordered"]).isoformat()
                ),
            }
            for row in rows
        ]

    def overview(self, start: date, end: date, bucket: Bucket, now: datetime) -> dict[str, Any]:
        """The whole shop: what waits now, and per bucket how demand was served and lost."""
        sums = ", ".join(f"SUM({c}) AS {c}" for c in COUNTERS)
        per_day = self.store.read(
            f"SELECT day, {sums} FROM insights_daily WHERE day BETWEEN ? AND ? GROUP BY day",
            self._days(start, end),
        )
        days = {as_day(row["day"]): {c: int(row[c]) for c in COUNTERS} for row in per_day}
        waits: dict[date, list[tuple[int, int]]] = {}
        for row in self.store.read(
            "SELECT day, wait_seconds, SUM(units) AS units FROM insights_fill_times "
            "WHERE day BETWEEN ? AND ? GROUP BY day, wait_seconds",
            self._days(start, end),
        ):
            waits.setdefault(as_day(row["day"]), []).append(
                (int(row["wait_seconds"]), int(row["units"]))
            )
        series: dict[date, dict[str, Any]] = {}
        totals = dict.fromkeys(COUNTERS, 0)
        day = start
        while day <= end:
            entry = series.setdefault(
                bucket_of(day, bucket), {"counters": dict.fromkeys(COUNTERS, 0), "waits": []}
            )
            for counter, amount in days.get(day, {}).items():
                entry["counters"][counter] += amount
                totals[counter] += amount
            entry["waits"] += waits.get(day, [])
            day += timedelta(days=1)
        now_row = self.store.read(
            "SELECT COALESCE(SUM(waiting_units), 0) AS units, "
            "COALESCE(SUM(waiting_lines), 0) AS lines, "
            "COALESCE(SUM(CASE WHEN waiting_units > 0 THEN 1 ELSE 0 END), 0) AS skus "
            "FROM insights_skus"
        )[0]
        oldest = self.store.read("SELECT MIN(backordered_at) AS since FROM insights_waiting")[0]
        span = self.store.read("SELECT MIN(day) AS first, MAX(day) AS last FROM insights_daily")[0]
        return {
            "from": start.isoformat(),
            "to": end.isoformat(),
            "bucket": bucket,
            "first_day": None if span["first"] is None else as_day(span["first"]).isoformat(),
            "last_day": None if span["last"] is None else as_day(span["last"]).isoformat(),
            "now": {
                "open_backorders": int(now_row["lines"]),
                "units_waiting": int(now_row["units"]),
                "skus_short": int(now_row["skus"]),
                "oldest_backorder_age_seconds": _age(oldest["since"], now),
            },
            "totals": self._figures(totals, [w for ws in waits.values() for w in ws]),
            "series": [
                {"bucket_start": key.isoformat(), **self._figures(e["counters"], e["waits"])}
                for key, e in series.items()
            ],
        }

    # --- parts -----------------------------------------------------------------------------

    @staticmethod
    def _figures(
        counters: dict[str, int], waits: Sequence[tuple[int, int]] | None = None
    ) -> dict[str, Any]:
        figures: dict[str, Any] = {**counters, **rates(counters), "lost": lost(counters)}
        if waits is not None:
            figures.update(time_to_fill(waits))
        return figures

    def _details(
        self, skus: list[str], start: date, end: date, now: datetime
    ) -> dict[str, dict[str, Any]]:
        """Per SKU: time to fill in the window, days short in it, what waits now and since
        when, and the next inbound expected."""
        if not skus:
            return {}
        marks = ", ".join("?" * len(skus))
        waits = self._fill_times(skus, start, end)
        by_sku: dict[str, list[tuple[int, int]]] = {}
        for (sku, _), pairs in waits.items():
            by_sku.setdefault(sku, []).extend(pairs)
        stretches = self._stretches(skus, now)
        waiting = {
            row["sku"]: row
            for row in self.store.read(
                "SELECT s.sku, s.waiting_units, s.waiting_lines, "
                "(SELECT MIN(w.backordered_at) FROM insights_waiting AS w WHERE w.sku = s.sku) "
                f"AS oldest FROM insights_skus AS s WHERE s.sku IN ({marks})",
                skus,
            )
        }
        inbound: dict[str, dict[str, Any]] = {}
        for row in self.store.read(
            f"SELECT sku, inbound_id, quantity, expected_at FROM inbounds WHERE sku IN ({marks}) "
            "ORDER BY sku, expected_at, inbound_id",
            skus,
        ):
            inbound.setdefault(row["sku"], row)
        found: dict[str, dict[str, Any]] = {}
        for sku in skus:
            now_row = waiting.get(sku, {})
            nxt = inbound.get(sku)
            found[sku] = {
                **time_to_fill(by_sku.get(sku, [])),
                "days_out_of_stock": len(days_short(stretches.get(sku, []), start, end)),
                "waiting_units": int(now_row.get("waiting_units") or 0),
                "open_backorders": int(now_row.get("waiting_lines") or 0),
                "oldest_backorder_age_seconds": _age(now_row.get("oldest"), now),
                "next_inbound_id": None if nxt is None else nxt["inbound_id"],
                "next_inbound_eta": None if nxt is None else api_time(nxt["expected_at"]),
                "next_inbound_quantity": None if nxt is None else int(nxt["quantity"]),
            }
        return found

    def _daily(self, skus: list[str], start: date, end: date) -> dict[tuple[str, date], Any]:
        marks = ", ".join("?" * len(skus))
        return {
            (row["sku"], as_day(row["day"])): {c: int(row[c]) for c in COUNTERS}
            for row in self.store.read(
                f"SELECT sku, day, {', '.join(COUNTERS)} FROM insights_daily "
                f"WHERE sku IN ({marks}) AND day BETWEEN ? AND ?",
                [*skus, *self._days(start, end)],
            )
        }

    def _fill_times(
        self, skus: list[str], start: date, end: date
    ) -> dict[tuple[str, date], list[tuple[int, int]]]:
        marks = ", ".join("?" * len(skus))
        found: dict[tuple[str, date], list[tuple[int, int]]] = {}
        for row in self.store.read(
            "SELECT sku, day, wait_seconds, units FROM insights_fill_times "
            f"WHERE sku IN ({marks}) AND day BETWEEN ? AND ?",
            [*skus, *self._days(start, end)],
        ):
            found.setdefault((row["sku"], as_day(row["day"])), []).append(
                (int(row["wait_seconds"]), int(row["units"]))
            )
        return found

    def _stretches(self, skus: list[str], now: datetime) -> dict[str, list[tuple[date, date]]]:
        """Each SKU's stretches out of stock with demand waiting, as days; the open one (its
        queue holds units now) runs until `now`, or its start if that is later."""
        marks = ", ".join("?" * len(skus))
        found: dict[str, list[tuple[date, date]]] = {}
        for row in self.store.read(
            f"SELECT sku, started_at, ended_at FROM insights_stockouts WHERE sku IN ({marks}) "
            "UNION ALL SELECT sku, short_since AS started_at, NULL AS ended_at "
            f"FROM insights_skus WHERE short_since IS NOT NULL AND sku IN ({marks})",
            [*skus, *skus],
        ):
            began = instant(row["started_at"]).astimezone(UTC)
            ended = (
                instant(row["ended_at"]).astimezone(UTC)
                if row["ended_at"] is not None
                else max(now, began)
            )
            found.setdefault(row["sku"], []).append((began.date(), ended.date()))
        return found

    def _expected(self, sku: str, start: date, end: date) -> dict[date, int]:
        """Units the SKU's open inbounds expect, by the day they are expected."""
        found: dict[date, int] = {}
        for row in self.store.read(
            "SELECT quantity, expected_at FROM inbounds WHERE sku = ?", [sku]
        ):
            day = instant(row["expected_at"]).astimezone(UTC).date()
            if start <= day <= end:
                found[day] = found.get(day, 0) + int(row["quantity"])
        return found


def _age(since: Any, now: datetime) -> int | None:
    if since is None:
        return None
    return max(0, int((now - instant(since).astimezone(UTC)).total_seconds()))
