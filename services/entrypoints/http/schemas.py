"""What the API answers, as pydantic models: the OpenAPI document's schemas.

Names are the API's own (`OrderLineView`, not the contract's `events.inputs.OrderLine`) so
the document never shows two different things under one name.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field


class SkuPosition(BaseModel):
    sku: str
    available: int
    allocated: int
    backordered: int
    open_backorders: int


class Backorder(BaseModel):
    position: int = Field(description="Place in the SKU's queue; 1 = next to be filled.")
    order_id: str
    line_id: str
    customer_id: str
    priority: int
    quantity: int = Field(description="Units still owed.")
    placed_at: datetime
    age_seconds: int


class OpenBackorder(Backorder):
    sku: str


class DemandBucket(BaseModel):
    bucket_start: date
    ordered: int
    allocated: int
    backordered: int
    filled: int
    cancelled: int
    rejected: int
    received: int


class OrderLineView(BaseModel):
    """One line of an order as the read model sees it (the contract's line has no counts)."""

    line_id: str
    sku: str
    ordered: int
    allocated: int
    backordered: int
    cancelled: int
    rejected: int


class OrderView(BaseModel):
    order_id: str
    customer_id: str
    status: Literal["allocated", "partially_backordered", "backordered", "cancelled", "rejected"]
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
