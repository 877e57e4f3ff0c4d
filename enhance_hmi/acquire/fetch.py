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
import time
from collections.abc import Collection, Iterable
from pathlib import Path

from tqdm import tqdm

from enhance_hmi.acquire.addresses import check_email, mask_email
from enhance_hmi.acquire.download import (
    DEFAULT_DEADLINE,
    MAX_FILE_BYTES,
    DownloadTask,
    Origin,
    allowed_origins,
    download_all,
    export_clashes,
    local_name,
)
from enhance_hmi.acquire.gaps import gap_report
from enhance_hmi.acquire.jsoc import (
    ExportedFile,
    JsocOptions,
    JsocSource,
    is_remote,
    server_config,
)
from enhance_hmi.acquire.local import import_file, scan_archive
from enhance_hmi.acquire.lock import out_dir_lock
from enhance_hmi.acquire.manifest import KEYWORDS, NEEDS_EXPORT, Manifest, manifest_path
from enhance_hmi.acquire.quality import QualityPolicy, decode_quality, format_quality
from enhance_hmi.acquire.remote import run_remote
from enhance_hmi.acquire.series import HmiSeries, get_series
from enhance_hmi.acquire.status import AcquisitionStatus
from enhance_hmi.acquire.timespec import (
    format_duration,
    iter_slots,
    parse_cadence,
)
from enhance_hmi.acquire.verify import VerificationError, verify_fits
from enhance_hmi.atomic import check_writable_dir
from enhance_hmi.errors import ConfigError, EnhanceError, JsocError, OutputError
from enhance_hmi.provenance import provenance_record, sha256_file
from enhance_hmi.time import format_t_rec, tai_datetime, utc_timestamp

__all__ = ["acquire", "AcquireOptions", "EMAIL_ENV"]

log = logging.getLogger(__name__)

#: Environment variable read for the JSOC export address.
EMAIL_ENV = "ENHANCE_JSOC_EMAIL"
#: Slots merged between two releases of the manifest's rows from memory.
_RELEASE_EVERY = 5000


@dataclasses.dataclass(frozen=True)
class AcquireOptions:
    """Knobs of :func:`acquire` beyond the essentials (seconds for times).

    Attributes
    ----------
    max_per_request
        Largest number of slots in one export request.
    max_concurrent
        Parallel downloads (keep low: JSOC blocks bulk users).
    download_retries, download_timeout
        Attempts per file and the socket timeout of one attempt.
    save_every
        Seconds between manifest saves while downloading.
    download_deadline
        Wall-clock seconds one download attempt may take (a server that
        trickles bytes is cut off).
    max_file_bytes
        Largest file accepted from the server.
    allow_hosts
        Hosts besides the server's own download origin that files may come
        from (``host``, ``host:port`` or ``http(s)://host[:port]``).
    jsoc
        Query/export polling and retry knobs.
    """

    max_per_request: int = 500
    max_concurrent: int = 2
    download_retries: int = 3
    download_timeout: float = 120.0
    save_every: float = 2.0
    download_deadline: float = DEFAULT_DEADLINE
    max_file_bytes: int = MAX_FILE_BYTES
    allow_hosts: tuple[str, ...] = ()
    jsoc: JsocOptions = dataclasses.field(default_factory=JsocOptions)


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


