"""One order: its lines and status, and every decision about it."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Depends, HTTPException

from services.entrypoints.http.dependencies import FRESHNESS, Questions, fresh
from services.entrypoints.http.schemas import (
    BAD_PARAMETERS,
    OrderDecision,
    OrderView,
    not_found,
)

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
