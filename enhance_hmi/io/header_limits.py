"""Limits on what a FITS header may claim, checked before any data is read.

A header is a promise about the data that follows it: ``NAXISn`` and
``BITPIX`` fix how many bytes astropy reads and allocates, ``ZNAXISn``,
``ZBITPIX`` and ``ZTILEn`` of a tile-compressed image how large an array it
decompresses into. A damaged or hostile header that claims 100000 x 100000
pixels makes astropy try a 37 GiB allocation. :func:`check_header_limits`
reads every header of a file (no data), checks each claim against limits
that fit HMI with a margin and refuses the file with one
:class:`~enhance_hmi.errors.HeaderLimitError` naming the file, the card and the
limit, before anything is allocated.

What is checked, per HDU:

* ``BITPIX`` (``ZBITPIX``) is a FITS value, ``NAXIS`` (``ZNAXIS``) within the
  standard's 999, every ``NAXISn`` (``ZNAXISn``) a non-negative integer;
* an image (``ZNAXISn`` of a compressed one) has no axis longer than
  :data:`MAX_IMAGE_AXIS` and no more than :data:`MAX_IMAGE_PIXELS` pixels;
* the data unit the header describes (``BITPIX``, ``NAXISn``, ``PCOUNT``,
  ``GCOUNT``) fits in the bytes that follow the header: a file cannot hold
  more than its length, so a larger claim is a truncated or damaged file;
* a header ends (``END``) within :data:`MAX_HEADER_BYTES`;
* a tile-compressed image names an algorithm in
  :data:`COMPRESSION_TYPES`, tiles (``ZTILEn``) of 1 to
  :data:`MAX_IMAGE_AXIS` pixels along each axis whose count is the number of
  rows of its table, and for Rice the ``BLOCKSIZE`` and ``BYTEPIX``
  parameters (``ZNAMEn``/``ZVALn``) of the standard [3]_, ``BYTEPIX`` no
  wider than the pixels.

Each header is parsed on its own from its blocks (astropy's header parser,
not its HDU machinery), so a card is checked before anything acts on it.

HMI level-1.5 files as JSOC serves them (and the bundled samples) are far
inside every limit: an empty primary HDU and a 4096 x 4096 ``ZBITPIX = 32``
``RICE_1`` image in 4096 tiles of 4096 x 1 pixels, ``BLOCKSIZE = 32``,
``BYTEPIX = 4`` [2]_.

References
----------
.. [1] Pence, W. D. et al. (2010), "Definition of the Flexible Image Transport
   System (FITS), version 3.0", A&A 524, A42: 2880-byte blocks, ``BITPIX``,
   ``NAXIS`` <= 999, the size of a data unit (Sect. 4.4.1).
.. [2] Schou, J. et al. (2012), "Design and ground calibration of the
   Helioseismic and Magnetic Imager (HMI) instrument on the Solar Dynamics
   Observatory (SDO)", Sol. Phys. 275, 229: the 4096 x 4096 HMI CCDs.
.. [3] IAU FITS Working Group (2018), "Definition of the Flexible Image
   Transport System (FITS), version 4.0", Sect. 10: tiled image compression
   (``ZBITPIX``, ``ZNAXISn``, ``ZTILEn``, ``ZCMPTYPE``, ``ZNAMEn``/``ZVALn``;
   Rice ``BLOCKSIZE`` 16 or 32, ``BYTEPIX`` 1, 2, 4 or 8).
"""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path
from typing import Any, BinaryIO

from astropy.io import fits

from enhance_hmi.errors import HeaderLimitError, InputError

__all__ = [
    "check_input_file",
    "COMPRESSION_TYPES",
    "FITS_BITPIX",
    "FITS_BLOCK",
    "MAX_HEADER_BYTES",
    "MAX_IMAGE_AXIS",
    "MAX_IMAGE_PIXELS",
    "MAX_NAXIS",
    "RICE_BLOCKSIZES",
    "RICE_BYTEPIX",
    "check_header",
    "check_header_limits",
    "compression_parameters",
    "data_unit_bytes",
    "is_compressed",
    "tile_shape",
]

