"""The contract's topic names (defaults: `TOPIC_*` settings can rename them) and the broker
address its AsyncAPI document names."""

from __future__ import annotations

DEFAULT_BROKER = "127.0.0.1:9092"

# Setting name (TOPIC_<NAME>) -> default topic name, in the order the contract lists them.
DEFAULT_TOPICS: dict[str, str] = {
    "orders": "orders",
    "cancellations": "cancellations",
    "receipts": "receipts",
    "shipments": "shipments",
    "policies": "sku-policies",
    "inbound": "inbound",
    "clock": "clock",
    "sku_commands": "sku-commands",
    "decisions": "allocation-decisions",
    "dead_letters": "fulfillment-dlq",
    "demand_history": "demand-history",
    "backorder_queue": "backorder-queue",
}
