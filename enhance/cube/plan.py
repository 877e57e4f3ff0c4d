"""Plan the enhancement of an archive: frames -> batches (jobs) -> cubes.

The workflow enhances frames in batches (one job loads the network once and
processes many frames) and assembles one cube per period. The plan is made
from the acquisition manifest: every verified frame in the requested range
goes to the cube of its period (:class:`enhance.cube.CubeLayout`) and, within
the period, to batch ``k`` of ``frames_per_job`` frames in time order.

Each batch is written as a small CSV file, and only rewritten when its frame
list changes, so a rerun over an extended range leaves the files of finished
batches untouched (their modification time is what the workflow compares):
only batches that gained frames are run again, and they skip the frames
already enhanced.
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

from enhance.atomic import atomic_path
from enhance.cube.layout import CubeLayout, format_t_rec, parse_t_rec
from enhance.errors import InputError

__all__ = ["PlannedFrame", "batch_id", "plan_batches", "write_plan", "read_plan", "read_manifest"]

log = logging.getLogger(__name__)

_FIELDS = ("t_rec", "file", "sha256", "quality")


@dataclasses.dataclass(frozen=True)
class PlannedFrame:
    """One frame to enhance: its slot, input file (absolute), sha256 and QUALITY."""

    t_rec: str
    file: str
    sha256: str
    quality: str


def read_manifest(path: str | os.PathLike[str]) -> list[dict[str, str]]:
    """Rows of an acquisition manifest CSV (``<series>.manifest.csv``) as text.

    Raises
    ------
    InputError
        If the file is missing or has no ``t_rec``/``state``/``file`` column.
    """
    path = Path(path)
    try:
        with open(path, newline="") as fh:
            rows = list(csv.DictReader(fh))
    except OSError as exc:
        raise InputError(f"cannot read manifest {path}: {exc.strerror}") from exc
    if rows and not {"t_rec", "state", "file"} <= set(rows[0]):
        raise InputError(f"{path} is not an acquisition manifest (t_rec, state, file columns)")
    return rows


def plan_batches(
    rows: Iterable[dict[str, str]],
    *,
    base_dir: str | os.PathLike[str],
    layout: CubeLayout,
    frames_per_job: int,
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
) -> dict[str, list[list[PlannedFrame]]]:
    """Group the verified frames in ``[start, end]`` by period, then into batches.

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

    Returns
    -------
    dict
        ``{period: [batch, ...]}`` with each batch a list of
        :class:`PlannedFrame` in time order.
    """
    if frames_per_job < 1:
        raise ValueError(f"frames_per_job must be at least 1, got {frames_per_job}")
    base = Path(base_dir).resolve()
    by_period: dict[str, list[tuple[dt.datetime, PlannedFrame]]] = {}
    for row in rows:
        if row.get("state") != "verified" or not row.get("file"):
            continue
        when = parse_t_rec(row["t_rec"])
        if (start is not None and when < start) or (end is not None and when > end):
            continue
        frame = PlannedFrame(
            t_rec=format_t_rec(when),
            file=str(base / row["file"]),
            sha256=row.get("sha256", ""),
            quality=row.get("quality", ""),
        )
        by_period.setdefault(layout.period_of(when), []).append((when, frame))
    plan: dict[str, list[list[PlannedFrame]]] = {}
    for period in sorted(by_period):
        frames = [f for _, f in sorted(by_period[period], key=lambda item: item[0])]
        plan[period] = [
            frames[i : i + frames_per_job] for i in range(0, len(frames), frames_per_job)
        ]
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


def write_plan(
    plan: dict[str, list[list[PlannedFrame]]], plan_dir: str | os.PathLike[str]
) -> dict[str, list[str]]:
    """Write one CSV per batch into ``plan_dir``, leaving unchanged ones untouched.

    Returns
    -------
    dict
        ``{period: [batch id, ...]}``; the file of a batch is
        ``plan_dir / f"{batch_id}.csv"``.
    """
    directory = Path(plan_dir)
    directory.mkdir(parents=True, exist_ok=True)
    index: dict[str, list[str]] = {}
    changed = 0
    for period, batches in plan.items():
        index[period] = []
        for k, frames in enumerate(batches):
            name = batch_id(period, k)
            index[period].append(name)
            path = directory / f"{name}.csv"
            text = _render(frames)
            if path.is_file() and path.read_text() == text:
                continue
            with atomic_path(path) as tmp:
                tmp.write_text(text)
            changed += 1
    log.info("plan: %d batch file(s) written or updated in %s", changed, directory)
    return index


def read_plan(path: str | os.PathLike[str]) -> list[PlannedFrame]:
    """The frames of one batch file written by :func:`write_plan`."""
    with open(path, newline="") as fh:
        return [PlannedFrame(**{k: row[k] for k in _FIELDS}) for row in csv.DictReader(fh)]
