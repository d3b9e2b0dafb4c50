"""One order: its lines and status, and every decision about it."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException

from projections.queries import Queries
from services.allocation.application import Allocation
from services.entrypoints.http.dependencies import FRESHNESS, Models, Questions, fresh
from services.entrypoints.http.schemas import (
    BAD_PARAMETERS,
    OrderDecision,
    OrderExplanation,
    OrderView,
    not_found,
)
from services.operations.explain import explain_order, starts_after_position

router = APIRouter(tags=["orders"])


@router.get(
    "/orders/{order_id}",
    response_model=OrderView,
    responses={**BAD_PARAMETERS, **FRESHNESS, **not_found("order")},
    dependencies=[Depends(fresh("order_lines"))],
)
async def order(order_id: str, queries: Questions) -> dict[str, Any]:
    """An order's lines and status."""
    found = await asyncio.to_thread(queries.order, order_id)
    if found is None:
        raise HTTPException(404, {"error": f"unknown order {order_id!r}"})
    return found


@router.get(
    "/orders/{order_id}/decisions",
    response_model=list[OrderDecision],
    responses={**BAD_PARAMETERS, **FRESHNESS, **not_found("order")},
    dependencies=[Depends(fresh("order_decisions"))],
)
async def order_decisions(order_id: str, queries: Questions) -> list[dict[str, Any]]:
    """Every decision about the order's lines, in the order the service took them."""
    found = await asyncio.to_thread(queries.decisions, order_id)
    if not found and await asyncio.to_thread(queries.order, order_id) is None:
        raise HTTPException(404, {"error": f"unknown order {order_id!r}"})
    return found


@router.get(
    "/orders/{order_id}/explain",
    response_model=OrderExplanation,
    responses={**BAD_PARAMETERS, **FRESHNESS, **not_found("order")},
)
async def explain(
    order_id: str,
    queries: Questions,
    models: Models,
    reached: Annotated[int, Depends(fresh("order_decisions"))],
) -> dict[str, Any]:
    """Why the order's lines went as they did. For each line, its decisions in order, each
    with its cause: the input's type, event id (the decision's `causation_id`) and business
    time. And every receipt or release that filled someone else while the line waited,
    with who was served and the queue rule that put them ahead: `priority`, `order time`
    (an earlier order), `arrival` (reached the SKU earlier). Read from the SKUs' own
    events; the read models only name the order's lines and where to start reading."""
    found = await asyncio.to_thread(queries.order, order_id)
    if found is None:
        raise HTTPException(404, {"error": f"unknown order {order_id!r}"})
    lines = [(line["line_id"], line["sku"]) for line in found["lines"]]
    return await asyncio.to_thread(_explained, models.allocation, queries, order_id, lines, reached)


def _explained(
    allocation: Allocation,
    queries: Queries,
    order_id: str,
    lines: list[tuple[str, str]],
    reached: int,
) -> dict[str, Any]:
    """Each SKU is read from the order's first decision there (the log's position says
    where in its history that is), or from where the read model has read up to."""
    first: dict[str, int] = {}
    for decision in queries.decisions(order_id):  # in log order
        first.setdefault(decision["sku"], decision["position"])
    starts = starts_after_position(allocation, lines, first, reached)
    return dataclasses.asdict(explain_order(allocation, order_id, lines, starts))
