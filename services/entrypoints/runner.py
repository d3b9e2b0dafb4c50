"""Runs the chosen stages in one process until SIGTERM or SIGINT, then stops them cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
from collections.abc import Awaitable, Callable, Collection, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import prometheus_client
import psycopg
from aiokafka.admin import AIOKafkaAdminClient
from eventsourcing.persistence import PersistenceError

from services.adapters.clock import Clock
from services.adapters.kafka import (
    BatchConsumer,
    BatchHandler,
    ConfigurationError,
    check_partition_count,
    ensure_topics,
    make_producer,
)
from services.adapters.logs import get_logger
from services.adapters.relay import Relay
from services.adapters.settings import Settings
from services.adapters.store import DatabaseUrlError, redact
from services.adapters.wakeup import Commits, LogWatcher, Wakeup
from services.allocation.application import Allocation
from services.allocation.consumer import AllocationHandler
from services.allocation.outbox import allocation_outgoing
from services.entrypoints.bootstrap import build_allocation, build_intake, build_read_models
from services.intake.application import Intake
from services.intake.consumer import IntakeHandler
from services.intake.outbox import intake_outgoing

if TYPE_CHECKING:  # imported where used: a process without them starts faster
    import uvicorn

    from projections.runner import ReadModels

log = get_logger(__name__)

T = TypeVar("T")
Store = Literal["intake", "allocation", "read_models"]
Task = tuple[str, Callable[[], Coroutine[Any, Any, None]], Callable[[], None]]


@dataclass(frozen=True)
class Stage:
    """What a stage needs opened before it starts, and how it starts: `start` adds the
    stage's tasks (run, stop) and cleanups to the service, its stores being open by then."""

    needs: frozenset[Store]
    start: Callable[[Service], Awaitable[None]]


async def _start_intake(service: Service) -> None:
    settings = service.settings
    handler = IntakeHandler(_opened(service.intake), settings)
    service.writers["intake"] = handler
    service.consume("intake", settings.topics.inputs(), handler, service.commits["intake"])


async def _start_allocation(service: Service) -> None:
    handler = AllocationHandler(_opened(service.allocation))
    service.writers["allocation"] = handler
    topics = [service.settings.topics.sku_commands]
    service.consume("allocation", topics, handler, service.commits["allocation"])


async def _start_intake_relay(service: Service) -> None:
    """Intake's log to sku-commands, routing SKUs with the count pinned in the stores."""
    settings = service.settings
    translate = intake_outgoing(settings, _opened(service.sku_partitions))
    await _relay(service, settings.topics.sku_commands, _opened(service.intake), translate)


async def _start_allocation_relay(service: Service) -> None:
    """Allocation's log to the decisions (and dead-letter) topics."""
    settings = service.settings
    translate = allocation_outgoing(settings)
    await _relay(service, settings.topics.decisions, _opened(service.allocation), translate)


async def _relay(service: Service, name: str, app: Any, translate: Any) -> None:
    producer = make_producer(service.settings)
    await producer.start()
    service.cleanup(f"relay producer ({name})", producer.stop)
    wakeup = service.commits[app.name].follower()
    relay = Relay(name, app, translate, producer, service.settings, wakeup=wakeup)
    writer = service.writers.get(app.name)
    if writer is not None:  # the log's writer runs here: it hands over what it commits
        writer.on_recorded = relay.offer
    service.task(f"relay:{relay.name}", relay.run, relay.stop)


async def _start_projections(service: Service) -> None:
    from projections.monitoring import keep_watch
    from projections.publisher import publish_changes
    from projections.runner import follow

    settings, models = service.settings, _opened(service.read_models)
    stopping = asyncio.Event()
    # Woken by each allocation commit; wakes the change stream when a page queued changes.
    wake, changed = service.commits["allocation"].follower(), Wakeup()

    async def feed() -> None:
        await follow(
            models, stopping, idle=settings.relay_idle_interval, wake=wake, changed=changed
        )

    service.task("projections", feed, stopping.set)

    async def watch() -> None:  # their lag and the conservation check, in /metrics
        await keep_watch(models, stopping, check_every=settings.conservation_check_seconds)

    service.task("projections:watch", watch, stopping.set)
    if settings.publish_read_models:

        async def stream() -> None:
            producer = make_producer(settings)
            await producer.start()
            try:
                await publish_changes(models, producer, settings, stopping, changed)
            finally:
                await producer.stop()

        service.task("projections:publish", stream, stopping.set)


