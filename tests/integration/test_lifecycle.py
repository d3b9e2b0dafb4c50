"""The whole life of a backorder on a real broker and both stores: policies, promised dates,
receipts against inbounds, shipments and expiry, from the input topics to the decisions;
their bad forms dead-lettered; a restart in the middle changing nothing."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import pytest
from aiokafka.structs import ConsumerRecord

from services.adapters.settings import Settings
from services.entrypoints.bootstrap import build_allocation, build_intake
from services.operations.replay import replay
from tests.harness import (
    T0,
    as_json,
    bodies,
    cancellation,
    drained,
    event_id,
    in_decision_order,
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
)

pytestmark = pytest.mark.kafka

Message = tuple[str, str | None, bytes]
# Inputs by the role of their topic ("orders", "clock", ...), key and body.
Phase = list[tuple[str, str | None, dict[str, Any]]]

# The fields beyond the common ones that say what a decision decided.
FACTS = (
    "queue_position",
    "remaining_backordered",
    "remaining_allocated",
    "reason",
    "shipment_id",
    "eta",
    "previous_eta",
)


def day(days: float) -> datetime:
    return T0 + timedelta(days=days)


def decided(
    kind: str, sku: str, quantity: int, *, line: str = "1", **facts: Any
) -> tuple[str, str, str, int, dict[str, Any]]:
    """One expected decision: type, line, SKU, quantity and its own fields."""
    return (kind, line, sku, quantity, facts)


def _as_decided(body: dict[str, Any]) -> tuple[str, str, str, int, dict[str, Any]]:
    facts = {name: body[name] for name in FACTS if name in body}
    for name in ("eta", "previous_eta"):
        if facts.get(name) is not None:
            facts[name] = datetime.fromisoformat(facts[name])
    return (body["type"], body["line_id"], body["sku"], body["quantity"], facts)


def _per_order(records: list[ConsumerRecord]) -> dict[str, list[Any]]:
    """Each order's decisions, in the order the service took them."""
    grouped: dict[str, list[Any]] = {}
    for body in in_decision_order(records):
        grouped.setdefault(body["order_id"], []).append(_as_decided(body))
    return grouped


def _per_sku(records: list[ConsumerRecord]) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = {}
    for body in in_decision_order(records):
        grouped.setdefault(body["sku"], []).append(body)
    return grouped


async def _everything_on(settings: Settings, topic: str) -> list[ConsumerRecord]:
    """After `drained`: the whole topic, nothing more to come."""
    return await read_topic(settings, topic, until=lambda _: True, to_end=True)


