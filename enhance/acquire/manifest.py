"""The per-frame manifest: one row per expected or found ``T_REC`` slot.

The manifest is the acquisition's memory. It is a CSV file (written through
:func:`enhance.atomic.atomic_path`, so a crash never leaves half a manifest)
named ``<series>.manifest.csv`` in the output directory, read back by pandas
with every value as text. A restarted run reads it to resume export requests,
skip verified files and backfill slots that were missing.

Row states
----------
``missing``
    an expected slot with no record on the server (a gap);
``skipped``
    a record the QUALITY policy (or the server: no file) rules out; ``reason``
    says why;
``queried``
    a record with ``QUALITY`` 0 waiting to be exported;
``flagged``
    a record with ``QUALITY`` bits the policy keeps, waiting to be exported;
``exported``
    part of a JSOC export request (``request_id``), not yet downloaded;
``downloaded``
    file in place but not (re-)verified. Reserved: ``enhance`` verifies a
    download while it is still ``name.part`` and renames it only then, so its
    rows go from ``exported`` straight to ``verified``; a file found in place
    after a crash is re-verified before it counts;
``verified``
    file in place and checked (size, FITS, ``T_REC``, series); ``sha256`` set;
``failed``
    download or verification failed after every retry; ``reason`` says why.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import pandas as pd

from enhance.atomic import atomic_path
from enhance.errors import InputError

__all__ = [
    "Manifest",
    "STATES",
    "COLUMNS",
    "KEYWORDS",
    "NEEDS_EXPORT",
    "manifest_path",
]

log = logging.getLogger(__name__)

STATES = (
    "missing",
    "skipped",
    "queried",
    "flagged",
    "exported",
    "downloaded",
    "verified",
    "failed",
)
#: States of rows that still need a file from the server.
NEEDS_EXPORT = ("queried", "flagged", "exported", "downloaded", "failed")

#: Keywords kept per frame: time, pointing and WCS (see docs of jsoc.md).
KEYWORDS = (
    "T_OBS",
    "CAMERA",
    "CRPIX1",
    "CRPIX2",
    "CDELT1",
    "CDELT2",
    "CROTA2",
    "CRVAL1",
    "CRVAL2",
    "RSUN_OBS",
    "DSUN_OBS",
    "CRLN_OBS",
    "CRLT_OBS",
    "EXPTIME",
    "DATAMIN",
    "DATAMAX",
)
COLUMNS = (
    "t_rec",
    "record",
    "series",
    "state",
    "reason",
    "quality",
    "quality_bits",
    "request_id",
    "file",
    "size",
    "sha256",
    "updated",
    *KEYWORDS,
)


def manifest_path(out_dir: str | os.PathLike[str], series: str) -> Path:
    """Where the manifest of ``series`` lives in ``out_dir``."""
    return Path(out_dir) / f"{series}.manifest.csv"


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class Manifest:
    """Rows keyed by ``t_rec`` (``YYYY.MM.DD_hh:mm:ss_TAI``), saved as CSV.

    Parameters
    ----------
    path : path-like
        The CSV file (need not exist yet).
    series : str
        The JSOC series every row belongs to.
    """

    def __init__(self, path: str | os.PathLike[str], series: str) -> None:
        self.path = Path(path)
        self.series = series
        self._rows: dict[str, dict[str, str]] = {}
        #: The :class:`enhance.acquire.gaps.GapReport` of the run that returned it.
        self.report: object | None = None
        #: The :class:`enhance.acquire.status.AcquisitionStatus` of that run.
        self.status: object | None = None

    # ------------------------------------------------------------------ I/O
    @classmethod
    def load(cls, path: str | os.PathLike[str], series: str) -> Manifest:
        """Read ``path`` if it exists, else start an empty manifest.

        Raises
        ------
        InputError
            If the file is not a manifest of ``series``.
        """
        manifest = cls(path, series)
        if not manifest.path.exists():
            return manifest
        try:
            frame = pd.read_csv(manifest.path, dtype=str, keep_default_na=False)
        except (ValueError, OSError) as exc:
            raise InputError(
                f"cannot read manifest {manifest.path}: {exc}; move it away to start afresh"
            ) from exc
        missing = {"t_rec", "state", "series"} - set(frame.columns)
        if missing:
            raise InputError(
                f"{manifest.path} is not an enhance manifest (no {', '.join(sorted(missing))} "
                "column); move it away to start afresh"
            )
        others = set(frame["series"]) - {series, ""}
        if others:
            raise InputError(
                f"{manifest.path} holds series {', '.join(sorted(others))}, not {series}"
            )
        for record in frame.to_dict("records"):
            row = {col: str(record.get(col, "")) for col in COLUMNS}
            manifest._rows[row["t_rec"]] = row
        return manifest

    def save(self) -> Path:
        """Write the manifest atomically (sorted by ``t_rec``)."""
        with atomic_path(self.path) as tmp:
            self.frame.to_csv(tmp, index=False)
        return self.path

    # ----------------------------------------------------------------- rows
    @property
    def frame(self) -> pd.DataFrame:
        """The rows as a DataFrame of strings, one column per :data:`COLUMNS`."""
        rows = [self._rows[key] for key in sorted(self._rows)]
        return pd.DataFrame(rows, columns=list(COLUMNS), dtype=str)

    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, t_rec: object) -> bool:
        return t_rec in self._rows

    def __iter__(self) -> Iterator[dict[str, str]]:
        return (self._rows[key] for key in sorted(self._rows))

    def get(self, t_rec: str) -> dict[str, str] | None:
        """The row of ``t_rec`` (a live dict; use :meth:`update` to change it)."""
        return self._rows.get(t_rec)

    def update(self, t_rec: str, **values: object) -> dict[str, str]:
        """Create or update the row of ``t_rec``; values are stored as text."""
        row = self._rows.get(t_rec)
        if row is None:
            row = dict.fromkeys(COLUMNS, "")
            row["t_rec"] = t_rec
            row["series"] = self.series
            self._rows[t_rec] = row
        for key, value in values.items():
            if key not in row:
                raise KeyError(f"unknown manifest column {key!r}")
            if key == "state" and value not in STATES:
                raise ValueError(f"unknown manifest state {value!r}")
            row[key] = "" if value is None else str(value)
        row["updated"] = _now()
        return row

    def rows(self, states: Iterable[str] | None = None) -> list[dict[str, str]]:
        """Rows (sorted by ``t_rec``) whose state is in ``states`` (all if ``None``)."""
        wanted = None if states is None else set(states)
        return [row for row in self if wanted is None or row["state"] in wanted]

    def counts(self) -> dict[str, int]:
        """Number of rows in each state (every state listed, zeros included)."""
        counts = dict.fromkeys(STATES, 0)
        for row in self._rows.values():
            counts[row["state"]] = counts.get(row["state"], 0) + 1
        return counts

    def files(self) -> list[Path]:
        """Absolute paths of the verified files, in time order."""
        base = self.path.parent
        return [base / row["file"] for row in self.rows(["verified"])]
