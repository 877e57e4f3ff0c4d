"""The status file of one acquisition run, for monitoring and unattended use.

Every :func:`enhance_hmi.acquire.acquire` call that got past its argument checks
leaves ``<series>.status.json`` next to the manifest, whether it succeeded or
not: when it ran, whether the range is complete, the one-line error if it is
not, the slot counts of the gap report (missing on the server, not queried,
failed, not yet downloaded) and the first failures. A cron job or a monitor
reads it instead of parsing logs; the workflow folds the status of every
series into ``status.json`` at the top of its output directory.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

from enhance_hmi.acquire.gaps import GapReport
from enhance_hmi.atomic import atomic_path
from enhance_hmi.errors import InputError
from enhance_hmi.time import utc_timestamp

__all__ = ["AcquisitionStatus", "status_path", "read_status", "MAX_LISTED"]

#: Failures listed by name in the status file (the gap report lists them all).
MAX_LISTED = 20


def status_path(out_dir: str | os.PathLike[str], series: str) -> Path:
    """Where the status file of ``series`` lives in ``out_dir``."""
    return Path(out_dir) / f"{series}.status.json"


@dataclasses.dataclass
class AcquisitionStatus:
    """Outcome of one acquisition run.

    Attributes
    ----------
    complete
        True when every expected slot was queried and every record the
        policy keeps has a verified file (gaps on the server do not count).
    error
        The one-line error the run ended with, or None.
    counts
        Expected slots and how many are verified, missing on the server, not
        queried, failed, not yet downloaded (``pending``), skipped and present
        with JSOC ``QUALITY`` bits set (``quality_bits_set``; status files
        written before that name say ``flagged``).
    failures
        The first :data:`MAX_LISTED` failed slots with their reasons.
    """

    series: str
    server: str
    start: str | None
    end: str | None
    cadence: str | None
    started: str
    finished: str
    complete: bool
    error: str | None
    counts: dict[str, int]
    failures: list[dict[str, str]]
    gap_report: str

    @classmethod
    def from_report(
        cls,
        report: GapReport,
        *,
        server: str,
        start: str | None,
        end: str | None,
        cadence: str | None,
        started: str,
        error: BaseException | None,
        gap_report: Path,
    ) -> AcquisitionStatus:
        """The status of a run that wrote ``report`` and ended with ``error`` (or None)."""
        counts = {"expected": report.expected, "verified": report.verified}
        counts.update({k: v for k, v in report.counts.items() if k != "gaps"})
        failures = [
            {"t_rec": item["t_rec"], "reason": item.get("reason", "")}
            for item in report.failed[:MAX_LISTED]
        ]
        message = " ".join(str(error).split()) if error is not None else None
        return cls(
            series=report.series,
            server=server,
            start=start,
            end=end,
            cadence=cadence,
            started=started,
            finished=utc_timestamp(),
            complete=error is None and report.complete,
            error=message,
            counts=counts,
            failures=failures,
            gap_report=str(gap_report),
        )

    def summary_line(self) -> str:
        """One line: the series, complete or not, the counts that matter and the error."""
        c = self.counts
        state = "complete" if self.complete else "INCOMPLETE"
        line = (
            f"{self.series}: acquisition {state}: {c['verified']}/{c['expected']} verified, "
            f"{c['missing']} missing on the server, {c['not_queried']} not queried, "
            f"{c['failed']} failed, {c['pending']} not yet downloaded"
        )
        return f"{line}; {self.error}" if self.error else line

    def write(self, out_dir: str | os.PathLike[str]) -> Path:
        """Write ``<series>.status.json`` atomically; return its path."""
        path = status_path(out_dir, self.series)
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(dataclasses.asdict(self), indent=1) + "\n")
        return path


def read_status(path: str | os.PathLike[str]) -> AcquisitionStatus:
    """Read a status file written by :meth:`AcquisitionStatus.write`.

    Raises
    ------
    InputError
        If the file is missing or is not such a status file.
    """
    path = Path(path)
    try:
        values = json.loads(path.read_text())
        return AcquisitionStatus(**values)
    except (OSError, ValueError, TypeError) as exc:
        raise InputError(f"{path} is not a readable acquisition status file: {exc}") from exc
