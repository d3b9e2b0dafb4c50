"""Runs every benchmark and prints ONE JSON document on stdout; progress goes to stderr.

    .venv/bin/python -m bench.run [--quick] [--only domain,decode,...] [--stores sqlite,postgres]

PostgreSQL comes from DATABASE_URL_TEST (as `make bench` sets it), else a postgresql
DATABASE_URL, else `deploy/postgres/postgres.sh url test`; every run uses fresh schemas
(dropped afterwards unless --keep). Kafka comes from KAFKA_BOOTSTRAP_SERVERS or
127.0.0.1:9092. Nothing connects until main() runs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from functools import partial
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import structlog

if TYPE_CHECKING:
    from bench.service import Options

REPO = Path(__file__).resolve().parent.parent
BENCHMARKS = (
    "domain",
    "decode",
    "allocation_store",
    "intake_store",
    "hot_sku",
    "eta",
    "end_to_end",
    "service",
    "replay",
)
SNAPSHOTTING = ("service", "eventsourcing", "both")
STORES = ("sqlite", "postgres")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add("--quick", action="store_true", help="tiny sizes: a smoke run of every benchmark")
    add(
        "--only",
        default=",".join(BENCHMARKS),
        help="comma-separated subset of: " + ", ".join(BENCHMARKS),
    )
    add("--stores", default=",".join(STORES), help="comma-separated subset of: sqlite, postgres")
    add("--skus", type=int, default=50, help="SKUs the workloads spread over (default 50)")
    add("--rounds", type=int, default=3, help="rounds of the in-memory benchmarks; best is kept")
    add("--domain-commands", type=int, default=50_000)
    add("--decode-messages", type=int, default=20_000)
    add("--store-commands", type=int, default=20_000, help="allocation_store, batched")
    add("--single-commands", type=int, default=1_000, help="allocation_store, batch size 1")
    add("--batch", type=int, default=500, help="messages per transaction (default 500)")
    add("--intake-orders", type=int, default=20_000, help="intake_store orders (+10%% cancels)")
    add("--hot-lines", type=int, default=100_000, help="hot_sku: order lines on one SKU")
    add("--hot-queued", type=int, default=1_000, help="hot_sku: lines kept waiting in the queue")
    add(
        "--hot-unshipped",
        type=int,
        default=1_000,
        help="hot_sku: lines kept allocated, not yet shipped",
    )
    add(
        "--hot-snapshotting",
        choices=SNAPSHOTTING,
        default="service",
        help="hot_sku: the service's snapshots (Allocation._take_snapshots), eventsourcing's "
        "own (every 500 events, re-read from the store), or both, one after the other",
    )
    add("--eta-lines", type=int, default=50_000, help="eta: lines queued on one SKU")
    add("--eta-inbounds", type=int, default=5, help="eta: inbounds covering half the queue")
    add(
        "--eta-commands",
        type=int,
        default=1_000,
        help="eta: commands of each probe, per round in memory (x --rounds on SQLite)",
    )
    replay_flags(parser)
    add("--e2e-orders", type=int, default=5_000, help="end_to_end burst of orders")
    add("--paced-orders", type=int, default=1_000, help="end_to_end paced orders (0: none)")
    add("--paced-rate", type=float, default=200.0, help="end_to_end paced orders per second")
    add("--e2e-timeout", type=float, default=120.0, help="seconds to wait for each phase")
    add(
        "--e2e-stages",
        default="intake,allocation,relay",
        help="end_to_end: the service's stages to run (default: those that make decisions)",
    )
    service_flags(parser)
    add("--postgres-url", default=None, help="base PostgreSQL URL (default: see above)")
    add("--kafka", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"))
    add("--keep", action="store_true", help="keep the PostgreSQL schemas and Kafka topics")
    add(
        "--no-results-file",
        action="store_true",
        help="do not write the document to bench/results/<date>-<commit>.json",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds = 1
        args.domain_commands = 2_000
        args.decode_messages = 1_000
        args.store_commands = 1_000
        args.single_commands = 100
        args.intake_orders = 1_000
        args.hot_lines = 5_000
        args.hot_queued = 200
        args.hot_unshipped = 200
        args.eta_lines = 5_000
        args.eta_commands = 200
        args.e2e_orders = 200
        args.replay_orders = 1_000
        args.paced_orders = 50
        args.paced_rate = 100.0
        args.e2e_timeout = 60.0
        service_quick(args)
    return args


def replay_flags(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--replay-orders", type=int, default=30_000, help="replay: orders of the history")
    add("--replay-skus", type=int, default=200, help="replay: SKUs of the history")


def service_quick(args: argparse.Namespace) -> None:
    """`service` at tiny sizes: every phase in a smoke run."""
    args.lines = 5_000
    args.service_skus = 200
    args.rates = "200"
    args.seconds = 3.0
    args.onebyone_lines = 200
    args.scaleout_lines = 1_000
    args.recovery_rate = 100.0
    args.recovery_seconds = 4.5
    args.memory_skus = "200,1000"
    args.service_timeout = 90.0


def service_flags(parser: argparse.ArgumentParser) -> None:
    """`service`: `fulfillment run` measured from outside (bench/service.py)."""
    from bench.service import PHASES

    group = parser.add_argument_group("service: `fulfillment run` measured from outside")
    add = group.add_argument
    add(
        "--phases", default=",".join(PHASES), help="comma-separated subset of: " + ", ".join(PHASES)
    )
    add("--lines", type=int, default=200_000, help="order lines of the flat-out backlog")
    add("--service-skus", type=int, default=2_000, help="SKUs the orders spread over")
    add("--hot-skus", type=int, default=5, help="hot SKUs among them")
    add("--hot-share", type=float, default=0.2, help="share of the lines on the hot SKUs")
    add("--rate", type=float, default=1_000.0, help="paced: order lines offered a second")
    add("--rates", default=None, help="paced: several rates, e.g. 100,1000 (instead of --rate)")
    add("--seconds", type=float, default=30.0, help="paced: seconds at each rate")
    add("--onebyone-lines", type=int, default=10_000, help="backlog with BATCH_MAX_RECORDS=1")
    add("--stages-stores", default="postgres", help="stores the five-process run is made on")
    add("--scaleout-lines", type=int, default=50_000, help="backlog of each scale-out run")
    add("--scaleout-processes", default="1,2,3", help="allocation processes of each scale-out run")
    add("--recovery-rate", type=float, default=500.0, help="recovery: order lines offered a second")
    add("--recovery-seconds", type=float, default=30.0, help="recovery: seconds of load")
    add("--memory-skus", default="10000,100000", help="memory: SKUs, each with an open backorder")
    add("--service-timeout", type=float, default=900.0, help="seconds to wait in each phase")


def _listed(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def service_options(args: argparse.Namespace, kinds: list[str]) -> Options:
    from bench.service import PHASES, Options

    phases = tuple(_listed(args.phases))
    unknown = sorted(set(phases) - set(PHASES))
    if unknown:
        raise SystemExit(f"unknown service phase: {', '.join(unknown)}")
    return Options(
        kafka=args.kafka,
        phases=phases,
        stores=tuple(kinds),
        lines=args.lines,
        skus=args.service_skus,
        hot_skus=args.hot_skus,
        hot_share=args.hot_share,
        rates=tuple(float(rate) for rate in _listed(args.rates)) if args.rates else (args.rate,),
        seconds=args.seconds,
        onebyone_lines=args.onebyone_lines,
        stages_stores=tuple(_listed(args.stages_stores)),
        scaleout_lines=args.scaleout_lines,
        scaleout_processes=tuple(int(count) for count in _listed(args.scaleout_processes)),
        recovery_rate=args.recovery_rate,
        recovery_seconds=args.recovery_seconds,
        memory_skus=tuple(int(count) for count in _listed(args.memory_skus)),
        timeout=args.service_timeout,
        keep=args.keep,
    )


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def quiet_logging() -> None:
    """The service logs to stdout by default; keep stdout for the JSON document."""
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    logging.getLogger("aiokafka").setLevel(logging.ERROR)
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )


def machine() -> dict[str, Any]:
    def version(name: str) -> str | None:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return None

    def git(*args: str) -> str | None:
        try:
            found = subprocess.run(
                ["git", *args], cwd=REPO, capture_output=True, text=True, check=True
            )
        except (OSError, subprocess.CalledProcessError):
            return None
        return found.stdout.strip()

    return {
        "cpu_count": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "packages": {
            name: version(name)
            for name in (
                "eventsourcing",
                "pydantic",
                "aiokafka",
                "psycopg",
                "confluent-kafka",
                "orjson",
                "psutil",
            )
        },
        "librdkafka": librdkafka(),
        "cpu_model": cpu_model(),
        "memory_gb": memory_gb(),
        "git_commit": git("rev-parse", "--short", "HEAD"),
        "git_dirty": bool(git("status", "--porcelain")),
    }


def librdkafka() -> str | None:
    try:
        import confluent_kafka
    except ImportError:
        return None
    return str(confluent_kafka.libversion()[0])


def cpu_model() -> str | None:
    """The processor's name, as Linux gives it."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        return None
    return None


