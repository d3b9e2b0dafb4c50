"""The one retry policy: how long every loop of ours waits before it tries again after an error.

Jittered exponential backoff from stamina, so it is written once and the same everywhere: the
wait before retry n is min(WAIT_MAX, WAIT_INITIAL * 2 ** (n - 1) + uniform(0, WAIT_JITTER)),
i.e. about 0.25-0.75 s, 0.5-1 s, 1-1.5 s, 2-2.5 s, 4-4.5 s, then 5 s for as long as it lasts.
Short first waits get past a blip (a serialisation failure, a leader election) at once;
growing ones stop a loop from hammering a broker or store that is down; the cap keeps a
loop from sleeping long after the outage ended; the jitter keeps processes that failed
together from retrying in lockstep.

Two bounds on the number of attempts:

- SUPERVISING never gives up: the loops that keep a stage going (consumers, relays, the
  read models and their publisher) must outlast any broker or store outage. They run under
  `supervise`, which the stage's stop event ends at once, even in the middle of a wait.
- STARTUP gives up after a few attempts: races between processes starting together (the same
  schema created twice, a new topic's metadata lagging its creation) settle in a retry or
  two; anything longer is a fault the operator has to see.

Not here: a standby's poll for the lead (leadership.STANDBY_RETRY). Standing by is not an
error, and its interval is the takeover time; backing it off would only slow a takeover.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

import stamina
from stamina.instrumentation import RetryDetails, set_on_retry_hooks

from services.adapters.logs import get_logger

log = get_logger(__name__)

T = TypeVar("T")

Retryable = type[Exception] | tuple[type[Exception], ...]

WAIT_INITIAL = 0.25
WAIT_MAX = 5.0
WAIT_JITTER = 0.5
WAIT_EXP_BASE = 2.0
STARTUP_ATTEMPTS = 6  # five waits: 7.75-10 s in all


@dataclass(frozen=True)
class Policy:
    """How many attempts, and stamina's backoff between them (the module docstring's formula)."""

    attempts: int | None  # None: until it works, or until the loop is stopped
    wait_initial: float = WAIT_INITIAL
    wait_max: float = WAIT_MAX
    wait_jitter: float = WAIT_JITTER
    wait_exp_base: float = WAIT_EXP_BASE

    def _options(self) -> dict[str, Any]:
        return {
            "attempts": self.attempts,
            "timeout": None,  # stamina's default, 45 s, would end a loop that must not end
            "wait_initial": self.wait_initial,
            "wait_max": self.wait_max,
            "wait_jitter": self.wait_jitter,
            "wait_exp_base": self.wait_exp_base,
        }

    def attempts_of(self, on: Retryable) -> Iterable[stamina.Attempt]:
        """stamina's retry blocks (sync): `for attempt in ...: with attempt: ...`."""
        return stamina.retry_context(on, **self._options())

    def async_attempts_of(self, on: Retryable) -> AsyncIterator[stamina.Attempt]:
        """stamina's retry blocks (async): `async for attempt in ...: with attempt: ...`."""
        return stamina.retry_context(on, **self._options())

    def call(self, on: Retryable, function: Callable[[], T]) -> T:
        """`function()`, tried again after the policy's wait each time it raises `on`."""
        return stamina.RetryingCaller(**self._options())(on, function)

    async def call_async(self, on: Retryable, function: Callable[[], Awaitable[T]]) -> T:
        """`await function()`, tried again after the policy's wait each time it raises `on`."""
        return await stamina.AsyncRetryingCaller(**self._options())(on, function)


SUPERVISING = Policy(attempts=None)
STARTUP = Policy(attempts=STARTUP_ATTEMPTS)


async def supervise(
    step: Callable[[], Awaitable[None]],
    *,
    stopping: asyncio.Event,
    on: Retryable = Exception,
    on_error: Callable[[Exception], None] | None = None,
    policy: Policy = SUPERVISING,
) -> None:
    """Runs `step` again and again until `stopping` is set: a stage's main loop.

    A step that raises `on` is reported to `on_error` (the loop's own warning) and tried
    again after the policy's wait, which grows while steps keep failing and starts over after
    one succeeds. Setting `stopping` ends a wait at once but never cuts a step short (a batch
    in flight commits); cancelling the task ends either. Other exceptions propagate.
    """
    while not stopping.is_set():
        attempts = aiter(policy.async_attempts_of(on))
        failed = False
        while True:
            try:
                if failed:  # the next attempt comes after a wait that `stopping` ends
                    attempt = await _unless_stopped(stopping, _next(attempts))
                    if attempt is None:
                        return
                else:
                    attempt = await anext(attempts)
            except StopAsyncIteration:
                break  # the step succeeded: the next failure starts the waits over
            if stopping.is_set():
                return
            failed = False
            with attempt:
                try:
                    await step()
                except on as error:
                    failed = True
                    if on_error is not None:
                        on_error(error)
                    raise


async def _next(attempts: AsyncIterator[stamina.Attempt]) -> stamina.Attempt:
    return await anext(attempts)


async def _unless_stopped(stopping: asyncio.Event, waiting: Coroutine[Any, Any, T]) -> T | None:
    """What `waiting` returns, or None as soon as `stopping` is set (`waiting` is cancelled)."""
    task = asyncio.ensure_future(waiting)
    stopped = asyncio.ensure_future(stopping.wait())
    try:
        done, _ = await asyncio.wait((task, stopped), return_when=asyncio.FIRST_COMPLETED)
    finally:
        task.cancel()  # a no-op once done
        stopped.cancel()
    await asyncio.wait((task, stopped))  # both finished: no wait outlives its loop
    return task.result() if task in done else None


def _log_scheduled(details: RetryDetails) -> None:
    """The wait stamina chose (jitter included), next to the loop's own warning."""
    log.debug(
        "retry scheduled",
        retry=details.retry_num,
        wait_seconds=round(details.wait_for, 2),
        error=repr(details.caused_by),
    )


# Instead of stamina's defaults: its structlog hook would log a second warning per retry
# without the loop's context, and its Prometheus hook labels a counter by retry number, which
# grows without bound under SUPERVISING (BATCH_FAILURES and the logs count failures already).
set_on_retry_hooks([_log_scheduled])
