"""One SKU: its stock and backorders now, its queue in fill order, its demand history."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response

from projections.queries import Queries
from services.entrypoints.http.dependencies import (
    FRESHNESS,
    FRESHNESS_HEADERS,
    Day,
    Offset,
    Questions,
    csv_answer,
    fresh,
    wants_csv,
)
from services.entrypoints.http.schemas import (
    BAD_PARAMETERS,
    Backorder,
    DemandBucket,
    SkuPosition,
    not_found,
)

ANSWERS = {**BAD_PARAMETERS, **FRESHNESS, **not_found("SKU")}
CSV_HEADER = ",".join(DemandBucket.model_fields)

router = APIRouter(prefix="/skus", tags=["skus"])


def known_sku(queries: Queries, sku: str) -> None:
    if queries.sku(sku) is None:
        raise HTTPException(404, {"error": f"unknown SKU {sku!r}"})


@router.get(
    "/{sku}",
    response_model=SkuPosition,
    responses=ANSWERS,
    dependencies=[Depends(fresh("sku_positions"))],
)
async def sku_position(sku: str, queries: Questions) -> dict[str, Any]:
    """A SKU's stock, backorders, expected supply and policy now. A SKU is known as soon
    as a policy, an inbound, a receipt or an order line names it."""
    found = await asyncio.to_thread(queries.sku, sku)
    if found is None:
        raise HTTPException(404, {"error": f"unknown SKU {sku!r}"})
    return found


@router.get(
    "/{sku}/backorders",
    response_model=list[Backorder],
    responses=ANSWERS,
    dependencies=[Depends(fresh("backorder_queue"))],
)
async def sku_backorders(
    sku: str,
    queries: Questions,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    offset: Offset = 0,
) -> list[dict[str, Any]]:
    """The SKU's backorder queue in fill order."""
    await asyncio.to_thread(known_sku, queries, sku)
    return await asyncio.to_thread(queries.queue, sku, limit, offset, datetime.now(UTC))


@router.get(
    "/{sku}/demand",
    response_model=list[DemandBucket],
    responses={
        **ANSWERS,
        200: {
            "description": "JSON by default; CSV (these columns, one row per bucket) with "
            "`Accept: text/csv` or `?format=csv`.",
            "headers": FRESHNESS_HEADERS,
            "content": {
                "text/csv": {
                    "schema": {"type": "string"},
                    "example": f"{CSV_HEADER}\n2026-11-23,12,5,7,5,3,0,8,4,1\n",
                }
            },
        },
    },
    dependencies=[Depends(fresh("demand_daily"))],
)
async def demand(
    sku: str,
    request: Request,
    response: Response,
    queries: Questions,
    *,
    start: Annotated[Day | None, Query(alias="from")] = None,
    end: Annotated[Day | None, Query(alias="to")] = None,
    bucket: Literal["day", "week"] = "day",
    output: Annotated[Literal["json", "csv"] | None, Query(alias="format")] = None,
) -> Any:
    """Units ordered, allocated, backordered, filled, cancelled, rejected, received,
    shipped and expired (also counted in cancelled), per bucket of business time (UTC).
    CSV with `Accept: text/csv` or `?format=csv`."""
    if start and end and start > end:
        raise HTTPException(422, {"error": "'from' is after 'to'"})
    if start and end and (end - start).days > 3660:
        raise HTTPException(422, {"error": "at most ten years at a time"})
    await asyncio.to_thread(known_sku, queries, sku)
    rows = await asyncio.to_thread(queries.demand, sku, start, end, bucket)
    if not wants_csv(request, output):
        return rows
    return csv_answer(rows, DemandBucket, response)
