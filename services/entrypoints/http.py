"""The HTTP API over the read models (docs/contract.md, "HTTP API"); OpenAPI at /docs.

Every answer says how fresh it is: `X-Projection-Position` (the allocation log position the
read model has reached) and `X-Projection-Lag` (events it is behind). `?min_position=N`
waits, boundedly, until the read model has reached N: the `source-position` header of a
decision is such an N, so a client can read what it has just seen decided.
"""

from __future__ import annotations

import asyncio
import csv
import hmac
import io
import time
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal

from fastapi import FastAPI, HTTPException, Query, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field
from starlette.middleware.base import RequestResponseEndpoint

from projections.queries import Queries
from projections.runner import ReadModels
from services.adapters.settings import Settings

MAX_WAIT_SECONDS = 5.0
# Open even when API_TOKEN is set: probes and scrapers carry no credentials.
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


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


class OrderLine(BaseModel):
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
    lines: list[OrderLine]


class Problem(BaseModel):
    error: str
    detail: Any = None


MinPosition = Annotated[
    int | None,
    Query(ge=0, description="Wait (up to 5 s) until the read model has reached this position."),
]


def create_app(models: ReadModels, settings: Settings, kafka_ready: Any = None) -> FastAPI:
    """The API over one read-model store. `kafka_ready` is an async callable for /readyz."""
    app = FastAPI(
        title="fulfillment",
        description="Backorder queue, SKU positions, demand history and order status.",
        version="0.1.0",
        responses={404: {"model": Problem}, 422: {"model": Problem}, 503: {"model": Problem}},
    )
    queries = Queries(models.store)

    if settings.api_token is not None:
        expected = settings.api_token.get_secret_value().encode()

        @app.middleware("http")
        async def _require_token(request: Request, call_next: RequestResponseEndpoint) -> Response:
            if request.url.path not in OPEN_PATHS:
                scheme, _, token = request.headers.get("authorization", "").partition(" ")
                # Constant time: how much of a guess matches must not show in the timing.
                # Header text is latin-1 decoded: encoding it back gives the bytes as sent.
                if scheme.lower() != "bearer" or not hmac.compare_digest(
                    token.strip().encode("latin-1"), expected
                ):
                    return JSONResponse(
                        {"error": "missing or wrong API token: send Authorization: Bearer <token>"},
                        status_code=401,
                        headers={"WWW-Authenticate": "Bearer"},
                    )
            return await call_next(request)

    @app.exception_handler(HTTPException)
    async def _http_error(_: Request, error: HTTPException) -> JSONResponse:
        body = error.detail if isinstance(error.detail, dict) else {"error": error.detail}
        return JSONResponse(body, status_code=error.status_code, headers=error.headers)

    from fastapi.exceptions import RequestValidationError

    @app.exception_handler(RequestValidationError)
    async def _bad_request(_: Request, error: RequestValidationError) -> JSONResponse:
        detail = [
            {"where": ".".join(str(p) for p in e["loc"]), "problem": e["msg"]}
            for e in error.errors()
        ]
        return JSONResponse({"error": "bad request parameters", "detail": detail}, status_code=422)

    async def fresh(name: str, response: Response, min_position: int | None) -> None:
        """Waits for `min_position` if asked, then sets the freshness headers."""
        deadline = time.monotonic() + MAX_WAIT_SECONDS
        while True:
            live = await asyncio.to_thread(models.live)
            position = live[name].position
            if min_position is None or position >= min_position:
                break
            if time.monotonic() >= deadline:
                raise HTTPException(
                    503,
                    {
                        "error": f"read model {name} is at position {position}, "
                        f"not yet {min_position}; retry shortly",
                        "detail": {"position": position, "min_position": min_position},
                    },
                    headers={"Retry-After": "1"},
                )
            await asyncio.sleep(0.05)
        head = await asyncio.to_thread(models.head)
        response.headers["X-Projection-Position"] = str(position)
        response.headers["X-Projection-Lag"] = str(max(0, head - position))

    def known_sku(sku: str) -> None:
        if queries.sku(sku) is None:
            raise HTTPException(404, {"error": f"unknown SKU {sku!r}"})

    @app.get("/skus/{sku}", response_model=SkuPosition, tags=["skus"])
    async def sku_position(
        sku: str, response: Response, min_position: MinPosition = None
    ) -> dict[str, Any]:
        """A SKU's stock and backorders now."""
        await fresh("sku_positions", response, min_position)
        found = await asyncio.to_thread(queries.sku, sku)
        if found is None:
            raise HTTPException(404, {"error": f"unknown SKU {sku!r}"})
        return found

    @app.get("/skus/{sku}/backorders", response_model=list[Backorder], tags=["skus"])
    async def sku_backorders(
        sku: str,
        response: Response,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
        offset: Annotated[int, Query(ge=0)] = 0,
        min_position: MinPosition = None,
    ) -> list[dict[str, Any]]:
        """The SKU's backorder queue in fill order."""
        await fresh("backorder_queue", response, min_position)
        await asyncio.to_thread(known_sku, sku)
        return await asyncio.to_thread(queries.queue, sku, limit, offset, datetime.now(UTC))

    @app.get("/backorders", response_model=list[OpenBackorder], tags=["backorders"])
    async def open_backorders(
        response: Response,
        sku: str | None = None,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
        offset: Annotated[int, Query(ge=0)] = 0,
        min_position: MinPosition = None,
    ) -> list[dict[str, Any]]:
        """All open backorders, oldest first."""
        await fresh("backorder_queue", response, min_position)
        return await asyncio.to_thread(queries.backorders, sku, limit, offset, datetime.now(UTC))

    @app.get(
        "/skus/{sku}/demand",
        response_model=list[DemandBucket],
        tags=["skus"],
        responses={200: {"content": {"text/csv": {}}}},
    )
    async def demand(
        sku: str,
        request: Request,
        response: Response,
        start: Annotated[date | None, Query(alias="from")] = None,
        end: Annotated[date | None, Query(alias="to")] = None,
        bucket: Literal["day", "week"] = "day",
        output: Annotated[Literal["json", "csv"] | None, Query(alias="format")] = None,
        min_position: MinPosition = None,
    ) -> Any:
        """Units ordered, allocated, backordered, filled, cancelled, rejected and received,
        per bucket of business time (UTC). CSV with `Accept: text/csv` or `?format=csv`."""
        if start and end and start > end:
            raise HTTPException(422, {"error": "'from' is after 'to'"})
        if start and end and (end - start).days > 3660:
            raise HTTPException(422, {"error": "at most ten years at a time"})
        await fresh("demand_daily", response, min_position)
        await asyncio.to_thread(known_sku, sku)
        rows = await asyncio.to_thread(queries.demand, sku, start, end, bucket)
        wants_csv = output == "csv" or (
            output is None and "text/csv" in request.headers.get("accept", "")
        )
        if not wants_csv:
            return rows
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(DemandBucket.model_fields))
        writer.writeheader()
        writer.writerows(rows)
        return PlainTextResponse(
            buffer.getvalue(), media_type="text/csv", headers=dict(response.headers)
        )

    @app.get("/orders/{order_id}", response_model=OrderView, tags=["orders"])
    async def order(
        order_id: str, response: Response, min_position: MinPosition = None
    ) -> dict[str, Any]:
        """An order's lines and status."""
        await fresh("order_lines", response, min_position)
        found = await asyncio.to_thread(queries.order, order_id)
        if found is None:
            raise HTTPException(404, {"error": f"unknown order {order_id!r}"})
        return found

    @app.get("/healthz", tags=["operations"])
    async def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"])
    async def readyz() -> JSONResponse:
        """Kafka and the store are reachable."""
        checks: dict[str, str] = {}
        try:
            await asyncio.wait_for(asyncio.to_thread(models.store.ping), 3)
            await asyncio.wait_for(asyncio.to_thread(models.head), 3)
            checks["store"] = "ok"
        except Exception as error:
            checks["store"] = f"unreachable: {type(error).__name__}"
        if kafka_ready is not None:
            try:
                await asyncio.wait_for(kafka_ready(), 3)
                checks["kafka"] = "ok"
            except Exception as error:
                checks["kafka"] = f"unreachable: {type(error).__name__}"
        ready = all(value == "ok" for value in checks.values())
        return JSONResponse(
            {"status": "ready" if ready else "not ready", "checks": checks},
            status_code=200 if ready else 503,
        )

    @app.get("/metrics", tags=["operations"])
    async def metrics() -> Response:
        """Prometheus metrics."""
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app
