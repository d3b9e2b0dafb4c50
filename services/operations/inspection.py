"""What SREs do by hand: inspect a SKU or an order, re-derive decisions, handle dead letters.

Reads go straight to the event stores (one SKU's or one order's events, never a scan of the
whole log); the dead-letter commands talk to Kafka.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from eventsourcing.application import AggregateNotFoundError

from events.decisions import Decision
from services.allocation.application import Allocation
from services.allocation.domain import LineView, sku_aggregate_id
from services.intake.application import Intake
from services.intake.domain import Order, order_aggregate_id
from services.operations.replay import Progress, decisions_of, rederive


@dataclass(frozen=True)
class SkuView:
    sku: str
    received: int
    available: int
    allocated: int
    backordered: int
    queue: list[LineView]


def sku_view(allocation: Allocation, sku: str) -> SkuView | None:
    found = allocation.find_sku(sku)
    if found is None:
        return None
    return SkuView(
        sku=sku,
        received=found.received,
        available=found.available,
        allocated=found.allocated,
        backordered=found.backordered,
        queue=found.queued_lines(),
    )


def sku_history(allocation: Allocation, sku: str) -> Iterator[Any]:
    """The SKU's own events, oldest first."""
    yield from allocation.events.get(sku_aggregate_id(sku))


def describe(event: Any) -> dict[str, Any]:
    """An event as plain fields, for tables and JSON."""
    fields = {
        key: value
        for key, value in vars(event).items()
        if key not in {"originator_id", "originator_topic", "timestamp"}
    }
    return {"event": type(event).__qualname__, "recorded_at": event.timestamp, **fields}


def order_history(intake: Intake, allocation: Allocation, order_id: str) -> list[dict[str, Any]]:
    """Intake's events for the order, then each of its SKUs' events for it."""
    try:
        order: Order = intake.repository.get(order_aggregate_id(order_id))
    except AggregateNotFoundError:
        return []
    history = [describe(event) for event in intake.events.get(order_aggregate_id(order_id))]
    for sku in sorted({line["sku"] for line in order.lines.values()}):
        history.extend(
            describe(event)
            for event in sku_history(allocation, sku)
            if getattr(event, "order_id", None) == order_id
        )
    return history


@dataclass
class ReplayReport:
    commands: int = 0
    live: int = 0
    rederived: int = 0
    mismatched_skus: list[str] = field(default_factory=list)

    @property
    def identical(self) -> bool:
        return not self.mismatched_skus and self.live == self.rederived


def replay(
    intake: Intake, live: Allocation, fresh: Allocation, progress: Progress | None = None
) -> ReplayReport:
    """Re-derives every decision from intake's inputs into `fresh`, compares with `live`.

    Decisions are compared per SKU: SKUs on different partitions are decided in parallel,
    so only each SKU's own sequence is meaningful."""
    report = ReplayReport(commands=rederive(intake, fresh, progress))
    expected = _per_sku(decisions_of(fresh))
    actual = _per_sku(decisions_of(live))
    report.live = sum(map(len, actual.values()))
    report.rederived = sum(map(len, expected.values()))
    report.mismatched_skus = sorted(
        sku for sku in expected.keys() | actual.keys() if expected.get(sku) != actual.get(sku)
    )
    return report


def _per_sku(decisions: list[Decision]) -> dict[str, list[Decision]]:
    grouped: dict[str, list[Decision]] = {}
    for decision in decisions:
        grouped.setdefault(decision.sku, []).append(decision)
    return grouped


def as_json(value: Any) -> str:
    return json.dumps(value, default=str, indent=2)
