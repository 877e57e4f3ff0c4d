"""The retry policy of every network operation: attempts, growing waits, what is retried.

Built on :mod:`tenacity`. A policy makes at most ``attempts`` calls; after
the ``k``-th failed one it waits ``first_wait * growth ** (k - 1)`` seconds
(doubling by default), capped at ``max_wait``, unless it stops: attempts used
up, ``stop_when()`` true, or the next call would start more than
``deadline`` seconds after the first one. Polling a pending export request
is the same policy with a result that means "not yet" and a deadline.
Which failures count is the caller's: an exception for which ``retry_on``
is true, or a result for which ``retry_result`` is true. Anything else ends
the calls at once: an exception propagates unchanged, a result is returned.
When the attempts are used up, the last exception propagates (the caller
wraps it in its own error) or the last result is returned.

The sleep function is a parameter, so tests can record the waits.
"""

from __future__ import annotations

import http.client
import json
import math
import time
import urllib.error
from collections.abc import Callable
from typing import Any

import tenacity

__all__ = [
    "retry_policy",
    "TRANSIENT",
    "is_transient",
    "retry_transient",
    "close_http_responses",
]

#: Errors worth retrying: the network or the server had a bad moment.
TRANSIENT = (
    urllib.error.URLError,  # includes HTTPError (checked for 4xx by is_transient)
    http.client.HTTPException,
    ConnectionError,
    TimeoutError,
    json.JSONDecodeError,
)


def _never(_: object) -> bool:
    return False


def retry_policy(
    *,
    attempts: float,
    first_wait: float,
    growth: float = 2.0,
    max_wait: float = math.inf,
    deadline: float | None = None,
    retry_on: Callable[[BaseException], bool] = _never,
    retry_result: Callable[[Any], bool] = _never,
    stop_when: Callable[[], bool] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    on_failure: Callable[[tenacity.RetryCallState, float | None], None] | None = None,
) -> tenacity.Retrying:
    """A :class:`tenacity.Retrying` with the package's policy; call it as ``policy(fn)``.

    Parameters
    ----------
    attempts : int or math.inf
        Largest number of calls (at least 1).
    first_wait, growth, max_wait : float
        Seconds before the second call, the factor of each later wait, and
        the cap of the wait.
    deadline : float, optional
        Seconds from the first call after which no call starts (checked
        with the coming wait, so the policy stops rather than sleeps past it).
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
    wait = tenacity.wait_exponential(multiplier=first_wait, exp_base=growth, min=0, max=max_wait)

    def stopped(state: tenacity.RetryCallState, coming_wait: float) -> bool:
        if state.attempt_number >= attempts or (stop_when is not None and stop_when()):
            return True
        elapsed = state.seconds_since_start or 0.0
        return deadline is not None and elapsed + coming_wait > deadline

    def stop(state: tenacity.RetryCallState) -> bool:
        return stopped(state, float(state.upcoming_sleep))

    def after(state: tenacity.RetryCallState) -> None:
        if on_failure is not None:
            coming = float(wait(state))
            on_failure(state, None if stopped(state, coming) else coming)

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


def close_http_responses(exc: BaseException) -> None:
    """Close the HTTP responses that ``HTTPError`` exceptions in the chain hold open.

    An ``HTTPError`` keeps its connection until garbage collection; a failed
    call whose error is kept (chained into an ``enhance`` error) would
    otherwise hold a socket for the rest of the run.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, urllib.error.HTTPError):
            current.close()
        current = current.__cause__ or current.__context__


def is_transient(exc: BaseException) -> bool:
    """A failure of the network or a server's bad moment (HTTP 5xx, 429), worth retrying."""
    if isinstance(exc, urllib.error.HTTPError):
        return exc.code >= 500 or exc.code == 429
    return isinstance(exc, TRANSIENT)


def retry_transient(exc: BaseException) -> bool:
    """Retry predicate: close what the failed call left open; retry transient failures."""
    close_http_responses(exc)
    return is_transient(exc)
