"""The HTTP API's freshness rules and what its OpenAPI document states, on a SQLite store
(no broker): `?min_position` beyond the log's head is answered at once, one the log holds
is waited for, boundedly."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import NAMESPACE_URL, uuid5

import pytest
from eventsourcing.persistence import Tracking
from fastapi.testclient import TestClient
from pydantic import SecretStr

from events.commands import (
    ExpectInbound,
    PlaceLine,
    ReceiveStock,
    SetPolicy,
    ShipLine,
    SkuCommand,
    SkuCommands,
)
from events.commands import ShipmentSource as CommandSource
from projections.runner import ReadModels
from projections.store import ReadStore
from services.adapters.settings import Settings
from services.adapters.store import application_env
from services.allocation.application import Allocation
from services.entrypoints.http import create_app, dependencies

FRESH_PATHS = [
    "/skus/S",
    "/skus/S/backorders",
    "/skus/S/demand",
    "/backorders",
    "/orders/O",
    "/orders/O/explain",
]


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


# --- what the API answers, version 2 -------------------------------------------------------

T0 = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)


def _cause(n: int) -> dict[str, Any]:
    return {"causation_id": uuid5(NAMESPACE_URL, f"api:{n}"), "occurred_at": T0}


def _place(n: int, order_id: str, quantity: int) -> PlaceLine:
    return PlaceLine(
        **_cause(n),
        order_id=order_id,
        line_id="1",
        line_index=0,
        customer_id="C-1",
        priority=0,
        quantity=quantity,
    )


def _seeded(tmp_path: Path, **settings: Any) -> TestClient:
    """S: stock 4; O-1 takes 2 and ships them; O-2 takes 2, ships 1, waits for 3 more,
    promised by PO-1 (5 units, 4 days on). P: only a policy names it. Q: a receipt, no
    policy."""
    url = f"sqlite:///{tmp_path}/fulfillment"
    allocation = Allocation(env=application_env(url, "allocation"))
    shipped_from = CommandSource(topic="shipments", partition=0, offset=0)

    def ship(n: int, order_id: str, quantity: int) -> ShipLine:
        return ShipLine(
            **_cause(n),
            shipment_id=f"SH-{n}",
            order_id=order_id,
            line_id="1",
            quantity=quantity,
            source=shipped_from,
        )

    commands: list[tuple[str, SkuCommand]] = [
        ("S", ReceiveStock(**_cause(1), receipt_id="R-1", quantity=4)),
        ("S", _place(2, "O-1", 2)),
        ("S", ship(3, "O-1", 2)),
        ("S", ExpectInbound(**_cause(4), inbound_id="PO-1", quantity=5, expected_at=IN_4_DAYS)),
        ("S", _place(5, "O-2", 5)),
        ("S", ship(6, "O-2", 1)),
        ("S", SetPolicy(**_cause(7), backorders="allow", limit=None, max_wait_days=30)),
        ("P", SetPolicy(**_cause(8), backorders="limit", limit=7, max_wait_days=None)),
        ("Q", ReceiveStock(**_cause(9), receipt_id="R-9", quantity=1)),
    ]
    allocation.apply_commands(
        [
            SkuCommands(sku=sku, position=n * 1000, commands=[command])
            for n, (sku, command) in enumerate(commands, start=1)
        ],
        Tracking("sku-commands-0", len(commands) * 1000),
    )
    models = ReadModels(ReadStore(url), allocation)
    while models.catch_up():
        pass
    return TestClient(create_app(models, Settings(database_url=url, api_token=None, **settings)))


IN_4_DAYS = T0 + timedelta(days=4)


def test_a_sku_answers_its_stock_shipments_expected_supply_and_policy(tmp_path: Path) -> None:
    client = _seeded(tmp_path)

    assert client.get("/skus/S").json() == {
        "sku": "S",
        "available": 0,
        "allocated": 1,
        "backordered": 3,
        "open_backorders": 1,
        "on_hand": 1,
        "shipped": 3,
        "inbound": 5,
        "policy": {"backorders": "allow", "limit": None, "max_wait_days": 30},
    }


def test_a_sku_only_a_policy_names_is_known_with_zeros_and_one_nobody_named_is_not(
    tmp_path: Path,
) -> None:
    client = _seeded(tmp_path)

    known = client.get("/skus/P")
    assert known.status_code == 200
    assert known.json() == {
        "sku": "P",
        **dict.fromkeys(
            (
                "available",
                "allocated",
                "backordered",
                "open_backorders",
                "on_hand",
                "shipped",
                "inbound",
            ),
            0,
        ),
        "policy": {"backorders": "limit", "limit": 7, "max_wait_days": None},
    }
    assert client.get("/skus/P/backorders").json() == []
    assert client.get("/skus/P/demand").json() == []
    for path in ("/skus/NOBODY", "/skus/NOBODY/backorders", "/skus/NOBODY/demand"):
        answer = client.get(path)
        assert answer.status_code == 404, path
        assert answer.json() == {"error": "unknown SKU 'NOBODY'"}


def test_a_sku_without_a_policy_of_its_own_shows_the_services_default(tmp_path: Path) -> None:
    no_limits = {"limit": None, "max_wait_days": None}
    allowing = _seeded(tmp_path / "allowing")
    denying = _seeded(tmp_path / "denying", backorders_allowed=False)

    assert allowing.get("/skus/Q").json()["policy"] == {"backorders": "allow", **no_limits}
    assert denying.get("/skus/Q").json()["policy"] == {"backorders": "deny", **no_limits}
    assert denying.get("/skus/P").json()["policy"]["backorders"] == "limit"  # its own


def test_queue_rows_answer_their_promised_date(tmp_path: Path) -> None:
    client = _seeded(tmp_path)

    [queued] = client.get("/skus/S/backorders").json()
    assert (queued["order_id"], queued["quantity"], queued["eta"]) == (
        "O-2",
        3,
        "2026-11-29T10:00:00Z",
    )
    [open_one] = client.get("/backorders", params={"sku": "S"}).json()
    assert (open_one["sku"], open_one["eta"]) == ("S", "2026-11-29T10:00:00Z")


def test_an_order_answers_shipped_units_promised_dates_and_the_new_statuses(
    tmp_path: Path,
) -> None:
    client = _seeded(tmp_path)

    shipped = client.get("/orders/O-1").json()
    assert shipped["status"] == "shipped"
    assert shipped["lines"] == [
        {
            "line_id": "1",
            "sku": "S",
            "ordered": 2,
            "allocated": 0,
            "backordered": 0,
            "shipped": 2,
            "cancelled": 0,
            "rejected": 0,
            "eta": None,
        }
    ]
    waiting = client.get("/orders/O-2").json()
    assert waiting["status"] == "partially_backordered"
    [line] = waiting["lines"]
    assert (line["allocated"], line["backordered"], line["shipped"], line["eta"]) == (
        1,
        3,
        1,
        "2026-11-29T10:00:00Z",
    )


def test_demand_buckets_answer_shipped_and_expired_in_json_and_csv(tmp_path: Path) -> None:
    client = _seeded(tmp_path)

    [bucket] = client.get("/skus/S/demand").json()
    assert (bucket["shipped"], bucket["expired"], bucket["received"]) == (3, 0, 4)
    csv_rows = client.get("/skus/S/demand", params={"format": "csv"}).text.splitlines()
    assert csv_rows == [
        "bucket_start,ordered,allocated,backordered,filled,cancelled,rejected,received,"
        "shipped,expired",
        "2026-11-25,7,4,3,0,0,0,4,3,0",
    ]
