"""A local archive source: HMI FITS files a user already has, no network.

Files are recognised by their image header (``DRMS_ID``, or the JSOC file
name, or ``CONTENT`` and ``CADENCE``) and ``T_REC``; the acquisition then
builds the same manifest and file layout as for a JSOC download, without
copying a byte: each verified file gets, under the name derived from its
record (:func:`enhance_hmi.acquire.download.local_name`), a symbolic link to the
archive's file, and the manifest records its size and sha256. Two archive
files holding one ``T_REC`` with different contents are an error, whatever
their folders and names. The bundled sample (``enhance_hmi/data/sample``, see
:func:`sample_dir`) is such an archive.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import logging
import os
from importlib import resources
from pathlib import Path

from enhance_hmi.acquire.quality import parse_quality
from enhance_hmi.acquire.series import HmiSeries
from enhance_hmi.acquire.verify import VerificationError, read_image_header, verify_fits
from enhance_hmi.atomic import NO_ROOM_ERRNOS, check_writable_dir, no_room_error, unique_part_path
from enhance_hmi.errors import InputError, OutputError
from enhance_hmi.provenance import sha256_file
from enhance_hmi.time import format_t_rec, parse_t_rec

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
    return Path(str(resources.files("enhance_hmi") / "data" / "sample"))


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
    are passed over (logged at debug level). A file reached twice (through a
    symbolic link) counts once, and so does a byte-identical copy of a file
    already found.

    Raises
    ------
    InputError
        If ``directory`` is not a directory, or two files with different
        contents hold the same ``T_REC`` (naming both: remove one).
    """
    root = Path(directory)
    if not root.is_dir():
        raise InputError(f"local archive {root} is not a directory")
    found: dict[dt.datetime, LocalRecord] = {}
    seen: set[Path] = set()
    for path in sorted(p for p in root.rglob("*") if p.suffix.lower() in _SUFFIXES):
        real = path.resolve()
        if real in seen:
            continue
        seen.add(real)
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
            first = found[t_rec].path
            if sha256_file(first) != sha256_file(path):
                raise InputError(
                    f"local archive {root}: {first.relative_to(root)} and "
                    f"{path.relative_to(root)} both hold T_REC {format_t_rec(t_rec)} with "
                    "different contents; remove or move away the wrong one"
                )
            log.debug("local archive: %s is a copy of %s", path, first)
            continue
        quality = parse_quality(header.get("QUALITY"))
        camera = header.get("CAMERA")
        record = f"{series.name}[{format_t_rec(t_rec)}]" + (
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
    """Verify ``record`` in place and make ``dest`` a symbolic link to it (no copy).

    The link points at the archive file's absolute path and replaces
    whatever ``dest`` was atomically (a link is made under a unique
    temporary name, then renamed). Nothing is written into the archive; a
    ``dest`` that already is the archive file (or a link to it) is kept.

    Returns
    -------
    (size, sha256)
        Of the archive file.

    Raises
    ------
    VerificationError
        If the archive file is not the complete record (``dest`` untouched).
    OutputError
        If the link cannot be made in ``dest``'s directory.
    """
    source = record.path.resolve()
    verify_fits(source, series=series, t_rec=record.t_rec)
    size, sha256 = source.stat().st_size, sha256_file(source)
    if dest.resolve() == source:
        return size, sha256  # already a link to it, or the archive file itself
    check_writable_dir(dest.parent)
    tmp = unique_part_path(dest)
    try:
        os.symlink(source, tmp)
        os.replace(tmp, dest)
    except OSError as exc:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        if exc.errno in NO_ROOM_ERRNOS:
            raise no_room_error(dest, exc) from exc
        raise OutputError(f"cannot link {dest} to {source}: {exc.strerror or exc}") from exc
    return size, sha256