async def _start_clock(service: Service) -> None:
    producer = make_producer(service.settings)
    await producer.start()
    service.cleanup("clock producer", producer.stop)
    clock = Clock(service.settings, producer)
    service.task("clock", clock.run, clock.stop)


async def _start_api(service: Service) -> None:
    """Its port was checked before anything else started (Service._build)."""
    import uvicorn

    from services.entrypoints.http import create_app

    settings, models = service.settings, _opened(service.read_models)
    admin = AIOKafkaAdminClient(**settings.kafka_client_options())
    await admin.start()
    service.cleanup("api Kafka admin client", admin.close)

    async def kafka_ready() -> None:
        await admin.describe_cluster()

    app = create_app(models, settings, kafka_ready)
    config = uvicorn.Config(
        app, host=settings.http_host, port=settings.http_port, log_level="warning", lifespan="off"
    )
    server = uvicorn.Server(config)
    service.api = server

    async def serve() -> None:
        await server.serve()

    def stop() -> None:
        server.should_exit = True

    service.task("api", serve, stop)


# The one place that says what each stage needs and how it starts; they start in this order.
STAGE_TABLE: dict[str, Stage] = {
    "intake": Stage(frozenset({"intake"}), _start_intake),
    "intake-relay": Stage(frozenset({"intake"}), _start_intake_relay),
    "allocation": Stage(frozenset({"allocation"}), _start_allocation),
    "allocation-relay": Stage(frozenset({"allocation"}), _start_allocation_relay),
    "projections": Stage(frozenset({"allocation", "read_models"}), _start_projections),
    "api": Stage(frozenset({"allocation", "read_models"}), _start_api),
    "clock": Stage(frozenset(), _start_clock),
}
STAGES = tuple(STAGE_TABLE)
# Names that stand for several stages: `--stage relay` runs both relays, as it always did.
ALIASES: dict[str, tuple[str, ...]] = {"relay": ("intake-relay", "allocation-relay")}
# Which log each stage writes, and which logs it follows: a follower in a process without
# the log's writer is woken by a LogWatcher (services.adapters.wakeup).
WRITES = {"intake": "intake", "allocation": "allocation"}
FOLLOWS = {"intake-relay": "intake", "allocation-relay": "allocation", "projections": "allocation"}


def expand(stages: Collection[str]) -> list[str]:
    """Stage names with aliases replaced by what they stand for, in the table's order."""
    named = {part for stage in stages for part in ALIASES.get(stage, (stage,))}
    return [stage for stage in STAGES if stage in named] + sorted(named - set(STAGES))


