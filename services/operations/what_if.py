"""What-if: every decision re-derived from the recorded inputs under other policies, and
what would have changed, per SKU and per order. Nothing live is touched: the SKUs of the
what-if live in memory (services/operations/replay.py), or in a scratch store if asked.

A scenario changes what the code lets change without a release: a default policy for the
SKUs without one of their own (what BACKORDERS_ALLOWED and a `BackorderPolicySet` say), and
policies imposed on some SKUs from their first input on (a policy file). The queue's order
is the contract's one rule (priority, order time, arrival): there is no other to try.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

from services.allocation.application import Allocation
from services.intake.application import Intake
from services.operations.replay import (
    DecisionRecord,
    MemoryAllocation,
    PolicyOverride,
    Progress,
    Stores,
    in_shares,
    live_decisions,
    rederive_in_memory,
)

MODES = ("allow", "deny", "limit")


def parse_policy(text: str) -> PolicyOverride:
    """`allow`, `deny` or `limit:N`, each optionally `,max_wait_days=D`: a policy on the
    command line (e.g. `limit:20,max_wait_days=14`)."""
    mode, _, rest = text.partition(",")
    backorders, _, limit = mode.partition(":")
    if backorders not in MODES:
        raise ValueError(f"policy {text!r}: backorders must be one of {', '.join(MODES)}")
    if (backorders == "limit") != bool(limit):
        raise ValueError(f"policy {text!r}: `limit` takes a number (limit:N), the others none")
    max_wait: int | None = None
    if rest:
        name, _, value = rest.partition("=")
        if name.strip() != "max_wait_days" or not value.strip().isdigit():
            raise ValueError(f"policy {text!r}: after the mode only max_wait_days=D")
        max_wait = int(value)
    return checked_policy(backorders, int(limit) if limit else None, max_wait, text)


def checked_policy(
    backorders: str, limit: int | None, max_wait_days: int | None, where: str
) -> PolicyOverride:
    """A policy as the contract allows it (BackorderPolicySet), or a clear error."""
    if backorders not in MODES:
        raise ValueError(f"{where}: backorders must be one of {', '.join(MODES)}")
    if backorders == "limit" and (limit is None or limit < 0):
        raise ValueError(f"{where}: `limit` needs a limit of 0 or more")
    if max_wait_days is not None and not 1 <= max_wait_days <= 3650:
        raise ValueError(f"{where}: max_wait_days is 1 to 3650 (or none)")
    return PolicyOverride(backorders, limit if backorders == "limit" else None, max_wait_days)


def load_policies(path: Path) -> dict[str, PolicyOverride]:
    """A policy file: JSON (or YAML) mapping each SKU to {backorders, limit, max_wait_days}."""
    text = path.read_text()
    data: Any
    if path.suffix in (".yaml", ".yml"):
        import yaml

        data = yaml.safe_load(text)
    else:
        data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected an object mapping each SKU to its policy")
    policies = {}
    for sku, policy in data.items():
        if not isinstance(policy, dict) or "backorders" not in policy:
            raise ValueError(f"{path}: {sku!r} needs at least {{'backorders': ...}}")
        policies[str(sku)] = checked_policy(
            str(policy["backorders"]),
            policy.get("limit"),
            policy.get("max_wait_days"),
            f"{path}: {sku}",
        )
    return policies


@dataclass
class LineAccount:
    """What became of one order line, from its decisions."""

    sku: str
    order_id: str
    line_id: str
    allocated: int = 0  # at order time
    backordered: int = 0
    rejected: int = 0
    filled: int = 0
    expired: int = 0
    cancelled: int = 0  # queued units the customer cancelled, and releases
    last_filled_at: datetime | None = None


COUNTED = ("allocated", "backordered", "rejected", "filled", "expired", "cancelled")
MOVES = {
    "LineAllocated": "allocated",
    "LineBackordered": "backordered",
    "LineRejected": "rejected",
    "BackorderFilled": "filled",
    "AllocationReleased": "cancelled",
}


def accounts(records: Iterable[DecisionRecord]) -> dict[tuple[str, str, str], LineAccount]:
    """Each line's account, folded from its decisions in order."""
    found: dict[tuple[str, str, str], LineAccount] = {}
    for record in records:
        key = (record.sku, record.order_id, record.line_id)
        line = found.get(key)
        if line is None:
            line = found[key] = LineAccount(record.sku, record.order_id, record.line_id)
        counter = MOVES.get(record.kind)
        if record.kind == "BackorderCancelled":
            counter = "expired" if record.reason == "expired" else "cancelled"
        if counter is None:
            continue
        setattr(line, counter, getattr(line, counter) + record.quantity)
        if record.kind == "BackorderFilled":
            line.last_filled_at = record.occurred
    return found


