"""Topics: created at start when missing; sku-commands partitions pinned at their first count."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewPartitions

from services.adapters.kafka import sku_partition
from services.adapters.settings import Settings
from services.allocation.application import Allocation
from services.entrypoints.bootstrap import build_allocation
from tests.harness import (
    as_json,
    isolated_settings,
    publish,
    read_topic,
    receipt,
    running,
    until,
)

pytestmark = pytest.mark.kafka


async def test_missing_topics_are_created_with_the_configured_partitions(
    kafka_bootstrap: str, database_url: str
) -> None:
    settings = isolated_settings(
        kafka_bootstrap, database_url, sku_commands_partitions=4, topic_partitions=2
    )
    async with running(settings, ["intake"]):
        pass
    admin = AIOKafkaAdminClient(**settings.kafka_client_options())
    await admin.start()
    try:
        described = await admin.describe_topics(
            [
                settings.topics.sku_commands,
                settings.topics.orders,
                settings.topics.shipments,
                settings.topics.dead_letters,
                settings.topics.clock,
            ]
        )
    finally:
        await admin.close()
    counts = {d["topic"]: len(d["partitions"]) for d in described}
    assert counts == {
        settings.topics.sku_commands: 4,
        settings.topics.orders: 2,
        settings.topics.shipments: 2,
        settings.topics.dead_letters: 2,
        settings.topics.clock: 1,  # time is one ordered stream
    }


async def test_partitions_added_to_sku_commands_stay_unused_and_every_sku_keeps_its_own(
    kafka_bootstrap: str, database_url: str
) -> None:
    settings = isolated_settings(kafka_bootstrap, database_url, sku_commands_partitions=3)
    topics = settings.topics
    skus = [f"S-{n}" for n in range(12)]
    allocation = build_allocation(settings)  # a reader of the store the service writes

    async def receive(round_: int) -> None:
        """Publishes a receipt of 1 for every SKU and waits until allocation applied them
        all (the effect itself, not the commands on their way to it)."""
        await publish(
            settings,
            [(topics.receipts, sku, as_json(receipt(f"R-{round_}-{sku}", sku, 1))) for sku in skus],
        )
        await until(
            lambda: received(allocation, skus) == dict.fromkeys(skus, round_),
            what=f"every SKU has received {round_}",
        )

    async with running(settings):
        await receive(1)
        # An operator adds partitions while the service runs (to scale allocation out?)...
        await _add_partitions(settings, topics.sku_commands, 5)
        await receive(2)
    async with running(settings):  # ...and it starts again with them.
        await receive(3)

    records = await read_topic(
        settings, topics.sku_commands, until=lambda r: len(r) >= 3 * len(skus), to_end=True
    )
    homes: dict[str, set[int]] = {}
    for record in records:
        homes.setdefault(record.key.decode(), set()).add(record.partition)
    assert homes == {sku: {sku_partition(sku, 3)} for sku in skus}
    assert len(records) == 3 * len(skus)
    assert received(allocation, skus) == dict.fromkeys(skus, 3)


def received(allocation: Allocation, skus: list[str]) -> dict[str, int]:
    """What allocation's store says each SKU has received (0 when it has no SKU yet)."""
    allocation.forget_cached()
    found = {sku: allocation.find_sku(sku) for sku in skus}
    return {sku: 0 if state is None else state.received for sku, state in found.items()}


async def _add_partitions(settings: Settings, topic: str, total: int) -> None:
    admin = AIOKafkaAdminClient(**settings.kafka_client_options())
    await admin.start()
    try:
        await admin.create_partitions({topic: NewPartitions(total_count=total)})
        async with asyncio.timeout(30):  # the broker's metadata catches up a moment later
            while True:
                [described] = await admin.describe_topics([topic])
                if len(described["partitions"]) == total:
                    break
                await asyncio.sleep(0.2)
    finally:
        await admin.close()
