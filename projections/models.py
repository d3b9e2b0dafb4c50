"""The four read models, each a plain SQL table (sku_positions with a companion, its open
inbounds) fed by the SKUs' events in log order.

Each projection says how one event changes its rows; the runner (projections/runner.py)
feeds them in batches and records their positions in the same transaction. Events that are
not decisions about demand or stock (a refused shipment line, the deadlines index) change
nothing here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from functools import singledispatchmethod
from typing import Any, ClassVar

from projections.store import ReadStore, Tx
from services.allocation.domain import Sku


@dataclass(frozen=True)
class Change:
    """A row that changed, for the streaming topics: its logical topic and key."""

    topic: str
    key: str


def _add(tx: Tx, table: str, keys: dict[str, Any], deltas: dict[str, int]) -> None:
    """Upserts a row, adding the deltas to its counters."""
    columns = [*keys, *deltas]
    updates = ", ".join(f"{c} = {table}.{c} + excluded.{c}" for c in deltas) or (
        f"{next(iter(keys))} = excluded.{next(iter(keys))}"
    )
    tx.execute(
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))}) "
        f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {updates}",
        [*keys.values(), *deltas.values()],
    )


def day_of(moment: datetime) -> date:
    return moment.date()  # business times are UTC already


class Projection:
    name: ClassVar[str]
    description: ClassVar[str]
    # The shape of its tables. A store that holds an older shape refills the read model from
    # the log when it opens (projections/runner.py): bump it whenever the columns change.
    version: ClassVar[int] = 1
    # Further tables of each generation, each behind its own stable view: view -> suffix.
    companions: ClassVar[dict[str, str]] = {}

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

    @singledispatchmethod
    def apply(self, event: Any, tx: Tx, table: str) -> Iterable[Change]:
        """Events that do not concern this read model change nothing."""
        return ()


class BackorderQueue(Projection):
    name = "backorder_queue"
    description = "Every open backorder line, with what is still owed and its promised date."
    version = 2  # version 2 of the contract: eta

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

    @singledispatchmethod
    def apply(self, event: Any, tx: Tx, table: str) -> Iterable[Change]:
        return ()

    @apply.register
    def _(self, event: Sku.LineBackordered, tx: Tx, table: str) -> Iterable[Change]:
        tx.execute(
            f"INSERT INTO {table} (sku, order_id, line_id, customer_id, priority, placed_at, "
            "arrival, line_index, quantity, eta) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                event.sku,
                event.order_id,
                event.line_id,
                event.customer_id,
                event.priority,
                event.placed_at,
                event.arrival,
                event.line_index,
                event.quantity,
                event.eta,
            ],
        )
        return [self._change(event)]

    @apply.register
    def _(self, event: Sku.BackorderEtaChanged, tx: Tx, table: str) -> Iterable[Change]:
        tx.execute(
            f"UPDATE {table} SET eta = ? WHERE sku = ? AND order_id = ? AND line_id = ?",
            [event.eta, event.sku, event.order_id, event.line_id],
        )
        return [self._change(event)]

    @apply.register
    def _(self, event: Sku.BackorderFilled, tx: Tx, table: str) -> Iterable[Change]:
        return self._owe(tx, table, event, event.remaining_backordered)

    @apply.register
    def _(self, event: Sku.BackorderCancelled, tx: Tx, table: str) -> Iterable[Change]:
        return self._owe(tx, table, event, event.remaining_backordered)

    def _owe(self, tx: Tx, table: str, event: Sku.Decided, remaining: int) -> Iterable[Change]:
        where = "sku = ? AND order_id = ? AND line_id = ?"
        keys = [event.sku, event.order_id, event.line_id]
        if remaining:
            tx.execute(f"UPDATE {table} SET quantity = ? WHERE {where}", [remaining, *keys])
        else:
            tx.execute(f"DELETE FROM {table} WHERE {where}", keys)
        return [self._change(event)]

    @staticmethod
    def _change(event: Sku.Decided) -> Change:
        return Change("backorder-queue", f"{event.order_id}|{event.line_id}")


class SkuPositions(Projection):
    """Each SKU now. Its companion table holds the open inbounds, whose remaining quantities
    the SKU's `inbound` is the sum of: a revision replaces one, a receipt reduces one."""

    name = "sku_positions"
    description = "Per SKU: stock, allocations, backorders, expected supply and policy."
    version = 2  # version 2 of the contract: shipped, on_hand, inbound, policy; inbounds
    companions: ClassVar[dict[str, str]] = {"inbounds": "inbounds"}

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

    def _move(self, tx: Tx, table: str, sku: str, **deltas: int) -> Iterable[Change]:
        """Adds to the SKU's counters; without deltas, makes the SKU known (zeros)."""
        counters = dict.fromkeys(self.COUNTERS, 0)
        counters.update(deltas)
        _add(tx, table, {"sku": sku}, counters)
        return ()

    def _expected(self, tx: Tx, table: str, sku: str, inbound_id: str) -> int:
        """What one of the SKU's inbounds still expects: 0 if it has none of that id."""
        row = tx.one(
            f"SELECT quantity FROM {self.views(table)['inbounds']} "
            "WHERE sku = ? AND inbound_id = ?",
            [sku, inbound_id],
        )
        return 0 if row is None else int(row["quantity"])

    @singledispatchmethod
    def apply(self, event: Any, tx: Tx, table: str) -> Iterable[Change]:
        return ()

    @apply.register
    def _(self, event: Sku.LinePlaced, tx: Tx, table: str) -> Iterable[Change]:
        return self._move(tx, table, event.sku)

    @apply.register
    def _(self, event: Sku.StockReceived, tx: Tx, table: str) -> Iterable[Change]:
        q = event.quantity
        taken = 0
        if event.inbound_id is not None:
            # As the SKU does: the receipt takes its quantity off that inbound, never below
            # zero; at zero the inbound is closed. An id the SKU does not have takes nothing.
            expected = self._expected(tx, table, event.sku, event.inbound_id)
            taken = min(q, expected)
            if taken:
                self._expect(
                    tx,
                    table,
                    event.sku,
                    event.inbound_id,
                    quantity=expected - taken,
                    expected_at=None,
                )
        return self._move(tx, table, event.sku, received=q, on_hand=q, available=q, inbound=-taken)

    @apply.register
    def _(self, event: Sku.LineAllocated, tx: Tx, table: str) -> Iterable[Change]:
        q = event.quantity
        return self._move(tx, table, event.sku, available=-q, allocated=q)

    @apply.register
    def _(self, event: Sku.LineBackordered, tx: Tx, table: str) -> Iterable[Change]:
        return self._move(tx, table, event.sku, backordered=event.quantity, open_backorders=1)

    @apply.register
    def _(self, event: Sku.BackorderFilled, tx: Tx, table: str) -> Iterable[Change]:
        q = event.quantity
        closed = 1 if event.remaining_backordered == 0 else 0
        return self._move(
            tx,
            table,
            event.sku,
            available=-q,
            allocated=q,
            backordered=-q,
            open_backorders=-closed,
        )

    @apply.register
    def _(self, event: Sku.BackorderCancelled, tx: Tx, table: str) -> Iterable[Change]:
        closed = 1 if event.remaining_backordered == 0 else 0
        return self._move(
            tx, table, event.sku, backordered=-event.quantity, open_backorders=-closed
        )

    @apply.register
    def _(self, event: Sku.AllocationReleased, tx: Tx, table: str) -> Iterable[Change]:
        q = event.quantity
        return self._move(tx, table, event.sku, available=q, allocated=-q)

    @apply.register
    def _(self, event: Sku.LineShipped, tx: Tx, table: str) -> Iterable[Change]:
        # Allocated units leave the warehouse: they were never available.
        q = event.quantity
        return self._move(tx, table, event.sku, allocated=-q, shipped=q, on_hand=-q)

    @apply.register
    def _(self, event: Sku.PolicySet, tx: Tx, table: str) -> Iterable[Change]:
        self._move(tx, table, event.sku)
        tx.execute(
            f"UPDATE {table} SET backorders = ?, backorder_limit = ?, max_wait_days = ? "
            "WHERE sku = ?",
            [
                event.backorders,
                event.limit if event.backorders == "limit" else None,
                event.max_wait_days,
                event.sku,
            ],
        )
        return ()

    @apply.register
    def _(self, event: Sku.InboundExpected, tx: Tx, table: str) -> Iterable[Change]:
        # A revision replaces the inbound's quantity and date; 0 withdraws it.
        before = self._expected(tx, table, event.sku, event.inbound_id)
        self._expect(
            tx,
            table,
            event.sku,
            event.inbound_id,
            quantity=event.quantity,
            expected_at=event.expected_at,
        )
        return self._move(tx, table, event.sku, inbound=event.quantity - before)

    def _expect(
        self,
        tx: Tx,
        table: str,
        sku: str,
        inbound_id: str,
        *,
        quantity: int,
        expected_at: datetime | None,
    ) -> None:
        """Sets what an inbound still expects (and, if given, its date); 0 closes it."""
        inbounds = self.views(table)["inbounds"]
        keys = [sku, inbound_id]
        if not quantity:
            tx.execute(f"DELETE FROM {inbounds} WHERE sku = ? AND inbound_id = ?", keys)
        elif expected_at is None:
            tx.execute(
                f"UPDATE {inbounds} SET quantity = ? WHERE sku = ? AND inbound_id = ?",
                [quantity, *keys],
            )
        else:
            tx.execute(
                f"INSERT INTO {inbounds} (sku, inbound_id, quantity, expected_at) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (sku, inbound_id) DO UPDATE SET "
                "quantity = excluded.quantity, expected_at = excluded.expected_at",
                [*keys, quantity, expected_at],
            )


