"""The HTTP API's freshness rules and what its OpenAPI document states, on a SQLite store
(no broker): `?min_position` beyond the log's head is answered at once, one the log holds
is waited for, boundedly."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from projections.runner import ReadModels
from projections.store import ReadStore
from services.adapters.settings import Settings
from services.adapters.store import application_env
from services.allocation.application import Allocation
from services.entrypoints.http import create_app, dependencies

FRESH_PATHS = ["/skus/S", "/skus/S/backorders", "/skus/S/demand", "/backorders", "/orders/O"]


class LogAhead(ReadModels):
    """Read models whose log has decisions they have not applied yet."""

    def head(self) -> int:
        return 10


def _client(
    tmp_path: Path, models_class: type[ReadModels] = ReadModels, **settings: Any
) -> TestClient:
    url = f"sqlite:///{tmp_path}/fulfillment"
    allocation = Allocation(env=application_env(url, "allocation"))
    models = models_class(ReadStore(url), allocation)
    return TestClient(create_app(models, Settings(database_url=url, **settings)))


def test_a_position_beyond_the_logs_head_is_answered_at_once(tmp_path: Path) -> None:
    client = _client(tmp_path, api_token=None)
    for path in FRESH_PATHS:
        started = time.monotonic()
        answer = client.get(path, params={"min_position": 1})  # the log is empty: head 0
        elapsed = time.monotonic() - started
        assert answer.status_code == 409, path
        assert answer.json()["detail"] == {"head": 0, "min_position": 1}
        assert elapsed < 1, f"{path} waited {elapsed:.1f} s for a position no decision has"


def test_a_position_the_log_holds_is_waited_for_then_503_with_retry_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dependencies, "MAX_WAIT_SECONDS", 0.3)
    client = _client(tmp_path, LogAhead, api_token=None)
    started = time.monotonic()
    answer = client.get("/skus/S", params={"min_position": 5})
    assert time.monotonic() - started >= 0.3  # it did wait
    assert answer.status_code == 503
    assert answer.headers["retry-after"] == "1"
    assert answer.json()["detail"] == {"position": 0, "min_position": 5}


def test_every_answer_says_how_fresh_it_is(tmp_path: Path) -> None:
    client = _client(tmp_path, LogAhead, api_token=None)
    answer = client.get("/backorders", params={"min_position": 0})
    assert answer.status_code == 200
    assert answer.headers["x-projection-position"] == "0"
    assert answer.headers["x-projection-lag"] == "10"
    assert client.get("/backorders", params={"min_position": -1}).status_code == 422


def test_the_openapi_document_states_every_answer(tmp_path: Path) -> None:
    doc = _client(tmp_path, api_token=None).get("/openapi.json").json()
    paths = doc["paths"]
    for path in FRESH_PATHS:
        template = path.replace("/S", "/{sku}").replace("/O", "/{order_id}")
        responses = paths[template]["get"]["responses"]
        assert {"200", "409", "422", "503"} <= set(responses), template
        assert "Retry-After" in responses["503"]["headers"]
        assert "X-Projection-Lag" in responses["200"]["headers"]
        assert responses["422"]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/Problem"
        }
        assert "401" not in responses  # no token configured: none is asked for
    for path in ("/skus/{sku}", "/orders/{order_id}"):
        assert "404" in paths[path]["get"]["responses"]
    assert "text/csv" in paths["/skus/{sku}/demand"]["get"]["responses"]["200"]["content"]
    assert list(paths["/metrics"]["get"]["responses"]["200"]["content"]) == ["text/plain"]
    assert "OrderLineView" in doc["components"]["schemas"]
    assert "securitySchemes" not in doc.get("components", {})


def test_with_a_token_the_document_states_the_401_on_the_guarded_endpoints(
    tmp_path: Path,
) -> None:
    token = "unit-test-token"
    client = _client(tmp_path, api_token=SecretStr(token))
    doc = client.get("/openapi.json", headers={"Authorization": f"Bearer {token}"}).json()
    for path, operations in doc["paths"].items():
        guarded = path not in {"/healthz", "/readyz", "/metrics"}
        assert ("401" in operations["get"]["responses"]) == guarded, path
        assert ("security" in operations["get"]) == guarded, path
    assert doc["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
