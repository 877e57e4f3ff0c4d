"""Forward model: truth scenes to HMI-like inputs and 28 cm targets, and back.

:func:`degrade` builds the training pairs of Díaz Baso & Asensio Ramos (2018),
Sect. 2: from a high-resolution "truth" image it makes

* the **input**, what HMI would record: truth convolved with the HMI PSF,
  integrated over 0.504" pixels (or, with ``pixel_integration=False``, for
  a PSF that already includes the CCD pixel, sampled at the pixel centres),
  plus Gaussian noise;
* the **target**, what a diffraction-limited 28 cm telescope would record:
  truth convolved with the Airy PSF (28 cm, 6173 Å by default), integrated
  over 0.252" pixels.

Both grids share one origin: the outer corner of truth pixel (0, 0). The truth
is cropped to the largest extent that is a whole number of input pixels, so
``target.shape == (2 * input.shape[0], 2 * input.shape[1])`` and input pixel
``i`` covers exactly the sky of target pixels ``2i`` and ``2i + 1``.

:func:`reobserve` is the forward operator used for forward consistency: an
enhanced image (0.252"/px) convolved with the HMI PSF and binned 2x2 should
give back the HMI input (to ~2-4 % in the paper).

References
----------
.. [1] Díaz Baso, C. J. & Asensio Ramos, A. (2018), "Enhancing SDO/HMI images
   using deep learning", A&A 614, A5, Sects. 2 and 4.
.. [2] Wachter, R. et al. (2012), Sol. Phys. 275, 261 (HMI PSF).
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import astropy.units as u
import numpy as np
from scipy import fft as sfft
from scipy import ndimage

from enhance_hmi.errors import CoarseTruthWarning, ConfigError, InputError
from enhance_hmi.physics.constants import (
    ENHANCED_PIXEL_SCALE,
    HMI_PIXEL_SCALE,
    HMI_WAVELENGTH,
    TARGET_APERTURE,
    to_arcsec,
    to_metre,
)
from enhance_hmi.physics.convolve import convolve_fft
from enhance_hmi.physics.psf import DEFAULT_PSF_MODEL, airy_psf, hmi_psf
from enhance_hmi.physics.resample import overlap_matrix, resample
from enhance_hmi.physics.transfer import point_sampling_gain

__all__ = ["DegradedPair", "degrade", "reobserve"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DegradedPair:
    """An HMI-like input and its 28 cm target made from one truth image.

    Attributes
    ----------
    input : numpy.ndarray
        HMI-like image at ``input_scale`` (float64, noise included).
    target : numpy.ndarray
        Diffraction-limited image at ``target_scale``, exactly twice the
        input shape.
    truth_scale, input_scale, target_scale : astropy.units.Quantity
        Pixel scales of the truth, input and target grids.
    wavelength, target_aperture : astropy.units.Quantity
        Airy PSF of the target.
    psf_model : str
        HMI PSF model of the input (see :func:`~enhance_hmi.physics.psf.hmi_psf`).
    noise_sigma : float
        Standard deviation of the Gaussian noise added to ``input``.
    boundary : str
        Boundary mode of the convolutions.
    truth_region : tuple of slice
        Truth pixels that contribute to the grids (the last row/column may be
        used only in part, see ``truth_extent``).
    truth_extent : tuple of float
        Size of the covered sky in truth pixels, ``input.shape * input_scale
        / truth_scale``, measured from the outer corner of truth pixel (0, 0).
    psf_parameters : dict or None
        Overrides of the HMI PSF parameters, if any.
    pixel_integration : bool
        True: the input integrates the PSF-convolved truth over each 0.504"
        pixel; False: it samples it at the pixel centres.
    """

    input: np.ndarray
    target: np.ndarray
    truth_scale: u.Quantity
    input_scale: u.Quantity
    target_scale: u.Quantity
    wavelength: u.Quantity
    target_aperture: u.Quantity
    psf_model: str
    noise_sigma: float
    boundary: str
    truth_region: tuple[slice, slice]
    truth_extent: tuple[float, float]
    psf_parameters: dict[str, Any] | None = None
    pixel_integration: bool = True


def _as_image(image: object, name: str) -> np.ndarray:
    data = np.asarray(image, dtype=np.float64)
    if data.ndim != 2 or data.size == 0:
        raise InputError(f"{name} must be a non-empty 2-D array; got shape {data.shape}")
    return data


def degrade(
    truth: np.ndarray,
    pixel_scale: u.Quantity,
    *,
    wavelength: u.Quantity = HMI_WAVELENGTH,
    psf_model: str = DEFAULT_PSF_MODEL,
    noise_sigma: float = 0.0,
    rng: np.random.Generator | int | None = None,
    target_aperture: u.Quantity = TARGET_APERTURE,
    input_scale: u.Quantity = HMI_PIXEL_SCALE,
    target_scale: u.Quantity = ENHANCED_PIXEL_SCALE,
    boundary: str = "symmetric",
    psf_parameters: Mapping[str, Any] | None = None,
    pixel_integration: bool = True,
) -> DegradedPair:
    """Make an HMI-like input and a 28 cm target from a high-resolution image.

    Long for its documentation of twelve options and their physics; the body is a short
    sequence of named steps.

    Parameters
    ----------
    truth : numpy.ndarray
        2-D high-resolution image (finite values), e.g. a MURaM snapshot
        (0.0662"/px) or a Hinode image (0.109"/px).
    pixel_scale : `~astropy.units.Quantity`
        Pixel scale of ``truth``. Should be finer than ``target_scale``.
    wavelength : `~astropy.units.Quantity`
        Wavelength of the target's Airy PSF (6173 Å; 6684 Å for Hinode
        SOT/BFI red continuum). The HMI PSF of the input is always at 6173 Å.
    psf_model : {"wachter", "wachter2012", "yeo", "airy14"}
        HMI PSF model of the input.
    noise_sigma : float
        Standard deviation of the Gaussian noise added to the input, in the
        units of ``truth`` (paper: 1e-3 quiet-Sun units for continuum, 1e-2 kG
        for Blos).
    rng : numpy.random.Generator or int, optional
        Noise generator or seed (``numpy.random.default_rng(rng)``).
    target_aperture : `~astropy.units.Quantity`
        Diameter of the target telescope (28 cm).
    input_scale, target_scale : `~astropy.units.Quantity`
        Output pixel scales (0.504" and 0.252"); ``target_scale`` must be half
        of ``input_scale``.
    boundary : {"symmetric", "reflect", "wrap", "edge"}
        Continuation of ``truth`` beyond its edges for the convolutions (see
        :mod:`enhance_hmi.physics.convolve`); "wrap" suits periodic simulation
        boxes. The default mirror keeps edges from darkening.
    psf_parameters : mapping, optional
        Overrides of the HMI PSF model parameters (see
        :func:`~enhance_hmi.physics.psf.hmi_psf`).
    pixel_integration : bool
        True (default): the HMI PSF does not include the CCD pixel, so the
        PSF-convolved truth is integrated over each 0.504" pixel. False: the
        measured PSF already includes the pixel's own integration, so the
        PSF-convolved truth is sampled at the input pixel centres (cubic
        spline interpolation of the truth-grid image, which the HMI PSF has
        made smooth on the truth's scale). See
        :mod:`enhance_hmi.physics.forward_family`.

    Returns
    -------
    DegradedPair
        ``.input`` and ``.target`` with ``target.shape == 2 * input.shape``,
        both on grids that start at the outer corner of truth pixel (0, 0).

    Raises
    ------
    enhance_hmi.errors.InputError
        ``truth`` is not 2-D, has NaN, or is smaller than one input pixel.
    enhance_hmi.errors.ConfigError
        Bad scales (no units, target not half the input), negative noise,
        unknown PSF model or boundary.

    Warns
    -----
    enhance_hmi.errors.CoarseTruthWarning
        ``pixel_scale`` is coarser than ``target_scale``.

    References
    ----------
    .. [1] Díaz Baso, C. J. & Asensio Ramos, A. (2018), A&A 614, A5, Sect. 2.
    """
    data = _as_image(truth, "truth")
    scale, s_in, s_t = _checked_scales(
        pixel_scale,
        input_scale=input_scale,
        target_scale=target_scale,
        wavelength=wavelength,
        target_aperture=target_aperture,
        noise_sigma=noise_sigma,
    )
    step = s_in / scale  # truth pixels per input pixel
    n_in = _input_shape(data.shape, step, scale=scale, s_in=s_in)
    hmi = hmi_psf(pixel_scale, model=psf_model, parameters=psf_parameters)
    airy = airy_psf(pixel_scale, aperture=target_aperture, wavelength=wavelength)
    blurred_hmi, blurred_airy = convolve_fft(data, [hmi, airy], boundary=boundary)
    low = (
        _integrate(blurred_hmi, n_in, step)
        if pixel_integration
        else _sample(blurred_hmi, n_in, step)
    )
    high = _integrate(blurred_airy, (2 * n_in[0], 2 * n_in[1]), step / 2.0)
    if noise_sigma > 0:
        low = low + np.random.default_rng(rng).normal(0.0, noise_sigma, size=low.shape)
    extent = (n_in[0] * step, n_in[1] * step)
    region = (
        slice(0, min(data.shape[0], math.ceil(extent[0] - 1e-9))),
        slice(0, min(data.shape[1], math.ceil(extent[1] - 1e-9))),
    )
    log.debug("degraded %s truth -> input %s, target %s", data.shape, low.shape, high.shape)
    return DegradedPair(
        input=low,
        target=high,
        truth_scale=scale * u.arcsec,
        input_scale=s_in * u.arcsec,
        target_scale=s_t * u.arcsec,
        wavelength=wavelength,
        target_aperture=target_aperture,
        psf_model=psf_model,
        noise_sigma=float(noise_sigma),
        boundary=boundary,
        truth_region=region,
        truth_extent=extent,
        psf_parameters=None if psf_parameters is None else dict(psf_parameters),
        pixel_integration=bool(pixel_integration),
    )


def _checked_scales(
    pixel_scale: u.Quantity,
    *,
    input_scale: u.Quantity,
    target_scale: u.Quantity,
    wavelength: u.Quantity,
    target_aperture: u.Quantity,
    noise_sigma: float,
) -> tuple[float, float, float]:
    """Truth, input and target pixel scales in arcsec after checking :func:`degrade`'s options.

    Warns with :class:`~enhance_hmi.errors.CoarseTruthWarning` (attributed to
    the caller of :func:`degrade`) when the truth is coarser than the target.
    """
    scale = to_arcsec(pixel_scale, "pixel_scale")
    s_in = to_arcsec(input_scale, "input_scale")
    s_t = to_arcsec(target_scale, "target_scale")
    to_metre(wavelength, "wavelength")
    to_metre(target_aperture, "target_aperture")
    if not math.isclose(2.0 * s_t, s_in, rel_tol=1e-9):
        raise ConfigError(
            f"target_scale ({s_t} arcsec) must be exactly half of input_scale ({s_in} arcsec) "
            "so that the target is 2x the input"
        )
    if not (noise_sigma >= 0 and math.isfinite(noise_sigma)):
        raise ConfigError(f"noise_sigma must be a finite number >= 0; got {noise_sigma!r}")
    if scale > s_t * (1 + 1e-9):
        warnings.warn(
            f"truth pixel scale {scale:.4f} arcsec is coarser than the {s_t:.4f} arcsec "
            "target grid: the target is not a faithful 28 cm image (use a finer truth)",
            CoarseTruthWarning,
            stacklevel=3,
        )
    return scale, s_in, s_t


def _input_shape(
    shape: tuple[int, ...], step: float, *, scale: float, s_in: float
) -> tuple[int, int]:
    """Whole input pixels of ``step`` truth pixels that fit in a truth image of ``shape``."""
    n_in = (math.floor(shape[0] / step + 1e-9), math.floor(shape[1] / step + 1e-9))
    if min(n_in) < 1:
        raise InputError(
            f"truth of shape {shape} at {scale} arcsec/px is smaller than one "
            f"{s_in} arcsec input pixel; give a larger image"
        )
    return n_in


def _integrate(image: np.ndarray, n: tuple[int, int], pix: float) -> np.ndarray:
    """Integrate ``image`` over an ``n``-pixel grid of ``pix`` image pixels per pixel."""
    a_y = overlap_matrix(image.shape[0], n[0], step=pix)
    a_x = overlap_matrix(image.shape[1], n[1], step=pix)
    return np.ascontiguousarray((a_x @ (a_y @ image).T).T)


def _sample(image: np.ndarray, n: tuple[int, int], pix: float) -> np.ndarray:
    """Sample ``image`` at the centres of an ``n``-pixel grid of ``pix`` image pixels per pixel.

    The grid starts at the outer corner of image pixel (0, 0), as in
    :func:`_integrate`: pixel ``i``'s centre is at image index
    ``(i + 1/2) pix - 1/2``.
    """
    yy = (np.arange(n[0]) + 0.5) * pix - 0.5
    xx = (np.arange(n[1]) + 0.5) * pix - 0.5
    coords = np.meshgrid(yy, xx, indexing="ij")
    sampled: np.ndarray = ndimage.map_coordinates(image, coords, order=3, mode="mirror")
    return sampled


def _unpixelate(blurred: np.ndarray, scale: float) -> np.ndarray:
    """Divide the 0.504" pixel out of a 0.252"/px image that will be binned 2x2.

    Multiplies the spectrum by :func:`~enhance_hmi.physics.transfer.point_sampling_gain`
    on a mirror-extended grid (twice the image per axis, so the periodic
    FFT has no edge jumps), so that the 2x2 binning that follows samples
    the image at the 0.504" pixel centres instead of integrating over them.
    """
    ny, nx = blurred.shape
    mirrored = np.pad(blurred, ((0, ny), (0, nx)), mode="symmetric")
    fy = np.fft.fftfreq(2 * ny, d=scale)[:, None]
    fx = np.fft.rfftfreq(2 * nx, d=scale)[None, :]
    spectrum = sfft.rfft2(mirrored) * point_sampling_gain(fy, fx, pixel_scale=2 * scale * u.arcsec)
    out: np.ndarray = sfft.irfft2(spectrum, s=mirrored.shape)[:ny, :nx]
    return out


def reobserve(
    enhanced: np.ndarray,
    *,
    psf_model: str = DEFAULT_PSF_MODEL,
    pixel_scale: u.Quantity = ENHANCED_PIXEL_SCALE,
    boundary: str = "symmetric",
    psf_parameters: Mapping[str, Any] | None = None,
    pixel_integration: bool = True,
) -> np.ndarray:
    """Forward operator: observe an enhanced image again with HMI.

    Convolves ``enhanced`` (0.252"/px) with the HMI PSF sampled at its pixel
    scale and bins 2x2 to 0.504"/px. Comparing the result with the HMI input
    is the forward-consistency metric of [1]_ (~2-4 % residual there).

    Parameters
    ----------
    enhanced : numpy.ndarray
        2-D image at ``pixel_scale``. NaN pixels (e.g. off-disk) are left out
        of the convolution (normalised convolution) and every output pixel
        whose 2x2 block holds a NaN is NaN.
    psf_model : {"wachter", "wachter2012", "yeo", "airy14"}
        HMI PSF model.
    pixel_scale : `~astropy.units.Quantity`
        Pixel scale of ``enhanced`` (0.252").
    boundary : str
        Boundary mode of the convolution (see :mod:`enhance_hmi.physics.convolve`).
    psf_parameters : mapping, optional
        Overrides of the HMI PSF model parameters (see
        :func:`~enhance_hmi.physics.psf.hmi_psf`).
    pixel_integration : bool
        True (default): the 2x2 binning integrates over the 0.504" pixel.
        False: the PSF already includes the pixel, and the binned image
        samples the PSF-convolved image at the pixel centres
        (:func:`~enhance_hmi.physics.transfer.point_sampling_gain`).

    Returns
    -------
    numpy.ndarray
        float64 array of shape ``(ny // 2, nx // 2)``; an odd last row/column
        is dropped.

    References
    ----------
    .. [1] Díaz Baso, C. J. & Asensio Ramos, A. (2018), A&A 614, A5.
    """
    data = _as_image(enhanced, "enhanced")
    if min(data.shape) < 2:
        raise InputError(f"enhanced image of shape {data.shape} is too small to bin 2x2")
    finite = np.isfinite(data)
    if not finite.any():
        raise InputError("enhanced image has no finite pixels; nothing to re-observe")
    psf = hmi_psf(pixel_scale, model=psf_model, parameters=psf_parameters)
    blurred = convolve_fft(data, psf, boundary=boundary, nan="interpolate")
    if not pixel_integration:
        blurred = _unpixelate(blurred, to_arcsec(pixel_scale, "pixel_scale"))
    blurred[~finite] = np.nan
    return resample(blurred, factor=0.5)