class Service:
    """The stages of one process; `run()` returns once `stop()` was called and all stopped."""

    def __init__(self, settings: Settings, stages: Collection[str] = STAGES) -> None:
        self.settings = settings
        self.stages = set(expand(stages))
        # Set after each commit to a log, to wake the relay or read models that follow it.
        self.commits: dict[str, Commits] = {"intake": Commits(), "allocation": Commits()}
        self.writers: dict[str, IntakeHandler | AllocationHandler] = {}
        self.intake: Intake | None = None
        self.allocation: Allocation | None = None
        self.read_models: ReadModels | None = None
        self.sku_partitions: int | None = None  # pinned in the stores (check_partition_count)
        self.api: uvicorn.Server | None = None
        self._tasks: list[Task] = []
        # Every cleanup runs, in reverse order, even when one before it fails (see cleanup).
        self._cleanups = contextlib.AsyncExitStack()
        self._stopping = asyncio.Event()
        self.started = asyncio.Event()

    def task(
        self, name: str, run: Callable[[], Coroutine[Any, Any, None]], stop: Callable[[], None]
    ) -> None:
        """A task `run()` starts, and how to ask it to finish (it must then return)."""
        self._tasks.append((name, run, stop))

    def cleanup(self, what: str, close: Callable[[], Awaitable[Any]]) -> None:
        """Something to close once the tasks ended; its error is logged, the rest still run."""

        async def logged() -> None:
            try:
                await close()
            except Exception as error:
                log.error("cleanup failed", cleanup=what, error=repr(error))

        self._cleanups.push_async_callback(logged)

    def consume(
        self, stage: str, topics: list[str], handler: BatchHandler, committed: Commits
    ) -> None:
        loop = BatchConsumer(
            self.settings,
            topics,
            f"{self.settings.consumer_group}-{stage}",
            handler,
            on_commit=committed.set,
        )
        self.task(stage, loop.run, loop.stop)

    def _watch_logs(self) -> None:
        """Followers of a log written in another process: woken by a LogWatcher."""
        written_here = {WRITES[stage] for stage in self.stages if stage in WRITES}
        followed = {FOLLOWS[stage] for stage in self.stages if stage in FOLLOWS}
        apps = {"intake": self.intake, "allocation": self.allocation}
        for name in sorted(followed - written_here):
            app = _opened(apps[name])
            watcher = LogWatcher(app.recorder, self.commits[name])
            watcher.start()

            async def stop(watcher: LogWatcher = watcher) -> None:
                await asyncio.to_thread(watcher.stop)

            self.cleanup(f"log watcher ({name})", stop)

    async def _build(self) -> None:
        settings, topics = self.settings, self.settings.topics
        stages = [STAGE_TABLE[name] for name in STAGES if name in self.stages]
        if "api" in self.stages:
            _check_port_free(settings.http_host, settings.http_port)
        elif settings.metrics_port is not None:
            self._serve_metrics(settings.http_host, settings.metrics_port)
        counts = await ensure_topics(settings)
        log.info(
            "starting",
            stages=sorted(self.stages),
            kafka=settings.kafka_bootstrap_servers,
            database=redact(settings.database_url),
        )
        await self._open_stores(frozenset().union(*(stage.needs for stage in stages)))
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
        self.sku_partitions = next(iter(pinned), None)
        self._watch_logs()
        for stage in stages:
            await stage.start(self)

    def _serve_metrics(self, host: str, port: int) -> None:
        """Stages without the HTTP API still show their metrics (a relay's lead, a lag)."""
        _check_port_free(host, port, "METRICS_PORT")
        server, _ = prometheus_client.start_http_server(port, addr=host)

        async def stop() -> None:
            await asyncio.to_thread(server.shutdown)
            server.server_close()

        self.cleanup("metrics server", stop)
        log.info("serving metrics", port=port)

    async def _open_stores(self, needed: frozenset[Store]) -> None:
        """Opens what the stages need; read models are built over the allocation store."""
        settings = self.settings
        try:
            if "intake" in needed:
                self.intake = await asyncio.to_thread(build_intake, settings)
            if "allocation" in needed:
                self.allocation = await asyncio.to_thread(build_allocation, settings)
            if "read_models" in needed:
                self.read_models = await asyncio.to_thread(
                    build_read_models, settings, _opened(self.allocation)
                )
        except (DatabaseUrlError, PersistenceError, OSError, psycopg.Error) as error:
            raise ConfigurationError(
                f"cannot open the store at {redact(settings.database_url)} ({error}); "
                "start PostgreSQL (make postgres) or fix DATABASE_URL"
            ) from error

    def stop(self) -> None:
        self._stopping.set()
        for _, _, stop in self._tasks:
            stop()

    async def run(self) -> None:
        try:
            async with self._cleanups:
                await self._build()
                if self._stopping.is_set():
                    return
                tasks = {
                    asyncio.create_task(run(), name=name): name for name, run, _ in self._tasks
                }
                log.info("running", stages=list(tasks.values()))
                self.started.set()
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
                failed = [task for task in done if not task.cancelled() and task.exception()]
                for task in failed:
                    log.error(
                        "stage failed; stopping", stage=tasks[task], error=repr(task.exception())
                    )
                if failed:
                    self.stop()
                await asyncio.gather(*tasks, return_exceptions=True)
                if failed:
                    raise failed[0].exception()  # type: ignore[misc]
        finally:
            log.info("stopped")


def _opened(value: T | None) -> T:
    """A store or count the stage table promised to open before the stage starts."""
    assert value is not None, "a stage started without what STAGE_TABLE says it needs"
    return value


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
