"""What became of every expected frame: in a cube, waiting, or the acquisition's verdict.

The completeness table has one row per slot of the acquisition manifest
within the run's range. Its ``status`` follows one rule
(:func:`slot_status`):

* ``in cube`` when the frame is in a time cube, ``in cube (QUALITY bits
  set)`` when it is there but its JSOC ``QUALITY`` word had bits set;
* ``kept out of cube (out of tolerance)`` when it was enhanced but its
  quality figures were out of their tolerances and the cube excludes such
  frames (``cube.out_of_tolerance: exclude``); the ``reason`` column names
  the figures;
* ``quarantined`` when its enhancement failed and the workflow keeps it
  aside (:mod:`enhance_hmi.workflow.quarantine`); ``reason`` gives the cause;
* ``not processed yet`` when the file is verified but no cube holds it yet;
* otherwise the manifest state (``missing``, ``failed``, ``queried``, ...),
  ``queried (QUALITY bits set)`` for the state stored as ``flagged``.

"QUALITY bits set" is always JSOC's verdict on the input, "out of tolerance"
always enhance's on its output (docs/workflow.md, "Words"). The ``state``
column is the manifest state as stored.

The manifest rows come from :func:`enhance_hmi.acquire.read_manifest`; which
``T_REC`` each cube holds comes from the cube summaries the workflow writes
(``{"cube": name, "t_rec": [...]}``). Both keys are compared in one
``T_REC`` spelling (:func:`enhance_hmi.time.format_t_rec`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from enhance_hmi.atomic import atomic_path
from enhance_hmi.time import format_t_rec, tai_datetime

__all__ = [
    "COMPLETENESS_COLUMNS",
    "IN_CUBE_QUALITY_SET",
    "KEPT_OUT",
    "completeness_figure",
    "completeness_table",
    "slot_status",
    "write_completeness",
]

#: Columns of the completeness CSV, in order.
COMPLETENESS_COLUMNS: tuple[str, ...] = (
    "t_rec",
    "status",
    "state",
    "quality",
    "quality_bits",
    "reason",
    "file",
    "cube",
)
#: Status of a frame in a cube whose input had JSOC ``QUALITY`` bits set.
IN_CUBE_QUALITY_SET = "in cube (QUALITY bits set)"
#: Status of a frame kept out of its cube for enhance's quality figures.
KEPT_OUT = "kept out of cube (out of tolerance)"
#: Manifest states stored under a name of their own, as the table shows them.
_STATE_WORDS = {"flagged": "queried (QUALITY bits set)"}


def slot_status(
    state: str, quality_bits: str, cube: str, kept_out: bool = False, quarantined: bool = False
) -> str:
    """The status of one slot from its manifest state, QUALITY bits and cube.

    Parameters
    ----------
    state : str
        Manifest state (``verified``, ``missing``, ``failed``, ...).
    quality_bits : str
        Names of the QUALITY bits set, ``|``-separated; empty when none.
    cube : str
        Name of the cube holding the frame; empty when none does.
    kept_out : bool
        The frame was enhanced and kept out of its cube, out of tolerance.
    quarantined : bool
        The frame could not be enhanced and is quarantined.
    """
    if cube:
        return IN_CUBE_QUALITY_SET if quality_bits else "in cube"
    if kept_out:
        return KEPT_OUT
    if quarantined:
        return "quarantined"
    if state == "verified":
        return "not processed yet"
    return _STATE_WORDS.get(state, state)


def completeness_table(
    rows: Iterable[Mapping[str, str]],
    cubes: Iterable[Mapping[str, Any]],
    *,
    start: object | None = None,
    end: object | None = None,
) -> pd.DataFrame:
    """One row per manifest slot in ``[start, end]`` with its status and cube.

    Parameters
    ----------
    rows : iterable of mapping
        Manifest rows (:func:`enhance_hmi.acquire.read_manifest`).
    cubes : iterable of mapping
        Cube summaries, each with ``cube`` (its name), ``t_rec`` (the
        slots it holds) and optionally ``kept_out`` (``{"t_rec",
        "out_of_tolerance"}`` of the frames it excluded; summaries written
        before that name hold ``flags``) and ``quarantined`` (``{"t_rec",
        "cause"}`` of the frames that could not be enhanced).
    start, end : optional
        Range of the run, anything :func:`enhance_hmi.time.tai_datetime` reads;
        both ends included. None: unbounded.

    Returns
    -------
    pandas.DataFrame
        :data:`COMPLETENESS_COLUMNS` plus ``time`` (naive TAI datetime), in
        manifest order.
    """
    lo = tai_datetime(start) if start else None
    hi = tai_datetime(end) if end else None
    cubes = list(cubes)
    in_cube = {
        format_t_rec(t_rec): str(summary["cube"]) for summary in cubes for t_rec in summary["t_rec"]
    }
    kept_out = {
        format_t_rec(item["t_rec"]): str(item.get("out_of_tolerance", item.get("flags", "")))
        for summary in cubes
        for item in summary.get("kept_out", [])
    }
    quarantined = {
        format_t_rec(item["t_rec"]): str(item.get("cause", ""))
        for summary in cubes
        for item in summary.get("quarantined", [])
    }
    records = []
    for row in rows:
        when = tai_datetime(row["t_rec"])
        if (lo is not None and when < lo) or (hi is not None and when > hi):
            continue
        cube = in_cube.get(format_t_rec(when), "")
        figures = kept_out.get(format_t_rec(when)) if not cube else None
        cause = quarantined.get(format_t_rec(when)) if not cube else None
        record: dict[str, object] = {key: row.get(key, "") for key in COMPLETENESS_COLUMNS}
        record.update(
            cube=cube,
            status=slot_status(
                row["state"],
                row.get("quality_bits", ""),
                cube,
                figures is not None,
                quarantined=cause is not None and row["state"] == "verified",
            ),
            time=when,
        )
        if figures is not None:
            record["reason"] = f"figures out of tolerance: {figures}"
        elif record["status"] == "quarantined":
            record["reason"] = f"quarantined: {cause}"
        records.append(record)
    return pd.DataFrame(records, columns=[*COMPLETENESS_COLUMNS, "time"])


def completeness_figure(table: pd.DataFrame, *, title: str) -> Figure:
    """Timeline of the slots, one line of ticks per status, counts in the legend (``status: N``)."""
    fig = Figure(figsize=(9, 3), dpi=100, layout="tight")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    names = sorted(set(table["status"]))
    for row, name in enumerate(names):
        times = table["time"][table["status"] == name]
        ax.plot(times, [row] * len(times), "|", markersize=12, label=f"{name}: {len(times)}")
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("T_REC (TAI)")
    ax.set_title(title)
    # beside the axes, so it never hides the last slots, top to bottom as the rows
    handles, labels = ax.get_legend_handles_labels()
    ax.legend(
        handles[::-1],
        labels[::-1],
        fontsize=7,
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        borderaxespad=0,
    )
    fig.autofmt_xdate()
    return fig


def write_completeness(
    rows: Iterable[Mapping[str, str]],
    cubes: Iterable[Mapping[str, Any]],
    *,
    table_path: str | os.PathLike[str],
    figure_path: str | os.PathLike[str],
    series: str,
    start: object | None = None,
    end: object | None = None,
) -> pd.DataFrame:
    """Write the completeness CSV and its timeline PNG, each atomically.

    Returns the table (:func:`completeness_table`).
    """
    table = completeness_table(rows, cubes, start=start, end=end)
    with atomic_path(table_path) as tmp:
        table[list(COMPLETENESS_COLUMNS)].to_csv(tmp, index=False)
    fig = completeness_figure(table, title=f"{series}: {len(table)} slots")
    with atomic_path(figure_path) as tmp, open(tmp, "wb") as fh:
        fig.savefig(fh, format="png", dpi=100)
    return table
