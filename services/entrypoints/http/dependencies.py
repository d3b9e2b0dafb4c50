"""What the routes share, as FastAPI dependencies: the read models and their queries, the
API and admin token checks, and freshness (`?min_position=`, the `X-Projection-*` headers)."""

from __future__ import annotations

import asyncio
import csv
import hmac
import io
import re
import time
from collections.abc import Callable, Coroutine
from datetime import date
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Query, Request, Response
from fastapi.responses import PlainTextResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, BeforeValidator

from projections.queries import Queries
from projections.runner import ReadModels
from services.entrypoints.http.schemas import Problem, Responses

MAX_WAIT_SECONDS = 5.0
POLL_SECONDS = 0.05
# The stores' integer limit: SQLite and PostgreSQL refuse a larger OFFSET (it was a 500).
MAX_OFFSET = 2**63 - 1

Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET, description="Rows to skip.")]


def _iso_day(value: object) -> object:
    """Only `YYYY-MM-DD`, as the document says (`format: date`): pydantic would also take a
    number of seconds since 1970 ("0" is 1970-01-01)."""
    if isinstance(value, str) and not ISO_DAY.fullmatch(value):
        raise ValueError("a day as YYYY-MM-DD")
    return value


ISO_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
# A business day (UTC) in a query.
Day = Annotated[date, BeforeValidator(_iso_day)]


# --- the read models -------------------------------------------------------------------------


def read_models(request: Request) -> ReadModels:
    """The read models `create_app` was given (kept on the app's state)."""
    models: ReadModels = request.app.state.read_models
    return models


def queries(request: Request) -> Queries:
    """The read models' questions over the same store."""
    found: Queries = request.app.state.queries
    return found


Models = Annotated[ReadModels, Depends(read_models)]
Questions = Annotated[Queries, Depends(queries)]


# --- the API token ---------------------------------------------------------------------------

# auto_error=False: a missing or malformed header comes back as None, so that every way of
# failing gets the same answer, ours (the error body and `WWW-Authenticate: Bearer`).
bearer = HTTPBearer(
    auto_error=False,
    description="The API_TOKEN the service was started with: `Authorization: Bearer <token>`.",
)

UNAUTHORIZED: Responses = {
    401: {
        "model": Problem,
        "description": "No token, or not the right one (only when the service has an API_TOKEN).",
        "headers": {
            "WWW-Authenticate": {
                "description": "Always `Bearer`.",
                "schema": {"type": "string"},
                "required": True,
            }
        },
    }
}


async def require_token(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> None:
    """Lets a request in only with the configured token (no token configured: everyone)."""
    expected: bytes | None = request.app.state.api_token
    if expected is None:
        return
    # Constant time: how much of a guess matches must not show in the timing. Header text is
    # latin-1 decoded: encoding it back gives the bytes as sent.
    given = b"" if credentials is None else credentials.credentials.encode("latin-1")
    if credentials is None or not hmac.compare_digest(given, expected):
        raise HTTPException(
            401,
            "missing or wrong API token: send Authorization: Bearer <token>",
            headers={"WWW-Authenticate": "Bearer"},
        )


# --- the admin token -------------------------------------------------------------------------

# A scheme of its own: the document shows which routes take which token.
admin_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="AdminToken",
    description="The ADMIN_TOKEN the service was started with: `Authorization: Bearer "
    "<token>`. The API_TOKEN does not open the /admin/ routes (unless the two are equal).",
)

ADMIN_UNAUTHORIZED: Responses = {
    401: {
        "model": Problem,
        "description": "No token, or not the ADMIN_TOKEN.",
        "headers": UNAUTHORIZED[401]["headers"],
    }
}


async def require_admin_token(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(admin_bearer)],
) -> None:
    """Lets a request in only with the ADMIN_TOKEN; without one configured, no one: the
    admin routes change the service, they are never open."""
    expected: bytes | None = getattr(request.app.state, "admin_token", None)
    if expected is None:
        raise HTTPException(403, "admin API disabled: set ADMIN_TOKEN")
    # Constant time, on the bytes as sent: as require_token.
    given = b"" if credentials is None else credentials.credentials.encode("latin-1")
    if credentials is None or not hmac.compare_digest(given, expected):
        raise HTTPException(
            401,
            "missing or wrong admin token: send Authorization: Bearer <ADMIN_TOKEN>",
            headers={"WWW-Authenticate": "Bearer"},
        )


# --- freshness -------------------------------------------------------------------------------

MinPosition = Annotated[
    int | None,
    Query(
        ge=0,
        description="Wait (up to 5 s) until the read model has reached this position of the "
        "allocation log: the `source-position` header of a decision you have seen. A position "
        "beyond the log's head is answered 409 at once.",
    ),
]

FRESHNESS_HEADERS: dict[str, dict[str, Any]] = {
    "X-Projection-Position": {
        "description": "The allocation log position the read model has reached.",
        "schema": {"type": "integer", "minimum": 0},
        "required": True,
    },
    "X-Projection-Lag": {
        "description": "How many positions the read model is behind the log's head.",
        "schema": {"type": "integer", "minimum": 0},
        "required": True,
    },
}

FRESHNESS: Responses = {
    200: {"headers": FRESHNESS_HEADERS},
    409: {
        "model": Problem,
        "description": "`min_position` is beyond the head of the allocation log: no decision "
        "has that position (yet), so waiting would not help. `detail` has both positions.",
    },
    503: {
        "model": Problem,
        "description": "The read model has not reached `min_position` within 5 s; retry "
        "shortly. `detail` has both positions.",
        "headers": {
            "Retry-After": {
                "description": "Seconds to wait before retrying.",
                "schema": {"type": "integer", "minimum": 0},
                "required": True,
            }
        },
    },
}

Freshness = Callable[[Response, ReadModels, int | None], Coroutine[Any, Any, int]]


def fresh(name: str) -> Freshness:
    """The dependency of a route served by read model `name`: waits for `min_position` if
    asked, then says how fresh the answer is; returns the position reached."""

    async def freshness(
        response: Response, models: Models, min_position: MinPosition = None
    ) -> int:
        if min_position is not None:
            # Beyond the head nothing can reach it in 5 s: say so now, hold no worker.
            head = await asyncio.to_thread(models.head)
            if min_position > head:
                raise HTTPException(
                    409,
                    {
                        "error": f"position {min_position} is beyond the allocation log's "
                        f"head {head}: no decision has it",
                        "detail": {"head": head, "min_position": min_position},
                    },
                )
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
            await asyncio.sleep(POLL_SECONDS)
        head = await asyncio.to_thread(models.head)
        response.headers["X-Projection-Position"] = str(position)
        response.headers["X-Projection-Lag"] = str(max(0, head - position))
        return position

    return freshness


# --- CSV -------------------------------------------------------------------------------------


def wants_csv(request: Request, output: str | None) -> bool:
    """`?format=csv`, or `Accept: text/csv` without a `format`."""
    return output == "csv" or (output is None and "text/csv" in request.headers.get("accept", ""))


def csv_answer(rows: list[dict[str, Any]], model: type[BaseModel], response: Response) -> Response:
    """The rows as CSV, one column per field of `model`, in its order; the headers the
    dependencies set (freshness) kept: a response returned as is does not take them."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(model.model_fields), extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return PlainTextResponse(
        buffer.getvalue(), media_type="text/csv", headers=dict(response.headers)
    )
