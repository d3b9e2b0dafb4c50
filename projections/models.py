"""The four read models, each a plain SQL table (sku_positions with a companion, its open
inbounds) fed by the SKUs' events in log order.

Each projection takes a page of the log at once (`apply_page`): it folds the page's events
in memory per row (counters summed per key, a row's last state per key) and writes the
result with a few statements for the whole page (projections/store.py), not several per
event. The rows are the same as applying each event in turn: `apply` (one event) is a page
of one, and tests/unit/test_projections.py checks a page against its events one by one.
The runner (projections/runner.py) records their positions in the same transaction.
Events that are not decisions about demand or stock (a refused shipment line, the
deadlines index) change nothing here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, ClassVar

from projections.store import ReadStore, Tx
from services.allocation.domain import Sku


@dataclass(frozen=True)
class Change:
    """A row that changed, for the streaming topics: its logical topic and key; `lookup` is
    its primary key in the read model's table, to read it back (not part of its identity)."""

    topic: str
    key: str
    lookup: tuple[Any, ...] = field(default=(), compare=False)


# One SKU event as the read models read it: `kind`, the name of its class in Sku, and its
# fields (FIELDS; a field added to the class after the event was recorded has the class's
# default). Times are ISO-8601 text, as the log holds them: SQLite keeps that text and
# PostgreSQL casts it (projections/store.py), so no time is parsed or formatted per event.
# A plain dict of plain values: Python's garbage collector does not track such a dict, so
# a page of them costs no collection (objects of a class are tracked: with them, full
# collections took a quarter of a rebuild's time).
Fact = dict[str, Any]


# The events the read models read, by kind (the class's name in Sku).
EVENTS: dict[str, type[Sku.Recorded]] = {
    cls.__name__: cls
    for cls in (
        Sku.LinePlaced,
        Sku.LineAllocated,
        Sku.LineBackordered,
        Sku.LineRejected,
        Sku.StockReceived,
        Sku.BackorderFilled,
        Sku.BackorderCancelled,
        Sku.AllocationReleased,
        Sku.LineShipped,
        Sku.BackorderEtaChanged,
        Sku.PolicySet,
        Sku.InboundExpected,
    )
}
KINDS: dict[type[Any], str] = {cls: kind for kind, cls in EVENTS.items()}
# What a Fact keeps of each: the event's fields but the library's bookkeeping, the ids (not
# plain values: they would make the dict tracked) and what no read model reads.
UNREAD = frozenset(
    {"originator_id", "originator_version", "timestamp", "decision_id", "causation_id"}
    | {"previous_eta"}  # a read model keeps only the date promised now
)
FIELDS: dict[str, tuple[str, ...]] = {
    kind: tuple(spec.name for spec in dataclasses.fields(cls) if spec.name not in UNREAD)
    for kind, cls in EVENTS.items()
}
# Defaults of fields added to an event class after some were recorded (their absence).
DEFAULTS: dict[str, dict[str, Any]] = {
    kind: {
        spec.name: spec.default
        for spec in dataclasses.fields(cls)
        if spec.default is not dataclasses.MISSING
    }
    for kind, cls in EVENTS.items()
}
# The times the read models read: a Fact holds each as ISO-8601 text.
TIMES = ("occurred_at", "placed_at", "eta", "expected_at")


def fact_of(event: object) -> Fact | None:
    """The Fact of a domain event; None for an event no read model reads."""
    kind = KINDS.get(type(event))
    if kind is None:
        return None
    fact = {name: getattr(event, name) for name in FIELDS[kind]}  # defaults included
    for name in TIMES:
        moment = fact.get(name)
        if isinstance(moment, datetime):
            fact[name] = moment.isoformat()  # as the log's transcoder writes it
    fact["kind"] = kind
    return fact


def day_of(moment: str) -> str:
    """The UTC day of a business time (business times are UTC already) in ISO text: the
    first ten characters of its ISO text, which are its `date()`."""
    return moment[:10]


def _text(value: Any) -> str:
    """A day or time as the streams and keys say it: ISO 8601 on both stores."""
    return value.isoformat() if isinstance(value, date | datetime) else str(value)


Moves = Callable[[Fact], dict[str, int]]
QueueKey = tuple[str, str, str]  # sku, order_id, line_id
LineKey = tuple[str, str]  # order_id, line_id
InboundKey = tuple[str, str]  # sku, inbound_id


