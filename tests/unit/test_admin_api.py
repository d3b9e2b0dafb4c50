"""The admin API on a SQLite store (no broker): only the ADMIN_TOKEN opens it, never the read
token, and nothing without one; a rebuild answers 202 and its run goes to done; one rebuild
at a time; runs are listed latest first, and one whose process died reads interrupted."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from eventsourcing.persistence import Tracking
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import SecretStr, ValidationError

from projections.runner import REBUILD_PAGE, Live, Progress, ReadModels
from projections.store import ReadStore
from services.adapters.settings import Settings
from services.adapters.store import application_env
from services.allocation.application import Allocation
from services.entrypoints.http import create_app
from services.operations import runs as runs_module
from services.operations.runs import OperationRuns, RunInProgressError, record_run
from tests.harness import until
from tests.histories import random_history

READ_TOKEN = "read-token-4b1e"
ADMIN_TOKEN = "admin-token-9c7d-do-not-print"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
READER = {"Authorization": f"Bearer {READ_TOKEN}"}
ADMIN_ROUTES = [
    ("POST", "/admin/rebuild", None),
    ("POST", "/admin/dlq/redrive", {"all": True}),
    ("POST", "/admin/replay", None),
    ("GET", "/admin/replay", None),
    ("GET", "/admin/runs", None),
    ("GET", "/admin/runs/1", None),
]


def _url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/fulfillment"


def _allocation(tmp_path: Path, inputs: int = 0) -> Allocation:
    """Allocation's store, with a small history of orders, receipts and cancellations."""
    allocation = Allocation(env=application_env(_url(tmp_path), "allocation"))
    history = random_history(21, inputs=inputs)
    if history:
        allocation.apply_commands(history, Tracking("sku-commands-0", history[-1].position))
    return allocation


def _api(
    tmp_path: Path,
    *,
    admin_token: str | None = ADMIN_TOKEN,
    api_token: str | None = None,
    models_class: type[ReadModels] = ReadModels,
    inputs: int = 0,
) -> TestClient:
    url = _url(tmp_path)
    models = models_class(ReadStore(url), _allocation(tmp_path, inputs))
    while models.catch_up():
        pass
    settings = Settings(
        database_url=url,
        api_token=None if api_token is None else SecretStr(api_token),
        admin_token=None if admin_token is None else SecretStr(admin_token),
    )
    return TestClient(create_app(models, settings))


def _models(client: TestClient) -> ReadModels:
    app = client.app
    assert isinstance(app, FastAPI)
    models: ReadModels = app.state.read_models
    return models


def _call(client: TestClient, method: str, path: str, body: Any, headers: dict[str, str]) -> Any:
    return client.request(method, path, json=body, headers=headers)


async def _ended(client: TestClient, run_id: int) -> dict[str, Any]:
    """The run once it has ended (waited for, not slept on)."""

    def ended() -> bool:
        state: str = client.get(f"/admin/runs/{run_id}", headers=ADMIN).json()["state"]
        return state != "running"

    await until(ended, what=f"run {run_id} ended", timeout=30, every=0.05)
    found: dict[str, Any] = client.get(f"/admin/runs/{run_id}", headers=ADMIN).json()
    return found


# --- who gets in -----------------------------------------------------------------------------


