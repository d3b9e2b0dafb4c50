"""Read models over HTTP and as streams, with the whole service on a real broker."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import timedelta
from typing import Any

import httpx
import pytest
from aiokafka.structs import ConsumerRecord
from eventsourcing.persistence import Tracking

from events.commands import ReceiveStock, SkuCommands
from projections.publisher import publish_changes
from projections.runner import follow
from services.adapters.kafka import ensure_topics, make_producer
from services.adapters.wakeup import Wakeup
from services.entrypoints.bootstrap import build_allocation, build_read_models
from tests.harness import (
    T0,
    as_json,
    drained,
    inbound,
    isolated_settings,
    order,
    policy,
    publish,
    read_topic,
    receipt,
    running,
    shipment,
    tick,
    until,
)

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
        "on_hand": 5,
        "shipped": 0,
        "inbound": 0,
        "policy": {"backorders": "allow", "limit": None, "max_wait_days": None},
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


def _values(records: list[ConsumerRecord], key: str) -> list[dict[str, Any] | None]:
    """Every value published under one key, in order (None: a tombstone)."""
    return [
        None if record.value is None else json.loads(record.value)
        for record in records
        if record.key == key.encode()
    ]


async def test_the_whole_life_of_a_backorder_reaches_the_api_and_the_streams(
    kafka_bootstrap: str, database_url: str
) -> None:
    """A policy with max_wait_days, an inbound that gives the queue a date, a shipment, an
    expiry from a tick: each read model and stream shows it; SKUs that only a policy or an
    inbound named are known."""
    settings = isolated_settings(kafka_bootstrap, database_url)
    topics = settings.topics
    in_5_days = (T0 + timedelta(days=5)).isoformat().replace("+00:00", "Z")
    async with running(settings):
        await publish(
            settings,
            [
                (topics.policies, "W", as_json(policy("W", "allow", max_wait_days=2))),
                (topics.policies, "D", as_json(policy("D", "deny"))),
                (topics.inbound, "W", as_json(inbound("PO-1", "W", 3, days=5))),
                (topics.inbound, "I", as_json(inbound("PO-9", "I", 4, days=2))),
                (topics.receipts, "W", as_json(receipt("R-1", "W", 2))),
            ],
        )
        await drained(settings)
        await publish(settings, [(topics.orders, "O-1", as_json(order("O-1", [("1", "W", 2)])))])
        await drained(settings)
        # Nothing left in stock: O-2 waits for 3, all of them promised by PO-1.
        waiting = order("O-2", [("1", "W", 3)], minutes=1)
        await publish(settings, [(topics.orders, "O-2", as_json(waiting))])
        await drained(settings)
        api = f"http://127.0.0.1:{settings.http_port}"
        async with httpx.AsyncClient(base_url=api, timeout=15) as client:
            queued = (await client.get("/skus/W/backorders")).json()
            promised_order = (await client.get("/orders/O-2")).json()
        await publish(
            settings,
            [
                (topics.shipments, "O-1", as_json(shipment("SH-1", "O-1", [("1", 2)], minutes=2))),
                (topics.clock, None, as_json(tick(days=3))),  # O-2 has waited past 2 days
            ],
        )
        await drained(settings)
        async with httpx.AsyncClient(base_url=api, timeout=15) as client:
            sku = (await client.get("/skus/W")).json()
            shipped = (await client.get("/orders/O-1")).json()
            expired = (await client.get("/orders/O-2")).json()
            by_policy = await client.get("/skus/D")
            by_inbound = await client.get("/skus/I")
            demand = (await client.get("/skus/W/demand")).json()
        queue_stream = await read_topic(
            settings, topics.backorder_queue, until=lambda _: True, to_end=True
        )
        demand_stream = await read_topic(
            settings, topics.demand_history, until=lambda _: True, to_end=True
        )

    [row] = queued
    assert (row["order_id"], row["quantity"], row["eta"]) == ("O-2", 3, in_5_days)
    assert promised_order["status"] == "backordered"
    assert promised_order["lines"][0]["eta"] == in_5_days

    assert sku == {
        "sku": "W",
        "available": 0,
        "allocated": 0,
        "backordered": 0,
        "open_backorders": 0,
        "on_hand": 0,
        "shipped": 2,
        "inbound": 3,
        "policy": {"backorders": "allow", "limit": None, "max_wait_days": 2},
    }
    assert shipped["status"] == "shipped"
    assert shipped["lines"][0]["shipped"] == 2
    assert expired["status"] == "cancelled"
    assert (expired["lines"][0]["cancelled"], expired["lines"][0]["eta"]) == (3, None)
    assert by_policy.status_code == 200
    assert by_policy.json()["policy"] == {
        "backorders": "deny",
        "limit": None,
        "max_wait_days": None,
    }
    assert by_inbound.status_code == 200
    assert (by_inbound.json()["inbound"], by_inbound.json()["on_hand"]) == (4, 0)
    assert [(b["bucket_start"], b["shipped"], b["cancelled"], b["expired"]) for b in demand] == [
        ("2026-11-25", 2, 0, 0),
        ("2026-11-26", 0, 0, 0),
        ("2026-11-27", 0, 0, 0),
        ("2026-11-28", 0, 3, 3),
    ]

    # The streams: the queue row with its date, then its tombstone when it expired...
    first, *_, last = _values(queue_stream, "O-2|1")
    assert first is not None
    assert (first["quantity"], first["eta"]) == (3, (T0 + timedelta(days=5)).isoformat())
    assert last is None
    # ...and the demand rows with what was shipped and what expired.
    ordered_day = _values(demand_stream, "W|2026-11-25")[-1]
    tick_day = _values(demand_stream, "W|2026-11-28")[-1]
    assert ordered_day is not None
    assert tick_day is not None
    assert (ordered_day["shipped"], ordered_day["expired"]) == (2, 0)
    assert (tick_day["cancelled"], tick_day["expired"]) == (3, 3)


async def test_the_publisher_is_woken_by_the_commit_that_queued_changes_not_by_its_timer(
    kafka_bootstrap: str, database_url: str
) -> None:
    """Its idle wait is two minutes here, yet the changes reach the topic at once: the feed
    wakes it after the commit that queued them (projections.runner.follow)."""
    settings = isolated_settings(kafka_bootstrap, database_url, relay_idle_interval=30)
    await ensure_topics(settings)
    allocation = build_allocation(settings)
    models = build_read_models(settings, allocation)

    class Watched(Wakeup):
        waits = 0

        async def wait(self, seconds: float, stopping: asyncio.Event | None = None) -> None:
            self.waits += 1
            await super().wait(seconds, stopping)

    changed, stopping = Watched(), asyncio.Event()
    producer = make_producer(settings)
    await producer.start()
    publisher = asyncio.create_task(
        publish_changes(models, producer, settings, stopping, changed=changed)
    )
    feed = asyncio.create_task(follow(models, stopping, idle=0.02, changed=changed))
    try:
        await until(lambda: changed.waits > 0, what="the publisher idle, waiting")
        cause = {"causation_id": uuid.uuid4(), "occurred_at": T0}
        allocation.apply_commands(
            [
                SkuCommands(
                    sku="S",
                    position=1000,
                    commands=[ReceiveStock(**cause, receipt_id="R-1", quantity=4)],
                )
            ],
            Tracking("sku-commands-0", 1000),
        )
        demand = await read_topic(
            settings, settings.topics.demand_history, until=lambda r: len(r) >= 1, timeout=60
        )
    finally:
        stopping.set()
        await asyncio.gather(publisher, feed)
        await producer.stop()

    assert [record.key for record in demand] == [b"S|2026-11-25"]
    assert json.loads(demand[0].value)["received"] == 4
