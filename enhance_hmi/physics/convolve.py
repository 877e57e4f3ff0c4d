"""FFT convolution of an image with centred PSF kernels, with explicit boundaries.

The image is padded by the kernel half-width on every side with a documented
boundary mode before the (linear, not circular) FFT convolution, and the
result is cropped back, so no zero padding darkens the edges. NaN pixels can
either be refused or filled by normalised convolution.

Boundary modes (``numpy.pad`` modes)
------------------------------------
``"symmetric"`` (default)
    Mirror about the outer pixel edge (``... c b a | a b c ...``). For a
    symmetric kernel this conserves the total flux of the image exactly and
    keeps a flat field flat up to the edges.
``"reflect"``
    Mirror about the outer pixel centre (``... c b | a b c ...``).
``"wrap"``
    Periodic continuation, right for horizontally periodic simulation boxes
    (e.g. MURaM, used by Díaz Baso & Asensio Ramos 2018 for training).
``"edge"``
    Repeat the outer pixel.

References
----------
.. [1] Díaz Baso, C. J. & Asensio Ramos, A. (2018), A&A 614, A5, Sect. 2
   (degradation of simulated images by PSF convolution).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Literal, cast, overload

import numpy as np
from scipy import fft

from enhance_hmi.errors import ConfigError, InputError

__all__ = ["convolve_fft", "BOUNDARY_MODES"]

log = logging.getLogger(__name__)

#: Accepted boundary modes of :func:`convolve_fft`.
BOUNDARY_MODES = ("symmetric", "reflect", "wrap", "edge")
#: The ``numpy.pad`` modes of :data:`BOUNDARY_MODES`.
_PadMode = Literal["symmetric", "reflect", "wrap", "edge"]


def _check_kernel(kernel: np.ndarray) -> np.ndarray:
    k = np.asarray(kernel, dtype=np.float64)
    if k.ndim != 2 or k.shape[0] % 2 == 0 or k.shape[1] % 2 == 0:
        raise ConfigError(f"PSF kernels must be 2-D with odd sides (a centre pixel); got {k.shape}")
    if not np.all(np.isfinite(k)):
        raise ConfigError("PSF kernel contains NaN or infinite values")
    return k


def _kernel_spectrum(kernel: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """rfft2 of ``kernel`` embedded in ``shape`` with its centre moved to (0, 0)."""
    hy, hx = kernel.shape[0] // 2, kernel.shape[1] // 2
    embedded = np.zeros(shape)
    embedded[: kernel.shape[0], : kernel.shape[1]] = kernel
    embedded = np.roll(embedded, (-hy, -hx), axis=(0, 1))
    spectrum: np.ndarray = fft.rfft2(embedded)
    return spectrum


@overload
def convolve_fft(
    image: np.ndarray,
    kernels: np.ndarray,
    *,
    boundary: str = ...,
    nan: str = ...,
) -> np.ndarray: ...


@overload
def convolve_fft(
    image: np.ndarray,
    kernels: Sequence[np.ndarray],
    *,
    boundary: str = ...,
    nan: str = ...,
) -> list[np.ndarray]: ...


def convolve_fft(
    image: np.ndarray,
    kernels: np.ndarray | Sequence[np.ndarray],
    *,
    boundary: str = "symmetric",
    nan: str = "raise",
) -> np.ndarray | list[np.ndarray]:
    """Convolve ``image`` with one or several centred kernels via FFT.

    Parameters
    ----------
    image : numpy.ndarray
        2-D image.
    kernels : numpy.ndarray or sequence of numpy.ndarray
        Odd-sided kernels whose centre pixel is the origin (as returned by
        :func:`~enhance_hmi.physics.psf.hmi_psf` and
        :func:`~enhance_hmi.physics.psf.airy_psf`). Several kernels share one
        forward transform of the image.
    boundary : {"symmetric", "reflect", "wrap", "edge"}
        How the image is continued beyond its edges (see module notes).
        Kernels wider than the image are allowed (the continuation repeats).
    nan : {"raise", "interpolate"}
        ``"raise"``: refuse images with non-finite pixels.
        ``"interpolate"``: normalised convolution, i.e. each output pixel is
        the kernel-weighted mean of the finite input pixels; the output is
        finite wherever the kernel footprint holds any finite pixel (callers
        put NaN back where they need it).

    Returns
    -------
    numpy.ndarray or list of numpy.ndarray
        float64 array(s) of the image's shape; a list when ``kernels`` is a
        sequence.

    Raises
    ------
    enhance_hmi.errors.InputError
        Not 2-D, or non-finite pixels with ``nan="raise"``.
    enhance_hmi.errors.ConfigError
        Unknown ``boundary`` or ``nan`` mode, bad kernel.
    """
    data = _check_image(image, boundary=boundary, nan=nan)
    single = isinstance(kernels, np.ndarray)
    if isinstance(kernels, np.ndarray):
        ks = [_check_kernel(kernels)]
    else:
        ks = [_check_kernel(k) for k in kernels]
    if not ks:
        raise ConfigError("no kernel given to convolve_fft")
    finite = np.isfinite(data)
    if nan == "raise" and not finite.all():
        raise InputError(
            f"image has {int((~finite).sum())} NaN/infinite pixels; crop or fill them first "
            "(or use nan='interpolate')"
        )
    out = _convolve_all(data, ks, cast(_PadMode, boundary))
    return out[0] if single else out


def _check_image(image: np.ndarray, *, boundary: str, nan: str) -> np.ndarray:
    """``image`` as float64 after checking its shape and the ``boundary`` and ``nan`` modes."""
    data = np.asarray(image, dtype=np.float64)
    if data.ndim != 2 or data.size == 0:
        raise InputError(f"convolution needs a non-empty 2-D image; got shape {data.shape}")
    if boundary not in BOUNDARY_MODES:
        raise ConfigError(f"unknown boundary mode {boundary!r}; choose one of {BOUNDARY_MODES}")
    if nan not in ("raise", "interpolate"):
        raise ConfigError(f"unknown nan treatment {nan!r}; choose 'raise' or 'interpolate'")
    return data


def _convolve_all(data: np.ndarray, ks: list[np.ndarray], boundary: _PadMode) -> list[np.ndarray]:
    """Convolve checked ``data`` with each checked kernel of ``ks``, one image transform."""
    finite = np.isfinite(data)
    has_nan = not finite.all()
    hy = max(k.shape[0] // 2 for k in ks)
    hx = max(k.shape[1] // 2 for k in ks)
    pad = ((hy, hy), (hx, hx))
    shape = (
        fft.next_fast_len(data.shape[0] + 2 * hy, real=True),
        fft.next_fast_len(data.shape[1] + 2 * hx, real=True),
    )
    filled = np.where(finite, data, 0.0) if has_nan else data
    spectrum = fft.rfft2(np.pad(filled, pad, mode=boundary), s=shape)
    weight_spectrum = None
    if has_nan:
        weight_spectrum = fft.rfft2(np.pad(finite.astype(np.float64), pad, mode=boundary), s=shape)
    crop = (slice(hy, hy + data.shape[0]), slice(hx, hx + data.shape[1]))
    out = []
    for k in ks:
        k_spec = _kernel_spectrum(k, shape)
        result = fft.irfft2(spectrum * k_spec, s=shape)[crop]
        if weight_spectrum is not None:
            weight = fft.irfft2(weight_spectrum * k_spec, s=shape)[crop]
            tiny = 1e-9 * float(np.abs(k).sum())
            result = np.where(weight > tiny, result / np.where(weight > tiny, weight, 1.0), np.nan)
        out.append(np.ascontiguousarray(result))
    log.debug("convolved %s image with %d kernel(s), FFT %s", data.shape, len(ks), shape)
    return out
