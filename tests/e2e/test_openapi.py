"""The OpenAPI document states every answer the API gives: schemathesis, with all its checks,
finds nothing against the real service (`fulfillment run` on SQLite and the real broker),
with the API open, with an API token, and with the admin API on too (its routes are in the
document only then: without ADMIN_TOKEN they only answer 403)."""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from pathlib import Path
from typing import IO

import httpx
import pytest

from tests.harness import as_json, environment, isolated_settings, order, publish, receipt

pytestmark = pytest.mark.kafka

BIN = Path(sys.executable).parent
CLI = str(BIN / "fulfillment")
SCHEMATHESIS = str(BIN / "st")
TOKEN = "openapi-test-token-5d2c"
SKU = "TEE-BLUE-L"
# The one rule JSON Schema cannot state: a range's `from` must not be after `to`, nor ten
# years before it (each parameter alone is valid). Its 422 is documented; this tells
# schemathesis that a schema-valid pair may still get it, on those operations only.
CONFIG = """
[[operations]]
include-path-regex = '^/(skus/\\{sku\\}/demand|insights/(overview|shortages|skus/\\{sku\\}))$'
checks.positive_data_acceptance.expected-statuses = [
    "2xx", "3xx", "401", "403", "404", "409", "422", "429", "5xx",
]
"""


def _log(path: Path) -> IO[bytes]:
    """The service's output goes to a file, shown when the test fails."""
    return path.open("wb")


async def _wait_until_seeded(api: str, headers: dict[str, str]) -> None:
    """Until the read models show the order (backordered) and the receipt (which fills part)."""
    deadline = time.monotonic() + 60
    async with httpx.AsyncClient(base_url=api, headers=headers, timeout=5) as client:
        while time.monotonic() < deadline:
            try:
                sku = await client.get(f"/skus/{SKU}")
                if sku.status_code == 200 and sku.json()["allocated"] == 1:
                    return
            except httpx.TransportError:
                pass  # not listening yet
            await asyncio.sleep(0.2)
    raise AssertionError("the seeded order and receipt did not reach the read models in 60 s")


def _schemathesis(api: str, token: str | None, folder: Path) -> list[str]:
    """Every check, a bounded and reproducible number of examples per operation."""
    config = folder / "schemathesis.toml"
    config.write_text(CONFIG)
    command = [
        SCHEMATHESIS,
        "--config-file",
        str(config),
        "run",
        f"{api}/openapi.json",
        "--checks",
        "all",
        "--max-examples",
        "30",
        "--seed",
        "20261125",
        "--generation-database",
        "none",
        "--request-timeout",
        "10",
        "--wait-for-schema",
        "10",
        "--no-color",
    ]
    if token is not None:
        command += ["-H", f"Authorization: Bearer {token}"]
    return command


@pytest.mark.parametrize(
    ("token", "admin"),
    [(None, False), (TOKEN, False), (TOKEN, True)],
    ids=["open", "api-token", "admin-token"],
)
async def test_schemathesis_finds_nothing_the_openapi_document_does_not_state(
    kafka_bootstrap: str, tmp_path: Path, token: str | None, admin: bool
) -> None:
    settings = isolated_settings(kafka_bootstrap, f"sqlite:///{tmp_path}/fulfillment")
    env = environment(settings)
    env.pop("API_TOKEN", None)
    env.pop("ADMIN_TOKEN", None)
    if token is not None:
        env["API_TOKEN"] = token
    if admin:  # the same token: one header opens both (schemathesis sends one)
        env["ADMIN_TOKEN"] = token or ""
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    api = f"http://127.0.0.1:{settings.http_port}"
    log_path = tmp_path / "service.log"
    with _log(log_path) as log:
        service = await asyncio.create_subprocess_exec(
            CLI, "run", env=env, stdout=log, stderr=asyncio.subprocess.STDOUT
        )
    try:
        topics = settings.topics
        await publish(
            settings,
            [
                (topics.orders, "O-1", as_json(order("O-1", [("1", SKU, 2)]))),
                (topics.receipts, SKU, as_json(receipt("R-1", SKU, 1, minutes=1))),
            ],
        )
        await _wait_until_seeded(api, headers)
        checked = await asyncio.create_subprocess_exec(
            *_schemathesis(api, token, tmp_path),
            cwd=tmp_path,  # whatever it writes stays out of the checkout
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await asyncio.wait_for(checked.communicate(), timeout=300)
    finally:
        if service.returncode is None:
            service.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(service.wait(), timeout=60)
    report = output.decode(errors="replace")
    assert checked.returncode == 0, report
    assert "No issues found" in report, report
    assert code == 0, log_path.read_text(errors="replace")[-3000:]
