"""The four read models, each a plain SQL table fed by the SKUs' events in log order.

Each projection says how one event changes its rows; the runner (projections/runner.py)
feeds them in batches and records their positions in the same transaction.
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

    def __init__(self, store: ReadStore) -> None:
        self.store = store

    def create(self, tx: Tx, table: str) -> None:
        raise NotImplementedError

    @singledispatchmethod
    def apply(self, event: Any, tx: Tx, table: str) -> Iterable[Change]:
        """Events that do not concern this read model change nothing."""
        return ()


class BackorderQueue(Projection):
    name = "backorder_queue"
    description = "Every open backorder line, with what is still owed; fill order by index."

    def create(self, tx: Tx, table: str) -> None:
        ts = self.store.timestamp_type
        tx.execute(
            f"CREATE TABLE {table} (sku TEXT NOT NULL, order_id TEXT NOT NULL, "
            f"line_id TEXT NOT NULL, customer_id TEXT NOT NULL, priority INTEGER NOT NULL, "
            f"placed_at {ts} NOT NULL, arrival BIGINT NOT NULL, line_index INTEGER NOT NULL, "
            "quantity INTEGER NOT NULL, PRIMARY KEY (sku, order_id, line_id))"
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
            "arrival, line_index, quantity) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
            ],
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
    name = "sku_positions"
    description = "Per SKU: received, available, allocated, backordered, open backorders."

    def create(self, tx: Tx, table: str) -> None:
        tx.execute(
            f"CREATE TABLE {table} (sku TEXT PRIMARY KEY, received BIGINT NOT NULL, "
            "available BIGINT NOT NULL, allocated BIGINT NOT NULL, "
            "backordered BIGINT NOT NULL, open_backorders BIGINT NOT NULL)"
        )

    def _move(self, tx: Tx, table: str, sku: str, **deltas: int) -> Iterable[Change]:
        counters = dict.fromkeys(
            ("received", "available", "allocated", "backordered", "open_backorders"), 0
        )
        counters.update(deltas)
        _add(tx, table, {"sku": sku}, counters)
        return ()

    @singledispatchmethod
    def apply(self, event: Any, tx: Tx, table: str) -> Iterable[Change]:
        return ()

    @apply.register
    def _(self, event: Sku.LinePlaced, tx: Tx, table: str) -> Iterable[Change]:
        return self._move(tx, table, event.sku)

    @apply.register
    def _(self, event: Sku.StockReceived, tx: Tx, table: str) -> Iterable[Change]:
        return self._move(tx, table, event.sku, received=event.quantity, available=event.quantity)

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


class DemandHistory(Projection):
    name = "demand_daily"
    description = "Per SKU and UTC day of the business time: units moved, by kind."

    COUNTERS = (
        "ordered",
        "allocated",
        "backordered",
        "filled",
        "cancelled",
        "rejected",
        "received",
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
        return self._count(tx, table, event, cancelled=event.quantity)

    @apply.register
    def _(self, event: Sku.AllocationReleased, tx: Tx, table: str) -> Iterable[Change]:
        return self._count(tx, table, event, cancelled=event.quantity)

    @apply.register
    def _(self, event: Sku.LineRejected, tx: Tx, table: str) -> Iterable[Change]:
        return self._count(tx, table, event, rejected=event.quantity)

    @apply.register
    def _(self, event: Sku.StockReceived, tx: Tx, table: str) -> Iterable[Change]:
        return self._count(tx, table, event, received=event.quantity)


class OrderStatus(Projection):
    name = "order_lines"
    description = "Per order line: ordered, allocated, backordered, cancelled, rejected."

    def create(self, tx: Tx, table: str) -> None:
        tx.execute(
            f"CREATE TABLE {table} (order_id TEXT NOT NULL, line_id TEXT NOT NULL, "
            "sku TEXT NOT NULL, customer_id TEXT NOT NULL, ordered INTEGER NOT NULL, "
            "allocated INTEGER NOT NULL, backordered INTEGER NOT NULL, "
            "cancelled INTEGER NOT NULL, rejected INTEGER NOT NULL, "
            f"placed_at {self.store.timestamp_type} NOT NULL, PRIMARY KEY (order_id, line_id))"
        )
        tx.execute(f"CREATE INDEX {table}_by_sku ON {table} (sku)")

    def _line(self, tx: Tx, table: str, event: Sku.Decided, **deltas: int) -> Iterable[Change]:
        sets = ", ".join(f"{column} = {column} + ?" for column in deltas)
        tx.execute(
            f"UPDATE {table} SET {sets} WHERE order_id = ? AND line_id = ?",
            [*deltas.values(), event.order_id, event.line_id],
        )
        return ()

    @singledispatchmethod
    def apply(self, event: Any, tx: Tx, table: str) -> Iterable[Change]:
        return ()

    @apply.register
    def _(self, event: Sku.LinePlaced, tx: Tx, table: str) -> Iterable[Change]:
        tx.execute(
            f"INSERT INTO {table} (order_id, line_id, sku, customer_id, ordered, allocated, "
            "backordered, cancelled, rejected, placed_at) VALUES (?, ?, ?, ?, ?, 0, 0, ?, 0, ?)",
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
        return self._line(tx, table, event, backordered=event.quantity)

    @apply.register
    def _(self, event: Sku.BackorderFilled, tx: Tx, table: str) -> Iterable[Change]:
        q = event.quantity
        return self._line(tx, table, event, backordered=-q, allocated=q)

    @apply.register
    def _(self, event: Sku.BackorderCancelled, tx: Tx, table: str) -> Iterable[Change]:
        q = event.quantity
        return self._line(tx, table, event, backordered=-q, cancelled=q)

    @apply.register
    def _(self, event: Sku.AllocationReleased, tx: Tx, table: str) -> Iterable[Change]:
        q = event.quantity
        return self._line(tx, table, event, allocated=-q, cancelled=q)

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
    "demand": "demand_daily",
    "demand_history": "demand_daily",
    "orders": "order_lines",
    "order_status": "order_lines",
}
