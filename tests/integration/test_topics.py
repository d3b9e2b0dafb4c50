"""Topics: created at start when missing; a changed sku-commands partition count refused."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewPartitions

from services.kafka import ConfigurationError
from services.runner import Service
from tests.harness import isolated_settings, running

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


async def test_the_service_refuses_to_start_when_sku_commands_partitions_changed(
    kafka_bootstrap: str, database_url: str
) -> None:
    settings = isolated_settings(kafka_bootstrap, database_url, sku_commands_partitions=3)
    async with running(settings, ["allocation"]):
        pass  # the store now records 3 partitions for sku-commands
    admin = AIOKafkaAdminClient(**settings.kafka_client_options())
    await admin.start()
    try:  # an operator adds partitions: every SKU's home partition would move
        await admin.create_partitions({settings.topics.sku_commands: NewPartitions(total_count=5)})
        async with asyncio.timeout(30):  # the broker's metadata catches up a moment later
            while True:
                [described] = await admin.describe_topics([settings.topics.sku_commands])
                if len(described["partitions"]) == 5:
                    break
                await asyncio.sleep(0.2)
    finally:
        await admin.close()

    with pytest.raises(ConfigurationError, match="has 5 partitions but this store's positions"):
        await _run_briefly(Service(settings, ["allocation"]))


async def _run_briefly(service: Service) -> None:
    """Runs the service; were it to start anyway, stops it after a while instead of hanging."""
    stopper = asyncio.get_running_loop().call_later(30, service.stop)
    try:
        await service.run()
    finally:
        stopper.cancel()
