"""Prometheus metrics, served at GET /metrics.

`fulfillment run` starts the stages in three processes (services/entrypoints/supervisor.py)
and sets PROMETHEUS_MULTIPROC_DIR for them: each process then keeps its values in files
there, and the API's /metrics shows every process's (`exposition`). Each gauge says how
the processes' values combine (`multiprocess_mode`); the `live` modes drop a process's
values once it has ended. A process run alone (`--stage`, as in Kubernetes) serves its own.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

# Set by the supervisor of `fulfillment run` for its processes (prometheus_client's name).
MULTIPROCESS_FOLDER = "PROMETHEUS_MULTIPROC_DIR"

CONSUMED = Counter(
    "fulfillment_messages_consumed_total", "Messages taken off a topic.", ["stage", "topic"]
)
DEAD_LETTERED = Counter(
    "fulfillment_dead_letters_total", "Inputs recorded as dead letters.", ["stage"]
)
DUPLICATES = Counter("fulfillment_duplicates_total", "Inputs ignored as duplicates.", ["stage"])
PUBLISHED = Counter("fulfillment_messages_published_total", "Messages relayed.", ["topic"])
BATCH_SECONDS = Histogram(
    "fulfillment_batch_seconds", "Time to apply and commit one batch.", ["stage"]
)
BATCH_FAILURES = Counter(
    "fulfillment_batch_failures_total", "Batches rolled back and retried.", ["stage"]
)
RELAY_POSITION = Gauge(
    "fulfillment_relay_position",
    "Last notification id the relay published.",
    ["topic"],
    multiprocess_mode="livemax",
)
LEADING = Gauge(
    "fulfillment_leading",
    "1 while this process publishes the log (relay or read-model changes), 0 standing by.",
    ["role"],
    multiprocess_mode="livesum",  # how many of the service's processes lead: 1, never 2
)
CONSUMER_LAG = Gauge(
    "fulfillment_consumer_lag",
    "Records of a partition the stage has yet to read: its high watermark minus the "
    "consumer's position, as of the consumer's last fetch.",
    ["stage", "topic", "partition"],
    multiprocess_mode="livemax",  # one process of a service owns a partition; the others say 0
)
PROJECTION_LAG = Gauge(
    "fulfillment_projection_lag",
    "Events of the allocation log a read model has yet to apply (head minus its position).",
    ["read_model"],
    multiprocess_mode="livemax",
)
PROJECTION_POSITION = Gauge(
    "fulfillment_projection_position",
    "The position in the allocation log a read model has applied up to.",
    ["read_model"],
    multiprocess_mode="livemax",
)
CONSERVATION_VIOLATIONS = Gauge(
    "fulfillment_conservation_violations",
    "Rows of the read models that do not add up, by check (0: all add up), as of the last "
    "conservation check (projections/monitoring.py).",
    ["check"],
    multiprocess_mode="livemax",
)
CONSERVATION_CHECKED = Gauge(
    "fulfillment_conservation_checked_timestamp_seconds",
    "When the last conservation check completed (Unix time); 0 in processes that run none.",
    multiprocess_mode="livemax",
)


def multiprocess_folder() -> str | None:
    """The folder where the processes of `fulfillment run` keep their values, if any."""
    return os.environ.get(MULTIPROCESS_FOLDER) or None


def exposition() -> bytes:
    """The text /metrics serves: this process's metrics, or under `fulfillment run` every
    process's, so that one scrape of the service sees all of its stages."""
    folder = multiprocess_folder()
    if folder is None:
        return generate_latest()
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=folder)  # type: ignore[no-untyped-call]
    return generate_latest(registry)


def record_consumer_lag(stage: str, topic: str, partition: int, lag: int) -> None:
    CONSUMER_LAG.labels(stage, topic, str(partition)).set(lag)


def forget_consumer_lag(stage: str, topic: str, partition: int) -> None:
    """A partition this process no longer owns: its new owner reports its lag. Values kept
    in files cannot be removed (prometheus_client), so there it says 0."""
    if multiprocess_folder() is None:
        CONSUMER_LAG.remove(stage, topic, str(partition))
    else:
        CONSUMER_LAG.labels(stage, topic, str(partition)).set(0)
