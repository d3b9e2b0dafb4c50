"""Another service's view of fulfillment, through `fulfillment_client`: place an order,
receive stock for it, and print the service's decisions about the order as they come.

With the service running (`make run`, or `fulfillment run`):

    .venv/bin/python examples/client_example.py

KAFKA_BOOTSTRAP_SERVERS and the TOPIC_* variables are read as the service reads them. The
consumer group `client-example` reads the decisions topic once from its start, then on from
where it stopped; only this run's order is printed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import uuid

from fulfillment_client import (
    AllocationDecision,
    BackorderFilled,
    ClientTopics,
    FulfillmentClient,
    LineAllocated,
    LineBackordered,
    LineRejected,
    OrderLine,
    make_broker,
)

SKU = "CLIENT-EXAMPLE-TEE"
QUANTITY = 3
WAIT_SECONDS = 60


def describe(decision: AllocationDecision) -> str:
    """One line per decision, in the planners' words."""
    match decision:
        case LineBackordered():
            return f"backordered {decision.quantity}, queue position {decision.queue_position}"
        case BackorderFilled():
            return f"filled {decision.quantity}, {decision.remaining_backordered} still queued"
        case LineRejected():
            return f"rejected {decision.quantity} ({decision.reason})"
        case _:
            return f"{decision.type} {decision.quantity}"


async def main() -> int:
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    client = FulfillmentClient(
        make_broker(bootstrap, log_level=logging.DEBUG),  # faststream's per-message log: quiet
        topics=ClientTopics.from_environment(),
    )
    order_id = f"O-EXAMPLE-{uuid.uuid4().hex[:8]}"
    seen: set[uuid.UUID] = set()
    unallocated = QUANTITY  # neither allocated nor rejected yet
    settled = asyncio.Event()
    subscriber = client.decisions("client-example")

    @subscriber.on_every
    async def show(decision: AllocationDecision) -> None:
        nonlocal unallocated
        if decision.order_id != order_id or decision.decision_id in seen:
            return  # someone else's order, or a decision delivered again (at least once)
        seen.add(decision.decision_id)
        print(f"  {decision.occurred_at:%H:%M:%S} line {decision.line_id}: {describe(decision)}")
        if isinstance(decision, LineAllocated | LineRejected | BackorderFilled):
            unallocated -= decision.quantity
        if unallocated == 0:
            settled.set()

    async with client:
        order = await client.place_order(
            order_id, "C-EXAMPLE", [OrderLine(line_id="1", sku=SKU, quantity=QUANTITY)]
        )
        print(f"placed {order_id}: {QUANTITY} x {SKU} (event {order.event_id})")
        receipt = await client.receive_stock(f"R-{order_id}", SKU, QUANTITY)
        print(f"received {QUANTITY} x {SKU} (event {receipt.event_id}); decisions:")
        try:
            await asyncio.wait_for(settled.wait(), timeout=WAIT_SECONDS)
        except TimeoutError:
            print(f"no final decision within {WAIT_SECONDS} s: is the service running (make run)?")
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
