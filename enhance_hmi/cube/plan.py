"""Plan the enhancement of an archive: frames -> batches (jobs) -> cubes.

The workflow enhances frames in batches (one job loads the network once and
processes many frames) and assembles one cube per period. Batches are fixed
on the slot grid: within its period (:class:`enhance_hmi.cube.CubeLayout`), the
slot ``i`` steps after the period's start belongs to batch
``i // frames_per_job``. So the batches of a date range are known from the
range alone (:func:`range_batches`, without listing its slots), before
anything is queried, and a frame's batch never changes as gaps are filled.
The plan (:func:`plan_batches`) then puts every verified frame of the
acquisition manifest into its batch; a batch whose slots have no verified
frame is planned empty.

Each batch is written as a small CSV file, and only rewritten when its frame
list changes, so a rerun over an extended range leaves the files of finished
batches untouched (their modification time is what the workflow compares):
only batches that gained frames are run again, and they skip the frames
already enhanced. Each file is written whole and renamed into place; the
files of one plan are flushed to disk together when it is complete (an
fsync each, after all are written, when the kernel has written most of them
back already), so planning a long range costs no disk flush per batch and
a plan is durable before the caller records it as done. A crash before
that leaves files that the next plan compares, and rewrites where they
differ.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import io
import logging
import os
from collections.abc import Iterable
from pathlib import Path

from enhance_hmi.atomic import NO_ROOM_ERRNOS, no_room_error, part_path
from enhance_hmi.cube.layout import CubeLayout
from enhance_hmi.errors import ConfigError, OutputError
from enhance_hmi.time import format_t_rec, grid_floor, tai_datetime

__all__ = [
    "PlannedFrame",
    "batch_id",
    "batch_of",
    "range_batches",
    "plan_batches",
    "write_plan",
    "write_plan_streamed",
    "read_plan",
]

log = logging.getLogger(__name__)

_FIELDS = ("t_rec", "file", "sha256", "quality")


@dataclasses.dataclass(frozen=True)
class PlannedFrame:
    """One frame to enhance: its slot, input file (absolute), sha256 and QUALITY."""

    t_rec: str
    file: str
    sha256: str
    quality: str


def _period_bounds(layout: CubeLayout, when: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    """Start (included) and end (excluded) of the period holding ``when``."""
    if layout.period == "day":
        start = dt.datetime(when.year, when.month, when.day)
        return start, start + dt.timedelta(days=1)
    window = layout.step * layout.frames
    start = grid_floor(when, window)
    return start, start + window


def batch_of(layout: CubeLayout, when: dt.datetime, frames_per_job: int) -> tuple[str, str]:
    """``(period, batch id)`` of the slot ``when``.

    The slot ``i = (when - period start) // layout.step`` of its period is in
    batch ``i // frames_per_job``.
    """
    start, _ = _period_bounds(layout, when)
    index = ((when - start) // layout.step) // frames_per_job
    return layout.period_of(when), batch_id(layout.period_of(when), index)


def range_batches(
    layout: CubeLayout,
    first: dt.datetime,
    last: dt.datetime,
    frames_per_job: int,
) -> dict[str, list[str]]:
    """Every batch holding a slot of ``first, first + step, ... <= last``, by period.

    Computed period by period from the grid (no slot is listed), so a
    16-year range of 45 s slots costs the size of its batch list.

    Parameters
    ----------
    layout : CubeLayout
        Periods and the slot step (``layout.step``).
    first, last : datetime
        First slot (on the grid) and the end of the range (included).
    frames_per_job : int
        Slots per batch.

    Returns
    -------
    dict
        ``{period: [batch id, ...]}`` in time order.
    """
    if frames_per_job < 1:
        raise ConfigError(f"frames_per_job must be at least 1, got {frames_per_job}")
    step = layout.step
    batches: dict[str, list[str]] = {}
    when = first
    while when <= last:
        start, end = _period_bounds(layout, when)
        in_period = min(last, end - dt.timedelta(microseconds=1))
        final = when + step * ((in_period - when) // step)  # last slot in this period
        i0 = ((when - start) // step) // frames_per_job
        i1 = ((final - start) // step) // frames_per_job
        period = layout.period_of(when)
        batches[period] = [batch_id(period, k) for k in range(i0, i1 + 1)]
        when = final + step
    return batches


def plan_batches(
    rows: Iterable[dict[str, str]],
    *,
    base_dir: str | os.PathLike[str],
    layout: CubeLayout,
    frames_per_job: int,
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
    batches: dict[str, list[str]] | None = None,
) -> dict[str, dict[str, list[PlannedFrame]]]:
    """Put the verified frames in ``[start, end]`` into their batches (see the module notes).

    Parameters
    ----------
    rows : iterable of dict
        Manifest rows (``t_rec``, ``state``, ``file``, ``sha256``, ``quality``).
    base_dir : path-like
        Directory the manifest's ``file`` names are relative to.
    layout : CubeLayout
        Which period (cube) each frame belongs to.
    frames_per_job : int
        Largest number of frames in one batch.
    start, end : datetime, optional
        Range of ``T_REC`` (TAI, both included) to plan; default: everything.
    batches : dict, optional
        Batches to plan even when empty, ``{period: [batch id, ...]}`` (the
        :func:`range_batches` of the range); default: only batches with a frame.

    Returns
    -------
    dict
        ``{period: {batch id: [PlannedFrame, ...]}}``, everything in time order.
    """
    if frames_per_job < 1:
        raise ConfigError(f"frames_per_job must be at least 1, got {frames_per_job}")
    base = Path(base_dir).resolve()
    by_batch: dict[tuple[str, str], list[tuple[dt.datetime, PlannedFrame]]] = {}
    for period, ids in (batches or {}).items():
        for name in ids:
            by_batch[(period, name)] = []
    for row in rows:
        if row.get("state") != "verified" or not row.get("file"):
            continue
        when = tai_datetime(row["t_rec"])
        if (start is not None and when < start) or (end is not None and when > end):
            continue
        frame = PlannedFrame(
            t_rec=format_t_rec(when),
            file=str(base / row["file"]),
            sha256=row.get("sha256", ""),
            quality=row.get("quality", ""),
        )
        by_batch.setdefault(batch_of(layout, when, frames_per_job), []).append((when, frame))
    plan: dict[str, dict[str, list[PlannedFrame]]] = {}
    for period, name in sorted(by_batch):
        frames = sorted(by_batch[(period, name)], key=lambda item: item[0])
        plan.setdefault(period, {})[name] = [f for _, f in frames]
    return plan


def batch_id(period: str, index: int) -> str:
    """Name of batch ``index`` of ``period``."""
    return f"{period}-{index:04d}"


def _render(frames: list[PlannedFrame]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(_FIELDS)
    for frame in frames:
        writer.writerow([frame.t_rec, frame.file, frame.sha256, frame.quality])
    return buffer.getvalue()


class _PlanFiles:
    """Batch files of one plan: each written whole and renamed, flushed together by :meth:`sync`."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.written: list[str] = []

    def write(self, name: str, text: str) -> bool:
        """Write batch ``name`` unless its file already holds ``text``; return whether it did."""
        path = self.directory / f"{name}.csv"
        try:
            with open(path) as fh:
                if fh.read() == text:
                    return False
        except FileNotFoundError:
            pass
        tmp = part_path(path)
        try:
            with open(tmp, "w") as fh:
                fh.write(text)
            os.replace(tmp, path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            if exc.errno in NO_ROOM_ERRNOS:
                raise no_room_error(path, exc) from exc
            raise OutputError(f"cannot write plan file {path}: {exc.strerror or exc}") from exc
        self.written.append(name)
        return True

    def sync(self) -> None:
        """fsync every file written, then the directory (the renames)."""
        for name in self.written:
            fd = os.open(self.directory / f"{name}.csv", os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        log.info(
            "plan: %d batch file(s) written or updated in %s", len(self.written), self.directory
        )
        self.written = []


def _write_batches(
    plan: dict[str, dict[str, list[PlannedFrame]]], files: _PlanFiles
) -> dict[str, list[str]]:
    index: dict[str, list[str]] = {}
    for period, batches in plan.items():
        index[period] = list(batches)
        for name, frames in batches.items():
            files.write(name, _render(frames))
    return index


def write_plan(
    plan: dict[str, dict[str, list[PlannedFrame]]], plan_dir: str | os.PathLike[str]
) -> dict[str, list[str]]:
    """Write one CSV per batch into ``plan_dir``, leaving unchanged ones untouched.

    The files are on disk (fsynced) when this returns.

    Returns
    -------
    dict
        ``{period: [batch id, ...]}``; the file of a batch is
        ``plan_dir / f"{batch_id}.csv"``.

    Raises
    ------
    OutputError
        A file could not be written (full disk, no permission).
    """
    directory = Path(plan_dir)
    directory.mkdir(parents=True, exist_ok=True)
    files = _PlanFiles(directory)
    index = _write_batches(plan, files)
    files.sync()
    return index


def read_plan(path: str | os.PathLike[str]) -> list[PlannedFrame]:
    """The frames of one batch file written by :func:`write_plan`."""
    with open(path, newline="") as fh:
        return [PlannedFrame(**{k: row[k] for k in _FIELDS}) for row in csv.DictReader(fh)]


def _time(item: tuple[dt.datetime, PlannedFrame]) -> dt.datetime:
    return item[0]


def write_plan_streamed(
    rows: Iterable[dict[str, str]],
    *,
    base_dir: str | os.PathLike[str],
    layout: CubeLayout,
    frames_per_job: int,
    plan_dir: str | os.PathLike[str],
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
    batches: dict[str, list[str]] | None = None,
) -> dict[str, list[str]]:
    """:func:`plan_batches` and :func:`write_plan`, one period at a time.

    ``rows`` must come in time order (as :class:`enhance_hmi.acquire.Manifest`
    iterates them); only one period's frames are held at a time, so planning
    a range of millions of slots costs the memory of its batch list. The
    files are on disk (fsynced) when this returns.

    Returns
    -------
    dict
        ``{period: [batch id, ...]}`` of every planned batch, in time order.
    """
    if frames_per_job < 1:
        raise ConfigError(f"frames_per_job must be at least 1, got {frames_per_job}")
    directory = Path(plan_dir)
    directory.mkdir(parents=True, exist_ok=True)
    files = _PlanFiles(directory)
    base = str(Path(base_dir).resolve())
    index: dict[str, list[str]] = {}
    wanted = batches or {}
    current: str | None = None
    first = last = dt.datetime.min
    by_batch: dict[int, list[tuple[dt.datetime, PlannedFrame]]] = {}

    def flush() -> None:
        if current is None:
            return
        plan = {
            batch_id(current, number): [frame for _, frame in sorted(frames, key=_time)]
            for number, frames in by_batch.items()
        }
        for name in wanted.get(current, []):
            plan.setdefault(name, [])
        index.update(_write_batches({current: dict(sorted(plan.items()))}, files))

    for row in rows:  # each row parsed once; the period's bounds compared, not recomputed
        if row.get("state") != "verified" or not row.get("file"):
            continue
        when = tai_datetime(row["t_rec"])
        if (start is not None and when < start) or (end is not None and when > end):
            continue
        if not first <= when < last:
            flush()
            first, last = _period_bounds(layout, when)
            current, by_batch = layout.period_of(when), {}
        number = ((when - first) // layout.step) // frames_per_job
        frame = PlannedFrame(
            t_rec=format_t_rec(when),
            file=os.path.join(base, row["file"]),
            sha256=row.get("sha256", ""),
            quality=row.get("quality", ""),
        )
        by_batch.setdefault(number, []).append((when, frame))
    flush()
    empty = {period: ids for period, ids in wanted.items() if period not in index}
    if empty:  # periods of the range without any verified frame
        index.update(_write_batches({p: {b: [] for b in ids} for p, ids in empty.items()}, files))
    files.sync()
    return dict(sorted(index.items()))
