"""Waking the followers of a log: every follower hears each commit, none misses one that
came before it waited, and a commit by another process (SQLite) wakes them too."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

from services.adapters.settings import Settings
from services.adapters.wakeup import Commits, LogWatcher, Wakeup
from services.entrypoints.supervisor import PROCESSES, environment


async def test_a_commit_wakes_every_follower_of_the_log() -> None:
    commits = Commits()
    relay, read_models = commits.follower(), commits.follower()
    waiting = [asyncio.create_task(w.wait(60)) for w in (relay, read_models)]
    await asyncio.sleep(0)
    started = time.monotonic()

    commits.set()

    await asyncio.wait_for(asyncio.gather(*waiting), timeout=5)
    assert time.monotonic() - started < 5


async def test_a_commit_before_the_follower_waits_is_not_lost() -> None:
    wakeup = Wakeup()
    wakeup.set()
    started = time.monotonic()
    await wakeup.wait(60)
    assert time.monotonic() - started < 5


async def test_a_follower_that_is_stopping_does_not_wait_for_a_commit() -> None:
    stopping = asyncio.Event()
    stopping.set()
    started = time.monotonic()
    await Wakeup().wait(60, stopping)
    assert time.monotonic() - started < 5


class _Pool:
    def __init__(self, db_name: str) -> None:
        self.db_name = db_name


class _Datastore:
    def __init__(self, db_name: str) -> None:
        self.pool = _Pool(db_name)


class _SQLiteRecorder:
    """The two attributes a LogWatcher reads of eventsourcing's SQLite recorder."""

    def __init__(self, path: Path) -> None:
        self.datastore = _Datastore(str(path))


async def test_a_commit_by_another_connection_to_sqlite_wakes_the_follower(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("PRAGMA journal_mode=WAL")
    writer.execute("CREATE TABLE events (id INTEGER PRIMARY KEY)")
    commits = Commits()
    follower = commits.follower()
    watcher = LogWatcher(_SQLiteRecorder(path), commits, poll_seconds=0.002)
    waiting = asyncio.create_task(follower.wait(60))  # binds the loop the watcher signals
    await asyncio.sleep(0.05)
    watcher.start()
    try:
        await asyncio.sleep(0.05)  # the watcher has read the version before the commit
        started = time.monotonic()
        writer.execute("INSERT INTO events DEFAULT VALUES")
        await asyncio.wait_for(waiting, timeout=10)
        assert time.monotonic() - started < 10
    finally:
        await asyncio.to_thread(watcher.stop)
        writer.close()


def test_the_supervisor_gives_each_process_a_stable_member_id_and_its_own_metrics_port() -> None:
    settings = Settings(http_port=8123, metrics_port=9100)
    envs = {name: environment(settings, name, index) for index, name in enumerate(PROCESSES)}

    ids = {env["KAFKA_GROUP_INSTANCE_ID"] for env in envs.values()}
    assert len(ids) == len(PROCESSES)
    assert all("-8123-" in member for member in ids)  # two services on one host differ
    assert environment(settings, "intake", 0) == envs["intake"]  # the same at every restart
    ports = [env.get("METRICS_PORT") for env in envs.values()]
    assert ports == ["9100", "9101", None]  # the read models serve /metrics on HTTP_PORT
