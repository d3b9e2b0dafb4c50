"""The admin API under /admin/: rebuild the read models, re-drive dead letters, replay the
history, and follow each of these runs. For the ADMIN_TOKEN only
(dependencies.require_admin_token); without one the routes answer 403.

A POST starts its work in a thread of this process and answers 202 with the run's id at
once. The run is a row of `operation_runs` in the read-model store
(services/operations/runs.py), so `GET /admin/runs` shows the runs of every process on the
store, the CLI's too, and a restart forgets none; one whose process died reads
`interrupted`. One run of each kind at a time: 409 while one is running, wherever."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Path, Query, Request, Response

from projections.runner import Live, ReadModels
from services.adapters.logs import get_logger
from services.adapters.settings import Settings
from services.entrypoints.bootstrap import build_intake
from services.entrypoints.http.dependencies import ADMIN_UNAUTHORIZED, require_admin_token
from services.entrypoints.http.schemas import (
    BAD_PARAMETERS,
    OperationRun,
    Problem,
    RebuildRequest,
    RedriveRequest,
    ReplayStatus,
    Responses,
    RunStarted,
    not_found,
)
from services.operations.dead_letters import Letter, redrive
from services.operations.replay import MemoryAllocation, compare_job, in_shares, merged
from services.operations.runs import OperationRuns, Run, RunInProgressError, RunStatus

log = get_logger(__name__)

REBUILD, REDRIVE, REPLAY = "rebuild", "dlq-redrive", "replay"
# The runs GET /admin/replay reports: the CLI's `replay --what-if` and `restore` record theirs.
REPLAYS = (REPLAY, "what-if", "restore")
# A replay's answer lists at most this many SKUs that differ (and says how many there are).
MISMATCHES_SHOWN = 100

STARTED: Responses = {
    202: {
        "description": "Started: follow the run at `Location` (`GET /admin/runs/{id}`).",
        "headers": {
            "Location": {
                "description": "`/admin/runs/{id}`.",
                "schema": {"type": "string"},
                "required": True,
            }
        },
    },
    409: {
        "model": Problem,
        "description": "A run of this kind is running (here, or in another process on the "
        "store): `detail.run` is its id. Retry once it has ended.",
    },
    **BAD_PARAMETERS,
}
# FastAPI's answer to a body it cannot even decode as text (text that is not JSON: a 422).
UNREADABLE_BODY: Responses = {
    400: {"model": Problem, "description": "The body cannot be decoded as text."},
}

router = APIRouter(prefix="/admin", tags=["admin"])


class AdminOperations:
    """What the admin routes work with: the read models, the settings, the runs table."""

    def __init__(self, models: ReadModels, settings: Settings) -> None:
        self.models = models
        self.settings = settings
        self.runs = OperationRuns(models.store)


def install(app: FastAPI, models: ReadModels, settings: Settings) -> None:
    """Adds the admin routes, always behind the admin guard. In the document only when
    ADMIN_TOKEN is set: without it they only answer 403, and the document must not claim a
    token that opens them."""
    token = settings.admin_token
    app.state.admin_token = None if token is None else token.get_secret_value().encode()
    app.state.admin = None if token is None else AdminOperations(models, settings)
    app.include_router(
        router,
        dependencies=[Depends(require_admin_token)],
        responses=ADMIN_UNAUTHORIZED,
        include_in_schema=token is not None,
    )


def _operations(request: Request) -> AdminOperations:
    """Set by `install` whenever the guard lets a request through."""
    found: AdminOperations = request.app.state.admin
    return found


Operations = Annotated[AdminOperations, Depends(_operations)]


# --- starting runs ---------------------------------------------------------------------------


async def _started(
    admin: AdminOperations,
    request: Request,
    response: Response,
    kind: str,
    *,
    asked: dict[str, Any],
    work: Callable[[Run], Any],
) -> dict[str, Any]:
    """Records the run (409 if one of its kind is live), then does `work` in a thread of its
    own: the answer does not wait for it, nor does shutting down (the run then reads
    interrupted)."""
    try:
        run = await asyncio.to_thread(admin.runs.begin, kind, asked, exclusive=True)
    except RunInProgressError as busy:
        raise HTTPException(
            409,
            {
                "error": f"a {kind} is already running: run {busy.running.id}",
                "detail": {"run": busy.running.id},
            },
        ) from None
    threading.Thread(
        target=_carry_out, args=(run, work), name=f"admin-{kind}-{run.id}", daemon=True
    ).start()
    # Its path as the client sees it (behind a proxy's prefix too: root_path).
    response.headers["Location"] = request.url_for("one_run", run_id=run.id).path
    return {"id": run.id, "kind": kind, "state": "running"}


def _carry_out(run: Run, work: Callable[[Run], Any]) -> None:
    try:
        with run:
            run.result = work(run)
    except Exception:  # recorded as the run's error: the row says it, the log has the trace
        log.exception("admin run failed", run=run.id, kind=run.kind)


@router.post(
    "/rebuild",
    status_code=202,
    response_model=RunStarted,
    responses={**STARTED, **UNREADABLE_BODY},
)
async def start_rebuild(
    admin: Operations,
    request: Request,
    response: Response,
    asked: RebuildRequest | None = None,
) -> dict[str, Any]:
    """Rebuild read models from the start of the allocation log into fresh tables while the
    live ones keep serving, then swap them in: as `fulfillment projections rebuild`. No
    body, or no names: every read model, in one pass."""
    names = list(dict.fromkeys((asked or RebuildRequest()).read_models))  # once each, in order
    if "all" in names:
        names = []
    models = admin.models
    return await _started(
        admin,
        request,
        response,
        REBUILD,
        asked={"read_models": names},
        work=lambda run: _rebuilt(models, names, run),
    )


def _rebuilt(models: ReadModels, names: list[str], run: Run) -> dict[str, Any]:
    """All in one pass, or the ones named one after the other (progress over all passes)."""
    if not names:
        rebuilt = models.rebuild_all(run.progress)
    else:
        rebuilt, before = {}, 0
        for index, name in enumerate(names):
            left = len(names) - index

            def progress(done: int, total: int, before: int = before, left: int = left) -> None:
                run.progress(before + done, before + total * left)

            rebuilt[name] = models.rebuild(name, progress)
            before += rebuilt[name].position
    return {"read_models": {name: _live(live) for name, live in rebuilt.items()}}


def _live(live: Live) -> dict[str, int]:
    return {"generation": live.generation, "position": live.position}


@router.post(
    "/dlq/redrive",
    status_code=202,
    response_model=RunStarted,
    responses={**STARTED, **UNREADABLE_BODY},
)
async def redrive_dead_letters(
    admin: Operations, request: Request, response: Response, asked: RedriveRequest
) -> dict[str, Any]:
    """Re-publish dead letters to their source topics, once their cause is fixed: as
    `fulfillment dlq redrive`. Safe to repeat: intake ignores what it already applied.
    Letters re-driving cannot mend are kept, each with why (the run's result)."""
    settings = admin.settings
    return await _started(
        admin,
        request,
        response,
        REDRIVE,
        asked=asked.model_dump(),
        work=lambda run: _redriven(settings, asked, run),
    )


def _selected(asked: RedriveRequest) -> Callable[[Letter], bool]:
    """The letters `asked` names, as `fulfillment dlq redrive` selects them."""
    wanted = set(asked.offsets)

    def select(letter: Letter) -> bool:
        return (
            (not wanted or f"{letter.partition}:{letter.offset}" in wanted)
            and (asked.source_topic is None or letter.letter.source_topic == asked.source_topic)
            and (asked.error_contains is None or asked.error_contains in letter.letter.error)
        )

    return select


def _redriven(settings: Settings, asked: RedriveRequest, run: Run) -> dict[str, Any]:
    done = asyncio.run(redrive(settings, select=_selected(asked), dry_run=asked.dry_run))
    run.progress(len(done.sent), len(done.sent))
    return {
        "dry_run": asked.dry_run,
        "sent": [_letter(letter) for letter in done.sent],
        "kept": [{**_letter(letter), "why": letter.why} for letter in done.kept],
    }


def _letter(letter: Letter) -> dict[str, Any]:
    return {
        "dead_letter": f"{letter.partition}:{letter.offset}",
        "source_topic": letter.letter.source_topic,
        "key": letter.letter.key,
        "error": letter.letter.error,
    }


@router.post("/replay", status_code=202, response_model=RunStarted, responses=STARTED)
async def start_replay(admin: Operations, request: Request, response: Response) -> dict[str, Any]:
    """Re-derive every decision from intake's recorded inputs, in memory, and compare them
    with the live ones, SKU by SKU, ids included: as `fulfillment replay`, in one worker
    (the API's process must keep answering). Nothing live is changed."""
    models, settings = admin.models, admin.settings
    return await _started(
        admin,
        request,
        response,
        REPLAY,
        asked={},
        work=lambda run: _replayed(models, settings, run),
    )


def _replayed(models: ReadModels, settings: Settings, run: Run) -> dict[str, Any]:
    intake = build_intake(settings)  # the API's process keeps allocation's store only
    try:
        reports = in_shares(
            lambda: (intake, models.allocation),
            MemoryAllocation(),
            compare_job,
            workers=1,
            progress=run.progress,
        )
    finally:
        intake.close()
    found = merged(reports)
    return {
        "identical": found.identical,
        "commands": found.commands,
        "live_decisions": found.live,
        "rederived_decisions": found.rederived,
        "skus_that_differ": len(found.mismatched_skus),
        "first_skus_that_differ": found.mismatched_skus[:MISMATCHES_SHOWN],
    }


# Starlette answers a method a path lacks with the methods of the path's first route only:
# /admin/replay has two routes (GET and POST), so it answers for itself.
OTHER_METHODS = ["DELETE", "OPTIONS", "PATCH", "PUT", "TRACE"]


@router.api_route("/replay", methods=OTHER_METHODS, include_in_schema=False)
async def replay_other_methods() -> None:
    raise HTTPException(405, "Method Not Allowed", headers={"Allow": "GET, HEAD, POST"})


# --- following runs --------------------------------------------------------------------------

Limit = Annotated[int, Query(ge=1, le=1000, description="At most this many runs.")]


@router.get("/runs", response_model=list[OperationRun], responses=BAD_PARAMETERS)
async def list_runs(
    admin: Operations,
    kind: Annotated[str | None, Query(max_length=64, description="Only runs of this kind.")] = None,
    limit: Limit = 50,
) -> list[dict[str, Any]]:
    """Runs, the latest first: this process's and every other's on the store, the CLI's
    included."""
    kinds = None if kind is None else [kind]
    return [_shown(found) for found in await asyncio.to_thread(admin.runs.latest, kinds, limit)]


@router.get(
    "/runs/{run_id}",
    response_model=OperationRun,
    responses={**BAD_PARAMETERS, **not_found("run")},
)
async def one_run(
    admin: Operations, run_id: Annotated[int, Path(ge=1, le=2**63 - 1)]
) -> dict[str, Any]:
    """One run: its state, progress, and once ended its result or error."""
    found = await asyncio.to_thread(admin.runs.get, run_id)
    if found is None:
        raise HTTPException(404, {"error": f"unknown run {run_id}"})
    return _shown(found)


@router.get("/replay", response_model=ReplayStatus, responses=BAD_PARAMETERS)
async def replay_status(admin: Operations, limit: Limit = 20) -> dict[str, Any]:
    """Replays of the history: the latest comparison (`replay`, from here or the CLI),
    `what-if` and `restore` (the CLI), and the latest runs of the three."""
    return await asyncio.to_thread(_replays, admin.runs, limit)


def _replays(runs: OperationRuns, limit: int) -> dict[str, Any]:
    latest = {kind: runs.latest([kind], 1) for kind in REPLAYS}
    return {
        "replay": _first(latest[REPLAY]),
        "what_if": _first(latest["what-if"]),
        "restore": _first(latest["restore"]),
        "runs": [_shown(each) for each in runs.latest(REPLAYS, limit)],
    }


def _first(found: list[RunStatus]) -> dict[str, Any] | None:
    return _shown(found[0]) if found else None


def _shown(found: RunStatus) -> dict[str, Any]:
    return {
        "id": found.id,
        "kind": found.kind,
        "state": found.state,
        "started_at": found.started_at,
        "finished_at": found.finished_at,
        "heartbeat_at": found.heartbeat_at,
        "progress": {"done": found.done, "total": found.total},
        "request": found.request,
        "result": found.result,
        "error": found.error,
        "host": found.host,
        "pid": found.pid,
    }
