"""The torch mirror of the input-noise estimate of :mod:`enhance_hmi.physics.noise`.

A frame enhanced on a GPU is projected onto its input there
(:mod:`enhance_hmi.inference.consistency`); the noise the projection stops at,
and the quiet-Sun fraction that picks its estimate, are computed on the
same device, so the host runs no median or FFT of the frame. Same
definitions, same arithmetic in float64: the spectral level beyond HMI's
cutoff (:func:`enhance_hmi.physics.noise.spectral_noise_sigma`), the histogram
core (:func:`enhance_hmi.physics.noise.histogram_core_sigma`) and the quiet-Sun
fraction (:func:`enhance_hmi.physics.noise.quiet_sun_fraction`, the share of
:func:`enhance_hmi.physics.diagnostics.quiet_sun_mask` whose 1 px Gaussian is
scipy's: truncated at 4 sigma, the edge pixel repeated). The results equal
the numpy ones within 1e-5 relative (tests/test_fulldisk.py and
tests/test_diagnostics.py hold them to it on the CPU).
"""

from __future__ import annotations

import math
from typing import Any

import astropy.units as u
import numpy as np
import torch

from enhance_hmi.errors import InputError
from enhance_hmi.inference.device_arrays import gaussian_filter, median
from enhance_hmi.physics.constants import HMI_APERTURE, HMI_PIXEL_SCALE, HMI_WAVELENGTH
from enhance_hmi.physics.noise import (
    MAD_TO_SIGMA,
    QUIET_SMOOTHING_PX,
    QUIET_SUN_FRACTION_MIN,
    QUIET_THRESHOLD,
    check_noise_estimate,
    diffraction_cutoff,
)

__all__ = ["input_noise_on", "quiet_sun_fraction_on"]


def _usable(y: torch.Tensor, region: np.ndarray | None) -> torch.Tensor:
    finite = torch.isfinite(y)
    if region is None:
        return finite
    if region.shape != tuple(y.shape):
        raise InputError(f"noise region {region.shape} does not match the image {tuple(y.shape)}")
    return finite & torch.from_numpy(np.ascontiguousarray(region, dtype=bool)).to(y.device)


def _hmi_spectral_sigma(data: torch.Tensor) -> float:
    """The torch mirror of :func:`enhance_hmi.physics.noise.hmi_noise_sigma` (finite, float64)."""
    ny, nx = data.shape
    scale = HMI_PIXEL_SCALE.to_value(u.arcsec)
    cutoff = diffraction_cutoff(HMI_APERTURE, HMI_WAVELENGTH)
    fy = torch.fft.fftfreq(ny, d=scale, dtype=torch.float64, device=data.device)[:, None]
    fx = torch.fft.fftfreq(nx, d=scale, dtype=torch.float64, device=data.device)[None, :]
    beyond = torch.hypot(fy, fx) > cutoff
    if int(beyond.sum()) < 16:
        raise InputError(
            f"image {tuple(data.shape)} is too small to estimate its noise from its spectrum"
        )
    power = torch.fft.fft2(data - data.mean()).abs() ** 2
    return math.sqrt(median(power[beyond]) / (math.log(2.0) * ny * nx))


def _spectral_input_noise(y: torch.Tensor, usable: torch.Tensor) -> float:
    """The torch mirror of the spectral input noise: central half if all usable, else all filled."""
    ny, nx = y.shape
    cy, cx = ny // 4, nx // 4
    centre = (slice(cy, ny - cy), slice(cx, nx - cx))
    if min(ny - 2 * cy, nx - 2 * cx) >= 64 and bool(usable[centre].all()):
        return _hmi_spectral_sigma(y[centre])
    level = median(y[usable])
    filled = torch.where(usable, y, level)
    return _hmi_spectral_sigma(filled) / math.sqrt(float(usable.double().mean()))


def _as_tensor(observed: object, device: Any) -> torch.Tensor:
    y = torch.as_tensor(np.asarray(observed, dtype=np.float64), device=device)
    if y.ndim != 2:
        raise InputError("the input noise needs a 2-D image")
    return y


def quiet_sun_fraction_on(
    observed: object, *, region: np.ndarray | None = None, device: Any = "cpu"
) -> float:
    """The torch mirror of :func:`enhance_hmi.physics.noise.quiet_sun_fraction`, on ``device``.

    Quiet: the deviation from the median, smoothed by 1 px, at most
    :data:`~enhance_hmi.physics.noise.QUIET_THRESHOLD` spectral noise sigmas
    (:func:`enhance_hmi.physics.diagnostics.quiet_sun_mask`, not grown).

    Raises
    ------
    InputError
        Not a 2-D image with at least 16 usable pixels.
    """
    y = _as_tensor(observed, device)
    usable = _usable(y, region)
    if int(usable.sum()) < 16:
        raise InputError("quiet-Sun fraction needs a 2-D image with at least 16 finite pixels")
    level = median(y[usable])
    noise = _spectral_input_noise(y, usable)
    smooth = gaussian_filter(torch.where(usable, y - level, 0.0), QUIET_SMOOTHING_PX)
    return float((smooth[usable].abs() <= QUIET_THRESHOLD * noise).double().mean())


def _histogram_core_sigma(values: torch.Tensor, clip: float = 3.0, rounds: int = 10) -> float:
    """The torch mirror of :func:`enhance_hmi.physics.noise.histogram_core_sigma` (1-D, float64)."""
    centre = median(values)
    width = MAD_TO_SIGMA * median((values - centre).abs())
    for _ in range(rounds):
        core = values[(values - centre).abs() <= clip * width]
        if core.numel() < 16:
            break
        centre = median(core)
        new = MAD_TO_SIGMA * median((core - centre).abs())
        if new <= 0 or abs(new - width) <= 1e-3 * width:
            width = new if new > 0 else width
            break
        width = new
    return width


def input_noise_on(
    observed: object,
    how: str,
    *,
    region: np.ndarray | None = None,
    quiet_fraction: float | None = None,
    device: Any = "cpu",
) -> tuple[float, str]:
    """The torch mirror of :func:`enhance_hmi.physics.noise.input_noise`: (noise, estimate used).

    Parameters
    ----------
    observed : array_like
        The input image (2-D, input units), NaN where it has no value.
    how : {"spectral", "histogram", "auto"}
        As :func:`enhance_hmi.physics.noise.input_noise`; "auto" picks
        "histogram" when at least
        :data:`enhance_hmi.physics.noise.QUIET_SUN_FRACTION_MIN` of the image is
        quiet Sun, else "spectral".
    region : numpy.ndarray of bool, optional
        The pixels that count; default every finite pixel.
    quiet_fraction : float, optional
        The quiet-Sun fraction when the caller has it ("auto" only).
    device : torch.device or str

    Raises
    ------
    ConfigError
        ``how`` is not one of :data:`enhance_hmi.physics.noise.NOISE_ESTIMATES`.
    InputError
        Fewer than 16 usable pixels.
    """
    check_noise_estimate(how)
    if how == "auto":
        if quiet_fraction is None:
            quiet_fraction = quiet_sun_fraction_on(observed, region=region, device=device)
        how = "histogram" if quiet_fraction >= QUIET_SUN_FRACTION_MIN else "spectral"
    y = _as_tensor(observed, device)
    usable = _usable(y, region)
    if int(usable.sum()) < 16:
        raise InputError("the input noise needs at least 16 usable pixels")
    if how == "histogram":
        return _histogram_core_sigma(y[usable]), how
    return _spectral_input_noise(y, usable), how
