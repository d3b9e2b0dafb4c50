"""What SREs do by hand: inspect a SKU or an order, re-derive decisions, handle dead letters.

Reads go straight to the event stores (one SKU's or one order's events, never a scan of the
whole log); the dead-letter commands talk to Kafka.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypedDict

from eventsourcing.application import AggregateNotFoundError

from events.decisions import Decision
from services.allocation.application import Allocation
from services.allocation.domain import LineView, Policy, sku_aggregate_id
from services.intake.application import Intake
from services.intake.domain import Order, order_aggregate_id
from services.operations.replay import Progress, decisions_of, rederive


class InboundView(TypedDict):
    inbound_id: str
    quantity: int  # still expected
    expected_at: datetime


@dataclass(frozen=True)
class SkuView:
    sku: str
    received: int
    shipped: int
    on_hand: int
    available: int
    allocated: int
    backordered: int
    policy: Policy  # the one that governs its next lines
    policy_set: bool  # False: the service's default (BACKORDERS_ALLOWED), none of its own
    inbound: int
    inbounds: list[InboundView]  # the open ones, in the order they cover the queue
    queue: list[LineView]  # in fill order, each with its promised date (`eta`)


def sku_view(allocation: Allocation, sku: str, backorders_allowed: bool = True) -> SkuView | None:
    """The SKU as its aggregate holds it now; `backorders_allowed` is the service's default
    policy, shown for a SKU that has none of its own."""
    found = allocation.find_sku(sku)
    if found is None:
        return None
    inbounds = [
        InboundView(inbound_id=inbound_id, **inbound)
        for inbound_id, inbound in found.inbounds.items()
    ]
    return SkuView(
        sku=sku,
        received=found.received,
        shipped=found.shipped,
        on_hand=found.on_hand,
        available=found.available,
        allocated=found.allocated,
        backordered=found.backordered,
        policy=found.effective_policy(backorders_allowed),
        policy_set=found.policy is not None,
        inbound=found.inbound,
        inbounds=sorted(inbounds, key=lambda i: (i["expected_at"], i["inbound_id"])),
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


# How each decision moves a line's counters, by the event's name in a described history.
_LINE_MOVES: dict[str, dict[str, int]] = {
    "Sku.LineAllocated": {"allocated": 1},
    "Sku.LineBackordered": {"backordered": 1},
    "Sku.BackorderFilled": {"backordered": -1, "allocated": 1},
    "Sku.BackorderCancelled": {"backordered": -1, "cancelled": 1},
    "Sku.AllocationReleased": {"allocated": -1, "cancelled": 1},
    "Sku.LineShipped": {"allocated": -1, "shipped": 1},
    "Sku.LineRejected": {"rejected": 1},
}


def order_lines(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each line's account from an order's history (see order_history): what it holds now,
    what was shipped, and the promised date of its queued units. Folded from the decisions,
    since a SKU forgets a line once it is settled."""
    lines: dict[tuple[str, str], dict[str, Any]] = {}
    for event in history:
        kind = event["event"]
        if kind == "Sku.LinePlaced":
            lines[(event["order_id"], event["line_id"])] = {
                "line_id": event["line_id"],
                "sku": event["sku"],
                "ordered": event["ordered"],
                "allocated": 0,
                "backordered": 0,
                "shipped": 0,
                "cancelled": event["cancelled_before_placement"],
                "rejected": 0,
                "eta": None,
            }
            continue
        line = lines.get((event.get("order_id", ""), event.get("line_id", "")))
        if line is None:
            continue
        for counter, sign in _LINE_MOVES.get(kind, {}).items():
            line[counter] += sign * event["quantity"]
        if kind in {"Sku.LineBackordered", "Sku.BackorderEtaChanged"}:
            line["eta"] = event["eta"]
        if not line["backordered"]:
            line["eta"] = None
    return list(lines.values())


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
