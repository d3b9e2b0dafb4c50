"""The read models' questions, as the HTTP API and the CLI ask them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

from projections.models import DemandHistory
from projections.store import ReadStore

FILL_ORDER = "priority DESC, placed_at, arrival, line_index"
DEMAND_COUNTERS = DemandHistory.COUNTERS
POSITION_COUNTERS = (
    "available",
    "allocated",
    "backordered",
    "open_backorders",
    "on_hand",
    "shipped",
    "inbound",
)


def _moment(value: Any) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(value)


def api_time(value: Any) -> str | None:
    """A stored time as the API writes times: ISO 8601 in UTC, `Z`; None stays None."""
    if value is None:
        return None
    return _moment(value).astimezone(UTC).isoformat().replace("+00:00", "Z")


def as_day(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(value)


@dataclass
class Queries:
    store: ReadStore
    # What a SKU without a policy of its own does with what stock cannot cover: the
    # service's BACKORDERS_ALLOWED ("allow", or "deny" when it is false).
    default_backorders: Literal["allow", "deny"] = "allow"

    def sku(self, sku: str) -> dict[str, Any] | None:
        """The SKU now, with the policy that governs its next lines; None if nothing has
        named it yet."""
        rows = self.store.read(
            f"SELECT sku, {', '.join(POSITION_COUNTERS)}, backorders, backorder_limit, "
            "max_wait_days FROM sku_positions WHERE sku = ?",
            [sku],
        )
        if not rows:
            return None
        row = rows[0]
        found: dict[str, Any] = {"sku": row["sku"]}
        found.update({counter: int(row[counter]) for counter in POSITION_COUNTERS})
        found["policy"] = {
            "backorders": row["backorders"] or self.default_backorders,
            "limit": None if row["backorder_limit"] is None else int(row["backorder_limit"]),
            "max_wait_days": row["max_wait_days"],
        }
        return found

    def queue(self, sku: str, limit: int, offset: int, now: datetime) -> list[dict[str, Any]]:
        rows = self.store.read(
            "SELECT order_id, line_id, customer_id, priority, quantity, placed_at, eta "
            f"FROM backorder_queue WHERE sku = ? ORDER BY {FILL_ORDER} LIMIT ? OFFSET ?",
            [sku, limit, offset],
        )
        return [
            _backorder(row, position, now) for position, row in enumerate(rows, start=offset + 1)
        ]

    def backorders(
        self, sku: str | None, limit: int, offset: int, now: datetime
    ) -> list[dict[str, Any]]:
        """All open backorders, oldest first, each with its place in its SKU's queue."""
        where = "WHERE sku = ?" if sku else ""
        rows = self.store.read(
            "SELECT * FROM (SELECT sku, order_id, line_id, customer_id, priority, quantity, "
            f"placed_at, eta, arrival, ROW_NUMBER() OVER (PARTITION BY sku ORDER BY {FILL_ORDER}) "
            f"AS position FROM backorder_queue) ranked {where} "
            "ORDER BY placed_at, sku, arrival, order_id, line_id LIMIT ? OFFSET ?",
            [*([sku] if sku else []), limit, offset],
        )
        return [{"sku": row["sku"], **_backorder(row, row["position"], now)} for row in rows]

    def demand(
        self,
        sku: str,
        start: date | None,
        end: date | None,
        bucket: Literal["day", "week"],
    ) -> list[dict[str, Any]]:
        """Per bucket of business time, zero-filled between the first and last day asked."""
        sql = f"SELECT day, {', '.join(DEMAND_COUNTERS)} FROM demand_daily WHERE sku = ?"
        params: list[Any] = [sku]
        if start is not None:
            sql += " AND day >= ?"
            params.append(start if self.store.postgres else start.isoformat())
        if end is not None:
            sql += " AND day <= ?"
            params.append(end if self.store.postgres else end.isoformat())
        days = {as_day(row["day"]): row for row in self.store.read(sql + " ORDER BY day", params)}
        first = start or (min(days) if days else None)
        last = end or (max(days) if days else None)
        if first is None or last is None:
            return []
        buckets: dict[date, dict[str, Any]] = {}
        day = first
        while day <= last:
            key = day - timedelta(days=day.weekday()) if bucket == "week" else day
            counters = buckets.setdefault(
                key, {"bucket_start": key.isoformat(), **dict.fromkeys(DEMAND_COUNTERS, 0)}
            )
            row = days.get(day)
            if row is not None:
                for counter in DEMAND_COUNTERS:
                    counters[counter] += int(row[counter])
            day += timedelta(days=1)
        return list(buckets.values())

    def order(self, order_id: str) -> dict[str, Any] | None:
        lines = self.store.read(
            "SELECT line_id, sku, customer_id, ordered, allocated, backordered, shipped, "
            "cancelled, rejected, eta FROM order_lines WHERE order_id = ? "
            "ORDER BY placed_at, line_id",
            [order_id],
        )
        if not lines:
            return None
        return {
            "order_id": order_id,
            "customer_id": lines[0]["customer_id"],
            "status": order_status(lines),
            "lines": [
                {
                    **{k: v for k, v in line.items() if k not in {"customer_id", "eta"}},
                    "eta": api_time(line["eta"]),
                }
                for line in lines
            ],
        }

    def decisions(self, order_id: str) -> list[dict[str, Any]]:
        """Every decision about the order's lines, in the order they were taken."""
        rows = self.store.read(
            "SELECT position, decision, line_id, sku, quantity, occurred_at, reason, eta, "
            "remaining, queue_position, shipment_id FROM order_decisions WHERE order_id = ? "
            "ORDER BY position",
            [order_id],
        )
        return [
            {**row, "occurred_at": api_time(row["occurred_at"]), "eta": api_time(row["eta"])}
            for row in rows
        ]


def order_status(lines: list[dict[str, Any]]) -> str:
    """From what the order's lines hold now, in the contract's order of precedence (see
    docs/read-models.md): what is still outstanding first, then how it ended."""
    total = {
        kind: sum(line[kind] for line in lines)
        for kind in ("allocated", "backordered", "shipped", "cancelled")
    }
    if total["backordered"]:
        return "partially_backordered" if total["allocated"] else "backordered"
    if total["allocated"]:
        return "partially_shipped" if total["shipped"] else "allocated"
    # Nothing outstanding: the order is over.
    if total["shipped"]:
        return "shipped"
    if total["cancelled"]:
        return "cancelled"
    return "rejected"


def _backorder(row: dict[str, Any], position: int, now: datetime) -> dict[str, Any]:
    placed_at = _moment(row["placed_at"]).astimezone(UTC)
    return {
        "position": position,
        "order_id": row["order_id"],
        "line_id": row["line_id"],
        "customer_id": row["customer_id"],
        "priority": row["priority"],
        "quantity": row["quantity"],
        "placed_at": api_time(placed_at),
        "age_seconds": max(0, int((now - placed_at).total_seconds())),
        "eta": api_time(row["eta"]),
    }
