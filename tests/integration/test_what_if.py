"""Replays and what-ifs on both stores, against histories recorded by intake's own handler:
a replay finds the live decisions again, in one process or a worker a core; a what-if with
nothing changed changes nothing, and one with a default policy of `deny` gives exactly what a
service started with BACKORDERS_ALLOWED=false decided."""

from __future__ import annotations

import json
import sqlite3
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from aiokafka import TopicPartition
from typer.testing import CliRunner

from projections.store import ReadStore
from services.adapters.settings import Settings
from services.allocation.application import Allocation
from services.entrypoints.bootstrap import build_allocation, build_intake
from services.entrypoints.cli import app
from services.intake.application import Intake
from services.intake.consumer import IntakeHandler
from services.operations.replay import (
    MemoryAllocation,
    compare_job,
    in_shares,
    live_decisions,
    merged,
    rederive,
    rederive_in_memory,
    replay,
)
from services.operations.runs import OperationRuns
from services.operations.what_if import (
    accounts,
    parse_policy,
    what_if,
    what_if_in_shares,
)
from tests.harness import consumer_record, environment
from tests.reliability.workload import workload


def recorded(settings: Settings, seed: int = 5, orders: int = 400) -> tuple[Intake, Allocation]:
    """A workload recorded by intake's handler a fetch of 100 at a time, and the allocation
    store derived from it."""
    intake, live = build_intake(settings), build_allocation(settings)
    handler = IntakeHandler(intake, settings)
    offsets: dict[TopicPartition, int] = defaultdict(int)
    fetch: dict[TopicPartition, list[Any]] = defaultdict(list)
    for number, (kind, key, value) in enumerate(workload(seed, orders=orders, skus=8).messages):
        partition = TopicPartition(getattr(settings.topics, kind), 0)
        record = consumer_record(
            value, topic=partition.topic, key=key.encode() if key else None,
            offset=offsets[partition],
        )  # fmt: skip
        offsets[partition] += 1
        fetch[partition].append(record)
        if number % 100 == 99:
            handler.handle(dict(fetch))
            fetch.clear()
    handler.handle(dict(fetch))
    rederive(intake, live)
    return intake, live


def another(database_url: str) -> str:
    """A second empty store beside the test's own."""
    if database_url.startswith("sqlite"):
        return f"{database_url}-another"
    return database_url.replace("schema=", "schema=another_")


@pytest.fixture
def history(database_url: str) -> tuple[Settings, Intake, Allocation]:
    settings = Settings(database_url=database_url)
    intake, live = recorded(settings)
    return settings, intake, live


def test_a_replay_finds_every_live_decision_again_in_one_process_or_several(
    history: tuple[Settings, Intake, Allocation],
) -> None:
    settings, intake, live = history
    alone = replay(intake, live)
    assert alone.identical
    assert alone.live > 500

    def stores() -> tuple[Intake, Allocation]:
        return build_intake(settings), build_allocation(settings)

    shared = merged(in_shares(stores, MemoryAllocation(), compare_job, workers=2))
    assert shared.identical
    assert (shared.commands, shared.live) == (alone.commands, alone.live)


def test_a_what_if_that_changes_nothing_changes_nothing(
    history: tuple[Settings, Intake, Allocation],
) -> None:
    _, intake, live = history
    report = what_if(intake, live, MemoryAllocation())
    assert report.totals.lines > 300
    assert report.totals.lines_changed == 0
    assert report.skus == report.orders == []


def test_a_default_deny_gives_what_a_service_that_denies_by_default_decided(
    database_url: str, history: tuple[Settings, Intake, Allocation]
) -> None:
    _, intake, live = history
    engine = MemoryAllocation(default_policy=parse_policy("deny"))
    then = accounts(rederive_in_memory(intake, engine))
    _, denied = recorded(Settings(database_url=another(database_url), backorders_allowed=False))
    assert then == accounts(live_decisions(denied))
    report = what_if(intake, live, MemoryAllocation(default_policy=parse_policy("deny")))
    assert report.totals.rejected > 0
    assert report.totals.backordered < 0


def test_an_imposed_policy_changes_its_sku_alone(
    history: tuple[Settings, Intake, Allocation],
) -> None:
    settings, intake, live = history
    busiest = max(accounts(live_decisions(live)).values(), key=lambda line: line.backordered).sku
    engine = MemoryAllocation(policies={busiest: parse_policy("deny")})
    report = what_if_in_shares(
        lambda: (build_intake(settings), build_allocation(settings)), engine, workers=2
    )
    assert [d.name for d in report.skus] == [busiest]
    assert report.skus[0].rejected > 0
    then = accounts(rederive_in_memory(intake, MemoryAllocation(policies=engine.policies)))
    assert all(line.backordered == 0 for line in then.values() if line.sku == busiest)


def test_the_cli_reports_a_what_if_and_keeps_its_decisions(
    history: tuple[Settings, Intake, Allocation], tmp_path: Path
) -> None:
    settings, intake, live = history
    env = environment(settings)
    runner = CliRunner()
    compared = runner.invoke(app, ["replay"], env=env)
    assert compared.exit_code == 0, compared.output
    assert "identical" in compared.output

    report, kept = tmp_path / "report.json", tmp_path / "what-if.db"
    found = runner.invoke(
        app,
        ["replay", "--what-if", "--default-policy", "limit:2,max_wait_days=1",
         "--report", str(report), "--save", str(kept), "--workers", "2"],
        env=env,
    )  # fmt: skip
    assert found.exit_code == 0, found.output
    limited = MemoryAllocation(default_policy=parse_policy("limit:2,max_wait_days=1"))
    expected = what_if(intake, live, limited)
    written = json.loads(report.read_text())
    assert written["totals"]["lines_changed"] == expected.totals.lines_changed > 0
    assert written["totals"]["expired"] == expected.totals.expired
    with sqlite3.connect(kept) as db:
        (decisions,) = db.execute("SELECT COUNT(*) FROM decisions").fetchone()
        (lines,) = db.execute("SELECT COUNT(*) FROM line_accounts").fetchone()
    assert decisions > 0
    assert lines == expected.totals.lines

    # Both runs are recorded where GET /admin/replay shows them.
    runs = OperationRuns(ReadStore(settings.database_url)).latest(["replay", "what-if"])
    assert [(r.kind, r.state) for r in runs] == [("what-if", "done"), ("replay", "done")]
    assert runs[0].result["lines_changed"] == expected.totals.lines_changed
    assert runs[1].result["identical"] is True

    refused = runner.invoke(app, ["replay", "--default-policy", "deny"], env=env)
    assert refused.exit_code != 0
    assert "--what-if" in refused.output


@pytest.mark.parametrize(
    ("text", "problem"),
    [("maybe", "one of"), ("limit", "takes a number"), ("deny:3", "takes a number"),
     ("allow,max_wait_days=0", "1 to 3650"), ("allow,wait=3", "max_wait_days")],
)  # fmt: skip
def test_a_policy_on_the_command_line_is_checked(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_policy(text)
