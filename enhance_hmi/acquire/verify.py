"""Check that a FITS file is the complete HMI record the manifest expects.

A file passes when its size is the announced one (and a whole number of
2880-byte FITS blocks), its headers claim no more than ``enhance`` reads
(:mod:`enhance_hmi.io.header_limits`, checked before any data is read), it
opens, every HDU that carries a ``DATASUM`` keyword has data summing to it
[1]_ (a flipped bit in compressed data can otherwise decompress silently to
wrong pixels), every tile of a compressed image without ``DATASUM`` decodes
to what it claims (:mod:`enhance_hmi.io.tile_integrity`), its image decompresses to the
shape its header states, its ``T_REC`` is the expected slot and it belongs to
the expected series (``DRMS_ID``, or ``CONTENT`` and ``CADENCE`` when there is
no ``DRMS_ID``). ``CHECKSUM`` (header and data) is not checked: the header
keywords that matter are checked one by one.

References
----------
.. [1] Pence, W. D. et al. (2010), "Definition of the Flexible Image Transport
   System (FITS), version 3.0", A&A 524, A42: 2880-byte blocks; appendix J,
   the ``DATASUM`` keyword (32-bit ones' complement sum of the data unit).
.. [2] JSOC export format: compressed image in HDU 1, full keywords
   (jsoc.stanford.edu/jsocwiki/AjaxJsocConnect).
"""

from __future__ import annotations

import datetime as dt
import os
import re
import warnings
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.io.fits.verify import VerifyWarning

from enhance_hmi.acquire.series import HmiSeries
from enhance_hmi.errors import InputError
from enhance_hmi.io.header_limits import check_header_limits
from enhance_hmi.io.tile_integrity import check_tiles
from enhance_hmi.time import format_t_rec, parse_t_rec

__all__ = [
    "VerificationError",
    "verify_fits",
    "image_hdu",
    "read_image_header",
    "ones_complement_sum",
    "FITS_BLOCK",
]

#: FITS files are sequences of 2880-byte blocks [1]_.
FITS_BLOCK = 2880
#: Temporary-name endings of :mod:`enhance_hmi.atomic` (``.part``, ``.<pid>-<hex>.part``).
_PART_SUFFIX = re.compile(r"(\.\d+-[0-9a-f]+)?\.part$")


class VerificationError(InputError):
    """A downloaded or local file is not the complete record it should be."""


def image_hdu(hdul: fits.HDUList) -> fits.hdu.base.ExtensionHDU | fits.PrimaryHDU:
    """The HDU holding the image: the first with ``NAXIS`` > 0 (HDU 1 for JSOC files)."""
    for hdu in hdul:
        if isinstance(hdu, fits.CompImageHDU) or (
            getattr(hdu, "is_image", False) and hdu.header.get("NAXIS", 0) > 0
        ):
            return hdu
    raise VerificationError(f"{hdul.filename()} holds no image HDU")


def read_image_header(path: str | os.PathLike[str]) -> fits.Header:
    """The header of the image HDU of ``path`` (no data read).

    Raises
    ------
    VerificationError
        If the file is not FITS or holds no image.
    """
    try:
        with warnings.catch_warnings():
            # real HMI headers carry cards astropy flags but reads fine (e.g. BLANK
            # on float data); they do not make the file unusable
            warnings.simplefilter("ignore", VerifyWarning)
            with fits.open(path, memmap=False) as hdul:
                return image_hdu(hdul).header.copy()
    except (OSError, ValueError, TypeError, IndexError, KeyError) as exc:
        raise VerificationError(f"{Path(path).name} is not a readable FITS file: {exc}") from exc


def ones_complement_sum(data: bytes) -> int:
    """The 32-bit ones' complement sum of ``data`` read as big-endian words (FITS ``DATASUM``)."""
    pad = (-len(data)) % 4
    words = np.frombuffer(bytes(data) + b"\0" * pad, dtype=">u4")
    total = int(words.sum(dtype=np.uint64))  # exact below 2**32 words (16 GiB)
    while total >> 32:
        total = (total & 0xFFFFFFFF) + (total >> 32)
    return total