class Projection:
    name: ClassVar[str]
    description: ClassVar[str]
    # The shape of its tables. A store that holds an older shape refills the read model from
    # the log when it opens (projections/runner.py): bump it whenever the columns change.
    version: ClassVar[int] = 1
    # Further tables of each generation, each behind its own stable view: view -> suffix.
    companions: ClassVar[dict[str, str]] = {}
    # The primary key of its main table, by which a changed row is read back (Change.lookup).
    key: ClassVar[tuple[str, ...]] = ()

    def __init__(self, store: ReadStore) -> None:
        self.store = store

    def create(self, tx: Tx, table: str) -> None:
        raise NotImplementedError

    def views(self, table: str) -> dict[str, str]:
        """Each view of the read model and its table in the generation whose main table is
        `table`: they are created, swapped and dropped together."""
        return {
            self.name: table,
            **{view: f"{table}_{suffix}" for view, suffix in self.companions.items()},
        }

    def apply_page(self, tx: Tx, table: str, facts: Sequence[Fact]) -> set[Change]:
        """Applies a page of events, in log order, to the generation whose main table is
        `table`; returns the rows that changed (for the streams)."""
        raise NotImplementedError

    def apply(self, event: object, tx: Tx, table: str, position: int = 0) -> Iterable[Change]:
        """One domain event, at `position` in the log: a page of one. Events that do not
        concern it change nothing."""
        fact = fact_of(event)
        if fact is None:
            return set()
        fact["notification_id"] = position
        return self.apply_page(tx, table, [fact])

    def change_key(self, row: dict[str, Any]) -> str:
        """A row's key in its stream (the Change.key its changes carry)."""
        raise NotImplementedError


class _Unset:
    """No value set in this page (None is a value: a promised date taken away)."""


UNSET = _Unset()


class BackorderQueue(Projection):
    name = "backorder_queue"
    description = "Every open backorder line, with what is still owed and its promised date."
    version = 2  # version 2 of the contract: eta
    key = ("sku", "order_id", "line_id")
    COLUMNS = (
        "sku",
        "order_id",
        "line_id",
        "customer_id",
        "priority",
        "placed_at",
        "arrival",
        "line_index",
        "quantity",
        "eta",
    )
    READS = frozenset(
        {"LineBackordered", "BackorderEtaChanged", "BackorderFilled", "BackorderCancelled"}
    )

    def create(self, tx: Tx, table: str) -> None:
        ts = self.store.timestamp_type
        tx.execute(
            f"CREATE TABLE {table} (sku TEXT NOT NULL, order_id TEXT NOT NULL, "
            f"line_id TEXT NOT NULL, customer_id TEXT NOT NULL, priority INTEGER NOT NULL, "
            f"placed_at {ts} NOT NULL, arrival BIGINT NOT NULL, line_index INTEGER NOT NULL, "
            f"quantity INTEGER NOT NULL, eta {ts}, PRIMARY KEY (sku, order_id, line_id))"
        )
        tx.execute(
            f"CREATE INDEX {table}_fill_order ON {table} "
            "(sku, priority DESC, placed_at, arrival, line_index)"
        )
        tx.execute(f"CREATE INDEX {table}_age ON {table} (placed_at, sku)")

    def apply_page(self, tx: Tx, table: str, facts: Sequence[Fact]) -> set[Change]:
        """A backordered line is inserted; a new promised date or what is still owed is set
        on it; it is deleted once filled or cancelled to zero."""
        # Rows the page inserted or deleted, in full (None: deleted); `dropped`: rows from
        # before the page that it deleted; `patches`: what it set on the other rows.
        known: dict[QueueKey, list[Any] | None] = {}
        dropped: set[QueueKey] = set()
        patches: dict[QueueKey, dict[str, Any]] = {}
        changes: set[Change] = set()
        for fact in facts:
            kind = fact["kind"]
            if kind not in self.READS:
                continue
            key = (fact["sku"], fact["order_id"], fact["line_id"])
            changes.add(Change("backorder-queue", f"{fact['order_id']}|{fact['line_id']}", key))
            if kind == "LineBackordered":
                if known.get(key) is not None:
                    raise ValueError(f"backorder {key} queued twice")
                known[key] = [
                    fact["sku"],
                    fact["order_id"],
                    fact["line_id"],
                    fact["customer_id"],
                    fact["priority"],
                    fact["placed_at"],
                    fact["arrival"],
                    fact["line_index"],
                    fact["quantity"],
                    fact["eta"],
                ]
                patches.pop(key, None)  # set on no row, or on one the insert will collide with
                continue
            column, value = self._sets(fact)
            if key in known:
                row = known[key]
                if row is None:
                    continue  # already gone: nothing to set or delete
                if column is None:
                    known[key] = None
                else:
                    row[self.COLUMNS.index(column)] = value
            elif column is None:
                known[key] = None
                dropped.add(key)
                patches.pop(key, None)
            else:
                patches.setdefault(key, {})[column] = value
        tx.delete_many(table, self.key, list(dropped))
        by_columns: dict[tuple[str, ...], list[list[Any]]] = {}
        for key, patch in patches.items():
            columns = tuple(sorted(patch))
            by_columns.setdefault(columns, []).append([*key, *(patch[c] for c in columns)])
        for columns, rows in by_columns.items():
            tx.update_many(table, (*self.key, *columns), rows, key=self.key)
        tx.insert_many(table, self.COLUMNS, [row for row in known.values() if row is not None])
        return changes

    @staticmethod
    def _sets(fact: Fact) -> tuple[str | None, Any]:
        """The column a change of the queued line sets, and its value; (None, None): the
        line was filled or cancelled to zero, its row goes."""
        if fact["kind"] == "BackorderEtaChanged":
            return "eta", fact["eta"]
        if fact["remaining_backordered"]:
            return "quantity", fact["remaining_backordered"]
        return None, None

    def change_key(self, row: dict[str, Any]) -> str:
        return f"{row['order_id']}|{row['line_id']}"


