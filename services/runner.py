"""Runs the chosen stages in one process until SIGTERM or SIGINT, then stops them cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable, Collection
from typing import Any

from services.allocation.worker import AllocationHandler
from services.bootstrap import build_allocation, build_intake
from services.intake.worker import IntakeHandler
from services.kafka import BatchConsumer, check_partition_count, ensure_topics, make_producer
from services.logs import get_logger
from services.relay import Relay, allocation_outgoing, intake_outgoing
from services.settings import Settings
from services.store import redact

log = get_logger(__name__)

STAGES = ("intake", "allocation", "relay")


async def serve(settings: Settings, stages: Collection[str] = STAGES) -> None:
    """Starts the stages; returns when they have all stopped."""
    counts = await ensure_topics(settings)
    topics = settings.topics
    log.info(
        "starting",
        stages=sorted(stages),
        kafka=settings.kafka_bootstrap_servers,
        database=redact(settings.database_url),
    )
    runners: list[tuple[str, Callable[[], Awaitable[None]], Callable[[], None]]] = []
    cleanups: list[Callable[[], Awaitable[Any]]] = []
    keep: list[Any] = []  # eventsourcing closes an application's pool when it is collected

    needs_intake = {"intake", "relay"} & set(stages)
    needs_allocation = {"allocation", "relay"} & set(stages)
    intake = await asyncio.to_thread(build_intake, settings) if needs_intake else None
    allocation = await asyncio.to_thread(build_allocation, settings) if needs_allocation else None
    keep += [intake, allocation]
    sku_partitions = counts[topics.sku_commands]
    if intake is not None:
        check_partition_count(intake.process_recorder, topics.sku_commands, sku_partitions)
    if allocation is not None:
        check_partition_count(allocation.process_recorder, topics.sku_commands, sku_partitions)

    if "intake" in stages and intake is not None:
        intake_loop = BatchConsumer(
            settings,
            topics.inputs(),
            f"{settings.consumer_group}-intake",
            IntakeHandler(intake, settings),
        )
        runners.append(("intake", intake_loop.run, intake_loop.stop))
    if "allocation" in stages and allocation is not None:
        allocation_loop = BatchConsumer(
            settings,
            [topics.sku_commands],
            f"{settings.consumer_group}-allocation",
            AllocationHandler(allocation),
        )
        runners.append(("allocation", allocation_loop.run, allocation_loop.stop))
    if "relay" in stages and intake is not None and allocation is not None:
        producer = make_producer(settings)
        await producer.start()
        cleanups.append(producer.stop)
        for relay in (
            Relay(topics.sku_commands, intake, intake_outgoing(settings), producer, settings),
            Relay(topics.decisions, allocation, allocation_outgoing(settings), producer, settings),
        ):
            runners.append((f"relay:{relay.name}", relay.run, relay.stop))

    stop_all = [stop for _, _, stop in runners]
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, lambda: [stop() for stop in stop_all])
    tasks = {asyncio.create_task(run(), name=name): name for name, run, _ in runners}
    log.info("running", stages=[name for name, _, _ in runners])
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            if task.exception() is not None:
                log.error("stage failed", stage=tasks[task], error=repr(task.exception()))
                for stop in stop_all:
                    stop()
        await asyncio.gather(*tasks, return_exceptions=True)
        for task in tasks:
            if not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
    finally:
        for cleanup in cleanups:
            await cleanup()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)
        log.info("stopped")
