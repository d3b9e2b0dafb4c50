"""One SKU: its stock and backorders now (or as they were), its queue in fill order, its
demand history."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from pydantic import AwareDatetime, BeforeValidator, Field, TypeAdapter

from projections.queries import Queries
from services.entrypoints.http.dependencies import (
    FRESHNESS,
    FRESHNESS_HEADERS,
    Day,
    Models,
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
    Problem,
    SkuAsOf,
    SkuPosition,
    not_found,
)
from services.operations import inspection
from services.operations.inspection import (
    AS_OF_FORMS,
    MAX_POSITION,
    AsOfError,
    NotYetError,
    parse_as_of,
    sku_view_as_of,
)

ANSWERS = {**BAD_PARAMETERS, **FRESHNESS, **not_found("SKU")}
CSV_HEADER = ",".join(DemandBucket.model_fields)

router = APIRouter(prefix="/skus", tags=["skus"])


def known_sku(queries: Queries, sku: str) -> None:
    if queries.sku(sku) is None:
        raise HTTPException(404, {"error": f"unknown SKU {sku!r}"})


_AS_JSON = TypeAdapter(dict[str, Any])


def _as_of(value: object) -> object:
    """`as_of` as given in the query: a position or an RFC 3339 time (see AS_OF_FORMS)."""
    return parse_as_of(value) if isinstance(value, str) else value


AsOfParameter = Annotated[
    Annotated[Annotated[int, Field(ge=0, le=MAX_POSITION)] | AwareDatetime, BeforeValidator(_as_of)]
    | None,
    Query(
        description="The SKU as it was, rebuilt from its events instead of the read model: "
        "at an allocation-log position (an integer: a decision's `source-position`, "
        "`X-Projection-Position`), or at a time (RFC 3339 with its offset, e.g. "
        "`2026-11-25T10:00:00Z`) that means when the service **recorded** the events, not "
        "business time. Queue ages are as of that moment.",
        examples=[1200, "2026-11-25T10:00:00Z"],
    ),
]


@router.get(
    "/{sku}",
    response_model=SkuPosition | SkuAsOf,
    responses={
        **ANSWERS,
        200: {
            **FRESHNESS[200],
            "description": "Without `as_of`: the SKU now, from the read model (SkuPosition). "
            "With `as_of`: the SKU as it was then, with its queue, inbounds and what it had "
            "received (SkuAsOf).",
        },
        404: {
            "model": Problem,
            "description": "Unknown SKU; with `as_of`, also a SKU nothing had named yet then.",
        },
        409: {
            "model": Problem,
            "description": "`min_position` or `as_of` is beyond what the service has "
            "recorded: a position beyond the head of the allocation log (`detail`: `head`), "
            "or a time still to come (`detail`: `now`).",
        },
        422: {
            "model": Problem,
            "description": f"Bad parameters: `detail` lists each one (`as_of`: {AS_OF_FORMS}).",
        },
    },
    dependencies=[Depends(fresh("sku_positions"))],
)
async def sku_position(
    sku: str, queries: Questions, models: Models, as_of: AsOfParameter = None
) -> Any:
    """A SKU's stock, backorders, expected supply and policy now. A SKU is known as soon
    as a policy, an inbound, a receipt or an order line names it. With `as_of`, the SKU as
    it was at that position of the allocation log or at that time (when the service
    recorded the events, not business time), rebuilt from its events."""
    if as_of is not None:
        return await _sku_then(sku, as_of, queries, models)
    found = await asyncio.to_thread(queries.sku, sku)
    if found is None:
        raise HTTPException(404, {"error": f"unknown SKU {sku!r}"})
    return found


async def _sku_then(sku: str, as_of: int | datetime, queries: Queries, models: Models) -> SkuAsOf:
    allowing = queries.default_backorders == "allow"
    try:
        then = await asyncio.to_thread(sku_view_as_of, models.allocation, sku, as_of, allowing)
    except NotYetError as error:
        raise HTTPException(404, {"error": str(error)}) from None
    except AsOfError as error:
        detail = _AS_JSON.dump_python(error.detail, mode="json")  # times as the API writes them
        raise HTTPException(409, {"error": str(error), "detail": detail}) from None
    if then is None:
        raise HTTPException(404, {"error": f"unknown SKU {sku!r}"})
    return _as_of_answer(then)


def _as_of_answer(then: inspection.SkuAsOf) -> SkuAsOf:
    view = then.view
    return SkuAsOf.model_validate(
        {
            "sku": view.sku,
            "as_of": {
                "position": then.position,
                "time": then.time,
                "recorded_by": then.moment,
                "sku_version": then.version,
            },
            "available": view.available,
            "allocated": view.allocated,
            "backordered": view.backordered,
            "open_backorders": len(view.queue),
            "on_hand": view.on_hand,
            "received": view.received,
            "shipped": view.shipped,
            "inbound": view.inbound,
            "policy": view.policy,
            "policy_set": view.policy_set,
            "inbounds": view.inbounds,
            "queue": [
                {
                    "position": position,
                    "order_id": line["order_id"],
                    "line_id": line["line_id"],
                    "customer_id": line["customer_id"],
                    "priority": line["priority"],
                    "quantity": line["backordered"],
                    "placed_at": line["placed_at"],
                    "age_seconds": then.age_seconds(line),
                    "eta": line["eta"],
                }
                for position, line in enumerate(view.queue, start=1)
            ],
        }
    )


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