class SkuPositions(Projection):
    """Each SKU now. Its companion table holds the open inbounds, whose remaining quantities
    the SKU's `inbound` is the sum of: a revision replaces one, a receipt reduces one."""

    name = "sku_positions"
    description = "Per SKU: stock, allocations, backorders, expected supply and policy."
    version = 2  # version 2 of the contract: shipped, on_hand, inbound, policy; inbounds
    companions: ClassVar[dict[str, str]] = {"inbounds": "inbounds"}
    key = ("sku",)

    COUNTERS = (
        "received",
        "shipped",
        "on_hand",
        "available",
        "allocated",
        "backordered",
        "open_backorders",
        "inbound",
    )
    # What each event adds to its SKU's counters (besides `inbound`, which needs the
    # inbounds: apply_page). Every one of these makes its SKU known (a row of zeros).
    MOVES: ClassVar[dict[str, Moves]] = {
        "LinePlaced": lambda f: {},
        "StockReceived": lambda f: {
            "received": f["quantity"],
            "on_hand": f["quantity"],
            "available": f["quantity"],
        },
        "LineAllocated": lambda f: {"available": -f["quantity"], "allocated": f["quantity"]},
        "LineBackordered": lambda f: {"backordered": f["quantity"], "open_backorders": 1},
        "BackorderFilled": lambda f: {
            "available": -f["quantity"],
            "allocated": f["quantity"],
            "backordered": -f["quantity"],
            "open_backorders": -1 if f["remaining_backordered"] == 0 else 0,
        },
        "BackorderCancelled": lambda f: {
            "backordered": -f["quantity"],
            "open_backorders": -1 if f["remaining_backordered"] == 0 else 0,
        },
        "AllocationReleased": lambda f: {"available": f["quantity"], "allocated": -f["quantity"]},
        # Allocated units leave the warehouse: they were never available.
        "LineShipped": lambda f: {
            "allocated": -f["quantity"],
            "shipped": f["quantity"],
            "on_hand": -f["quantity"],
        },
        "PolicySet": lambda f: {},
        "InboundExpected": lambda f: {},
    }
    POLICY = ("backorders", "backorder_limit", "max_wait_days")

    def create(self, tx: Tx, table: str) -> None:
        counters = ", ".join(f"{c} BIGINT NOT NULL" for c in self.COUNTERS)
        tx.execute(
            f"CREATE TABLE {table} (sku TEXT PRIMARY KEY, {counters}, "
            "backorders TEXT, backorder_limit BIGINT, max_wait_days INTEGER)"
        )
        tx.execute(
            f"CREATE TABLE {self.views(table)['inbounds']} (sku TEXT NOT NULL, "
            "inbound_id TEXT NOT NULL, quantity BIGINT NOT NULL, "
            f"expected_at {self.store.timestamp_type} NOT NULL, PRIMARY KEY (sku, inbound_id))"
        )

    def apply_page(self, tx: Tx, table: str, facts: Sequence[Fact]) -> set[Change]:
        """Counters summed per SKU; the latest policy per SKU; each inbound the page names
        followed from what it expected before the page to what it expects after it."""
        inbounds = self.views(table)["inbounds"]
        named = {
            (f["sku"], f["inbound_id"])
            for f in facts
            if f["kind"] == "InboundExpected" or (f["kind"] == "StockReceived" and f["inbound_id"])
        }
        # What each inbound named still expects, and when: None once it is not open.
        expecting: dict[InboundKey, tuple[int, Any] | None] = dict.fromkeys(named)
        for found in tx.select_many(inbounds, ("sku", "inbound_id"), sorted(named)):
            expecting[found["sku"], found["inbound_id"]] = (
                int(found["quantity"]),
                found["expected_at"],
            )
        changed: set[InboundKey] = set()
        counters: dict[str, dict[str, int]] = {}
        policies: dict[str, tuple[Any, ...]] = {}
        for fact in facts:
            moves = self.MOVES.get(fact["kind"])
            if moves is None:
                continue
            row = counters.get(fact["sku"])
            if row is None:
                row = counters[fact["sku"]] = dict.fromkeys(self.COUNTERS, 0)
            for column, amount in moves(fact).items():
                row[column] += amount
            if fact["kind"] == "StockReceived" and fact["inbound_id"]:
                # As the SKU does: the receipt takes its quantity off that inbound, never
                # below zero; at zero the inbound is closed. An id the SKU does not have
                # takes nothing.
                inbound = (fact["sku"], fact["inbound_id"])
                before = expecting[inbound]
                expected = before[0] if before else 0
                taken = min(fact["quantity"], expected)
                if taken and before:
                    left = expected - taken
                    expecting[inbound] = (left, before[1]) if left else None
                    changed.add(inbound)
                    row["inbound"] -= taken
            elif fact["kind"] == "InboundExpected":
                # A revision replaces the inbound's quantity and date; 0 withdraws it.
                inbound = (fact["sku"], fact["inbound_id"])
                before = expecting[inbound]
                quantity = fact["quantity"]
                expecting[inbound] = (quantity, fact["expected_at"]) if quantity else None
                changed.add(inbound)
                row["inbound"] += quantity - (before[0] if before else 0)
            elif fact["kind"] == "PolicySet":
                limit = fact["limit"] if fact["backorders"] == "limit" else None
                policies[fact["sku"]] = (fact["backorders"], limit, fact["max_wait_days"])
        tx.upsert_many(
            table,
            ("sku", *self.COUNTERS),
            [(sku, *(row[c] for c in self.COUNTERS)) for sku, row in counters.items()],
            key=self.key,
            add=self.COUNTERS,
        )
        tx.update_many(
            table,
            ("sku", *self.POLICY),
            [(sku, *policy) for sku, policy in policies.items()],
            key=self.key,
        )
        key = ("sku", "inbound_id")
        tx.delete_many(inbounds, key, [i for i in changed if expecting[i] is None])
        tx.upsert_many(
            inbounds,
            (*key, "quantity", "expected_at"),
            [(*i, *now) for i in changed if (now := expecting[i]) is not None],
            key=key,
            replace=("quantity", "expected_at"),
        )
        return set()


