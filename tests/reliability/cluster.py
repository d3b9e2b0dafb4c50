"""The service as real OS processes, so that faults are real: SIGKILL, SIGSTOP, restarts."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition

from services.adapters.kafka import partitions_of
from services.adapters.settings import Settings
from tests.harness import environment

CLI = str(Path(sys.executable).parent / "fulfillment")


class Process:
    """One `fulfillment run` process of some stages."""

    def __init__(
        self, name: str, settings: Settings, stages: Sequence[str], logs: Path, **env: str
    ) -> None:
        self.name = name
        self.stages = list(stages)
        self.env = environment(settings, **env)
        self.log_path = logs / f"{name}.log"
        self.popen: subprocess.Popen[bytes] | None = None
        self.kills = 0

    def start(self, **env: str) -> Process:
        command = [CLI, "run"]
        for stage in self.stages:
            command += ["--stage", stage]
        log = self.log_path.open("ab")
        self.popen = subprocess.Popen(
            command, env={**self.env, **env}, stdout=log, stderr=subprocess.STDOUT
        )
        return self

    @property
    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def kill9(self) -> None:
        if self.alive:
            assert self.popen is not None
            self.popen.send_signal(signal.SIGKILL)
            self.popen.wait(timeout=30)
            self.kills += 1

    def pause(self) -> None:
        assert self.popen is not None
        self.popen.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.popen is not None
        self.popen.send_signal(signal.SIGCONT)

    def stop(self) -> int | None:
        """SIGTERM, as an orchestrator would; returns the exit code."""
        if self.popen is None:
            return None
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        return self.popen.returncode

    def died_by_itself(self) -> bool:
        """Exited with SIGKILL without our asking: a crash point fired."""
        return self.popen is not None and self.popen.poll() == -signal.SIGKILL

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def leads(self, role: str) -> bool:
        """Whether this process publishes `role` now, as its /metrics says (METRICS_PORT)."""
        port = self.env.get("METRICS_PORT")
        assert port, f"{self.name} has no METRICS_PORT"
        if not self.alive:
            return False
        try:
            text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
        except httpx.HTTPError:
            return False
        return f'fulfillment_leading{{role="{role}"}} 1.0' in text


async def decisions_published(settings: Settings) -> int:
    """How many decision messages the service has published so far (all partitions)."""
    consumer = AIOKafkaConsumer(**settings.kafka_client_options(), enable_auto_commit=False)
    await consumer.start()
    try:
        topic = settings.topics.decisions
        partitions = await partitions_of(consumer, topic, wait_seconds=30)
        ends = await consumer.end_offsets([TopicPartition(topic, p) for p in partitions])
        return sum(ends.values())
    finally:
        await consumer.stop()


async def progressed(
    settings: Settings,
    since: int,
    *,
    by: int = 10,
    unless: asyncio.Task[None] | None = None,
    timeout: float = 120,
) -> int:
    """Waits until the service has published `by` decisions more than `since`, so that a fault
    strikes a service that is working, whatever the machine's speed; returns the new count.
    Returns at once when `unless` (the workload's publisher) has finished: no more is owed."""
    deadline = time.monotonic() + timeout
    while True:
        count = await decisions_published(settings)
        if count >= since + by or (unless is not None and unless.done()):
            return count
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"no progress within {timeout} s: {count} decisions, {since} before"
            )
        await asyncio.sleep(0.2)
