"""A typed Python client for the fulfillment service: publish its inputs, read its decisions.

Built on faststream and on the contract's own pydantic models (`events/`), so other services
never write the JSON by hand. It imports nothing of the service (`services/`,
`projections/`): an import-linter contract in pyproject.toml keeps it that way.

    async with FulfillmentClient(make_broker("127.0.0.1:9092")) as client:
        order = await client.place_order(
            "O-1", "C-42", [OrderLine(line_id="1", sku="SKU-RED-M", quantity=2)]
        )
"""

from events.decisions import (
    AllocationDecision,
    AllocationReleased,
    BackorderCancelled,
    BackorderEtaChanged,
    BackorderFilled,
    Decision,
    LineAllocated,
    LineBackordered,
    LineRejected,
    LineShipped,
)
from events.inputs import (
    BackorderPolicySet,
    CancelledLine,
    ClockTicked,
    InboundExpected,
    OrderCancelled,
    OrderLine,
    OrderPlaced,
    ShipmentDispatched,
    ShippedLine,
    StockReceived,
)
from fulfillment_client.client import FulfillmentClient, make_broker
from fulfillment_client.decisions import DecisionSubscriber
from fulfillment_client.messages import ClientTopics, UnreadableDecisionError

__all__ = [
    "AllocationDecision",
    "AllocationReleased",
    "BackorderCancelled",
    "BackorderEtaChanged",
    "BackorderFilled",
    "BackorderPolicySet",
    "CancelledLine",
    "ClientTopics",
    "ClockTicked",
    "Decision",
    "DecisionSubscriber",
    "FulfillmentClient",
    "InboundExpected",
    "LineAllocated",
    "LineBackordered",
    "LineRejected",
    "LineShipped",
    "OrderCancelled",
    "OrderLine",
    "OrderPlaced",
    "ShipmentDispatched",
    "ShippedLine",
    "StockReceived",
    "UnreadableDecisionError",
    "make_broker",
]
