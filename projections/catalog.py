"""Every read model the runner feeds, by name, and the names the CLI also accepts."""

from __future__ import annotations

from projections.insights import SkuInsights
from projections.models import (
    BackorderQueue,
    DemandHistory,
    OrderDecisions,
    OrderStatus,
    Projection,
    SkuPositions,
)

PROJECTIONS: tuple[type[Projection], ...] = (
    BackorderQueue,
    SkuPositions,
    DemandHistory,
    OrderStatus,
    OrderDecisions,
    SkuInsights,
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
    "decisions": "order_decisions",
    "insights": "insights_daily",
}
