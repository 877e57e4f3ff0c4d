"""A local archive source: HMI FITS files a user already has, no network.

Files are recognised by their image header (``DRMS_ID``, or the JSOC file
name, or ``CONTENT`` and ``CADENCE``) and ``T_REC``; the acquisition then
builds the same manifest and file layout as for a JSOC download. The bundled
sample (``enhance/data/sample``, see :func:`sample_dir`) is such an archive.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import os
import shutil
from importlib import resources
from pathlib import Path

from enhance.acquire.quality import parse_quality
from enhance.acquire.series import HmiSeries
from enhance.acquire.timespec import parse_t_rec
from enhance.acquire.verify import VerificationError, read_image_header, verify_fits
from enhance.atomic import atomic_path
from enhance.errors import InputError
from enhance.provenance import sha256_file

__all__ = ["LocalRecord", "scan_archive", "import_file", "sample_dir"]

log = logging.getLogger(__name__)

_SUFFIXES = (".fits", ".fts", ".fit")


@dataclasses.dataclass
class LocalRecord:
    """One FITS file of the archive holding a record of the wanted series."""

    path: Path
    t_rec: dt.datetime
    record: str
    quality: int | None
    keywords: dict[str, str]


def sample_dir() -> Path:
    """The small real HMI sample shipped with the package (see its README.md)."""
    return Path(str(resources.files("enhance") / "data" / "sample"))


def _belongs(header: object, path: Path, series: HmiSeries) -> bool:
    drms_id = str(header.get("DRMS_ID", "")).strip()  # type: ignore[attr-defined]
    if drms_id:
        return drms_id.split(":", 1)[0].lower() == series.name.lower()
    if path.name.lower().startswith(series.name.lower() + "."):
        return True
    content = str(header.get("CONTENT", "")).strip().upper()  # type: ignore[attr-defined]
    cadence = header.get("CADENCE", header.get("TRECSTEP"))  # type: ignore[attr-defined]
    try:
        same_cadence = abs(float(cadence) - series.step.total_seconds()) < 1e-6
    except (TypeError, ValueError):
        return False
    return content == series.content.upper() and same_cadence


def scan_archive(
    directory: str | os.PathLike[str], series: HmiSeries, keywords: tuple[str, ...]
) -> dict[dt.datetime, LocalRecord]:
    """Every file under ``directory`` holding a record of ``series``, keyed by ``T_REC``.

    Files that are not FITS, belong to another series or carry no ``T_REC``
    are passed over (logged at debug level).

    Raises
    ------
    InputError
        If ``directory`` is not a directory.
    """
    root = Path(directory)
    if not root.is_dir():
        raise InputError(f"local archive {root} is not a directory")
    found: dict[dt.datetime, LocalRecord] = {}
    for path in sorted(p for p in root.rglob("*") if p.suffix.lower() in _SUFFIXES):
        try:
            header = read_image_header(path)
        except VerificationError as exc:
            log.debug("local archive: skipping %s (%s)", path.name, exc)
            continue
        t_rec = parse_t_rec(str(header.get("T_REC", "")))
        if t_rec is None or not _belongs(header, path, series):
            log.debug("local archive: %s is not a %s record", path.name, series.name)
            continue
        if t_rec in found:
            log.warning(
                "local archive: %s and %s both hold T_REC %s; keeping the first",
                found[t_rec].path.name,
                path.name,
                header.get("T_REC"),
            )
            continue
        quality = parse_quality(header.get("QUALITY"))
        camera = header.get("CAMERA")
        record = f"{series.name}[{t_rec:%Y.%m.%d_%H:%M:%S}_TAI]" + (
            f"[{camera}]" if camera is not None else ""
        )
        found[t_rec] = LocalRecord(
            path=path,
            t_rec=t_rec,
            record=record,
            quality=quality,
            keywords={k: str(header.get(k, "")) for k in keywords},
        )
    return found


def import_file(record: LocalRecord, dest: Path, series: HmiSeries) -> tuple[int, str]:
    """Verify ``record`` and place it at ``dest`` (atomic copy unless it is already there).

    Returns
    -------
    (size, sha256)
    """
    if record.path.resolve() == dest.resolve():
        verify_fits(dest, series=series, t_rec=record.t_rec)
    else:
        with atomic_path(dest) as tmp:
            shutil.copyfile(record.path, tmp)
            verify_fits(tmp, series=series, t_rec=record.t_rec)
    return dest.stat().st_size, sha256_file(dest)
