"""The per-frame manifest: one row per expected or found ``T_REC`` slot.

The manifest is the acquisition's memory. Its rows live in a SQLite file,
``<series>.manifest.sqlite`` (each save is one transaction, so a crash never
leaves half a manifest), of which ``<series>.manifest.csv`` is the readable
copy, every value as text, rewritten (atomically, streamed) at the end of
each run. A restarted run reads it to resume export requests, skip verified
files and backfill slots that were missing.

Memory follows the work, not the archive: only the rows read or changed since
the last :meth:`Manifest.release` are held (as live dicts); iteration,
counts and the CSV copy stream from the file. A manifest from before the
SQLite file (the CSV alone) is imported on first load.

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
    a record with JSOC ``QUALITY`` bits set that the policy keeps, waiting to
    be exported. The stored name predates the project's vocabulary and stays,
    so manifests on disk read as before; reports show the state as "queried
    (QUALITY bits set)" (docs/workflow.md, "Words"). It has nothing to do
    with enhance's own verdict on an output ("out of tolerance");
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

import contextlib
import csv
import logging
import os
import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path

import pandas as pd

from enhance_hmi.atomic import atomic_path
from enhance_hmi.errors import InputError, OutputError
from enhance_hmi.time import utc_timestamp

__all__ = [
    "Manifest",
    "STATES",
    "COLUMNS",
    "KEYWORDS",
    "NEEDS_EXPORT",
    "manifest_path",
    "read_manifest",
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


#: Columns every manifest CSV must have.
_REQUIRED = ("t_rec", "state", "series")


def read_manifest(path: str | os.PathLike[str]) -> Iterator[dict[str, str]]:
    """Stream the rows of a manifest's CSV copy (``<series>.manifest.csv``), in file order.

    The one reader of the file: :meth:`Manifest.load` imports a CSV-only
    manifest with it, and reports and plans read a finished acquisition
    with it. Every row has every column of :data:`COLUMNS`, as text
    (``""`` where the file has none); only one row is held at a time.

    Raises
    ------
    InputError
        If the file cannot be read, is not CSV, or lacks the ``t_rec``,
        ``state`` or ``series`` column (raised on the first row read).
    """
    path = Path(path)
    try:
        with open(path, newline="") as fh:
            reader = csv.DictReader(fh)
            missing = set(_REQUIRED) - set(reader.fieldnames or ())
            if missing:
                raise InputError(
                    f"{path} is not an enhance manifest (no "
                    f"{', '.join(sorted(missing))} column); move it away to start afresh"
                )
            for record in reader:
                yield {col: str(record.get(col) or "") for col in COLUMNS}
    except (ValueError, OSError, csv.Error) as exc:
        if isinstance(exc, InputError):
            raise
        raise InputError(
            f"cannot read manifest {path}: {exc}; move it away to start afresh"
        ) from exc


class Manifest:
    """Rows keyed by ``t_rec`` (``YYYY.MM.DD_hh:mm:ss_TAI``), stored in SQLite.

    Parameters
    ----------
    path : path-like
        The CSV copy (``<series>.manifest.csv``; need not exist yet). The
        rows live beside it in ``<series>.manifest.sqlite``; rows already
        there belong to the manifest.
    series : str
        The JSOC series every row belongs to.
    """

    def __init__(self, path: str | os.PathLike[str], series: str) -> None:
        self.path = Path(path)
        self.db_path = self.path.with_suffix(".sqlite")
        self.series = series
        self._live: dict[str, dict[str, str]] = {}
        self._dirty: set[str] = set()
        self._window: tuple[str, str] | None = None  # every stored row in it is live
        self._db: sqlite3.Connection | None = None
        #: The :class:`enhance_hmi.acquire.gaps.GapReport` of the run that returned it.
        self.report: object | None = None
        #: The :class:`enhance_hmi.acquire.status.AcquisitionStatus` of that run.
        self.status: object | None = None

    # ------------------------------------------------------------ storage
    @property
    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            try:
                self._db = sqlite3.connect(self.db_path, timeout=60)
                columns = ", ".join(f"\"{c}\" TEXT NOT NULL DEFAULT ''" for c in COLUMNS[1:])
                self._db.execute(
                    f"CREATE TABLE IF NOT EXISTS rows (t_rec TEXT PRIMARY KEY, {columns}) "
                    "WITHOUT ROWID"
                )
                self._db.commit()
            except sqlite3.Error as exc:
                raise OutputError(f"cannot open manifest store {self.db_path}: {exc}") from exc
        return self._db

    def close(self) -> None:
        """Write pending changes and close the SQLite file."""
        if self._db is not None:
            self._flush()
            self._db.close()
            self._db = None

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            if self._db is not None:
                self._db.close()

    def _flush(self) -> None:
        if not self._dirty:
            return
        placeholders = ", ".join("?" for _ in COLUMNS)
        names = ", ".join(f'"{c}"' for c in COLUMNS)
        rows = [tuple(self._live[key][c] for c in COLUMNS) for key in sorted(self._dirty)]
        try:
            self._conn.executemany(
                f"INSERT OR REPLACE INTO rows ({names}) VALUES ({placeholders})", rows
            )
            self._conn.commit()
        except sqlite3.Error as exc:
            raise OutputError(f"cannot write manifest store {self.db_path}: {exc}") from exc
        self._dirty.clear()

    def _select(self, where: str = "", args: tuple = ()) -> Iterator[dict[str, str]]:
        """Stored rows in ``t_rec`` order (pending changes written first)."""
        self._flush()
        names = ", ".join(f'"{c}"' for c in COLUMNS)
        cursor = self._conn.execute(f"SELECT {names} FROM rows {where} ORDER BY t_rec", args)
        for values in cursor:
            key = values[0]
            yield self._live.get(key) or dict(zip(COLUMNS, values, strict=True))

    # ------------------------------------------------------------------ I/O
    @classmethod
    def load(cls, path: str | os.PathLike[str], series: str) -> Manifest:
        """Open the manifest at ``path``, importing a CSV-only manifest once.

        Raises
        ------
        InputError
            If the file is not a manifest of ``series``.
        """
        manifest = cls(path, series)
        if not manifest.db_path.exists() and manifest.path.exists():
            manifest._import_csv()
        others = [
            name
            for (name,) in manifest._conn.execute("SELECT DISTINCT series FROM rows")
            if name not in (series, "")
        ]
        if others:
            manifest.close()
            raise InputError(
                f"{manifest.path} holds series {', '.join(sorted(others))}, not {series}"
            )
        return manifest

    def _import_csv(self) -> None:
        try:
            for row in read_manifest(self.path):
                self._live[row["t_rec"]] = row
                self._dirty.add(row["t_rec"])
                if len(self._dirty) >= 10000:
                    self.release()
        except InputError:
            with contextlib.suppress(OSError):
                self.close()
                self.db_path.unlink()
            raise
        self.release()

    def save(self, *, csv_copy: bool = True) -> Path:
        """Commit every change; with ``csv_copy``, also rewrite the CSV copy (streamed)."""
        self._flush()
        if csv_copy:
            with atomic_path(self.path) as tmp, open(tmp, "w", newline="") as fh:
                writer = csv.writer(fh, lineterminator="\n")
                writer.writerow(COLUMNS)
                for row in self._select():
                    writer.writerow([row[c] for c in COLUMNS])
        return self.path

    def release(self) -> None:
        """Commit changes and forget the rows held in memory (they stay on disk)."""
        self._flush()
        self._live.clear()
        self._window = None

    def hold(self, first: str, last: str) -> None:
        """Read the rows with ``first <= t_rec <= last`` into memory in one query.

        Until :meth:`release`, :meth:`get` answers for that range without
        touching the file (a slot without a row is known to have none).
        """
        for row in self.between(first, last):
            self._live.setdefault(row["t_rec"], row)
        self._window = (first, last)

    # ----------------------------------------------------------------- rows
    @property
    def frame(self) -> pd.DataFrame:
        """The rows as a DataFrame of strings, one column per :data:`COLUMNS`."""
        return pd.DataFrame(list(self._select()), columns=list(COLUMNS), dtype=str)

    def __len__(self) -> int:
        self._flush()
        return int(self._conn.execute("SELECT COUNT(*) FROM rows").fetchone()[0])

    def __contains__(self, t_rec: object) -> bool:
        return self.get(str(t_rec)) is not None

    def __iter__(self) -> Iterator[dict[str, str]]:
        return self._select()

    def between(self, first: str, last: str) -> Iterator[dict[str, str]]:
        """Rows with ``first <= t_rec <= last``, streamed in time order."""
        return self._select("WHERE t_rec BETWEEN ? AND ?", (first, last))

    def get(self, t_rec: str) -> dict[str, str] | None:
        """The row of ``t_rec``.

        A live dict until :meth:`release`; change it with :meth:`update`.
        """
        row = self._live.get(t_rec)
        if row is None:
            if self._window is not None and self._window[0] <= t_rec <= self._window[1]:
                return None
            names = ", ".join(f'"{c}"' for c in COLUMNS)
            values = self._conn.execute(
                f"SELECT {names} FROM rows WHERE t_rec = ?", (t_rec,)
            ).fetchone()
            if values is None:
                return None
            row = self._live[t_rec] = dict(zip(COLUMNS, values, strict=True))
        return row

    def update(self, t_rec: str, **values: object) -> dict[str, str]:
        """Create or update the row of ``t_rec``; values are stored as text."""
        row = self.get(t_rec)
        if row is None:
            row = dict.fromkeys(COLUMNS, "")
            row["t_rec"] = t_rec
            row["series"] = self.series
        for key, value in values.items():
            if key not in row:
                raise KeyError(f"unknown manifest column {key!r}")
            if key == "state" and value not in STATES:
                raise ValueError(f"unknown manifest state {value!r}")
            row[key] = "" if value is None else str(value)
        row["updated"] = utc_timestamp()
        self._live[t_rec] = row
        self._dirty.add(t_rec)
        return row

    def rows(self, states: Iterable[str] | None = None) -> list[dict[str, str]]:
        """Rows (sorted by ``t_rec``, live) whose state is in ``states`` (all if ``None``)."""
        if states is None:
            selected = self._select()
        else:
            wanted = tuple(states)
            marks = ", ".join("?" for _ in wanted)
            selected = self._select(f"WHERE state IN ({marks})", wanted)
        out = []
        for row in selected:
            out.append(self._live.setdefault(row["t_rec"], row))
        return out

    def counts(self) -> dict[str, int]:
        """Number of rows in each state (every state listed, zeros included)."""
        self._flush()
        counts = dict.fromkeys(STATES, 0)
        for state, number in self._conn.execute("SELECT state, COUNT(*) FROM rows GROUP BY state"):
            counts[state] = counts.get(state, 0) + int(number)
        return counts

    def files(self) -> list[Path]:
        """Absolute paths of the verified files, in time order."""
        base = self.path.parent
        return [base / row["file"] for row in self._select("WHERE state = ?", ("verified",))]
