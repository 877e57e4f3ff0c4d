"""The workflow run's status file, ``<output>/status.json``, and the causes it reports.

Every run that got to execute jobs leaves ``status.json`` (written by the
workflow's ``onsuccess``/``onerror`` hooks through :func:`write_run_status`):
when it ran, whether it succeeded, its exit status, the one-line reason, and
for each series the acquisition status, the quarantined frames with their
causes and the jobs that failed with theirs.

Causes come from what the package's jobs write, never from Snakemake's log:
a job that fails on purpose (an :class:`enhance_hmi.errors.EnhanceError`)
records its one-line cause with :func:`record_job_failure`, once per attempt,
and clears it when a later attempt succeeds (:func:`clear_job_failure`). The
failed attempts per rule (``failed_rules``) are counted from those records;
a job that died without a word (killed, out of memory) leaves none, and the
run's reason then says only that the workflow stopped with an error.

Exit status
-----------
0
    every job finished and nothing is quarantined;
1
    a job failed (or the acquisition is incomplete);
3 (:data:`~enhance_hmi.workflow.quarantine.QUARANTINE_EXIT_STATUS`)
    every job finished, but frames are quarantined.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from enhance_hmi.acquire.status import AcquisitionStatus
from enhance_hmi.atomic import atomic_path
from enhance_hmi.time import utc_timestamp
from enhance_hmi.workflow.quarantine import QUARANTINE_EXIT_STATUS, read_quarantine

__all__ = [
    "MAX_LISTED",
    "clear_job_failure",
    "failed_attempts",
    "job_failures",
    "record_job_failure",
    "run_status",
    "write_run_status",
]

#: Quarantined frames and failed jobs listed in the one-line reason, at most.
MAX_LISTED = 3


def _failure_file(output: str | os.PathLike[str], rule: str, job: str) -> Path:
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{rule}.{job}")
    return Path(output) / "status" / "failures" / f"{name}.json"


def _read_record(path: Path) -> dict[str, Any] | None:
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def record_job_failure(output: str | os.PathLike[str], rule: str, job: str, cause: str) -> None:
    """Record that one attempt of a job of ``rule`` (``job`` names its wildcards) failed.

    The record keeps the last ``cause`` and the time of every attempt that
    failed since the job last succeeded. Best effort: a disk too full to
    hold the record does not hide the job's own failure.
    """
    path = _failure_file(output, rule, job)
    now = utc_timestamp()
    earlier = _read_record(path) or {}
    attempts = [*earlier.get("attempts", []), now]
    record = {"rule": rule, "job": job, "cause": cause, "time": now, "attempts": attempts}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(record) + "\n")
    except OSError:
        pass


def clear_job_failure(output: str | os.PathLike[str], rule: str, job: str) -> None:
    """Forget the failure of one job (it has now succeeded)."""
    _failure_file(output, rule, job).unlink(missing_ok=True)


def job_failures(output: str | os.PathLike[str], since: str | None = None) -> list[dict[str, Any]]:
    """Failures recorded by jobs (last failed since ``since``, a UTC ISO time), oldest first."""
    records = []
    for path in sorted((Path(output) / "status" / "failures").glob("*.json")):
        record = _read_record(path)
        if record is not None and (since is None or record.get("time", "") >= since):
            records.append(record)
    return sorted(records, key=lambda record: str(record.get("time", "")))


def failed_attempts(failures: Iterable[Mapping[str, Any]], since: str = "") -> dict[str, int]:
    """Failed attempts per rule since ``since`` (a UTC ISO time), from the jobs' records."""
    counts: dict[str, int] = {}
    for record in failures:
        times = record.get("attempts") or [record.get("time", "")]
        count = sum(1 for when in times if when >= since)
        if count:
            counts[record["rule"]] = counts.get(record["rule"], 0) + count
    return counts


def run_status(
    *,
    output: str | os.PathLike[str],
    series: Iterable[str],
    acquisition: Mapping[str, Mapping[str, Any]],
    success: bool,
    started: str,
    logs: Iterable[str] = (),
    config_sha256: str = "",
) -> dict[str, Any]:
    """The content of ``status.json`` for a run that ended now.

    Parameters
    ----------
    output : path-like
        The workflow's output directory.
    series : iterable of str
        The run's series.
    acquisition : mapping
        Each series' acquisition status (``<series>.status.json`` content).
    success : bool
        Whether Snakemake finished every job.
    started : str
        When the run started (UTC ISO): failures recorded before are not
        this run's.
    logs : iterable of str
        Snakemake's log files, listed in the status for the reader (not read).
    config_sha256 : str
        Digest of the run's configuration.
    """
    logs = list(logs)
    quarantined = {
        name: [entry.as_dict() for entry in read_quarantine(output, name)] for name in series
    }
    quarantined = {name: rows for name, rows in quarantined.items() if rows}
    failures = [] if success else job_failures(output, since=started)
    failed = failed_attempts(failures, since=started)
    incomplete = [s for s in acquisition.values() if not s.get("complete")]
    held = sum(len(rows) for rows in quarantined.values())
    if success:
        exit_status = QUARANTINE_EXIT_STATUS if held else 0
        reason = "every job finished"
    else:
        exit_status = 1
        if incomplete:
            reason = "; ".join(AcquisitionStatus(**s).summary_line() for s in incomplete)
        elif failures:
            listed = [f"{f['rule']} {f['job']}: {f['cause']}" for f in failures[:MAX_LISTED]]
            more = len(failures) - MAX_LISTED
            reason = (
                "failed jobs: " + "; ".join(listed) + (f"; and {more} more" if more > 0 else "")
            )
        else:
            reason = "the workflow stopped with an error"
    if held:
        lines = [
            f"{row['t_rec']} ({Path(row['input']).name}): {row['cause']}"
            for rows in quarantined.values()
            for row in rows
        ]
        more = len(lines) - MAX_LISTED
        reason += f"; {held} frame(s) quarantined: " + "; ".join(lines[:MAX_LISTED])
        reason += f"; and {more} more" if more > 0 else ""
    return {
        "workflow": "enhance",
        "output": Path(output).as_posix(),
        "config_sha256": config_sha256,
        "started": started,
        "finished": utc_timestamp(),
        "success": success,
        "exit_status": exit_status,
        "reason": reason,
        "failed_rules": failed,
        "failures": failures,
        "quarantined": quarantined,
        "log": logs,
        "acquisition": dict(acquisition),
    }


def write_run_status(status: Mapping[str, Any], output: str | os.PathLike[str]) -> str:
    """Write ``<output>/status.json`` atomically; return the run's one-line summary."""
    Path(output).mkdir(parents=True, exist_ok=True)
    with atomic_path(Path(output, "status.json")) as tmp:
        tmp.write_text(json.dumps(status, indent=1) + "\n")
    word = {0: "done", QUARANTINE_EXIT_STATUS: "done, with frames quarantined"}.get(
        status["exit_status"], "FAILED"
    )
    return f"enhance: {word}: {status['reason']} (status in {Path(output).as_posix()}/status.json)"
