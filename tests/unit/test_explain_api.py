"""`GET /orders/{id}/explain` and `GET /skus/{sku}?as_of=` over a small history on a SQLite
store (no broker): why a line waited while a receipt went to someone else, and a SKU as it
was at a position of the allocation log or at a time the service recorded."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import NAMESPACE_URL, uuid5

import pytest
from eventsourcing.persistence import Tracking
from fastapi.testclient import TestClient
from pydantic import SecretStr

from events.commands import PlaceLine, ReceiveStock, SkuCommand, SkuCommands
from projections.runner import ReadModels
from projections.store import ReadStore
from services.adapters.settings import Settings
from services.adapters.store import application_env
from services.allocation.application import Allocation
from services.entrypoints.http import create_app

MONDAY = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
HOUR, DAY = timedelta(hours=1), timedelta(days=1)


def _event_id(n: int) -> str:
    return str(uuid5(NAMESPACE_URL, f"explain-api:{n}"))


def _cause(n: int, when: datetime) -> dict[str, Any]:
    return {"causation_id": _event_id(n), "occurred_at": when}


def _place(n: int, when: datetime, order_id: str, quantity: int, priority: int) -> PlaceLine:
    return PlaceLine(
        **_cause(n, when),
        order_id=order_id,
        line_id="1",
        line_index=0,
        customer_id=f"C-{order_id}",
        priority=priority,
        quantity=quantity,
    )


def _z(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


@dataclass
class History:
    client: TestClient
    allocation: Allocation
    url: str
    before: datetime  # recorded before the SKU's first event
    monday_position: int  # the log's head once Monday's orders were decided
    monday_recorded: datetime  # a time between Monday's decisions and Tuesday's receipt
    head: int


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> History:
    """S, no stock: Monday O-1 (priority 0) wants 3, an hour later O-2 (priority 5) wants 2;
    both wait, O-2 ahead. Tuesday 2 arrive (R-TUE): all to O-2. Wednesday 3 (R-WED): O-1."""
    url = f"sqlite:///{tmp_path_factory.mktemp('explain')}/fulfillment"
    allocation = Allocation(env=application_env(url, "allocation"))
    steps: list[SkuCommand] = [
        _place(1, MONDAY, "O-1", 3, priority=0),
        _place(2, MONDAY + HOUR, "O-2", 2, priority=5),
        ReceiveStock(**_cause(3, MONDAY + DAY), receipt_id="R-TUE", quantity=2),
        ReceiveStock(**_cause(4, MONDAY + 2 * DAY), receipt_id="R-WED", quantity=3),
    ]
    before = datetime.now(UTC)
    marks: list[tuple[int, datetime]] = []
    for n, command in enumerate(steps, start=1):
        allocation.apply_commands(
            [SkuCommands(sku="S", position=n * 1000, commands=[command])],
            Tracking("sku-commands-0", n * 1000),
        )
        marks.append((allocation.recorder.max_notification_id() or 0, datetime.now(UTC)))
    models = ReadModels(ReadStore(url), allocation)
    while models.catch_up():
        pass
    client = TestClient(create_app(models, Settings(database_url=url, api_token=None)))
    monday_position, monday_recorded = marks[1]
    return History(client, allocation, url, before, monday_position, monday_recorded, marks[-1][0])


def test_an_order_explained_names_each_decisions_cause_and_who_got_the_stock_first(
    history: History,
) -> None:
    answer = history.client.get("/orders/O-1/explain")

    assert answer.status_code == 200
    assert "x-projection-position" in answer.headers
    [line] = answer.json()["lines"]
    assert (line["line_id"], line["sku"], line["ordered"], line["priority"]) == ("1", "S", 3, 0)
    assert [
        (d["decision"], d["quantity"], d["cause"]["input"], d["cause"]["event_id"])
        for d in line["decisions"]
    ] == [
        ("LineBackordered", 3, "OrderPlaced", _event_id(1)),
        ("BackorderFilled", 3, "StockReceived", _event_id(4)),
    ]
    assert line["decisions"][0]["cause"]["occurred_at"] == "2026-11-23T09:00:00Z"
    [tuesday] = line["served_ahead"]
    assert tuesday["cause"] == {
        "input": "StockReceived",
        "event_id": _event_id(3),
        "occurred_at": "2026-11-24T09:00:00Z",
    }
    assert (tuesday["receipt_id"], tuesday["received"], tuesday["waiting"]) == ("R-TUE", 2, 3)
    assert tuesday["line_got"] == 0
    assert tuesday["served"] == [
        {
            "order_id": "O-2",
            "line_id": "1",
            "units": 2,
            "ahead_by": "priority",
            "priority": 5,
            "placed_at": "2026-11-23T10:00:00Z",
            "arrival": 2_000_000,
        }
    ]


def test_the_line_served_first_waited_for_nobody(history: History) -> None:
    [line] = history.client.get("/orders/O-2/explain").json()["lines"]

    assert [d["cause"]["input"] for d in line["decisions"]] == ["OrderPlaced", "StockReceived"]
    assert line["served_ahead"] == []


def test_an_unknown_order_cannot_be_explained(history: History) -> None:
    answer = history.client.get("/orders/NOBODY/explain")

    assert answer.status_code == 404
    assert answer.json() == {"error": "unknown order 'NOBODY'"}


def test_a_sku_as_of_a_log_position_is_as_it_was_then(history: History) -> None:
    answer = history.client.get("/skus/S", params={"as_of": history.monday_position})

    assert answer.status_code == 200
    then = answer.json()
    assert then["as_of"]["position"] == history.monday_position
    assert then["as_of"]["time"] is None
    counters = ("available", "allocated", "backordered", "open_backorders", "received")
    assert {name: then[name] for name in counters} == {
        "available": 0,
        "allocated": 0,
        "backordered": 5,
        "open_backorders": 2,
        "received": 0,
    }
    assert [(row["position"], row["order_id"], row["quantity"]) for row in then["queue"]] == [
        (1, "O-2", 2),
        (2, "O-1", 3),
    ]
    # Ages as of when the service had recorded that much, from each order's business time.
    recorded_by = datetime.fromisoformat(then["as_of"]["recorded_by"])
    assert history.before <= recorded_by <= history.monday_recorded
    o_2 = then["queue"][0]
    assert o_2["age_seconds"] == int((recorded_by - (MONDAY + HOUR)).total_seconds())


def test_a_sku_as_of_a_recorded_time_is_as_it_was_then(history: History) -> None:
    then = history.client.get("/skus/S", params={"as_of": _z(history.monday_recorded)}).json()

    assert then["as_of"]["time"] == _z(history.monday_recorded)
    assert then["as_of"]["recorded_by"] == _z(history.monday_recorded)
    assert (then["backordered"], then["open_backorders"]) == (5, 2)
    o_1 = then["queue"][1]
    assert o_1["age_seconds"] == int((history.monday_recorded - MONDAY).total_seconds())


def test_without_as_of_a_sku_is_answered_as_it_is_now_from_the_read_model(
    history: History,
) -> None:
    now = history.client.get("/skus/S").json()

    assert "as_of" not in now
    assert (now["backordered"], now["allocated"], now["on_hand"]) == (0, 5, 5)
    today = history.client.get("/skus/S", params={"as_of": history.head}).json()
    assert (today["backordered"], today["allocated"], today["received"]) == (0, 5, 5)


def test_before_the_sku_existed_the_answer_is_a_clear_404(history: History) -> None:
    answer = history.client.get("/skus/S", params={"as_of": _z(history.before)})

    assert answer.status_code == 404
    assert answer.json()["error"].startswith(
        f"SKU 'S' did not exist yet at {history.before.isoformat()}"
    )
    unknown = history.client.get("/skus/NOBODY", params={"as_of": history.head})
    assert unknown.status_code == 404
    assert unknown.json() == {"error": "unknown SKU 'NOBODY'"}


def test_a_position_beyond_the_logs_head_or_a_time_to_come_is_refused(history: History) -> None:
    beyond = history.client.get("/skus/S", params={"as_of": history.head + 1})
    assert beyond.status_code == 409
    assert beyond.json()["detail"] == {"head": history.head, "as_of": history.head + 1}

    tomorrow = _z(datetime.now(UTC) + DAY)
    to_come = history.client.get("/skus/S", params={"as_of": tomorrow})
    assert to_come.status_code == 409
    assert "still to come" in to_come.json()["error"]
    assert to_come.json()["detail"]["as_of"] == tomorrow


@pytest.mark.parametrize(
    "as_of",
    ["tuesday", "-1", "2026-11-23", "2026-11-23T09:00:00", "2026-02-30T09:00:00Z", "9" * 30],
)
def test_an_as_of_that_is_neither_a_position_nor_an_rfc_3339_time_is_a_422(
    history: History, as_of: str
) -> None:
    answer = history.client.get("/skus/S", params={"as_of": as_of})

    assert answer.status_code == 422, as_of
    [problem] = answer.json()["detail"]
    assert problem["where"] == "query.as_of"


def test_with_an_api_token_both_answers_want_it_like_every_order_and_sku_route(
    history: History,
) -> None:
    token = "explain-test-token"
    models = ReadModels(ReadStore(history.url), history.allocation)
    settings = Settings(database_url=history.url, api_token=SecretStr(token))
    guarded = TestClient(create_app(models, settings))
    asked = [("/orders/O-1/explain", {}), ("/skus/S", {"as_of": history.monday_position})]

    for path, params in asked:
        assert guarded.get(path, params=params).status_code == 401, path
        bearer = {"Authorization": f"Bearer {token}"}
        assert guarded.get(path, params=params, headers=bearer).status_code == 200, path


def test_the_document_says_what_as_of_means_and_what_an_explanation_holds(
    history: History,
) -> None:
    paths = history.client.get("/openapi.json").json()["paths"]

    [as_of] = [p for p in paths["/skus/{sku}"]["get"]["parameters"] if p["name"] == "as_of"]
    assert "recorded" in as_of["description"]
    assert "not business time" in as_of["description"]
    explain = paths["/orders/{order_id}/explain"]["get"]["responses"]
    assert explain["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/OrderExplanation"
    }
    assert {"404", "409", "422", "503"} <= set(explain)