# A line's account as a tally folds it, in a list: COUNTED's counters, then when it was
# last filled as read (a datetime, or the ISO text the log holds; None if never). A
# LineAccount is made only for a line that changed (or for --save).
Fold = list[Any]
FILLED_AT = len(COUNTED)
COLUMNS = {move: COUNTED.index(counter) for move, counter in MOVES.items()}
EXPIRED, CANCELLED = COUNTED.index("expired"), COUNTED.index("cancelled")
FILLED = COUNTED.index("filled")


def _folds(records: Iterable[DecisionRecord]) -> dict[tuple[str, str, str], Fold]:
    """`accounts`, each line a Fold: what a tally compares, at a third of the cost."""
    found: dict[tuple[str, str, str], Fold] = {}
    columns = COLUMNS
    for record in records:
        key = (record.sku, record.order_id, record.line_id)
        line = found.get(key)
        if line is None:
            line = found[key] = [0, 0, 0, 0, 0, 0, None]
        kind = record.kind
        if kind == "BackorderCancelled":
            column = EXPIRED if record.reason == "expired" else CANCELLED
        else:
            column = columns.get(kind, -1)
            if column < 0:
                continue
        line[column] += record.quantity
        if column == FILLED:
            line[FILLED_AT] = record.occurred_at
    return found


def _same(live: Fold | None, then: Fold | None) -> bool:
    """Whether two folds of a line are equal accounts; times are parsed only when their
    text differs (a datetime of the what-if against the live log's ISO text)."""
    if live is None or then is None:
        return live is then
    if live[:FILLED_AT] != then[:FILLED_AT]:
        return False
    was, now = live[FILLED_AT], then[FILLED_AT]
    return was == now or _moment(was) == _moment(now)


def _moment(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) else value


def _account(key: tuple[str, str, str], fold: Fold | None) -> LineAccount | None:
    """A Fold as the LineAccount `accounts` gives."""
    if fold is None:
        return None
    sku, order_id, line_id = key
    allocated, backordered, rejected, filled, expired, cancelled, last_filled = fold
    return LineAccount(
        sku, order_id, line_id, allocated, backordered, rejected, filled, expired, cancelled,
        last_filled_at=_moment(last_filled),
    )  # fmt: skip


@dataclass
class Difference:
    """The what-if less the live history, for a SKU, an order or all of them."""

    name: str
    lines: int = 0
    lines_changed: int = 0
    filled_sooner: int = 0  # lines whose last unit was filled earlier (or that now are)
    filled_later: int = 0  # later (or no longer)
    allocated: int = 0  # units: what-if − live
    backordered: int = 0
    rejected: int = 0
    filled: int = 0
    expired: int = 0
    cancelled: int = 0

    def add(self, live: LineAccount | None, then: LineAccount | None) -> None:
        self.lines += 1
        changed = False
        for counter in COUNTED:
            delta = (getattr(then, counter) if then else 0) - (
                getattr(live, counter) if live else 0
            )
            if delta:
                changed = True
                setattr(self, counter, getattr(self, counter) + delta)
        was, now = _filled_at(live), _filled_at(then)
        if was != now:
            changed = True
            if now is not None and (was is None or now < was):
                self.filled_sooner += 1
            else:
                self.filled_later += 1
        self.lines_changed += changed


def _filled_at(line: LineAccount | None) -> datetime | None:
    """When the line's queued units were all filled; None if they never were (or none
    were queued)."""
    if line is None or line.last_filled_at is None or line.filled < line.backordered:
        return None
    return line.last_filled_at


@dataclass
class WhatIfReport:
    commands: int
    totals: Difference
    skus: list[Difference] = field(default_factory=list)  # changed ones, most changed first
    orders: list[Difference] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "commands": self.commands,
            "totals": asdict(self.totals),
            "skus": [asdict(d) for d in self.skus],
            "orders": [asdict(d) for d in self.orders],
        }


Lines = dict[tuple[str, str, str], LineAccount]


@dataclass
class Tally:
    """A worker's differences, for its share of the SKUs; tallies add up (a line is one
    SKU's, so one worker's). Only the SKUs and orders with a changed line have a
    Difference (with those lines in `lines`); every other line is only counted, by SKU and
    order, in `unchanged`."""

    totals: Difference = field(default_factory=lambda: Difference("all"))
    skus: dict[str, Difference] = field(default_factory=dict)
    orders: dict[str, Difference] = field(default_factory=dict)
    unchanged_skus: Counter[str] = field(default_factory=Counter)
    unchanged_orders: Counter[str] = field(default_factory=Counter)
    records: list[DecisionRecord] = field(default_factory=list)  # kept for --save
    lines: Lines = field(default_factory=dict)  # the what-if's, kept for --save

    def add(self, other: Tally) -> None:
        _sum(self.totals, other.totals)
        for mine, theirs in ((self.skus, other.skus), (self.orders, other.orders)):
            for name, difference in theirs.items():
                _sum(mine.setdefault(name, Difference(name)), difference)
        self.unchanged_skus.update(other.unchanged_skus)
        self.unchanged_orders.update(other.unchanged_orders)
        self.records += other.records
        self.lines.update(other.lines)

    def differences(self) -> tuple[list[Difference], list[Difference]]:
        """The SKUs' and the orders' Differences, each with all its lines counted."""
        for differences, unchanged in (
            (self.skus, self.unchanged_skus),
            (self.orders, self.unchanged_orders),
        ):
            for name, difference in differences.items():
                difference.lines += unchanged[name]
                unchanged[name] = 0  # counted: a second call counts nothing twice
        return list(self.skus.values()), list(self.orders.values())


