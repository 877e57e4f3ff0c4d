"""Noise level of an image estimated from the image alone.

Spatial frequencies above the diffraction cutoff of the telescope carry no
signal, only noise (and what aliasing folds there). The power of white
Gaussian noise at one frequency is exponentially distributed, so the median
power over those frequencies measures the noise variance robustly against
the few aliased outliers. Nothing here needs a truth image.
"""

from __future__ import annotations

import astropy.units as u
import numpy as np

from enhance.errors import InputError
from enhance.physics.constants import HMI_APERTURE, HMI_PIXEL_SCALE, HMI_WAVELENGTH

__all__ = ["diffraction_cutoff", "histogram_core_sigma", "hmi_noise_sigma", "spectral_noise_sigma"]


def diffraction_cutoff(aperture: u.Quantity, wavelength: u.Quantity) -> float:
    """Diffraction cutoff ``D / lambda`` of a circular aperture, in cycles per arcsec."""
    ratio = (aperture / wavelength).to_value(u.dimensionless_unscaled)
    return float(ratio * np.pi / (180.0 * 3600.0))


def spectral_noise_sigma(image: np.ndarray, *, psf_cutoff: float, pixel_scale: float) -> float:
    """White-noise standard deviation of an image from its spectrum beyond the optics' cutoff.

    |FFT|^2 of white Gaussian noise of variance sigma^2 is exponentially
    distributed with mean ``N sigma^2`` (N pixels), so its median over the
    frequencies beyond ``psf_cutoff`` divided by ``N ln 2`` estimates
    sigma^2. Non-finite pixels are replaced by the median of the finite
    ones first (their blocks then add a little low-frequency power only).

    Parameters
    ----------
    image : numpy.ndarray
        2-D image.
    psf_cutoff : float
        Diffraction cutoff of the optics, cycles per arcsec
        (:func:`diffraction_cutoff`).
    pixel_scale : float
        Pixel scale of ``image``, arcsec.

    Raises
    ------
    InputError
        Not a 2-D image with finite pixels, or fewer than 16 frequencies
        beyond the cutoff (image too small, or the cutoff above the corner
        Nyquist frequency).
    """
    data = np.asarray(image, dtype=np.float64)
    if data.ndim != 2:
        raise InputError(f"noise estimate needs a 2-D image; got shape {data.shape}")
    finite = np.isfinite(data)
    if not finite.any():
        raise InputError("noise estimate needs finite pixels; the image has none")
    if not finite.all():
        data = np.where(finite, data, np.median(data[finite]))
    ny, nx = data.shape
    fy = np.fft.fftfreq(ny, d=pixel_scale)[:, None]
    fx = np.fft.fftfreq(nx, d=pixel_scale)[None, :]
    beyond = np.hypot(fy, fx) > psf_cutoff
    if beyond.sum() < 16:
        raise InputError(f"image {data.shape} is too small to estimate its noise from its spectrum")
    power = np.abs(np.fft.fft2(data - data.mean())) ** 2
    return float(np.sqrt(np.median(power[beyond]) / (np.log(2.0) * ny * nx)))


def hmi_noise_sigma(image: object) -> float:
    """:func:`spectral_noise_sigma` of an HMI image (0.504"/px, 14 cm at 6173 Å).

    Returns the noise in the image's own units.
    """
    return spectral_noise_sigma(
        np.asarray(image, dtype=np.float64),
        psf_cutoff=diffraction_cutoff(HMI_APERTURE, HMI_WAVELENGTH),
        pixel_scale=HMI_PIXEL_SCALE.to_value(u.arcsec),
    )


def histogram_core_sigma(image: object, *, clip: float = 3.0, rounds: int = 10) -> float:
    """Standard deviation of the Gaussian core of an image's value histogram.

    The noise of a magnetogram is quoted as the width of the core of its
    histogram over the quiet Sun, where weak fields and noise dominate [1]_:
    1.4826 x the median absolute deviation, re-measured over the pixels
    within ``clip`` widths of the median until it settles. Unlike
    :func:`spectral_noise_sigma` it does not assume the noise is white (the
    HMI 720 s magnetograms are averages of filtergrams interpolated in space
    and time, which reddens their noise), and it counts the unresolved weak
    field as noise.

    Parameters
    ----------
    image : array_like
        Blos image (any units); NaN pixels are left out.
    clip : float
        Core half-width in units of the current width.
    rounds : int
        Re-measurements at most.

    Raises
    ------
    InputError
        Fewer than 16 finite pixels.

    References
    ----------
    .. [1] Liu, Y. et al. (2012), "Comparison of line-of-sight magnetograms
       taken by SDO/HMI and SOHO/MDI", Sol. Phys. 279, 295.
    """
    values = np.asarray(image, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size < 16:
        raise InputError("histogram noise estimate needs at least 16 finite pixels")
    centre = float(np.median(values))
    width = float(1.4826 * np.median(np.abs(values - centre)))
    for _ in range(rounds):
        core = values[np.abs(values - centre) <= clip * width]
        if core.size < 16:
            break
        centre = float(np.median(core))
        new = float(1.4826 * np.median(np.abs(core - centre)))
        if new <= 0 or abs(new - width) <= 1e-3 * width:
            width = new if new > 0 else width
            break
        width = new
    return width