async def test_every_new_input_kind_flows_from_its_topic_to_decisions(
    kafka_bootstrap: str, database_url: str
) -> None:
    settings = isolated_settings(kafka_bootstrap, database_url)
    topics = settings.topics
    expiring = tick(days=2)
    async with running(settings):
        # Policies and the first inbound come before the orders they govern and promise.
        await publish(
            settings,
            [
                (topics.policies, "CAPPED", as_json(policy("CAPPED", "limit", limit=3))),
                (topics.policies, "DENY", as_json(policy("DENY", "deny"))),
                (topics.policies, "WAIT", as_json(policy("WAIT", "allow", max_wait_days=2))),
                (topics.inbound, "ETA", as_json(inbound("PO-1", "ETA", 10, days=10))),
            ],
        )
        await drained(settings)
        await publish(
            settings,
            [
                (topics.orders, "O-1", as_json(order("O-1", [("1", "CAPPED", 5)]))),
                (topics.orders, "O-2", as_json(order("O-2", [("1", "DENY", 2)]))),
                (topics.orders, "O-3", as_json(order("O-3", [("1", "ETA", 4)]))),
                (topics.orders, "O-6", as_json(order("O-6", [("1", "WAIT", 2)]))),
            ],
        )
        await drained(settings)
        # The supplier revises PO-1: two days later.
        revision = inbound("PO-1", "ETA", 10, days=12, minutes=60)
        await publish(settings, [(topics.inbound, "ETA", as_json(revision))])
        await drained(settings)
        # Part of PO-1 arrives; a day passes, too early for any expiry.
        arrived = receipt("R-1", "ETA", 4, minutes=120, inbound_id="PO-1")
        await publish(
            settings,
            [
                (topics.receipts, "ETA", as_json(arrived)),
                (topics.clock, None, as_json(tick(days=1))),
            ],
        )
        await drained(settings)
        # O-3's stock leaves; new orders queue behind what PO-1 still brings (6 units); the
        # capped queue is full; two days after O-6 was placed, it expires.
        later = order("O-4", [("1", "ETA", 6), ("2", "ETA", 1)], minutes=180)
        await publish(
            settings,
            [
                (topics.shipments, "O-3", as_json(shipment("S-1", "O-3", [("1", 3)]))),
                (topics.orders, "O-4", as_json(later)),
                (topics.orders, "O-7", as_json(order("O-7", [("1", "CAPPED", 1)], minutes=180))),
                (topics.clock, None, as_json(expiring)),
            ],
        )
        await drained(settings)
        records = await _everything_on(settings, topics.decisions)

    assert _per_order(records) == {
        "O-1": [
            decided("LineBackordered", "CAPPED", 3, queue_position=1, eta=None),
            decided("LineRejected", "CAPPED", 2, reason="backorder_limit"),
        ],
        "O-2": [decided("LineRejected", "DENY", 2, reason="backorders_denied")],
        "O-3": [
            decided("LineBackordered", "ETA", 4, queue_position=1, eta=day(10)),
            decided("BackorderEtaChanged", "ETA", 4, eta=day(12), previous_eta=day(10)),
            decided("BackorderFilled", "ETA", 4, remaining_backordered=0),
            decided("LineShipped", "ETA", 3, remaining_allocated=1, shipment_id="S-1"),
        ],
        "O-4": [
            # PO-1 expected 10, the receipt took 4 off it: 6 units are promised, no more.
            decided("LineBackordered", "ETA", 6, queue_position=1, eta=day(12)),
            decided("LineBackordered", "ETA", 1, line="2", queue_position=2, eta=None),
        ],
        "O-6": [
            decided("LineBackordered", "WAIT", 2, queue_position=1, eta=None),
            decided("BackorderCancelled", "WAIT", 2, reason="expired"),
        ],
        "O-7": [decided("LineRejected", "CAPPED", 1, reason="backorder_limit")],
    }
    [expiry] = [d for d in bodies(records) if d["type"] == "BackorderCancelled"]
    assert expiry["causation_id"] == expiring["event_id"]
    assert datetime.fromisoformat(expiry["occurred_at"]) == day(2)
    [moved] = [d for d in bodies(records) if d["type"] == "BackorderEtaChanged"]
    assert moved["causation_id"] == revision["event_id"]


def _letter_for(letters: list[dict[str, Any]], fragment: str) -> dict[str, Any]:
    found = [letter for letter in letters if fragment in letter["error"]]
    assert len(found) == 1, (fragment, [letter["error"] for letter in letters])
    return found[0]