def memory_gb() -> float | None:
    try:
        import psutil
    except ImportError:
        return None
    return round(psutil.virtual_memory().total / 1024**3, 1)


def postgres_base(explicit: str | None) -> str:
    if explicit:
        return explicit
    for name in ("DATABASE_URL_TEST", "DATABASE_URL"):
        url = os.environ.get(name, "")
        if url.startswith(("postgresql://", "postgres://")):
            return url
    found = subprocess.run(
        ["bash", str(REPO / "deploy/postgres/postgres.sh"), "url", "test"],
        capture_output=True,
        text=True,
        check=True,
    )
    return found.stdout.strip().splitlines()[-1]


class Stores:
    """Hands out fresh stores: a SQLite file in a temporary directory, a new PG schema."""

    def __init__(self, postgres_url: str | None, keep: bool) -> None:
        self.postgres_url = postgres_url
        self.keep = keep
        self.schemas: list[str] = []
        self._tmp = tempfile.TemporaryDirectory(prefix="fulfillment-bench-")

    def url(self, kind: str) -> str:
        name = f"bench_{uuid.uuid4().hex[:10]}"
        if kind == "sqlite":
            return f"sqlite:///{self._tmp.name}/{name}"
        if self.postgres_url is None:
            raise RuntimeError("no PostgreSQL URL")
        self.schemas.append(name)
        separator = "&" if "?" in self.postgres_url else "?"
        return f"{self.postgres_url}{separator}schema={name}"

    def close(self) -> None:
        self._tmp.cleanup()
        if self.keep or not self.schemas or self.postgres_url is None:
            return
        import psycopg
        from psycopg import sql

        parts = urlsplit(self.postgres_url)
        dsn = parts._replace(query="").geturl()
        try:
            with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as connection:
                connection.execute("SET lock_timeout = '10s'")
                for schema in self.schemas:
                    connection.execute(
                        sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
                    )
        except psycopg.Error as error:
            log(f"could not drop schemas {self.schemas}: {error}")