class DemandHistory(Projection):
    name = "demand_daily"
    description = "Per SKU and UTC day of the business time: units moved, by kind."
    version = 2  # version 2 of the contract: shipped, expired

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

    def create(self, tx: Tx, table: str) -> None:
        counters = ", ".join(f"{c} BIGINT NOT NULL" for c in self.COUNTERS)
        tx.execute(
            f"CREATE TABLE {table} (sku TEXT NOT NULL, day {self.store.date_type} NOT NULL, "
            f"{counters}, PRIMARY KEY (sku, day))"
        )

    def _count(self, tx: Tx, table: str, event: Any, **deltas: int) -> Iterable[Change]:
        day = day_of(event.occurred_at)
        counters = dict.fromkeys(self.COUNTERS, 0)
        counters.update(deltas)
        _add(tx, table, {"sku": event.sku, "day": day}, counters)
        return [Change("demand-history", f"{event.sku}|{day.isoformat()}")]

    @singledispatchmethod
    def apply(self, event: Any, tx: Tx, table: str) -> Iterable[Change]:
        return ()

    @apply.register
    def _(self, event: Sku.LinePlaced, tx: Tx, table: str) -> Iterable[Change]:
        # Cancelled before placement counts on the order's day: that is when it was placed.
        return self._count(
            tx, table, event, ordered=event.ordered, cancelled=event.cancelled_before_placement
        )

    @apply.register
    def _(self, event: Sku.LineAllocated, tx: Tx, table: str) -> Iterable[Change]:
        return self._count(tx, table, event, allocated=event.quantity)

    @apply.register
    def _(self, event: Sku.LineBackordered, tx: Tx, table: str) -> Iterable[Change]:
        return self._count(tx, table, event, backordered=event.quantity)

    @apply.register
    def _(self, event: Sku.BackorderFilled, tx: Tx, table: str) -> Iterable[Change]:
        return self._count(tx, table, event, filled=event.quantity)

    @apply.register
    def _(self, event: Sku.BackorderCancelled, tx: Tx, table: str) -> Iterable[Change]:
        # An expiry is a cancellation too (by the tick, on the tick's day): in both counters.
        expired = event.quantity if event.reason == "expired" else 0
        return self._count(tx, table, event, cancelled=event.quantity, expired=expired)

    @apply.register
    def _(self, event: Sku.AllocationReleased, tx: Tx, table: str) -> Iterable[Change]:
        return self._count(tx, table, event, cancelled=event.quantity)

    @apply.register
    def _(self, event: Sku.LineRejected, tx: Tx, table: str) -> Iterable[Change]:
        return self._count(tx, table, event, rejected=event.quantity)

    @apply.register
    def _(self, event: Sku.StockReceived, tx: Tx, table: str) -> Iterable[Change]:
        return self._count(tx, table, event, received=event.quantity)

    @apply.register
    def _(self, event: Sku.LineShipped, tx: Tx, table: str) -> Iterable[Change]:
        return self._count(tx, table, event, shipped=event.quantity)