#: Longest image axis, in pixels, in a file ``enhance`` reads: twice the 4096
#: pixels of an HMI full disk [2]_. Any HMI frame or cut-out fits with room,
#: and so does the 2x enhanced product of a full disk (8192); 100000 does not.
MAX_IMAGE_AXIS = 8192
#: Most pixels in one image HDU: one :data:`MAX_IMAGE_AXIS` square frame
#: (67 Mpx, 4x a full disk; 512 MiB as the float64 astropy scales integer
#: data into). Bounds a cube (``NAXIS3``) as well as a frame.
MAX_IMAGE_PIXELS = MAX_IMAGE_AXIS**2
#: ``BITPIX`` (and ``ZBITPIX``) values the FITS standard defines [1]_.
FITS_BITPIX = (8, 16, 32, 64, -32, -64)
#: Most axes the FITS standard allows (``NAXIS``, ``ZNAXIS``) [1]_.
MAX_NAXIS = 999
#: Tile-compression algorithms (``ZCMPTYPE``) read [3]_: Rice (HMI as JSOC serves
#: it; ``RICE_ONE`` is its older spelling) and the lossless gzip forms (the
#: bundled continuum sample, astropy and sunpy output). HCOMPRESS (lossy
#: wavelets) and PLIO (24-bit masks) hold no HMI frame.
COMPRESSION_TYPES = ("RICE_1", "RICE_ONE", "GZIP_1", "GZIP_2")
#: FITS files are sequences of 2880-byte blocks [1]_.
FITS_BLOCK = 2880
#: Most bytes one header may take: 360 blocks (~1 MB), about 50 times the 7
#: blocks of the image header of a JSOC HMI file.
MAX_HEADER_BYTES = 360 * FITS_BLOCK
#: Rice ``BLOCKSIZE`` values of the standard [3]_ (JSOC: 32).
RICE_BLOCKSIZES = (16, 32)
#: Rice ``BYTEPIX`` values of the standard [3]_ (JSOC: 4).
RICE_BYTEPIX = (1, 2, 4, 8)

# Bytes per pixel of the integers a Rice tile holds for each ZBITPIX (floats
# are quantised to 32-bit integers before compression).
_RICE_PIXEL_BYTES = {8: 1, 16: 2, 32: 4, 64: 8, -32: 4, -64: 4}


def _fail(name: str, index: int, card: str, value: object, limit: str) -> HeaderLimitError:
    return HeaderLimitError(
        f"{name}: HDU {index} has {card} = {value!r}, {limit}; the header is damaged "
        "or the file is not an HMI frame"
    )


def _integer(
    header: fits.Header, key: str, name: str, index: int, *, default: int | None = None
) -> int:
    """``header[key]`` as an int, refusing anything else (a bool, a float, a string)."""
    value = header.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(name, index, key, value, "not an integer")
    return value


def _axes(header: fits.Header, prefix: str, name: str, index: int) -> list[int]:
    """``[NAXIS1, NAXIS2, ...]`` (or ``ZNAXISn``), each checked to be a count."""
    naxis = _integer(header, prefix, name, index, default=0)
    if not 0 <= naxis <= MAX_NAXIS:
        raise _fail(name, index, prefix, naxis, f"outside 0-{MAX_NAXIS}")
    axes = []
    for n in range(1, naxis + 1):
        length = _integer(header, f"{prefix}{n}", name, index)
        if length < 0:
            raise _fail(name, index, f"{prefix}{n}", length, "negative")
        axes.append(length)
    return axes


def _check_image_size(axes: list[int], prefix: str, name: str, index: int) -> None:
    for n, length in enumerate(axes, start=1):
        if length > MAX_IMAGE_AXIS:
            raise _fail(
                name,
                index,
                f"{prefix}{n}",
                length,
                f"beyond the {MAX_IMAGE_AXIS} pixels per axis enhance reads",
            )
    pixels = math.prod(axes) if axes else 0
    if pixels > MAX_IMAGE_PIXELS:
        shape = "x".join(str(a) for a in axes)
        raise _fail(
            name,
            index,
            f"{prefix}n",
            shape,
            f"{pixels} pixels, beyond the {MAX_IMAGE_PIXELS} enhance reads",
        )


def _bitpix(header: fits.Header, key: str, name: str, index: int) -> int:
    value = _integer(header, key, name, index)
    if value not in FITS_BITPIX:
        raise _fail(name, index, key, value, f"not one of {', '.join(map(str, FITS_BITPIX))}")
    return value


def is_compressed(header: fits.Header) -> bool:
    """True for the binary table of a tile-compressed image (``ZIMAGE = T``)."""
    return header.get("XTENSION", "").strip() == "BINTABLE" and header.get("ZIMAGE") is True


