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

What a wait can heal is decided here, once, for every caller
(:func:`is_permanent`, :func:`is_transient`): a timeout, a refused or reset
connection, a body cut short, HTTP 5xx, 408, 425 and 429 may pass; a URL that
cannot be built or sent (``InvalidURL``, ``ValueError``, an unknown scheme,
no host), any other HTTP status (400, 401, 403, 404, 410, ...) and a TLS
certificate that does not verify will not, and end the calls at once.

The sleep function is a parameter, so tests can record the waits.
"""

from __future__ import annotations

import http.client
import json
import math
import ssl
import time
import urllib.error
from collections.abc import Callable
from typing import Any

import tenacity

__all__ = [
    "retry_policy",
    "never_retry",
    "TRANSIENT",
    "RETRIED_HTTP_STATUSES",
    "is_permanent",
    "is_transient",
    "failure_text",
    "retry_transient",
    "close_http_responses",
]

#: Errors worth retrying: the network or the server had a bad moment
#: (unless :func:`is_permanent` says no wait can heal that one).
TRANSIENT = (
    urllib.error.URLError,  # includes HTTPError (checked for its status by is_permanent)
    http.client.HTTPException,
    ConnectionError,
    TimeoutError,
    json.JSONDecodeError,
)

#: HTTP statuses below 500 that a wait may heal: 408 Request Timeout and
#: 429 Too Many Requests (RFC 9110 section 15.5.9, RFC 6585 section 4) and
#: 425 Too Early (RFC 8470 section 5.2). Every 5xx is retried too.
RETRIED_HTTP_STATUSES = frozenset({408, 425, 429})


def never_retry(_: object) -> bool:
    """The default condition of :func:`retry_policy`: no exception or result is retried."""
    return False


def retry_policy(
    *,
    attempts: float,
    first_wait: float,
    growth: float = 2.0,
    max_wait: float = math.inf,
    deadline: float | None = None,
    retry_on: Callable[[BaseException], bool] = never_retry,
    retry_result: Callable[[Any], bool] = never_retry,
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


def is_permanent(exc: BaseException) -> bool:
    """True for a network call's failure that no wait can heal: a retry only repeats it.

    - an HTTP status other than 5xx and :data:`RETRIED_HTTP_STATUSES`: the
      server refuses the request as sent (400, 401, 403, 404, 410, an
      unfollowed redirect, ...);
    - a URL that cannot be sent: ``http.client.InvalidURL`` (a space or a
      control character, a bad port), a ``ValueError`` from building or
      parsing it, and ``URLError`` with a text reason (``unknown url type``,
      ``no host given``); a ``URLError`` wrapping a socket error is not one;
    - a TLS certificate that does not verify.

    ``json.JSONDecodeError`` (a ``ValueError``) is a garbled answer, not one.
    """
    if isinstance(exc, urllib.error.HTTPError):
        return not (exc.code >= 500 or exc.code in RETRIED_HTTP_STATUSES)
    if isinstance(exc, urllib.error.URLError):
        reason = exc.reason
        return not isinstance(reason, OSError) or is_permanent(reason)
    if isinstance(exc, (http.client.InvalidURL, ssl.SSLCertVerificationError)):
        return True
    return isinstance(exc, ValueError) and not isinstance(exc, json.JSONDecodeError)


def is_transient(exc: BaseException) -> bool:
    """A failure of the network or a server's bad moment, worth retrying.

    One of :data:`TRANSIENT`, and not :func:`is_permanent`.
    """
    return isinstance(exc, TRANSIENT) and not is_permanent(exc)


def failure_text(exc: BaseException) -> str:
    """One line naming a failure: ``HTTP 404 Not Found``, ``InvalidURL: ...``, ``OSError: ...``."""
    if isinstance(exc, urllib.error.HTTPError):
        text = f"HTTP {exc.code} {exc.reason}".rstrip()
    else:
        text = f"{type(exc).__name__}: {exc}"
    return " ".join(text.splitlines())


def retry_transient(exc: BaseException) -> bool:
    """Retry predicate: close what the failed call left open; retry transient failures."""
    close_http_responses(exc)
    return is_transient(exc)