class OrderStatus(Projection):
    name = "order_lines"
    description = "Per order line: ordered, allocated, backordered, shipped, cancelled, rejected."
    version = 2  # version 2 of the contract: shipped, eta

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

    def _line(self, tx: Tx, table: str, event: Sku.Decided, **deltas: int) -> Iterable[Change]:
        sets = ", ".join(f"{column} = {column} + ?" for column in deltas)
        tx.execute(
            f"UPDATE {table} SET {sets} WHERE order_id = ? AND line_id = ?",
            [*deltas.values(), event.order_id, event.line_id],
        )
        return ()

    def _promise(
        self, tx: Tx, table: str, event: Sku.Decided, eta: datetime | None
    ) -> Iterable[Change]:
        """The date promised for the line's queued units; None once none are queued."""
        tx.execute(
            f"UPDATE {table} SET eta = ? WHERE order_id = ? AND line_id = ?",
            [eta, event.order_id, event.line_id],
        )
        return ()

    @singledispatchmethod
    def apply(self, event: Any, tx: Tx, table: str) -> Iterable[Change]:
        return ()

    @apply.register
    def _(self, event: Sku.LinePlaced, tx: Tx, table: str) -> Iterable[Change]:
        tx.execute(
            f"INSERT INTO {table} (order_id, line_id, sku, customer_id, ordered, allocated, "
            "backordered, shipped, cancelled, rejected, eta, placed_at) "
            "VALUES (?, ?, ?, ?, ?, 0, 0, 0, ?, 0, NULL, ?)",
            [
                event.order_id,
                event.line_id,
                event.sku,
                event.customer_id,
                event.ordered,
                event.cancelled_before_placement,
                event.occurred_at,
            ],
        )
        return ()

    @apply.register
    def _(self, event: Sku.LineAllocated, tx: Tx, table: str) -> Iterable[Change]:
        return self._line(tx, table, event, allocated=event.quantity)

    @apply.register
    def _(self, event: Sku.LineBackordered, tx: Tx, table: str) -> Iterable[Change]:
        self._promise(tx, table, event, event.eta)
        return self._line(tx, table, event, backordered=event.quantity)

    @apply.register
    def _(self, event: Sku.BackorderEtaChanged, tx: Tx, table: str) -> Iterable[Change]:
        return self._promise(tx, table, event, event.eta)

    @apply.register
    def _(self, event: Sku.BackorderFilled, tx: Tx, table: str) -> Iterable[Change]:
        q = event.quantity
        if not event.remaining_backordered:
            self._promise(tx, table, event, None)
        return self._line(tx, table, event, backordered=-q, allocated=q)

    @apply.register
    def _(self, event: Sku.BackorderCancelled, tx: Tx, table: str) -> Iterable[Change]:
        q = event.quantity
        if not event.remaining_backordered:
            self._promise(tx, table, event, None)
        return self._line(tx, table, event, backordered=-q, cancelled=q)

    @apply.register
    def _(self, event: Sku.AllocationReleased, tx: Tx, table: str) -> Iterable[Change]:
        q = event.quantity
        return self._line(tx, table, event, allocated=-q, cancelled=q)

    @apply.register
    def _(self, event: Sku.LineShipped, tx: Tx, table: str) -> Iterable[Change]:
        q = event.quantity
        return self._line(tx, table, event, allocated=-q, shipped=q)

    @apply.register
    def _(self, event: Sku.LineRejected, tx: Tx, table: str) -> Iterable[Change]:
        return self._line(tx, table, event, rejected=event.quantity)


PROJECTIONS: tuple[type[Projection], ...] = (
    BackorderQueue,
    SkuPositions,
    DemandHistory,
    OrderStatus,
)
NAMES: dict[str, type[Projection]] = {p.name: p for p in PROJECTIONS}
# What the CLI accepts, in the words of the issue, besides the table names.
ALIASES = {
    "queue": "backorder_queue",
    "backorders": "backorder_queue",
    "positions": "sku_positions",
    "inbounds": "sku_positions",  # its companion table: rebuilt with it
    "demand": "demand_daily",
    "demand_history": "demand_daily",
    "orders": "order_lines",
    "order_status": "order_lines",
}
