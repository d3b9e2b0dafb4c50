"""Read models over HTTP and as streams, with the whole service on a real broker."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from tests.harness import as_json, isolated_settings, order, publish, read_topic, receipt, running

pytestmark = pytest.mark.kafka


async def test_queue_and_demand_changes_are_streamed_with_stable_keys_and_tombstones(
    kafka_bootstrap: str, database_url: str
) -> None:
    settings = isolated_settings(kafka_bootstrap, database_url)
    topics = settings.topics
    async with running(settings):
        await publish(settings, [(topics.orders, "O-1", as_json(order("O-1", [("1", "S", 2)])))])
        await read_topic(settings, topics.decisions, until=lambda r: len(r) >= 1)
        await publish(settings, [(topics.receipts, "S", as_json(receipt("R-1", "S", 5)))])
        queue = await read_topic(
            settings,
            topics.backorder_queue,
            until=lambda r: any(x.value is None for x in r),
        )
        demand = await read_topic(
            settings,
            topics.demand_history,
            until=lambda r: any(json.loads(x.value)["received"] == 5 for x in r),
        )
        api = f"http://127.0.0.1:{settings.http_port}"
        async with httpx.AsyncClient(base_url=api, timeout=15) as client:
            position = await client.get("/skus/S", params={"min_position": 1})
            backorders = await client.get("/backorders", params={"limit": 10})
            started = time.monotonic()
            too_far = await client.get("/skus/S", params={"min_position": 10_000})
            too_far_took = time.monotonic() - started
            bad = await client.get("/backorders", params={"limit": 0})

    assert [record.key for record in queue] == [b"O-1|1", b"O-1|1"]
    first, last = queue
    assert json.loads(first.value)["quantity"] == 2
    assert last.value is None  # the backorder closed: a tombstone, so compaction drops it
    assert {record.key for record in demand} == {b"S|2026-11-25"}
    latest = json.loads(demand[-1].value)
    assert (latest["ordered"], latest["backordered"], latest["filled"], latest["received"]) == (
        2,
        2,
        2,
        5,
    )

    assert position.json() == {
        "sku": "S",
        "available": 3,
        "allocated": 2,
        "backordered": 0,
        "open_backorders": 0,
    }
    assert int(position.headers["x-projection-position"]) >= 1
    assert position.headers["x-projection-lag"] == "0"
    assert backorders.json() == []
    # Beyond the log's head: answered at once (no 5 s wait), since no decision has it.
    assert too_far.status_code == 409
    assert too_far.json()["detail"]["min_position"] == 10_000
    assert too_far_took < 4
    assert bad.status_code == 422
    assert bad.json()["error"] == "bad request parameters"