def _attempt(name: str, run: Callable[[], Any]) -> Any:
    """A failing benchmark reports its error instead of losing the others' figures."""
    log(name)
    started = time.perf_counter()
    try:
        result = run()
    except (Exception, SystemExit) as error:  # uvicorn exits when its port is taken
        traceback.print_exc(file=sys.stderr)
        return {"error": f"{type(error).__name__}: {error}"}
    log(f"{name}: {time.perf_counter() - started:.1f} s")
    return result


def _bind(run: Callable[[str], Any], url: str) -> Callable[[], Any]:
    return lambda: run(url)


PerStore = Callable[[str, Callable[[str], Any]], dict[str, Any]]


def hot_sku(args: argparse.Namespace, per_store: PerStore, kinds: list[str]) -> dict[str, Any]:
    """Per store; with --hot-snapshotting both, per store and snapshotting."""
    from bench import one_sku

    def run(mode: one_sku.Snapshotting) -> Callable[[str], Any]:
        return lambda url: one_sku.bench_hot_sku(
            url,
            args.hot_lines,
            args.batch,
            queued=args.hot_queued,
            unshipped=args.hot_unshipped,
            snapshotting=mode,
        )

    if args.hot_snapshotting != "both":
        return per_store("hot_sku", run(args.hot_snapshotting))
    by_mode = {
        mode: per_store(f"hot_sku ({mode} snapshots)", run(mode)) for mode in one_sku.SNAPSHOTTING
    }
    return {kind: {mode: found[kind] for mode, found in by_mode.items()} for kind in kinds}


