"""User story: an SRE points Prometheus at `fulfillment run` (three processes) and scrapes
one target, HTTP_PORT's /metrics: every stage is in it, intake's and allocation's counters
and lags included, with the read models' lag and the live conservation check."""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from tests.browser import serving
from tests.harness import as_json, order, publish, receipt, until

pytestmark = pytest.mark.kafka

SKU = "SKU-metrics"


def _samples(url: str) -> list[Sample]:
    text = httpx.get(f"{url}/metrics", timeout=5).text
    return [sample for family in text_string_to_metric_families(text) for sample in family.samples]


def _total(samples: list[Sample], name: str, **labels: str) -> float:
    return sum(
        s.value
        for s in samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


def _checked(url: str) -> float:
    return _total(_samples(url), "fulfillment_conservation_checked_timestamp_seconds")


def _series(samples: list[Sample], name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {tuple(sorted(s.labels.items())): s.value for s in samples if s.name == name}


async def test_one_scrape_of_fulfillment_run_shows_every_stage_s_metrics(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    async with serving(kafka_bootstrap, tmp_path, CONSERVATION_CHECK_SECONDS="1") as service:
        topics = service.settings.topics
        await publish(
            service.settings,
            [
                (topics.receipts, SKU, as_json(receipt("R-1", SKU, 5))),
                (topics.orders, "O-1", as_json(order("O-1", [("1", SKU, 3)], minutes=1))),
                (topics.orders, "O-2", as_json(order("O-2", [("1", SKU, 4)], minutes=2))),
                (topics.orders, "O-3", b"{not json"),
            ],
        )
        decisions = f"relay:{topics.decisions}"

        def settled() -> bool:
            samples = _samples(service.url)
            lags = _series(samples, "fulfillment_projection_lag")
            positions = _series(samples, "fulfillment_projection_position").values()
            return (
                _total(samples, "fulfillment_messages_consumed_total", stage="intake") >= 4
                and _total(samples, "fulfillment_messages_consumed_total", stage="allocation") >= 3
                and _total(samples, "fulfillment_messages_published_total", topic=topics.decisions)
                >= 3
                and bool(lags)
                and set(lags.values()) == {0}
                and min(positions, default=0) > 0
                and _total(samples, "fulfillment_leading", role=decisions) == 1
                and set(_series(samples, "fulfillment_consumer_lag").values()) == {0}
            )

        await until(settled, what="every stage's metrics on HTTP_PORT, the lags at 0")
        fed = time.time()
        await until(
            lambda: _checked(service.url) > fed,
            what="a conservation check over the read models as fed",
        )
        samples = _samples(service.url)

    assert _total(samples, "fulfillment_dead_letters_total", stage="intake") == 1
    assert _total(samples, "fulfillment_batch_seconds_count", stage="intake") >= 1
    assert _total(samples, "fulfillment_batch_seconds_count", stage="allocation") >= 1
    lag_by_stage: dict[str, set[str]] = defaultdict(set)
    for labels in _series(samples, "fulfillment_consumer_lag"):
        found = dict(labels)
        lag_by_stage[found["stage"]].add(found["topic"])
    assert topics.orders in lag_by_stage["intake"]
    assert topics.receipts in lag_by_stage["intake"]
    assert lag_by_stage["allocation"] == {topics.sku_commands}
    # One leader per log, counted over the processes: the gauges add up, they do not repeat.
    for role in (f"relay:{topics.sku_commands}", decisions, "projections:publish"):
        assert _total(samples, "fulfillment_leading", role=role) == 1, role
    checks = _series(samples, "fulfillment_conservation_violations")
    assert checks == {
        (("check", "order_lines"),): 0,
        (("check", "sku_lines"),): 0,
        (("check", "sku_stock"),): 0,
    }
    positions = _series(samples, "fulfillment_projection_position")
    assert len(positions) >= 6
    assert min(positions.values()) > 0
    # Every gauge says how processes combine: none is repeated per process (a pid label).
    assert not [s for s in samples if "pid" in s.labels]
