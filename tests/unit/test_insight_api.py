"""What the insight endpoints and an order's decisions answer, over a small history on a
SQLite store (no broker): the figures a planner reads, in JSON and CSV."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import NAMESPACE_URL, uuid5

import pytest
from eventsourcing.persistence import Tracking
from fastapi.testclient import TestClient

from events.commands import (
    ExpectInbound,
    PlaceLine,
    ReceiveStock,
    SetPolicy,
    SkuCommand,
    SkuCommands,
)
from projections.runner import ReadModels
from projections.store import ReadStore
from services.adapters.settings import Settings
from services.adapters.store import application_env
from services.allocation.application import Allocation
from services.entrypoints.http import create_app

MONDAY = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
DAY = timedelta(days=1)
RANGE = {"from": "2026-11-23", "to": "2026-11-25"}


def _cause(n: int, when: datetime) -> dict[str, Any]:
    return {"causation_id": uuid5(NAMESPACE_URL, f"insight-api:{n}"), "occurred_at": when}


def _place(n: int, when: datetime, order_id: str, quantity: int) -> PlaceLine:
    return PlaceLine(
        **_cause(n, when),
        order_id=order_id,
        line_id="1",
        line_index=0,
        customer_id=f"C-{order_id}",
        priority=0,
        quantity=quantity,
    )


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> TestClient:
    """S1: 2 in stock; Monday O-1 wants 5 (2 allocated, 3 queued); Tuesday O-2 wants 2
    (queued); Wednesday 4 arrive: O-1's 3 after two days, 1 of O-2's after one; PO-1 (5)
    is expected on 2 December. S2: 10 in stock, never ordered. S3 denies backorders: O-3's 4
    are rejected."""
    url = f"sqlite:///{tmp_path_factory.mktemp('insights')}/fulfillment"
    allocation = Allocation(env=application_env(url, "allocation"))
    commands: list[tuple[str, SkuCommand]] = [
        ("S1", ReceiveStock(**_cause(1, MONDAY), receipt_id="R-1", quantity=2)),
        ("S1", _place(2, MONDAY, "O-1", 5)),
        ("S1", _place(3, MONDAY + DAY, "O-2", 2)),
        ("S1", ReceiveStock(**_cause(4, MONDAY + 2 * DAY), receipt_id="R-4", quantity=4)),
        (
            "S1",
            ExpectInbound(
                **_cause(5, MONDAY + 2 * DAY),
                inbound_id="PO-1",
                quantity=5,
                expected_at=datetime(2026, 12, 2, tzinfo=UTC),
            ),
        ),
        ("S2", ReceiveStock(**_cause(6, MONDAY), receipt_id="R-6", quantity=10)),
        ("S3", SetPolicy(**_cause(7, MONDAY), backorders="deny", limit=None, max_wait_days=None)),
        ("S3", _place(8, MONDAY + DAY, "O-3", 4)),
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
    return TestClient(create_app(models, Settings(database_url=url, api_token=None)))


def test_shortages_rank_skus_by_unmet_demand_with_their_figures(client: TestClient) -> None:
    answer = client.get("/insights/shortages", params=RANGE)
    assert answer.status_code == 200
    assert "x-projection-lag" in answer.headers
    first, second = answer.json()
    assert (first["sku"], first["unmet"], second["sku"], second["unmet"]) == ("S1", 5, "S3", 4)
    assert first["fill_rate"] == round(2 / 7, 4)
    assert first["lost"] == 0
    assert second["lost"] == second["rejected_denied"] == 4
    # 3 units waited two days, 1 unit one day (unit-weighted).
    assert first["time_to_fill_p50_seconds"] == 2 * 86_400
    assert first["time_to_fill_max_seconds"] == 2 * 86_400
    assert (first["waiting_units"], first["open_backorders"]) == (1, 1)
    assert first["days_out_of_stock"] == 3  # Monday to Wednesday: O-2 still waits
    assert (first["next_inbound_id"], first["next_inbound_quantity"]) == ("PO-1", 5)
    assert first["next_inbound_eta"] == "2026-12-02T00:00:00Z"


def test_without_a_range_the_thirty_days_ending_on_the_last_active_day_are_asked(
    client: TestClient,
) -> None:
    overview = client.get("/insights/overview").json()
    assert (overview["from"], overview["to"]) == ("2026-10-27", "2026-11-25")
    assert (overview["first_day"], overview["last_day"]) == ("2026-11-23", "2026-11-25")
    assert [s["sku"] for s in client.get("/insights/shortages").json()] == ["S1", "S3"]


def test_each_insight_answers_csv_with_its_documented_columns(client: TestClient) -> None:
    asked: list[tuple[str, dict[str, Any]]] = [
        ("/insights/shortages", RANGE),
        ("/insights/skus/S1", RANGE),
        ("/insights/slow-movers", {"days": 7}),
        ("/insights/overview", RANGE),
    ]
    for path, params in asked:
        answer = client.get(path, params={**params, "format": "csv"})
        assert answer.status_code == 200, path
        assert answer.headers["content-type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(answer.text)))
        assert rows, path
        by_accept = client.get(path, params=params, headers={"Accept": "text/csv"})
        assert by_accept.text == answer.text
    [s1, s3] = csv.DictReader(
        io.StringIO(client.get("/insights/shortages", params={**RANGE, "format": "csv"}).text)
    )
    assert (s1["sku"], s1["unmet"], s3["sku"]) == ("S1", "5", "S3")


def test_a_skus_series_shows_demand_supply_and_waits_per_bucket(client: TestClient) -> None:
    found = client.get("/insights/skus/S1", params={"from": "2026-11-23", "to": "2026-12-06"})
    assert found.status_code == 200
    body = found.json()
    days = {row["bucket_start"]: row for row in body["series"]}
    assert len(days) == 14
    monday, tuesday, wednesday = days["2026-11-23"], days["2026-11-24"], days["2026-11-25"]
    assert (monday["ordered"], monday["allocated"], monday["backordered"]) == (5, 2, 3)
    assert (tuesday["ordered"], tuesday["backordered"]) == (2, 2)
    assert (wednesday["received"], wednesday["filled"]) == (4, 4)
    assert wednesday["time_to_fill_p90_seconds"] == 2 * 86_400
    assert days["2026-12-02"]["expected"] == 5
    assert body["summary"]["ordered"] == 7
    # Without a range: its first active day to the day its inbound is expected.
    default = client.get("/insights/skus/S1").json()
    assert (default["from"], default["to"]) == ("2026-11-23", "2026-12-02")
    weeks = client.get(
        "/insights/skus/S1", params={"from": "2026-11-23", "to": "2026-12-06", "bucket": "week"}
    ).json()["series"]
    assert [(w["bucket_start"], w["ordered"], w["expected"]) for w in weeks] == [
        ("2026-11-23", 7, 0),
        ("2026-11-30", 0, 5),
    ]


def test_slow_movers_are_free_stock_without_enough_demand(client: TestClient) -> None:
    movers = client.get("/insights/slow-movers", params={"days": 7}).json()
    assert [(m["sku"], m["available"], m["ordered"], m["days_of_cover"]) for m in movers] == [
        ("S2", 10, 0, None)
    ]


def test_the_overview_says_what_waits_now(client: TestClient) -> None:
    now = client.get("/insights/overview", params=RANGE).json()["now"]
    assert (now["open_backorders"], now["units_waiting"], now["skus_short"]) == (1, 1, 1)
    assert now["oldest_backorder_age_seconds"] > 0


def test_an_orders_decisions_come_in_the_order_they_were_taken(client: TestClient) -> None:
    decisions = client.get("/orders/O-1/decisions").json()
    assert [(d["decision"], d["quantity"]) for d in decisions] == [
        ("LineAllocated", 2),
        ("LineBackordered", 3),
        ("BackorderFilled", 3),
    ]
    assert decisions[1]["queue_position"] == 1
    assert decisions[2]["remaining"] == 0
    rejected = client.get("/orders/O-3/decisions").json()
    assert [(d["decision"], d["reason"]) for d in rejected] == [
        ("LineRejected", "backorders_denied")
    ]


def test_unknown_things_are_404_and_bad_ranges_422(client: TestClient) -> None:
    assert client.get("/insights/skus/NOPE").status_code == 404
    nowhere = client.get("/insights/nowhere")  # routing's own 404: the same body
    assert (nowhere.status_code, list(nowhere.json())) == (404, ["error"])
    assert client.get("/orders/NOPE/decisions").status_code == 404
    backwards = {"from": "2026-11-25", "to": "2026-11-23"}
    for path in ("/insights/shortages", "/insights/skus/S1", "/insights/overview"):
        assert client.get(path, params=backwards).status_code == 422, path
    assert client.get("/insights/slow-movers", params={"days": 0}).status_code == 422
