"""`fulfillment run` measured from outside its process, as a user starts it (issue 10).

The service runs as OS processes (`.venv/bin/fulfillment run [--stage ...]`), each in a
session of its own so that kill -9 of its process group takes any child it starts too, on
fresh topics, a fresh consumer group, a fresh store and free ports. A librdkafka producer
publishes the orders; a librdkafka consumer reads the decisions. A line's latency is the
CreateTime of its first decision record (LineAllocated, LineBackordered or LineRejected
naming the line) minus the CreateTime of its order record: one host clock stamps both.

What the service is made of is not imported: only its settings' names (the environment),
its CLI, its topics and the store tables bench/README.md names (the allocation log's head,
the read models' positions) are used, so that the benchmark keeps measuring while the
service changes inside. Figures only: nothing here judges a target (bench/report.py does).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import random
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

import httpx
import orjson
import psutil
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    ConsumerGroupState,
    KafkaError,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from events.inputs import OrderLine, OrderPlaced, StockReceived
from events.topics import DEFAULT_TOPICS
from services.adapters.settings import Settings, Topics

REPO = Path(__file__).resolve().parent.parent
PHASES = (
    "ceiling",
    "full",
    "paced",
    "onebyone",
    "stages",
    "scaleout",
    "recovery",
    "rebuild",
    "memory",
)
FIRST_DECISIONS = frozenset({"LineAllocated", "LineBackordered", "LineRejected"})
SAMPLE_EVERY_S = 0.5
STAGE_PROCESSES = ("intake", "allocation", "relay", "projections", "api")
T0 = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)  # business time of the orders
MB = 1024 * 1024

# (label, stages): no stages is `fulfillment run` with every stage, as a user starts it.
Layout = Sequence[tuple[str, Sequence[str]]]
ONE_COMMAND: Layout = (("service", ()),)
FIVE_PROCESSES: Layout = tuple((stage, (stage,)) for stage in STAGE_PROCESSES)
LineKey = tuple[str, str]  # (order_id, line_id)
Attempt = Callable[[str, Callable[[], Any]], Any]


def say(message: str) -> None:
    """Progress goes to stderr: stdout carries the JSON document only."""
    print(f"[{time.strftime('%H:%M:%S')}]   {message}", file=sys.stderr, flush=True)


def fulfillment_command() -> str:
    """The command users run: `.venv/bin/fulfillment`, beside the interpreter otherwise."""
    venv = REPO / ".venv" / "bin" / "fulfillment"
    return str(venv if venv.exists() else Path(sys.executable).parent / "fulfillment")


@dataclass(frozen=True)
class Options:
    """Sizes and choices of one run; bench/run.py fills them from its flags."""

    kafka: str
    phases: tuple[str, ...] = PHASES
    stores: tuple[str, ...] = ("sqlite", "postgres")
    lines: int = 200_000
    skus: int = 2_000
    hot_skus: int = 5
    hot_share: float = 0.2
    rates: tuple[float, ...] = (1_000.0,)
    seconds: float = 30.0
    onebyone_lines: int = 10_000
    stages_stores: tuple[str, ...] = ("postgres",)
    scaleout_lines: int = 50_000
    scaleout_processes: tuple[int, ...] = (1, 2, 3)
    recovery_rate: float = 500.0
    recovery_seconds: float = 30.0
    memory_skus: tuple[int, ...] = (10_000, 100_000)
    timeout: float = 900.0
    keep: bool = False
    seed: int = 10

    def document(self) -> dict[str, Any]:
        found = asdict(self)
        found.pop("kafka")
        return found


# --- the workload --------------------------------------------------------------------------


@dataclass(frozen=True)
class Order:
    order_id: str
    value: bytes  # the OrderPlaced record as published
    line_ids: tuple[str, ...]

    def line_keys(self) -> list[LineKey]:
        return [(self.order_id, line_id) for line_id in self.line_ids]


@dataclass
class Workload:
    """Orders, and the receipts that let about half of their demand be allocated."""

    orders: list[Order]
    receipts: list[tuple[str, bytes]] = field(default_factory=list)  # (sku, StockReceived)

    @property
    def lines(self) -> int:
        return sum(len(order.line_ids) for order in self.orders)

    def line_keys(self) -> list[LineKey]:
        return [key for order in self.orders for key in order.line_keys()]

    def records(self) -> Iterator[tuple[str, bytes]]:
        return ((order.order_id, order.value) for order in self.orders)


def _uuid(rng: random.Random) -> uuid.UUID:
    return uuid.UUID(int=rng.getrandbits(128), version=4)


def skewed_orders(
    lines: int,
    skus: int,
    *,
    hot_skus: int,
    hot_share: float,
    seed: int,
    prefix: str,
    supply: float = 0.5,
) -> Workload:
    """Orders of 1–3 lines (`lines` in all) over `skus` SKUs, `hot_share` of the lines on
    the first `hot_skus` of them; one receipt per SKU ordered, bringing `supply` of its
    demand. Built through the contract's models, so every record is valid; seeded."""
    if skus < 3 or not 0 < hot_skus < skus:
        raise ValueError("need at least 3 SKUs, some of them hot and some not")
    rng = random.Random(seed)
    names = [f"SKU-{index:04d}" for index in range(skus)]
    hot, rest = names[:hot_skus], names[hot_skus:]
    demand: dict[str, int] = {}
    orders: list[Order] = []
    placed = 0
    while placed < lines:
        count = min(rng.randint(1, 3), lines - placed)
        chosen: list[str] = []
        while len(chosen) < count:
            sku = rng.choice(hot if rng.random() < hot_share else rest)
            if sku not in chosen:
                chosen.append(sku)
        order_lines = [
            OrderLine(line_id=f"L{number}", sku=sku, quantity=rng.randint(1, 5))
            for number, sku in enumerate(chosen, start=1)
        ]
        for line in order_lines:
            demand[line.sku] = demand.get(line.sku, 0) + line.quantity
        order_id = f"{prefix}-{len(orders)}"
        body = OrderPlaced(
            event_id=_uuid(rng),
            occurred_at=T0 + timedelta(milliseconds=len(orders)),
            order_id=order_id,
            customer_id=f"C-{rng.randint(1, 5_000)}",
            priority=1 if rng.random() < 0.1 else 0,
            lines=order_lines,
        )
        orders.append(
            Order(
                order_id,
                body.model_dump_json().encode(),
                tuple(f"L{n}" for n in range(1, count + 1)),
            )
        )
        placed += count
    receipts = [
        (
            sku,
            StockReceived(
                event_id=_uuid(rng),
                occurred_at=T0,
                receipt_id=f"R-{prefix}-{sku}",
                sku=sku,
                quantity=max(1, int(quantity * supply)),
            )
            .model_dump_json()
            .encode(),
        )
        for sku, quantity in sorted(demand.items())
    ]
    return Workload(orders, receipts)