def test_the_admin_token_is_a_secret_read_from_admin_token_and_may_not_be_empty(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ADMIN_TOKEN", ADMIN_TOKEN)
    settings = Settings()
    assert settings.admin_token is not None
    assert settings.admin_token.get_secret_value() == ADMIN_TOKEN
    assert ADMIN_TOKEN not in repr(settings)
    assert ADMIN_TOKEN not in settings.model_dump_json()
    monkeypatch.setenv("ADMIN_TOKEN", "")
    with pytest.raises(ValidationError, match="admin_token"):
        Settings()


@pytest.mark.parametrize("api_token", [None, READ_TOKEN], ids=["open-api", "read-token"])
def test_without_an_admin_token_the_admin_routes_answer_403_and_are_not_documented(
    tmp_path: Path, api_token: str | None
) -> None:
    client = _api(tmp_path, admin_token=None, api_token=api_token)
    for method, path, body in ADMIN_ROUTES:
        for headers in ({}, READER, ADMIN):
            answer = _call(client, method, path, body, headers)
            assert answer.status_code == 403, (path, headers)
            assert answer.json() == {"error": "admin API disabled: set ADMIN_TOKEN"}
    doc = client.get("/openapi.json", headers=READER).json()
    assert not [path for path in doc["paths"] if path.startswith("/admin")]
    assert "AdminToken" not in doc.get("components", {}).get("securitySchemes", {})


def test_only_the_admin_token_opens_the_admin_routes_and_the_read_token_never_does(
    tmp_path: Path,
) -> None:
    client = _api(tmp_path, api_token=READ_TOKEN)
    for method, path, body in ADMIN_ROUTES:
        for headers in (
            {},
            READER,
            {"Authorization": f"Bearer {ADMIN_TOKEN}x"},
            {"Authorization": f"Bearer {ADMIN_TOKEN[:-1]}"},
            {"Authorization": "Bearer "},
            {"Authorization": ADMIN_TOKEN},
            {"Authorization": f"Basic {ADMIN_TOKEN}"},
        ):
            answer = _call(client, method, path, body, headers)
            assert answer.status_code == 401, (path, headers)
            assert answer.headers["www-authenticate"] == "Bearer"
            assert answer.json() == {
                "error": "missing or wrong admin token: send Authorization: Bearer <ADMIN_TOKEN>"
            }
            assert ADMIN_TOKEN not in answer.text
    assert client.get("/admin/runs", headers=ADMIN).status_code == 200
    assert (
        client.get("/admin/runs", headers={"authorization": f"bearer {ADMIN_TOKEN}"}).json() == []
    )


def test_the_admin_token_opens_the_read_routes_only_when_it_is_the_read_token(
    tmp_path: Path,
) -> None:
    separate = _api(tmp_path / "separate", api_token=READ_TOKEN)
    assert separate.get("/backorders", headers=ADMIN).status_code == 401
    assert separate.get("/backorders", headers=READER).status_code == 200
    same = _api(tmp_path / "same", api_token=ADMIN_TOKEN)
    assert same.get("/backorders", headers=ADMIN).status_code == 200
    assert same.get("/admin/runs", headers=ADMIN).status_code == 200


def test_with_an_admin_token_the_document_shows_the_admin_routes_and_their_scheme(
    tmp_path: Path,
) -> None:
    doc = _api(tmp_path).get("/openapi.json").json()
    admin = {path: ops for path, ops in doc["paths"].items() if path.startswith("/admin")}
    assert set(admin) == {
        "/admin/rebuild",
        "/admin/dlq/redrive",
        "/admin/replay",
        "/admin/runs",
        "/admin/runs/{run_id}",
    }
    for path, operations in admin.items():
        for method, operation in operations.items():
            assert operation["tags"] == ["admin"], (path, method)
            assert operation["security"] == [{"AdminToken": []}], (path, method)
            assert "401" in operation["responses"], (path, method)
            if method == "post":
                assert {"202", "409", "422"} <= set(operation["responses"]), path
                assert "Location" in operation["responses"]["202"]["headers"], path
    scheme = doc["components"]["securitySchemes"]["AdminToken"]
    assert scheme["scheme"] == "bearer"
    assert "ADMIN_TOKEN" in scheme["description"]
    # The read routes take no token here: the document does not claim one for them.
    assert "security" not in doc["paths"]["/backorders"]["get"]


# --- runs ------------------------------------------------------------------------------------


async def test_a_rebuild_answers_202_and_its_run_progresses_to_done(tmp_path: Path) -> None:
    client = _api(tmp_path, inputs=80)
    models = _models(client)
    head = models.head()
    assert head > 100

    started = client.post("/admin/rebuild", headers=ADMIN)
    assert started.status_code == 202
    run_id = started.json()["id"]
    assert started.json() == {"id": run_id, "kind": "rebuild", "state": "running"}
    assert started.headers["location"] == f"/admin/runs/{run_id}"
    run = await _ended(client, run_id)

    assert run["state"] == "done", run
    assert run["progress"] == {"done": head, "total": head}
    assert run["request"] == {"read_models": []}
    assert run["error"] is None
    assert run["finished_at"] >= run["started_at"]
    assert (run["host"], run["pid"]) == (runs_module.HOST, os.getpid())
    every = {name: Live(generation=2, position=head) for name in models.projections}
    assert run["result"] == {
        "read_models": {name: {"generation": 2, "position": head} for name in models.projections}
    }
    assert models.live() == every


async def test_named_read_models_are_rebuilt_alone_by_name_or_alias(tmp_path: Path) -> None:
    client = _api(tmp_path, inputs=30)
    models = _models(client)
    head = models.head()
    asked = {"read_models": ["queue", "order_lines", "backorders"]}
    started = client.post("/admin/rebuild", headers=ADMIN, json=asked)
    run = await _ended(client, started.json()["id"])

    assert run["state"] == "done", run
    assert run["request"] == {"read_models": ["backorder_queue", "order_lines"]}
    assert set(run["result"]["read_models"]) == {"backorder_queue", "order_lines"}
    assert run["progress"] == {"done": 2 * head, "total": 2 * head}  # two passes
    generations = {name: live.generation for name, live in models.live().items()}
    assert generations == {
        name: 2 if name in ("backorder_queue", "order_lines") else 1 for name in models.projections
    }


class HeldRebuild(ReadModels):
    """Read models whose rebuild waits until the test lets it go on."""

    def __init__(self, store: ReadStore, allocation: Allocation) -> None:
        super().__init__(store, allocation)
        self.go_on = threading.Event()

    def rebuild_all(
        self, progress: Progress | None = None, page: int = REBUILD_PAGE
    ) -> dict[str, Live]:
        if not self.go_on.wait(60):
            raise TimeoutError("the test never let the rebuild go on")
        return super().rebuild_all(progress, page)


async def test_a_second_rebuild_while_one_runs_is_refused_with_409(tmp_path: Path) -> None:
    client = _api(tmp_path, models_class=HeldRebuild, inputs=10)
    models = _models(client)
    assert isinstance(models, HeldRebuild)
    first = client.post("/admin/rebuild", headers=ADMIN).json()["id"]

    refused = client.post("/admin/rebuild", headers=ADMIN, json={"read_models": ["orders"]})
    assert refused.status_code == 409
    assert refused.json() == {
        "error": f"a rebuild is already running: run {first}",
        "detail": {"run": first},
    }
    assert client.get(f"/admin/runs/{first}", headers=ADMIN).json()["state"] == "running"
    # Other kinds are not held up by it.
    replay = client.post("/admin/replay", headers=ADMIN)
    assert replay.status_code == 202
    assert (await _ended(client, replay.json()["id"]))["state"] == "done"

    models.go_on.set()
    assert (await _ended(client, first))["state"] == "done"
    again = client.post("/admin/rebuild", headers=ADMIN)
    assert again.status_code == 202
    assert (await _ended(client, again.json()["id"]))["state"] == "done"


class BrokenRebuild(ReadModels):
    def rebuild_all(
        self, progress: Progress | None = None, page: int = REBUILD_PAGE
    ) -> dict[str, Live]:
        raise RuntimeError("no room for the new tables")


async def test_a_rebuild_that_fails_says_why_and_frees_its_kind(tmp_path: Path) -> None:
    client = _api(tmp_path, models_class=BrokenRebuild)
    run = await _ended(client, client.post("/admin/rebuild", headers=ADMIN).json()["id"])
    assert run["state"] == "failed"
    assert run["error"] == "RuntimeError: no room for the new tables"
    assert run["result"] is None
    assert client.post("/admin/rebuild", headers=ADMIN).status_code == 202


async def test_runs_are_listed_latest_first_and_by_kind(tmp_path: Path) -> None:
    client = _api(tmp_path)
    started = []
    for asked in (["queue"], ["orders"], ["demand"]):
        run_id = client.post("/admin/rebuild", headers=ADMIN, json={"read_models": asked}).json()
        started.append(run_id["id"])
        await _ended(client, run_id["id"])
    store = _models(client).store
    with record_run(store, "what-if") as what_if:
        pass

    listed = client.get("/admin/runs", headers=ADMIN).json()
    assert [run["id"] for run in listed] == [what_if.id, *reversed(started)]
    rebuilds = client.get("/admin/runs", headers=ADMIN, params={"kind": "rebuild"}).json()
    assert [run["id"] for run in rebuilds] == list(reversed(started))
    assert [r["request"]["read_models"] for r in rebuilds] == [
        ["demand_daily"],
        ["order_lines"],
        ["backorder_queue"],
    ]
    latest = client.get("/admin/runs", headers=ADMIN, params={"limit": 2}).json()
    assert [run["id"] for run in latest] == [what_if.id, started[-1]]
    assert client.get("/admin/runs/999", headers=ADMIN).status_code == 404


def test_requests_the_admin_routes_cannot_take_are_422(tmp_path: Path) -> None:
    client = _api(tmp_path)
    for path, body in (
        ("/admin/rebuild", {"read_models": ["queue", "nonsense"]}),
        ("/admin/rebuild", {"read_models": "queue"}),
        ("/admin/dlq/redrive", {}),
        ("/admin/dlq/redrive", {"dry_run": True}),
        ("/admin/dlq/redrive", {"offsets": ["0-12"]}),
    ):
        answer = client.post(path, headers=ADMIN, json=body)
        assert answer.status_code == 422, (path, body)
        assert answer.json()["error"] == "bad request parameters"
    for query in ({"limit": 0}, {"limit": 1001}):
        assert client.get("/admin/runs", headers=ADMIN, params=query).status_code == 422
    assert client.get("/admin/runs/0", headers=ADMIN).status_code == 422
    assert client.get("/admin/runs", headers=ADMIN).json() == []  # nothing was started


async def test_the_replay_status_shows_the_latest_run_of_each_kind(tmp_path: Path) -> None:
    client = _api(tmp_path)
    store = _models(client).store
    with record_run(store, "what-if", {"default_policy": "deny"}) as what_if:
        what_if.result = {"lines_changed": 3}
    with record_run(store, "replay") as first_replay:
        first_replay.result = {"identical": True}
    replay = client.post("/admin/replay", headers=ADMIN).json()["id"]
    assert (await _ended(client, replay))["state"] == "done"
    with record_run(store, "rebuild"):
        pass

    status = client.get("/admin/replay", headers=ADMIN).json()
    assert status["replay"]["id"] == replay
    assert status["replay"]["result"]["identical"] is True  # an empty history: nothing differs
    assert status["what_if"]["id"] == what_if.id
    assert status["what_if"]["request"] == {"default_policy": "deny"}
    assert status["what_if"]["result"] == {"lines_changed": 3}
    assert status["restore"] is None
    assert [run["id"] for run in status["runs"]] == [replay, first_replay.id, what_if.id]


# --- runs.py, as the CLI uses it -------------------------------------------------------------


@pytest.fixture
def quick_heartbeat(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runs_module, "HEARTBEAT_SECONDS", 0.02)


async def test_a_recorded_run_shows_its_progress_to_another_store_then_its_result(
    tmp_path: Path, quick_heartbeat: None
) -> None:
    url = _url(tmp_path)
    elsewhere = OperationRuns(ReadStore(url))  # another process's view of the table
    with record_run(ReadStore(url), "replay", {"workers": 1}) as run:
        run.progress(3, 10)

        def seen() -> bool:
            found = elsewhere.get(run.id)
            return found is not None and (found.done, found.total) == (3, 10)

        await until(seen, what="the progress reached the table", timeout=10, every=0.02)
        running = elsewhere.get(run.id)
        assert running is not None
        assert running.state == "running"
        run.progress(10, 10)
        run.result = {"identical": True}
    ended = elsewhere.get(run.id)
    assert ended is not None
    assert (ended.state, ended.done, ended.total) == ("done", 10, 10)
    assert ended.result == {"identical": True}
    assert ended.request == {"workers": 1}


def test_a_recorded_run_that_raises_is_failed_with_the_error_or_interrupted_by_ctrl_c(
    tmp_path: Path,
) -> None:
    store = ReadStore(_url(tmp_path))
    with pytest.raises(ValueError, match="store lost"), record_run(store, "restore") as failed:
        raise ValueError("store lost")
    with pytest.raises(KeyboardInterrupt), record_run(store, "what-if") as stopped:
        raise KeyboardInterrupt
    runs = OperationRuns(store)
    found = runs.get(failed.id)
    assert found is not None
    assert (found.state, found.error) == ("failed", "ValueError: store lost")
    found = runs.get(stopped.id)
    assert found is not None
    assert (found.state, found.error) == ("interrupted", "KeyboardInterrupt")


def test_an_exclusive_run_is_refused_while_another_of_its_kind_runs(tmp_path: Path) -> None:
    store = ReadStore(_url(tmp_path))
    with record_run(store, "restore", exclusive=True) as first:
        with (
            pytest.raises(RunInProgressError) as busy,
            record_run(store, "restore", exclusive=True),
        ):
            pytest.fail("a second exclusive restore ran")
        assert busy.value.running.id == first.id
        with record_run(store, "replay", exclusive=True):  # another kind: not held up
            pass
    with record_run(store, "restore", exclusive=True) as second:
        assert second.id > first.id


def test_a_run_left_running_by_a_killed_process_reads_interrupted_and_frees_its_kind(
    tmp_path: Path,
) -> None:
    url = _url(tmp_path)
    dies = (
        "import os, signal\n"
        "from projections.store import ReadStore\n"
        "from services.operations.runs import OperationRuns\n"
        f"run = OperationRuns(ReadStore({url!r})).begin('rebuild', exclusive=True)\n"
        "print(run.id, flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    killed = subprocess.run(
        [sys.executable, "-c", dies], capture_output=True, text=True, timeout=60, check=False
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    run_id = int(killed.stdout.splitlines()[-1])  # after the log lines

    client = _api(tmp_path)
    shown = client.get(f"/admin/runs/{run_id}", headers=ADMIN).json()
    assert shown["state"] == "interrupted"
    assert shown["finished_at"] is None
    assert shown["host"] == runs_module.HOST
    assert shown["pid"] != os.getpid()
    assert client.post("/admin/rebuild", headers=ADMIN).status_code == 202


def test_a_run_on_another_host_reads_interrupted_once_its_heartbeat_is_stale(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runs_module, "HEARTBEAT_SECONDS", 3600)  # this test moves the beat
    store = ReadStore(_url(tmp_path))
    runs = OperationRuns(store)
    run = runs.begin("dlq-redrive", exclusive=True)
    with store.transaction() as tx:
        tx.execute(
            "UPDATE operation_runs SET place = 'another-host', pid = 1 WHERE id = ?", [run.id]
        )

    def beat(seconds_ago: float) -> str:
        moment = datetime.now(UTC) - timedelta(seconds=seconds_ago)
        with store.transaction() as tx:
            tx.execute("UPDATE operation_runs SET heartbeat_at = ? WHERE id = ?", [moment, run.id])
        again = runs.get(run.id)
        assert again is not None
        return again.state

    assert beat(5) == "running"
    assert beat(runs_module.STALE_AFTER.total_seconds() + 60) == "interrupted"
    run.done({"sent": []})
    found = runs.get(run.id)
    assert found is not None
    assert found.state == "done"