class AcquisitionRun:
    """State of one :func:`acquire` call."""

    def __init__(
        self,
        series: HmiSeries,
        out_dir: Path,
        policy: QualityPolicy,
        options: AcquireOptions,
        progress: bool,
        refetch: Collection[str] = (),
    ) -> None:
        self.series = series
        #: ``T_REC`` (JSOC spelling) of verified files to fetch again (quarantined frames).
        self.refetch = frozenset(refetch)
        self.out_dir = out_dir
        self.policy = policy
        self.options = options
        self.progress = progress
        self.manifest = Manifest.load(manifest_path(out_dir, series.name), series.name)
        self.last_save = time.monotonic()
        self.failures: list[str] = []
        #: Origins downloads may come from (set for a remote server).
        self.allowed: frozenset[Origin] | None = None

    def save(self, *, force: bool = True) -> None:
        """Commit the manifest (its CSV copy is rewritten once, at the end of the run)."""
        if force or time.monotonic() - self.last_save >= self.options.save_every:
            self.manifest.save(csv_copy=False)
            self.last_save = time.monotonic()

    # ------------------------------------------------------------- merging
    def _file_ok(self, row: dict[str, str]) -> bool:
        """Whether a verified row's file is in place with the size and sha256 recorded.

        The hash is checked on every acquisition (about 8 ms for a 14 MB
        full disk): a same-size change (bit rot, another process, a link
        re-pointed in a local archive) is caught, not only a truncation.
        """
        if not row["file"] or row["t_rec"] in self.refetch:
            return False
        path = self.out_dir / row["file"]
        try:
            if not path.is_file() or str(path.stat().st_size) != row["size"]:
                return False
            return not row["sha256"] or sha256_file(path) == row["sha256"]
        except OSError:
            return False

    def merge(
        self, when: dt.datetime, record: str | None, quality: int | None, keywords: dict[str, str]
    ) -> None:
        """Fold one slot's query result into the manifest."""
        key = format_t_rec(when)
        row = self.manifest.get(key)
        if record is None:
            if row is not None and row["state"] == "verified" and self._file_ok(row):
                log.warning("%s: verified file kept although the server lists no record", key)
                return
            self.manifest.update(
                key,
                record=f"{self.series.name}[{key}]",
                state="missing",
                reason="no record on the server",
                request_id="",
            )
            return
        values: dict[str, object] = {
            "record": record,
            "quality": format_quality(quality) if quality is not None else "",
            "quality_bits": "|".join(decode_quality(quality)),
            **{k: v for k, v in keywords.items() if k in KEYWORDS},
        }
        reason = self.policy.skip_reason(quality)
        if reason is not None:
            self.manifest.update(key, state="skipped", reason=reason, **values)
            return
        if row is not None and row["state"] == "verified":
            if self._file_ok(row):
                self.manifest.update(key, **values)
                return
            if key in self.refetch:
                log.info("%s: quarantined; fetching %s again", key, row["file"])
            else:
                log.warning(
                    "%s: verified file %s is gone or changed; fetching it again", key, row["file"]
                )
        if (
            row is not None
            and row["state"] in ("exported", "downloaded", "failed")
            and row["request_id"]
        ):
            self.manifest.update(key, **values)
            return
        state = "flagged" if quality else "queried"
        self.manifest.update(key, state=state, reason="", request_id="", **values)

    def adopt_existing(self, rows: list[dict[str, str]]) -> list[dict[str, str]]:
        """Verify files already in place (a crash after rename); return rows still needed.

        A file whose row recorded a sha256 before is adopted only with those
        bytes; quarantined frames (``refetch``) are always fetched again.
        """
        still = []
        for row in rows:
            path = self.out_dir / row["file"] if row["file"] else None
            if row["t_rec"] in self.refetch or (row["sha256"] and not self._file_ok(row)):
                still.append(row)  # to fetch again: not what was verified before
                continue
            if path is not None and path.is_file():
                try:
                    verify_fits(path, series=self.series, t_rec=tai_datetime(row["t_rec"]))
                except VerificationError as exc:
                    log.warning("removing unusable %s: %s", path.name, exc)
                    path.unlink()
                else:
                    self.manifest.update(
                        row["t_rec"],
                        state="verified",
                        reason="",
                        size=path.stat().st_size,
                        sha256=sha256_file(path),
                    )
                    continue
            still.append(row)
        return still

    # ----------------------------------------------------------- downloads
    def download(self, files: list[ExportedFile], request_id: str, bar: tqdm | None) -> None:
        """Download the files of a finished request that rows still need."""
        tasks = []
        clashes = export_clashes(files)
        owners = {row["file"]: row["t_rec"] for row in self.manifest if row["file"]}
        for item in files:
            key = format_t_rec(item.t_rec)
            row = self.manifest.get(key)
            if row is None or row["state"] not in NEEDS_EXPORT:
                continue
            name = local_name(self.series, item.t_rec)
            if item.t_rec in clashes or owners.get(name, key) != key:
                reason = clashes.get(item.t_rec) or f"{name} is already the file of {owners[name]}"
                self.manifest.update(key, state="failed", request_id=request_id, reason=reason)
                self.failures.append(f"{key}: {reason}")
                continue
            if item.url is None:
                self.manifest.update(
                    key,
                    state="skipped",
                    request_id=request_id,
                    reason="the server exported no file for this record "
                    f"(NoDataFile, QUALITY {row['quality'] or '?'})",
                )
                continue
            self.manifest.update(key, file=name)
            tasks.append(DownloadTask(item.t_rec, item.url, self.out_dir / name, self.series))
        needed = self.adopt_existing([self.manifest.get(format_t_rec(t.t_rec)) for t in tasks])
        needed_keys = {r["t_rec"] for r in needed}
        tasks = [t for t in tasks if format_t_rec(t.t_rec) in needed_keys]
        self.save()
        for result in download_all(
            tasks,
            max_concurrent=self.options.max_concurrent,
            retries=self.options.download_retries,
            retry_wait=self.options.jsoc.retry_wait,
            timeout=self.options.download_timeout,
            deadline=self.options.download_deadline,
            allowed=self.allowed,
            max_bytes=self.options.max_file_bytes,
        ):
            key = format_t_rec(result.task.t_rec)
            if result.error is None:
                self.manifest.update(
                    key, state="verified", reason="", size=result.size, sha256=result.sha256
                )
            else:
                self.manifest.update(key, state="failed", reason=result.error)
                self.failures.append(f"{key}: {result.error}")
            if bar is not None:
                bar.update(1)
            self.save(force=False)
        self.save()


