"""Dead letters on a real broker: what lands there, and how an SRE lists and re-drives them."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from services.entrypoints.bootstrap import build_allocation
from services.operations.dead_letters import redrive
from tests.harness import (
    as_json,
    bodies,
    drained,
    environment,
    isolated_settings,
    order,
    publish,
    read_topic,
    receipt,
    running,
    shipment,
    until,
)

pytestmark = pytest.mark.kafka

CLI = str(Path(sys.executable).parent / "fulfillment")


def _letters_from(records: list[Any], topic: str) -> list[dict[str, Any]]:
    return [letter for letter in bodies(records) if letter["source_topic"] == topic]


async def test_a_message_on_sku_commands_that_intake_did_not_write_is_dead_lettered_not_applied(
    kafka_bootstrap: str, database_url: str
) -> None:
    settings = isolated_settings(kafka_bootstrap, database_url)
    topics = settings.topics
    forged = {
        "sku": "A",
        "position": 999_999_000,
        "commands": [
            {
                "type": "ReceiveStock",
                "causation_id": "7d1e4c1a-5f0b-4c55-9a43-2b8f7f0e9c11",
                "occurred_at": "2026-11-02T08:00:00Z",
                "receipt_id": "R-forged",
                "quantity": 100,
            }
        ],
    }
    async with running(settings):
        await publish(
            settings,
            [
                (topics.sku_commands, "A", b"\xff\xfe not a command"),
                (topics.sku_commands, "A", as_json(forged)),
                (topics.receipts, "A", as_json(receipt("R-1", "A", 1))),
            ],
        )
        dead = await read_topic(
            settings,
            topics.dead_letters,
            until=lambda r: len(_letters_from(r, topics.sku_commands)) >= 2,
        )
        allocation = build_allocation(settings)

        def received_something() -> bool:
            allocation.forget_cached()
            found = allocation.find_sku("A")
            return found is not None and found.received > 0

        await until(received_something, what="SKU A received the good receipt")
        sku = allocation.find_sku("A")
    letters = _letters_from(dead, topics.sku_commands)
    assert len(letters) == 2
    assert all("not written by intake's relay" in letter["error"] for letter in letters)
    assert {letter["payload_encoding"] for letter in letters} == {"base64", "utf-8"}
    # The good receipt was applied; the forged receipt of 100 never reached SKU A.
    assert sku is not None
    assert (sku.received, sku.available) == (1, 1)


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [CLI, *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done


async def test_an_sre_lists_dead_letters_and_re_drives_them_to_their_source_topic(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    settings = isolated_settings(kafka_bootstrap, f"sqlite:///{tmp_path}/fulfillment")
    topics = settings.topics
    env = environment(settings)
    broken = b'{"type": "OrderPlaced", "order_id": "O-9"'  # cut short
    async with running(settings):
        await publish(
            settings,
            [
                (topics.orders, "O-9", broken),
                (topics.sku_commands, "A", b"junk"),
            ],
        )
        await read_topic(settings, topics.dead_letters, until=lambda r: len(r) >= 2)

        listed = json.loads((await asyncio.to_thread(_cli, env, "dlq", "list", "--json")).stdout)
        assert sorted(letter["source_topic"] for letter in listed) == sorted(
            [topics.orders, topics.sku_commands]
        )
        [from_orders] = [letter for letter in listed if letter["source_topic"] == topics.orders]
        assert from_orders["key"] == "O-9"
        assert from_orders["error"].startswith("value is not JSON")

        dry = await asyncio.to_thread(_cli, env, "dlq", "redrive", "--all", "--dry-run")
        assert "would re-drive 1 dead letter(s)" in dry.stdout
        assert "kept 1 letter(s) that re-driving cannot mend" in dry.stdout
        assert "internal" in dry.stdout  # why: it came from an internal topic

        done = await asyncio.to_thread(_cli, env, "dlq", "redrive", "--all")
        assert "re-drove 1 dead letter(s)" in done.stdout

        # The original bytes and key went back to the orders topic, marked as re-driven...
        orders = await read_topic(settings, topics.orders, until=lambda r: len(r) >= 2)
        # ...and, still broken, came back to the dead-letter topic with the same reason.
        await drained(settings)
        dead = await read_topic(
            settings,
            topics.dead_letters,
            until=lambda r: len(_letters_from(r, topics.orders)) >= 2,
            to_end=True,
        )
    assert [(r.key, r.value) for r in orders] == [(b"O-9", broken), (b"O-9", broken)]
    redriven = dict(orders[1].headers)
    assert redriven["redriven-from"].decode().startswith(f"{topics.dead_letters}:")
    again = _letters_from(dead, topics.orders)
    assert len(again) == 2
    assert again[0]["error"] == again[1]["error"]
    assert again[0]["offset"] != again[1]["offset"]
    assert len(_letters_from(dead, topics.sku_commands)) == 1  # kept, not re-driven


async def test_an_over_shipment_letter_is_kept_with_why_while_the_other_letters_are_re_driven(
    kafka_bootstrap: str, database_url: str
) -> None:
    settings = isolated_settings(kafka_bootstrap, database_url)
    topics = settings.topics
    broken = b'{"type": "OrderPlaced", "order_id": "O-9"'  # cut short
    async with running(settings):
        await publish(settings, [(topics.receipts, "A", as_json(receipt("R-1", "A", 1)))])
        await drained(settings)
        await publish(settings, [(topics.orders, "O-1", as_json(order("O-1", [("1", "A", 1)])))])
        await drained(settings)
        await publish(
            settings,
            [
                (topics.shipments, "O-1", as_json(shipment("S-1", "O-1", [("1", 2)]))),
                (topics.orders, "O-9", broken),
            ],
        )
        await drained(settings)

        dry = await redrive(settings, select=lambda _: True, dry_run=True)
        done = await redrive(settings, select=lambda _: True)
        await drained(settings)
        shipments = await read_topic(settings, topics.shipments, until=bool, to_end=True)
        orders = await read_topic(settings, topics.orders, until=bool, to_end=True)
        decisions = await read_topic(settings, topics.decisions, until=bool, to_end=True)

    assert dry.kept == done.kept
    [kept] = done.kept
    assert kept.letter.source_topic == topics.shipments
    assert kept.letter.error.startswith("over_shipment: line 1 of order O-1")
    assert kept.why.startswith("an over-shipment")
    assert "ignore it as a duplicate" in kept.why
    assert "new shipment_id" in kept.why
    # The broken order went back to its topic; nothing went back to the shipments topic...
    assert [letter.letter.source_topic for letter in done.sent] == [topics.orders]
    assert [r.value for r in orders if r.key == b"O-9"] == [broken, broken]
    assert len(shipments) == 1
    # ...and the refused line stayed without effect: O-1 still holds its one unit.
    assert [d["type"] for d in bodies(decisions)] == ["LineAllocated"]
