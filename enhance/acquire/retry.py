"""The retry policy of every network operation: attempts, doubling waits, what is retried.

Built on :mod:`tenacity`. A policy makes at most ``attempts`` calls; after
the ``k``-th failed one it waits ``first_wait * 2 ** (k - 1)`` seconds, capped
at ``max_wait``, unless it stops (attempts used up, or ``stop_when()`` true).
Which failures count is the caller's: an exception for which ``retry_on``
is true, or a result for which ``retry_result`` is true. Anything else ends
the calls at once: an exception propagates unchanged, a result is returned.
When the attempts are used up, the last exception propagates (the caller
wraps it in its own error) or the last result is returned.

The sleep function is a parameter, so tests can record the waits.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import tenacity

__all__ = ["retry_policy"]


def _never(_: object) -> bool:
    return False


def retry_policy(
    *,
    attempts: int,
    first_wait: float,
    max_wait: float = math.inf,
    retry_on: Callable[[BaseException], bool] = _never,
    retry_result: Callable[[Any], bool] = _never,
    stop_when: Callable[[], bool] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    on_failure: Callable[[tenacity.RetryCallState, float | None], None] | None = None,
) -> tenacity.Retrying:
    """A :class:`tenacity.Retrying` with the package's policy; call it as ``policy(fn)``.

    Parameters
    ----------
    attempts : int
        Largest number of calls (at least 1).
    first_wait, max_wait : float
        Seconds before the second call, and the cap of the doubling wait.
    retry_on : callable
        ``retry_on(exc)`` true: the exception is a transient failure, call again.
    retry_result : callable
        ``retry_result(value)`` true: the result is a failure, call again.
    stop_when : callable, optional
        Checked after each failed call; true stops the calls early (the
        failure then stands as if the attempts were used up).
    sleep : callable
        Waits the given seconds (``time.sleep``; tests pass a recorder).
    on_failure : callable, optional
        Called after each failed call with the retry state and the wait
        before the next call (None when no call follows), e.g. to log it.
    """
    if attempts < 1:
        raise ValueError(f"a retry policy needs at least one attempt, got {attempts}")
    wait = tenacity.wait_exponential(multiplier=first_wait, exp_base=2, min=0, max=max_wait)
    stop = tenacity.stop_after_attempt(attempts)
    if stop_when is not None:
        stop = stop | tenacity.stop_when_event_set(_Flag(stop_when))

    def after(state: tenacity.RetryCallState) -> None:
        if on_failure is not None:
            last = stop(state)
            on_failure(state, None if last else float(wait(state)))

    return tenacity.Retrying(
        stop=stop,
        wait=wait,
        retry=tenacity.retry_if_exception(retry_on) | tenacity.retry_if_result(retry_result),
        sleep=sleep,
        after=after,
        reraise=True,
        retry_error_callback=_last_outcome,
    )


def _last_outcome(state: tenacity.RetryCallState) -> Any:
    """What the last call gave: its result, or its exception raised again."""
    assert state.outcome is not None
    return state.outcome.result()


class _Flag:
    """An ``Event``-like view of a predicate, for :func:`tenacity.stop_when_event_set`."""

    def __init__(self, predicate: Callable[[], bool]) -> None:
        self._predicate = predicate

    def is_set(self) -> bool:
        return bool(self._predicate())