async def test_bad_forms_of_the_new_inputs_are_dead_lettered_while_good_ones_around_apply(
    kafka_bootstrap: str, database_url: str
) -> None:
    settings = isolated_settings(kafka_bootstrap, database_url)
    topics = settings.topics
    limit_without_limit = policy("B", "limit")
    limit_without_limit["limit"] = None
    never_waits = policy("B", "allow", max_wait_days=1)
    never_waits["max_wait_days"] = 0
    negative = inbound("PI-1", "C", 1, days=2)
    negative["quantity"] = -1
    undated = inbound("PI-3", "C", 1, days=2)
    del undated["expected_at"]
    timeless = tick(days=2)
    del timeless["occurred_at"]
    first_tick, second_tick = tick(days=1.5), tick(days=2.5)
    shipped = shipment("S-1", "O-1", [("1", 1)])
    same_content_again = {**shipped, "event_id": event_id()}
    over = shipment("S-4", "O-1", [("1", 5), ("2", 1)])  # line 1 holds 2 by then
    async with running(settings):
        await publish(
            settings,
            [
                (topics.receipts, "A", as_json(receipt("R-A", "A", 5))),
                (topics.policies, "B", as_json(limit_without_limit)),
                (topics.policies, "B", as_json(policy("B", "deny"))),
                (topics.policies, "B", as_json(never_waits)),
                (topics.policies, "D1", as_json(policy("D1", "allow", max_wait_days=1))),
                (topics.policies, "D2", as_json(policy("D2", "allow", max_wait_days=2))),
                (topics.inbound, "E", as_json(inbound("PO-E", "E", 2, days=5))),
            ],
        )
        await drained(settings)
        await publish(
            settings,
            [
                (topics.orders, "O-1", as_json(order("O-1", [("1", "A", 3), ("2", "A", 1)]))),
                (topics.orders, "O-2", as_json(order("O-2", [("1", "B", 1)]))),
                (topics.orders, "O-3", as_json(order("O-3", [("1", "C", 2)]))),
                (topics.orders, "O-4", as_json(order("O-4", [("1", "D1", 1)]))),
                (topics.orders, "O-5", as_json(order("O-5", [("1", "D2", 1)]))),
                (topics.orders, "O-6", as_json(order("O-6", [("1", "E", 3)]))),
            ],
        )
        await drained(settings)
        await publish(
            settings,
            [
                (topics.shipments, "O-1", as_json(shipped)),
                (topics.shipments, "O-404", as_json(shipment("S-2", "O-404", [("1", 1)]))),
                (topics.shipments, "O-1", as_json(shipment("S-3", "O-1", [("9", 1)]))),
                (topics.shipments, "O-1", as_json(over)),
                (topics.shipments, "O-1", as_json(shipment("S-1", "O-1", [("1", 2)]))),
                (topics.shipments, "O-1", as_json(same_content_again)),
                (topics.shipments, "O-1", as_json(shipped)),  # delivered twice
                (topics.shipments, "O-1", as_json(shipment("S-5", "O-1", [("1", 2)]))),
                (topics.inbound, "C", as_json(negative)),
                (topics.inbound, "C", as_json(inbound("PI-2", "C", 5, days=3))),
                (topics.inbound, "C", as_json(undated)),
                (topics.inbound, "C", as_json(inbound("PI-2", "C", 5, days=4, minutes=1))),
                (topics.receipts, "E", as_json(receipt("R-E", "E", 1, inbound_id="PO-NONE"))),
                (topics.clock, None, b"tick at noon"),
                (topics.clock, None, as_json(first_tick)),
            ],
        )
        await drained(settings)
        # Ticks have no key, so they may land on any clock partition: one phase each.
        await publish(
            settings,
            [(topics.clock, None, as_json(timeless)), (topics.clock, None, as_json(second_tick))],
        )
        await drained(settings)
        dead = await _everything_on(settings, topics.dead_letters)
        records = await _everything_on(settings, topics.decisions)
        shipments = await _everything_on(settings, topics.shipments)

    letters = bodies(dead)
    assert len(letters) == 10, [letter["error"] for letter in letters]
    assert _letter_for(letters, "unknown_order")["key"] == "O-404"
    assert _letter_for(letters, "unknown_line")["key"] == "O-1"
    assert _letter_for(letters, "conflict: shipment S-1")["key"] == "O-1"
    assert _letter_for(letters, "`limit` is required")["source_topic"] == topics.policies
    assert _letter_for(letters, "max_wait_days: Input should be greater than or equal to 1")
    assert _letter_for(letters, "quantity: Input should be greater than or equal to 0")
    assert _letter_for(letters, "expected_at: Field required")["source_topic"] == topics.inbound
    assert _letter_for(letters, "value is not JSON")["payload"] == "tick at noon"
    assert _letter_for(letters, "occurred_at: Field required")["key"] is None
    # The over-shipment is found by allocation, and its letter points at the shipment.
    over_letter = _letter_for(letters, "over_shipment")
    [original] = [r for r in shipments if json.loads(r.value)["shipment_id"] == "S-4"]
    assert (over_letter["source_topic"], over_letter["partition"], over_letter["offset"]) == (
        topics.shipments,
        original.partition,
        original.offset,
    )
    assert over_letter["key"] == "O-1"
    assert over_letter["error"].startswith("over_shipment: line 1 of order O-1")
    assert json.loads(over_letter["payload"])["lines"] == [{"line_id": "1", "quantity": 5}]
    # A receipt naming an inbound its SKU does not have is plain stock, never a letter.
    assert not [letter for letter in letters if letter["source_topic"] == topics.receipts]

    assert _per_order(records) == {
        "O-1": [
            decided("LineAllocated", "A", 3),
            decided("LineAllocated", "A", 1, line="2"),
            decided("LineShipped", "A", 1, remaining_allocated=2, shipment_id="S-1"),
            # S-4's line 1 over-shipped; its line 2 went out.
            decided("LineShipped", "A", 1, line="2", remaining_allocated=0, shipment_id="S-4"),
            decided("LineShipped", "A", 2, remaining_allocated=0, shipment_id="S-5"),
        ],
        # The deny policy between the two bad ones holds.
        "O-2": [decided("LineRejected", "B", 1, reason="backorders_denied")],
        "O-3": [
            decided("LineBackordered", "C", 2, queue_position=1, eta=None),
            decided("BackorderEtaChanged", "C", 2, eta=day(3), previous_eta=None),
            decided("BackorderEtaChanged", "C", 2, eta=day(4), previous_eta=day(3)),
        ],
        "O-4": [
            decided("LineBackordered", "D1", 1, queue_position=1, eta=None),
            decided("BackorderCancelled", "D1", 1, reason="expired"),
        ],
        "O-5": [
            decided("LineBackordered", "D2", 1, queue_position=1, eta=None),
            decided("BackorderCancelled", "D2", 1, reason="expired"),
        ],
        "O-6": [
            # PO-E's 2 units cannot cover a third: no date yet.
            decided("LineBackordered", "E", 3, queue_position=1, eta=None),
            decided("BackorderFilled", "E", 1, remaining_backordered=2),
            # The plain receipt left PO-E whole: it now covers both units still queued.
            decided("BackorderEtaChanged", "E", 2, eta=day(5), previous_eta=None),
        ],
    }
    expiries = {
        d["order_id"]: d["causation_id"]
        for d in bodies(records)
        if d["type"] == "BackorderCancelled"
    }
    assert expiries["O-4"] == first_tick["event_id"]
    assert expiries["O-5"] == second_tick["event_id"]


