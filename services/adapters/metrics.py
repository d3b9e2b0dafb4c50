"""Prometheus metrics, served at GET /metrics."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

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
    "fulfillment_relay_position", "Last notification id the relay published.", ["topic"]
)
LEADING = Gauge(
    "fulfillment_leading",
    "1 while this process publishes the log (relay or read-model changes), 0 standing by.",
    ["role"],
)
