"""The planners' read model: per SKU and day, how well demand was served, what was lost and
how long customers waited; per SKU now, what is waiting and since when it has been short.

Its tables (views; docs/read-models.md has every column):
- `insights_daily` (sku, day): units ordered and how they were met at order time
  (allocated, backordered, rejected by reason), filled later and how long those units had
  waited, lost while waiting (expired, cancelled), released, received, shipped. Days are
  the UTC day of each decision's business time, as in `demand_daily`.
- `insights_fill_times` (sku, day, wait_seconds): units filled that day after waiting that
  long, so time-to-fill percentiles are exact and unit-weighted over any range.
- `insights_stockouts` (sku, started_at, ended_at): each closed stretch during which the
  SKU's queue held units (stock out, demand waiting); the open one is in `insights_skus`.
- `insights_skus` (sku): units and lines waiting now, and since when the queue has held any.
- `insights_waiting` (sku, order_id, line_id): each queued line and when it was
  backordered (the base of its time to fill, and the oldest open backorder's age).

Fed by the same page folding as the other read models (projections/models.py): a page's
counters are summed in memory, then written with a few statements.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

from projections.models import Change, Fact, Moves, Projection, QueueKey, day_of
from projections.store import Tx

REJECTION_COUNTERS: dict[str, str] = {
    "backorders_denied": "rejected_denied",
    "backorder_limit": "rejected_limit",
}


def instant(value: Any) -> datetime:
    """A time as the log holds it (ISO text) or as PostgreSQL returns it (a datetime)."""
    return value if isinstance(value, datetime) else datetime.fromisoformat(value)


def iso(value: Any) -> str:
    """A time as ISO text, however the store returned it: what the tables are written with."""
    return value.isoformat() if isinstance(value, datetime) else str(value)


class SkuInsights(Projection):
    name = "insights_daily"
    description = (
        "Per SKU and day: demand met at order time, backordered, lost, filled and how long "
        "it waited; per SKU: what waits now and since when it is short."
    )
    version = 1
    key = ("sku", "day")
    companions: ClassVar[dict[str, str]] = {
        "insights_fill_times": "fill_times",
        "insights_stockouts": "stockouts",
        "insights_skus": "skus",
        "insights_waiting": "waiting",
    }

    # New counters go last, for CSV readers.
    COUNTERS = (
        "ordered",  # unconstrained demand: every unit asked for, served or not
        "withdrawn",  # cancelled before the order reached the SKU: never offered
        "allocated",  # met from stock on hand when the order arrived
        "backordered",  # put on the queue when the order arrived
        "rejected",  # lost at order time (by reason below)
        "rejected_denied",
        "rejected_limit",
        "filled",  # queued units that got stock, on the day they got it
        "fill_wait_seconds",  # units filled that day × seconds each had waited
        "expired",  # queued units cancelled by the SKU's max_wait_days
        "cancelled_waiting",  # queued units the customer cancelled
        "released",  # allocated units given back by a cancellation
        "received",
        "shipped",
    )
    COUNTS: ClassVar[dict[str, Moves]] = {
        "LinePlaced": lambda f: {
            "ordered": f["ordered"],
            "withdrawn": f["cancelled_before_placement"],
        },
        "LineAllocated": lambda f: {"allocated": f["quantity"]},
        "LineBackordered": lambda f: {"backordered": f["quantity"]},
        "LineRejected": lambda f: {
            "rejected": f["quantity"],
            REJECTION_COUNTERS.get(f["reason"], "rejected_denied"): f["quantity"],
        },
        "BackorderFilled": lambda f: {"filled": f["quantity"]},
        "BackorderCancelled": lambda f: {
            ("expired" if f["reason"] == "expired" else "cancelled_waiting"): f["quantity"]
        },
        "AllocationReleased": lambda f: {"released": f["quantity"]},
        "StockReceived": lambda f: {"received": f["quantity"]},
        "LineShipped": lambda f: {"shipped": f["quantity"]},
    }

    def create(self, tx: Tx, table: str) -> None:
        views = self.views(table)
        ts, day = self.store.timestamp_type, self.store.date_type
        counters = ", ".join(f"{c} BIGINT NOT NULL" for c in self.COUNTERS)
        tx.execute(
            f"CREATE TABLE {table} (sku TEXT NOT NULL, day {day} NOT NULL, {counters}, "
            "PRIMARY KEY (sku, day))"
        )
        tx.execute(f"CREATE INDEX {table}_by_day ON {table} (day, sku)")
        fill_times = views["insights_fill_times"]
        tx.execute(
            f"CREATE TABLE {fill_times} (sku TEXT NOT NULL, day {day} NOT NULL, "
            "wait_seconds BIGINT NOT NULL, units BIGINT NOT NULL, "
            "PRIMARY KEY (sku, day, wait_seconds))"
        )
        stockouts = views["insights_stockouts"]
        tx.execute(
            f"CREATE TABLE {stockouts} (sku TEXT NOT NULL, started_at {ts} NOT NULL, "
            f"ended_at {ts} NOT NULL)"
        )
        tx.execute(f"CREATE INDEX {stockouts}_by_sku ON {stockouts} (sku, started_at)")
        tx.execute(
            f"CREATE TABLE {views['insights_skus']} (sku TEXT PRIMARY KEY, "
            f"waiting_units BIGINT NOT NULL, waiting_lines BIGINT NOT NULL, short_since {ts})"
        )
        waiting = views["insights_waiting"]
        tx.execute(
            f"CREATE TABLE {waiting} (sku TEXT NOT NULL, order_id TEXT NOT NULL, "
            f"line_id TEXT NOT NULL, backordered_at {ts} NOT NULL, "
            "PRIMARY KEY (sku, order_id, line_id))"
        )
        tx.execute(f"CREATE INDEX {waiting}_by_age ON {waiting} (sku, backordered_at)")

    def apply_page(self, tx: Tx, table: str, facts: Sequence[Fact]) -> set[Change]:
        """Counters summed per SKU and day; each fill's wait from its line's backorder time;
        the SKU's stretch out of stock opened when its queue gains units from none and
        closed when it has none again."""
        views = self.views(table)
        facts = [f for f in facts if f["kind"] in self.COUNTS]
        if not facts:
            return set()
        fold = _Fold(
            skus={
                row["sku"]: [
                    int(row["waiting_units"]),
                    int(row["waiting_lines"]),
                    row["short_since"],
                ]
                for row in tx.select_many(
                    views["insights_skus"], ("sku",), sorted({(f["sku"],) for f in facts})
                )
            }
        )
        # The lines this page fills or cancels that were queued before it.
        asked = {
            (f["sku"], f["order_id"], f["line_id"])
            for f in facts
            if f["kind"] in ("BackorderFilled", "BackorderCancelled")
        }
        for found in tx.select_many(views["insights_waiting"], WAITING_KEY, sorted(asked)):
            line = (found["sku"], found["order_id"], found["line_id"])
            fold.queued[line] = iso(found["backordered_at"])
        for fact in facts:
            day = day_of(fact["occurred_at"])
            row = fold.days.get((fact["sku"], day))
            if row is None:
                row = fold.days[fact["sku"], day] = dict.fromkeys(self.COUNTERS, 0)
            for column, amount in self.COUNTS[fact["kind"]](fact).items():
                row[column] += amount
            if fact["kind"] in QUEUE_MOVES:
                fold.queue_moved(fact, row)
        self._write(tx, views, fold)
        return set()

    def _write(self, tx: Tx, views: dict[str, str], fold: _Fold) -> None:
        tx.upsert_many(
            views[self.name],
            ("sku", "day", *self.COUNTERS),
            [(sku, day, *(r[c] for c in self.COUNTERS)) for (sku, day), r in fold.days.items()],
            key=self.key,
            add=self.COUNTERS,
        )
        tx.upsert_many(
            views["insights_fill_times"],
            ("sku", "day", "wait_seconds", "units"),
            [(*spot, units) for spot, units in fold.fill_times.items()],
            key=("sku", "day", "wait_seconds"),
            add=("units",),
        )
        tx.insert_many(
            views["insights_stockouts"], ("sku", "started_at", "ended_at"), fold.stretches
        )
        tx.upsert_many(
            views["insights_skus"],
            ("sku", "waiting_units", "waiting_lines", "short_since"),
            [
                (sku, units, lines, None if since is None else iso(since))
                for sku, (units, lines, since) in fold.skus.items()
            ],
            key=("sku",),
            replace=("waiting_units", "waiting_lines", "short_since"),
        )
        tx.delete_many(views["insights_waiting"], WAITING_KEY, sorted(fold.left))
        tx.insert_many(
            views["insights_waiting"],
            (*WAITING_KEY, "backordered_at"),
            [(*key, since) for key, since in fold.added.items()],
        )


WAITING_KEY = ("sku", "order_id", "line_id")
# Decisions that move a SKU's queue: what they do to its units.
QUEUE_MOVES: dict[str, int] = {
    "LineBackordered": 1,
    "BackorderFilled": -1,
    "BackorderCancelled": -1,
}


@dataclass
class _Fold:
    """What a page does to the insights, gathered in memory before it is written."""

    # Per SKU: [units waiting, lines waiting, since when it has been short (None: it is not)].
    skus: dict[str, list[Any]]
    queued: dict[QueueKey, str] = field(default_factory=dict)  # lines queued before the page
    added: dict[QueueKey, str] = field(default_factory=dict)  # lines the page queued
    left: set[QueueKey] = field(default_factory=set)  # lines from before the page it closed
    days: dict[tuple[str, str], dict[str, int]] = field(default_factory=dict)
    fill_times: dict[tuple[str, str, int], int] = field(default_factory=dict)
    stretches: list[tuple[str, str, str]] = field(default_factory=list)

    def queue_moved(self, fact: Fact, day: dict[str, int]) -> None:
        """A line joined, was filled from or left the queue (`day`: its day's counters)."""
        sku = fact["sku"]
        state = self.skus.get(sku)
        if state is None:
            state = self.skus[sku] = [0, 0, None]
        key = (sku, fact["order_id"], fact["line_id"])
        if fact["kind"] == "LineBackordered":
            self.added[key] = fact["occurred_at"]
            state[1] += 1
        else:
            since = self.added.get(key) or self.queued.get(key)
            if fact["kind"] == "BackorderFilled" and since is not None:
                waited = _seconds_between(since, fact["occurred_at"])
                spot = (sku, day_of(fact["occurred_at"]), waited)
                self.fill_times[spot] = self.fill_times.get(spot, 0) + fact["quantity"]
                day["fill_wait_seconds"] += waited * fact["quantity"]
            if not fact["remaining_backordered"]:
                state[1] -= 1
                if self.added.pop(key, None) is None:
                    self.left.add(key)
        before = state[0]
        state[0] += QUEUE_MOVES[fact["kind"]] * fact["quantity"]
        if not before and state[0]:
            state[2] = fact["occurred_at"]
        elif before and not state[0]:
            start = iso(state[2]) if state[2] is not None else fact["occurred_at"]
            # Business times may come out of order: a stretch never ends before it began.
            self.stretches.append((sku, start, max(start, fact["occurred_at"], key=instant)))
            state[2] = None


def _seconds_between(start: str, end: str) -> int:
    """Whole seconds from `start` to `end` (ISO texts); 0 if business time ran backwards."""
    return max(0, round((instant(end) - instant(start)).total_seconds()))
