"""User story: an SRE starts the service and plays the demo; the decisions tell the story.

The story: a popular T-shirt sells out and its backorder queue does its job; then the rest
of a backorder's life: an inbound gives the waiting customers a date, a revision moves it,
a shipment takes allocated units, a limited-edition mug that takes no backorders loses a
sale, and a published clock tick expires a backorder that waited past its SKU's limit.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.operations.demo import DEMO_NAMESPACE
from tests.harness import environment, isolated_settings

pytestmark = pytest.mark.kafka

CLI = str(Path(sys.executable).parent / "fulfillment")

TEE = "TEE-RED-M-e2e"
MUG = "MUG-LTD-e2e"
DEC_1 = "2026-12-01T09:00:00Z"  # when PO-e2e-1 is first expected
DEC_4 = "2026-12-04T09:00:00Z"  # ...and after its revision
TICK = "2026-12-02T12:00:00Z"  # the demo's clock tick: 7 days and 1 hour after C-6 ordered

EXPECTED: list[tuple[str, str, str, int, int, dict[str, Any]]] = [
    # (the demo input that caused it, decision, SKU, order, quantity, what else it says)
    ("order-1", "LineAllocated", TEE, 1, 2, {}),
    ("order-2", "LineAllocated", TEE, 2, 3, {}),
    ("order-3", "LineBackordered", TEE, 3, 2, {"queue_position": 1, "eta": None}),
    ("order-4", "LineBackordered", TEE, 4, 1, {"queue_position": 2, "eta": None}),
    # priority 10 jumps the queue
    ("order-5", "LineBackordered", TEE, 5, 2, {"queue_position": 1, "eta": None}),
    # the receipt fills the head first, and the next one partially
    ("receipt-2", "BackorderFilled", TEE, 5, 2, {"remaining_backordered": 0}),
    ("receipt-2", "BackorderFilled", TEE, 3, 1, {"remaining_backordered": 1}),
    # the release fills the queue in order
    ("cancel-1", "AllocationReleased", TEE, 1, 2, {}),
    ("cancel-1", "BackorderFilled", TEE, 3, 1, {"remaining_backordered": 0}),
    ("cancel-1", "BackorderFilled", TEE, 4, 1, {"remaining_backordered": 0}),
    ("order-6", "LineBackordered", TEE, 6, 2, {"queue_position": 1, "eta": None}),
    # the inbound gives the waiting line a date; a later order is queued with it
    ("inbound-1", "BackorderEtaChanged", TEE, 6, 2, {"eta": DEC_1, "previous_eta": None}),
    ("order-7", "LineBackordered", TEE, 7, 1, {"queue_position": 2, "eta": DEC_1}),
    # the revision moves both dates, in queue order
    ("inbound-1-revised", "BackorderEtaChanged", TEE, 6, 2, {"eta": DEC_4, "previous_eta": DEC_1}),
    ("inbound-1-revised", "BackorderEtaChanged", TEE, 7, 1, {"eta": DEC_4, "previous_eta": DEC_1}),
    (
        "shipment-1",
        "LineShipped",
        TEE,
        2,
        2,
        {"remaining_allocated": 1, "shipment_id": "S-e2e-1"},
    ),
    # the mug denies backorders: what stock cannot cover is a lost sale
    ("order-8", "LineAllocated", MUG, 8, 2, {}),
    ("order-8", "LineRejected", MUG, 8, 1, {"reason": "backorders_denied"}),
    # the tick finds C-6 waiting past 7 days; C-7 (ordered two days later) stays, its date
    # unchanged
    ("tick-1", "BackorderCancelled", TEE, 6, 2, {"reason": "expired"}),
]

# What every decision carries; the rest is what the decision says of its own.
COMMON = {"decision_id", "causation_id", "occurred_at", "order_id", "line_id", "sku", "quantity"}


def demo_event_id(name: str) -> str:
    return str(uuid.uuid5(DEMO_NAMESPACE, f"e2e:{name}"))


def test_the_demo_scenario_produces_exactly_the_decisions_of_the_story(
    kafka_bootstrap: str, database_url: str, tmp_path: Path
) -> None:
    env = environment(isolated_settings(kafka_bootstrap, database_url))
    log = (tmp_path / "service.log").open("w")
    service = subprocess.Popen([CLI, "run"], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        played = subprocess.run(
            [CLI, "demo", "--json", "--run-id", "e2e"],
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
            check=False,
        )
        assert played.returncode == 0, played.stdout + played.stderr
        result: dict[str, Any] = json.loads(played.stdout)
        api = f"http://127.0.0.1:{env['HTTP_PORT']}"
        demand_csv = httpx.get(f"{api}/skus/{TEE}/demand", headers={"Accept": "text/csv"})
        mug = httpx.get(f"{api}/skus/{MUG}")
        mug_demand = httpx.get(f"{api}/skus/{MUG}/demand")
        orders = {n: httpx.get(f"{api}/orders/O-e2e-{n}").json() for n in (2, 3, 6, 7, 8)}
        missing = httpx.get(f"{api}/orders/O-nobody")
    finally:
        service.send_signal(signal.SIGTERM)
        code = service.wait(timeout=60)
    assert code == 0, (tmp_path / "service.log").read_text()[-3000:]

    causes = {demo_event_id(cause): cause for cause, *_ in EXPECTED}
    decisions = [
        (
            causes.get(d["causation_id"], d["causation_id"]),
            d["type"],
            d["sku"],
            int(d["order_id"].rsplit("-", 1)[1]),
            d["quantity"],
            {k: v for k, v in d.items() if k not in COMMON | {"type"}},
        )
        for d in result["decisions"]
    ]
    assert decisions == EXPECTED
    assert {d["line_id"] for d in result["decisions"]} == {"1"}
    assert len({d["decision_id"] for d in result["decisions"]}) == len(EXPECTED)
    expiry = result["decisions"][-1]
    assert expiry["occurred_at"] == TICK  # the tick's time, not the wall clock's
    [dead] = result["dead_letters"]
    assert dead["error"].startswith("value is not JSON")
    assert dead["payload"] == "{this is not json"

    # What the demo read back from the HTTP API, as of its last decision.
    assert result["position"] == {
        "sku": TEE,
        "available": 0,
        "allocated": 6,
        "backordered": 1,
        "open_backorders": 1,
        "on_hand": 6,
        "shipped": 2,
        "inbound": 4,
        "policy": {"backorders": "allow", "limit": None, "max_wait_days": 7},
    }
    [waiting] = result["queue"]
    assert (waiting["position"], waiting["order_id"], waiting["quantity"], waiting["eta"]) == (
        1,
        "O-e2e-7",
        1,
        DEC_4,
    )
    assert result["demand"] == [
        {
            "bucket_start": "2026-11-23",
            "ordered": 13,
            "allocated": 5,
            "backordered": 8,
            "filled": 5,
            "cancelled": 2,
            "rejected": 0,
            "received": 8,
            "shipped": 2,
            "expired": 0,
        },
        {
            "bucket_start": "2026-11-30",
            "ordered": 0,
            "allocated": 0,
            "backordered": 0,
            "filled": 0,
            "cancelled": 2,
            "rejected": 0,
            "received": 0,
            "shipped": 0,
            "expired": 2,
        },
    ]
    assert demand_csv.headers["content-type"].startswith("text/csv")
    assert int(demand_csv.headers["x-projection-lag"]) >= 0
    assert demand_csv.text.splitlines() == [
        "bucket_start,ordered,allocated,backordered,filled,cancelled,rejected,received,"
        "shipped,expired",
        "2026-11-25,12,5,7,5,2,0,8,0,0",
        "2026-11-26,0,0,0,0,0,0,0,0,0",
        "2026-11-27,1,0,1,0,0,0,0,2,0",
        "2026-11-28,0,0,0,0,0,0,0,0,0",
        "2026-11-29,0,0,0,0,0,0,0,0,0",
        "2026-11-30,0,0,0,0,0,0,0,0,0",
        "2026-12-01,0,0,0,0,0,0,0,0,0",
        "2026-12-02,0,0,0,0,2,0,0,0,2",
    ]
    assert mug.json() == {
        "sku": MUG,
        "available": 0,
        "allocated": 2,
        "backordered": 0,
        "open_backorders": 0,
        "on_hand": 2,
        "shipped": 0,
        "inbound": 0,
        "policy": {"backorders": "deny", "limit": None, "max_wait_days": None},
    }
    [mug_day] = mug_demand.json()
    assert (mug_day["bucket_start"], mug_day["ordered"], mug_day["rejected"]) == (
        "2026-11-27",
        3,
        1,
    )

    assert orders[3] == {
        "order_id": "O-e2e-3",
        "customer_id": "C-3",
        "status": "allocated",
        "lines": [
            {
                "line_id": "1",
                "sku": TEE,
                "ordered": 2,
                "allocated": 2,
                "backordered": 0,
                "shipped": 0,
                "cancelled": 0,
                "rejected": 0,
                "eta": None,
            }
        ],
    }
    counts = ("ordered", "allocated", "backordered", "shipped", "cancelled", "rejected", "eta")
    assert {
        n: (order["status"], *(order["lines"][0][c] for c in counts)) for n, order in orders.items()
    } == {
        2: ("partially_shipped", 3, 1, 0, 2, 0, 0, None),
        3: ("allocated", 2, 2, 0, 0, 0, 0, None),
        6: ("cancelled", 2, 0, 0, 0, 2, 0, None),  # expired
        7: ("backordered", 1, 0, 1, 0, 0, 0, DEC_4),
        8: ("allocated", 3, 2, 0, 0, 0, 1, None),  # one unit a lost sale
    }
    assert missing.status_code == 404
    assert missing.json() == {"error": "unknown order 'O-nobody'"}
