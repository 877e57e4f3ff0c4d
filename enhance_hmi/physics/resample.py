"""Pixel-area (flux-conserving) resampling between regular grids.

An image is treated as piecewise constant over its pixels. Each output pixel
is the area-weighted mean of the input pixels it overlaps, so resampling
conserves the mean (and, scaled by pixel area, the total flux) and a
2x-coarser output is exactly the 2x2 block mean. This is the detector-pixel
integration of the forward model of Díaz Baso & Asensio Ramos (2018), Sect. 2,
as opposed to point sampling, which aliases.

The 2-D operation is separable: ``out = A_y @ image @ A_x.T`` with sparse
overlap matrices, which is exact for any (non-integer) scale ratio and costs
O(number of pixels).

References
----------
.. [1] Díaz Baso, C. J. & Asensio Ramos, A. (2018), A&A 614, A5, Sect. 2.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import cast

import numpy as np
from scipy import sparse

from enhance_hmi.errors import ConfigError, InputError

__all__ = ["resample", "overlap_matrix"]

# tolerance (in input pixels) for grid edges that land a rounding error outside the image
_EDGE_TOL = 1e-6


def overlap_matrix(n_in: int, n_out: int, *, step: float, offset: float = 0.0) -> sparse.csr_array:
    """Sparse 1-D pixel-overlap (area-weighted mean) matrix.

    Output pixel ``i`` covers input-pixel coordinates
    ``[offset + i*step, offset + (i+1)*step)``, where input pixel ``k`` covers
    ``[k, k+1)``. Row ``i`` holds the overlap lengths divided by ``step``, so
    every row sums to 1.

    Parameters
    ----------
    n_in, n_out : int
        Number of input and output pixels.
    step : float
        Output pixel size in input pixels (> 0).
    offset : float
        Input coordinate of the lower edge of output pixel 0.

    Returns
    -------
    scipy.sparse.csr_array
        Shape ``(n_out, n_in)``.

    Raises
    ------
    enhance_hmi.errors.InputError
        If the output grid extends beyond the input.
    """
    if not step > 0:
        raise ConfigError(f"resampling step must be positive; got {step}")
    end = offset + n_out * step
    if offset < -_EDGE_TOL or end > n_in + _EDGE_TOL * max(1.0, n_in):
        raise InputError(
            f"the output grid [{offset:g}, {end:g}) pixels lies outside the {n_in}-pixel input; "
            "use a smaller output shape or offset"
        )
    lo = np.clip(offset + np.arange(n_out) * step, 0.0, n_in)
    hi = np.clip(offset + (np.arange(n_out) + 1) * step, 0.0, n_in)
    width = math.ceil(step) + 1  # max number of input pixels one output pixel can touch
    k = np.floor(lo).astype(np.int64)[:, None] + np.arange(width)[None, :]
    overlap = np.minimum(hi[:, None], k + 1.0) - np.maximum(lo[:, None], k.astype(float))
    keep = (overlap > 0) & (k < n_in)
    rows = np.broadcast_to(np.arange(n_out)[:, None], k.shape)[keep]
    return sparse.csr_array(
        (overlap[keep] / step, (rows, k[keep])), shape=(n_out, n_in), dtype=np.float64
    )


def _pair(value: float | Sequence[float], name: str) -> tuple[float, float]:
    if np.ndim(value) == 0:
        scalar = float(cast(float, value))
        return scalar, scalar
    values = tuple(float(v) for v in cast(Sequence[float], value))
    if len(values) != 2:
        raise ConfigError(f"{name} must be a number or a (y, x) pair; got {value!r}")
    return values[0], values[1]


def resample(
    image: np.ndarray,
    *,
    factor: float | Sequence[float],
    offset: float | Sequence[float] = 0.0,
    shape: tuple[int, int] | None = None,
) -> np.ndarray:
    """Resample a 2-D image by pixel-area integration.

    Parameters
    ----------
    image : numpy.ndarray
        2-D array; NaN propagates to every output pixel it overlaps.
    factor : float or (float, float)
        Output pixels per input pixel along each axis, i.e. input pixel size
        divided by output pixel size: 0.5 bins 2x2, 2 doubles the sampling
        (each input pixel split into 2x2 equal pixels).
    offset : float or (float, float)
        Position of the outer corner of output pixel (0, 0), in input pixels
        (0 = the outer corner of input pixel (0, 0)).
    shape : (int, int), optional
        Output shape. Default: as many whole output pixels as fit in the
        input, ``floor((n - offset) * factor)`` per axis.

    Returns
    -------
    numpy.ndarray
        float64 array of ``shape``; every output pixel is the area-weighted
        mean of the input over its footprint, so the mean is conserved.

    Raises
    ------
    enhance_hmi.errors.InputError
        ``image`` is not 2-D or the requested grid does not fit inside it.
    enhance_hmi.errors.ConfigError
        Non-positive ``factor``.

    References
    ----------
    .. [1] Díaz Baso, C. J. & Asensio Ramos, A. (2018), A&A 614, A5, Sect. 2.
    """
    data = np.asarray(image, dtype=np.float64)
    if data.ndim != 2:
        raise InputError(f"resample needs a 2-D image; got an array of shape {data.shape}")
    fy, fx = _pair(factor, "factor")
    if not (fy > 0 and fx > 0 and math.isfinite(fy) and math.isfinite(fx)):
        raise ConfigError(f"resampling factor must be positive and finite; got {factor!r}")
    oy, ox = _pair(offset, "offset")
    if shape is None:
        shape = (
            max(0, math.floor((data.shape[0] - oy) * fy + 1e-9)),
            max(0, math.floor((data.shape[1] - ox) * fx + 1e-9)),
        )
    a_y = overlap_matrix(data.shape[0], int(shape[0]), step=1.0 / fy, offset=oy)
    a_x = overlap_matrix(data.shape[1], int(shape[1]), step=1.0 / fx, offset=ox)
    rows = a_y @ data  # (ny_out, nx_in)
    return np.ascontiguousarray((a_x @ rows.T).T)