SKUS = ["S0", "S1", "S2", "S3"]


def _mixed_history() -> list[tuple[str, Phase]]:
    """A history of every input kind, in phases; within a phase, one topic."""
    orders: Phase = [
        (
            "orders",
            f"O-{n}",
            order(
                f"O-{n}",
                [("1", SKUS[n % 4], 1 + n % 3), ("2", SKUS[(n + 1) % 4], 1)],
                minutes=n * 60,
                priority=5 if n % 7 == 0 else 0,
            ),
        )
        for n in range(24)
    ]
    return [
        (
            "policies",
            [
                ("policies", "S0", policy("S0", "limit", limit=4, max_wait_days=3)),
                ("policies", "S1", policy("S1", "deny")),
                ("policies", "S2", policy("S2", "allow", max_wait_days=5)),
            ],
        ),
        (
            "inbound",
            [
                ("inbound", "S0", inbound("PO-A", "S0", 3, days=4)),
                ("inbound", "S2", inbound("PO-A", "S2", 5, days=6)),
                ("inbound", "S2", inbound("PO-B", "S2", 2, days=2)),
                ("inbound", "S3", inbound("PO-A", "S3", 4, days=8)),
            ],
        ),
        ("stock", [("receipts", s, receipt(f"R-{s}", s, 2)) for s in SKUS]),
        ("orders", orders),
        (
            "revisions",
            [
                ("inbound", "S2", inbound("PO-A", "S2", 5, days=3, minutes=2000)),
                ("inbound", "S2", inbound("PO-B", "S2", 0, days=2, minutes=2000)),
                ("inbound", "S3", inbound("PO-A", "S3", 6, days=8, minutes=2000)),
            ],
        ),
        (
            "restock",
            [
                ("receipts", "S0", receipt("R2-S0", "S0", 2, minutes=2100, inbound_id="PO-A")),
                ("receipts", "S2", receipt("R2-S2", "S2", 3, minutes=2100, inbound_id="PO-A")),
                ("receipts", "S3", receipt("R2-S3", "S3", 1, minutes=2100, inbound_id="PO-Z")),
            ],
        ),
        (
            "shipments",
            [
                ("shipments", f"O-{n}", shipment(f"S-{n}", f"O-{n}", [("1", 1)], minutes=2200))
                for n in range(0, 24, 3)
            ],
        ),
        ("first tick", [("clock", None, tick(days=3.5))]),
        ("second tick", [("clock", None, tick(days=7))]),
        (
            "cancel",
            [
                ("cancellations", f"O-{n}", cancellation(f"O-{n}", minutes=12000 + n))
                for n in range(1, 24, 5)
            ],
        ),
    ]


