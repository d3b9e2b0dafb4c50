"""User story: an SRE starts the service and plays the demo; the decisions tell the story."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.harness import environment, isolated_settings

pytestmark = pytest.mark.kafka

CLI = str(Path(sys.executable).parent / "fulfillment")

EXPECTED = [
    # (decision, order, quantity, queue position or what is still owed)
    ("LineAllocated", 1, 2, None),
    ("LineAllocated", 2, 3, None),
    ("LineBackordered", 3, 2, 1),
    ("LineBackordered", 4, 1, 2),
    ("LineBackordered", 5, 2, 1),  # priority 10 jumps the queue
    ("BackorderFilled", 5, 2, 0),  # the receipt fills the head first...
    ("BackorderFilled", 3, 1, 1),  # ...and the next one partially
    ("AllocationReleased", 1, 2, None),
    ("BackorderFilled", 3, 1, 0),  # the release fills the queue in order
    ("BackorderFilled", 4, 1, 0),
    ("LineBackordered", 6, 2, 1),  # the story ends with one customer waiting
]


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
            timeout=180,
            check=False,
        )
        assert played.returncode == 0, played.stdout + played.stderr
        result: dict[str, Any] = json.loads(played.stdout)
        api = f"http://127.0.0.1:{env['HTTP_PORT']}"
        demand_csv = httpx.get(
            f"{api}/skus/TEE-RED-M-e2e/demand",
            params={"bucket": "week"},
            headers={"Accept": "text/csv"},
        )
        order = httpx.get(f"{api}/orders/O-e2e-3")
        missing = httpx.get(f"{api}/orders/O-nobody")
    finally:
        service.send_signal(signal.SIGTERM)
        code = service.wait(timeout=60)
    assert code == 0, (tmp_path / "service.log").read_text()[-3000:]

    decisions = [
        (
            d["type"],
            int(d["order_id"].rsplit("-", 1)[1]),
            d["quantity"],
            d.get("queue_position", d.get("remaining_backordered")),
        )
        for d in result["decisions"]
    ]
    assert decisions == EXPECTED
    assert {d["sku"] for d in result["decisions"]} == {"TEE-RED-M-e2e"}
    assert len({d["decision_id"] for d in result["decisions"]}) == len(EXPECTED)
    [dead] = result["dead_letters"]
    assert dead["error"].startswith("value is not JSON")
    assert dead["payload"] == "{this is not json"

    # What the demo read back from the HTTP API, as of its last decision.
    assert result["position"] == {
        "sku": "TEE-RED-M-e2e",
        "available": 0,
        "allocated": 8,
        "backordered": 2,
        "open_backorders": 1,
    }
    [waiting] = result["queue"]
    assert (waiting["position"], waiting["order_id"], waiting["quantity"]) == (1, "O-e2e-6", 2)
    assert demand_csv.headers["content-type"].startswith("text/csv")
    assert int(demand_csv.headers["x-projection-lag"]) >= 0
    assert demand_csv.text.splitlines() == [
        "bucket_start,ordered,allocated,backordered,filled,cancelled,rejected,received",
        "2026-11-23,12,5,7,5,2,0,8",
    ]
    assert order.json() == {
        "order_id": "O-e2e-3",
        "customer_id": "C-3",
        "status": "allocated",
        "lines": [
            {
                "line_id": "1",
                "sku": "TEE-RED-M-e2e",
                "ordered": 2,
                "allocated": 2,
                "backordered": 0,
                "cancelled": 0,
                "rejected": 0,
            }
        ],
    }
    assert missing.status_code == 404
    assert missing.json() == {"error": "unknown order 'O-nobody'"}
    assert result["demand"] == [
        {
            "bucket_start": "2026-11-25",
            "ordered": 12,
            "allocated": 5,
            "backordered": 7,
            "filled": 5,
            "cancelled": 2,
            "rejected": 0,
            "received": 8,
        }
    ]