class DemandHistory(Projection):
    name = "demand_daily"
    description = "Per SKU and UTC day of the business time: units moved, by kind."
    version = 2  # version 2 of the contract: shipped, expired
    key = ("sku", "day")

    # New counters go last: CSV readers of version 1 keep their columns where they were.
    COUNTERS = (
        "ordered",
        "allocated",
        "backordered",
        "filled",
        "cancelled",
        "rejected",
        "received",
        "shipped",
        "expired",
    )
    # What each event counts, on the day of its business time.
    COUNTS: ClassVar[dict[str, Moves]] = {
        # Cancelled before placement counts on the order's day: that is when it was placed.
        "LinePlaced": lambda f: {
            "ordered": f["ordered"],
            "cancelled": f["cancelled_before_placement"],
        },
        "LineAllocated": lambda f: {"allocated": f["quantity"]},
        "LineBackordered": lambda f: {"backordered": f["quantity"]},
        "BackorderFilled": lambda f: {"filled": f["quantity"]},
        # An expiry is a cancellation too (by the tick, on the tick's day): in both counters.
        "BackorderCancelled": lambda f: {
            "cancelled": f["quantity"],
            "expired": f["quantity"] if f["reason"] == "expired" else 0,
        },
        "AllocationReleased": lambda f: {"cancelled": f["quantity"]},
        "LineRejected": lambda f: {"rejected": f["quantity"]},
        "StockReceived": lambda f: {"received": f["quantity"]},
        "LineShipped": lambda f: {"shipped": f["quantity"]},
    }

    def create(self, tx: Tx, table: str) -> None:
        counters = ", ".join(f"{c} BIGINT NOT NULL" for c in self.COUNTERS)
        tx.execute(
            f"CREATE TABLE {table} (sku TEXT NOT NULL, day {self.store.date_type} NOT NULL, "
            f"{counters}, PRIMARY KEY (sku, day))"
        )

    def apply_page(self, tx: Tx, table: str, facts: Sequence[Fact]) -> set[Change]:
        """Counters summed per SKU and day, then added to the rows (made if new)."""
        days: dict[tuple[str, str], dict[str, int]] = {}
        for fact in facts:
            counts = self.COUNTS.get(fact["kind"])
            if counts is None:
                continue
            key = (fact["sku"], day_of(fact["occurred_at"]))
            row = days.get(key)
            if row is None:
                row = days[key] = dict.fromkeys(self.COUNTERS, 0)
            for column, amount in counts(fact).items():
                row[column] += amount
        tx.upsert_many(
            table,
            ("sku", "day", *self.COUNTERS),
            [(sku, day, *(row[c] for c in self.COUNTERS)) for (sku, day), row in days.items()],
            key=self.key,
            add=self.COUNTERS,
        )
        return {Change("demand-history", f"{sku}|{day}", (sku, day)) for sku, day in days}

    def change_key(self, row: dict[str, Any]) -> str:
        return f"{row['sku']}|{_text(row['day'])}"


