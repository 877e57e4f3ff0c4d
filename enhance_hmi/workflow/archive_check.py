"""Re-check a whole workflow output tree by content: :func:`check_archive` (``enhance verify``).

Three hand-overs are checked against the acquisition manifest, the one
record of which bytes each frame was made from:

raw files
    every verified row's file is in place with the size and sha256 the
    manifest recorded;
enhanced frames
    every frame a batch marker lists as enhanced or kept exists, its FITS
    checksums hold (``DATASUM``/``CHECKSUM``, written with every frame), and
    its ``ENHINSHA`` (the sha256 of the input it was made from) is the
    manifest's;
cubes
    every frame of every time cube records the manifest's input sha256.

Nothing is changed: the report says what drifted, and the next workflow run
repairs what it can (a raw file that differs is fetched again before it is
enhanced; a frame made from other bytes is enhanced again).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path

from astropy.io import fits

from enhance_hmi.acquire import manifest_path, read_manifest
from enhance_hmi.cube import TimeCube
from enhance_hmi.errors import InputError
from enhance_hmi.provenance import sha256_file

__all__ = ["ArchiveReport", "Drift", "check_archive"]

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Drift:
    """One thing that is not what the manifest says it should be."""

    kind: str  # "raw", "enhanced" or "cube"
    series: str
    t_rec: str
    path: str
    problem: str

    def line(self) -> str:
        """The drift in one line: kind, series, slot, problem and path."""
        return f"{self.kind} {self.series} {self.t_rec}: {self.problem} ({self.path})"


@dataclasses.dataclass
class ArchiveReport:
    """What :func:`check_archive` looked at and what drifted."""

    checked: dict[str, int] = dataclasses.field(
        default_factory=lambda: {"raw": 0, "enhanced": 0, "cube": 0}
    )
    drifts: list[Drift] = dataclasses.field(default_factory=list)

    @property
    def clean(self) -> bool:
        """Whether nothing drifted."""
        return not self.drifts

    def summary_line(self) -> str:
        """What was checked and what drifted, in one line."""
        counts = ", ".join(f"{n} {kind}" for kind, n in self.checked.items())
        verdict = "all match" if self.clean else f"{len(self.drifts)} drifted"
        return f"checked {counts}: {verdict}"


def _series_dirs(output: Path, series: Iterable[str] | None) -> list[str]:
    names = sorted(p.name for p in (output / "raw").glob("hmi.*") if p.is_dir())
    if series is None:
        return names
    wanted = list(series)
    unknown = [name for name in wanted if name not in names]
    if unknown:
        raise InputError(
            f"{output} holds no raw archive of {', '.join(unknown)} (it has "
            f"{', '.join(names) or 'none'})"
        )
    return wanted


def _enhanced_frame_problem(path: Path, wanted: str) -> str:
    """The empty string when an enhanced frame's checksums hold and it was made from ``wanted``.

    One open: the data are read (astropy verifies ``DATASUM``/``CHECKSUM``
    as it reads them) and ``ENHINSHA`` is taken from the same headers.
    """
    made_from = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with fits.open(path, checksum=True) as hdus:
                for hdu in hdus:
                    _ = hdu.data  # a checksum is verified when the data are read
                    if made_from is None and "ENHINSHA" in hdu.header:
                        made_from = str(hdu.header["ENHINSHA"])
        except (OSError, ValueError) as exc:
            return f"unreadable: {exc}"
    bad = [w for w in caught if "checksum" in str(w.message).lower()]
    if bad:
        return f"FITS checksum fails: {bad[0].message}"
    if made_from is None:
        return "no ENHINSHA card: not an enhanced frame, or its header is damaged"
    if made_from != wanted:
        return (
            f"made from input sha256 {made_from[:12]}..., the manifest holds "
            f"{wanted[:12] or 'nothing'}..."
        )
    return ""


def _raw(directory: Path, series: str, rows: list[dict[str, str]]) -> Iterator[Drift | None]:
    for row in rows:
        path = directory / row["file"]
        if not path.is_file():
            yield Drift("raw", series, row["t_rec"], str(path), "file is missing")
            continue
        try:
            size, sha = path.stat().st_size, sha256_file(path)
        except OSError as exc:
            yield Drift("raw", series, row["t_rec"], str(path), f"unreadable: {exc.strerror}")
            continue
        if str(size) != row["size"]:
            yield Drift(
                "raw", series, row["t_rec"], str(path), f"size {size}, manifest {row['size']}"
            )
        elif sha != row["sha256"]:
            yield Drift(
                "raw",
                series,
                row["t_rec"],
                str(path),
                f"sha256 {sha[:12]}..., manifest {row['sha256'][:12]}... (same size: changed "
                "after acquisition)",
            )
        else:
            yield None


def _enhanced(output: Path, series: str, expected: dict[str, str]) -> Iterator[Drift | None]:
    for marker in sorted((output / "enhanced" / series / "batches").glob("*.json")):
        for item in json.loads(marker.read_text())["frames"]:
            if item.get("status", "enhanced") not in ("enhanced", "kept"):
                continue
            path, t_rec = _frame_path(output, series, item["output"]), item["t_rec"]
            if not path.is_file():
                yield Drift("enhanced", series, t_rec, str(path), "enhanced frame is missing")
                continue
            problem = _enhanced_frame_problem(path, expected.get(t_rec, ""))
            yield Drift("enhanced", series, t_rec, str(path), problem) if problem else None


def _frame_path(output: Path, series: str, recorded: str) -> Path:
    """A marker's output path (relative to the run's working directory) under ``output``."""
    path = Path(recorded)
    if path.is_absolute():
        return path
    parts = path.parts
    for i in range(len(parts) - 1):
        if parts[i : i + 2] == ("enhanced", series):
            return output.joinpath("enhanced", series, *parts[i + 2 :])
    return output / path


def _cubes(output: Path, series: str, expected: dict[str, str]) -> Iterator[Drift | None]:
    for path in sorted((output / "cubes" / series).glob("*.h5")):
        for row in TimeCube(path).table():
            t_rec, sha = str(row["t_rec"]), str(row["input_sha256"])
            wanted = expected.get(t_rec, "")
            if sha != wanted:
                yield Drift(
                    "cube",
                    series,
                    t_rec,
                    str(path),
                    f"frame made from input sha256 {sha[:12]}..., the manifest holds "
                    f"{wanted[:12] or 'nothing'}...",
                )
            else:
                yield None


def check_archive(
    output: str | os.PathLike[str],
    *,
    series: Iterable[str] | None = None,
    progress: bool = False,
) -> ArchiveReport:
    """Re-check raw files, enhanced frames and cubes of a workflow output tree.

    Parameters
    ----------
    output : path-like
        The workflow's ``output`` directory (holding ``raw/``, ``enhanced/``
        and ``cubes/``).
    series : iterable of str, optional
        Only these series (default: every series with a raw archive).
    progress : bool
        A progress bar over the raw files (each is hashed in full).

    Returns
    -------
    ArchiveReport

    Raises
    ------
    InputError
        ``output`` holds no raw archive (of a requested series).
    """
    root = Path(output)
    names = _series_dirs(root, series)
    if not names:
        raise InputError(f"{root} holds no raw archive (no raw/hmi.* folder): is it an output?")
    report = ArchiveReport()
    for name in names:
        directory = root / "raw" / name
        rows = [
            row
            for row in read_manifest(manifest_path(directory, name))
            if row["state"] == "verified" and row["file"]
        ]
        expected = {row["t_rec"]: row["sha256"] for row in rows}
        raw = _raw(directory, name, rows)
        if progress:
            from tqdm.auto import tqdm

            raw = tqdm(raw, total=len(rows), desc=f"{name} raw", unit="file")
        for kind, results in (
            ("raw", raw),
            ("enhanced", _enhanced(root, name, expected)),
            ("cube", _cubes(root, name, expected)),
        ):
            for drift in results:
                report.checked[kind] += 1
                if drift is not None:
                    report.drifts.append(drift)
                    log.warning("%s", drift.line())
    return report
