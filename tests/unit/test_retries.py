"""The retry policy: waits that grow with jitter up to a cap, loops that never give up, and a
stop that ends a wait at once. Sleeps are faked (or interrupted): nothing here waits long."""

from __future__ import annotations

import asyncio
import time

import pytest

from services.adapters import retries
from services.adapters.retries import STARTUP, Policy, supervise

pytestmark = pytest.mark.timeout(30)

SLOW = Policy(attempts=None, wait_initial=60, wait_max=60, wait_jitter=0)


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Every wait stamina asks for, recorded and skipped (stamina sleeps with asyncio.sleep)."""
    asked: list[float] = []
    real_sleep = asyncio.sleep

    async def sleep(delay: float) -> None:
        asked.append(delay)
        await real_sleep(0)

    monkeypatch.setattr(asyncio, "sleep", sleep)
    return asked


def bounds(retry: int) -> tuple[float, float]:
    """The policy's lower and upper bound for the wait before retry `retry` (1-based)."""
    low = min(retries.WAIT_MAX, retries.WAIT_INITIAL * retries.WAIT_EXP_BASE ** (retry - 1))
    return low, min(retries.WAIT_MAX, low + retries.WAIT_JITTER)


async def test_waits_grow_with_jitter_up_to_the_cap_and_the_loop_never_gives_up(
    waits: list[float],
) -> None:
    stopping = asyncio.Event()
    errors: list[Exception] = []
    failures = 60  # well past stamina's default of 10 attempts

    async def step() -> None:
        if len(errors) == failures:
            stopping.set()
            return
        raise ConnectionError("store away")

    await supervise(step, stopping=stopping, on_error=errors.append)

    assert len(errors) == failures
    assert all(isinstance(e, ConnectionError) for e in errors)
    assert len(waits) == failures
    for retry, wait in enumerate(waits, start=1):
        low, high = bounds(retry)
        assert low <= wait <= high, (retry, wait)
    assert waits[-1] == retries.WAIT_MAX
    # Jittered: not the bare exponential (the chance of a draw of exactly 0 is nil).
    assert all(wait > bounds(retry)[0] for retry, wait in enumerate(waits[:4], start=1))
    # Growing: each lower bound doubles until the cap.
    lows = [bounds(retry)[0] for retry in range(1, 7)]
    assert lows == [0.25, 0.5, 1.0, 2.0, 4.0, 5.0]


async def test_a_success_starts_the_waits_over(waits: list[float]) -> None:
    stopping = asyncio.Event()
    outcomes = iter([False, False, False, True, False, None])

    async def step() -> None:
        outcome = next(outcomes)
        if outcome is None:
            stopping.set()
        elif not outcome:
            raise ConnectionError("broker away")

    await supervise(step, stopping=stopping)

    assert len(waits) == 4
    assert bounds(3)[0] <= waits[2] <= bounds(3)[1]
    assert bounds(1)[0] <= waits[3] <= bounds(1)[1]  # after the success: the first wait again


async def test_stop_ends_a_wait_at_once() -> None:
    stopping = asyncio.Event()
    calls = 0

    async def step() -> None:
        nonlocal calls
        calls += 1
        raise ConnectionError("store away")

    loop = asyncio.create_task(supervise(step, stopping=stopping, policy=SLOW))
    await asyncio.sleep(0.05)  # the step failed; the loop waits 60 s
    started = time.monotonic()
    stopping.set()
    await asyncio.wait_for(loop, timeout=5)
    assert time.monotonic() - started < 1
    assert calls == 1
    assert not _pending_waits()


async def test_cancelling_ends_a_wait_at_once() -> None:
    stopping = asyncio.Event()
    failed = asyncio.Event()

    async def step() -> None:
        failed.set()
        raise ConnectionError("store away")

    loop = asyncio.create_task(supervise(step, stopping=stopping, policy=SLOW))
    await asyncio.wait_for(failed.wait(), timeout=5)
    await asyncio.sleep(0.01)
    loop.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(loop, timeout=5)
    await asyncio.sleep(0)  # let the cancelled wait finish
    assert not _pending_waits()


async def test_stop_never_cuts_a_running_step_short() -> None:
    stopping = asyncio.Event()
    finished = []

    async def step() -> None:
        stopping.set()
        await asyncio.sleep(0.01)
        finished.append(True)

    await asyncio.wait_for(supervise(step, stopping=stopping), timeout=5)
    assert finished == [True]


async def test_errors_it_was_not_told_to_retry_propagate(waits: list[float]) -> None:
    async def step() -> None:
        raise KeyError("a bug")

    with pytest.raises(KeyError):
        await supervise(step, stopping=asyncio.Event(), on=ConnectionError)
    assert waits == []


def test_startup_gives_up_after_its_attempts(monkeypatch: pytest.MonkeyPatch) -> None:
    waits: list[float] = []
    monkeypatch.setattr(time, "sleep", waits.append)  # the sync path sleeps with time.sleep
    calls = 0

    def build() -> None:
        nonlocal calls
        calls += 1
        raise ConnectionError("schema race")

    with pytest.raises(ConnectionError):
        STARTUP.call(ConnectionError, build)
    assert calls == retries.STARTUP_ATTEMPTS
    assert len(waits) == retries.STARTUP_ATTEMPTS - 1
    for retry, wait in enumerate(waits, start=1):
        low, high = bounds(retry)
        assert low <= wait <= high, (retry, wait)


def test_startup_returns_once_the_race_is_over(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(time, "sleep", lambda _: None)
    attempts = iter([1, 2])

    def build() -> str:
        if next(attempts) == 1:
            raise ConnectionError("lost the race")
        return "built"

    assert STARTUP.call(ConnectionError, build) == "built"


def _pending_waits() -> list[asyncio.Task[object]]:
    """Backoff waits still running (supervise runs each in a task of its own)."""
    return [
        task
        for task in asyncio.all_tasks()
        if not task.done() and getattr(task.get_coro(), "__name__", "") == "_next"
    ]