def _resolve_email(email: str | None) -> str | None:
    return email if email else os.environ.get(EMAIL_ENV) or None


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
            allowed_origins(config.http_download_baseurl, options.allow_hosts)
    elif not Path(server).is_dir():
        raise ConfigError(f"server {server!r} is not jsoc, kis, an http(s) URL or a directory")
    out = _prepare_out_dir(out_dir)
    with out_dir_lock(out):  # one acquisition at a time per directory
        for stale in out.glob("*.fits*.part"):
            stale.unlink()  # our own temporary files (and links) from an interrupted run
        run = AcquisitionRun(
            hmi, out, policy, options, progress, refetch={format_t_rec(t) for t in refetch}
        )
        where = server if remote else str(Path(server).resolve())
        log.info(
            "acquiring %s from %s into %s (policy %s, e-mail %s)",
            hmi.name,
            where,
            out,
            policy.name,
            mask_email(email),
        )
        started = utc_timestamp()
        error: EnhanceError | None = None
        if remote:
            source = JsocSource(server, email=email, options=options.jsoc)
            try:
                run_remote(run, source, (t0, t1, step), download)
            except EnhanceError as exc:
                error = exc  # write the manifest, gap report and status, then raise
            slots: Iterable[dt.datetime] = iter_slots(hmi, t0, t1, step)
        else:
            grid = iter_slots(hmi, t0, t1, step) if step is not None else None
            slots = _local(run, Path(server), grid, t0, t1)
        provenance = provenance_record(
            series=hmi.name,
            server=where,
            start=format_t_rec(t0) if t0 else None,
            end=format_t_rec(t1) if t1 else None,
            cadence=format_duration(step) if step else None,
            quality_policy=policy.name,
        )
        report = gap_report(run.manifest, slots, cadence=step, out_dir=out, provenance=provenance)
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
            server=where,
            start=provenance.get("start"),
            end=provenance.get("end"),
            cadence=provenance.get("cadence"),
            started=started,
            error=error,
            gap_report=out / f"{hmi.name}.gaps.csv",
        )
        status.write(out)
        run.manifest.status = status
        log.info("%s", status.summary_line())
        if error is not None:
            raise error
        return run.manifest


def _local(
    run: AcquisitionRun,
    directory: Path,
    slots: Iterable[dt.datetime] | None,
    t0: dt.datetime | None,
    t1: dt.datetime | None,
) -> list[dt.datetime]:
    found = scan_archive(directory, run.series, KEYWORDS)
    in_range = {
        t: rec for t, rec in found.items() if (t0 is None or t >= t0) and (t1 is None or t <= t1)
    }
    slots = sorted(in_range) if slots is None else list(slots)
    for number, when in enumerate(slots, 1):
        if number % _RELEASE_EVERY == 0:
            run.manifest.release()  # rows go to disk; memory stays bounded
        rec = in_range.get(when)
        if rec is None:
            run.merge(when, None, None, {})
            continue
        run.merge(when, rec.record, rec.quality, rec.keywords)
        row = run.manifest.get(format_t_rec(when))
        if row["state"] in NEEDS_EXPORT:
            dest = run.out_dir / local_name(run.series, when)
            size, sha = import_file(rec, dest, run.series)
            run.manifest.update(
                row["t_rec"],
                state="verified",
                reason="",
                file=dest.name,
                size=size,
                sha256=sha,
                request_id="local",
            )
    run.save()
    return slots
