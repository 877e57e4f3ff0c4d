"""``acquire``: query, export, download and verify a range of HMI frames.

One call brings an output directory up to date for a series, a time range
and a cadence: it re-queries the range (so gaps JSOC filled since are
backfilled), resumes export requests recorded in the manifest, exports what
is still needed in bounded chunks (one request at a time: JSOC allows one
pending export per user), downloads with bounded concurrency through
verified ``name.part`` files, and writes the manifest and the gap report.
The same manifest and layout come from a local directory of FITS files.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import os
from collections.abc import Collection, Iterable
from pathlib import Path

from enhance_hmi.acquire.addresses import check_email, mask_email
from enhance_hmi.acquire.download import Origin, allowed_origins
from enhance_hmi.acquire.gaps import gap_report
from enhance_hmi.acquire.jsoc import JsocSource, is_remote, server_config
from enhance_hmi.acquire.lock import out_dir_lock
from enhance_hmi.acquire.manifest import Manifest
from enhance_hmi.acquire.options import AcquireOptions
from enhance_hmi.acquire.quality import QualityPolicy
from enhance_hmi.acquire.remote import run_remote
from enhance_hmi.acquire.run import AcquisitionRun
from enhance_hmi.acquire.series import HmiSeries, get_series
from enhance_hmi.acquire.status import AcquisitionStatus
from enhance_hmi.acquire.timespec import format_duration, iter_slots, parse_cadence
from enhance_hmi.atomic import check_writable_dir
from enhance_hmi.errors import ConfigError, EnhanceError, JsocError, OutputError
from enhance_hmi.provenance import provenance_record
from enhance_hmi.time import format_t_rec, tai_datetime, utc_timestamp

__all__ = ["acquire", "AcquireOptions", "EMAIL_ENV"]

log = logging.getLogger(__name__)

#: Environment variable read for the JSOC export address.
EMAIL_ENV = "ENHANCE_JSOC_EMAIL"


@dataclasses.dataclass(frozen=True)
class _Request:
    """What one :func:`acquire` call asks for, checked before anything is written."""

    series: HmiSeries
    policy: QualityPolicy
    t0: dt.datetime | None
    t1: dt.datetime | None
    step: dt.timedelta | None
    server: str
    #: The server as logged and recorded: a local directory as an absolute path.
    where: str
    remote: bool
    email: str | None
    #: Origins downloads may come from (a remote server's), else None.
    allowed: frozenset[Origin] | None

    def grid(self) -> tuple[dt.datetime, dt.datetime, dt.timedelta] | None:
        """``(start, end, cadence)``, or None when every file found counts (local only)."""
        if self.step is None or self.t0 is None or self.t1 is None:
            return None
        return self.t0, self.t1, self.step

    def provenance(self) -> dict[str, str]:
        """The provenance record of the gap report, with the range in JSOC spelling."""
        return provenance_record(
            series=self.series.name,
            server=self.where,
            start=format_t_rec(self.t0) if self.t0 else None,
            end=format_t_rec(self.t1) if self.t1 else None,
            cadence=format_duration(self.step) if self.step else None,
            quality_policy=self.policy.name,
        )


def _prepare_out_dir(out_dir: str | os.PathLike[str]) -> Path:
    path = Path(out_dir)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create output directory {path}: {exc.strerror or exc}") from exc
    check_writable_dir(path)
    probe = path / f".enhance-write-test.{os.getpid()}"
    try:  # root ignores permission bits; a read-only mount still refuses
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise OutputError(f"output directory {path} is not writable: {exc.strerror}") from exc
    return path


def _resolve_email(email: str | None) -> str | None:
    return email if email else os.environ.get(EMAIL_ENV) or None


def _check_request(
    *,
    series: str,
    start: str | dt.datetime | None,
    end: str | dt.datetime | None,
    cadence: str | dt.timedelta | None,
    server: str,
    email: str | None,
    quality_policy: str | QualityPolicy | None,
    download: bool,
    options: AcquireOptions,
) -> _Request:
    """Check the arguments of :func:`acquire`; raise :class:`ConfigError` on the first bad one."""
    hmi = get_series(series)
    policy = (
        quality_policy
        if isinstance(quality_policy, QualityPolicy)
        else QualityPolicy.parse(quality_policy)
    )
    t0 = tai_datetime(start) if start is not None else None
    t1 = tai_datetime(end) if end is not None else None
    step = parse_cadence(cadence) if cadence is not None else None
    if t0 is not None and t1 is not None and t1 < t0:
        raise ConfigError(f"end {end} is before start {start}")
    if options.max_per_request < 1:
        raise ConfigError("max_per_request must be at least 1")
    if options.jsoc.retries < 1:
        raise ConfigError(f"retries must be at least 1, got {options.jsoc.retries}")
    if step is not None and (t0 is None or t1 is None):
        raise ConfigError("a cadence needs a start and an end time")
    if step is not None and t0 is not None and t1 is not None:
        iter_slots(hmi, t0, t1, step)  # checks the grid before anything is written
    remote = is_remote(server)
    allowed = None
    if remote:
        config = server_config(server)
        if step is None or t0 is None or t1 is None:
            raise ConfigError(f"fetching from {server} needs a start, an end and a cadence")
        if download and not config.check_supported("export"):
            raise ConfigError(
                f"server {server!r} answers queries only (drms has no export service for it); "
                "use --server jsoc or a URL, or --query-only"
            )
        if download:
            email = check_email(_resolve_email(email))
        allowed = allowed_origins(config.http_download_baseurl, options.allow_hosts)
    elif not Path(server).is_dir():
        raise ConfigError(f"server {server!r} is not jsoc, kis, an http(s) URL or a directory")
    where = server if remote else str(Path(server).resolve())
    return _Request(hmi, policy, t0, t1, step, server, where, remote, email, allowed)


def acquire(
    *,
    series: str,
    start: str | dt.datetime | None,
    end: str | dt.datetime | None,
    cadence: str | dt.timedelta | None,
    out_dir: str | os.PathLike[str],
    server: str = "jsoc",
    email: str | None = None,
    quality_policy: str | QualityPolicy | None = None,
    download: bool = True,
    progress: bool = False,
    options: AcquireOptions | None = None,
    refetch: Collection[str] = (),
) -> Manifest:
    """Bring ``out_dir`` up to date with ``series`` from ``start`` to ``end``.

    Parameters
    ----------
    series : str
        One of :data:`enhance_hmi.acquire.series.SERIES`.
    start, end : str or datetime
        TAI times (ISO or JSOC format), both included. Optional for a local
        archive (no bound).
    cadence : str or timedelta
        Slot spacing, a multiple of the series step (``"12m"``, ``"45s"``,
        ``"1h"``). Optional for a local archive (then every file found counts
        and no gaps are computed).
    out_dir : path-like
        Where files, ``<series>.manifest.csv`` and ``<series>.gaps.{csv,json}``
        go (created if needed).
    server : str
        ``"jsoc"``, ``"kis"`` (queries only), a base URL of a server speaking
        the JSOC protocol, or a local directory of FITS files.
    email : str, optional
        Registered JSOC export address; default ``$ENHANCE_JSOC_EMAIL``. Never
        logged in full.
    quality_policy : str or QualityPolicy, optional
        Which QUALITY bits skip a frame (default ``"nodata"``).
    download : bool
        False: query and write the manifest and gap report only.
    progress : bool
        Show a tqdm progress bar of the downloads.
    options : AcquireOptions, optional
        Chunk size, concurrency, retries, polling.
    refetch : collection of str, optional
        ``T_REC`` of verified files to fetch again although they are in
        place (the workflow's quarantined frames: a server may since serve
        a good copy); from a local archive they are verified and hashed
        again.

    Returns
    -------
    Manifest
        Saved; ``Manifest.files()`` lists the verified files.

    Raises
    ------
    ConfigError
        Bad series, times, cadence, policy, server or missing e-mail.
    OutputError
        ``out_dir`` cannot be created or written.
    JsocError
        The server kept failing, an export timed out, or files failed every
        retry (the manifest and gap report are written first).
    """
    options = options or AcquireOptions()
    request = _check_request(
        series=series,
        start=start,
        end=end,
        cadence=cadence,
        server=server,
        email=email,
        quality_policy=quality_policy,
        download=download,
        options=options,
    )
    out = _prepare_out_dir(out_dir)
    with out_dir_lock(out):  # one acquisition at a time per directory
        for stale in out.glob("*.fits*.part"):
            stale.unlink()  # our own temporary files (and links) from an interrupted run
        run = AcquisitionRun(
            request.series,
            out,
            request.policy,
            options,
            progress,
            refetch={format_t_rec(t) for t in refetch},
            allowed=request.allowed,
        )
        log.info(
            "acquiring %s from %s into %s (policy %s, e-mail %s)",
            request.series.name,
            request.where,
            out,
            request.policy.name,
            mask_email(request.email),
        )
        started = utc_timestamp()
        slots, error = _fill(run, request, download)
        error = _write_reports(run, request, slots, started=started, error=error)
        if error is not None:
            raise error
        return run.manifest


def _fill(
    run: AcquisitionRun, request: _Request, download: bool
) -> tuple[Iterable[dt.datetime], EnhanceError | None]:
    """Bring the manifest up to date from the server or the archive.

    Returns the expected slots and the error a remote server ended with (the
    reports are written before it is raised).
    """
    grid = request.grid()
    if not request.remote or grid is None:  # a remote request always has its grid
        slots = None if grid is None else iter_slots(request.series, *grid)
        return run.import_local(Path(request.server), slots, request.t0, request.t1), None
    source = JsocSource(request.server, email=request.email, options=run.options.jsoc)
    error: EnhanceError | None = None
    try:
        run_remote(run, source, grid, download)
    except EnhanceError as exc:
        error = exc  # write the manifest, gap report and status, then raise
    return iter_slots(request.series, *grid), error


def _write_reports(
    run: AcquisitionRun,
    request: _Request,
    slots: Iterable[dt.datetime],
    *,
    started: str,
    error: EnhanceError | None,
) -> EnhanceError | None:
    """Write the gap report, the manifest and the status file; return the run's error.

    Files that failed every retry make the error of a run that otherwise
    went through.
    """
    provenance = request.provenance()
    out = run.out_dir
    report = gap_report(
        run.manifest, slots, cadence=request.step, out_dir=out, provenance=provenance
    )
    run.manifest.save()  # commit, and the CSV copy
    log.info("%s", report.summary_line())
    run.manifest.report = report
    if error is None and run.failures:
        error = JsocError(
            f"{len(run.failures)} file(s) failed every retry (first: {run.failures[0]}); "
            f"they are marked failed in {run.manifest.path.name}: rerun to retry them"
        )
    status = AcquisitionStatus.from_report(
        report,
        server=request.where,
        start=provenance.get("start"),
        end=provenance.get("end"),
        cadence=provenance.get("cadence"),
        started=started,
        error=error,
        gap_report=out / f"{request.series.name}.gaps.csv",
    )
    status.write(out)
    run.manifest.status = status
    log.info("%s", status.summary_line())
    return error