def tile_shape(header: fits.Header) -> list[int]:
    """``[ZTILE1, ZTILE2, ...]`` of a compressed image, with the standard's defaults.

    Without ``ZTILEn`` a tile is one row: ``ZNAXIS1`` x 1 x ... [3]_.
    Call :func:`check_header` first: the values are used as they are.
    """
    znaxis = int(header["ZNAXIS"])
    defaults = [int(header["ZNAXIS1"])] + [1] * (znaxis - 1) if znaxis else []
    return [int(header.get(f"ZTILE{n}", defaults[n - 1])) for n in range(1, znaxis + 1)]


def compression_parameters(header: fits.Header) -> dict[str, Any]:
    """``{ZNAMEn: ZVALn}`` (upper-case names) of a compressed image (values as FITS cards)."""
    params: dict[str, Any] = {}
    n = 1
    while f"ZNAME{n}" in header:
        params[str(header[f"ZNAME{n}"]).strip().upper()] = header.get(f"ZVAL{n}")
        n += 1
    return params


def _check_compressed(header: fits.Header, name: str, index: int) -> None:
    """The ``Z`` cards of a tile-compressed image (its table's cards are checked as a table)."""
    zbitpix = _bitpix(header, "ZBITPIX", name, index)
    axes = _axes(header, "ZNAXIS", name, index)
    _check_image_size(axes, "ZNAXIS", name, index)
    algorithm = str(header.get("ZCMPTYPE", "")).strip().upper()
    if algorithm not in COMPRESSION_TYPES:
        raise _fail(
            name, index, "ZCMPTYPE", algorithm, f"not one of {', '.join(COMPRESSION_TYPES)}"
        )
    tiles = 1
    for n, length in enumerate(axes, start=1):
        key = f"ZTILE{n}"
        tile = _integer(header, key, name, index, default=length if n == 1 else 1)
        if not 1 <= tile <= MAX_IMAGE_AXIS:
            raise _fail(name, index, key, tile, f"outside 1-{MAX_IMAGE_AXIS} pixels")
        tiles *= -(-length // tile)
    rows = _integer(header, "NAXIS2", name, index)
    if rows != tiles:
        raise _fail(
            name, index, "NAXIS2", rows, f"but ZNAXISn / ZTILEn make {tiles} tiles (one per row)"
        )
    if algorithm.startswith("RICE"):
        params = compression_parameters(header)
        blocksize = params.get("BLOCKSIZE", 32)
        if isinstance(blocksize, bool) or blocksize not in RICE_BLOCKSIZES:
            raise _fail(
                name, index, "BLOCKSIZE (ZVALn)", blocksize, "not 16 or 32 (the Rice standard)"
            )
        bytepix = params.get("BYTEPIX", 4)
        widest = _RICE_PIXEL_BYTES[zbitpix]
        if isinstance(bytepix, bool) or bytepix not in RICE_BYTEPIX or bytepix > widest:
            raise _fail(
                name,
                index,
                "BYTEPIX (ZVALn)",
                bytepix,
                f"not 1, 2, 4 or 8 up to the {widest} bytes of ZBITPIX {zbitpix}",
            )


def check_header(header: fits.Header, *, name: str, index: int) -> None:
    """Check the cards of one HDU as it is stored (a compressed image as its table).

    Parameters
    ----------
    header : astropy.io.fits.Header
        The header as read from the file: for a tile-compressed image the
        binary table's header (``fits.open(..., disable_image_compression=True)``),
        which holds the ``Z`` cards.
    name : str
        The file, as error messages name it.
    index : int
        The HDU's position in the file.

    Raises
    ------
    HeaderLimitError
        A card is malformed or claims more than the limits of this module.
    """
    _bitpix(header, "BITPIX", name, index)
    axes = _axes(header, "NAXIS", name, index)
    for key in ("PCOUNT", "GCOUNT"):
        if key in header and _integer(header, key, name, index) < 0:
            raise _fail(name, index, key, header[key], "negative")
    xtension = str(header.get("XTENSION", "IMAGE")).strip().upper()
    if xtension == "IMAGE" and not header.get("GROUPS", False):
        _check_image_size(axes, "NAXIS", name, index)
    if is_compressed(header):
        _check_compressed(header, name, index)


def data_unit_bytes(header: fits.Header) -> int:
    """Bytes of the data unit ``header`` describes (without the padding to 2880) [1]_.

    ``|BITPIX| / 8 x GCOUNT x (PCOUNT + NAXIS1 x ... x NAXISn)``; random
    groups (``GROUPS = T``) leave ``NAXIS1`` (0) out of the product.
    """
    naxis = int(header.get("NAXIS", 0))
    if naxis == 0:
        return 0
    axes = [int(header[f"NAXIS{n}"]) for n in range(1, naxis + 1)]
    if header.get("GROUPS", False) and axes[0] == 0:
        axes = axes[1:]
    count = int(header.get("GCOUNT", 1)) * (int(header.get("PCOUNT", 0)) + math.prod(axes))
    return abs(int(header["BITPIX"])) // 8 * count


def _header_bytes(fh: BinaryIO, name: str, index: int) -> bytes | None:
    """The blocks of one header up to its ``END`` card; None when the file ends first."""
    blocks = []
    while True:
        block = fh.read(FITS_BLOCK)
        if len(block) < FITS_BLOCK:
            return None
        blocks.append(block)
        if any(block[i : i + 8] == b"END     " for i in range(0, FITS_BLOCK, 80)):
            return b"".join(blocks)
        if len(blocks) * FITS_BLOCK >= MAX_HEADER_BYTES:
            raise HeaderLimitError(
                f"{name}: HDU {index} has no END card in its first {MAX_HEADER_BYTES} bytes, "
                f"beyond the {MAX_HEADER_BYTES // FITS_BLOCK} header blocks enhance reads; "
                "the header is damaged or the file is not an HMI frame"
            )


def check_header_limits(path: str | os.PathLike[str], *, name: str | None = None) -> int:
    """Refuse a file whose headers claim more than ``enhance`` reads; no data is read.

    Walks the file header by header (each parsed on its own, so no card is
    acted on before it is checked): every header is checked
    (:func:`check_header`), may take at most :data:`MAX_HEADER_BYTES`, and
    the data unit it describes must fit in the bytes that follow it. A file
    that passes makes astropy allocate at most what the file holds, and for
    a decompressed image at most :data:`MAX_IMAGE_PIXELS` pixels. Bytes after
    the last data unit that do not start an extension are left to astropy.

    Parameters
    ----------
    path : path-like
        The FITS file (it must exist).
    name : str, optional
        How messages name the file; default its name.

    Returns
    -------
    int
        The number of HDUs checked.

    Raises
    ------
    HeaderLimitError
        A card beyond a limit, naming the file, the card and the limit; or a
        data unit claiming more bytes than follow its header.
    InputError
        The file does not start with a FITS header.
    """
    path = Path(path)
    name = name or path.name
    size = path.stat().st_size
    index = 0
    with open(path, "rb") as fh:
        while True:
            start = fh.tell()
            if index and fh.read(8) != b"XTENSION":
                return index
            fh.seek(start)
            raw = _header_bytes(fh, name, index)
            if raw is None or (index == 0 and not raw.startswith(b"SIMPLE  =")):
                if index:
                    raise HeaderLimitError(
                        f"{name} is not a readable FITS file: truncated or corrupt, the "
                        f"header of HDU {index} has no END card"
                    )
                raise InputError(f"{name} is not a readable FITS file (no FITS header)")
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # astropy's notes on odd cards
                    header = fits.Header.fromstring(raw.decode("ascii"))
            except (ValueError, UnicodeDecodeError) as exc:
                raise InputError(f"{name} is not a readable FITS file ({exc})") from exc
            check_header(header, name=name, index=index)
            claimed = data_unit_bytes(header)
            available = size - fh.tell()
            if claimed > available:
                raise HeaderLimitError(
                    f"{name} is not a readable FITS file: truncated or corrupt, HDU {index} "
                    f"claims {claimed} bytes of data (BITPIX, NAXISn, PCOUNT, GCOUNT) and "
                    f"{available} follow its header"
                )
            fh.seek(fh.tell() + -(-claimed // FITS_BLOCK) * FITS_BLOCK)
            index += 1
            if fh.tell() >= size:
                return index


def check_input_file(path: str | os.PathLike[str]) -> None:
    """Refuse an input that is missing, unreadable or whose headers claim too much.

    Reads the headers only (:func:`check_header_limits`):
    cheap, and safe to call before anything heavy is loaded, as
    ``enhance predict`` does. :func:`enhance_hmi.io.read_hmi` calls it too.

    Raises
    ------
    InputError
        The file does not exist, is a directory, is not readable or not FITS.
    HeaderLimitError
        A header card beyond the limits of this module.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"input file {path} does not exist")
    if path.is_dir():
        raise InputError(f"input {path} is a directory, not a FITS file")
    if not os.access(path, os.R_OK):
        raise InputError(f"input file {path} is not readable (check its permissions)")
    check_header_limits(path)
