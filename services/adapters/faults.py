"""Crash points for fault-injection tests: off unless FULFILLMENT_CRASH_AT is set.

`FULFILLMENT_CRASH_AT=intake.after_commit:0.05,relay.after_publish:0.1` makes the process
kill itself (SIGKILL: no cleanup, no flush) with that probability each time it passes the
point. The points sit where exactly-once effect is hardest: inside a batch's transaction,
between the database commit and the Kafka commit, between a relay's publish and the record
of its position.
"""

from __future__ import annotations

import os
import random
import signal
import sys
from typing import Any

POINTS = (
    "intake.in_transaction",
    "intake.after_commit",
    "allocation.in_transaction",
    "allocation.after_commit",
    "relay.after_publish",
    "projections.after_commit",
)

_armed: dict[str, float] = {}
for _item in filter(None, os.environ.get("FULFILLMENT_CRASH_AT", "").split(",")):
    _name, _, _chance = _item.partition(":")
    if _name not in POINTS:
        raise ValueError(f"FULFILLMENT_CRASH_AT names unknown point {_name!r}; use {POINTS}")
    _armed[_name] = float(_chance or "1")
_random = random.Random(os.environ.get("FULFILLMENT_CRASH_SEED"))


def enabled() -> bool:
    return bool(_armed)


def crash_point(name: str) -> None:
    """Dies here, at once, if this point is armed and the dice say so."""
    chance = _armed.get(name)
    if chance and _random.random() < chance:
        sys.stderr.write(f"fault injection: SIGKILL at {name}\n")
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGKILL)


def arm_transaction(recorder: Any, name: str) -> None:
    """Adds the `<name>.in_transaction` point: after the events are inserted and the
    position is written, before the commit."""
    point = f"{name}.in_transaction"
    if point not in _armed:
        return
    insert_tracking = recorder._insert_tracking

    def inserting(cursor: Any, tracking: Any) -> None:
        insert_tracking(cursor, tracking)
        crash_point(point)

    recorder._insert_tracking = inserting
