"""`fulfillment run` as users start it: the stages in a few processes, so the service uses
every core (one Python process is one core: the GIL), on one store. They start at once:
when they race to create topics, tables and views, the losers retry (bootstrap._racing).

Each log's writer and its relay share a process, so the relay is woken by the commit it
publishes without a round trip; the read models follow the allocation log from their own
process (woken by a LogWatcher). The supervisor starts the processes, and stops them all
when it is asked to or when one of them ends: an orchestrator then restarts the service as
a whole, as it would a single process. Its processes die with it, even by SIGKILL (the
kernel's parent-death signal), so `kill -9` of the service leaves nothing behind.

Their metrics meet in one folder (PROMETHEUS_MULTIPROC_DIR, prometheus_client's multiprocess
mode: services/adapters/metrics.py), emptied at start, so that the API's /metrics on
HTTP_PORT shows every stage's: one scrape target for the whole service.

Hand-written: a process supervisor library (supervisord, circus) would be a second program
to install and configure, for what is forty lines of subprocess here.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import FrameType

from prometheus_client import multiprocess

from services.adapters.logs import get_logger
from services.adapters.metrics import MULTIPROCESS_FOLDER
from services.adapters.settings import Settings

log = get_logger(__name__)

# The processes `fulfillment run` starts, and their stages (see runner.STAGE_TABLE).
PROCESSES: dict[str, tuple[str, ...]] = {
    "intake": ("intake", "intake-relay", "clock"),
    "allocation": ("allocation", "allocation-relay"),
    "read-models": ("projections", "api"),
}
STOP_GRACE_SECONDS = 60.0
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # pragma: no cover - runs in the child, before exec
    """Linux: the child is killed when the supervisor dies, however it dies. SIGKILL, not
    SIGTERM: a supervisor that did not stop its processes itself crashed, and processes
    that linger would hold their leader locks and partitions from the service's restart."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def command(stages: Sequence[str]) -> list[str]:
    argv = [sys.executable, "-m", "services.entrypoints.cli", "run"]
    for stage in stages:
        argv += ["--stage", stage]
    return argv


def environment(
    settings: Settings, name: str, index: int, metrics_folder: Path | None = None
) -> dict[str, str]:
    """The supervisor's environment; METRICS_PORT, when set, goes to the processes that run
    no HTTP API, one port each (METRICS_PORT, METRICS_PORT + 1, ...), where each shows its
    own metrics; `metrics_folder` is where they all keep them for the API's /metrics."""
    env = dict(os.environ)
    env["FULFILLMENT_PROCESS"] = name
    if metrics_folder is not None:
        env[MULTIPROCESS_FOLDER] = str(metrics_folder)
    if settings.kafka_group_instance_id is None:
        # Stable across restarts on this host, so a restarted process's consumers get their
        # partitions back at once; the HTTP port tells two services on one host apart.
        env["KAFKA_GROUP_INSTANCE_ID"] = f"{socket.gethostname()}-{settings.http_port}-{name}"
    else:
        env["KAFKA_GROUP_INSTANCE_ID"] = f"{settings.kafka_group_instance_id}-{name}"
    env.pop("METRICS_PORT", None)
    if settings.metrics_port is not None and "api" not in PROCESSES[name]:
        env["METRICS_PORT"] = str(settings.metrics_port + index)
    return env


class Supervisor:
    def __init__(self, settings: Settings, processes: Mapping[str, Sequence[str]]) -> None:
        self.settings = settings
        self.processes = dict(processes)
        self.children: dict[str, subprocess.Popen[bytes]] = {}
        self.stopping = False

    def _ask_to_stop(self, signum: int, _frame: FrameType | None) -> None:
        log.info("stopping the service's processes", signal=signal.Signals(signum).name)
        self.stopping = True

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._ask_to_stop)
        folder, made_here = metrics_folder()
        try:
            index = 0
            for name, stages in self.processes.items():
                self.children[name] = subprocess.Popen(  # noqa: S603 - our interpreter and CLI
                    command(stages),
                    env=environment(self.settings, name, index, folder),
                    preexec_fn=_die_with_parent,  # noqa: PLW1509 - no threads run here yet
                )
                index += 0 if "api" in stages else 1
                log.info(
                    "process started", process=name, pid=self.children[name].pid, stages=stages
                )
            code = self._watch()
            self._stop_all()
        finally:
            if made_here:
                shutil.rmtree(folder, ignore_errors=True)
            else:  # the operator's folder: what the processes left is emptied at next start
                for child in self.children.values():
                    multiprocess.mark_process_dead(child.pid, str(folder))  # type: ignore[no-untyped-call]
        return code

    def _watch(self) -> int:
        """Until asked to stop (0) or a process ends by itself (its code, at least 1)."""
        while not self.stopping:
            for name, child in self.children.items():
                code = child.poll()
                if code is not None:
                    log.error(
                        "a process of the service ended; stopping the others",
                        process=name,
                        exit_code=code,
                    )
                    return code if code > 0 else 1
            time.sleep(0.2)
        return 0

    def _stop_all(self) -> None:
        for child in self.children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for name, child in self.children.items():
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error("a process did not stop in time; killing it", process=name)
                child.kill()
                child.wait()
        log.info("stopped")


def metrics_folder() -> tuple[Path, bool]:
    """Where the processes keep their metrics, emptied of a previous run's (a counter must
    not go on from values of processes that have ended), and whether it was made here (then
    it is removed at exit): PROMETHEUS_MULTIPROC_DIR if the operator set it, else a new one."""
    chosen = os.environ.get(MULTIPROCESS_FOLDER)
    if not chosen:
        return Path(tempfile.mkdtemp(prefix="fulfillment-metrics-")), True
    folder = Path(chosen)
    folder.mkdir(parents=True, exist_ok=True)
    for left in folder.glob("*.db"):  # prometheus_client's files only
        left.unlink(missing_ok=True)
    return folder, False


def supervise(settings: Settings, processes: Mapping[str, Sequence[str]] = PROCESSES) -> int:
    return Supervisor(settings, processes).run()
