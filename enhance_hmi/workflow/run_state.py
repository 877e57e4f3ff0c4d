"""The state of one workflow run: acquisition keys, the range's plan, open batches, status.

One :class:`WorkflowRun` per Snakemake process, built in
``workflow/rules/common.smk`` from the checked config
(:class:`~enhance_hmi.workflow.run_config.RunConfig`). It answers what the
rules' input functions ask, from the config and what earlier runs left in
the output directory, and computes each answer once per run, so the
acquisition key, the batches and the checkpoint agree even when ``end`` is
``now`` and the clock moves on:

- :meth:`WorkflowRun.resolved_end`: ``end`` as a JSOC time, ``now`` being the
  last slot before the current TAI time;
- :meth:`WorkflowRun.acquire_key`: the name of the series' acquisition,
  ``<hash>`` of the request and ``-r<n>`` for the n-th retry of an
  incomplete one;
- :meth:`WorkflowRun.range_plan`: the range's batches, known before any query;
- :meth:`WorkflowRun.batch_settled`: whether a batch's plan can be read as it
  is, or must wait for the acquisition checkpoint;
- :meth:`WorkflowRun.status`: the content of ``status.json`` at the run's end,
  from what the package's jobs wrote.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from enhance_hmi.acquire.status import status_path
from enhance_hmi.acquire.timespec import snap_up
from enhance_hmi.cube.plan import range_batches
from enhance_hmi.time import format_t_rec, grid_floor, tai_datetime, utc_timestamp
from enhance_hmi.workflow.quarantine import read_quarantine
from enhance_hmi.workflow.run_config import RunConfig
from enhance_hmi.workflow.run_status import run_status

__all__ = ["WorkflowRun", "attempt_number"]

#: What the plan of a series' range is: ``{period: [batch id]}``, or None.
RangePlan = dict[str, list[str]] | None


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def attempt_number(path: str | Path) -> int:
    """The retry number of an acquisition summary named ``<hash>[-r<n>].json`` (0: none)."""
    _, _, number = Path(path).stem.partition("-r")
    return int(number) if number else 0


class WorkflowRun:
    """What one run of the workflow plans and finds, computed once per run.

    Parameters
    ----------
    config : RunConfig
        The checked config.
    job : bool
        True in a process that runs a job for a scheduler (Snakemake's
        remote or subprocess execution): the job then takes the acquisition
        key its scheduler chose (the newest summary), not one from a newer
        ``now``.
    clock : callable
        The current time (timezone-aware); ``end: now`` is read from it once.
    started : str, optional
        When the run started (UTC ISO); now when None.
    """

    def __init__(
        self,
        config: RunConfig,
        *,
        job: bool = False,
        clock: Callable[[], dt.datetime] = _utc_now,
        started: str | None = None,
    ) -> None:
        self.config = config
        self.job = job
        self.started = started or utc_timestamp()
        self._clock = clock
        self._ends: dict[str, str | None] = {}
        self._keys: dict[str, str] = {}
        self._plans: dict[str, RangePlan] = {}
        self._open: dict[str, frozenset[str]] = {}

    @property
    def output(self) -> str:
        """The output directory."""
        return self.config.output

    # ------------------------------------------------------------ the range
    def resolved_end(self, series: str) -> str | None:
        """``end`` as a JSOC time; ``now`` is the last slot before the current TAI time.

        Read once per run and series, so the key, the batches and the
        checkpoint agree.
        """
        if series not in self._ends:
            if not self.config.end_is_now:
                end = self.config.end
                self._ends[series] = format_t_rec(end) if end is not None else None
            else:
                now = tai_datetime(self._clock())
                self._ends[series] = format_t_rec(grid_floor(now, self.config.slot_step(series)))
        return self._ends[series]

    def start_t_rec(self) -> str | None:
        """``start`` as a JSOC time, or None."""
        return format_t_rec(self.config.start) if self.config.start else None

    def range_plan(self, series: str) -> RangePlan:
        """``{period: [batch id]}`` of the configured range, known before any query.

        None for a local archive without ``start``/``end``: its batches are
        known only once the checkpoint has scanned it.
        """
        if series not in self._plans:
            end = self.resolved_end(series)
            start = self.config.start
            plan: RangePlan = None
            if start is not None and end is not None:
                first = snap_up(start, self.config.series[series])
                last = tai_datetime(end)
                plan = (
                    {}
                    if first > last
                    else range_batches(
                        self.config.layout(series), first, last, self.config.frames_per_job
                    )
                )
            self._plans[series] = plan
        return self._plans[series]

    # ------------------------------------------------------- acquisition key
    def request_hash(self, series: str) -> str:
        """12 hex digits of everything that decides the acquisition and plan of ``series``."""
        config = self.config.config
        request = {
            "source": self.config.source,
            "series": series,
            "start": self.start_t_rec(),
            "end": self.resolved_end(series),
            "cadence": config["cadence"],
            "quality_policy": config["quality_policy"],
            "frames_per_job": config["enhance"]["frames_per_job"],
            "period": config["cube"]["period"],
            "frames": config["cube"]["frames"],
        }
        return hashlib.sha256(json.dumps(request, sort_keys=True).encode()).hexdigest()[:12]

    def summaries(self, series: str) -> list[Path]:
        """The acquisition summaries of ``series`` in the output, oldest first."""
        found = Path(self.output, "acquire", series).glob("*.json")
        return sorted(found, key=lambda path: path.stat().st_mtime)

    def acquire_key(self, series: str) -> str:
        """Name of one acquisition, fixed for the whole run.

        ``<hash>`` (:meth:`request_hash`) of everything that decides the
        plan; when the summary of that request records an incomplete
        acquisition (files that failed, exports still pending), the next run
        gets ``<hash>-r<n+1>``: a new checkpoint output, so a rerun retries
        what failed instead of finding it "done". So does a series with
        quarantined frames: the acquisition fetches them again, and a frame
        whose input changed is tried again.
        """
        if series not in self._keys:
            self._keys[series] = self._find_key(series)
        return self._keys[series]

    def _find_key(self, series: str) -> str:
        done = self.summaries(series)
        if done and self.job:
            # a job started later must see the plan its scheduler saw, not a newer "now"
            return done[-1].stem
        base = self.request_hash(series)
        tries = sorted((p for p in done if p.stem.split("-r")[0] == base), key=attempt_number)
        if not tries:
            return base
        latest = tries[-1]
        summary = json.loads(latest.read_text())
        settled = summary.get("complete") and not read_quarantine(self.output, series)
        return latest.stem if settled else f"{base}-r{attempt_number(latest) + 1}"

    # ---------------------------------------------------------------- batches
    def open_batches(self, series: str) -> frozenset[str]:
        """Batches the last acquisition left unfinished, and those with quarantined frames."""
        if series not in self._open:
            done = self.summaries(series)
            summary = json.loads(done[-1].read_text()) if done else {}
            quarantined = {entry.batch for entry in read_quarantine(self.output, series)}
            self._open[series] = frozenset(summary.get("open_batches", [])) | quarantined
        return self._open[series]

    def plan_file(self, series: str, batch: str) -> Path:
        """The plan file of one batch."""
        return Path(self.output, "plan", series, f"{batch}.csv")

    def batch_settled(self, series: str, batch: str) -> bool:
        """Whether a batch's plan stands without the checkpoint running again.

        True when its plan and its marker both exist and it held no
        unfinished slot at the last acquisition: Snakemake's job count then
        includes only the batches with work, before and after the
        checkpoint.
        """
        marker = Path(self.output, "enhanced", series, "batches", f"{batch}.json")
        return (
            self.plan_file(series, batch).is_file()
            and marker.is_file()
            and batch not in self.open_batches(series)
        )

    # ----------------------------------------------------------------- status
    def acquisition_statuses(self) -> dict[str, dict[str, Any]]:
        """Each series' acquisition status file (``<series>.status.json``), where there is one."""
        statuses = {}
        for series in self.config.series:
            path = status_path(Path(self.output, "raw", series), series)
            if path.is_file():
                statuses[series] = json.loads(path.read_text())
        return statuses

    def status(
        self, *, success: bool, logs: str | Path | Iterable[str] | None = None
    ) -> dict[str, Any]:
        """The content of ``status.json`` for this run ending now.

        ``logs`` are Snakemake's log file(s), listed for the reader; their
        content is not read: causes and failed jobs come from what the jobs
        recorded (:mod:`enhance_hmi.workflow.run_status`).
        """
        if not logs:
            listed: list[str] = []
        elif isinstance(logs, (str, Path)):
            listed = [str(logs)]
        else:
            listed = [str(path) for path in logs]
        return run_status(
            output=self.output,
            series=self.config.series,
            acquisition=self.acquisition_statuses(),
            success=success,
            started=self.started,
            logs=listed,
            config_sha256=self.config.sha256,
        )