def one_backorder_per_sku(first: int, count: int, *, seed: int) -> Workload:
    """`count` one-line orders of one unit, each on a SKU of its own that has no stock:
    every one of them opens a backorder."""
    rng = random.Random(seed)
    orders = []
    for index in range(first, first + count):
        order_id = f"M-{index}"
        body = OrderPlaced(
            event_id=_uuid(rng),
            occurred_at=T0 + timedelta(milliseconds=index),
            order_id=order_id,
            customer_id=f"C-{index % 5_000}",
            lines=[OrderLine(line_id="L1", sku=f"M-{index:06d}", quantity=1)],
        )
        orders.append(Order(order_id, body.model_dump_json().encode(), ("L1",)))
    return Workload(orders)


# --- Kafka ---------------------------------------------------------------------------------


class Publisher:
    """A librdkafka producer (linger 5 ms, acks all, idempotent) that keeps each record's
    CreateTime by key, from its delivery report."""

    def __init__(self, kafka: str) -> None:
        self.producer = Producer(
            {
                "bootstrap.servers": kafka,
                "linger.ms": 5,
                "acks": "all",
                "enable.idempotence": True,
                "queue.buffering.max.messages": 1_000_000,
                "log_level": 5,  # notices and worse: not librdkafka's info on shutdown
            }
        )
        self.sent_ms: dict[str, int] = {}
        self.failures: list[str] = []

    def _delivered(self, error: KafkaError | None, message: Message) -> None:
        if error is not None:
            self.failures.append(str(error))
            return
        key = message.key()
        if key is not None:
            self.sent_ms[key.decode()] = message.timestamp()[1]

    def _produce(self, topic: str, key: str, value: bytes) -> None:
        while True:
            try:
                self.producer.produce(topic, value, key.encode(), on_delivery=self._delivered)
                return
            except BufferError:  # the local queue is full: let deliveries drain it
                self.producer.poll(0.05)

    def flat_out(self, topic: str, records: Iterable[tuple[str, bytes]]) -> float:
        """Publishes as fast as librdkafka goes; returns seconds until all are acknowledged."""
        started = time.perf_counter()
        for count, (key, value) in enumerate(records):
            self._produce(topic, key, value)
            if count % 1_000 == 0:
                self.producer.poll(0)
        self.flush()
        return time.perf_counter() - started

    def paced(self, topic: str, orders: Sequence[Order], lines_per_s: float) -> float:
        """Offers `lines_per_s` order lines a second, evenly: an order is due once the lines
        before it are; what is due is sent and flushed at once, so nothing waits in linger.
        Returns the seconds it took."""
        started = time.perf_counter()
        due_lines = 0
        index = 0
        while index < len(orders):
            now = time.perf_counter()
            sent = False
            while index < len(orders) and started + due_lines / lines_per_s <= now:
                order = orders[index]
                self._produce(topic, order.order_id, order.value)
                due_lines += len(order.line_ids)
                index += 1
                sent = True
            if sent:
                self.producer.flush(10)
            if index < len(orders):
                delay = started + due_lines / lines_per_s - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
        self.flush()
        return time.perf_counter() - started

    def flush(self) -> None:
        left = self.producer.flush(60)
        if left:
            raise RuntimeError(f"{left} records not delivered within 60 s")
        if self.failures:
            raise RuntimeError(f"{len(self.failures)} records failed: {self.failures[0]}")

    def first_sent_ms(self, orders: Iterable[Order]) -> int:
        return min(self.sent_ms[order.order_id] for order in orders)


class DecisionWatch:
    """Reads the decisions topic from its start, in a thread of its own: each line's first
    placement decision, and every decision's timestamp, deduplicated by decision_id."""

    def __init__(self, kafka: str, topic: str) -> None:
        self.topic = topic
        self.consumer = Consumer(
            {
                "bootstrap.servers": kafka,
                "group.id": f"bench-watch-{uuid.uuid4().hex[:10]}",  # assigned, never committed
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "fetch.wait.max.ms": 50,
            }
        )
        self.first: dict[LineKey, int] = {}  # (order_id, line_id): CreateTime ms
        self.timestamps: list[int] = []
        self.kinds: Counter[str] = Counter()
        self.timestamp_types: set[int] = set()
        self.duplicates = 0
        self.error: BaseException | None = None
        self._seen: set[str] = set()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="decision-watch", daemon=True)

    def start(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while True:
            found = self.consumer.list_topics(self.topic, timeout=5).topics.get(self.topic)
            if found is not None and found.error is None and found.partitions:
                break
            if time.monotonic() >= deadline:
                raise TimeoutError(f"topic {self.topic} has no partitions after {timeout} s")
            time.sleep(0.2)
        self.consumer.assign(
            [TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in sorted(found.partitions)]
        )
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)

    def _run(self) -> None:
        try:
            while not self._stopping.is_set():
                for message in self.consumer.consume(num_messages=5_000, timeout=0.1):
                    if message.error() is None:
                        self._take(message)
        except BaseException as error:
            self.error = error
        finally:
            self.consumer.close()

    def _take(self, message: Message) -> None:
        value = message.value()
        if value is None:
            return
        body = orjson.loads(value)
        decision_id = str(body.get("decision_id"))
        if decision_id in self._seen:
            self.duplicates += 1
            return
        self._seen.add(decision_id)
        kind, at = message.timestamp()
        self.timestamp_types.add(kind)
        self.timestamps.append(at)
        self.kinds[str(body.get("type"))] += 1
        if body.get("type") in FIRST_DECISIONS:
            key = (str(body["order_id"]), str(body["line_id"]))
            known = self.first.get(key)
            if known is None or at < known:
                self.first[key] = at

    def wait_decided(self, keys: Sequence[LineKey], timeout: float) -> list[LineKey]:
        """Waits until every line has its first decision; returns those without one when
        `timeout` has passed (none once all are decided)."""
        deadline = time.monotonic() + timeout
        missing = list(keys)
        while True:
            missing = [key for key in missing if key not in self.first]
            if not missing or time.monotonic() >= deadline:
                return missing
            if self.error is not None:
                raise RuntimeError(f"the decision watch failed: {self.error!r}")
            time.sleep(0.1)

    def decisions_between(self, start_ms: int, end_ms: int) -> int:
        return sum(1 for at in list(self.timestamps) if start_ms <= at <= end_ms)


