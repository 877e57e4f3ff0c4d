"""Checking the tiles of a tile-compressed image that carries no ``DATASUM``.

JSOC writes ``DATASUM`` (the ones' complement sum of the data unit [1]_) into
every file it exports, and :mod:`enhance_hmi.acquire.verify` checks it. A file
without it (a local archive, a crop written by astropy, a mirror that
rewrote the header) has nothing to verify its data against, and a flipped
bit in Rice-compressed data mostly decompresses without complaint to wrong
pixels. :func:`check_tiles` decodes every tile of such an image and refuses
the file (:class:`~enhance_hmi.errors.CorruptDataError`) when a tile

* does not decode (the stream ends early, a gzip CRC-32 fails), or decodes
  to another number of bytes than its pixels take;
* (Rice) is not the stream the encoder writes for the pixels it decodes to:
  the tile is decoded and encoded again with its ``BLOCKSIZE`` and
  ``BYTEPIX`` and the bytes must be identical. Real JSOC files re-encode
  byte for byte (every tile of the three 4096 x 4096 hmi.M_720s full disks
  in ``../shared/data``), so this refuses no clean file; it catches a flip
  that desynchronises the stream;
* (Rice, integer pixels) holds a pixel other than ``BLANK`` whose value
  (``BSCALE``, ``BZERO`` applied) reaches :data:`MAX_HMI_MAGNITUDE`.

Why the last rule: Rice stores the first pixel of a tile and then
differences [2]_, so a flipped bit changes one difference and shifts every
later pixel of the tile by the same amount. Most flips (about 89 % on a
real full disk) change only the low bits of a difference, which leaves a
stream that is itself a valid Rice encoding of the shifted pixels: no check
of the stream alone can see them. But every row of an HMI full disk ends in
off-disk ``BLANK`` pixels (-2**31), which the shift turns into values near
-2**31 (-2e8 G at ``BSCALE`` 0.1); and a flip in the first pixel's stored
bits shifts the whole tile by up to 2**31. On the real full disks the three
rules together refuse more than 99.8 % of single flipped bits (the rest
shift a few pixels by a few gauss, below HMI's noise). On a crop without
off-disk pixels most flips stay undetectable this way (shifts of ~1 G
median); only ``DATASUM`` protects those.

Gzip tiles carry a CRC-32 each, which decoding checks; the decoder is
stopped one byte past the tile's size, so a tile that inflates further (a
decompression bomb) costs no memory.

References
----------
.. [1] IAU FITS Working Group (2018), "Definition of the Flexible Image
   Transport System (FITS), version 4.0": ``DATASUM`` (Sect. 4.4.2.7 and
   appendix J); tiled image compression, ``ZBLANK``, ``ZSCALE``, ``ZZERO``
   (Sect. 10).
.. [2] Rice, R. F., Yeh, P.-S. & Miller, W. H. (1993), "Algorithms for a very
   high speed universal noiseless coding module", AIAA-93-4541-CP: first
   value, then differences coded in blocks with a per-block split.
.. [3] Deutsch, P. (1996), "GZIP file format specification version 4.3",
   RFC 1952: the CRC-32 and size ending each gzip member.
"""

from __future__ import annotations

import logging
import os
import warnings
import zlib
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.io.fits.hdu.compressed._codecs import Rice1

from enhance_hmi.errors import CorruptDataError, InputError
from enhance_hmi.io.header_limits import (
    check_header_limits,
    compression_parameters,
    is_compressed,
    tile_shape,
)

__all__ = ["MAX_HMI_MAGNITUDE", "check_tiles"]

log = logging.getLogger(__name__)

#: No pixel of an HMI observable ``enhance`` reads reaches this magnitude in
#: its own unit: continuum intensity stays below ~1e5 DN/s (``DATAMAX``
#: 69372 in the hmi.Ic_45s full disk of sunpy's test data), line-of-sight
#: field below ~6 kG (the strongest sunspot fields, Livingston et al. 2006,
#: Sol. Phys. 239, 41; at most 4857 G in the three real full disks) and
#: limb-darkening-removed continuum near 1. A Rice pixel beyond it is damage:
#: a shifted ``BLANK`` or a flipped high bit (see the module docstring).
MAX_HMI_MAGNITUDE = 1e6

#: Integer types the Rice tiles of each ``ZBITPIX`` decode to (BYTEPIX wide).
_INTEGER_ZBITPIX = (8, 16, 32, 64)


