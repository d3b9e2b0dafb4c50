"""What the API answers, as pydantic models: the OpenAPI document's schemas.

Names are the API's own (`OrderLineView`, not the contract's `events.inputs.OrderLine`) so
the document never shows two different things under one name.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field


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