def _sum(into: Difference, other: Difference) -> None:
    for name in Difference.__dataclass_fields__:
        if name != "name":
            setattr(into, name, getattr(into, name) + getattr(other, name))


def what_if(
    intake: Intake,
    live: Allocation,
    engine: MemoryAllocation,
    progress: Progress | None = None,
    scratch: Path | None = None,
) -> WhatIfReport:
    """Re-derives every decision under `engine`'s policies and compares each line's account
    with the live one's. `scratch`: a new SQLite file to keep the what-if's decisions and
    line accounts in, for queries (the live stores are only read)."""
    tally = tally_job(intake, live, engine, progress, keep=scratch is not None)
    return _report(engine.commands, tally, scratch)


def what_if_in_shares(
    stores: Stores,
    engine: MemoryAllocation,
    workers: int,
    progress: Progress | None = None,
    scratch: Path | None = None,
) -> WhatIfReport:
    """`what_if` with a worker a core, each over its share of the SKUs."""
    job = partial(tally_job, keep=scratch is not None)
    tally = Tally()
    for part in in_shares(stores, engine, job, workers, progress):
        tally.add(part)
    return _report(engine.commands, tally, scratch)


def tally_job(
    intake: Intake,
    live: Allocation,
    engine: MemoryAllocation,
    progress: Progress | None,
    *,
    keep: bool = False,
) -> Tally:
    """The differences between the live and the what-if account of every line (of the
    engine's share of SKUs); the what-if's decisions and lines too if asked to keep them."""
    records: list[DecisionRecord] = []
    rederived = rederive_in_memory(intake, engine, progress)
    then = _folds(_kept(rederived, records) if keep else rederived)
    was = _folds(live_decisions(live, share=engine.share))
    tally = Tally(records=records)
    if keep:
        tally.lines = {key: _account(key, fold) for key, fold in then.items()}  # type: ignore[misc]
    totals, skus, orders = tally.totals, tally.skus, tally.orders
    unchanged_skus, unchanged_orders = tally.unchanged_skus, tally.unchanged_orders
    for key in was.keys() | then.keys():
        live_line, then_line = was.get(key), then.get(key)
        sku, order_id, _ = key
        if _same(live_line, then_line):  # most lines: counted, nothing to compare
            totals.lines += 1
            unchanged_skus[sku] += 1
            unchanged_orders[order_id] += 1
            continue
        live_account, then_account = _account(key, live_line), _account(key, then_line)
        for target in (
            totals,
            skus.setdefault(sku, Difference(sku)),
            orders.setdefault(order_id, Difference(order_id)),
        ):
            target.add(live_account, then_account)
    return tally


def _kept(
    records: Iterable[DecisionRecord], into: list[DecisionRecord]
) -> Iterable[DecisionRecord]:
    for record in records:
        into.append(record)
        yield record


def _report(commands: int, tally: Tally, scratch: Path | None) -> WhatIfReport:
    if scratch is not None:
        save(scratch, tally.records, tally.lines)
    skus, orders = tally.differences()
    return WhatIfReport(
        commands=commands,
        totals=tally.totals,
        skus=_most_changed(skus),
        orders=_most_changed(orders),
    )


def save(
    path: Path, records: list[DecisionRecord], lines: dict[tuple[str, str, str], LineAccount]
) -> None:
    """The what-if's decisions and line accounts as two tables of a new SQLite file."""
    import sqlite3

    if path.exists():
        raise FileExistsError(f"{path} exists: a what-if writes a new file, never over one")
    with sqlite3.connect(path) as db:
        db.execute(f"CREATE TABLE decisions ({', '.join(DecisionRecord._fields)})")
        db.executemany(
            f"INSERT INTO decisions VALUES ({', '.join('?' * len(DecisionRecord._fields))})",
            [r._replace(occurred_at=r.occurred.isoformat()) for r in records],
        )
        columns = list(LineAccount.__dataclass_fields__)
        db.execute(f"CREATE TABLE line_accounts ({', '.join(columns)})")
        db.executemany(
            f"INSERT INTO line_accounts VALUES ({', '.join('?' * len(columns))})",
            [
                tuple(v.isoformat() if isinstance(v, datetime) else v for v in asdict(a).values())
                for a in lines.values()
            ],
        )


def _most_changed(differences: Iterable[Difference]) -> list[Difference]:
    changed = [d for d in differences if d.lines_changed]
    return sorted(
        changed,
        key=lambda d: (
            -(abs(d.allocated) + abs(d.rejected) + abs(d.expired) + d.lines_changed),
            d.name,
        ),
    )