def _tile_pixels(row: int, axes: list[int], tile: list[int]) -> int:
    """Pixels in the tile of table row ``row`` (first axis fastest; edge tiles are cut)."""
    count = 1
    for length, size in zip(axes, tile, strict=True):
        row, k = divmod(row, -(-length // size))
        count *= min(size, length - k * size)
    return count


def _gunzip_problem(buf: bytes, expected: int) -> str | None:
    """Why a gzip tile is bad, or None: decoded with a bound, CRC-32 and size checked [3]_."""
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(buf, expected + 1)
    except zlib.error as exc:
        return f"does not decompress ({exc})"
    if len(out) > expected or not inflater.eof:
        return f"decompresses to more than its {expected} bytes"
    if len(out) < expected:
        return f"decompresses to {len(out)} bytes, not {expected}"
    if inflater.unused_data.strip(b"\0"):
        return "holds bytes after its gzip stream"
    return None


class _RiceTiles:
    """Decode, re-encode and range-check the Rice tiles of one image."""

    def __init__(self, header: fits.Header, params: dict[str, Any]) -> None:
        self.blocksize = int(params.get("BLOCKSIZE", 32))
        self.bytepix = int(params.get("BYTEPIX", 4))
        self.integer = int(header["ZBITPIX"]) in _INTEGER_ZBITPIX
        blank = header.get("ZBLANK", header.get("BLANK"))
        self.blank = int(blank) if isinstance(blank, int) and not isinstance(blank, bool) else None
        self.bscale = float(header.get("BSCALE", 1.0))
        self.bzero = float(header.get("BZERO", 0.0))
        self._codecs: dict[int, Rice1] = {}

    def problem(self, buf: np.ndarray, pixels: int) -> str | None:
        codec = self._codecs.get(pixels)
        if codec is None:
            codec = Rice1(blocksize=self.blocksize, bytepix=self.bytepix, tilesize=pixels)
            self._codecs[pixels] = codec
        try:
            values = codec.decode(buf)
        except Exception as exc:  # the C decoder raises several types on damaged streams
            return f"does not decode ({exc})"
        if values.size != pixels:
            return f"decodes to {values.size} pixels, not {pixels}"
        if codec.encode(values) != buf.tobytes():
            return "is not the Rice stream of the pixels it decodes to"
        if self.integer:
            return self._range_problem(values)
        return None

    def _range_problem(self, values: np.ndarray) -> str | None:
        if self.blank is not None:
            values = values[values != self.blank]
        if values.size == 0:
            return None
        low, high = (float(v) * self.bscale + self.bzero for v in (values.min(), values.max()))
        worst = low if abs(low) >= abs(high) else high
        if abs(worst) >= MAX_HMI_MAGNITUDE:
            return (
                f"holds a pixel of {worst:.4g}, beyond any HMI value (|x| < {MAX_HMI_MAGNITUDE:g})"
            )
        return None


def _check_hdu(hdu: fits.BinTableHDU, *, name: str, index: int) -> int:
    """Check every tile of one compressed image; return the number of tiles."""
    header = hdu.header
    algorithm = str(header["ZCMPTYPE"]).strip().upper()
    axes = [int(header[f"ZNAXIS{n}"]) for n in range(1, int(header["ZNAXIS"]) + 1)]
    tile = tile_shape(header)
    params = compression_parameters(header)
    try:
        table = hdu.data
        columns = [c.upper() for c in table.columns.names]
        compressed = table.field(columns.index("COMPRESSED_DATA"))
        gzipped = (
            table.field(columns.index("GZIP_COMPRESSED_DATA"))
            if "GZIP_COMPRESSED_DATA" in columns
            else None
        )
    except Exception as exc:  # astropy raises many types on a damaged table or heap
        raise CorruptDataError(
            f"{name}: the tile table of HDU {index} cannot be read ({exc}); the file is "
            "corrupt: fetch it again"
        ) from exc
    quantised = "ZSCALE" in columns or "ZSCALE" in header
    zbitpix = int(header["ZBITPIX"])
    itemsize = 4 if quantised else abs(zbitpix) // 8
    rice = _RiceTiles(header, params) if algorithm.startswith("RICE") else None
    rows = len(compressed)
    for row in range(rows):
        count = _tile_pixels(row, axes, tile)
        buf = np.asarray(compressed[row], dtype=np.uint8)
        if buf.size:
            if rice is not None:
                problem = rice.problem(buf, count)
            else:
                problem = _gunzip_problem(buf.tobytes(), count * itemsize)
        elif gzipped is not None and np.asarray(gzipped[row]).size:
            fallback = np.asarray(gzipped[row], dtype=np.uint8).tobytes()
            problem = _gunzip_problem(fallback, count * itemsize)
        else:
            problem = None  # stored uncompressed or empty: nothing to decode
        if problem is not None:
            raise CorruptDataError(
                f"{name}: tile {row + 1} of {rows} in HDU {index} ({algorithm}) "
                f"{problem}; the compressed data are corrupt and the file has no DATASUM "
                "to check them against: fetch it again"
            )
    return rows


def check_tiles(path: str | os.PathLike[str], *, name: str | None = None) -> int:
    """Decode every tile of each tile-compressed HDU without ``DATASUM``; refuse damage.

    The headers are checked first
    (:func:`enhance_hmi.io.header_limits.check_header_limits`), so no tile table
    is read whose header claims more than the limits. HDUs
    that carry ``DATASUM`` are left to that check
    (:mod:`enhance_hmi.acquire.verify`).

    Parameters
    ----------
    path : path-like
        The FITS file.
    name : str, optional
        How messages name the file; default its name.

    Returns
    -------
    int
        The number of tiles checked (0 when every compressed HDU has
        ``DATASUM`` or there is none).

    Raises
    ------
    CorruptDataError
        A tile does not decode, is not the Rice stream of its pixels, or holds
        a pixel no HMI image holds; the message names the file and the tile.
    HeaderLimitError
        A header beyond the limits of :mod:`enhance_hmi.io.header_limits`.
    InputError
        The file is not FITS.
    """
    path = Path(path)
    name = name or path.name
    check_header_limits(path, name=name)
    checked = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # damage shows up as a failed check below
        try:
            hdul = fits.open(
                path, memmap=False, lazy_load_hdus=False, disable_image_compression=True
            )
        except (OSError, ValueError, TypeError, IndexError, KeyError) as exc:
            raise InputError(f"{name} is not a readable FITS file ({exc})") from exc
        with hdul:
            for index, hdu in enumerate(hdul):
                if is_compressed(hdu.header) and "DATASUM" not in hdu.header:
                    checked += _check_hdu(hdu, name=name, index=index)
    if checked:
        log.debug("%s: %d compressed tiles decoded and checked (no DATASUM)", name, checked)
    return checked
