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

import tenacity
from tqdm import tqdm

from enhance_hmi.acquire.jsoc import JsocSource
from enhance_hmi.acquire.manifest import KEYWORDS
from enhance_hmi.acquire.retry import retry_policy
from enhance_hmi.acquire.run import AcquisitionRun
from enhance_hmi.acquire.timespec import record_set, slot_windows
from enhance_hmi.errors import JsocError
from enhance_hmi.time import format_t_rec, tai_datetime

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
    later slots without a row (``not queried`` in the gap report). Downloads
    come only from the origins ``run`` was made with.
    """
    t0, t1, cadence = grid
    windows = slot_windows(run.series, t0, t1, cadence, max(1, source.options.query_chunk))
    try:
        for window, found in source.query_windows(run.series, windows, cadence, KEYWORDS):
            run.merge_window(window, found)
    finally:
        run.save()
    if not download:
        return
    bar = tqdm(
        total=run.pending_count(),
        desc=f"{run.series.name}",
        unit="file",
        disable=not run.progress,
        leave=False,
    )
    try:
        _resume(run, source, bar)
        for group in _chunks(run.rows_to_export(), cadence, run.options.max_per_request):
            count = int((group[-1] - group[0]) / cadence) + 1
            ds = record_set(run.series, group[0], count, cadence)
            _export_and_download(run, source, ds, group, bar)
    finally:
        bar.close()


def _resume(run: AcquisitionRun, source: JsocSource, bar: tqdm) -> None:
    """Finish the export requests a previous run recorded."""
    for request_id, rows in run.requests_to_resume().items():
        log.info("resuming export request %s (%d frames)", request_id, len(rows))
        request = source.resume(request_id)
        if request is None:
            ok, message = False, "not found on the server"
        else:
            ok, message = source.wait(request)
        if request is None or not ok:
            log.warning(
                "export request %s cannot be resumed (%s); exporting anew", request_id, message
            )
            run.requeue([row["t_rec"] for row in rows], message)
            continue
        files = source.files(request)
        run.download(files, request_id, bar)
        run.requeue_unlisted(rows, files, request_id)


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
        run.mark_exported(group, request.id)
        ok, message = source.wait(request)
        if ok:
            files = source.files(request)
            run.fail_unlisted(group, files, request.id)
            run.download(files, request.id, bar)
            return True
        run.requeue([format_t_rec(when) for when in group], message)
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
