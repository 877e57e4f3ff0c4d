"""Verified downloads: ``name.part``, check, atomic rename; retried when cut.

drms 0.9.0 does not notice a download cut short after the server announced
its ``Content-Length`` (it keeps the truncated file). Here every byte is
counted, the file is verified as the expected HMI record
(:func:`enhance.acquire.verify.verify_fits`) while still ``name.part``, and only
then renamed into place by :func:`enhance.atomic.atomic_path`. A cut, corrupt
or wrong file is removed and fetched again, never kept.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime as dt
import hashlib
import http.client
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from enhance import __version__
from enhance.acquire.series import HmiSeries
from enhance.acquire.verify import VerificationError, verify_fits
from enhance.atomic import atomic_path

__all__ = ["DownloadTask", "DownloadResult", "fetch_file", "download_all"]

log = logging.getLogger(__name__)

_CHUNK = 1 << 16
_USER_AGENT = f"enhance/{__version__} (HMI acquisition; drms protocol)"


@dataclasses.dataclass(frozen=True)
class DownloadTask:
    """One file to fetch: where from, where to, and what it must contain."""

    t_rec: dt.datetime
    url: str
    dest: Path
    series: HmiSeries


@dataclasses.dataclass
class DownloadResult:
    """Outcome of one task: ``error`` is None on success."""

    task: DownloadTask
    size: int = 0
    sha256: str = ""
    attempts: int = 0
    error: str | None = None


class IncompleteDownloadError(VerificationError):
    """The connection closed before the announced number of bytes arrived."""


def fetch_file(task: DownloadTask, *, timeout: float = 120.0) -> tuple[int, str]:
    """Download ``task.url`` to ``task.dest`` through ``dest.part``; verify; rename.

    Returns
    -------
    (size, sha256)

    Raises
    ------
    VerificationError
        If the file is cut, corrupt or not the expected record (nothing kept).
    urllib.error.URLError, http.client.HTTPException, OSError
        On network failures (nothing kept).
    """
    request = urllib.request.Request(task.url, headers={"User-Agent": _USER_AGENT})
    digest = hashlib.sha256()
    with atomic_path(task.dest) as tmp:
        received = 0
        with (
            urllib.request.urlopen(request, timeout=timeout) as response,
            open(tmp, "wb", buffering=0) as fh,
        ):
            announced = response.headers.get("Content-Length")
            while True:
                block = response.read1(_CHUNK)  # what has arrived, not a full chunk
                if not block:
                    break
                fh.write(block)
                digest.update(block)
                received += len(block)
        expected = int(announced) if announced is not None else None
        if expected is not None and received != expected:
            raise IncompleteDownloadError(
                f"{task.dest.name}: connection closed after {received} of {expected} bytes"
            )
        verify_fits(tmp, series=task.series, t_rec=task.t_rec, expected_size=expected)
    return received, digest.hexdigest()


def _attempt(
    task: DownloadTask,
    *,
    retries: int,
    retry_wait: float,
    timeout: float,
    sleep: Callable[[float], None],
) -> DownloadResult:
    result = DownloadResult(task)
    wait = retry_wait
    for attempt in range(1, retries + 1):
        result.attempts = attempt
        try:
            result.size, result.sha256 = fetch_file(task, timeout=timeout)
            result.error = None
            return result
        except urllib.error.HTTPError as exc:
            result.error = f"HTTP {exc.code} for {task.dest.name}"
            if 400 <= exc.code < 500 and exc.code != 429:
                return result  # the file is not there; retrying will not help
        except (
            VerificationError,
            urllib.error.URLError,
            http.client.HTTPException,
            OSError,
        ) as exc:
            result.error = f"{type(exc).__name__}: {exc}"
        log.warning(
            "download %s, attempt %d/%d: %s", task.dest.name, attempt, retries, result.error
        )
        if attempt < retries:
            sleep(wait)
            wait *= 2
    return result


def download_all(
    tasks: Iterable[DownloadTask],
    *,
    max_concurrent: int = 2,
    retries: int = 3,
    retry_wait: float = 2.0,
    timeout: float = 120.0,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[DownloadResult]:
    """Fetch every task with at most ``max_concurrent`` at a time; yield as each ends.

    Low concurrency by default: JSOC blocks bulk users.
    """
    tasks = list(tasks)
    if not tasks:
        return
    workers = max(1, min(int(max_concurrent), len(tasks)))
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [
            pool.submit(
                _attempt,
                task,
                retries=retries,
                retry_wait=retry_wait,
                timeout=timeout,
                sleep=sleep,
            )
            for task in tasks
        ]
        try:
            for future in concurrent.futures.as_completed(futures):
                yield future.result()
        finally:
            for future in futures:
                future.cancel()
