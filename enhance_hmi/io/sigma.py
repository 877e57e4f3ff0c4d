"""The per-pixel uncertainty of an enhanced frame, as it travels and as it is stored.

:class:`SigmaMap` is the standard deviation on the output grid, in the
output's units, with what produced it; an enhanced
:class:`~enhance_hmi.frame.Frame` carries it as ``frame.meta["sigma"]``.
:func:`sigma_header` turns the enhanced frame's header into the header of the
sigma image (same WCS, BUNIT, ``ENHSG*`` keywords naming the method and its
calibration), which :func:`enhance_hmi.io.write_enhanced` writes as the image HDU
``SIGMA`` after the enhanced image; :func:`read_sigma` reads it back.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
from astropy.io import fits

from enhance_hmi.errors import InputError
from enhance_hmi.io.cards import set_card

__all__ = ["SIGMA_EXTNAME", "SIGMA_KEYWORDS", "SigmaMap", "read_sigma", "sigma_hdu", "sigma_header"]

#: EXTNAME of the sigma image HDU.
SIGMA_EXTNAME = "SIGMA"
#: Keywords of the sigma HDU: attribute of :class:`SigmaMap` -> (keyword, comment).
SIGMA_KEYWORDS: dict[str, tuple[str, str]] = {
    "method": ("ENHSGMET", "uncertainty method (sigma of a Gaussian)"),
    "calibration_scale": ("ENHSGCAL", "calibration factor on sigma at its reference"),
    "calibration": ("ENHSGCDS", "how sigma was calibrated and what it describes"),
    "weights_file": ("ENHSGWTS", "uncertainty head weights file"),
    "weights_sha256": ("ENHSGSHA", "sha256 of the uncertainty head weights"),
    "calibration_sha256": ("ENHSGCSH", "sha256 of the calibration (head sidecar JSON)"),
    "forward_model": ("ENHSGFWD", "HMI forward model sigma allows for"),
}


@dataclasses.dataclass
class SigmaMap:
    """Per-pixel standard deviation of an enhanced image.

    Attributes
    ----------
    data : numpy.ndarray
        float32, the enhanced image's shape and units; NaN where it is NaN.
    method : str
        E.g. ``"gaussian-nll-head"`` (:mod:`enhance_hmi.model.uncertainty`).
    calibration_scale : float
        The calibration's factor on the head's sigma at its reference point
        (``exp(log_scale)`` of :class:`enhance_hmi.model.uncertainty.SigmaCalibration`;
        the head's one factor for heads without a map). ``data`` is already
        calibrated; away from the reference the map's exponents change the
        factor pixel by pixel.
    calibration : str
        How sigma was calibrated and which output it describes, in words.
    weights_file, weights_sha256 : str
        The uncertainty head that produced it (its .safetensors weights).
    calibration_sha256 : str
        sha256 of the calibration in the head's sidecar
        (:func:`enhance_hmi.model.uncertainty.calibration_digest`): it changes when
        the map is refitted, the weights' sha256 does not.
    forward_model : str
        What sigma allows for about the HMI forward model: the member the run
        was told (``"told wachter+pixel (kappa 1.2)"``), or ``"not told:
        family spread (kappa 2.7)"`` (:class:`enhance_hmi.model.uncertainty.FamilySigma`);
        empty for a head calibrated without the family.
    """

    data: np.ndarray
    method: str
    calibration_scale: float
    calibration: str = ""
    weights_file: str = ""
    weights_sha256: str = ""
    calibration_sha256: str = ""
    forward_model: str = ""


def sigma_header(image_header: fits.Header, sigma: SigmaMap) -> fits.Header:
    """The header of the sigma HDU: the image's WCS and units plus the ``ENHSG*`` keywords.

    Parameters
    ----------
    image_header : astropy.io.fits.Header
        The header written with the enhanced image (WCS, BUNIT, provenance).
    sigma : SigmaMap
    """
    header = fits.Header()
    for card in image_header.cards:
        if card.keyword in ("HISTORY", "COMMENT", "EXTNAME", "CHECKSUM", "DATASUM"):
            continue
        header.append(card, end=True)
    set_card(header, "EXTNAME", SIGMA_EXTNAME, "per-pixel uncertainty of the enhanced image")
    for key, (keyword, comment) in SIGMA_KEYWORDS.items():
        value = getattr(sigma, key)
        if value not in ("", None):
            set_card(header, keyword, value, comment)
    header.add_comment(
        "SIGMA: standard deviation of a Gaussian around the enhanced value, same units "
        "(BUNIT) and grid (WCS) as the enhanced image; |enhanced - truth| <= SIGMA for "
        "~68 % of held-out pixels"
    )
    return header


def read_sigma(path: str | os.PathLike[str]) -> tuple[np.ndarray, fits.Header]:
    """The sigma image and header of an enhanced FITS file.

    Raises
    ------
    InputError
        The file has no ``SIGMA`` HDU (written without uncertainty).
    """
    path = Path(path)
    with fits.open(path) as hdul:
        for hdu in hdul:
            if hdu.name == SIGMA_EXTNAME and hdu.data is not None:
                return np.asarray(hdu.data, dtype=np.float32), hdu.header.copy()
    raise InputError(f"{path.name} has no {SIGMA_EXTNAME} HDU (written without uncertainty)")


def sigma_hdu(
    sigma: SigmaMap,
    image_header: fits.Header,
    image_shape: tuple[int, ...],
    *,
    compression: str | None,
    rice_quantize_level: float = 16.0,
) -> fits.ImageHDU | fits.CompImageHDU:
    """The ``SIGMA`` image HDU written after the enhanced image.

    Compressed like the image: ``"gzip"`` lossless GZIP_2, ``"rice"`` RICE_1
    with the FITS float quantisation at ``rice_quantize_level`` (the step is
    the tile's noise / level; Pence, Seaman & White 2009, PASP 121, 414),
    None a plain float32 image extension.

    Raises
    ------
    InputError
        ``sigma`` does not have the image's shape.
    """
    data = np.asarray(sigma.data, dtype=np.float32)
    if data.shape != tuple(image_shape):
        raise InputError(
            f"sigma map of shape {data.shape} does not match the enhanced image {image_shape}"
        )
    header = sigma_header(image_header, sigma)
    if compression is None:
        return fits.ImageHDU(data=data, header=header, name=SIGMA_EXTNAME)
    lossless = compression == "gzip"
    return fits.CompImageHDU(
        data=data,
        header=header,
        name=SIGMA_EXTNAME,
        compression_type="GZIP_2" if lossless else "RICE_1",
        quantize_level=0.0 if lossless else rice_quantize_level,
        quantize_method=-1 if lossless else 1,
    )
