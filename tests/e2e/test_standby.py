"""User story: an SRE runs two relay processes for availability; one publishes, the other
stands by, and takes over when the first stops. /metrics says which is which."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.harness import environment, free_port, isolated_settings

pytestmark = pytest.mark.kafka

CLI = str(Path(sys.executable).parent / "fulfillment")


def _leading(port: int) -> dict[str, float]:
    """fulfillment_leading per role, from the process's /metrics (empty if not up yet)."""
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
    except httpx.HTTPError:
        return {}
    return {
        role: float(value)
        for role, value in re.findall(r'^fulfillment_leading\{role="([^"]+)"\} (\S+)$', text, re.M)
    }


def _wait_for(check: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_standby_relay_takes_over_when_the_leader_stops(
    kafka_bootstrap: str, database_url: str, tmp_path: Path
) -> None:
    settings = isolated_settings(kafka_bootstrap, database_url)
    roles = {f"relay:{settings.topics.sku_commands}", f"relay:{settings.topics.decisions}"}
    ports = [free_port(), free_port()]
    processes = []
    try:
        for n, port in enumerate(ports):
            log = (tmp_path / f"relay-{n}.log").open("w")
            env = environment(settings, METRICS_PORT=str(port))
            processes.append(
                subprocess.Popen(
                    [CLI, "run", "--stage", "relay"], env=env, stdout=log, stderr=subprocess.STDOUT
                )
            )

            def decided(port: int = port) -> bool:
                return set(_leading(port)) == roles

            _wait_for(decided, f"relay {n} to decide its role")
        first, second = _leading(ports[0]), _leading(ports[1])
        assert first == dict.fromkeys(roles, 1.0), first
        assert second == dict.fromkeys(roles, 0.0), second

        processes[0].send_signal(signal.SIGTERM)
        assert processes[0].wait(timeout=60) == 0
        _wait_for(
            lambda: _leading(ports[1]) == dict.fromkeys(roles, 1.0), "the standby to take over"
        )
    finally:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=60)
    logs = (tmp_path / "relay-1.log").read_text()
    assert "standing by" in logs
    assert "leading" in logs
