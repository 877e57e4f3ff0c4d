"""JSOC (or a mirror speaking its protocol) through the ``drms`` client.

Queries keywords, submits bounded export requests, polls them with backoff
and a timeout, resumes a known request id, and turns the protocol's failure
modes (HTTP errors, "pending export requests" refusals, failed or vanished
requests) into retries and, in the end, one clear :class:`JsocError`.

Downloading the exported files is :mod:`enhance_hmi.acquire.download`'s job.

References
----------
.. [1] Glogowski, K., Bobra, M. G., Choudhary, N., Amezcua, A. B. & Mumford,
   S. J. (2019), "drms: A Python package for accessing HMI and AIA data",
   JOSS 4, 1614.
.. [2] JSOC AJAX interface (jsoc.stanford.edu/jsocwiki/AjaxJsocConnect):
   ``jsoc_info`` (series_struct, rs_list) and ``jsoc_fetch`` (exp_request,
   exp_status; status 0 done, 1/2/6 pending, 3/4/5 failed, 7 refused).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import logging
import math
import re
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

import tenacity

from enhance_hmi.acquire._drms import drms, export_error_text
from enhance_hmi.acquire.addresses import check_email, mask_drms_logs, mask_email, mask_emails
from enhance_hmi.acquire.quality import parse_quality
from enhance_hmi.acquire.retry import (
    close_http_responses,
    is_transient,
    never_retry,
    retry_policy,
    retry_transient,
)
from enhance_hmi.acquire.series import HmiSeries
from enhance_hmi.acquire.timespec import record_set
from enhance_hmi.errors import ConfigError, JsocError
from enhance_hmi.time import parse_t_rec

__all__ = [
    "JsocOptions",
    "JsocSource",
    "QueriedRecord",
    "ExportedFile",
    "server_config",
    "is_remote",
]

log = logging.getLogger(__name__)
T = TypeVar("T")

#: The first ``[...]`` of a record name, ``series[T_REC][...]``, holds its ``T_REC``.
_FIRST_KEY = re.compile(r"\[([^\]]*)\]")
_PENDING_STATUSES = (1, 2, 6)
_REFUSED = 7


@dataclasses.dataclass(frozen=True)
class JsocOptions:
    """Timing and retry knobs (seconds); tests make them tiny.

    Attributes
    ----------
    poll_interval, poll_max_interval, poll_backoff
        First wait between ``exp_status`` polls, its cap and growth factor.
    export_timeout
        Give up waiting for one export request after this long (the request
        id stays in the manifest; a rerun resumes it).
    retries, retry_wait
        Attempts for every HTTP call and export submission, and the first
        backoff wait (doubling, capped at ``poll_max_interval``).
    notfound_polls
        ``exp_status`` answers of "not found" (status 6) tolerated before a
        request counts as lost.
    query_chunk
        Records per ``rs_list`` query.
    """

    poll_interval: float = 5.0
    poll_max_interval: float = 60.0
    poll_backoff: float = 1.5
    export_timeout: float = 6 * 3600.0
    retries: int = 5
    retry_wait: float = 2.0
    notfound_polls: int = 5
    query_chunk: int = 5000


@dataclasses.dataclass
class QueriedRecord:
    """One record found by a keyword query."""

    t_rec: dt.datetime
    record: str
    quality: int | None
    keywords: dict[str, str]


@dataclasses.dataclass
class ExportedFile:
    """One file of a finished export request (``url`` None: no file)."""

    t_rec: dt.datetime
    record: str
    filename: str
    url: str | None


def is_remote(server: str) -> bool:
    """True for ``jsoc``, ``kis`` and http(s) URLs (everything but a local directory)."""
    text = str(server).strip()
    return text.lower() in {"jsoc", "kis"} or text.lower().startswith(("http://", "https://"))


def server_config(server: str) -> drms.ServerConfig:
    """The drms server configuration for ``jsoc``, ``kis`` or a base URL.

    A URL names a server speaking the JSOC protocol: CGIs under
    ``URL/cgi-bin/ajax/`` and exported files under ``URL/``.

    Raises
    ------
    ConfigError
        If ``server`` is none of those.
    """
    text = str(server).strip()
    if text.lower() in {"jsoc", "kis"}:
        return drms.HttpJsonClient(text.lower()).server
    if not text.lower().startswith(("http://", "https://")):
        raise ConfigError(f"server {server!r} is not jsoc, kis, an http(s) URL or a directory")
    base = text.rstrip("/") + "/"
    return drms.ServerConfig(
        name=f"URL {base}",
        cgi_baseurl=base + "cgi-bin/ajax/",
        cgi_jsoc_info="jsoc_info",
        cgi_jsoc_fetch="jsoc_fetch",
        http_download_baseurl=base,
    )


def _error_text(request: drms.ExportRequest) -> str:
    return mask_emails(export_error_text(request))


def _accepted(request: drms.ExportRequest) -> bool:
    """True when the server took the export request (done or pending)."""
    status = int(request.status)
    return status == 0 or status in _PENDING_STATUSES


def _export_message(request: drms.ExportRequest) -> str:
    return _error_text(request) or f"status {int(request.status)}"


def _is_refusal(request: drms.ExportRequest) -> bool:
    """A refusal because another export of the user is pending (status 7 or its text)."""
    return int(request.status) == _REFUSED or "pending export" in _export_message(request).lower()


class JsocSource:
    """Query and export HMI records through :class:`drms.Client`.

    Before the first export, a server that has drms's e-mail check (JSOC)
    is asked whether the address is registered.

    Parameters
    ----------
    server : str or drms.ServerConfig
        ``"jsoc"``, ``"kis"``, a base URL (see :func:`server_config`) or a
        ready drms configuration.
    email : str, optional
        Registered export address (required by :meth:`submit_export`).
    options : JsocOptions, optional
        Timing and retry knobs.
    sleep : callable, optional
        Replaces :func:`time.sleep` (tests).
    """

    def __init__(
        self,
        server: str | drms.ServerConfig,
        *,
        email: str | None = None,
        options: JsocOptions | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.config = server if isinstance(server, drms.ServerConfig) else server_config(server)
        self.server = self.config.name
        self.email = email
        self.options = options or JsocOptions()
        self._sleep = sleep
        mask_drms_logs()  # drms logs request URLs, notify=<e-mail> included
        self.client = drms.Client(server=self.config)
        self.exports_submitted = 0
        self._email_checked = False

    @property
    def can_export(self) -> bool:
        """Whether the server configuration has the export CGI."""
        return bool(self.config.check_supported("export"))

    # --------------------------------------------------------------- retries
    def _policy(
        self,
        what: str,
        *,
        retry_on: Callable[[BaseException], bool] = never_retry,
        retry_result: Callable[[Any], bool] = never_retry,
        on_failure: Callable[[tenacity.RetryCallState, float | None], None] | None = None,
    ) -> tenacity.Retrying:
        """The retry policy of this source.

        ``retries`` calls, waits doubling from ``retry_wait`` up to
        ``poll_max_interval``.

        ``retry_on``, ``retry_result`` and ``on_failure`` are those of
        :func:`~enhance_hmi.acquire.retry.retry_policy` (``on_failure`` unset:
        each failure is logged as a warning).
        """

        def log_failure(state: tenacity.RetryCallState, wait: float | None) -> None:
            if wait is None or state.outcome is None or not state.outcome.failed:
                return
            exc = state.outcome.exception()
            log.warning(
                "%s: %s (%s); retry %d/%d in %.1f s",
                what,
                type(exc).__name__,
                mask_emails(str(exc)),
                state.attempt_number,
                self.options.retries - 1,
                wait,
            )

        return retry_policy(
            attempts=self.options.retries,
            first_wait=self.options.retry_wait,
            max_wait=self.options.poll_max_interval,
            sleep=self._sleep,
            retry_on=retry_on,
            retry_result=retry_result,
            on_failure=log_failure if on_failure is None else on_failure,
        )

    def _retry(self, what: str, call: Callable[[], T]) -> T:
        """``call()`` under the retry policy; transient network failures are retried.

        Raises
        ------
        JsocError
            At once for a refusal (HTTP 4xx, a drms query error, anything not
            transient), or when every attempt failed; caused by the last error.
        """
        try:
            return self._policy(what, retry_on=retry_transient)(call)
        except drms.DrmsQueryError as exc:
            raise JsocError(mask_emails(f"{what} failed: {exc}")) from exc
        except Exception as exc:
            close_http_responses(exc)
            if not is_transient(exc):
                raise JsocError(mask_emails(f"{what} failed: {exc}")) from exc
            raise JsocError(
                mask_emails(
                    f"{what} failed {self.options.retries} times, last with "
                    f"{type(exc).__name__}: {exc}; {self.config.name} may be down, "
                    "try again later"
                )
            ) from exc

    # ----------------------------------------------------------------- query
    def available_keywords(self, series: HmiSeries, wanted: tuple[str, ...]) -> list[str]:
        """The keywords of ``wanted`` that ``series`` defines (one series_struct call)."""
        keys = self._retry(f"series_struct {series.name}", lambda: self.client.keys(series.name))
        known = {k.upper() for k in keys}
        return [k for k in wanted if k.upper() in known]

    def query(
        self,
        series: HmiSeries,
        slots: list[dt.datetime],
        cadence: dt.timedelta,
        keywords: tuple[str, ...],
    ) -> dict[dt.datetime, QueriedRecord]:
        """Keywords of every record on ``slots``, keyed by ``T_REC``.

        ``QUALITY`` is read as text and parsed here: drms 0.9.0 with pandas >= 3
        turns the hex strings into NaN (drms issue 167).
        """
        step = max(1, self.options.query_chunk)
        windows = (slots[i : i + step] for i in range(0, len(slots), step))
        found: dict[dt.datetime, QueriedRecord] = {}
        for _window, records in self.query_windows(series, windows, cadence, keywords):
            found.update(records)
        return found

    def query_windows(
        self,
        series: HmiSeries,
        windows: Iterable[list[dt.datetime]],
        cadence: dt.timedelta,
        keywords: tuple[str, ...],
    ) -> Iterator[tuple[list[dt.datetime], dict[dt.datetime, QueriedRecord]]]:
        """Query one window of slots at a time; yield each window with its records.

        One ``rs_list`` request per window (consecutive slots, at most
        ``query_chunk`` of them for a bounded answer); nothing of a window is
        kept once the caller has moved on, so memory follows the window, not
        the range. A window whose query fails every retry raises
        :class:`JsocError`; the windows yielded before it are complete.
        """
        keys = ["T_REC", "QUALITY", *self.available_keywords(series, keywords)]
        for window in windows:
            if not window:
                continue
            wanted = set(window)
            count = int((window[-1] - window[0]) / cadence) + 1
            ds = record_set(series, window[0], count, cadence).split("{")[0]
            frame = self._retry(
                f"query {ds}",
                functools.partial(
                    self.client.query, ds, key=keys, rec_index=True, convert_numeric=False
                ),
            )
            found: dict[dt.datetime, QueriedRecord] = {}
            blank = [""] * len(frame)
            columns = {k: frame[k].tolist() if k in frame else blank for k in keys}
            for i, record in enumerate(frame.index.tolist()):
                t_rec = parse_t_rec(str(columns["T_REC"][i]))
                if t_rec is None or t_rec not in wanted:
                    continue
                found[t_rec] = QueriedRecord(
                    t_rec=t_rec,
                    record=str(record),
                    quality=parse_quality(columns["QUALITY"][i]),
                    keywords={k: str(columns[k][i]) for k in keys[2:]},
                )
            del frame, columns
            yield window, found

    # ---------------------------------------------------------------- export
    def submit_export(self, ds: str) -> drms.ExportRequest:
        """Submit one export (method url, protocol fits) and return its request.

        Refusals because of another pending export and failed submissions are
        retried with backoff.

        Raises
        ------
        JsocError
            When every attempt was refused or failed.
        """
        if not self.can_export:
            raise ConfigError(
                f"server {self.config.name} has no export service in drms; "
                "use --server jsoc or a URL, or query only"
            )
        email = check_email(self.email)
        if not self._email_checked and self.config.check_supported("email"):
            registered = self._retry(
                f"e-mail check for {mask_email(email)}", lambda: self.client.check_email(email)
            )
            if not registered:
                raise ConfigError(
                    f"{self.config.name} does not know the export address {mask_email(email)}; "
                    "register it at jsoc.stanford.edu/ajax/register_email.html"
                )
            self._email_checked = True

        def log_refusal(state: tenacity.RetryCallState, wait: float | None) -> None:
            request = state.outcome.result() if state.outcome and not state.outcome.failed else None
            if request is None:
                return
            status = int(request.status)
            log.warning(
                "export %s %s (status %d: %s); attempt %d/%d%s",
                ds,
                "refused" if _is_refusal(request) else "failed",
                status,
                _export_message(request),
                state.attempt_number,
                self.options.retries,
                "" if wait is None else f", next in {wait:.1f} s",
            )

        request = self._policy(
            f"export {ds}", retry_result=lambda r: not _accepted(r), on_failure=log_refusal
        )(
            lambda: self._retry(
                f"export {ds}",
                lambda: self.client.export(ds, method="url", protocol="fits", email=email),
            )
        )
        if _accepted(request):
            self.exports_submitted += 1
            log.info("export %s submitted for %s: request %s", ds, mask_email(email), request.id)
            return request
        message = _export_message(request)
        if "pending export" in message.lower():
            raise JsocError(
                f"{self.config.name} refused the export of {ds} {self.options.retries} times: "
                f"{message!r}. Another export for {mask_email(email)} is still pending; "
                "wait for it to finish and rerun"
            )
        raise JsocError(
            f"export of {ds} failed {self.options.retries} times, last with {message!r}"
        )

    def resume(self, request_id: str) -> drms.ExportRequest | None:
        """The export request ``request_id`` (from a manifest), or None if the server lost it."""
        request = self._retry(
            f"exp_status {request_id}", lambda: self.client.export_from_id(request_id)
        )
        if request.id is None:  # "not found" answered without the id: drms cannot poll it
            return None
        return request

    def wait(self, request: drms.ExportRequest) -> tuple[bool, str]:
        """Poll until the request finishes; return ``(succeeded, message)``.

        Polls under the retry policy: waits growing from ``poll_interval`` by
        ``poll_backoff`` up to ``poll_max_interval``, no poll started after
        ``export_timeout``; more than ``notfound_polls`` "not found" answers
        mean the server lost the request. Each poll retries transient
        network failures itself.

        Raises
        ------
        JsocError
            If it is still pending after ``export_timeout`` seconds.
        """
        options = self.options
        notfound = 0

        def pending(finished: bool) -> bool:
            nonlocal notfound
            if finished:
                return False
            if int(request.status) == 6:  # "not found": tolerated a few times, then lost
                notfound += 1
            return notfound <= options.notfound_polls

        def log_poll(state: tenacity.RetryCallState, wait: float | None) -> None:
            if wait is not None:
                log.debug(
                    "request %s pending (status %d); next poll in %.1f s",
                    request.id,
                    int(request.status),
                    wait,
                )

        finished = retry_policy(
            attempts=math.inf,
            first_wait=options.poll_interval,
            growth=options.poll_backoff,
            max_wait=options.poll_max_interval,
            deadline=options.export_timeout,
            retry_result=pending,
            sleep=self._sleep,
            on_failure=log_poll,
        )(lambda: self._retry(f"exp_status {request.id}", request.has_finished))
        status = int(request.status)
        if not finished and notfound > options.notfound_polls:
            return False, f"request {request.id} not found on the server (status 6)"
        if not finished:
            raise JsocError(
                f"export request {request.id} still pending (status {status}) after "
                f"{options.export_timeout:.0f} s; its id is kept in the manifest: "
                "rerun later to resume it"
            )
        if status == 0:
            return True, ""
        message = _error_text(request) or "export failed"
        return False, f"{message} [status={status}]"

    def files(self, request: drms.ExportRequest) -> list[ExportedFile]:
        """The records and download URLs of a finished request.

        Each URL is built from the export's directory and file name, quoted
        (:func:`enhance_hmi.acquire.download.file_url`): drms joins them as they
        are, so a space in a name makes a URL urllib refuses and a ``#`` or
        ``?`` cuts the name short.
        """
        from enhance_hmi.acquire.download import file_url

        base = self.config.http_download_baseurl

        def collect() -> list[ExportedFile]:
            urls = {
                row.filename: None if row.url is None else file_url(base, request.dir, row.filename)
                for row in request.urls.itertuples()
            }
            out = []
            for row in request.data.itertuples():
                match = _FIRST_KEY.search(str(row.record))
                t_rec = parse_t_rec(match.group(1)) if match else None
                if t_rec is None:
                    log.warning("export %s: cannot read T_REC of %r", request.id, row.record)
                    continue
                name = str(row.filename)
                out.append(ExportedFile(t_rec, str(row.record), name, urls.get(name)))
            return out

        return self._retry(f"file list of {request.id}", collect)
