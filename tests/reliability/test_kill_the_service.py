"""kill -9 of the whole service at random moments and at the hardest instructions."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from services.entrypoints.runner import STAGES
from tests.reliability.cluster import Process, progressed
from tests.reliability.scenario import moments, run_scenario, scenario_settings

pytestmark = pytest.mark.kafka

# Each life of the process is either killed from outside after a random while, or kills
# itself at a crash point: inside a batch's transaction, between the database commit and
# the Kafka commit, between a relay's publish and the record of its position.
LIVES = [
    "",
    "intake.in_transaction:0.2",
    "intake.after_commit:0.2",
    "",
    "allocation.in_transaction:0.2",
    "allocation.after_commit:0.2",
    "relay.after_publish:0.2",
    "projections.after_commit:0.2",
]


async def test_kill_9_of_the_whole_service_loses_and_doubles_nothing(
    kafka_bootstrap: str, database_url: str, tmp_path: Path
) -> None:
    settings = scenario_settings(kafka_bootstrap, database_url)
    service = Process("service", settings, STAGES, tmp_path)

    async def inject(publishing: asyncio.Task[None]) -> int:
        faults, seen = 0, 0
        for life, wait in zip(LIVES, moments(7, len(LIVES), 0.5, 3.0), strict=True):
            service.start(FULFILLMENT_CRASH_AT=life, FULFILLMENT_CRASH_SEED=str(faults))
            if not life:  # killed from outside: only once this life has decided something
                seen = await progressed(settings, seen, unless=publishing)
            limit = 25.0 if life else wait
            waited = 0.0
            while waited < limit and service.alive:
                await asyncio.sleep(0.1)
                waited += 0.1
            service.kill9()  # a no-op when it already killed itself
            faults += 1
        return faults

    async def finish() -> None:
        service.start()

    try:
        report = await run_scenario(
            "kill -9 of the whole service", settings, tmp_path, inject, finish, seed=101
        )
    finally:
        code = service.stop()
    assert code == 0, service.log()[-3000:]
    fired = set(re.findall(r"fault injection: SIGKILL at (\S+)", service.log()))
    assert {"intake.in_transaction", "allocation.in_transaction"} & fired, fired
    assert {"intake.after_commit", "allocation.after_commit"} & fired, fired
    assert report.faults >= 5
    assert report.ok, "\n".join(report.details)