class Admin:
    """Topics and consumer groups, through librdkafka's admin client."""

    def __init__(self, kafka: str) -> None:
        self.client = AdminClient({"bootstrap.servers": kafka})

    def existing(self) -> set[str]:
        return set(self.client.list_topics(timeout=10).topics)

    def wait_topics(self, names: Iterable[str], timeout: float = 60) -> None:
        wanted = set(names)
        deadline = time.monotonic() + timeout
        while not wanted <= self.existing():
            if time.monotonic() >= deadline:
                raise TimeoutError(f"topics missing after {timeout} s: {wanted - self.existing()}")
            time.sleep(0.2)

    def create(self, partitions: dict[str, int]) -> None:
        topics = [NewTopic(name, num_partitions=count) for name, count in partitions.items()]
        for future in self.client.create_topics(topics, request_timeout=30).values():
            future.result()
        self.wait_topics(partitions)

    def delete(self, names: Iterable[str]) -> None:
        """Best effort: the figures are taken by then."""
        present = sorted(set(names) & self.existing())
        if not present:
            return
        for name, future in self.client.delete_topics(present, request_timeout=30).items():
            try:
                future.result()
            except Exception as error:
                say(f"could not delete topic {name}: {error}")

    def wait_groups_settled(self, prefix: str, members: int, timeout: float = 60) -> None:
        """Until the service's consumer groups (their names start with CONSUMER_GROUP) are
        all stable, one of them with `members` members: no rebalance runs into the timed
        part."""
        deadline = time.monotonic() + timeout
        seen: dict[str, str] = {}
        while time.monotonic() < deadline:
            listed = self.client.list_consumer_groups(request_timeout=10).result()
            ids = [g.group_id for g in listed.valid if g.group_id.startswith(prefix)]
            if ids:
                futures = self.client.describe_consumer_groups(ids, request_timeout=10)
                described = {name: future.result() for name, future in futures.items()}
                seen = {
                    name: f"{d.state.name}, {len(d.members)} members"
                    for name, d in described.items()
                }
                stable = all(d.state == ConsumerGroupState.STABLE for d in described.values())
                if stable and max(len(d.members) for d in described.values()) >= members:
                    return
            time.sleep(0.25)
        raise TimeoutError(f"consumer groups not settled after {timeout} s: {seen}")


# --- the store, read from outside ----------------------------------------------------------


