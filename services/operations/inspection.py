"""What SREs do by hand: inspect a SKU (now, or as it was) or an order, re-derive decisions,
handle dead letters.

Reads go straight to the event stores (one SKU's or one order's events, never a scan of the
whole log); the dead-letter commands talk to Kafka.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypedDict
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.postgres import PostgresApplicationRecorder
from eventsourcing.sqlite import SQLiteApplicationRecorder
from psycopg.rows import tuple_row
from psycopg.sql import SQL, Identifier

from services.allocation.application import Allocation
from services.allocation.domain import LineView, Policy, Sku, sku_aggregate_id
from services.intake.application import Intake
from services.intake.domain import Order, order_aggregate_id


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
    return _view_of(found, backorders_allowed)


def _view_of(found: Sku, backorders_allowed: bool) -> SkuView:
    sku = found.sku
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


# --- a SKU as it was ---------------------------------------------------------------------

# The stores' integer limit (SQLite and PostgreSQL): no position can be larger.
MAX_POSITION = 2**63 - 1
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")
AS_OF_FORMS = (
    "an allocation-log position (an integer: a decision's source-position, "
    "X-Projection-Position) or an RFC 3339 time with its offset, e.g. 2026-11-25T10:00:00Z"
)


class AsOfError(ValueError):
    """A moment the service has not reached: beyond the allocation log's head, or a time
    still to come. `detail`: the moment asked for and how far the service has got."""

    def __init__(self, message: str, detail: dict[str, Any]) -> None:
        super().__init__(message)
        self.detail = detail


class NotYetError(LookupError):
    """The SKU exists now, but nothing had named it yet at the moment asked for."""


def parse_as_of(text: str) -> int | datetime:
    """An allocation-log position, or an RFC 3339 time (it must say its offset)."""
    text = text.strip()
    if re.fullmatch(r"[0-9]+", text):
        position = int(text)
        if position > MAX_POSITION:
            raise ValueError(f"position {text} is beyond any the log can have")
        return position
    if _RFC3339.fullmatch(text):
        try:
            return datetime.fromisoformat(text.upper())
        except ValueError:
            pass  # a well-formed but impossible date: said below
    raise ValueError(f"{text!r} is neither {AS_OF_FORMS}")


@dataclass(frozen=True)
class SkuAsOf:
    """A SKU rebuilt from its events as they stood at a position of the log or a moment."""

    view: SkuView
    version: int  # the SKU's last version then
    moment: datetime  # when the service had recorded that much: ages are measured at it
    position: int | None  # the position asked for, if one was
    time: datetime | None  # the time asked for, if one was

    def age_seconds(self, line: LineView) -> int:
        """How long the line had waited at that moment (from its order's business time)."""
        return max(0, int((self.moment - line["placed_at"]).total_seconds()))


def sku_view_as_of(
    allocation: Allocation,
    sku: str,
    as_of: int | datetime,
    backorders_allowed: bool = True,
    now: datetime | None = None,
) -> SkuAsOf | None:
    """The SKU as it was at an allocation-log position, or at a time: when the service
    recorded its events (their timestamps), not business time. Rebuilt from the SKU's last
    snapshot at or before that version, and its events since. None: no such SKU at all.

    Raises NotYetError if the SKU only came later, AsOfError for a position beyond the
    log's head or a time still to come. `backorders_allowed`: the service's default policy now."""
    sku_id = sku_aggregate_id(sku)
    latest = latest_version(allocation, sku_id)
    if not latest:
        return None
    if isinstance(as_of, int):
        head = allocation.recorder.max_notification_id() or 0
        if as_of > head:
            raise AsOfError(
                f"position {as_of} is beyond the allocation log's head {head}",
                {"head": head, "as_of": as_of},
            )
        version = version_at_position(allocation, sku_id, as_of)
        what = f"position {as_of}"
    else:
        if as_of.tzinfo is None:
            raise ValueError("a time must say its offset (e.g. Z for UTC)")
        now = now or datetime.now(UTC)
        if as_of > now:
            raise AsOfError(f"{as_of.isoformat()} is still to come", {"now": now, "as_of": as_of})
        version = version_recorded_by(allocation, sku_id, as_of)
        what = as_of.isoformat()
    if not version:
        raise NotYetError(f"SKU {sku!r} did not exist yet at {what}: its first event came later")
    found: Sku = allocation.repository.get(sku_id, version=version)
    assert isinstance(found, Sku)
    moment = as_of if isinstance(as_of, datetime) else _recorded_at(allocation, as_of)
    return SkuAsOf(
        view=_view_of(found, backorders_allowed),
        version=version,
        moment=moment or _event_at(allocation, sku_id, version).timestamp,
        position=as_of if isinstance(as_of, int) else None,
        time=as_of if isinstance(as_of, datetime) else None,
    )


def latest_version(allocation: Allocation, sku_id: UUID) -> int:
    """The SKU's last version; 0 if it has no events."""
    last = list(allocation.events.get(sku_id, desc=True, limit=1))
    return last[0].originator_version if last else 0


def _event_at(allocation: Allocation, sku_id: UUID, version: int) -> Any:
    [event] = allocation.events.get(sku_id, gt=version - 1, lte=version)
    return event


def version_recorded_by(allocation: Allocation, sku_id: UUID, moment: datetime) -> int:
    """The SKU's last version recorded at or before `moment` (0: none), by bisecting its
    events' timestamps: its one writer records them one after another, so they rise with
    the versions. One event read per step, never the whole history."""
    low, high = 0, latest_version(allocation, sku_id)
    while low < high:
        middle = (low + high + 1) // 2
        if _event_at(allocation, sku_id, middle).timestamp <= moment:
            low = middle
        else:
            high = middle - 1
    return low


def version_at_position(allocation: Allocation, sku_id: UUID, position: int) -> int:
    """The SKU's last version at or before `position` of the allocation log (0: none).

    The SKU's events do not carry their log positions; the store's table does, beside
    each event: one indexed query on SQLite and PostgreSQL. Any other store (in memory)
    is read from the log's start."""
    recorder = allocation.recorder
    if isinstance(recorder, SQLiteApplicationRecorder):
        with recorder.datastore.transaction(commit=False) as cursor:
            cursor.execute(
                f"SELECT MAX(originator_version) FROM {recorder.events_table_name} "
                "WHERE originator_id = ? AND rowid <= ?",
                (sku_id.hex, position),
            )
            row = cursor.fetchone()
        return int(row[0] or 0)
    if isinstance(recorder, PostgresApplicationRecorder):
        statement = SQL(
            "SELECT originator_version FROM {schema}.{table} WHERE originator_id = %s "
            "AND notification_id <= %s ORDER BY originator_version DESC LIMIT 1"
        ).format(
            schema=Identifier(recorder.datastore.schema),
            table=Identifier(recorder.events_table_name),
        )
        with (
            recorder.datastore.get_connection() as connection,
            connection.cursor(row_factory=tuple_row) as cursor,
        ):
            cursor.execute(statement, (sku_id, position))
            found: tuple[Any, ...] | None = cursor.fetchone()
        return int(found[0]) if found else 0
    version, after = 0, 0
    while after < position:
        page = recorder.select_notifications(
            start=after, limit=1000, stop=position, inclusive_of_start=False
        )
        if not page:
            break
        for notification in page:
            if notification.originator_id == sku_id:
                version = notification.originator_version
        after = page[-1].id
    return version


def _recorded_at(allocation: Allocation, position: int) -> datetime | None:
    """When the event at this position of the allocation log was recorded (None: no event
    holds it, a gap the store left)."""
    found = allocation.recorder.select_notifications(start=position, limit=1, stop=position)
    if not found:
        return None
    event: Any = allocation.mapper.to_domain_event(found[0])
    moment: datetime = event.timestamp
    return moment


def sku_history(allocation: Allocation, sku: str, up_to: int | None = None) -> Iterator[Any]:
    """The SKU's own events, oldest first; up to its version `up_to` if given."""
    yield from allocation.events.get(sku_aggregate_id(sku), lte=up_to)


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


def as_json(value: Any) -> str:
    return json.dumps(value, default=str, indent=2)