def _check_datasums(path: Path, hdul: fits.HDUList, name: str) -> None:
    """Raise :class:`VerificationError` if a data unit does not sum to its ``DATASUM``."""
    with open(path, "rb") as fh:
        for index in range(len(hdul)):
            info = hdul.fileinfo(index)
            if info is None:
                continue
            fh.seek(info["hdrLoc"])
            header = fh.read(info["datLoc"] - info["hdrLoc"])
            card = next(
                (
                    header[i : i + 80]
                    for i in range(0, len(header), 80)
                    if header[i : i + 8] == b"DATASUM "
                ),
                None,
            )
            if card is None:
                continue
            try:
                expected = int(str(fits.Card.fromstring(card.decode("ascii")).value).strip())
            except (ValueError, UnicodeDecodeError) as exc:
                raise VerificationError(f"{name}: HDU {index} has a malformed DATASUM") from exc
            found = ones_complement_sum(fh.read(info["datSpan"]))
            if found != expected:
                raise VerificationError(
                    f"{name}: HDU {index} data sum {found} differs from its DATASUM "
                    f"{expected}: the file is corrupt"
                )


def _series_matches(header: fits.Header, series: HmiSeries) -> tuple[bool, str]:
    drms_id = str(header.get("DRMS_ID", "")).strip()
    if drms_id:
        found = drms_id.split(":", 1)[0]
        return found.lower() == series.name.lower(), f"DRMS_ID {drms_id!r}"
    content = str(header.get("CONTENT", "")).strip().upper()
    cadence = header.get("CADENCE", header.get("TRECSTEP"))
    ok = content == series.content.upper()
    if cadence is not None:
        try:
            ok = ok and abs(float(cadence) - series.step.total_seconds()) < 1e-6
        except (TypeError, ValueError):
            ok = False
    return ok, f"CONTENT {content!r}, CADENCE {cadence!r}"


def verify_fits(
    path: str | os.PathLike[str],
    *,
    series: HmiSeries,
    t_rec: dt.datetime,
    expected_size: int | None = None,
) -> fits.Header:
    """Verify ``path`` and return its image header.

    Parameters
    ----------
    path : path-like
        The file (typically ``name.part`` before its atomic rename).
    series : HmiSeries
        The series the record must belong to.
    t_rec : datetime.datetime
        The ``T_REC`` slot (TAI) it must hold.
    expected_size : int, optional
        Size in bytes announced by the server (``Content-Length``).

    Raises
    ------
    VerificationError
        Naming the file and what is wrong with it.
    """
    path = Path(path)
    name = _PART_SUFFIX.sub("", path.name)
    size = path.stat().st_size
    if expected_size is not None and size != expected_size:
        raise VerificationError(f"{name}: {size} bytes received, {expected_size} announced")
    if size == 0 or size % FITS_BLOCK:
        raise VerificationError(f"{name}: {size} bytes is not a whole number of FITS blocks")
    try:
        check_header_limits(path, name=name)  # before astropy reads or allocates any data
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", VerifyWarning)  # see read_image_header
            with fits.open(path, memmap=False) as hdul:
                hdu = image_hdu(hdul)
                _check_datasums(path, hdul, name)
                check_tiles(path, name=name)  # compressed HDUs without DATASUM
                header = hdu.header.copy()
                data = hdu.data
                shape = tuple(header.get(f"NAXIS{i}", 0) for i in (2, 1))
                if data is None or np.shape(data) != shape:
                    raise VerificationError(
                        f"{name}: image shape {np.shape(data)} differs from header {shape}"
                    )
    except VerificationError:
        raise
    except InputError as exc:  # header limits, damaged tiles, not FITS: it names the file
        raise VerificationError(str(exc)) from exc
    except Exception as exc:  # astropy raises many types on damaged files
        raise VerificationError(f"{name}: not a readable FITS file ({exc})") from exc
    found = parse_t_rec(str(header.get("T_REC", "")))
    if found is None or abs((found - t_rec).total_seconds()) > 0.5:
        raise VerificationError(
            f"{name}: T_REC {header.get('T_REC')!r} does not match the expected "
            f"{format_t_rec(t_rec)}"
        )
    ok, what = _series_matches(header, series)
    if not ok:
        raise VerificationError(f"{name}: {what} does not belong to series {series.name}")
    return header
