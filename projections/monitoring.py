"""What the projections stage reports of its read models besides serving them: how far each
lags the allocation log, and the live conservation check (stock and order lines add up).

Both run on a timer of their own in the projections stage (`keep_watch`), not in the feed:
a feed stuck on an event or a lock would stop reporting exactly when its lag grows.

The conservation check asks the read models what the domain guarantees after every commit:
per SKU available + allocated = on_hand = received − shipped, per order line allocated +
backordered + shipped + cancelled + rejected = ordered, nothing negative, and a SKU's
allocated, backordered and shipped units are its lines' (each read model is fed in one
transaction, so every commit satisfies them). Each check is one SQL statement (one
snapshot) that counts the rows that do not add up; a few of them are logged by key. A
non-zero count is a bug in the service or a row changed by hand: the read model is wrong
and is rebuilt from the log (`fulfillment projections rebuild`) once the cause is known.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from projections.runner import ReadModels
from projections.store import ReadStore
from services.adapters.logs import get_logger
from services.adapters.metrics import (
    CONSERVATION_CHECKED,
    CONSERVATION_VIOLATIONS,
    PROJECTION_LAG,
    PROJECTION_POSITION,
)

log = get_logger(__name__)

# How often the stage reports each read model's lag: often enough for any scrape interval.
LAG_EVERY_SECONDS = 2.0
# Rows that do not add up, logged per check: enough to start looking, never a flood.
EXAMPLES = 5

_STOCK = ("received", "shipped", "on_hand", "available", "allocated", "backordered")
_SKU_COUNTERS = (*_STOCK, "open_backorders", "inbound")
_LINE_PARTS = ("allocated", "backordered", "shipped", "cancelled", "rejected")


def _any_negative(columns: tuple[str, ...]) -> str:
    return " OR ".join(f"{column} < 0" for column in columns)


@dataclass(frozen=True)
class Check:
    """One conservation rule: `offending` selects the rows that break it, `order` sorts
    them for the examples logged."""

    name: str
    rule: str
    offending: str
    order: str


CHECKS = (
    Check(
        "sku_stock",
        "per SKU: available + allocated = on_hand = received - shipped, nothing negative",
        f"SELECT sku, {', '.join(_SKU_COUNTERS)} FROM sku_positions "
        "WHERE available + allocated <> on_hand OR on_hand <> received - shipped "
        f"OR {_any_negative(_SKU_COUNTERS)}",
        "sku",
    ),
    Check(
        "order_lines",
        "per order line: allocated + backordered + shipped + cancelled + rejected = ordered, "
        "nothing negative",
        f"SELECT order_id, line_id, sku, ordered, {', '.join(_LINE_PARTS)} FROM order_lines "
        f"WHERE {' + '.join(_LINE_PARTS)} <> ordered "
        f"OR {_any_negative(('ordered', *_LINE_PARTS))}",
        "order_id, line_id",
    ),
    # Only while both read models stand at one position (always, but while one is refilled
    # after an upgrade or swapped in by a rebuild): else they hold different pasts.
    Check(
        "sku_lines",
        "per SKU: allocated, backordered and shipped = the sums over its order lines",
        "SELECT p.sku, p.allocated, p.backordered, p.shipped, "
        "COALESCE(l.allocated, 0) AS lines_allocated, "
        "COALESCE(l.backordered, 0) AS lines_backordered, "
        "COALESCE(l.shipped, 0) AS lines_shipped "
        "FROM sku_positions AS p LEFT JOIN (SELECT sku, SUM(allocated) AS allocated, "
        "SUM(backordered) AS backordered, SUM(shipped) AS shipped FROM order_lines "
        "GROUP BY sku) AS l ON l.sku = p.sku "
        "WHERE (p.allocated <> COALESCE(l.allocated, 0) "
        "OR p.backordered <> COALESCE(l.backordered, 0) "
        "OR p.shipped <> COALESCE(l.shipped, 0)) "
        "AND (SELECT position FROM projection_positions WHERE name = 'sku_positions') = "
        "(SELECT position FROM projection_positions WHERE name = 'order_lines')",
        "p.sku",
    ),
)


@dataclass(frozen=True)
class Finding:
    """What one check found: how many rows break its rule, and the first few of them."""

    check: str
    rule: str
    violations: int
    examples: list[dict[str, Any]]


def check_conservation(store: ReadStore, examples: int = EXAMPLES) -> list[Finding]:
    """Every check over the read models as they stand: a count, and examples if any."""
    findings = []
    for check in CHECKS:
        counted = store.read(f"SELECT COUNT(*) AS violations FROM ({check.offending}) AS o")
        violations = int(counted[0]["violations"])
        found = (
            store.read(f"{check.offending} ORDER BY {check.order} LIMIT ?", [examples])
            if violations
            else []
        )
        findings.append(Finding(check.name, check.rule, violations, found))
    return findings


def run_conservation_check(store: ReadStore) -> list[Finding]:
    """The check, exported (fulfillment_conservation_violations per check, and when it last
    completed) and logged with the rows that do not add up."""
    findings = check_conservation(store)
    for finding in findings:
        CONSERVATION_VIOLATIONS.labels(finding.check).set(finding.violations)
        if finding.violations:
            log.error(
                "conservation check failed: read-model rows do not add up",
                check=finding.check,
                rule=finding.rule,
                violations=finding.violations,
                examples=[_plain(row) for row in finding.examples],
            )
    CONSERVATION_CHECKED.set(time.time())
    return findings


def record_projection_lag(models: ReadModels) -> dict[str, int]:
    """Each read model's position and its lag behind the allocation log's head, exported;
    returns the lags. Positions are read before the head, so a lag is never negative."""
    live = models.live()
    head = models.head()
    lags = {name: max(0, head - at.position) for name, at in live.items()}
    for name, at in live.items():
        PROJECTION_POSITION.labels(name).set(at.position)
        PROJECTION_LAG.labels(name).set(lags[name])
    return lags


async def keep_watch(
    models: ReadModels,
    stopping: asyncio.Event,
    *,
    check_every: float,
    lag_every: float = LAG_EVERY_SECONDS,
) -> None:
    """Until `stopping`: the read models' lag every `lag_every` seconds, and the conservation
    check every `check_every` (0: never), the first at once. An error (the store away) is
    logged and the next round tries again: the check's timestamp then ages, which alerts."""
    next_check = time.monotonic()
    while not stopping.is_set():
        await _logged("projection lag", lambda: record_projection_lag(models))
        wait = lag_every
        if check_every:
            if time.monotonic() >= next_check:
                next_check = time.monotonic() + check_every
                await _logged("conservation check", lambda: run_conservation_check(models.store))
            wait = max(0.0, min(wait, next_check - time.monotonic()))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), timeout=wait)


async def _logged(what: str, measure: Callable[[], object]) -> None:
    try:
        await asyncio.to_thread(measure)
    except Exception as error:
        log.warning("could not measure the read models; trying again", what=what, error=repr(error))


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    """A row as the log shows it: numbers as ints (PostgreSQL's sums are Decimals)."""
    return {key: int(v) if isinstance(v, Decimal) else v for key, v in row.items()}
