"""Writing enhanced frames to FITS, atomically and with provenance.

Layout (like the JSOC files the inputs come from): an empty primary HDU and
the image as a tile-compressed float32 HDU 1, one tile per row, or a plain
float32 primary image. ``compression``:

* ``"gzip"`` (default): lossless GZIP_2 (byte-shuffled gzip) without
  quantisation (``quantize_level=0``): the values read back are bit-exact.
  A full-disk 8192x8192 frame is 256 MiB raw, about 165 MiB compressed (the
  off-disk NaN compress to almost nothing, noisy on-disk floats little).
* ``"rice"``: lossy RICE_1 with the standard FITS float quantisation
  (``quantize_level=16``: step = noise sigma / 16 per tile, subtractive
  dithering), about 45 MiB per full-disk frame; the quantisation error is
  ~1/16/sqrt(12) of the local noise rms, far below HMI noise (Pence et al.
  2009). NaN are kept.
* None: plain float32 primary image (256 MiB per full-disk frame).

All open with ``astropy.io.fits`` and ``sunpy.map.Map``.

References
----------
.. [1] Díaz Baso, C. J. & Asensio Ramos, A. (2018), A&A 614, A5.
.. [2] Pence, W. D., Seaman, R. & White, R. L. (2009), "Lossless astronomical
   image compression and the effects of noise", PASP 121, 414: tiled GZIP
   compression of floating-point images.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from astropy.io import fits

from enhance_hmi.atomic import atomic_path
from enhance_hmi.errors import ConfigError, InputError, OutputError
from enhance_hmi.frame import Frame
from enhance_hmi.io.cards import set_card
from enhance_hmi.io.frame_quality import FrameQuality
from enhance_hmi.io.reader import HEADER_UNITS, STRUCTURAL_CARDS, UNIT_NAMES
from enhance_hmi.io.sigma import SigmaMap, sigma_hdu
from enhance_hmi.provenance import provenance_record

__all__ = ["COMPRESSION_CHOICES", "MASK_KEYWORDS", "PROVENANCE_KEYWORDS", "write_enhanced"]

log = logging.getLogger(__name__)

#: Accepted ``compression`` values.
COMPRESSION_CHOICES = ("gzip", "rice", None)
#: Quantisation of the lossy "rice" mode, in units of the tile noise sigma
#: (the FITS tile-compression default; Pence, Seaman & White 2009).
RICE_QUANTIZE_LEVEL = 16.0

#: Provenance keys written as header keywords (all keys also go to HISTORY).
PROVENANCE_KEYWORDS: dict[str, tuple[str, str]] = {
    "software": ("ENHVERS", "software that made this file"),
    "date": ("ENHDATE", "UTC date the file was made"),
    "reference": ("ENHREF", "method paper"),
    "observable": ("ENHOBS", "network: continuum or magnetogram"),
    "weights_file": ("ENHWTS", "network weights file"),
    "weights_sha256": ("ENHWSHA", "sha256 of the network weights file"),
    "psf_model": ("ENHPSF", "HMI PSF model the network was trained for"),
    "input_file": ("ENHINPUT", "input file name"),
    "input_sha256": ("ENHINSHA", "sha256 of the input file"),
    "device": ("ENHDEV", "inference device"),
    "precision": ("ENHPREC", "inference precision"),
    "tile": ("ENHTILE", "inference tile size (input pixels)"),
    "symmetries": ("ENHSYMM", "network passes averaged over symmetries"),
    "input_noise": ("ENHNOISE", "input noise sigma (ENHUNIT) of the projection"),
    "input_noise_source": ("ENHNSRC", "ENHNOISE given, or histogram/spectral estimate"),
    "settings_sha256": ("ENHSETSH", "sha256 of the settings that change the output"),
}
_ALIASES = {"psf": "psf_model", "weights": "weights_file", "version": "software"}

#: Input pixel counts (``frame.meta["masked"]``, :func:`enhance_hmi.io.read_hmi`)
#: written as header keywords: what was NaN in the input, and what was masked
#: because it could not be a measurement.
MASK_KEYWORDS: dict[str, tuple[str, str]] = {
    "nan": ("ENHMNAN", "input pixels NaN (off-disk or blank)"),
    "infinite": ("ENHMINF", "infinite input pixels masked (NaN)"),
    "fill": ("ENHMFILL", "input fill values (|x|>=1e30) masked (NaN)"),
    "implausible": ("ENHMBAD", "input pixels outside plausible range masked"),
}

# Cards describing the input image's values or layout: wrong for the output.
_STALE = STRUCTURAL_CARDS + (
    "HEADSUM",
    "DATAMIN",
    "DATAMAX",
    "DATAMEDN",
    "DATAMEAN",
    "DATARMS",
    "DATASKEW",
    "DATAKURT",
    "DATAMIN2",
    "DATAMAX2",
    "DATAMED2",
    "DATAMEA2",
    "DATARMS2",
    "DATASKE2",
    "DATAKUR2",
    "TOTVALS",
    "DATAVALS",
    "MISSVALS",
    "SATVALS",
)


def _provenance(frame: Frame, provenance: Mapping[str, object]) -> dict[str, str]:
    """Merge the common record, the frame's own provenance and the caller's."""
    record = provenance_record()
    meta_prov = frame.meta.get("provenance")
    sources: list[Mapping[str, object]] = []
    if isinstance(meta_prov, Mapping):
        sources.append(meta_prov)
    sources.append(
        {
            "observable": frame.observable,
            "input_file": frame.meta.get("input_file"),
            "input_sha256": frame.meta.get("input_sha256"),
        }
    )
    sources.append(provenance)
    for source in sources:
        for key, value in source.items():
            if value is None:
                continue
            key = _ALIASES.get(key, key)
            if key in ("input_file", "weights_file"):
                value = Path(str(value)).name
            record[key] = str(value)
    return record


def _output_header(frame: Frame, record: Mapping[str, str]) -> fits.Header:
    ny, nx = frame.data.shape
    header = fits.Header()
    for card in frame.header.cards:
        if card.keyword in _STALE or card.keyword.startswith("NAXIS"):
            continue
        if card.keyword.startswith("ENH") and card.keyword in {
            v[0] for v in (*PROVENANCE_KEYWORDS.values(), *MASK_KEYWORDS.values())
        }:
            continue
        header.append(card, end=True)
    for key in ("NAXIS1", "NAXIS2"):
        expected = int(frame.header.get(key, 0))
        actual = nx if key == "NAXIS1" else ny
        if expected and expected != actual:
            raise InputError(
                f"frame header says {key} = {expected} but the data have {actual} pixels "
                "along that axis; the header does not describe the data"
            )
    bunit_comment = "gauss" if frame.observable == "magnetogram" else "dimensionless (ENHUNIT)"
    set_card(header, "BUNIT", HEADER_UNITS[frame.observable], bunit_comment)
    set_card(header, "ENHUNIT", UNIT_NAMES[frame.observable], "enhance: units of the data")
    for key, value in record.items():
        if key in PROVENANCE_KEYWORDS:
            keyword, comment = PROVENANCE_KEYWORDS[key]
            set_card(header, keyword, value, comment)
    masked = frame.meta.get("masked")
    if isinstance(masked, Mapping):
        for key, (keyword, comment) in MASK_KEYWORDS.items():
            if key in masked:
                set_card(header, keyword, int(masked[key]), comment)
    quality = frame.meta.get("frame_quality")
    if isinstance(quality, FrameQuality):
        quality.write_cards(header)
    for key, value in record.items():
        header.add_history(f"enhance provenance {key}: {value}")
    return header


def write_enhanced(
    path: str | os.PathLike[str],
    frame: Frame,
    *,
    provenance: Mapping[str, object],
    compression: str | None = "gzip",
) -> Path:
    """Write an enhanced frame to ``path`` atomically.

    Long for its documentation of every card and HDU written; the body is one header
    build and one atomic write.

    Parameters
    ----------
    path : path-like
        Output FITS file; its directory must exist and be writable. Written
        as ``path.part`` and renamed, so a reader never sees half a file and a
        failure leaves nothing behind.
    frame : Frame
        The enhanced frame: 2-D data and the matching 2x header (from
        :func:`enhance_hmi.io.upsample_header`). ``frame.meta["provenance"]``, if a
        mapping, is merged into the provenance.
    provenance : mapping
        Extra provenance (``weights_sha256``, ``psf_model``, ``input_file``,
        ``weights_file``, ``device``, ``precision``, ``tile``, ...). The common
        keys of :func:`enhance_hmi.provenance.provenance_record` (software and
        version, UTC date, method reference) are always added. Known keys
        become header keywords (:data:`PROVENANCE_KEYWORDS`); every key is
        also written as a ``HISTORY`` line. The input pixel counts of
        ``frame.meta["masked"]`` (NaN in the input, infinite, fill values and
        implausible values masked by :func:`enhance_hmi.io.read_hmi`) become the
        keywords of :data:`MASK_KEYWORDS`.
    compression : {"gzip", "rice", None}
        ``"gzip"``: empty primary HDU + lossless GZIP_2 tile-compressed float32
        image in HDU 1 (default); ``"rice"``: the same with lossy RICE_1
        quantisation at sigma/16; None: plain float32 primary image.
        ``frame.meta["sigma"]``, a :class:`enhance_hmi.io.sigma.SigmaMap`, is
        written after the image as the HDU ``SIGMA`` (same compression,
        WCS and BUNIT; :func:`enhance_hmi.io.sigma.sigma_hdu`).

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    OutputError
        Directory missing or not writable, or the write failed.
    InputError
        The frame is not 2-D or its header does not match its shape.

    References
    ----------
    .. [1] Díaz Baso & Asensio Ramos (2018), A&A 614, A5.
    .. [2] Pence, Seaman & White (2009), PASP 121, 414.
    """
    if compression not in COMPRESSION_CHOICES:
        raise ConfigError(f"compression must be one of {COMPRESSION_CHOICES}, got {compression!r}")
    path = Path(path)
    data = np.asarray(frame.data)
    if data.ndim != 2:
        raise InputError(f"cannot write a frame of shape {data.shape}: expected a 2-D image")
    data = data.astype(np.float32, copy=False)
    record = _provenance(frame, provenance)
    header = _output_header(frame, record)
    if compression is not None:
        lossless = compression == "gzip"
        image = fits.CompImageHDU(
            data=data,
            header=header,
            compression_type="GZIP_2" if lossless else "RICE_1",
            quantize_level=0.0 if lossless else RICE_QUANTIZE_LEVEL,
            quantize_method=-1 if lossless else 1,  # 1: SUBTRACTIVE_DITHER_1
        )
        hdul = fits.HDUList([fits.PrimaryHDU(), image])
    else:
        hdul = fits.HDUList([fits.PrimaryHDU(data=data, header=header)])
    sigma = frame.meta.get("sigma")
    if isinstance(sigma, SigmaMap):  # per-pixel uncertainty: the SIGMA image HDU
        hdul.append(
            sigma_hdu(
                sigma,
                header,
                data.shape,
                compression=compression,
                rice_quantize_level=RICE_QUANTIZE_LEVEL,
            )
        )
    with atomic_path(path) as tmp:
        try:
            hdul.writeto(tmp, overwrite=True, checksum=True)
        except OSError as exc:
            raise OutputError(f"could not write {path}: {exc}") from exc
    log.info("wrote %s (%dx%d, %s)", path, data.shape[1], data.shape[0], compression or "plain")
    return path
