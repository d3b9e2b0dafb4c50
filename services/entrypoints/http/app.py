"""Builds the API: the routers, the token guard where it applies, one error body for all."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from projections.insight_queries import InsightQueries
from projections.queries import Queries
from projections.runner import ReadModels
from services.adapters.settings import Settings
from services.entrypoints.http.dependencies import UNAUTHORIZED, require_token
from services.entrypoints.http.routers import (
    admin,
    backorders,
    dashboard,
    docs,
    health,
    insights,
    orders,
    skus,
)

KafkaReady = Callable[[], Awaitable[Any]]


def create_app(
    models: ReadModels, settings: Settings, kafka_ready: KafkaReady | None = None
) -> FastAPI:
    """The API over one read-model store. `kafka_ready` is an async callable for /readyz."""
    app = FastAPI(
        title="fulfillment",
        description="Backorder queue with promised dates, SKU positions and policies, demand "
        "history and order status.",
        version="0.1.0",
        # Served by routers.docs instead, so that the token guards them too.
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    token = settings.api_token
    app.state.read_models = models
    app.state.queries = Queries(
        models.store, default_backorders="allow" if settings.backorders_allowed else "deny"
    )
    app.state.insights = InsightQueries(models.store)
    app.state.kafka_ready = kafka_ready
    app.state.api_token = None if token is None else token.get_secret_value().encode()

    # Without a token there is nothing to check, and the document must not claim otherwise.
    guard = [Depends(require_token)] if token is not None else []
    unauthorized = UNAUTHORIZED if token is not None else {}
    for router in (skus.router, backorders.router, orders.router, insights.router):
        app.include_router(router, dependencies=guard, responses=unauthorized)
    app.include_router(docs.router, dependencies=guard)
    app.mount(docs.ASSETS_URL, docs.assets(), name="docs-assets")  # open: no data, see docs.py
    app.include_router(dashboard.router)  # open: the page holds no data, see dashboard.py
    app.include_router(health.router)  # open: probes and scrapers carry no credentials
    admin.install(app, models, settings)  # ADMIN_TOKEN only: never open, see admin.py

    # Starlette's: routing's own 404 and 405 get the same body as ours.
    @app.exception_handler(HTTPException)
    async def _http_error(_: Request, error: HTTPException) -> JSONResponse:
        body = error.detail if isinstance(error.detail, dict) else {"error": error.detail}
        return JSONResponse(body, status_code=error.status_code, headers=error.headers)

    @app.exception_handler(RequestValidationError)
    async def _bad_request(_: Request, error: RequestValidationError) -> JSONResponse:
        detail = [
            {"where": ".".join(str(p) for p in e["loc"]), "problem": e["msg"]}
            for e in error.errors()
        ]
        return JSONResponse({"error": "bad request parameters", "detail": detail}, status_code=422)

    return app
