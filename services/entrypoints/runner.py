"""Runs the chosen stages in one process until SIGTERM or SIGINT, then stops them cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
from collections.abc import Awaitable, Callable, Collection, Coroutine
from typing import Any

import prometheus_client
import psycopg
import uvicorn
from aiokafka.admin import AIOKafkaAdminClient
from eventsourcing.persistence import PersistenceError

from projections.publisher import publish_changes
from projections.runner import ReadModels, follow
from services.adapters.kafka import (
    BatchConsumer,
    ConfigurationError,
    check_partition_count,
    ensure_topics,
    make_producer,
)
from services.adapters.logs import get_logger
from services.adapters.relay import Relay
from services.adapters.settings import Settings
from services.adapters.store import DatabaseUrlError, redact
from services.allocation.application import Allocation
from services.allocation.consumer import AllocationHandler
from services.allocation.outbox import allocation_outgoing
from services.entrypoints.bootstrap import build_allocation, build_intake, build_read_models
from services.entrypoints.http import create_app
from services.intake.application import Intake
from services.intake.consumer import IntakeHandler
from services.intake.outbox import intake_outgoing

log = get_logger(__name__)

STAGES = ("intake", "allocation", "relay", "projections", "api")

Task = tuple[str, Callable[[], Coroutine[Any, Any, None]], Callable[[], None]]


class Service:
    """The stages of one process; `run()` returns once `stop()` was called and all stopped."""

    def __init__(self, settings: Settings, stages: Collection[str] = STAGES) -> None:
        self.settings = settings
        self.stages = set(stages)
        self.intake: Intake | None = None
        self.allocation: Allocation | None = None
        self.read_models: ReadModels | None = None
        self.api: uvicorn.Server | None = None
        self._tasks: list[Task] = []
        self._cleanups: list[Callable[[], Awaitable[Any]]] = []
        self._stopping = asyncio.Event()
        self.started = asyncio.Event()

    async def _build(self) -> None:
        settings, topics, stages = self.settings, self.settings.topics, self.stages
        if "api" in stages:
            _check_port_free(settings.http_host, settings.http_port)
        elif settings.metrics_port is not None:
            self._serve_metrics(settings.http_host, settings.metrics_port)
        counts = await ensure_topics(settings)
        log.info(
            "starting",
            stages=sorted(stages),
            kafka=settings.kafka_bootstrap_servers,
            database=redact(settings.database_url),
        )
        await self._open_stores()
        pinned = {
            check_partition_count(
                app.process_recorder, topics.sku_commands, counts[topics.sku_commands]
            )
            for app in (self.intake, self.allocation)
            if app is not None
        }
        if len(pinned) > 1:
            raise ConfigurationError(
                f"intake's and allocation's stores pin {topics.sku_commands!r} to different "
                f"partition counts ({sorted(pinned)}): they are not one deployment's stores; "
                "check DATABASE_URL"
            )
        if "intake" in stages and self.intake is not None:
            self._consume("intake", topics.inputs(), IntakeHandler(self.intake, settings))
        if "allocation" in stages and self.allocation is not None:
            self._consume("allocation", [topics.sku_commands], AllocationHandler(self.allocation))
        if "relay" in stages and self.intake is not None and self.allocation is not None:
            await self._relay(self.intake, self.allocation, sku_partitions=pinned.pop())

        if "projections" in stages and self.read_models is not None:
            self._follow(self.read_models)
        if "api" in stages and self.read_models is not None:
            await self._serve_api(self.read_models)

    def _serve_metrics(self, host: str, port: int) -> None:
        """Stages without the HTTP API still show their metrics (a relay's lead, a lag)."""
        _check_port_free(host, port, "METRICS_PORT")
        server, _ = prometheus_client.start_http_server(port, addr=host)

        async def stop() -> None:
            await asyncio.to_thread(server.shutdown)
            server.server_close()

        self._cleanups.append(stop)
        log.info("serving metrics", port=port)

    async def _open_stores(self) -> None:
        settings, stages = self.settings, self.stages
        try:
            if {"intake", "relay"} & stages:
                self.intake = await asyncio.to_thread(build_intake, settings)
            if {"allocation", "relay", "projections", "api"} & stages:
                self.allocation = await asyncio.to_thread(build_allocation, settings)
            if {"projections", "api"} & stages and self.allocation is not None:
                self.read_models = await asyncio.to_thread(
                    build_read_models, settings, self.allocation
                )
        except (DatabaseUrlError, PersistenceError, OSError, psycopg.Error) as error:
            raise ConfigurationError(
                f"cannot open the store at {redact(settings.database_url)} ({error}); "
                "start PostgreSQL (make postgres) or fix DATABASE_URL"
            ) from error

    async def _relay(self, intake: Intake, allocation: Allocation, *, sku_partitions: int) -> None:
        """`sku_partitions`: the count pinned in the stores (check_partition_count)."""
        settings, topics = self.settings, self.settings.topics
        producer = make_producer(settings)
        await producer.start()
        self._cleanups.append(producer.stop)
        for relay in (
            Relay(
                topics.sku_commands,
                intake,
                intake_outgoing(settings, sku_partitions),
                producer,
                settings,
            ),
            Relay(topics.decisions, allocation, allocation_outgoing(settings), producer, settings),
        ):
            self._tasks.append((f"relay:{relay.name}", relay.run, relay.stop))

    def _follow(self, models: ReadModels) -> None:
        stopping = asyncio.Event()

        async def feed() -> None:
            await follow(models, stopping, idle=self.settings.relay_idle_interval)

        self._tasks.append(("projections", feed, stopping.set))
        if self.settings.publish_read_models:

            async def stream() -> None:
                producer = make_producer(self.settings)
                await producer.start()
                try:
                    await publish_changes(models, producer, self.settings, stopping)
                finally:
                    await producer.stop()

            self._tasks.append(("projections:publish", stream, stopping.set))

    async def _serve_api(self, models: ReadModels) -> None:
        admin = AIOKafkaAdminClient(**self.settings.kafka_client_options())
        await admin.start()
        self._cleanups.append(admin.close)

        async def kafka_ready() -> None:
            await admin.describe_cluster()

        app = create_app(models, self.settings, kafka_ready)
        config = uvicorn.Config(
            app,
            host=self.settings.http_host,
            port=self.settings.http_port,
            log_level="warning",
            lifespan="off",
        )
        server = uvicorn.Server(config)
        self.api = server

        async def serve() -> None:
            await server.serve()

        def stop() -> None:
            server.should_exit = True

        self._tasks.append(("api", serve, stop))

    def _consume(self, stage: str, topics: list[str], handler: Any) -> None:
        loop = BatchConsumer(
            self.settings, topics, f"{self.settings.consumer_group}-{stage}", handler
        )
        self._tasks.append((stage, loop.run, loop.stop))

    def stop(self) -> None:
        self._stopping.set()
        for _, _, stop in self._tasks:
            stop()

    async def run(self) -> None:
        try:
            await self._build()
            if self._stopping.is_set():
                return
            tasks = {asyncio.create_task(run(), name=name): name for name, run, _ in self._tasks}
            log.info("running", stages=list(tasks.values()))
            self.started.set()
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            failed = [task for task in done if not task.cancelled() and task.exception()]
            for task in failed:
                log.error("stage failed; stopping", stage=tasks[task], error=repr(task.exception()))
            if failed:
                self.stop()
            await asyncio.gather(*tasks, return_exceptions=True)
            if failed:
                raise failed[0].exception()  # type: ignore[misc]
        finally:
            for cleanup in self._cleanups:
                await cleanup()
            log.info("stopped")


def _check_port_free(host: str, port: int, variable: str = "HTTP_PORT") -> None:
    """uvicorn exits the whole process when it cannot bind; say why before that happens."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            raise ConfigurationError(
                f"cannot serve HTTP on {host}:{port} ({error.strerror}); "
                f"stop what uses it or set {variable}"
            ) from error


async def serve(settings: Settings, stages: Collection[str] = STAGES) -> None:
    """Runs until SIGTERM or SIGINT: the batch in flight commits, then everything closes."""
    service = Service(settings, stages)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, service.stop)
    try:
        await service.run()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)