def eta(args: argparse.Namespace, stores: Stores, kinds: list[str]) -> dict[str, Any]:
    """In memory, and through the application on SQLite only: what is measured is the work
    a command does in the SKU, which a store adds to but does not change, and queueing
    50,000 lines twice on PostgreSQL would add about a minute to `make bench`."""
    from bench import one_sku

    result: dict[str, Any] = {
        "memory": _attempt(
            "eta [memory]",
            lambda: one_sku.bench_eta_memory(
                args.eta_lines, args.eta_inbounds, args.eta_commands, args.rounds
            ),
        )
    }
    if "sqlite" in kinds:
        result["sqlite"] = _attempt(
            "eta [sqlite]",
            lambda: one_sku.bench_eta_store(
                lambda: stores.url("sqlite"),
                args.eta_lines,
                args.eta_inbounds,
                args.eta_commands * args.rounds,  # as many as in memory: more transactions
                args.batch,
            ),
        )
    return result


def run_all(args: argparse.Namespace) -> dict[str, Any]:
    from bench import end_to_end, micro
    from bench import replay as replays

    only = [name.strip() for name in args.only.split(",") if name.strip()]
    kinds = [kind.strip() for kind in args.stores.split(",") if kind.strip()]
    unknown = sorted(set(only) - set(BENCHMARKS)) + sorted(set(kinds) - set(STORES))
    if unknown:
        raise SystemExit(f"unknown benchmark or store: {', '.join(unknown)}")
    postgres: str | None = None
    if "postgres" in kinds:
        try:
            postgres = postgres_base(args.postgres_url)
        except (OSError, subprocess.CalledProcessError) as error:
            log(f"no PostgreSQL URL ({error}); PostgreSQL figures are skipped")
    if postgres is not None and parse_qs(urlsplit(postgres).query).get("schema"):
        raise SystemExit("give the PostgreSQL URL without ?schema=: each run makes its own")

    results: dict[str, Any] = {}
    stores = Stores(postgres, args.keep)

    def per_store(name: str, run: Callable[[str], Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for kind in kinds:
            if kind == "postgres" and postgres is None:
                out[kind] = {"skipped": "no PostgreSQL URL"}
                continue
            out[kind] = _attempt(f"{name} [{kind}]", _bind(run, stores.url(kind)))
        return out

    try:
        if "domain" in only:
            results["domain"] = _attempt(
                "domain", lambda: micro.bench_domain(args.domain_commands, args.skus, args.rounds)
            )
        if "decode" in only:
            results["decode"] = _attempt(
                "decode", lambda: micro.bench_decode(args.decode_messages, args.skus, args.rounds)
            )
        if "allocation_store" in only:
            batched = per_store(
                "allocation_store batched",
                lambda url: micro.bench_allocation_store(
                    url, args.store_commands, args.skus, args.batch
                ),
            )
            single = per_store(
                "allocation_store batch=1",
                lambda url: micro.bench_allocation_store(url, args.single_commands, args.skus, 1),
            )
            results["allocation_store"] = {
                kind: {f"batch_{args.batch}": batched[kind], "batch_1": single[kind]}
                for kind in kinds
            }
        if "intake_store" in only:
            results["intake_store"] = per_store(
                "intake_store",
                lambda url: micro.bench_intake_store(
                    url, args.intake_orders, args.skus, args.batch
                ),
            )
        if "hot_sku" in only:
            results["hot_sku"] = hot_sku(args, per_store, kinds)
        if "eta" in only:
            results["eta"] = eta(args, stores, kinds)
        results.update(
            {
                "replay": per_store(
                    "replay", partial(replays.bench_replay, args=args, fresh_stores=stores)
                )
            }
            if "replay" in only
            else {}
        )
        results.update(bench_service(args, only, kinds, postgres, stores))
        if "end_to_end" in only:
            results["end_to_end"] = per_store(
                "end_to_end",
                lambda url: asyncio.run(
                    end_to_end.bench_end_to_end(
                        args.kafka,
                        url,
                        orders=args.e2e_orders,
                        skus=args.skus,
                        paced_orders=args.paced_orders,
                        paced_rate=args.paced_rate,
                        limit_s=args.e2e_timeout,
                        keep=args.keep,
                        stages=[stage.strip() for stage in args.e2e_stages.split(",")],
                    )
                ),
            )
    finally:
        stores.close()
    return results


def bench_service(
    args: argparse.Namespace,
    only: list[str],
    kinds: list[str],
    postgres: str | None,
    stores: Stores,
) -> dict[str, Any]:
    """{"service": every phase of bench/service.py}, each phase and store through
    _attempt; {} when `service` is not among the benchmarks run."""
    if "service" not in only:
        return {}
    from bench import service

    unavailable = {"postgres": "no PostgreSQL URL"} if postgres is None else {}
    options = service_options(args, kinds)
    return {"service": service.bench_service(options, stores.url, _attempt, unavailable)}


def results_path(document: dict[str, Any]) -> Path:
    """bench/results/<YYYY-MM-DD>-<short commit>.json; -2, -3, ... when that one exists."""
    folder = REPO / "bench" / "results"
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"{document['date'][:10]}-{document['machine'].get('git_commit') or 'unknown'}"
    path = folder / f"{stem}.json"
    number = 2
    while path.exists():
        path = folder / f"{stem}-{number}.json"
        number += 1
    return path


@contextlib.contextmanager
def stdout_to_stderr() -> Iterator[None]:
    with contextlib.redirect_stdout(sys.stderr):
        yield


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    quiet_logging()
    started = time.perf_counter()
    with stdout_to_stderr():
        facts = machine()
        results = run_all(args)
    document = {
        "benchmark": "fulfillment",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": args.quick,
        "machine": facts,
        "sizes": {
            key: getattr(args, key)
            for key in (
                "skus",
                "rounds",
                "domain_commands",
                "decode_messages",
                "store_commands",
                "single_commands",
                "batch",
                "intake_orders",
                "hot_lines",
                "hot_queued",
                "hot_unshipped",
                "hot_snapshotting",
                "eta_lines",
                "eta_inbounds",
                "eta_commands",
                "e2e_orders",
                "paced_orders",
                "paced_rate",
                "phases",
                "lines",
                "service_skus",
                "hot_skus",
                "hot_share",
                "rate",
                "rates",
                "seconds",
                "onebyone_lines",
                "stages_stores",
                "scaleout_lines",
                "scaleout_processes",
                "recovery_rate",
                "recovery_seconds",
                "memory_skus",
            )
        },
        "stores": args.stores.split(","),
        "kafka": args.kafka,
        "total_seconds": round(time.perf_counter() - started, 1),
        "results": results,
    }
    text = json.dumps(document, indent=2)
    print(text)
    if not args.no_results_file:
        path = results_path(document)
        path.write_text(text + "\n")
        log(f"wrote {path.relative_to(REPO)}")


if __name__ == "__main__":
    main()