def _messages(settings: Settings, phase: Phase) -> list[Message]:
    names = {
        "orders": settings.topics.orders,
        "cancellations": settings.topics.cancellations,
        "receipts": settings.topics.receipts,
        "shipments": settings.topics.shipments,
        "policies": settings.topics.policies,
        "inbound": settings.topics.inbound,
        "clock": settings.topics.clock,
    }
    return [(names[kind], key, as_json(body)) for kind, key, body in phase]


async def _play(settings: Settings, phase: Phase) -> None:
    """Publishes a phase and waits until every stage has applied it."""
    await publish(settings, _messages(settings, phase))
    await drained(settings)


async def test_a_restart_in_the_middle_of_a_mixed_history_changes_no_decision(
    kafka_bootstrap: str, database_url: str
) -> None:
    history = _mixed_history()
    first_orders = {f"O-{n}" for n in range(12)}

    async def play(settings: Settings, interrupt: bool) -> tuple[list[Any], list[Any]]:
        """Plays the history; with `interrupt`, the service stops while the first orders are
        being decided (the rest is published while it is down), and again before time
        passes (the ticks' deadlines must survive a restart)."""
        pending = list(history)
        if interrupt:
            async with running(settings):
                while pending[0][0] != "orders":
                    await _play(settings, pending.pop(0)[1])
                orders = pending.pop(0)[1]
                await publish(settings, _messages(settings, orders[:12]))
                await read_topic(
                    settings,
                    settings.topics.decisions,
                    until=lambda r: len({d["order_id"] for d in bodies(r)} & first_orders) >= 3,
                )
            await publish(settings, _messages(settings, orders[12:]))
            async with running(settings):
                await drained(settings)
                while pending[0][0] != "first tick":
                    await _play(settings, pending.pop(0)[1])
        async with running(settings):
            for _, phase in pending:
                await _play(settings, phase)
            decisions = await _everything_on(settings, settings.topics.decisions)
            dead = await _everything_on(settings, settings.topics.dead_letters)
        return decisions, dead

    def fresh(tag: str) -> Settings:
        url = database_url.replace("schema=t_", f"schema={tag}_t_")
        if url.startswith("sqlite"):
            url = f"{url}-{tag}"
        return isolated_settings(kafka_bootstrap, url, topic_partitions=1)

    uninterrupted, uninterrupted_dead = await play(fresh("a"), interrupt=False)
    interrupted_settings = fresh("b")
    interrupted, interrupted_dead = await play(interrupted_settings, interrupt=True)

    ids = [json.loads(r.value)["decision_id"] for r in interrupted]
    assert len(ids) == len(set(ids)), "a decision was published twice"
    kinds = {d["type"] for d in bodies(uninterrupted)}
    assert kinds >= {
        "LineAllocated",
        "LineBackordered",
        "LineRejected",
        "BackorderFilled",
        "BackorderEtaChanged",
        "LineShipped",
        "BackorderCancelled",
        "AllocationReleased",
    }, kinds
    reasons = {d.get("reason") for d in bodies(uninterrupted)}
    assert reasons >= {"backorders_denied", "backorder_limit", "expired", "cancelled"}, reasons
    # SKUs live on different partitions, decided in parallel: order is per SKU.
    assert _per_sku(interrupted) == _per_sku(uninterrupted)
    # Shipments of lines that held nothing allocated were refused alike.
    refused = sorted(d["error"] for d in bodies(uninterrupted_dead))
    assert any(error.startswith("over_shipment:") for error in refused), refused
    assert sorted(d["error"] for d in bodies(interrupted_dead)) == refused

    # And intake's recorded inputs, replayed without Kafka, give the very same decisions.
    report = replay(build_intake(interrupted_settings), build_allocation(interrupted_settings))
    assert report.identical, report
    assert report.live == len(in_decision_order(interrupted))
