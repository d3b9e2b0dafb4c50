"""What the API answers, as pydantic models: the OpenAPI document's schemas.

Names are the API's own (`OrderLineView`, not the contract's `events.inputs.OrderLine`) so
the document never shows two different things under one name.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    WithJsonSchema,
    model_validator,
)

from projections.catalog import ALIASES, NAMES


class SkuPolicy(BaseModel):
    """What the SKU does with what stock cannot cover, for lines placed from now on."""

    backorders: Literal["allow", "deny", "limit"] = Field(
        description="`allow`: queue it; `deny`: reject it; `limit`: queue it while the queue "
        "holds at most `limit` units. A SKU without a policy of its own has the service's "
        "default: `allow`, or `deny` with BACKORDERS_ALLOWED=false."
    )
    limit: int | None = Field(
        ge=0, description="The most units the queue may hold (with `limit` only)."
    )
    max_wait_days: int | None = Field(
        ge=1, description="How long a backorder may wait before it expires; null: no limit."
    )


class SkuPosition(BaseModel):
    """A SKU now. Known (zeros where nothing happened) as soon as any input names it."""

    sku: str
    available: int = Field(description="On hand and not allocated.")
    allocated: int = Field(description="Held by order lines, not yet shipped.")
    backordered: int = Field(description="Owed to the queue.")
    open_backorders: int = Field(description="Lines waiting in the queue.")
    on_hand: int = Field(description="In the warehouse: received and not shipped.")
    shipped: int = Field(description="Units ever shipped.")
    inbound: int = Field(description="Units expected on the open inbounds.")
    policy: SkuPolicy


class Backorder(BaseModel):
    position: int = Field(description="Place in the SKU's queue; 1 = next to be filled.")
    order_id: str
    line_id: str
    customer_id: str
    priority: int
    quantity: int = Field(description="Units still owed.")
    placed_at: datetime
    age_seconds: int
    eta: datetime | None = Field(
        description="The promised date: when the inbound that covers the line's last queued "
        "unit is expected; null when expected supply runs out before it."
    )


class OpenBackorder(Backorder):
    sku: str


class DemandBucket(BaseModel):
    bucket_start: date
    ordered: int
    allocated: int
    backordered: int
    filled: int
    cancelled: int = Field(description="Cancelled or released; expired units included.")
    rejected: int
    received: int
    shipped: int
    expired: int = Field(description="Backorders cancelled for waiting past max_wait_days.")


class OrderLineView(BaseModel):
    """One line of an order as the read model sees it (the contract's line has no counts)."""

    line_id: str
    sku: str
    ordered: int
    allocated: int
    backordered: int
    shipped: int
    cancelled: int
    rejected: int
    eta: datetime | None = Field(
        description="The promised date of the line's queued units; null if none are queued "
        "or no inbound covers them."
    )


class OrderView(BaseModel):
    order_id: str
    customer_id: str
    status: Literal[
        "backordered",
        "partially_backordered",
        "partially_shipped",
        "allocated",
        "shipped",
        "cancelled",
        "rejected",
    ] = Field(
        description="In order of precedence: `backordered` (every outstanding unit is "
        "backordered), `partially_backordered` (some are), `partially_shipped` (something "
        "shipped, allocated units still to ship), `allocated`; with nothing outstanding: "
        "`shipped`, `cancelled`, `rejected`."
    )
    lines: list[OrderLineView]


class Problem(BaseModel):
    """Every error answer's body: what went wrong, and for some errors the particulars."""

    error: str = Field(description="What went wrong, for a person to read.")
    detail: Any = Field(
        default=None,
        description="Particulars: the bad parameters (422), or the positions involved (409, 503).",
    )


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    status: Literal["ready", "not ready"]
    checks: dict[str, str] = Field(
        description="`ok` or `unreachable: <error>` per dependency (store, kafka)."
    )


# The answers each route documents with `responses=`, beside its 200 (docs/contract.md).
Responses = dict[int | str, dict[str, Any]]

BAD_PARAMETERS: Responses = {
    422: {
        "model": Problem,
        "description": "Bad parameters: `detail` lists each one and what is wrong with it.",
    }
}


def not_found(what: str) -> Responses:
    """The 404 of a route that names one thing (a SKU, an order)."""
    return {404: {"model": Problem, "description": f"Unknown {what}."}}


class OrderDecision(BaseModel):
    """One decision about one of the order's lines, as published on `allocation-decisions`."""

    position: int = Field(description="Its position in the allocation log: decisions' order.")
    decision: Literal[
        "LineAllocated",
        "LineBackordered",
        "LineRejected",
        "BackorderFilled",
        "BackorderCancelled",
        "AllocationReleased",
        "LineShipped",
        "BackorderEtaChanged",
    ]
    line_id: str
    sku: str
    quantity: int
    occurred_at: datetime = Field(description="The business time of the input that caused it.")
    reason: str | None = Field(
        description="Rejections: `backorders_denied` or `backorder_limit`; cancellations of "
        "queued units: `cancelled` or `expired`."
    )
    eta: datetime | None = Field(description="Backorders and ETA changes: the promised date.")
    remaining: int | None = Field(
        description="Fills and cancellations: units still queued; shipments: still allocated."
    )
    queue_position: int | None = Field(description="Backorders: the place taken in the queue.")
    shipment_id: str | None


# --- insights --------------------------------------------------------------------------------


class InsightCounters(BaseModel):
    """Units, by what became of them, over a range of business days (UTC)."""

    ordered: int = Field(description="Units ordered: unconstrained demand, served or not.")
    withdrawn: int = Field(description="Cancelled before the order reached the SKU.")
    allocated: int = Field(description="Met from stock on hand when the order arrived.")
    backordered: int = Field(description="Put on the queue when the order arrived.")
    rejected: int = Field(description="Refused by the SKU's policy when the order arrived.")
    rejected_denied: int = Field(description="Rejected: the policy denies backorders.")
    rejected_limit: int = Field(description="Rejected: the queue was at its limit.")
    filled: int = Field(description="Queued units that got stock, on the day they got it.")
    expired: int = Field(description="Queued units cancelled for waiting past max_wait_days.")
    cancelled_waiting: int = Field(description="Queued units the customer cancelled.")
    released: int = Field(description="Allocated units given back by a cancellation.")
    received: int = Field(description="Stock received.")
    shipped: int = Field(description="Units shipped.")
    fill_rate: float | None = Field(
        description="allocated / (ordered − withdrawn): demand met at order time; null "
        "without demand."
    )
    backorder_rate: float | None = Field(description="backordered / (ordered − withdrawn).")
    lost: int = Field(description="Lost demand: rejected + expired + cancelled_waiting.")


class TimeToFill(BaseModel):
    """How long filled units had waited, from backordered to filled, weighted by unit."""

    time_to_fill_p50_seconds: int | None = Field(
        description="Half the units filled in the range waited at most this long; null if "
        "none was filled."
    )
    time_to_fill_p90_seconds: int | None
    time_to_fill_max_seconds: int | None


class ShortageNow(BaseModel):
    """What a SKU's queue holds now, and the supply expected next."""

    days_out_of_stock: int = Field(
        description="Days in the range on which the SKU was out of stock with demand waiting."
    )
    waiting_units: int = Field(description="Units on the queue now.")
    open_backorders: int = Field(description="Lines on the queue now.")
    oldest_backorder_age_seconds: int | None = Field(
        description="How long the oldest line on the queue has waited (business time of its "
        "order to now)."
    )
    next_inbound_id: str | None
    next_inbound_eta: datetime | None = Field(
        description="When the earliest open inbound is expected (late ones first)."
    )
    next_inbound_quantity: int | None


class ShortageRank(BaseModel):
    sku: str
    unmet: int = Field(
        description="Units stock on hand could not cover when ordered (backordered + "
        "rejected) in the range: what ranks the shortages."
    )


# Fields come base by base from the last base to the first: who and why first, then figures.
class Shortage(ShortageNow, TimeToFill, InsightCounters, ShortageRank):
    """A SKU short in the range."""


class Bucketed(BaseModel):
    bucket_start: date


class InsightBucket(TimeToFill, InsightCounters, Bucketed):
    expected: int = Field(
        description="Units the SKU's open inbounds expect in the bucket (by expected date)."
    )
    days_out_of_stock: int = Field(description="Days of the bucket the SKU was short.")


class SkuInsightSummary(ShortageNow, TimeToFill, InsightCounters):
    """The SKU over the whole range, with its queue now."""


class SkuInsight(BaseModel):
    sku: str
    start: date = Field(alias="from")
    end: date = Field(alias="to")
    bucket: Literal["day", "week"]
    summary: SkuInsightSummary
    series: list[InsightBucket]


class SlowMover(BaseModel):
    sku: str
    on_hand: int
    available: int = Field(description="Free stock: on hand and not allocated.")
    allocated: int
    ordered: int = Field(description="Units ordered in the window.")
    shipped: int = Field(description="Units shipped in the window.")
    days_of_cover: float | None = Field(
        description="Days the free stock lasts at the window's rate of demand; null: no "
        "demand in the window."
    )
    last_ordered: date | None = Field(description="The last day it was ordered, if ever.")


class OverviewNow(BaseModel):
    open_backorders: int = Field(description="Lines waiting on a queue now.")
    units_waiting: int
    skus_short: int = Field(description="SKUs out of stock with demand waiting now.")
    oldest_backorder_age_seconds: int | None


class OverviewBucket(TimeToFill, InsightCounters, Bucketed):
    """Every SKU in one bucket."""


class OverviewTotals(TimeToFill, InsightCounters):
    """Every SKU over the range."""


class Overview(BaseModel):
    start: date = Field(alias="from")
    end: date = Field(alias="to")
    bucket: Literal["day", "week"]
    first_day: date | None = Field(description="The first business day with any activity.")
    last_day: date | None = Field(description="The last business day with any activity.")
    now: OverviewNow
    totals: OverviewTotals
    series: list[OverviewBucket]


# --- explain and time travel (issue 12, points 1 and 2: an order explained, a SKU as it was) ---


class InputCause(BaseModel):
    """The input that caused a decision (or a fill)."""

    input: Literal[
        "OrderPlaced",
        "OrderCancelled",
        "StockReceived",
        "ShipmentDispatched",
        "BackorderPolicySet",
        "InboundExpected",
        "ClockTicked",
    ] = Field(description="The input's type, as on its topic.")
    event_id: UUID = Field(description="The input's `event_id`: the decision's `causation_id`.")
    occurred_at: datetime = Field(description="The input's business time.")


class ExplainedDecision(BaseModel):
    """One decision about the line, with its cause."""

    decision: Literal[
        "LineAllocated",
        "LineBackordered",
        "LineRejected",
        "BackorderFilled",
        "BackorderCancelled",
        "AllocationReleased",
        "LineShipped",
        "BackorderEtaChanged",
    ]
    quantity: int
    cause: InputCause
    recorded_at: datetime = Field(description="When the service took it.")
    queue_position: int | None = Field(description="Backorders: the place taken in the queue.")
    remaining: int | None = Field(
        description="Fills and cancellations: units still queued; shipments: still allocated."
    )
    reason: str | None = Field(
        description="Rejections: `backorders_denied` or `backorder_limit`; cancellations of "
        "queued units: `cancelled` or `expired`."
    )
    eta: datetime | None = Field(description="Backorders and ETA changes: the promised date.")
    previous_eta: datetime | None = Field(description="ETA changes: the date promised before.")
    shipment_id: str | None


class ServedLine(BaseModel):
    """A line filled while the explained one waited."""

    order_id: str
    line_id: str
    units: int
    ahead_by: Literal["priority", "order time", "arrival"] = Field(
        description="The queue's first rule that put it ahead: `priority` (a higher "
        "priority), `order time` (the same priority, an earlier order `occurred_at`), "
        "`arrival` (the same priority and order time, it reached the SKU earlier)."
    )
    priority: int
    placed_at: datetime = Field(description="Its order's business time.")
    arrival: int = Field(description="Where it reached the SKU: the intake position.")


class ReleasedUnits(BaseModel):
    order_id: str
    line_id: str
    units: int


class ServedAhead(BaseModel):
    """A receipt or a cancellation's release that filled others while the line waited."""

    cause: InputCause
    waiting: int = Field(description="Units the line still waited for when it came.")
    receipt_id: str | None = Field(description="A receipt: its id.")
    received: int | None = Field(description="A receipt: the units received.")
    released: list[ReleasedUnits] = Field(description="A cancellation: what it released.")
    served: list[ServedLine] = Field(description="Who was filled ahead of the line, in order.")
    line_got: int = Field(description="Units the line itself got from it, after them.")


class LineExplanation(BaseModel):
    """One line: its placement at its SKU, its decisions in order, and who was served
    while it waited. The placement's fields are null while the SKU has not placed it."""

    line_id: str
    sku: str
    line_index: int | None
    customer_id: str | None
    priority: int | None
    placed_at: datetime | None = Field(description="Its order's business time.")
    ordered: int | None
    cancelled_before_placement: int
    arrival: int | None = Field(
        description="Where it reached the SKU (the intake position), if it was ever queued."
    )
    decisions: list[ExplainedDecision]
    served_ahead: list[ServedAhead] = Field(
        description="Every receipt or release that filled someone else while the line "
        "waited (from its LineBackordered to its last unit filled or cancelled)."
    )


class OrderExplanation(BaseModel):
    order_id: str
    lines: list[LineExplanation]


class AsOf(BaseModel):
    """The moment a SKU is shown at."""

    position: int | None = Field(description="The allocation-log position asked for.")
    time: datetime | None = Field(description="The time asked for (when events were recorded).")
    recorded_by: datetime = Field(
        description="When the service had recorded that much: queue ages are measured at it."
    )
    sku_version: int = Field(description="The SKU's last event (version) at that moment.")


class InboundThen(BaseModel):
    inbound_id: str
    quantity: int = Field(description="Units still expected.")
    expected_at: datetime


class SkuAsOf(BaseModel):
    """A SKU as it was, rebuilt from its events."""

    sku: str
    as_of: AsOf
    available: int = Field(description="On hand and not allocated.")
    allocated: int = Field(description="Held by order lines, not yet shipped.")
    backordered: int = Field(description="Owed to the queue.")
    open_backorders: int = Field(description="Lines waiting in the queue.")
    on_hand: int = Field(description="In the warehouse: received and not shipped.")
    received: int = Field(description="Units ever received.")
    shipped: int = Field(description="Units ever shipped.")
    inbound: int = Field(description="Units expected on the open inbounds.")
    policy: SkuPolicy
    policy_set: bool = Field(
        description="false: the SKU had no policy of its own (the service's default now)."
    )
    inbounds: list[InboundThen] = Field(description="Open, in the order they cover the queue.")
    queue: list[Backorder] = Field(description="In fill order; ages as of that moment.")


# --- the admin API (issue 12, point 5: rebuild, re-drive, replay status) -----------------------


class RunProgress(BaseModel):
    done: int = Field(
        description="How far it is: a log position (rebuild, replay), letters (re-drive)."
    )
    total: int | None = Field(description="Where it ends, once known.")


class OperationRun(BaseModel):
    """A run of an operation, from the API or the CLI of any process on this store."""

    id: int
    kind: str = Field(
        description="`rebuild`, `dlq-redrive`, `replay` (started here or by the CLI); "
        "`what-if`, `restore` (the CLI)."
    )
    state: Literal["running", "done", "failed", "interrupted"] = Field(
        description="`interrupted`: its process ended (or stopped showing signs of life) "
        "before the run did; start it again."
    )
    started_at: datetime
    finished_at: datetime | None
    heartbeat_at: datetime = Field(
        description="The runner's last sign of life (every few seconds while running)."
    )
    progress: RunProgress
    request: dict[str, Any] = Field(description="What was asked.")
    result: Any = Field(description="Once done, what it did (its shape depends on the kind).")
    error: str | None = Field(description="Why it failed or was interrupted.")
    host: str = Field(description="Where it runs (ran): the runner's host name...")
    pid: int = Field(description="...and process id.")


class RunStarted(BaseModel):
    id: int = Field(description="The run's id: follow it at `GET /admin/runs/{id}`.")
    kind: str
    state: Literal["running"]


READ_MODEL_NAMES = sorted({*NAMES, *ALIASES, "all"})


def _read_model(name: str) -> str:
    """A read model's name, or an alias the CLI also takes, as its table's name."""
    if name not in READ_MODEL_NAMES:
        raise ValueError(f"unknown read model {name!r}; choose from {', '.join(sorted(NAMES))}")
    return ALIASES.get(name, name)


ReadModelName = Annotated[
    str,
    AfterValidator(_read_model),
    WithJsonSchema({"type": "string", "enum": READ_MODEL_NAMES}),
]


class RebuildRequest(BaseModel):
    model_config = ConfigDict(strict=True)

    read_models: list[ReadModelName] = Field(
        default_factory=list,
        max_length=len(READ_MODEL_NAMES),
        description="The read models to rebuild, by name or the CLI's aliases; none (or "
        "`all`): every one, in one pass over the log.",
    )


# "At least one of them", as JSON Schema states it (the validator below, as pydantic does).
SAYS_WHICH_LETTERS: list[JsonValue] = [
    {"required": ["offsets"], "properties": {"offsets": {"minItems": 1}}},
    {"required": ["source_topic"], "properties": {"source_topic": {"type": "string"}}},
    {"required": ["error_contains"], "properties": {"error_contains": {"type": "string"}}},
    {"required": ["all"], "properties": {"all": {"const": True}}},
]


class RedriveRequest(BaseModel):
    """Which dead letters to re-drive, as `fulfillment dlq redrive` takes them: letters
    that match every option given; at least one is needed."""

    # Strict: a JSON body is typed (`"dry_run": 0` is not `false`).
    model_config = ConfigDict(strict=True, json_schema_extra={"anyOf": SAYS_WHICH_LETTERS})

    offsets: list[Annotated[str, Field(pattern=r"^[0-9]{1,10}:[0-9]{1,19}$")]] = Field(
        default_factory=list,
        max_length=10_000,
        description="`PARTITION:OFFSET` of dead letters on the dead-letter topic.",
    )
    source_topic: str | None = Field(
        default=None, min_length=1, description="Only letters from this topic."
    )
    error_contains: str | None = Field(
        default=None, min_length=1, description="Only letters whose error has this."
    )
    all: bool = Field(default=False, description="Every letter that matches.")
    dry_run: bool = Field(default=False, description="Only say what would be re-driven.")

    @model_validator(mode="after")
    def _says_which(self) -> RedriveRequest:
        if not (self.offsets or self.source_topic or self.error_contains or self.all):
            raise ValueError(
                "say which letters: offsets, source_topic, error_contains or all: true"
            )
        return self


class ReplayStatus(BaseModel):
    """The history's replays: each kind's latest run, and the latest runs of all three."""

    replay: OperationRun | None = Field(
        description="The latest comparison of re-derived decisions with the live ones."
    )
    what_if: OperationRun | None = Field(description="The latest `what-if` run (the CLI).")
    restore: OperationRun | None = Field(description="The latest `restore` run (the CLI).")
    runs: list[OperationRun] = Field(description="The latest runs of the three kinds first.")
