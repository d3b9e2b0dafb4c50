"""Topics: created at start when missing; sku-commands partitions pinned at their first count."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewPartitions

from services.adapters.kafka import sku_partition
from services.adapters.settings import Settings
from services.entrypoints.bootstrap import build_allocation
from tests.harness import as_json, isolated_settings, publish, read_topic, receipt, running

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
            [settings.topics.sku_commands, settings.topics.orders, settings.topics.dead_letters]
        )
    finally:
        await admin.close()
    counts = {d["topic"]: len(d["partitions"]) for d in described}
    assert counts == {
        settings.topics.sku_commands: 4,
        settings.topics.orders: 2,
        settings.topics.dead_letters: 2,
    }


async def test_partitions_added_to_sku_commands_stay_unused_and_every_sku_keeps_its_own(
    kafka_bootstrap: str, database_url: str
) -> None:
    settings = isolated_settings(kafka_bootstrap, database_url, sku_commands_partitions=3)
    topics = settings.topics
    skus = [f"S-{n}" for n in range(12)]

    async def receive(round_: int) -> None:
        await publish(
            settings,
            [(topics.receipts, sku, as_json(receipt(f"R-{round_}-{sku}", sku, 1))) for sku in skus],
        )
        await read_topic(
            settings, topics.sku_commands, until=lambda r: len(r) >= round_ * len(skus)
        )

    async with running(settings):
        await receive(1)
        # An operator adds partitions while the service runs (to scale allocation out?)...
        await _add_partitions(settings, topics.sku_commands, 5)
        await receive(2)
    async with running(settings):  # ...and it starts again with them.
        await receive(3)

    records = await read_topic(
        settings, topics.sku_commands, until=lambda r: len(r) >= 3 * len(skus), settle=1.0
    )
    homes: dict[str, set[int]] = {}
    for record in records:
        homes.setdefault(record.key.decode(), set()).add(record.partition)
    assert homes == {sku: {sku_partition(sku, 3)} for sku in skus}
    assert len(records) == 3 * len(skus)
    allocation = build_allocation(settings)
    for sku in skus:
        found = allocation.find_sku(sku)
        assert found is not None
        assert found.received == 3


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
