"""Explain an order and see a SKU as it was (issue 12, points 1 and 2), on both stores: the
whole service on the real broker, asked through its HTTP API and the CLI; and the allocation
application alone, with snapshots every few events, where a SKU rebuilt at each position of
the log from its snapshots must be its events folded up to there, and an explanation read
from the order's placement on must be the one read from the SKU's first event."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from eventsourcing.persistence import Tracking
from typer.testing import CliRunner

from events.commands import (
    CancelLine,
    ExpectInbound,
    PlaceLine,
    ReceiveStock,
    ShipLine,
    ShipmentSource,
    SkuCommand,
    SkuCommands,
)
from services.adapters.settings import Settings
from services.allocation.application import Allocation
from services.allocation.domain import Sku, sku_aggregate_id
from services.entrypoints.bootstrap import build_allocation
from services.entrypoints.cli import app
from services.operations import explain as explaining
from services.operations import inspection
from services.operations.explain import (
    explain_order,
    starts_after_position,
    starts_recorded_since,
)
from services.operations.inspection import sku_view_as_of
from tests.harness import (
    T0,
    as_json,
    cancellation,
    drained,
    environment,
    event_id,
    isolated_settings,
    order,
    publish,
    receipt,
    running,
)
from tests.unit.stories import cause_id

SKU = "TUE"


def _cli(settings: Settings, *args: str) -> tuple[int, str]:
    """The `fulfillment` CLI in this process, against the test's store; wide, so tables
    keep each row on one line."""
    env = {**environment(settings), "COLUMNS": "220"}
    result = CliRunner().invoke(app, list(args), env=env)
    return result.exit_code, result.output


def _z(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


@pytest.mark.kafka
async def test_why_a_waiting_customer_did_not_get_tuesdays_stock_through_the_api_and_the_cli(
    kafka_bootstrap: str, database_url: str
) -> None:
    settings = isolated_settings(kafka_bootstrap, database_url)
    topics = settings.topics
    waiting_id = event_id()
    tuesday = receipt("R-TUE", SKU, 4, minutes=24 * 60)
    before = datetime.now(UTC)
    async with running(settings):
        # O-1 then O-W, same priority and order time: O-1 arrives first.
        for order_id, units, eid in (("O-1", 2, None), ("O-W", 3, waiting_id)):
            placed = order(order_id, [("1", SKU, units)], eid=eid)
            await publish(settings, [(topics.orders, order_id, as_json(placed))])
            await drained(settings)
        # A more urgent order, and one placed earlier that reaches the service later.
        await publish(
            settings,
            [
                (topics.orders, "O-VIP", as_json(order("O-VIP", [("1", SKU, 1)], priority=5))),
                (topics.orders, "O-EARLY", as_json(order("O-EARLY", [("1", SKU, 1)], minutes=-60))),
            ],
        )
        await drained(settings)
        allocation = build_allocation(settings)  # kept: it closes its store when dropped
        monday = allocation.recorder.max_notification_id() or 0
        del allocation
        monday_recorded = datetime.now(UTC)
        # Tuesday's 4 units go to the three lines ahead of O-W; O-1's cancellation and
        # Wednesday's receipt fill it.
        await publish(settings, [(topics.receipts, SKU, as_json(tuesday))])
        await drained(settings)
        await publish(settings, [(topics.cancellations, "O-1", as_json(cancellation("O-1")))])
        await drained(settings)
        wednesday = receipt("R-WED", SKU, 1, minutes=2 * 24 * 60)
        await publish(settings, [(topics.receipts, SKU, as_json(wednesday))])
        await drained(settings)

        api = f"http://127.0.0.1:{settings.http_port}"
        async with httpx.AsyncClient(base_url=api, timeout=15) as client:
            explained = await client.get("/orders/O-W/explain")
            by_position = await client.get(f"/skus/{SKU}", params={"as_of": monday})
            by_time = await client.get(f"/skus/{SKU}", params={"as_of": _z(monday_recorded)})
            not_yet = await client.get(f"/skus/{SKU}", params={"as_of": _z(before)})
            now = await client.get(f"/skus/{SKU}")

    # The API: O-W's decisions and causes, and who got Tuesday's stock first, and why.
    assert explained.status_code == 200
    [line] = explained.json()["lines"]
    assert [(d["decision"], d["quantity"], d["cause"]["input"]) for d in line["decisions"]] == [
        ("LineBackordered", 3, "OrderPlaced"),
        ("BackorderFilled", 2, "OrderCancelled"),
        ("BackorderFilled", 1, "StockReceived"),
    ]
    assert line["decisions"][0]["cause"]["event_id"] == waiting_id
    assert line["decisions"][0]["cause"]["occurred_at"] == _z(T0)
    [served] = line["served_ahead"]
    assert served["cause"] == {
        "input": "StockReceived",
        "event_id": tuesday["event_id"],
        "occurred_at": _z(T0 + timedelta(days=1)),
    }
    assert (served["receipt_id"], served["waiting"], served["line_got"]) == ("R-TUE", 3, 0)
    assert [(s["order_id"], s["units"], s["ahead_by"]) for s in served["served"]] == [
        ("O-VIP", 1, "priority"),
        ("O-EARLY", 1, "order time"),
        ("O-1", 2, "arrival"),
    ]
    # The SKU on Monday evening, by position and by time; before it existed; and now.
    for then in (by_position, by_time):
        assert then.status_code == 200
        body = then.json()
        assert (body["backordered"], body["received"], body["on_hand"]) == (7, 0, 0)
        assert [row["order_id"] for row in body["queue"]] == ["O-VIP", "O-EARLY", "O-1", "O-W"]
    assert by_position.json()["as_of"]["position"] == monday
    assert not_yet.status_code == 404
    assert "did not exist yet" in not_yet.json()["error"]
    assert (now.json()["backordered"], now.json()["allocated"]) == (0, 5)

    # The CLI, against the same store with the service stopped: the same answers.
    code, output = _cli(settings, "explain", "O-W", "--json")
    assert code == 0, output
    [cli_line] = json.loads(output)["lines"]
    assert [d["decision"] for d in cli_line["decisions"]] == [
        d["decision"] for d in line["decisions"]
    ]
    assert [(s["order_id"], s["ahead_by"]) for s in cli_line["served_ahead"][0]["served"]] == [
        ("O-VIP", "priority"),
        ("O-EARLY", "order time"),
        ("O-1", "arrival"),
    ]
    code, table = _cli(settings, "explain", "O-W")
    assert code == 0, table
    for words in ("receipt R-TUE: 4 units", "O-VIP line 1", "order time", "OrderCancelled"):
        assert words in table, words
    for as_of in (str(monday), _z(monday_recorded)):
        code, output = _cli(settings, "sku", SKU, "--as-of", as_of, "--json")
        assert code == 0, output
        then_json: dict[str, Any] = json.loads(output)
        assert then_json["backordered"] == 7
        assert [row["order_id"] for row in then_json["queue"]] == [
            "O-VIP",
            "O-EARLY",
            "O-1",
            "O-W",
        ]
        assert all(row["age_seconds"] > 0 for row in then_json["queue"])
    code, table = _cli(settings, "sku", SKU, "--as-of", str(monday))
    assert code == 0, table
    assert f"as of position {monday}" in table
    assert "age then" in table
    assert _cli(settings, "sku", SKU, "--as-of", _z(before))[0] == 1
    assert _cli(settings, "sku", SKU, "--as-of", "last tuesday")[0] == 2
    assert _cli(settings, "explain", "NOBODY")[0] == 1


# --- the allocation application alone, snapshots every few events -------------------------


def _place(
    n: int, order_id: str, quantity: int, *, priority: int = 0, minutes: int = 0
) -> PlaceLine:
    return PlaceLine(
        causation_id=cause_id(n),
        occurred_at=T0 + timedelta(minutes=minutes),
        order_id=order_id,
        line_id="1",
        line_index=0,
        customer_id=f"C-{order_id}",
        priority=priority,
        quantity=quantity,
    )


def _receive(n: int, quantity: int, inbound_id: str | None = None) -> ReceiveStock:
    return ReceiveStock(
        causation_id=cause_id(n),
        occurred_at=T0 + timedelta(hours=n),
        receipt_id=f"R-{n}",
        quantity=quantity,
        inbound_id=inbound_id,
    )


def _history() -> list[tuple[str, SkuCommand]]:
    """HOT: O-A (priority 3) queued long before O-W; receipts fill O-A, then O-B (placed
    earlier) and part of O-W; an inbound promises O-W's rest and brings it; O-W ships.
    OTHER's inputs fall between, so HOT's positions in the log are not consecutive."""
    shipped_from = ShipmentSource(topic="shipments", partition=0, offset=0)
    return [
        ("HOT", _place(1, "O-A", 2, priority=3)),
        ("OTHER", _receive(2, 5)),
        ("HOT", _place(3, "O-B", 1, minutes=-60)),
        ("HOT", _place(4, "O-W", 3)),
        ("OTHER", _place(5, "O-X", 1)),
        ("HOT", _receive(6, 2)),
        ("HOT", _receive(7, 2)),
        (
            "HOT",
            ExpectInbound(
                causation_id=cause_id(8),
                occurred_at=T0,
                inbound_id="PO-1",
                quantity=5,
                expected_at=T0 + timedelta(days=3),
            ),
        ),
        ("HOT", _receive(9, 2, inbound_id="PO-1")),
        (
            "HOT",
            ShipLine(
                causation_id=cause_id(10),
                occurred_at=T0,
                shipment_id="SH-1",
                order_id="O-W",
                line_id="1",
                quantity=3,
                source=shipped_from,
            ),
        ),
        ("HOT", _place(11, "O-C", 4)),
        ("HOT", CancelLine(causation_id=cause_id(12), occurred_at=T0, order_id="O-C", line_id="1")),
    ]


def _folded(allocation: Allocation, version: int) -> Sku:
    """HOT from its events alone, up to `version`: no snapshot involved."""
    aggregate: Any = None
    events: list[Any] = list(allocation.events.get(sku_aggregate_id("HOT"), lte=version))
    for event in events:
        aggregate = event.mutate(aggregate)
    assert isinstance(aggregate, Sku)
    return aggregate


def test_a_sku_as_of_each_position_or_time_is_its_events_folded_up_to_there(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Allocation, "snapshotting_intervals", {Sku: 2})
    allocation = build_allocation(Settings(database_url=database_url))
    steps: list[tuple[int, datetime, int]] = []  # log head, a time after, HOT's version
    for n, (sku, command) in enumerate(_history(), start=1):
        allocation.apply_commands(
            [SkuCommands(sku=sku, position=n * 1000, commands=[command])],
            Tracking("sku-commands-0", n * 1000),
        )
        head = allocation.recorder.max_notification_id() or 0
        steps.append((head, datetime.now(UTC), allocation.sku("HOT").version))
    assert allocation.snapshots is not None
    assert len(list(allocation.snapshots.get(sku_aggregate_id("HOT")))) >= 3

    for head, recorded, version in steps:
        expected = inspection._view_of(_folded(allocation, version), True)
        by_position = sku_view_as_of(allocation, "HOT", head)
        by_time = sku_view_as_of(allocation, "HOT", recorded)
        assert by_position is not None
        assert by_time is not None
        assert (by_position.version, by_position.view) == (version, expected), head
        assert (by_time.version, by_time.view) == (version, expected), recorded


def test_an_explanation_read_from_the_orders_placement_is_the_one_read_from_the_start(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Allocation, "snapshotting_intervals", {Sku: 2})
    monkeypatch.setattr(explaining, "CLOCK_SKEW", timedelta(0))  # one clock here
    allocation = build_allocation(Settings(database_url=database_url))
    placed_at: datetime | None = None
    for n, (sku, command) in enumerate(_history(), start=1):
        if n == 4:
            placed_at = datetime.now(UTC)  # as intake would have recorded O-W
        allocation.apply_commands(
            [SkuCommands(sku=sku, position=n * 1000, commands=[command])],
            Tracking("sku-commands-0", n * 1000),
        )
    assert placed_at is not None
    lines = [("1", "HOT")]
    everything = explain_order(allocation, "O-W", lines)
    # O-W's first decision is at the log position of its LineBackordered.
    first = next(
        position
        for position in range(1, (allocation.recorder.max_notification_id() or 0) + 1)
        if inspection.version_at_position(allocation, sku_aggregate_id("HOT"), position) >= 7
    )
    from_log = starts_after_position(allocation, lines, {"HOT": first}, first)
    from_time = starts_recorded_since(allocation, {"HOT"}, placed_at)
    too_late = {"HOT": 12}

    # From O-W's placement (version 6), or from the last event recorded before intake had it.
    assert (from_log, from_time) == ({"HOT": 6}, {"HOT": 5})
    for starts in (from_log, from_time, too_late):
        assert explain_order(allocation, "O-W", lines, starts) == everything, starts
    [line] = everything.lines
    assert [(d.decision, d.cause.input) for d in line.decisions] == [
        ("LineBackordered", "OrderPlaced"),
        ("BackorderFilled", "StockReceived"),
        ("BackorderEtaChanged", "InboundExpected"),
        ("BackorderFilled", "StockReceived"),
        ("LineShipped", "ShipmentDispatched"),
    ]
    assert [
        [(s.order_id, s.units, s.ahead_by) for s in record.served] for record in line.served_ahead
    ] == [[("O-A", 2, "priority")], [("O-B", 1, "order time")]]
