"""All open backorders, across SKUs."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from services.entrypoints.http.dependencies import FRESHNESS, Offset, Questions, fresh
from services.entrypoints.http.schemas import BAD_PARAMETERS, OpenBackorder

router = APIRouter(tags=["backorders"])


@router.get(
    "/backorders",
    response_model=list[OpenBackorder],
    responses={**BAD_PARAMETERS, **FRESHNESS},
    dependencies=[Depends(fresh("backorder_queue"))],
)
async def open_backorders(
    queries: Questions,
    sku: str | None = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
    offset: Offset = 0,
) -> list[dict[str, Any]]:
    """All open backorders, oldest first."""
    return await asyncio.to_thread(queries.backorders, sku, limit, offset, datetime.now(UTC))