class OrderStatus(Projection):
    name = "order_lines"
    description = "Per order line: ordered, allocated, backordered, shipped, cancelled, rejected."
    version = 2  # version 2 of the contract: shipped, eta
    key = ("order_id", "line_id")

    COLUMNS = (
        "order_id",
        "line_id",
        "sku",
        "customer_id",
        "ordered",
        "allocated",
        "backordered",
        "shipped",
        "cancelled",
        "rejected",
        "eta",
        "placed_at",
    )
    COUNTERS = ("allocated", "backordered", "shipped", "cancelled", "rejected")
    MOVES: ClassVar[dict[str, Moves]] = {
        "LineAllocated": lambda f: {"allocated": f["quantity"]},
        "LineBackordered": lambda f: {"backordered": f["quantity"]},
        "BackorderFilled": lambda f: {"backordered": -f["quantity"], "allocated": f["quantity"]},
        "BackorderCancelled": lambda f: {"backordered": -f["quantity"], "cancelled": f["quantity"]},
        "AllocationReleased": lambda f: {"allocated": -f["quantity"], "cancelled": f["quantity"]},
        "LineShipped": lambda f: {"allocated": -f["quantity"], "shipped": f["quantity"]},
        "LineRejected": lambda f: {"rejected": f["quantity"]},
    }

    def create(self, tx: Tx, table: str) -> None:
        ts = self.store.timestamp_type
        tx.execute(
            f"CREATE TABLE {table} (order_id TEXT NOT NULL, line_id TEXT NOT NULL, "
            "sku TEXT NOT NULL, customer_id TEXT NOT NULL, ordered INTEGER NOT NULL, "
            "allocated INTEGER NOT NULL, backordered INTEGER NOT NULL, "
            "shipped INTEGER NOT NULL, cancelled INTEGER NOT NULL, rejected INTEGER NOT NULL, "
            f"eta {ts}, placed_at {ts} NOT NULL, PRIMARY KEY (order_id, line_id))"
        )
        tx.execute(f"CREATE INDEX {table}_by_sku ON {table} (sku)")

    @staticmethod
    def _promised(fact: Fact) -> Any:
        """The date the event promises for the line's queued units (None once none are
        queued), or UNSET if it says nothing of it."""
        if fact["kind"] in ("LineBackordered", "BackorderEtaChanged"):
            return fact["eta"]
        if (
            fact["kind"] in ("BackorderFilled", "BackorderCancelled")
            and not fact["remaining_backordered"]
        ):
            return None
        return UNSET

    def apply_page(self, tx: Tx, table: str, facts: Sequence[Fact]) -> set[Change]:
        """A placed line is inserted; what the page moves is summed per line and added to
        it; the last date promised in the page is set on it."""
        placed: dict[LineKey, dict[str, Any]] = {}  # lines placed in this page, in full
        moved: dict[LineKey, dict[str, int]] = {}  # what the page adds to lines from before it
        promised: dict[LineKey, Any] = {}  # the last date it promised lines from before it
        for fact in facts:
            kind = fact["kind"]
            if kind == "LinePlaced":
                key = (fact["order_id"], fact["line_id"])
                if key in placed:
                    raise ValueError(f"order line {key} placed twice")
                placed[key] = {
                    "order_id": fact["order_id"],
                    "line_id": fact["line_id"],
                    "sku": fact["sku"],
                    "customer_id": fact["customer_id"],
                    "ordered": fact["ordered"],
                    "allocated": 0,
                    "backordered": 0,
                    "shipped": 0,
                    "cancelled": fact["cancelled_before_placement"],
                    "rejected": 0,
                    "eta": None,
                    "placed_at": fact["occurred_at"],
                }
                # Set on no row, or on one the insert will collide with.
                moved.pop(key, None)
                promised.pop(key, None)
                continue
            moves = self.MOVES.get(kind)
            eta = self._promised(fact)
            if moves is None and eta is UNSET:
                continue
            key = (fact["order_id"], fact["line_id"])
            line = placed.get(key)
            if moves is not None:
                target = line if line is not None else moved.get(key)
                if target is None:
                    target = moved[key] = dict.fromkeys(self.COUNTERS, 0)
                for column, amount in moves(fact).items():
                    target[column] += amount
            if eta is not UNSET:
                if line is not None:
                    line["eta"] = eta
                else:
                    promised[key] = eta
        tx.insert_many(
            table, self.COLUMNS, [[row[c] for c in self.COLUMNS] for row in placed.values()]
        )
        tx.update_many(
            table,
            (*self.key, *self.COUNTERS),
            [(*key, *(row[c] for c in self.COUNTERS)) for key, row in moved.items()],
            key=self.key,
            add=self.COUNTERS,
        )
        tx.update_many(
            table,
            (*self.key, "eta"),
            [(*key, eta) for key, eta in promised.items()],
            key=self.key,
        )
        return set()


