"""What planners ask: what is short, one SKU over time, what does not sell, the overview.

Each answers JSON, or CSV (one row per SKU or bucket) with `Accept: text/csv` or
`?format=csv`, like the demand history. Ranges are business days (UTC); without them the
30 days ending on the last day with any activity (projections/insight_queries.py).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from pydantic import BaseModel

from projections.insight_queries import InsightQueries
from services.entrypoints.http.dependencies import FRESHNESS, Day, csv_answer, fresh, wants_csv
from services.entrypoints.http.schemas import (
    BAD_PARAMETERS,
    InsightBucket,
    Overview,
    OverviewBucket,
    Responses,
    Shortage,
    SkuInsight,
    SlowMover,
    not_found,
)

router = APIRouter(prefix="/insights", tags=["insights"])

Start = Annotated[Day | None, Query(alias="from", description="First business day (UTC).")]
End = Annotated[Day | None, Query(alias="to", description="Last business day (UTC).")]
Format = Annotated[Literal["json", "csv"] | None, Query(alias="format")]
Limit = Annotated[int, Query(ge=1, le=1000, description="At most this many SKUs.")]


def insights(request: Request) -> InsightQueries:
    found: InsightQueries = request.app.state.insights
    return found


Insights = Annotated[InsightQueries, Depends(insights)]


def csv_of(model: type[BaseModel]) -> Responses:
    """The 200 of a route that also answers CSV, with these columns."""
    return {
        200: {
            "description": "JSON by default; CSV (one row each, these columns: "
            f"{', '.join(model.model_fields)}) with `Accept: text/csv` or `?format=csv`.",
            "content": {"text/csv": {"schema": {"type": "string"}}},
        }
    }


def checked(start: date | None, end: date | None) -> None:
    if start and end and start > end:
        raise HTTPException(422, {"error": "'from' is after 'to'"})
    if start and end and (end - start).days > 3660:
        raise HTTPException(422, {"error": "at most ten years at a time"})


ANSWERS = {**BAD_PARAMETERS, **FRESHNESS}


@router.get(
    "/shortages",
    response_model=list[Shortage],
    responses={**ANSWERS, **csv_of(Shortage)},
    dependencies=[Depends(fresh("insights_daily"))],
)
async def shortages(
    request: Request,
    response: Response,
    queries: Insights,
    *,
    start: Start = None,
    end: End = None,
    limit: Limit = 20,
    output: Format = None,
) -> Any:
    """SKUs ranked by unmet demand in the range (units stock could not cover when they were
    ordered), with fill rate, lost units, time to fill, what waits now and the next inbound."""
    checked(start, end)
    first, last = await asyncio.to_thread(queries.window, start, end)
    rows = await asyncio.to_thread(queries.shortages, first, last, limit, datetime.now(UTC))
    if wants_csv(request, output):
        return csv_answer(rows, Shortage, response)
    return rows


@router.get(
    "/skus/{sku}",
    response_model=SkuInsight,
    responses={**ANSWERS, **not_found("SKU"), **csv_of(InsightBucket)},
    dependencies=[Depends(fresh("insights_daily"))],
)
async def sku_insight(
    sku: str,
    request: Request,
    response: Response,
    queries: Insights,
    *,
    start: Start = None,
    end: End = None,
    bucket: Literal["day", "week"] = "day",
    output: Format = None,
) -> Any:
    """One SKU per bucket: demand and how it was met, lost, filled and how long it waited,
    supply received, shipped and expected, days out of stock; totals over the range. Without
    a range: from its first day of activity to its last (or its last expected inbound)."""
    checked(start, end)
    found = await asyncio.to_thread(queries.sku, sku, start, end, bucket, datetime.now(UTC))
    if found is None:
        raise HTTPException(404, {"error": f"unknown SKU {sku!r}"})
    if wants_csv(request, output):
        return csv_answer(found["series"], InsightBucket, response)
    return found


@router.get(
    "/slow-movers",
    response_model=list[SlowMover],
    responses={**ANSWERS, **csv_of(SlowMover)},
    dependencies=[Depends(fresh("insights_daily"))],
)
async def slow_movers(
    request: Request,
    response: Response,
    queries: Insights,
    *,
    days: Annotated[int, Query(ge=1, le=3660, description="The window, in days.")] = 30,
    end: End = None,
    limit: Limit = 50,
    output: Format = None,
) -> Any:
    """Free stock that demand would not use up in the window (carrying cost): SKUs without
    demand first, then by days of cover. The window is the `days` ending on `to` (by
    default the last day with any activity)."""
    last = end or (await asyncio.to_thread(queries.window, None, None))[1]
    rows = await asyncio.to_thread(queries.slow_movers, days, last, limit)
    if wants_csv(request, output):
        return csv_answer(rows, SlowMover, response)
    return rows


@router.get(
    "/overview",
    response_model=Overview,
    responses={**ANSWERS, **csv_of(OverviewBucket)},
    dependencies=[Depends(fresh("insights_daily"))],
)
async def overview(
    request: Request,
    response: Response,
    queries: Insights,
    *,
    start: Start = None,
    end: End = None,
    bucket: Literal["day", "week"] = "day",
    output: Format = None,
) -> Any:
    """Every SKU together: what waits now, and per bucket how demand was met, lost and
    filled (the dashboard's first page)."""
    checked(start, end)
    first, last = await asyncio.to_thread(queries.window, start, end)
    found = await asyncio.to_thread(queries.overview, first, last, bucket, datetime.now(UTC))
    if wants_csv(request, output):
        return csv_answer(found["series"], OverviewBucket, response)
    return found
