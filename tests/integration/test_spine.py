"""The spine on a real broker and both stores: inputs in, decisions and dead letters out."""

from __future__ import annotations

import json
from typing import Any

import pytest

from services.adapters.settings import Settings
from services.entrypoints.bootstrap import build_allocation, build_intake
from services.operations.replay import replay
from tests.harness import (
    as_json,
    bodies,
    cancellation,
    drained,
    in_decision_order,
    isolated_settings,
    order,
    publish,
    read_topic,
    receipt,
    running,
)

pytestmark = pytest.mark.kafka


def _decisions(records: list[Any]) -> list[tuple[str, str, str, str, int, int | None]]:
    return [
        (
            d["type"],
            d["order_id"],
            d["line_id"],
            d["sku"],
            d["quantity"],
            d.get("queue_position", d.get("remaining_backordered")),
        )
        for d in in_decision_order(records)
    ]


async def _wait_for_commands(settings: Settings, positions: int) -> None:
    """Waits until intake has recorded and relayed this many SKU messages."""

    def enough(records: list[Any]) -> bool:
        return len({json.loads(r.value)["position"] for r in records}) >= positions

    await read_topic(settings, settings.topics.sku_commands, until=enough)


async def test_a_multi_sku_order_is_decided_line_by_line(
    kafka_bootstrap: str, database_url: str
) -> None:
    settings = isolated_settings(kafka_bootstrap, database_url)
    topics = settings.topics
    async with running(settings):
        await publish(
            settings,
            [
                (topics.receipts, "A", as_json(receipt("R-1", "A", 5))),
                (topics.receipts, "B", as_json(receipt("R-2", "B", 1))),
            ],
        )
        await _wait_for_commands(settings, 2)
        placed = order("O-1", [("1", "A", 3), ("2", "B", 2), ("3", "C", 1)], minutes=5)
        await publish(settings, [(topics.orders, "O-1", as_json(placed))])
        await drained(settings)
        records = await read_topic(
            settings, topics.decisions, until=lambda r: len(r) >= 4, to_end=True
        )
    decided = _decisions(records)
    assert sorted(decided) == sorted(
        [
            ("LineAllocated", "O-1", "1", "A", 3, None),
            ("LineAllocated", "O-1", "2", "B", 1, None),
            ("LineBackordered", "O-1", "2", "B", 1, 1),
            ("LineBackordered", "O-1", "3", "C", 1, 1),
        ]
    )
    body = bodies(records)[0]
    assert body["causation_id"] == placed["event_id"]
    assert body["occurred_at"].startswith("2026-11-25T08:05:00")


async def test_bad_inputs_are_dead_lettered_while_good_ones_around_them_apply(
    kafka_bootstrap: str, database_url: str
) -> None:
    settings = isolated_settings(kafka_bootstrap, database_url)
    topics = settings.topics
    first = order("O-1", [("1", "S", 1)])
    missing_field = order("O-3", [("1", "S", 1)])
    del missing_field["customer_id"]
    zero = order("O-4", [("1", "S", 0)])
    oversize = order("O-5", [("1", "S", 1)])
    oversize["padding"] = "x" * (1024 * 1024)
    conflicting = order("O-1", [("1", "S", 2)])  # O-1 again, other lines
    last = order("O-9", [("1", "S", 1)])
    async with running(settings):
        await publish(settings, [(topics.orders, "O-1", as_json(first))])
        await read_topic(settings, topics.decisions, until=lambda r: len(r) >= 1)
        await publish(
            settings,
            [
                (topics.orders, "O-2", b"{not json"),
                (topics.orders, "O-2", as_json({**first, "type": "OrderShipped"})),
                (topics.orders, "O-3", as_json(missing_field)),
                (topics.orders, "O-4", as_json(zero)),
                (topics.orders, "O-5", as_json(oversize)),
                (topics.orders, "O-1", as_json(conflicting)),
                (topics.cancellations, "O-1", as_json(cancellation("O-1", [("7", None)]))),
                (topics.orders, "O-9", as_json(last)),
            ],
        )
        await drained(settings)
        dead = await read_topic(
            settings, topics.dead_letters, until=lambda r: len(r) >= 7, to_end=True
        )
        decided = await read_topic(
            settings, topics.decisions, until=lambda r: len(r) >= 2, to_end=True
        )
    errors = {letter["key"] + ":" + letter["error"] for letter in bodies(dead)}
    assert len(dead) == 7
    expected_fragments = [
        ("O-2", "not JSON"),
        ("O-2", "unknown type 'OrderShipped'"),
        ("O-3", "customer_id: Field required"),
        ("O-4", "greater than or equal to 1"),
        ("O-5", "over the 1 MiB limit"),
        ("O-1", "already placed with other lines"),
        ("O-1", "has no line(s) '7'"),
    ]
    for key, fragment in expected_fragments:
        assert any(e.startswith(key + ":") and fragment in e for e in errors), (key, fragment)
    letters = {letter["offset"]: letter for letter in bodies(dead) if letter["key"] == "O-2"}
    assert any(letter["payload"] == "{not json" for letter in letters.values())
    assert all(letter["source_topic"] in topics.inputs() for letter in bodies(dead))
    assert {(d["order_id"], d["type"]) for d in bodies(decided)} == {
        ("O-1", "LineBackordered"),
        ("O-9", "LineBackordered"),
    }