class OrderDecisions(Projection):
    """Every decision about an order's lines, in the order the SKUs took them: what an order
    lookup shows, without reading each SKU's history."""

    name = "order_decisions"
    description = "Every decision per order line, in log order, with its business time."
    version = 1
    key = ("position",)
    COLUMNS = (
        "position",
        "order_id",
        "line_id",
        "sku",
        "decision",
        "quantity",
        "occurred_at",
        "reason",
        "eta",
        "remaining",
        "queue_position",
        "shipment_id",
    )
    DECISIONS = frozenset(
        {
            "LineAllocated",
            "LineBackordered",
            "LineRejected",
            "BackorderFilled",
            "BackorderCancelled",
            "AllocationReleased",
            "LineShipped",
            "BackorderEtaChanged",
        }
    )

    def create(self, tx: Tx, table: str) -> None:
        ts = self.store.timestamp_type
        tx.execute(
            f"CREATE TABLE {table} (position BIGINT PRIMARY KEY, order_id TEXT NOT NULL, "
            "line_id TEXT NOT NULL, sku TEXT NOT NULL, decision TEXT NOT NULL, "
            f"quantity BIGINT NOT NULL, occurred_at {ts} NOT NULL, reason TEXT, eta {ts}, "
            "remaining BIGINT, queue_position BIGINT, shipment_id TEXT)"
        )
        tx.execute(f"CREATE INDEX {table}_by_order ON {table} (order_id, position)")

    def apply_page(self, tx: Tx, table: str, facts: Sequence[Fact]) -> set[Change]:
        """One row per decision, keyed by its position in the log."""
        rows = [
            (
                fact["notification_id"],
                fact["order_id"],
                fact["line_id"],
                fact["sku"],
                fact["kind"],
                fact["quantity"],
                fact["occurred_at"],
                fact.get("reason"),
                fact.get("eta"),
                fact.get("remaining_backordered", fact.get("remaining_allocated")),
                fact.get("queue_position"),
                fact.get("shipment_id"),
            )
            for fact in facts
            if fact["kind"] in self.DECISIONS
        ]
        tx.insert_many(table, self.COLUMNS, rows)
        return set()
