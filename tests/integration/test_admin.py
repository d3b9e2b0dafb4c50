"""The admin API on both real stores: a rebuild through it equals the live read models, the
runs table is shared by every process on the store, and, against the real broker, an SRE
re-drives dead letters and checks a replay through it."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from projections.runner import Live, ReadModels
from projections.store import ReadStore
from services.adapters.settings import Settings
from services.entrypoints.http import create_app
from services.operations import runs as runs_module
from services.operations.runs import OperationRuns, record_run
from tests.harness import (
    as_json,
    drained,
    isolated_settings,
    order,
    publish,
    read_topic,
    receipt,
    running,
    until,
)
from tests.integration.test_read_models import TABLE_ORDER, _allocation, _drain, _table

TOKEN = "admin-integration-token-31f0"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}


def _admin_api(models: ReadModels, database_url: str) -> TestClient:
    settings = Settings(database_url=database_url, api_token=None, admin_token=SecretStr(TOKEN))
    return TestClient(create_app(models, settings))


async def _ended(get: Any, run_id: int) -> dict[str, Any]:
    """The run once it has ended; `get(path)` answers the admin API's JSON, from a thread
    (the service may run in this event loop)."""

    def ended() -> bool:
        state: str = get(f"/admin/runs/{run_id}")["state"]
        return state != "running"

    await until(ended, what=f"run {run_id} ended", timeout=120, every=0.05)
    found: dict[str, Any] = await asyncio.to_thread(get, f"/admin/runs/{run_id}")
    return found


async def test_a_rebuild_through_the_admin_api_equals_the_live_read_models(
    database_url: str,
) -> None:
    allocation = _allocation(database_url, seed=31, inputs=200)
    models = ReadModels(ReadStore(database_url), allocation)
    _drain(models)
    live = {name: _table(models.store, name) for name in TABLE_ORDER}
    assert all(live.values()), "every table has rows to rebuild"
    client = _admin_api(models, database_url)

    started = client.post("/admin/rebuild", headers=ADMIN, json={"read_models": []})
    assert started.status_code == 202
    run = await _ended(lambda path: client.get(path, headers=ADMIN).json(), started.json()["id"])

    head = models.head()
    assert run["state"] == "done", run
    assert run["progress"] == {"done": head, "total": head}
    assert models.live() == {name: Live(generation=2, position=head) for name in models.projections}
    for name in TABLE_ORDER:
        assert _table(models.store, name) == live[name], name


async def test_the_runs_table_is_shared_by_the_read_stores_of_two_processes(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runs_module, "HEARTBEAT_SECONDS", 0.02)
    allocation = _allocation(database_url, seed=32, inputs=40)
    models = ReadModels(ReadStore(database_url), allocation)  # the API's process
    client = _admin_api(models, database_url)
    cli_store = ReadStore(database_url)  # the CLI's process: a store of its own

    def shown(path: str) -> Any:
        return client.get(path, headers=ADMIN).json()

    with record_run(cli_store, "rebuild", {"read_models": ["all"]}, exclusive=True) as cli_run:
        refused = client.post("/admin/rebuild", headers=ADMIN)
        assert refused.status_code == 409
        assert refused.json()["detail"] == {"run": cli_run.id}
        cli_run.progress(5, 50)

        def progress_seen() -> bool:
            run = shown(f"/admin/runs/{cli_run.id}")
            return bool(run["progress"] == {"done": 5, "total": 50})

        await until(progress_seen, what="the CLI's progress shown by the API", timeout=30)
        assert shown(f"/admin/runs/{cli_run.id}")["state"] == "running"
        cli_run.result = {"rebuilt": "by the CLI"}
    by_cli = shown(f"/admin/runs/{cli_run.id}")
    assert (by_cli["state"], by_cli["result"]) == ("done", {"rebuilt": "by the CLI"})

    started = client.post("/admin/rebuild", headers=ADMIN)
    assert started.status_code == 202
    assert (await _ended(shown, started.json()["id"]))["state"] == "done"
    seen_by_the_cli = OperationRuns(cli_store).latest()
    assert [(run.id, run.kind, run.state) for run in seen_by_the_cli] == [
        (started.json()["id"], "rebuild", "done"),
        (cli_run.id, "rebuild", "done"),
    ]
    cli_store.close()


@pytest.mark.kafka
async def test_an_sre_re_drives_dead_letters_and_replays_the_history_through_the_admin_api(
    kafka_bootstrap: str, database_url: str
) -> None:
    settings = isolated_settings(kafka_bootstrap, database_url, admin_token=SecretStr(TOKEN))
    topics = settings.topics
    api = f"http://127.0.0.1:{settings.http_port}"
    broken = b'{"type": "OrderPlaced", "order_id": "O-9"'  # cut short

    def shown(path: str) -> Any:  # from a thread: the service runs in this event loop
        return httpx.get(f"{api}{path}", headers=ADMIN, timeout=10).json()

    async with running(settings), httpx.AsyncClient(base_url=api, headers=ADMIN) as admin:
        await publish(
            settings,
            [
                (topics.receipts, "A", as_json(receipt("R-1", "A", 1))),
                (topics.orders, "O-1", as_json(order("O-1", [("1", "A", 2)], minutes=1))),
                (topics.orders, "O-9", broken),
            ],
        )
        await read_topic(settings, topics.dead_letters, until=lambda r: len(r) >= 1)
        await drained(settings)

        redriving = await admin.post(
            "/admin/dlq/redrive", json={"source_topic": topics.orders, "all": True}
        )
        assert redriving.status_code == 202, redriving.text
        redriven = await _ended(shown, redriving.json()["id"])
        orders = await read_topic(
            settings, topics.orders, until=lambda r: [x.key for x in r].count(b"O-9") >= 2
        )

        await drained(settings)
        replaying = await admin.post("/admin/replay")
        assert replaying.status_code == 202, replaying.text
        replayed = await _ended(shown, replaying.json()["id"])
        status = (await admin.get("/admin/replay")).json()

    assert redriven["state"] == "done", redriven
    [sent] = redriven["result"]["sent"]
    assert (sent["source_topic"], sent["key"]) == (topics.orders, "O-9")
    assert sent["error"].startswith("value is not JSON")
    assert redriven["result"]["kept"] == []
    assert redriven["progress"] == {"done": 1, "total": 1}
    again = [record for record in orders if record.key == b"O-9"][-1]
    assert again.value == broken
    assert dict(again.headers)["redriven-from"].decode().startswith(f"{topics.dead_letters}:")

    assert replayed["state"] == "done", replayed
    assert replayed["result"]["identical"] is True
    assert replayed["result"]["skus_that_differ"] == 0
    assert replayed["result"]["live_decisions"] == replayed["result"]["rederived_decisions"] > 0
    assert replayed["progress"]["done"] == replayed["progress"]["total"] > 0
    assert status["replay"]["id"] == replayed["id"]
    assert [run["id"] for run in status["runs"]] == [replayed["id"]]
