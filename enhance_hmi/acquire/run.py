"""One acquisition run: the manifest it updates and the failures it collects.

:class:`AcquisitionRun` owns the state of one :func:`enhance_hmi.acquire.acquire`
call and every change to it: how a slot's query answer is folded into the
manifest, how an export request's rows move through their states, which
downloads are needed, and what failed. The query and export sequence against
a server (:mod:`enhance_hmi.acquire.remote`) and the call itself
(:mod:`enhance_hmi.acquire.fetch`) drive it through these methods; neither
reaches into its fields.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Collection, Iterable, Mapping
from pathlib import Path

from tqdm import tqdm

from enhance_hmi.acquire.download import (
    DownloadTask,
    Origin,
    download_all,
    export_clashes,
    local_name,
)
from enhance_hmi.acquire.jsoc import ExportedFile, QueriedRecord
from enhance_hmi.acquire.local import import_file, scan_archive
from enhance_hmi.acquire.manifest import KEYWORDS, NEEDS_EXPORT, Manifest, manifest_path
from enhance_hmi.acquire.options import AcquireOptions
from enhance_hmi.acquire.quality import QualityPolicy, decode_quality, format_quality
from enhance_hmi.acquire.series import HmiSeries
from enhance_hmi.acquire.verify import VerificationError, verify_fits
from enhance_hmi.provenance import sha256_file
from enhance_hmi.time import format_t_rec, tai_datetime

__all__ = ["AcquisitionRun"]

log = logging.getLogger(__name__)

#: Slots merged between two releases of the manifest's rows from memory.
_RELEASE_EVERY = 5000


class AcquisitionRun:
    """State of one :func:`enhance_hmi.acquire.acquire` call.

    Parameters
    ----------
    series : HmiSeries
        The series acquired.
    out_dir : Path
        The prepared output directory (manifest and files).
    policy : QualityPolicy
        Which QUALITY bits skip a frame.
    options : AcquireOptions
        Download and retry knobs.
    progress : bool
        Whether downloads show a progress bar.
    refetch : collection of str
        ``T_REC`` (JSOC spelling) of verified files to fetch again
        (quarantined frames).
    allowed : frozenset of Origin, optional
        Origins downloads may come from (a remote server's); None for a
        local archive.
    """

    def __init__(
        self,
        series: HmiSeries,
        out_dir: Path,
        policy: QualityPolicy,
        options: AcquireOptions,
        progress: bool,
        *,
        refetch: Collection[str] = (),
        allowed: frozenset[Origin] | None = None,
    ) -> None:
        self.series = series
        self.refetch = frozenset(refetch)
        self.out_dir = out_dir
        self.policy = policy
        self.options = options
        self.progress = progress
        self.allowed = allowed
        self.manifest = Manifest.load(manifest_path(out_dir, series.name), series.name)
        self._last_save = time.monotonic()
        self._failures: list[str] = []

    @property
    def failures(self) -> tuple[str, ...]:
        """``"<T_REC>: <reason>"`` of every file that failed in this run, in order."""
        return tuple(self._failures)

    def save(self, *, force: bool = True) -> None:
        """Commit the manifest (its CSV copy is rewritten once, at the end of the run)."""
        if force or time.monotonic() - self._last_save >= self.options.save_every:
            self.manifest.save(csv_copy=False)
            self._last_save = time.monotonic()

    # ------------------------------------------------------------- merging
    def _file_ok(self, row: Mapping[str, str]) -> bool:
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

    def merge_window(
        self, window: list[dt.datetime], found: Mapping[dt.datetime, QueriedRecord]
    ) -> None:
        """Fold one answered query window into the manifest and send its rows to disk."""
        self.manifest.hold(format_t_rec(window[0]), format_t_rec(window[-1]))
        for when in window:
            rec = found.get(when)
            if rec is None:
                self.merge(when, None, None, {})
            else:
                self.merge(when, rec.record, rec.quality, rec.keywords)
        self.manifest.release()

    def import_local(
        self,
        directory: Path,
        slots: Iterable[dt.datetime] | None,
        t0: dt.datetime | None,
        t1: dt.datetime | None,
    ) -> list[dt.datetime]:
        """Merge a local archive's files in ``[t0, t1]`` and link those needed; return the slots.

        ``slots`` is the cadence's grid, or None to take every file found as
        a slot.
        """
        found = scan_archive(directory, self.series, KEYWORDS)
        in_range = {
            t: rec
            for t, rec in found.items()
            if (t0 is None or t >= t0) and (t1 is None or t <= t1)
        }
        listed = sorted(in_range) if slots is None else list(slots)
        for number, when in enumerate(listed, 1):
            if number % _RELEASE_EVERY == 0:
                self.manifest.release()  # rows go to disk; memory stays bounded
            rec = in_range.get(when)
            if rec is None:
                self.merge(when, None, None, {})
                continue
            self.merge(when, rec.record, rec.quality, rec.keywords)
            key = format_t_rec(when)
            row = self.manifest.get(key)
            if row is not None and row["state"] in NEEDS_EXPORT:
                dest = self.out_dir / local_name(self.series, when)
                size, sha = import_file(rec, dest, self.series)
                self.manifest.update(
                    key,
                    state="verified",
                    reason="",
                    file=dest.name,
                    size=size,
                    sha256=sha,
                    request_id="local",
                )
        self.save()
        return listed

    # ------------------------------------------------------ export requests
    def requests_to_resume(self) -> dict[str, list[dict[str, str]]]:
        """Rows still needing their file, by the export request an earlier run recorded."""
        by_request: dict[str, list[dict[str, str]]] = {}
        for row in self.manifest.rows(NEEDS_EXPORT):
            if row["request_id"] and row["request_id"] != "local":
                by_request.setdefault(row["request_id"], []).append(row)
        return by_request

    def rows_to_export(self) -> list[dict[str, str]]:
        """Rows needing a file and in no export request, less those adopted from disk."""
        todo = [r for r in self.manifest.rows(NEEDS_EXPORT) if not r["request_id"]]
        todo = self.adopt_existing(todo)
        self.save()
        return todo

    def pending_count(self) -> int:
        """Slots that still need a file (the progress bar's total)."""
        return len(self.manifest.rows(NEEDS_EXPORT))

    def requeue(self, t_recs: Iterable[str], reason: str) -> None:
        """Put slots back to ``queried``/``flagged``, out of any request, with ``reason``."""
        for key in t_recs:
            row = self.manifest.get(key)
            if row is None:
                continue
            state = "flagged" if row["quality_bits"] else "queried"
            self.manifest.update(key, state=state, request_id="", reason=reason)
        self.save()

    def requeue_unlisted(
        self, rows: Iterable[Mapping[str, str]], files: Iterable[ExportedFile], request_id: str
    ) -> None:
        """Requeue the still-needed ``rows`` that request ``request_id`` did not export."""
        listed = {format_t_rec(f.t_rec) for f in files}
        missing = []
        for row in rows:
            current = self.manifest.get(row["t_rec"])
            if row["t_rec"] not in listed and current and current["state"] in NEEDS_EXPORT:
                missing.append(row["t_rec"])
        self.requeue(missing, f"not in export request {request_id}")

    def mark_exported(self, group: Iterable[dt.datetime], request_id: str) -> None:
        """Record that ``group`` is in export request ``request_id`` (saved at once)."""
        for when in group:
            self.manifest.update(
                format_t_rec(when), state="exported", request_id=request_id, reason=""
            )
        self.save()  # the id must be on disk before anything else can go wrong

    def fail_unlisted(
        self, group: Iterable[dt.datetime], files: Iterable[ExportedFile], request_id: str
    ) -> None:
        """Fail the slots of ``group`` that the finished request ``request_id`` did not export."""
        listed = {f.t_rec for f in files}
        for when in group:
            if when not in listed:
                key = format_t_rec(when)
                self.manifest.update(
                    key, state="failed", reason=f"not in export request {request_id}"
                )
                self._failures.append(f"{key}: not in export {request_id}")

    # ----------------------------------------------------------- downloads
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

    def _download_tasks(self, files: list[ExportedFile], request_id: str) -> list[DownloadTask]:
        """The downloads ``files`` call for; rows that cannot get theirs are settled here."""
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
                self._failures.append(f"{key}: {reason}")
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
        rows = [self.manifest.get(format_t_rec(t.t_rec)) for t in tasks]
        needed = {r["t_rec"] for r in self.adopt_existing([r for r in rows if r is not None])}
        return [t for t in tasks if format_t_rec(t.t_rec) in needed]

    def download(self, files: list[ExportedFile], request_id: str, bar: tqdm | None) -> None:
        """Download the files of a finished request that rows still need."""
        tasks = self._download_tasks(files, request_id)
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
                self._failures.append(f"{key}: {result.error}")
            if bar is not None:
                bar.update(1)
            self.save(force=False)
        self.save()
