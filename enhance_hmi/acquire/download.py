"""Verified downloads: safe URLs, a deadline, ``name.<pid>-<random>.part``, check, rename.

drms 0.9.0 does not notice a download cut short after the server announced
its ``Content-Length`` (it keeps the truncated file), and it builds download
URLs from whatever directory the server names, ``file://`` and other hosts
included. Here:

- a URL (and every HTTP redirect) must have the scheme, host and port of the
  server's own download URL, or of a host the user allowed
  (:mod:`enhance_hmi.acquire.origins`); anything else is refused, never opened;
- every byte is counted against the announced ``Content-Length`` and a size
  cap, the first bytes must be a FITS primary header (an HTML error page is
  refused at once), and each attempt has a wall-clock deadline, so a server
  that trickles bytes cannot hold a download forever;
- the file is written to a temporary name unique to this process, verified as
  the expected HMI record (:func:`enhance_hmi.acquire.verify.verify_fits`) and
  only then renamed into place by :func:`enhance_hmi.atomic.atomic_path`. A cut,
  corrupt or wrong file is removed and fetched again, never kept;
- a full disk (or a read-only or size-limited target) stops every download
  with one :class:`~enhance_hmi.errors.OutputError` and leaves no temporary file.
- a failed attempt is retried under :mod:`enhance_hmi.acquire.retry` (doubling
  waits), except refusals and failures no wait can heal
  (:func:`enhance_hmi.acquire.retry.is_permanent`: HTTP 404, 403 and most other
  4xx, a URL that cannot be sent), which are final at once with their cause.

The URL of a listed file is built by :func:`file_url` from the export's
directory and the file name, percent-encoded, so a name with a space, ``#``,
``?`` or ``%`` is fetched as that name (drms 0.9.0 joins them unquoted).

Local file names never come from the server: :func:`local_name` derives them
from the series, ``T_REC`` and segment, so they are unique by construction,
and :func:`export_clashes` refuses an export whose file list is ambiguous.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import dataclasses
import datetime as dt
import errno
import hashlib
import http.client
import io
import logging
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Protocol

import tenacity

from enhance_hmi import __version__
from enhance_hmi.acquire.origins import (
    CheckedRedirects,
    Origin,
    RefusedDownloadError,
    allowed_origins,
    check_url,
    origin_of,
)
from enhance_hmi.acquire.retry import close_http_responses, failure_text, is_permanent, retry_policy
from enhance_hmi.acquire.series import HmiSeries
from enhance_hmi.acquire.verify import VerificationError, verify_fits
from enhance_hmi.atomic import atomic_path, free_bytes, no_room_error
from enhance_hmi.errors import JsocError, OutputError
from enhance_hmi.time import file_time, format_t_rec

__all__ = [
    "DownloadTask",
    "DownloadResult",
    "RefusedDownloadError",
    "DownloadDeadlineError",
    "IncompleteDownloadError",
    "Origin",
    "MAX_FILE_BYTES",
    "DEFAULT_DEADLINE",
    "allowed_origins",
    "check_url",
    "file_url",
    "local_name",
    "export_clashes",
    "fetch_file",
    "download_all",
]

log = logging.getLogger(__name__)

_CHUNK = 1 << 16
_USER_AGENT = f"enhance_hmi/{__version__} (HMI acquisition; drms protocol)"
#: Every FITS file starts with this card (FITS standard 3.0, section 4.4.1.1).
_FITS_START = b"SIMPLE  ="

#: Largest file accepted (bytes). An uncompressed 4096 x 4096 HMI image of
#: 32-bit pixels is 64 MiB; JSOC's Rice-compressed exports are 10-20 MiB.
MAX_FILE_BYTES = 512 << 20
#: Wall-clock seconds one download attempt may take (a 20 MiB file at 25 kB/s).
DEFAULT_DEADLINE = 900.0


#: A scheme and an authority opening a URL reference (RFC 3986 section 3).
_URL_HEAD = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:(?://[^/?#]*)?")


class DownloadDeadlineError(JsocError):
    """One download attempt took longer than its deadline (a trickling server)."""


class IncompleteDownloadError(VerificationError):
    """The connection closed before the announced number of bytes arrived."""


class _CancelledError(Exception):
    """Another download hit a fatal error; this one stops between two reads."""


def local_name(series: HmiSeries, t_rec: dt.datetime) -> str:
    """The local file name of the record of ``series`` at ``t_rec``.

    ``<series>.<YYYYMMDD_hhmmss>_TAI.<segment>.fits``: derived from the record
    only (never from a server's file name), distinct for distinct ``T_REC``
    slots of one series (slots are at least 45 s apart), and never one of the
    acquisition's own files (manifest, gap report: they do not end in
    ``.fits``).
    """
    return f"{series.name}.{file_time(t_rec)}.{series.segment}.fits"


def file_url(base_url: str, directory: str | None, filename: str) -> str:
    """The URL of a file of a finished export: ``directory/filename`` on ``base_url``, quoted.

    Joined as drms joins it (the directory's leading slashes dropped, the
    result resolved against the server's download base URL), but with the
    path percent-encoded: every character of the file name but the
    unreserved ones (RFC 3986 section 2.3), and of the directory all but
    ``/``. A name with a space, ``#``, ``?`` or ``%`` so names that file on
    the server, never a fragment, a query or an escape. A directory that
    opens with a scheme or a host (``file:///...``, ``http://other-host/...``)
    keeps them, so :func:`check_url` still sees where it points and refuses it.

    Parameters
    ----------
    base_url : str
        The server's download base URL (drms ``http_download_baseurl``).
    directory : str or None
        The export's ``dir``; None when ``filename`` is the whole path.
    filename : str
        The file name the export lists.
    """
    if directory is None:
        directory, _, filename = filename.rpartition("/")
    directory = directory.lstrip("/")
    match = _URL_HEAD.match(directory)
    head = match.group(0) if match else ""
    name = urllib.parse.quote(filename, safe="")
    if not directory:
        return urllib.parse.urljoin(base_url, name)
    path = urllib.parse.quote(directory[len(head) :], safe="/")
    return urllib.parse.urljoin(base_url, f"{head}{path}/{name}")


class _ListedFile(Protocol):
    t_rec: dt.datetime
    record: str
    filename: str


def export_clashes(files: Sequence[_ListedFile]) -> dict[dt.datetime, str]:
    """``T_REC`` -> reason, for the files of an export that cannot be told apart.

    A finished export lists ``(record, filename)`` pairs and drms maps file
    names to URLs. Two entries for one ``T_REC``, or one file name given to
    two records, make it ambiguous which bytes belong to which record; those
    records are refused rather than guessed (and so never overwrite each
    other). ``NoDataFile`` entries (no file) do not count.
    """
    by_time: dict[dt.datetime, list[str]] = collections.defaultdict(list)
    by_name: dict[str, list[_ListedFile]] = collections.defaultdict(list)
    for item in files:
        by_time[item.t_rec].append(item.record)
        if item.filename and item.filename != "NoDataFile":
            by_name[item.filename].append(item)
    clashes: dict[dt.datetime, str] = {}
    for when, records in by_time.items():
        if len(records) > 1:
            clashes[when] = (
                f"the server listed {len(records)} files for T_REC {format_t_rec(when)} "
                f"({', '.join(records)}); refusing to guess which is the record"
            )
    for name, items in by_name.items():
        times = sorted({item.t_rec for item in items})
        if len(times) > 1:
            listed = ", ".join(format_t_rec(t) for t in times)
            for when in times:
                clashes.setdefault(
                    when,
                    f"the server gave the file name {name!r} to {len(times)} records "
                    f"({listed}); refusing the ambiguous download",
                )
    return clashes


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


def _announced_size(response: http.client.HTTPResponse, name: str) -> int | None:
    text = response.headers.get("Content-Length")
    if text is None:
        return None
    try:
        size = int(text)
    except ValueError:
        size = -1
    if size < 0:
        raise VerificationError(f"{name}: malformed Content-Length {text!r}")
    return size


def _not_fits(name: str, head: bytes, response: http.client.HTTPResponse) -> VerificationError:
    kind = response.headers.get("Content-Type") or "no Content-Type"
    return VerificationError(
        f"{name}: the server sent {kind} starting {head[:24]!r}, not a FITS file"
    )


def _write_all(fh: io.RawIOBase, block: bytes) -> None:
    """Write all of ``block``: an unbuffered write may take only part of it.

    A write that reaches a size limit or the end of the free space is short
    first; the next one raises the error (``EFBIG``, ``ENOSPC``).
    """
    view = memoryview(block)
    while view:
        written = fh.write(view)
        if not written:
            raise OSError(errno.EIO, f"no byte of {len(view)} written")
        view = view[written:]


def fetch_file(
    task: DownloadTask,
    *,
    timeout: float = 120.0,
    deadline: float = DEFAULT_DEADLINE,
    allowed: frozenset[Origin] | None = None,
    max_bytes: int = MAX_FILE_BYTES,
    stop: threading.Event | None = None,
) -> tuple[int, str]:
    """Download ``task.url`` to ``task.dest`` through a unique ``.part`` file; verify; rename.

    Long for its documentation of the download's guarantees; the body is one
    streamed read whose checks share its running byte count and digest.

    Parameters
    ----------
    task : DownloadTask
        What to fetch and where to put it.
    timeout : float
        Socket timeout: seconds without a single byte before the attempt fails.
    deadline : float
        Wall-clock seconds for the whole attempt. It is checked after every
        read, so an attempt ends at the latest ``min(timeout, deadline)``
        seconds after its deadline.
    allowed : frozenset of Origin, optional
        Origins the URL and its redirects may have (:func:`allowed_origins`);
        default: the URL's own origin only (no redirect elsewhere).
    max_bytes : int
        Largest file accepted, announced or received.
    stop : threading.Event, optional
        When set, the download stops before its next read.

    Returns
    -------
    (size, sha256)

    Raises
    ------
    RefusedDownloadError
        The URL or a redirect leaves the allowed origins, or the file is over
        ``max_bytes`` (nothing opened or kept).
    OutputError
        The destination's filesystem is full, read-only or size-limited
        (nothing kept).
    DownloadDeadlineError
        The attempt passed its deadline (nothing kept).
    VerificationError
        If the file is cut, too long, not FITS, corrupt or not the expected
        record (nothing kept).
    urllib.error.URLError, http.client.HTTPException, OSError
        On network failures (nothing kept).
    """
    allowed = allowed if allowed is not None else frozenset({origin_of(task.url)})
    check_url(task.url, allowed)
    name = task.dest.name
    opener = urllib.request.build_opener(CheckedRedirects(allowed))
    request = urllib.request.Request(task.url, headers={"User-Agent": _USER_AGENT})
    digest = hashlib.sha256()
    ends = time.monotonic() + deadline
    with atomic_path(task.dest, unique=True) as tmp:
        received = 0
        head = b""
        with (
            opener.open(request, timeout=min(timeout, deadline)) as response,
            open(tmp, "wb", buffering=0) as fh,
        ):
            expected = _announced_size(response, name)
            if expected is not None and expected > max_bytes:
                raise RefusedDownloadError(
                    f"{name}: the server announces {expected} bytes, more than the "
                    f"{max_bytes} accepted for one HMI file; refusing it"
                )
            free = free_bytes(task.dest.parent)
            if expected is not None and free is not None and expected > free:
                raise no_room_error(task.dest, OSError(errno.ENOSPC, f"{expected} bytes announced"))
            limit = expected if expected is not None else max_bytes
            while True:
                if stop is not None and stop.is_set():
                    raise _CancelledError(name)
                if time.monotonic() > ends:
                    raise DownloadDeadlineError(
                        f"{name}: {received} bytes in {deadline:.0f} s, the deadline of one "
                        "attempt; the server is too slow or stalled"
                    )
                block = response.read1(_CHUNK)  # what has arrived, not a full chunk
                if not block:
                    break
                if len(head) < len(_FITS_START):
                    start = head + block
                    head = start[: len(_FITS_START)]
                    if not _FITS_START.startswith(head):
                        raise _not_fits(name, start, response)
                received += len(block)
                if received > limit:
                    what = "announced" if expected is not None else "accepted"
                    raise VerificationError(
                        f"{name}: the server sent more than the {limit} bytes {what}"
                    )
                _write_all(fh, block)
                digest.update(block)
        if expected is not None and received != expected:
            raise IncompleteDownloadError(
                f"{name}: connection closed after {received} of {expected} bytes"
            )
        if received and len(head) < len(_FITS_START):
            raise _not_fits(name, head, response)
        verify_fits(tmp, series=task.series, t_rec=task.t_rec, expected_size=expected)
    return received, digest.hexdigest()


class _RetryableDownloadError(Exception):
    """One attempt failed in a way another attempt may not (the text is in the result)."""


def _attempt(
    task: DownloadTask,
    *,
    retries: int,
    retry_wait: float,
    timeout: float,
    deadline: float,
    allowed: frozenset[Origin] | None,
    max_bytes: int,
    stop: threading.Event,
    sleep: Callable[[float], None],
) -> DownloadResult:
    """Fetch one task under the retry policy; the outcome, with its error text, as a result."""
    result = DownloadResult(task)

    def once() -> None:
        result.attempts += 1
        try:
            result.size, result.sha256 = fetch_file(
                task,
                timeout=timeout,
                deadline=deadline,
                allowed=allowed,
                max_bytes=max_bytes,
                stop=stop,
            )
            result.error = None
        except RefusedDownloadError as exc:
            result.error = str(exc)
            log.warning("download %s: %s", task.dest.name, exc)
            # what the server asked for: retrying will not change it
        except _CancelledError:
            result.error = "stopped: another download failed for good"
        except OutputError:
            stop.set()  # the disk is full: every other download stops too
            raise
        except (VerificationError, DownloadDeadlineError) as exc:
            result.error = failure_text(exc)  # a cut, wrong or slow file: the next may be whole
            raise _RetryableDownloadError(result.error) from exc
        except (
            urllib.error.URLError,
            http.client.HTTPException,
            OSError,
            ValueError,
        ) as exc:
            close_http_responses(exc)  # an HTTPError holds the error response and its socket
            result.error = f"{failure_text(exc)} for {task.dest.name}"
            if not is_permanent(exc):
                raise _RetryableDownloadError(result.error) from exc
            result.error += "; not retried: waiting cannot change it"
            log.warning("download %s: %s", task.dest.name, result.error)

    def log_failure(state: tenacity.RetryCallState, _wait: float | None) -> None:
        log.warning(
            "download %s, attempt %d/%d: %s",
            task.dest.name,
            state.attempt_number,
            retries,
            result.error,
        )

    policy = retry_policy(
        attempts=retries,
        first_wait=retry_wait,
        retry_on=lambda exc: isinstance(exc, _RetryableDownloadError),
        stop_when=stop.is_set,
        sleep=sleep,
        on_failure=log_failure,
    )
    with contextlib.suppress(_RetryableDownloadError):
        policy(once)
    return result


def download_all(
    tasks: Iterable[DownloadTask],
    *,
    max_concurrent: int = 2,
    retries: int = 3,
    retry_wait: float = 2.0,
    timeout: float = 120.0,
    deadline: float = DEFAULT_DEADLINE,
    allowed: frozenset[Origin] | None = None,
    max_bytes: int = MAX_FILE_BYTES,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[DownloadResult]:
    """Fetch every task with at most ``max_concurrent`` at a time; yield as each ends.

    Low concurrency by default: JSOC blocks bulk users. Options are those of
    :func:`fetch_file`; each task gets ``retries`` attempts with a doubling
    wait, except refusals (:class:`RefusedDownloadError`) and failures no
    wait can heal (:func:`enhance_hmi.acquire.retry.is_permanent`: HTTP 404,
    403, ..., a URL that cannot be sent), which are final at once.

    Raises
    ------
    OutputError
        As soon as one download finds the disk full (or read-only): the
        others stop before their next read, their temporary files removed.
    ValueError
        If two tasks have one destination.
    """
    tasks = list(tasks)
    if not tasks:
        return
    seen: dict[Path, DownloadTask] = {}
    for task in tasks:
        other = seen.setdefault(task.dest, task)
        if other is not task:
            raise ValueError(
                f"{task.dest.name} is the destination of both {format_t_rec(other.t_rec)} "
                f"and {format_t_rec(task.t_rec)}"
            )
    stop = threading.Event()
    workers = max(1, min(int(max_concurrent), len(tasks)))
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [
            pool.submit(
                _attempt,
                task,
                retries=retries,
                retry_wait=retry_wait,
                timeout=timeout,
                deadline=deadline,
                allowed=allowed,
                max_bytes=max_bytes,
                stop=stop,
                sleep=sleep,
            )
            for task in tasks
        ]
        try:
            for future in concurrent.futures.as_completed(futures):
                yield future.result()
        finally:
            stop.set()
            for future in futures:
                future.cancel()
