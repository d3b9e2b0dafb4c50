"""One order: its lines and status."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Depends, HTTPException

from services.entrypoints.http.dependencies import FRESHNESS, Questions, fresh
from services.entrypoints.http.schemas import BAD_PARAMETERS, OrderView, not_found

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