def _history(phase: str) -> list[tuple[str, str, dict[str, Any]]]:
    """A seeded history in phases; within a phase, one topic with one partition."""
    skus = [f"SKU-{n}" for n in range(4)]
    if phase == "stock":
        return [("receipts", s, receipt(f"R-{s}", s, 3, minutes=0)) for s in skus]
    if phase == "orders":
        return [
            (
                "orders",
                f"O-{n}",
                order(
                    f"O-{n}",
                    [("1", skus[n % 4], 1 + n % 3), ("2", skus[(n + 1) % 4], 1)],
                    minutes=n,
                    priority=5 if n % 7 == 0 else 0,
                ),
            )
            for n in range(30)
        ]
    if phase == "restock":
        return [("receipts", s, receipt(f"R2-{s}", s, 7, minutes=100)) for s in skus]
    return [
        ("cancellations", f"O-{n}", cancellation(f"O-{n}", minutes=200 + n))
        for n in range(0, 30, 4)
    ]


def _messages(settings: Settings, history: list[tuple[str, str, dict[str, Any]]]) -> list[Any]:
    names = {
        "orders": settings.topics.orders,
        "receipts": settings.topics.receipts,
        "cancellations": settings.topics.cancellations,
    }
    return [(names[kind], key, as_json(body)) for kind, key, body in history]


def _commands_in(history: list[tuple[str, str, dict[str, Any]]]) -> int:
    count = 0
    for kind, _, body in history:
        if kind == "orders":
            count += len({line["sku"] for line in body["lines"]})
        elif kind == "receipts":
            count += 1
        else:
            count += 2  # every order here spans two SKUs
    return count


async def test_a_restart_mid_stream_resumes_without_loss_or_duplicates(
    kafka_bootstrap: str, database_url: str
) -> None:
    phases = {name: _history(name) for name in ("stock", "orders", "restock", "cancel")}

    async def play(settings: Settings, interrupt: bool) -> list[Any]:
        expected = 0
        async with running(settings):
            for name in ("stock", "orders"):
                batch = phases[name]
                if name == "orders" and interrupt:
                    batch = batch[:12]
                await publish(settings, _messages(settings, batch))
                expected += _commands_in(batch)
                await _wait_for_commands(settings, expected)
        if interrupt:  # stopped: what is published now waits for the restart
            rest = phases["orders"][12:]
            await publish(settings, _messages(settings, rest))
            expected += _commands_in(rest)
        async with running(settings):
            await _wait_for_commands(settings, expected)
            for name in ("restock", "cancel"):
                await publish(settings, _messages(settings, phases[name]))
                expected += _commands_in(phases[name])
                await _wait_for_commands(settings, expected)
            await drained(settings)  # every decision is published
            return await read_topic(
                settings, settings.topics.decisions, until=lambda r: len(r) > 0, to_end=True
            )

    def fresh(tag: str) -> Settings:
        url = database_url.replace("schema=t_", f"schema={tag}_t_")
        if url.startswith("sqlite"):
            url = f"{url}-{tag}"
        return isolated_settings(kafka_bootstrap, url, topic_partitions=1)

    uninterrupted = await play(fresh("a"), interrupt=False)
    interrupted_settings = fresh("b")
    interrupted = await play(interrupted_settings, interrupt=True)

    ids = [json.loads(r.value)["decision_id"] for r in interrupted]
    assert len(ids) == len(set(ids)), "a decision was published twice"
    assert len(uninterrupted) > 40
    # SKUs live on different partitions, decided in parallel: order is per SKU.
    assert _per_sku(interrupted) == _per_sku(uninterrupted)

    # And intake's recorded inputs, replayed without Kafka, give the very same decisions.
    report = replay(build_intake(interrupted_settings), build_allocation(interrupted_settings))
    assert report.identical, report
    assert report.live == len(in_decision_order(interrupted))


def _per_sku(records: list[Any]) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = {}
    for decision in in_decision_order(records):
        grouped.setdefault(decision["sku"], []).append(decision)
    return grouped