class StoreProbe:
    """The allocation log's head and the read models' position, read straight from the
    store's tables: SQLite `<base>-allocation.db` stored_events MAX(rowid) and
    `<base>-projections.db` projection_positions MIN(position); PostgreSQL
    allocation_events MAX(notification_id) and projection_positions in the schema."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self.postgres = database_url.startswith(("postgresql://", "postgres://"))
        self._connection: Any = None
        if self.postgres:
            parts = urlsplit(database_url)
            schema = parse_qs(parts.query).get("schema")
            self.dsn = parts._replace(query="").geturl()
            self.schema = schema[0] if schema else None
        else:
            base = database_url.removeprefix("sqlite:///").removesuffix(".db")
            self.log_file = Path(f"{base}-allocation.db")
            self.models_file = Path(f"{base}-projections.db")

    def head(self) -> int | None:
        if self.postgres:
            return self._postgres("SELECT MAX(notification_id) FROM {}", "allocation_events", 0)
        return self._sqlite(self.log_file, "SELECT MAX(rowid) FROM stored_events", 0)

    def position(self) -> int | None:
        if self.postgres:
            return self._postgres("SELECT MIN(position) FROM {}", "projection_positions", None)
        return self._sqlite(
            self.models_file, "SELECT MIN(position) FROM projection_positions", None
        )

    def _sqlite(self, path: Path, statement: str, empty: int | None) -> int | None:
        if not path.exists():
            return None
        try:
            connection = sqlite3.connect(f"file:{path}?mode=rw", uri=True, timeout=5)
        except sqlite3.Error:
            return None
        try:
            row = connection.execute(statement).fetchone()
        except sqlite3.Error:
            return None  # not created yet, or busy: this sample has no figure
        finally:
            connection.close()
        return empty if row is None or row[0] is None else int(row[0])

    def _postgres(self, statement: str, table: str, empty: int | None) -> int | None:
        import psycopg
        from psycopg import sql

        name = sql.Identifier(self.schema, table) if self.schema else sql.Identifier(table)
        try:
            if self._connection is None or self._connection.closed:
                self._connection = psycopg.connect(self.dsn, autocommit=True, connect_timeout=10)
            row = self._connection.execute(sql.SQL(statement).format(name)).fetchone()
        except psycopg.errors.UndefinedTable:
            return None
        except psycopg.Error:
            self.close()
            return None
        return empty if row is None or row[0] is None else int(row[0])

    def close(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(Exception):
                self._connection.close()
            self._connection = None


# --- the service's processes ---------------------------------------------------------------


def _clean_environment() -> dict[str, str]:
    """This process's environment without any of the service's settings, so that the
    service runs on its defaults plus what each run sets."""
    settings = {name.upper() for name in Settings.model_fields}
    return {
        name: value
        for name, value in os.environ.items()
        if name.upper() not in settings and not name.upper().startswith("TOPIC_")
    }


def free_ports(count: int) -> list[int]:
    """Ports nothing listens on, all different (held open together while chosen)."""
    with contextlib.ExitStack() as stack:
        probes = [stack.enter_context(socket.socket()) for _ in range(count)]
        for probe in probes:
            probe.bind(("127.0.0.1", 0))
        return [int(probe.getsockname()[1]) for probe in probes]


class ServiceProcess:
    """One `fulfillment run` command, in a session of its own: its process group is the
    service and whatever it starts."""

    def __init__(
        self,
        label: str,
        stages: Sequence[str],
        env: dict[str, str],
        log_path: Path,
        http_port: int | None,
    ) -> None:
        self.label = label
        self.command = [fulfillment_command(), "run"]
        for stage in stages:
            self.command += ["--stage", stage]
        self.env = env
        self.log_path = log_path
        self.http_port = http_port
        self.popen: subprocess.Popen[bytes] | None = None
        self._log_offset = 0

    def start(self) -> float:
        """Starts it; returns the time.time() of the start command."""
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as log:
            started = time.time()
            self.popen = subprocess.Popen(
                self.command,
                env=self.env,
                cwd=REPO,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return started

    @property
    def pid(self) -> int | None:
        return None if self.popen is None else self.popen.pid

    @property
    def alive(self) -> bool:
        return self.popen is not None and not self._exited()

    def _exited(self) -> bool:
        """Whether the command has exited, without reaping it: until it is reaped, its pid
        (its group's id) cannot go to another process, so signalling the group stays safe."""
        if self.popen is None or self.popen.returncode is not None:
            return True
        try:
            found = os.waitid(os.P_PID, self.popen.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return True
        return found is not None

    def _signal_group(self, sig: signal.Signals) -> None:
        if self.popen is not None and self.popen.returncode is None:  # not reaped yet
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, sig)  # its own session: the group id is its pid

    def kill9(self) -> None:
        """kill -9 of the whole service: its process group."""
        self._signal_group(signal.SIGKILL)
        if self.popen is not None:
            self.popen.wait(timeout=30)

    def stop(self, timeout: float = 60) -> int | None:
        """SIGTERM to the whole group, as Ctrl-C in a terminal would; SIGKILL after
        `timeout`, and to whatever of the group outlives its leader."""
        if self.popen is None:
            return None
        if not self._exited():
            self._signal_group(signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while not self._exited() and time.monotonic() < deadline:
                time.sleep(0.05)
            if not self._exited():
                say(f"{self.label} did not stop within {timeout} s: kill -9")
        self._signal_group(signal.SIGKILL)
        return self.popen.wait(timeout=30)

    def wait_ready(self, timeout: float = 120) -> float:
        """Until GET /readyz answers 200 (a process with the API) or it logs "running";
        returns the seconds waited."""
        started = time.monotonic()
        while True:
            if not self.alive:
                code = self.stop()
                raise RuntimeError(f"{self.label} exited ({code}):\n{self.log_tail()}")
            if self._ready():
                return time.monotonic() - started
            if time.monotonic() - started >= timeout:
                raise TimeoutError(f"{self.label} not ready after {timeout} s:\n{self.log_tail()}")
            time.sleep(0.1)

    def _ready(self) -> bool:
        if self.http_port is not None:
            try:
                url = f"http://127.0.0.1:{self.http_port}/readyz"
                return httpx.get(url, timeout=2).status_code == 200
            except httpx.HTTPError:
                return False
        with self.log_path.open("rb") as log:
            log.seek(self._log_offset)
            for line in log:
                with contextlib.suppress(ValueError):
                    if orjson.loads(line).get("event") == "running":
                        return True
        return False

    def log_tail(self, lines: int = 25) -> str:
        if not self.log_path.exists():
            return ""
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(f"    {self.label}| {line}" for line in text[-lines:])


@dataclass(frozen=True)
class Sample:
    at: float  # time.time()
    head: int | None
    position: int | None


class Sampler:
    """Every SAMPLE_EVERY_S: the allocation log's head and the read models' position, and
    the RSS of every process of the service (each command and all of its children)."""

    def __init__(self, probe: StoreProbe, processes: Callable[[], list[ServiceProcess]]) -> None:
        self.probe = probe
        self.processes = processes
        self.samples: list[Sample] = []
        self.rss: list[tuple[float, str, int]] = []  # (time.time(), process, bytes)
        self.commands: dict[str, str] = {}
        self.high_water: dict[str, int] = {}  # the kernel's peak RSS (VmHWM) last read
        self._names: dict[int, str] = {}  # pid: name, kept for the process's life
        self._reading = threading.Lock()  # the sampler's thread and the phase both read
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sampler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stopping.wait(SAMPLE_EVERY_S):
            at = time.time()
            self.samples.append(Sample(at, self.probe.head(), self.probe.position()))
            for name, rss in self.read_rss().items():
                self.rss.append((at, name, rss))

    def read_rss(self) -> dict[str, int]:
        """Each process's RSS now, in bytes, by name: the command's label, and for a child
        it started, label/its stages (from its --stage arguments) or label/its pid."""
        with self._reading:
            return self._read_rss()

    def _read_rss(self) -> dict[str, int]:
        found: dict[str, int] = {}
        living: set[int] = set()
        for process in self.processes():
            if process.pid is None or not process.alive:
                continue
            try:
                root = psutil.Process(process.pid)
                family = [root, *root.children(recursive=True)]
            except psutil.Error:
                continue
            living.update(member.pid for member in family)
            for member in family:
                try:
                    name = self._name(process, member)
                    found[name] = member.memory_info().rss
                except psutil.Error:
                    continue
                peak = _high_water_mark(member.pid)
                if peak is not None:
                    self.high_water[name] = max(peak, self.high_water.get(name, 0))
        # A name outlives its process only until the next reading: a restarted one takes it.
        self._names = {pid: name for pid, name in self._names.items() if pid in living}
        return found

    def _name(self, process: ServiceProcess, member: psutil.Process) -> str:
        known = self._names.get(member.pid)
        if known is not None:
            return known
        cmdline = member.cmdline()
        if member.pid == process.pid:
            name = process.label
        else:
            stages = [cmdline[n + 1] for n, part in enumerate(cmdline[:-1]) if part == "--stage"]
            name = f"{process.label}/{'+'.join(stages) if stages else member.pid}"
            taken = set(self._names.values())
            if name in taken:
                name = next(f"{name}#{n}" for n in range(2, 1_000) if f"{name}#{n}" not in taken)
        self._names[member.pid] = name
        self.commands.setdefault(name, _short_command(cmdline))
        return name

    def peaks_mb(self, since: float = 0.0) -> dict[str, float]:
        peaks: dict[str, int] = {}
        for at, name, rss in list(self.rss):
            if at >= since:
                peaks[name] = max(rss, peaks.get(name, 0))
        return {name: round(rss / MB, 1) for name, rss in sorted(peaks.items())}

    def rss_now_mb(self) -> dict[str, float]:
        return {name: round(rss / MB, 1) for name, rss in sorted(self.read_rss().items())}

    def report(self, since: float = 0.0) -> dict[str, Any]:
        """Per process: its command, the peak of the RSS sampled, and the kernel's own peak
        (VmHWM, over the process's life) where the system gives it."""
        peaks = self.peaks_mb(since)
        self.read_rss()  # a last reading of the high-water marks
        return {
            name: {
                "command": self.commands.get(name, ""),
                "peak_rss_mb_sampled": peak,
                "peak_rss_mb_kernel": (
                    round(self.high_water[name] / MB, 1) if name in self.high_water else None
                ),
            }
            for name, peak in peaks.items()
        }


def _short_command(cmdline: list[str]) -> str:
    return " ".join(Path(part).name if part.startswith("/") else part for part in cmdline)[:160]


def _high_water_mark(pid: int) -> int | None:
    """The process's peak RSS as the kernel counts it (Linux /proc/PID/status VmHWM)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


class Deployment:
    """One service under measurement: its own topics, consumer group, ports and store, its
    processes, a watch on its decisions and a sampler of its store and memory."""

    def __init__(
        self, options: Options, database_url: str, layout: Layout, logs: Path, **env: str
    ) -> None:
        self.options = options
        self.database_url = database_url
        self.name = f"bench-{uuid.uuid4().hex[:10]}"
        self.topics = {  # every TOPIC_* setting, its default name with a random suffix
            setting: f"{DEFAULT_TOPICS.get(setting, setting)}-{self.name}"
            for setting in Topics.model_fields
        }
        self.env = _clean_environment()
        self.env.update(
            KAFKA_BOOTSTRAP_SERVERS=options.kafka,
            DATABASE_URL=database_url,
            CONSUMER_GROUP=self.name,
            HTTP_HOST="127.0.0.1",
            CLOCK_INTERVAL_SECONDS="0",
            LOG_FORMAT="json",
            **{f"TOPIC_{setting.upper()}": topic for setting, topic in self.topics.items()},
            **env,
        )
        ports = iter(free_ports(2 * len(layout)))
        self.processes: list[ServiceProcess] = []
        for label, stages in layout:
            serves_api = not stages or "api" in stages
            own = {"HTTP_PORT": str(next(ports))}
            metrics = next(ports)
            if not serves_api:
                own["METRICS_PORT"] = str(metrics)
            self.processes.append(
                ServiceProcess(
                    label,
                    stages,
                    {**self.env, **own},
                    logs / f"{self.name}-{label}.log",
                    int(own["HTTP_PORT"]) if serves_api else None,
                )
            )
        self.admin = Admin(options.kafka)
        self.publisher = Publisher(options.kafka)
        self.probe = StoreProbe(database_url)
        self.sampler = Sampler(StoreProbe(database_url), lambda: self.processes)
        self.watch: DecisionWatch | None = None
        self.started_at = 0.0

    def __enter__(self) -> Deployment:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if error is not None:
            for process in self.processes:
                print(process.log_tail(), file=sys.stderr)
        self.close()

    def start(self, timeout: float = 120) -> float:
        """Starts every process at once, as an orchestrator would, and waits until each is
        ready; then the decision watch and the sampler. Returns the seconds to ready."""
        self.started_at = time.time()
        for process in self.processes:
            process.start()
        for process in self.processes:
            process.wait_ready(timeout)
        ready = time.time() - self.started_at
        topics = self.topics
        self.admin.wait_topics([topics["orders"], topics["receipts"], topics["decisions"]])
        self.watch = DecisionWatch(self.options.kafka, topics["decisions"])
        self.watch.start()
        self.sampler.start()
        return ready

    @property
    def decisions(self) -> DecisionWatch:
        assert self.watch is not None, "start() first"
        return self.watch

    def warm_up(self, receipts: Sequence[tuple[str, bytes]], members: int = 1) -> float:
        """Publishes the receipts (untimed) and waits until the service has taken them in
        and gone quiet; returns the seconds it took."""
        started = time.perf_counter()
        before = self.probe.head() or 0
        self.publisher.flat_out(self.topics["receipts"], receipts)
        self.settle(before + len(receipts))
        self.admin.wait_groups_settled(self.name, members)
        return time.perf_counter() - started

    def settle(self, head_at_least: int, quiet_s: float = 0.5) -> None:
        """Until the allocation log holds `head_at_least` events, has not grown for
        `quiet_s`, and the read models have caught up with it."""
        deadline = time.monotonic() + self.options.timeout
        last: tuple[int | None, float] = (None, time.monotonic())
        while time.monotonic() < deadline:
            head, position = self.probe.head(), self.probe.position()
            now = time.monotonic()
            if head != last[0]:
                last = (head, now)
            elif (
                head is not None
                and head >= head_at_least
                and position is not None
                and position >= head
                and now - last[1] >= quiet_s
            ):
                return
            time.sleep(0.1)
        raise TimeoutError(
            f"not settled after {self.options.timeout} s: log head {self.probe.head()} "
            f"(wanted {head_at_least}), read models at {self.probe.position()}"
        )

    def wait_read_models(self, after: float) -> float | None:
        """Seconds from `after` (time.time()) to the first sample, taken then or later, in
        which the read models had caught up with the log's head; None if not in time."""
        deadline = time.monotonic() + self.options.timeout
        while time.monotonic() < deadline:
            for sample in list(self.sampler.samples):
                if (
                    sample.at >= after
                    and sample.head is not None
                    and sample.position is not None
                    and sample.position >= sample.head
                ):
                    return round(sample.at - after, 3)
            time.sleep(SAMPLE_EVERY_S / 2)
        return None

    def run_cli(self, *arguments: str) -> float:
        """A `fulfillment` command against this service's store and topics, timed."""
        log_path = self.processes[0].log_path.with_name(f"{self.name}-{arguments[-1]}.log")
        with log_path.open("ab") as log:
            started = time.perf_counter()
            subprocess.run(
                [fulfillment_command(), *arguments],
                env=self.env,
                cwd=REPO,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=self.options.timeout,
                check=True,
            )
            return time.perf_counter() - started

    def stop_processes(self) -> None:
        for process in self.processes:
            process.stop()

    def close(self) -> None:
        self.stop_processes()
        self.sampler.stop()
        if self.watch is not None:
            self.watch.stop()
        self.publisher.producer.flush(10)
        self.probe.close()
        self.sampler.probe.close()
        if not self.options.keep:
            self.admin.delete(self.topics.values())


# --- figures -------------------------------------------------------------------------------


def percentile(ordered: Sequence[float], pct: float) -> float:
    """Nearest rank on sorted values."""
    index = min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def latency_ms(values: Iterable[int]) -> dict[str, Any]:
    ordered = sorted(values)
    if not ordered:
        return {"count": 0}
    return {
        "count": len(ordered),
        "p50": percentile(ordered, 50),
        "p90": percentile(ordered, 90),
        "p99": percentile(ordered, 99),
        "max": ordered[-1],
        "mean": round(sum(ordered) / len(ordered), 1),
    }


def read_model_lag(samples: Sequence[Sample], start: float, end: float) -> dict[str, Any]:
    """Over the samples taken from `start` to `end` (time.time()): how many events the
    read models were behind the log's head, and how long until they reached the head of
    that moment (for a sample at t with head h: when the position first reached h, minus
    t; resolution SAMPLE_EVERY_S). Samples that never saw their head reached are counted."""
    known = [s for s in samples if s.head is not None and s.position is not None]
    window = [s for s in known if start <= s.at <= end]
    if not window:
        return {"samples": 0}
    behind = sorted(cast(int, s.head) - cast(int, s.position) for s in window)
    seconds: list[float] = []
    never = 0
    later = iter([s for s in known if s.at >= window[0].at])
    reached: Sample | None = next(later, None)
    for sample in window:  # heads and positions only grow: one pass forward suffices
        while reached is not None and (
            reached.at < sample.at or cast(int, reached.position) < cast(int, sample.head)
        ):
            reached = next(later, None)
        if reached is None:
            never += 1
        else:
            seconds.append(reached.at - sample.at)
    seconds.sort()
    return {
        "samples": len(window),
        "sample_every_s": SAMPLE_EVERY_S,
        "events_max": behind[-1],
        "events_p50": percentile(behind, 50),
        "seconds_max": round(seconds[-1], 3) if seconds else None,
        "seconds_p99": round(percentile(seconds, 99), 3) if seconds else None,
        "samples_whose_head_was_not_reached": never,
    }


def _flat_out_figures(
    deployment: Deployment, workload: Workload, missing: list[LineKey], publish_s: float
) -> dict[str, Any]:
    watch, sent = deployment.decisions, deployment.publisher.sent_ms
    keys = workload.line_keys()
    first = [watch.first[key] for key in keys if key in watch.first]
    start_ms = deployment.publisher.first_sent_ms(workload.orders)
    end_ms = max(first) if first else start_ms
    span_s = (end_ms - start_ms) / 1000
    result: dict[str, Any] = {
        "orders": len(workload.orders),
        "lines": len(keys),
        "complete": not missing,
        "lines_without_decision": len(missing),
        "publish_seconds": round(publish_s, 3),
        "seconds": round(span_s, 3),
    }
    if not missing and span_s > 0:
        decisions = watch.decisions_between(start_ms, end_ms)
        result["lines_per_s"] = round(len(keys) / span_s, 1)
        result["decisions"] = decisions
        result["decisions_per_s"] = round(decisions / span_s, 1)
    result["latency_ms"] = latency_ms(
        watch.first[(order.order_id, line_id)] - sent[order.order_id]
        for order in workload.orders
        for line_id in order.line_ids
        if (order.order_id, line_id) in watch.first
    )
    caught_up = deployment.wait_read_models(end_ms / 1000) if not missing else None
    result["read_models"] = read_model_lag(
        deployment.sampler.samples, start_ms / 1000, end_ms / 1000
    )
    result["read_models"]["caught_up_seconds_after_last_decision"] = caught_up
    return result


# --- phases --------------------------------------------------------------------------------


def flat_out(
    options: Options,
    database_url: str,
    logs: Path,
    workload: Workload,
    *,
    layout: Layout = ONE_COMMAND,
    members: int = 1,
    then: Callable[[Deployment], dict[str, Any]] | None = None,
    **env: str,
) -> dict[str, Any]:
    """The service flat out: the whole backlog published as fast as librdkafka goes, timed
    from the first order record to the first decision of the last line."""
    with Deployment(options, database_url, layout, logs, **env) as deployment:
        ready_s = deployment.start()
        warm_up_s = deployment.warm_up(workload.receipts, members)
        say(f"{workload.lines} lines flat out ({len(deployment.processes)} processes)")
        publish_s = deployment.publisher.flat_out(deployment.topics["orders"], workload.records())
        missing = deployment.decisions.wait_decided(workload.line_keys(), options.timeout)
        result = _flat_out_figures(deployment, workload, missing, publish_s)
        result.update(
            processes={
                p.label: " ".join(["fulfillment", *p.command[1:]]) for p in deployment.processes
            },
            settings=env,
            ready_seconds=round(ready_s, 2),
            warm_up_seconds=round(warm_up_s, 2),
            duplicate_decisions=deployment.decisions.duplicates,
            rss=deployment.sampler.report(),
        )
        if then is not None:
            try:
                result.update(then(deployment))
            except Exception as error:
                result["then_error"] = f"{type(error).__name__}: {error}"
        return result


def rebuild(deployment: Deployment) -> dict[str, Any]:
    """After the full run: the service stopped (SIGTERM), every read model rebuilt from the
    log by `fulfillment projections rebuild all`, timed from outside (the command's start
    included: `cli_startup_seconds` is what `projections status` takes on the same store)."""
    try:
        events = deployment.probe.head() or 0
        deployment.stop_processes()
        say(f"rebuild of every read model over {events} log events")
        startup = deployment.run_cli("projections", "status")
        seconds = deployment.run_cli("projections", "rebuild", "all")
        return {
            "rebuild": {
                "log_events": events,
                "seconds": round(seconds, 3),
                "events_per_s": round(events / seconds, 1),
                "cli_startup_seconds": round(startup, 3),
                "read_models_at_end": deployment.probe.position(),
            }
        }
    except Exception as error:
        return {"rebuild": {"error": f"{type(error).__name__}: {error}"}}


def paced(options: Options, database_url: str, logs: Path) -> dict[str, Any]:
    """At each offered rate in turn, on one service: orders paced evenly for
    `seconds`; each line's latency to its first decision."""
    by_rate: dict[str, Any] = {}
    with Deployment(options, database_url, ONE_COMMAND, logs) as deployment:
        deployment.start()
        for number, rate in enumerate(options.rates):
            workload = skewed_orders(
                max(1, round(rate * options.seconds)),
                options.skus,
                hot_skus=options.hot_skus,
                hot_share=options.hot_share,
                seed=options.seed + 100 + number,
                prefix=f"P{number}",
            )
            deployment.warm_up(workload.receipts)
            say(f"{workload.lines} lines at {rate:g} lines/s")
            offered_s = deployment.publisher.paced(
                deployment.topics["orders"], workload.orders, rate
            )
            missing = deployment.decisions.wait_decided(workload.line_keys(), options.timeout)
            watch, sent = deployment.decisions, deployment.publisher.sent_ms
            start_ms = deployment.publisher.first_sent_ms(workload.orders)
            first = [watch.first[key] for key in workload.line_keys() if key in watch.first]
            span_s = ((max(first) if first else start_ms) - start_ms) / 1000
            by_rate[f"{rate:g}"] = {
                "offered_lines_per_s": rate,
                "orders": len(workload.orders),
                "lines": workload.lines,
                "published_lines_per_s": round(workload.lines / offered_s, 1),
                "decided_lines_per_s": round(workload.lines / span_s, 1) if span_s else None,
                "lines_without_decision": len(missing),
                "latency_ms": latency_ms(
                    watch.first[(order.order_id, line_id)] - sent[order.order_id]
                    for order in workload.orders
                    for line_id in order.line_ids
                    if (order.order_id, line_id) in watch.first
                ),
            }
        return {"rates": by_rate, "rss": deployment.sampler.report()}


def recovery(options: Options, database_url: str, logs: Path) -> dict[str, Any]:
    """Under paced load, kill -9 of the whole service, 2 s down, the same command again:
    seconds from the restart command to the first decision stamped after it, and every
    line's first decision (none may be missing)."""
    workload = skewed_orders(
        max(1, round(options.recovery_rate * options.recovery_seconds)),
        options.skus,
        hot_skus=options.hot_skus,
        hot_share=options.hot_share,
        seed=options.seed + 200,
        prefix="K",
    )
    with Deployment(options, database_url, ONE_COMMAND, logs) as deployment:
        deployment.start()
        deployment.warm_up(workload.receipts)
        failures: list[BaseException] = []

        def publish() -> None:
            try:
                deployment.publisher.paced(
                    deployment.topics["orders"], workload.orders, options.recovery_rate
                )
            except BaseException as error:
                failures.append(error)

        publishing = threading.Thread(target=publish, name="paced-load")
        started = time.time()
        publishing.start()
        time.sleep(options.recovery_seconds / 3)  # the schedule: load first, then the fault
        killed_at = time.time()
        for process in deployment.processes:
            process.kill9()
        say("killed (kill -9 of its process group); restarting in 2 s")
        time.sleep(2.0)
        restarted_at = min(process.start() for process in deployment.processes)
        ready_s = max(process.wait_ready() for process in deployment.processes)
        publishing.join()
        if failures:
            raise failures[0]
        missing = deployment.decisions.wait_decided(workload.line_keys(), options.timeout)
        after = [at for at in list(deployment.decisions.timestamps) if at > restarted_at * 1000]
        return {
            "offered_lines_per_s": options.recovery_rate,
            "lines": workload.lines,
            "killed_after_seconds_of_load": round(killed_at - started, 2),
            "down_seconds": round(restarted_at - killed_at, 2),
            "restart_to_first_decision_s": (
                round(min(after) / 1000 - restarted_at, 3) if after else None
            ),
            "restart_to_ready_s": round(ready_s, 3),
            "lines_without_decision": len(missing),
            "duplicate_decisions": deployment.decisions.duplicates,
            "rss": deployment.sampler.report(),
        }


def memory(options: Options, database_url: str, logs: Path) -> dict[str, Any]:
    """RSS of each process once every SKU holds an open backorder, at each count of SKUs
    in turn (one service; each step adds SKUs): when all are decided, when the read models
    have caught up, and the peak sampled during the step."""
    steps: dict[str, Any] = {}
    with Deployment(options, database_url, ONE_COMMAND, logs) as deployment:
        deployment.start()
        done = 0
        for target in sorted(options.memory_skus):
            workload = one_backorder_per_sku(done, target - done, seed=options.seed + 300)
            since = time.time()
            before = deployment.decisions.kinds["LineBackordered"]
            say(f"{target} SKUs with an open backorder")
            deployment.publisher.flat_out(deployment.topics["orders"], workload.records())
            missing = deployment.decisions.wait_decided(workload.line_keys(), options.timeout)
            decided = deployment.sampler.rss_now_mb()
            caught_up = deployment.wait_read_models(time.time())
            steps[str(target)] = {
                "skus_with_open_backorder": target,
                "backordered_lines_this_step": deployment.decisions.kinds["LineBackordered"]
                - before,
                "lines_without_decision": len(missing),
                "rss_mb_when_decided": decided,
                "rss_mb_when_read_models_caught_up": (
                    deployment.sampler.rss_now_mb() if caught_up is not None else None
                ),
                "peak_rss_mb_sampled_during": deployment.sampler.peaks_mb(since),
                "peak_rss_mb_kernel_so_far": {
                    name: round(peak / MB, 1)
                    for name, peak in sorted(deployment.sampler.high_water.items())
                },
            }
            done = target
        return steps


def ceiling(options: Options, workload: Workload) -> dict[str, Any]:
    """A plain aiokafka loop on the same broker: the same order records, pre-published to a
    fresh topic, consumed, parsed with json and passed on as one record per line (acks=all,
    idempotent), timed from its first fetch to the last acknowledgement."""
    admin = Admin(options.kafka)
    name = f"bench-{uuid.uuid4().hex[:10]}"
    source, sink = f"ceiling-orders-{name}", f"ceiling-lines-{name}"
    defaults = Settings.model_fields
    partitions = int(defaults["topic_partitions"].default)
    admin.create({source: partitions, sink: int(defaults["sku_commands_partitions"].default)})
    try:
        publisher = Publisher(options.kafka)
        publisher.flat_out(source, workload.records())
        say(f"pass-through of {len(workload.orders)} orders")
        return asyncio.run(_pass_through(options, source, partitions, sink, len(workload.orders)))
    finally:
        if not options.keep:
            admin.delete([source, sink])


async def _pass_through(
    options: Options, source: str, partitions: int, sink: str, orders: int
) -> dict[str, Any]:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka import TopicPartition as AioTopicPartition

    consumer = AIOKafkaConsumer(
        bootstrap_servers=options.kafka, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=options.kafka, acks="all", enable_idempotence=True, linger_ms=5
    )
    await consumer.start()
    await producer.start()
    try:
        assigned = [AioTopicPartition(source, p) for p in range(partitions)]
        consumer.assign(assigned)
        await consumer.seek_to_beginning(*assigned)
        consumed = lines = 0
        started: float | None = None
        async with asyncio.timeout(options.timeout):
            while consumed < orders:
                batches = await consumer.getmany(timeout_ms=1_000, max_records=5_000)
                if batches and started is None:
                    started = time.perf_counter()
                for records in batches.values():
                    for record in records:
                        body = json.loads(record.value)
                        for line in body["lines"]:
                            value = json.dumps({"order_id": body["order_id"], **line}).encode()
                            await producer.send(sink, value, key=line["sku"].encode())
                            lines += 1
                        consumed += 1
            await producer.flush()
        seconds = time.perf_counter() - (started or time.perf_counter())
    finally:
        await producer.stop()
        await consumer.stop()
    return {
        "orders": consumed,
        "lines": lines,
        "seconds": round(seconds, 3),
        "orders_per_s": round(consumed / seconds, 1),
        "lines_per_s": round(lines / seconds, 1),
        "partitions": partitions,
    }


# --- the whole benchmark -------------------------------------------------------------------


def ratios(result: dict[str, Any]) -> dict[str, float | None]:
    """Service flat out ÷ pass-through ceiling, lines/s, per store."""
    ceiling_rate = result.get("ceiling", {}).get("lines_per_s")
    found: dict[str, float | None] = {}
    for kind in ("sqlite", "postgres"):
        rate = result.get(kind, {}).get("full", {}).get("lines_per_s")
        found[kind] = round(rate / ceiling_rate, 4) if rate and ceiling_rate else None
    return found


def bench_service(
    options: Options,
    fresh_store: Callable[[str], str],
    attempt: Attempt,
    unavailable: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Every selected phase; a phase that fails reports {"error": ...} and the others run.
    `fresh_store(kind)` gives a new store's DATABASE_URL; `unavailable` names stores that
    cannot be had, with why."""
    unavailable = unavailable or {}
    phases = set(options.phases)
    logs = Path(tempfile.mkdtemp(prefix="fulfillment-bench-logs-"))
    result: dict[str, Any] = {"options": options.document()}

    @functools.cache
    def backlog() -> Workload:
        return skewed_orders(
            options.lines,
            options.skus,
            hot_skus=options.hot_skus,
            hot_share=options.hot_share,
            seed=options.seed,
            prefix="F",
        )

    def run(name: str, kind: str, work: Callable[[], Any]) -> Any:
        return attempt(f"service {name} [{kind}]", work)

    try:
        if "ceiling" in phases:
            result["ceiling"] = attempt("service ceiling", lambda: ceiling(options, backlog()))
        for kind in options.stores:
            if kind in unavailable:
                result[kind] = {"skipped": unavailable[kind]}
                continue
            result[kind] = _per_store(
                options,
                kind,
                phases=phases,
                fresh_store=fresh_store,
                logs=logs,
                backlog=backlog,
                run=run,
            )
        result["ratios"] = {"full_over_ceiling_lines_per_s": ratios(result)}
    finally:
        if options.keep:
            result["logs"] = str(logs)
        else:
            shutil.rmtree(logs, ignore_errors=True)
    return result


def _per_store(
    options: Options,
    kind: str,
    *,
    phases: set[str],
    fresh_store: Callable[[str], str],
    logs: Path,
    backlog: Callable[[], Workload],
    run: Callable[[str, str, Callable[[], Any]], Any],
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if phases & {"full", "rebuild"}:
        then = rebuild if "rebuild" in phases else None
        found = run(
            "full",
            kind,
            lambda: flat_out(options, fresh_store(kind), logs, backlog(), then=then),
        )
        rebuilt = found.pop("rebuild", None) if isinstance(found, dict) else None
        if "full" in phases:
            out["full"] = found
        if "rebuild" in phases:
            out["rebuild"] = rebuilt or {"error": f"the full run failed: {found.get('error')}"}
    if "paced" in phases:
        out["paced"] = run("paced", kind, lambda: paced(options, fresh_store(kind), logs))
    if "onebyone" in phases:
        small = skewed_orders(
            options.onebyone_lines,
            options.skus,
            hot_skus=options.hot_skus,
            hot_share=options.hot_share,
            seed=options.seed,
            prefix="F",
        )
        out["onebyone"] = run(
            "onebyone (BATCH_MAX_RECORDS=1)",
            kind,
            lambda: flat_out(options, fresh_store(kind), logs, small, BATCH_MAX_RECORDS="1"),
        )
    if "stages" in phases and kind in options.stages_stores:
        out["stages"] = run(
            "stages (five processes)",
            kind,
            lambda: flat_out(options, fresh_store(kind), logs, backlog(), layout=FIVE_PROCESSES),
        )
    if "scaleout" in phases and kind == "postgres":
        out["scaleout"] = {
            str(count): run(
                f"scaleout ({count} allocation processes)",
                kind,
                functools.partial(_scale_out, options, fresh_store, logs, count),
            )
            for count in options.scaleout_processes
        }
    if "recovery" in phases:
        out["recovery"] = run("recovery", kind, lambda: recovery(options, fresh_store(kind), logs))
    if "memory" in phases:
        out["memory"] = run("memory", kind, lambda: memory(options, fresh_store(kind), logs))
    return out


def _scale_out(
    options: Options, fresh_store: Callable[[str], str], logs: Path, count: int
) -> dict[str, Any]:
    """One process of every other stage and `count` allocation processes in one group."""
    layout: list[tuple[str, Sequence[str]]] = [("front", ("intake", "relay", "projections", "api"))]
    layout += [(f"allocation-{n}", ("allocation",)) for n in range(1, count + 1)]
    workload = skewed_orders(
        options.scaleout_lines,
        options.skus,
        hot_skus=options.hot_skus,
        hot_share=options.hot_share,
        seed=options.seed + 400,
        prefix="S",
    )
    return flat_out(
        options,
        fresh_store("postgres"),
        logs,
        workload,
        layout=layout,
        members=count,
        SKU_COMMANDS_PARTITIONS="6",
    )
