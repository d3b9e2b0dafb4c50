"""Probes and metrics: open even when API_TOKEN is set, since probes and scrapers carry no
credentials."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST

from services.adapters.metrics import exposition
from services.entrypoints.http.dependencies import Models
from services.entrypoints.http.schemas import Health, Readiness

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=Health)
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "Kafka or the store is unreachable."}},
)
async def readyz(request: Request, models: Models) -> JSONResponse:
    """Kafka and the store are reachable."""
    checks: dict[str, str] = {}
    try:
        await asyncio.wait_for(asyncio.to_thread(models.store.ping), 3)
        await asyncio.wait_for(asyncio.to_thread(models.head), 3)
        checks["store"] = "ok"
    except Exception as error:
        checks["store"] = f"unreachable: {type(error).__name__}"
    kafka_ready = request.app.state.kafka_ready
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


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {
            "description": "Prometheus text exposition format.",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        }
    },
)
async def metrics() -> Response:
    """Prometheus metrics: under `fulfillment run`, every process's (each stage's)."""
    return Response(await asyncio.to_thread(exposition), media_type=CONTENT_TYPE_LATEST)
