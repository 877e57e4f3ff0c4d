"""Optical transfer functions and HMI's view of a 28 cm image.

An enhanced image is the Sun seen through a 28 cm diffraction-limited
aperture ([1]_), ``x28 = A * sky``, on the 0.252"/px grid. HMI saw
``H * sky``. In Fourier space ``H = (H / A) A`` wherever the 28 cm transfer
function ``A`` is non-zero, which covers the whole HMI passband (the 28 cm
cutoff is twice the 14 cm one), so HMI's view of the Sun follows from the
enhanced image alone: convolve it with the kernel whose transfer function is
``H / A`` and bin 2x2 (:func:`reobserve_target`). Convolving the enhanced
image with the full HMI PSF instead (:func:`enhance_hmi.physics.reobserve`,
the right operator for an image of the sky) blurs it by the 28 cm aperture
twice; for a continuum image that alone misses the HMI data by several
times its noise.

References
----------
.. [1] Díaz Baso, C. J. & Asensio Ramos, A. (2018), A&A 614, A5, Sect. 2.
.. [2] Born, M. & Wolf, E., *Principles of Optics*, Sect. 9.5 (transfer
   function of a circular aperture).
.. [3] Wachter, R. et al. (2012), Sol. Phys. 275, 261 (HMI PSF).
"""

from __future__ import annotations

import functools

import astropy.units as u
import numpy as np
import numpy.typing as npt
from scipy import fft as sfft

from enhance_hmi.errors import InputError
from enhance_hmi.physics.constants import (
    ENHANCED_PIXEL_SCALE,
    HMI_PIXEL_SCALE,
    HMI_WAVELENGTH,
    TARGET_APERTURE,
    to_arcsec,
    to_metre,
)
from enhance_hmi.physics.psf import DEFAULT_PSF_MODEL, hmi_psf

__all__ = [
    "aperture_otf",
    "binnable_image",
    "hmi_given_target_transfer",
    "point_sampling_gain",
    "radial_otf",
    "reobservation_padding",
    "reobserve_target",
]

#: Sampling of the PSFs whose transfer functions are tabulated, in units of
#: the enhanced pixel (fine enough that the tabulation's own pixel adds
#: < 1 % at the HMI cutoff).
_FINE = 4
#: ``A`` below this is treated as zero in ``H / A`` (only beyond ~1.9
#: cycles/arcsec, where ``H`` is already < 1e-4).
_FLOOR = 0.05
#: Floor of the HMI pixel's transfer function (``sinc(fy p) sinc(fx p)``, p =
#: 0.504") divided out by :func:`point_sampling_gain`: it falls below this only
#: beyond ~1.8 cycles/arcsec, where the HMI OTF is < 5e-5 for every PSF model.
_PIXEL_FLOOR = 0.1
#: Samples of the radial profile of ``H / A`` read off for every grid frequency
#: (linear interpolation between them changes the table by < 3e-5).
_RADIAL_SAMPLES = 1 << 16


