"""The remote half of :func:`enhance_hmi.acquire.acquire`: query, export, download.

The range is queried window by window (each merged into the manifest as it
is answered); export requests recorded by an earlier run are resumed; what
is still needed is exported in bounded chunks, one request at a time (JSOC
allows one pending export per user), each failed request submitted again
under the retry policy, and the files downloaded as each request finishes.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import TYPE_CHECKING

import tenacity
from tqdm import tqdm

from enhance_hmi.acquire.download import allowed_origins
from enhance_hmi.acquire.jsoc import JsocSource
from enhance_hmi.acquire.manifest import KEYWORDS, NEEDS_EXPORT
from enhance_hmi.acquire.retry import retry_policy
from enhance_hmi.acquire.timespec import record_set, slot_windows
from enhance_hmi.errors import JsocError
from enhance_hmi.time import format_t_rec, tai_datetime

if TYPE_CHECKING:
    from enhance_hmi.acquire.fetch import AcquisitionRun

__all__ = ["run_remote"]

log = logging.getLogger(__name__)


def _chunks(
    rows: list[dict[str, str]], cadence: dt.timedelta, limit: int
) -> list[list[dt.datetime]]:
    """Group needed slots into runs spanning at most ``limit`` slots each."""
    groups: list[list[dt.datetime]] = []
    for row in rows:
        when = tai_datetime(row["t_rec"])
        if groups and (when - groups[-1][0]) / cadence + 1 <= limit:
            groups[-1].append(when)
        else:
            groups.append([when])
    return groups


def run_remote(
    run: AcquisitionRun,
    source: JsocSource,
    grid: tuple[dt.datetime, dt.datetime, dt.timedelta],
    download: bool,
) -> None:
    """Query the range window by window, then export and download what is needed.

    Each window is merged into the manifest as soon as it is answered, so a
    query that fails half way leaves the earlier windows recorded and the
    later slots without a row (``not queried`` in the gap report).
    """
    run.allowed = allowed_origins(source.config.http_download_baseurl, run.options.allow_hosts)
    t0, t1, cadence = grid
    windows = slot_windows(run.series, t0, t1, cadence, max(1, source.options.query_chunk))
    try:
        for window, found in source.query_windows(run.series, windows, cadence, KEYWORDS):
            run.manifest.hold(format_t_rec(window[0]), format_t_rec(window[-1]))
            for when in window:
                rec = found.get(when)
                if rec is None:
                    run.merge(when, None, None, {})
                else:
                    run.merge(when, rec.record, rec.quality, rec.keywords)
            run.manifest.release()  # the window's rows go to disk, not kept in memory
    finally:
        run.save()
    if not download:
        return
    todo = run.manifest.rows(NEEDS_EXPORT)
    bar = tqdm(
        total=len(todo),
        desc=f"{run.series.name}",
        unit="file",
        disable=not run.progress,
        leave=False,
    )
    try:
        _resume(run, source, bar)
        todo = [r for r in run.manifest.rows(NEEDS_EXPORT) if not r["request_id"]]
        todo = run.adopt_existing(todo)
        run.save()
        for group in _chunks(todo, cadence, run.options.max_per_request):
            count = int((group[-1] - group[0]) / cadence) + 1
            ds = record_set(run.series, group[0], count, cadence)
            _export_and_download(run, source, ds, group, bar)
    finally:
        bar.close()


def _resume(run: AcquisitionRun, source: JsocSource, bar: tqdm) -> None:
    """Finish the export requests a previous run recorded."""
    by_request: dict[str, list[dict[str, str]]] = {}
    for row in run.manifest.rows(NEEDS_EXPORT):
        if row["request_id"] and row["request_id"] != "local":
            by_request.setdefault(row["request_id"], []).append(row)
    for request_id, rows in by_request.items():
        log.info("resuming export request %s (%d frames)", request_id, len(rows))
        request = source.resume(request_id)
        if request is None:
            ok, message = False, "not found on the server"
        else:
            ok, message = source.wait(request)
        if not ok:
            log.warning(
                "export request %s cannot be resumed (%s); exporting anew", request_id, message
            )
            for row in rows:
                state = "flagged" if row["quality_bits"] else "queried"
                run.manifest.update(row["t_rec"], state=state, request_id="", reason=message)
            run.save()
            continue
        files = source.files(request)
        run.download(files, request_id, bar)
        listed = {format_t_rec(f.t_rec) for f in files}
        for row in rows:
            if row["t_rec"] not in listed and row["state"] in NEEDS_EXPORT:
                state = "flagged" if row["quality_bits"] else "queried"
                run.manifest.update(
                    row["t_rec"],
                    state=state,
                    request_id="",
                    reason=f"not in export request {request_id}",
                )
        run.save()


def _export_and_download(
    run: AcquisitionRun, source: JsocSource, ds: str, group: list[dt.datetime], bar: tqdm
) -> None:
    """Export ``ds`` and download its files; a failed export request is submitted again.

    At most ``jsoc.retries`` requests, one after the other without a pause
    (each has waited for its outcome already); the rows of a failed one go
    back to ``queried``/``flagged`` with its message before the next.

    Raises
    ------
    JsocError
        When every request failed.
    """
    attempts = run.options.jsoc.retries
    message = ""

    def export_once() -> bool:
        nonlocal message
        request = source.submit_export(ds)
        for when in group:
            run.manifest.update(
                format_t_rec(when), state="exported", request_id=request.id, reason=""
            )
        run.save()  # the id must be on disk before anything else can go wrong
        ok, message = source.wait(request)
        if ok:
            files = source.files(request)
            listed = {f.t_rec for f in files}
            for when in group:
                if when not in listed:
                    run.manifest.update(
                        format_t_rec(when),
                        state="failed",
                        reason=f"not in export request {request.id}",
                    )
                    run.failures.append(f"{format_t_rec(when)}: not in export {request.id}")
            run.download(files, request.id, bar)
            return True
        for when in group:
            row = run.manifest.get(format_t_rec(when))
            run.manifest.update(
                row["t_rec"],
                state="flagged" if row["quality_bits"] else "queried",
                request_id="",
                reason=message,
            )
        run.save()
        return False

    def log_failure(state: tenacity.RetryCallState, _wait: float | None) -> None:
        log.warning(
            "export request for %s failed (%s); attempt %d/%d",
            ds,
            message,
            state.attempt_number,
            attempts,
        )

    policy = retry_policy(
        attempts=attempts,
        first_wait=0.0,
        retry_result=lambda ok: not ok,
        on_failure=log_failure,
    )
    if not policy(export_once):
        raise JsocError(f"export of {ds} failed {attempts} times, last: {message}")
