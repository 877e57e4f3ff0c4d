"""Provenance records written into every output (FITS HISTORY, HDF5 attributes)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from enhance_hmi import __version__
from enhance_hmi.time import utc_timestamp

__all__ = ["sha256_file", "provenance_record", "REFERENCE"]

#: The paper every product derives from.
REFERENCE = "Diaz Baso & Asensio Ramos 2018, A&A 614, A5 (arXiv:1706.02933)"


def sha256_file(path: str | os.PathLike[str], *, chunk_size: int = 1 << 20) -> str:
    """Return the hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk_size):
            digest.update(block)
    return digest.hexdigest()


def provenance_record(**extra: object) -> dict[str, str]:
    """Return the common provenance keys plus ``extra`` (stringified).

    Keys: ``software`` (``enhance <version>``), ``date`` (UTC ISO 8601),
    ``reference`` (the method paper); ``extra`` adds e.g. ``weights_sha256``,
    ``psf``, ``input_file``.
    """
    record = {
        "software": f"enhance {__version__}",
        "date": utc_timestamp(),
        "reference": REFERENCE,
    }
    for key, value in extra.items():
        if value is None:
            continue
        record[key] = _file_name(value) if key == "input_file" else str(value)
    return record


def _file_name(value: object) -> str:
    """The file name of ``value``, a path (``input_file`` records no directories)."""
    if not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"input_file must be a path (str or os.PathLike); got {value!r}")
    return Path(value).name
