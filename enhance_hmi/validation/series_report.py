"""The validation outputs of one series: quick look, per-frame quality, report summaries.

:func:`write_series_validation` writes, for the cubes of one series,

* the quick-look figure (:func:`enhance_hmi.validation.archive.quicklook_figure`)
  of each cube's latest frame beside its HMI input, found by name under the
  raw archive (:func:`latest_quick_look`);
* the per-frame quality figure and the list of frames out of tolerance
  (:func:`enhance_hmi.validation.archive.quality_figure`,
  :func:`~enhance_hmi.validation.archive.out_of_tolerance_rows`) as PNG and CSV;
* a JSON summary: the statistics of each latest frame
  (:func:`cube_statistics`) and what a summary shows of each twin and
  Hinode report (:func:`report_summary`).

Every file is written atomically.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from enhance_hmi.atomic import atomic_path
from enhance_hmi.cube import TimeCube
from enhance_hmi.io.frame_quality import QUALITY_KEYWORDS, QualityTolerances
from enhance_hmi.validation.archive import (
    QuickLook,
    out_of_tolerance_rows,
    quality_figure,
    quality_table,
    quicklook_figure,
)

__all__ = [
    "cube_statistics",
    "latest_quick_look",
    "report_summary",
    "write_series_validation",
]

log = logging.getLogger(__name__)


def cube_statistics(data: np.ndarray, *, cube: TimeCube, t_rec: str | None) -> dict[str, Any]:
    """Figures of one frame ``data`` of ``cube``, observed at ``t_rec``.

    Returns
    -------
    dict
        ``cube`` (file name), ``frames`` (in the cube), ``latest`` (``t_rec``),
        ``shape``, ``nan_fraction`` (non-finite pixels), ``p1_p99`` (1st and
        99th percentiles of the finite pixels; None when there are none) and
        ``units`` (the cube's).
    """
    finite = data[np.isfinite(data)]
    return {
        "cube": Path(cube.path).name,
        "frames": len(cube),
        "latest": t_rec,
        "shape": list(data.shape),
        "nan_fraction": float(1 - finite.size / data.size) if data.size else 1.0,
        "p1_p99": [float(v) for v in np.percentile(finite, [1, 99])] if finite.size else None,
        "units": cube.attributes().get("units"),
    }


def report_summary(metrics_path: str | os.PathLike[str]) -> dict[str, Any]:
    """What the series summary shows of one validation report (its ``metrics.json``).

    ``target``, ``report`` (the page beside it), ``status`` when the report
    has one (a Hinode target without a co-temporal frame), and the
    comparisons, the Enhance row and the truth's figures when it was scored.
    """
    path = Path(metrics_path)
    doc = json.loads(path.read_text())
    out: dict[str, Any] = {
        "target": doc.get("target", doc.get("name")),
        "report": str(path.with_name("report.html")),
    }
    if "status" in doc:
        out["status"] = doc["status"]
    out["summary"] = doc.get("summary")
    out["enhance"] = (doc.get("methods") or {}).get("enhance")
    out["truth"] = doc.get("truth_stats")
    return out


def latest_quick_look(
    cube: TimeCube, *, observable: str, raw_dir: str | os.PathLike[str] | None
) -> tuple[QuickLook, dict[str, Any]]:
    """The latest frame of ``cube`` beside its HMI input, and the frame's statistics.

    The input is the file the cube records for the frame, looked up by name
    under ``raw_dir`` and read by :func:`enhance_hmi.io.read_hmi` (north up, the
    network's units); when it is not found the quick look shows the output
    only.
    """
    from enhance_hmi.io import read_hmi

    data, header = cube.read_frame(-1)
    stats = cube_statistics(data, cube=cube, t_rec=header.get("T_REC"))
    name = str(cube.table()[-1]["input_file"])
    found = next(Path(raw_dir).rglob(Path(name).name), None) if raw_dir and name else None
    look = QuickLook(
        label=Path(cube.path).stem,
        observable=observable,
        output=data,
        output_header=header,
        frames=len(cube),
    )
    if found is not None:
        frame = read_hmi(found, observable=observable)
        look.input, look.input_header = frame.data, frame.header
    else:
        log.info("input %s of %s not found under %s", name, cube.path.name, raw_dir)
    return look, stats


def write_series_validation(
    cube_paths: Sequence[str | os.PathLike[str]],
    *,
    observable: str,
    series: str,
    raw_dir: str | os.PathLike[str] | None,
    reports: Mapping[str, Sequence[str | os.PathLike[str]]],
    tolerances: Mapping[str, Any] | None,
    figure_path: str | os.PathLike[str],
    quality_path: str | os.PathLike[str],
    out_of_tolerance_path: str | os.PathLike[str],
    summary_path: str | os.PathLike[str],
) -> dict[str, Any]:
    """Write the quick look, quality figure, list of frames out of tolerance and summary.

    Parameters
    ----------
    cube_paths : sequence of path-like
        The series' time cubes (``.h5``); those without a frame yet are
        skipped.
    observable : {"continuum", "magnetogram"}
    series : str
        Series name (figure titles).
    raw_dir : path-like, optional
        Raw archive where the HMI inputs are looked up by name.
    reports : mapping
        Kind (``"twins"``, ``"hinode"``) -> the ``metrics.json`` of its reports.
    tolerances : mapping, optional
        Per-frame quality tolerances (config ``validation.frame_quality``).
    figure_path, quality_path, out_of_tolerance_path, summary_path : path-like
        The four outputs. The CSV at ``out_of_tolerance_path`` has one row
        per frame out of tolerance: ``cube``, ``t_rec``, ``quality`` (the
        input's JSOC ``QUALITY`` word), every figure of
        :data:`~enhance_hmi.io.frame_quality.QUALITY_KEYWORDS` and
        ``out_of_tolerance`` (the names of the figures beyond their
        tolerances).

    Returns
    -------
    dict
        The summary written: ``cubes`` (statistics per cube),
        ``out_of_tolerance_frames`` (how many) and one list of report
        summaries per kind of ``reports``.
    """
    cubes = [TimeCube(path) for path in cube_paths]
    cubes = [cube for cube in cubes if cube.exists and len(cube)]
    looks, stats = [], []
    for cube in cubes:
        look, figures = latest_quick_look(cube, observable=observable, raw_dir=raw_dir)
        looks.append(look)
        stats.append(figures)
    quicklook_figure(looks, figure_path)
    tables = {cube.path.name: quality_table(cube.path) for cube in cubes}
    quality_figure(
        tables,
        observable,
        quality_path,
        tolerances=QualityTolerances.from_mapping(tolerances),
        title=series,
    )
    outside = [
        {**{k: v for k, v in row.items() if k != "flags"}, "out_of_tolerance": row["flags"]}
        for row in out_of_tolerance_rows(tables)
    ]
    columns = ["cube", "t_rec", "quality", *QUALITY_KEYWORDS, "out_of_tolerance"]
    with atomic_path(out_of_tolerance_path) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerows(outside)
    summary: dict[str, Any] = {"cubes": stats, "out_of_tolerance_frames": len(outside)}
    for kind, paths in reports.items():
        summary[kind] = [report_summary(path) for path in paths]
    with atomic_path(summary_path) as tmp:
        tmp.write_text(json.dumps(summary, indent=1, default=str) + "\n")
    return summary