def radial_otf(psf: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Azimuthally averaged modulus of a sampled PSF's transfer function.

    Parameters
    ----------
    psf : numpy.ndarray
        Square, centred PSF.
    scale : float
        Its pixel scale in arcsec.

    Returns
    -------
    (frequency, otf)
        Frequency in cycles per arcsec and the OTF (1 at zero frequency).
    """
    n = psf.shape[0]
    otf = np.abs(np.fft.fft2(np.fft.ifftshift(psf / psf.sum())))
    fy = np.fft.fftfreq(n, d=scale)
    rho = np.hypot(*np.meshgrid(fy, fy, indexing="ij"))
    step = 1.0 / (n * scale)
    index = np.rint(rho / step).astype(int).ravel()
    sums = np.bincount(index, otf.ravel())
    counts = np.bincount(index)
    keep = counts > 0
    return (np.arange(len(sums)) * step)[keep], (sums[keep] / counts[keep])


def aperture_otf(freq: np.ndarray, aperture_m: float, wavelength_m: float) -> np.ndarray:
    """Diffraction OTF of an unobstructed circular aperture [2]_ (freq in cycles/arcsec)."""
    cutoff = aperture_m / wavelength_m * np.pi / (180.0 * 3600.0)
    q = np.clip(np.asarray(freq, dtype=np.float64) / cutoff, 0.0, 1.0)
    return (2 / np.pi) * (np.arccos(q) - q * np.sqrt(1 - q**2))


def point_sampling_gain(
    fy: np.ndarray, fx: np.ndarray, *, pixel_scale: u.Quantity = HMI_PIXEL_SCALE
) -> np.ndarray:
    """Filter that turns a pixel-integrating 2x2-binning operator into a point-sampling one.

    An operator on the 0.252"/px grid that ends by averaging 2x2 blocks
    integrates the image over each 0.504" HMI pixel: its transfer function
    carries the pixel's ``sinc(fy p) sinc(fx p)`` (p = 0.504"), the transfer
    function of a square pixel [2]_. If the measured HMI PSF already includes
    the CCD pixel's own integration (the published PSFs [3]_ were fitted to
    pixelated HMI images, so either reading is plausible), the HMI image is
    the PSF-convolved sky *sampled* at the pixel centres, and the pixel must
    not be applied twice: multiplying the operator's transfer function by
    this gain divides the pixel's out (floored at 0.1, reached only where
    the HMI OTF is negligible).

    Parameters
    ----------
    fy, fx : numpy.ndarray
        Frequencies in cycles per arcsec (broadcastable).
    pixel_scale : `~astropy.units.Quantity`
        The HMI pixel (0.504").

    Returns
    -------
    numpy.ndarray
        ``1 / max(sinc(fy p) sinc(fx p), 0.1)``, broadcast over ``fy`` and ``fx``.
    """
    p = to_arcsec(pixel_scale, "pixel_scale")
    pixel = np.sinc(np.asarray(fy, dtype=np.float64) * p) * np.sinc(
        np.asarray(fx, dtype=np.float64) * p
    )
    gain: np.ndarray = 1.0 / np.maximum(pixel, _PIXEL_FLOOR)
    return gain


@functools.lru_cache(maxsize=8)
def _hmi_table(psf_model: str, scale: float) -> tuple[np.ndarray, np.ndarray]:
    fine = scale / _FINE
    return radial_otf(hmi_psf(fine * u.arcsec, model=psf_model), fine)


@functools.lru_cache(maxsize=4)
def hmi_given_target_transfer(
    shape: tuple[int, int],
    *,
    psf_model: str = DEFAULT_PSF_MODEL,
    pixel_scale: u.Quantity = ENHANCED_PIXEL_SCALE,
    aperture: u.Quantity = TARGET_APERTURE,
    wavelength: u.Quantity = HMI_WAVELENGTH,
    pixel_integration: bool = True,
) -> np.ndarray:
    """Transfer function ``H / A`` from a 28 cm image to HMI's view, for real FFTs.

    Parameters
    ----------
    shape : (int, int)
        Shape of the (padded) image grid at ``pixel_scale``.
    psf_model : str
        HMI PSF model of ``H`` (:func:`enhance_hmi.physics.hmi_psf`) [3]_.
    pixel_scale : `~astropy.units.Quantity`
        Pixel scale of the enhanced grid.
    aperture, wavelength : `~astropy.units.Quantity`
        The target telescope of ``A`` (28 cm; the wavelength the target was
        made at, 6173 Å for HMI-trained networks).
    pixel_integration : bool
        True (default): the HMI PSF does not include the CCD pixel, and the
        2x2 binning that follows integrates over the 0.504" pixel. False: the
        PSF already includes it, and the table carries
        :func:`point_sampling_gain` so that the binning point-samples.

    Returns
    -------
    numpy.ndarray
        float32 array of shape ``(shape[0], shape[1] // 2 + 1)``, real and
        even (its own adjoint), for ``scipy.fft.rfft2`` spectra; read-only,
        since the last few grids are kept (a batch of full disks builds the
        8640x4321-value table, ~1 s, once).
    """
    scale = to_arcsec(pixel_scale, "pixel_scale")
    freq, otf = _hmi_table(psf_model, scale)
    fy = np.fft.fftfreq(shape[0], d=scale)[:, None]
    fx = np.fft.rfftfreq(shape[1], d=scale)[None, :]
    rho = np.hypot(fy, fx)
    # the ratio is radial: tabulate it finely along the radius, then read it off
    # for every frequency of the grid (one interpolation instead of evaluating the
    # aperture OTF's arccos on ~10^7 points of a full-disk grid)
    radius = np.linspace(0.0, float(rho.max()), _RADIAL_SAMPLES)
    hmi = np.interp(radius, freq, otf, right=0.0)
    target = aperture_otf(
        radius, to_metre(aperture, "aperture"), to_metre(wavelength, "wavelength")
    )
    profile = np.where(target > _FLOOR, hmi / np.maximum(target, _FLOOR), 0.0)
    if pixel_integration:
        ratio: np.ndarray = np.interp(rho, radius, profile).astype(np.float32)
    else:
        ratio = (np.interp(rho, radius, profile) * point_sampling_gain(fy, fx)).astype(np.float32)
    ratio.flags.writeable = False  # cached: shared by every caller with this grid
    return ratio


def binnable_image(enhanced: object, dtype: npt.DTypeLike) -> np.ndarray:
    """``enhanced`` as a 2-D array of ``dtype`` cut to even sides, ready for 2x2 binning.

    Raises
    ------
    InputError
        Not 2-D, or smaller than 2x2.
    """
    data: np.ndarray = np.asarray(enhanced, dtype=dtype)
    if data.ndim != 2 or min(data.shape) < 2:
        raise InputError(f"enhanced image of shape {data.shape} is too small to bin 2x2")
    return data[: (data.shape[0] // 2) * 2, : (data.shape[1] // 2) * 2]


def reobservation_padding(shape: tuple[int, int], psf_model: str) -> tuple[tuple[int, int], ...]:
    """Mirror padding (before, after) per axis of :func:`reobserve_target` for an even ``shape``.

    Half the HMI kernel's width on the 2x grid before each axis, rounded to
    an even number of pixels, and at least as much after it, up to a length
    whose real FFT is fast.
    """
    pad = 2 * (hmi_psf(ENHANCED_PIXEL_SCALE, model=psf_model).shape[0] // 4)
    return tuple((pad, sfft.next_fast_len(n + 2 * pad, real=True) - n - pad) for n in shape)


def reobserve_target(
    enhanced: object,
    *,
    psf_model: str = DEFAULT_PSF_MODEL,
    wavelength: u.Quantity = HMI_WAVELENGTH,
    aperture: u.Quantity = TARGET_APERTURE,
    pixel_integration: bool = True,
) -> np.ndarray:
    """HMI's view of a 28 cm image on the 0.252"/px grid, at 0.504"/px.

    Convolves with the ``H / A`` kernel (:func:`hmi_given_target_transfer`)
    on a mirror-padded grid and bins 2x2. Non-finite pixels are filled with
    the mean of the finite ones for the convolution and give NaN in every
    output pixel whose 2x2 block holds one (pixels within ~2" of a NaN
    region are affected by the fill).

    Parameters
    ----------
    enhanced : array_like
        2-D enhanced image (continuum or Blos; any units).
    psf_model, wavelength, aperture, pixel_integration
        See :func:`hmi_given_target_transfer`.

    Returns
    -------
    numpy.ndarray
        float64, shape ``(ny // 2, nx // 2)`` (an odd last row/column is
        dropped).

    Raises
    ------
    InputError
        Not 2-D, smaller than 2x2, or no finite pixel.
    """
    data = binnable_image(enhanced, np.float64)
    ny, nx = data.shape
    finite = np.isfinite(data)
    if not finite.any():
        raise InputError("enhanced image has no finite pixels; nothing to re-observe")
    level = float(data[finite].mean())
    filled = np.where(finite, data, level) - level
    (pad, after_y), (_, after_x) = reobservation_padding((ny, nx), psf_model)
    padded = np.pad(filled, ((pad, after_y), (pad, after_x)), mode="symmetric")
    transfer = hmi_given_target_transfer(
        padded.shape,
        psf_model=psf_model,
        aperture=aperture,
        wavelength=wavelength,
        pixel_integration=pixel_integration,
    )
    spectrum = sfft.rfft2(padded, workers=-1) * transfer
    blurred = sfft.irfft2(spectrum, s=padded.shape, workers=-1)[pad : pad + ny, pad : pad + nx]
    binned: np.ndarray = blurred.reshape(ny // 2, 2, nx // 2, 2).mean(axis=(1, 3)) + level
    bad = ~finite.reshape(ny // 2, 2, nx // 2, 2).all(axis=(1, 3))
    binned[bad] = np.nan
    return binned
