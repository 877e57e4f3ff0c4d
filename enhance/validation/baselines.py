"""Classical baselines for 2x enhancement of HMI-like images.

Each function maps an image at 0.504"/px to the 0.252"/px grid: the output
has exactly twice the shape and output pixels ``2i`` and ``2i+1`` cover input
pixel ``i`` (the convention of :func:`enhance.physics.degrade`), so output
pixel ``j`` has its centre at input coordinate ``j/2 - 1/4``.

References
----------
.. [1] Díaz Baso, C. J. & Asensio Ramos, A. (2018), A&A 614, A5, Sect. 4
   (Richardson-Lucy comparison).
.. [2] Richardson, W. H. (1972), JOSA 62, 55; Lucy, L. B. (1974), AJ 79, 745.
"""

from __future__ import annotations

import logging

import astropy.units as u
import numpy as np
from scipy import ndimage
from skimage.restoration import richardson_lucy as _skimage_rl

from enhance.errors import ConfigError, InputError

__all__ = ["bicubic", "unsharp_mask", "richardson_lucy"]

log = logging.getLogger(__name__)

#: HMI pixel scale of the input grid [1]_.
INPUT_SCALE = 0.504 * u.arcsec


def _image(image: object) -> tuple[np.ndarray, np.ndarray]:
    data = np.asarray(image, dtype=np.float64)
    if data.ndim != 2 or min(data.shape) < 2:
        raise InputError(f"baseline needs a 2-D image of at least 2x2; got shape {data.shape}")
    bad = ~np.isfinite(data)
    if bad.all():
        raise InputError("baseline input has no finite pixel")
    if bad.any():
        data = np.where(bad, np.median(data[~bad]), data)
    return data, bad


def _restore_nan(out: np.ndarray, bad: np.ndarray) -> np.ndarray:
    if bad.any():
        out[np.kron(bad, np.ones((2, 2), bool))] = np.nan
    return out


def _upsample2(data: np.ndarray) -> np.ndarray:
    ny, nx = data.shape
    yy = np.arange(2 * ny) / 2.0 - 0.25
    xx = np.arange(2 * nx) / 2.0 - 0.25
    coords = np.meshgrid(yy, xx, indexing="ij")
    return ndimage.map_coordinates(data, coords, order=3, mode="mirror")


def bicubic(image: object) -> np.ndarray:
    """2x cubic-spline interpolation onto the 0.252"/px grid (NaN blocks kept)."""
    data, bad = _image(image)
    return _restore_nan(_upsample2(data), bad)


def unsharp_mask(image: object, *, radius: float = 1.0, amount: float = 1.0) -> np.ndarray:
    """Unsharp masking at the input scale, then 2x cubic interpolation.

    ``image + amount * (image - gaussian(image, radius))``; ``radius`` is the
    Gaussian sigma in input pixels. The defaults (sigma 1 px, amount 1)
    roughly match the core width of the HMI PSF (~1 px FWHM ~ 0.5") and
    double the contrast of the smallest scales; tune them per data set.
    """
    if radius <= 0 or amount < 0:
        raise ConfigError(f"unsharp_mask needs radius > 0 and amount >= 0; got {radius}, {amount}")
    data, bad = _image(image)
    sharp = data + amount * (data - ndimage.gaussian_filter(data, radius, mode="mirror"))
    return _restore_nan(_upsample2(sharp), bad)


def richardson_lucy(
    image: object,
    *,
    psf_model: str = "wachter",
    iterations: int = 20,
    offset: float | None = None,
) -> np.ndarray:
    """Richardson-Lucy deconvolution with the HMI PSF, then 2x cubic interpolation.

    Uses scikit-image's ``richardson_lucy`` with
    :func:`enhance.physics.hmi_psf` sampled at 0.504"/px [1]_ [2]_. RL needs a
    positive image: a constant ``offset`` (default: ``-min + 1e-3 * ptp`` when
    the image has non-positive values, e.g. Blos, else 0) is added before and
    subtracted after. The image is scaled to [0, 1] internally (scikit-image
    clips to that range) and scaled back. 20 iterations by default; more
    iterations amplify noise, which is the point the paper makes [1]_.
    """
    from enhance.physics import hmi_psf

    if iterations < 1:
        raise ConfigError(f"richardson_lucy needs iterations >= 1; got {iterations}")
    data, bad = _image(image)
    lo, hi = float(data.min()), float(data.max())
    if offset is None:
        offset = -lo + 1e-3 * (hi - lo) if lo <= 0 else 0.0
    shifted = data + offset
    scale = float(shifted.max()) or 1.0
    psf = hmi_psf(INPUT_SCALE, model=psf_model)
    pad = psf.shape[0] // 2
    padded = np.pad(shifted / scale, pad, mode="reflect")
    out = _skimage_rl(padded, psf, num_iter=int(iterations), clip=False)
    out = out[pad:-pad, pad:-pad] * scale - offset
    return _restore_nan(_upsample2(out), bad)
