"""Several processes may run the publishing stages; one publishes each log, the others wait.

Two relays publishing one log at once would double every message and interleave resends with
new ones; two read-model publishers could leave an older row state last on a compacted topic.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from itertools import pairwise
from typing import Any

import psycopg
import pytest

from services.adapters.leadership import CHECK_EVERY_SECONDS, AdvisoryLock, Leadership
from tests.harness import (
    as_json,
    drained,
    isolated_settings,
    order,
    publish,
    read_topic,
    receipt,
    running,
)

pytestmark = pytest.mark.kafka


def test_one_process_leads_each_log_and_another_takes_over_when_it_steps_down(
    database_url: str,
) -> None:
    first = Leadership(database_url, "relay:sku-commands")
    second = Leadership(database_url, "relay:sku-commands")
    other_log = Leadership(database_url, "relay:allocation-decisions")
    try:
        assert first.lead()
        assert first.lead()  # and it keeps leading
        assert not second.lead()
        assert other_log.lead()
        first.step_down()
        assert second.lead()
        assert not first.lead()
    finally:
        for leadership in (first, second, other_log):
            leadership.step_down()


def test_a_leader_whose_postgres_session_ends_loses_the_lead_and_the_standby_gets_it(
    postgres_base_url: str,
) -> None:
    url = f"{postgres_base_url}{'&' if '?' in postgres_base_url else '?'}schema=leaders"
    first, second = Leadership(url, "relay:x"), Leadership(url, "relay:x")
    try:
        assert first.lead()
        assert not second.lead()
        lock = first.lock
        assert isinstance(lock, AdvisoryLock)
        pid = lock.connection.info.backend_pid
        with psycopg.connect(lock.dsn, autocommit=True) as admin:  # say, a failover
            admin.execute("SELECT pg_terminate_backend(%s, 5000)", [pid])  # waits for its end
        assert second.lead()
        # It notices at its next look at its session (CHECK_EVERY_SECONDS), and stands by.
        deadline = time.monotonic() + 10 * CHECK_EVERY_SECONDS
        while first.lead() and time.monotonic() < deadline:
            time.sleep(CHECK_EVERY_SECONDS / 5)
        assert not first.lead()
    finally:
        first.step_down()
        second.step_down()


async def test_two_whole_services_on_one_store_publish_every_message_once(
    kafka_bootstrap: str, database_url: str
) -> None:
    settings = isolated_settings(kafka_bootstrap, database_url)
    topics = settings.topics
    stages = ["intake", "allocation", "relay", "projections"]
    inputs = [(topics.receipts, "A", as_json(receipt("R-1", "A", 5)))]
    for n in range(30):
        sku = "AB"[n % 2]
        inputs.append(
            (topics.orders, f"O-{n}", as_json(order(f"O-{n}", [("1", sku, 1)], minutes=n)))
        )
    async with running(settings, stages), running(settings, stages):
        await publish(settings, inputs)
        await drained(settings)
        relayed = await read_topic(
            settings,
            topics.sku_commands,
            until=lambda r: len({json.loads(m.value)["position"] for m in r}) >= len(inputs),
            to_end=True,
        )
        decided = await read_topic(
            settings, topics.decisions, until=lambda r: len(r) >= 30, to_end=True
        )
        streamed = await read_topic(
            settings, topics.demand_history, until=_demand_settled, to_end=True
        )
    positions = [json.loads(m.value)["position"] for m in relayed]
    assert len(positions) == len(set(positions)) == len(inputs)
    ids = [json.loads(m.value)["decision_id"] for m in decided]
    assert len(ids) == len(set(ids))
    # One publisher: a key's consecutive states differ (demand only grows).
    by_key: dict[bytes, list[Any]] = defaultdict(list)
    for message in streamed:
        by_key[message.key].append(message.value)
    for key, values in by_key.items():
        assert all(a != b for a, b in pairwise(values)), key


def _demand_settled(records: list[Any]) -> bool:
    """The latest state of every demand row counts all 30 ordered units."""
    latest = {message.key: json.loads(message.value) for message in records if message.value}
    ordered: int = sum(row["ordered"] for row in latest.values())
    return ordered >= 30
