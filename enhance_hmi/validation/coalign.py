"""Sub-pixel co-alignment of an enhanced image with a reference image.

References
----------
.. [1] Guizar-Sicairos, M. et al. (2008), Opt. Lett. 33, 156 (upsampled
   cross-correlation, as in ``skimage.registration.phase_cross_correlation``).
.. [2] Díaz Baso, C. J. & Asensio Ramos, A. (2018), A&A 614, A5, Sect. 4.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from skimage.registration import phase_cross_correlation

from enhance_hmi.errors import ReportError

__all__ = ["Alignment", "refine_shift", "apply_shift"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Alignment:
    """Shift (dy, dx) in pixels that moves ``moving`` onto ``reference``."""

    shift: tuple[float, float]
    error: float


def _prep(image: np.ndarray) -> np.ndarray:
    data = np.asarray(image, dtype=np.float64)
    ok = np.isfinite(data)
    if not ok.any():
        raise ReportError("cannot co-align an image without finite pixels")
    data = np.where(ok, data, np.median(data[ok]))
    data = data - data.mean()
    # Hann window against edge discontinuities of the periodic correlation.
    win = np.outer(np.hanning(data.shape[0]), np.hanning(data.shape[1]))
    return data * win


def refine_shift(reference: object, moving: object, *, upsample: int = 100) -> Alignment:
    """Sub-pixel shift by upsampled cross-correlation [1]_.

    Both images must be on the same grid (after WCS reprojection); the
    returned shift, applied with :func:`apply_shift` to ``moving``, aligns it
    with ``reference``.
    """
    ref, mov = np.asarray(reference), np.asarray(moving)
    if ref.shape != mov.shape or ref.ndim != 2:
        raise ReportError(
            f"co-alignment needs two 2-D images of one shape; got {ref.shape} and {mov.shape}"
        )
    shift, error, _ = phase_cross_correlation(
        _prep(ref), _prep(mov), upsample_factor=int(upsample), normalization=None
    )
    log.info("co-alignment shift dy=%.3f dx=%.3f px", shift[0], shift[1])
    return Alignment(shift=(float(shift[0]), float(shift[1])), error=float(error))


def apply_shift(image: object, shift: tuple[float, float]) -> np.ndarray:
    """Shift ``image`` by (dy, dx) pixels (cubic spline; vacated pixels NaN)."""
    data = np.asarray(image, dtype=np.float64)
    out = ndimage.shift(np.nan_to_num(data), shift, order=3, mode="constant", cval=np.nan)
    return out
