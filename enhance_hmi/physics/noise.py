"""Noise level of an image estimated from the image alone.

Spatial frequencies above the diffraction cutoff of the telescope carry no
signal, only noise (and what aliasing folds there). The power of white
Gaussian noise at one frequency is exponentially distributed, so the median
power over those frequencies measures the noise variance robustly against
the few aliased outliers. Nothing here needs a truth image.
"""

from __future__ import annotations

import math

import astropy.units as u
import numpy as np
from scipy.ndimage import gaussian_filter

from enhance_hmi.errors import ConfigError, InputError
from enhance_hmi.physics.constants import HMI_APERTURE, HMI_PIXEL_SCALE, HMI_WAVELENGTH

__all__ = [
    "MAD_TO_SIGMA",
    "NOISE_ESTIMATES",
    "QUIET_SMOOTHING_PX",
    "QUIET_SUN_FRACTION_MIN",
    "QUIET_THRESHOLD",
    "check_noise_estimate",
    "diffraction_cutoff",
    "estimate_input_noise",
    "histogram_core_sigma",
    "hmi_noise_sigma",
    "input_noise",
    "noise_estimate_for",
    "quiet_sun_fraction",
    "resolve_noise_estimate",
    "spectral_noise_sigma",
]


#: Median absolute deviation to the standard deviation of a Gaussian.
MAD_TO_SIGMA = 1.4826


def diffraction_cutoff(aperture: u.Quantity, wavelength: u.Quantity) -> float:
    """Diffraction cutoff ``D / lambda`` of a circular aperture, in cycles per arcsec."""
    ratio = (aperture / wavelength).to_value(u.dimensionless_unscaled)
    return float(ratio * np.pi / (180.0 * 3600.0))


def spectral_noise_sigma(image: np.ndarray, *, psf_cutoff: float, pixel_scale: float) -> float:
    """White-noise standard deviation of an image from its spectrum beyond the optics' cutoff.

    ``|FFT|^2`` of white Gaussian noise of variance sigma^2 is exponentially
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
    width = float(MAD_TO_SIGMA * np.median(np.abs(values - centre)))
    for _ in range(rounds):
        core = values[np.abs(values - centre) <= clip * width]
        if core.size < 16:
            break
        centre = float(np.median(core))
        new = float(MAD_TO_SIGMA * np.median(np.abs(core - centre)))
        if new <= 0 or abs(new - width) <= 1e-3 * width:
            width = new if new > 0 else width
            break
        width = new
    return width


#: How the input noise of an HMI frame is estimated (:func:`estimate_input_noise`);
#: "auto" picks "histogram" or "spectral" per image.
NOISE_ESTIMATES = ("spectral", "histogram", "auto")

#: Quiet-Sun fraction (:func:`quiet_sun_fraction`) below which the histogram
#: core of a magnetogram measures field rather than noise: real HMI 720 s
#: magnetograms, whole disks and disk-centre crops, lie well above it, and
#: fields dominated by an active region (where the core is several times the
#: true noise) well below it; the measured fractions are in the docstring of
#: bench/quiet_sun_fraction.py.
QUIET_SUN_FRACTION_MIN = 0.5
#: Smoothing (pixels) and threshold (times the spectral noise) of the quiet-Sun test.
QUIET_SMOOTHING_PX = 1.0
QUIET_THRESHOLD = 3.0


def noise_estimate_for(observable: str) -> str:
    """The noise estimate used for an observable: "auto" for Blos, else "spectral"."""
    return "auto" if observable == "magnetogram" else "spectral"


def check_noise_estimate(how: str) -> None:
    """Raise :class:`ConfigError` unless ``how`` is one of :data:`NOISE_ESTIMATES`."""
    if how not in NOISE_ESTIMATES:
        raise ConfigError(
            f"unknown noise_estimate {how!r}; use one of {', '.join(NOISE_ESTIMATES)}"
        )


def _region_of(y: np.ndarray, region: np.ndarray | None) -> np.ndarray:
    """Finite pixels of ``y`` inside ``region`` (all finite pixels without one)."""
    finite = np.isfinite(y)
    if region is None:
        return finite
    if region.shape != y.shape:
        raise InputError(f"noise region {region.shape} does not match the image {y.shape}")
    return finite & region


def _spectral_input_noise(y: np.ndarray, usable: np.ndarray) -> float:
    """Spectral noise of the central half when it is all usable, else of the filled image.

    The central half of a full-disk frame lies on the disk, so no limb or
    fill adds power beyond the cutoff there. Pixels filled with the median
    carry no noise, so the filled image's estimate is scaled by the square
    root of the usable fraction (the white-noise power is proportional to
    the number of noisy pixels).
    """
    ny, nx = y.shape
    cy, cx = ny // 4, nx // 4
    centre = (slice(cy, ny - cy), slice(cx, nx - cx))
    if min(ny - 2 * cy, nx - 2 * cx) >= 64 and usable[centre].all():
        return hmi_noise_sigma(y[centre])
    level = float(np.median(y[usable]))
    return hmi_noise_sigma(np.where(usable, y, level)) / math.sqrt(float(usable.mean()))


def quiet_sun_fraction(observed: object, *, region: np.ndarray | None = None) -> float:
    """Fraction of a magnetogram's pixels that look like quiet Sun.

    A pixel counts as quiet Sun when its deviation from the image median,
    smoothed by a Gaussian of 1 pixel, is below 3 times the spectral noise
    of the image (:func:`hmi_noise_sigma`, of the central half when that is
    all data): the smoothing averages the noise down, so nearly every
    noise-only pixel passes while field a few times stronger than the noise
    does not. The histogram-core estimate measures the noise only when this
    fraction is large (:data:`QUIET_SUN_FRACTION_MIN`).

    Parameters
    ----------
    observed : array_like
        The magnetogram (2-D); NaN pixels are left out.
    region : numpy.ndarray of bool, optional
        The pixels that count (e.g. the disk without its limb,
        :meth:`enhance_hmi.physics.disk.SolarDisk.inside`); default every
        finite pixel.

    Raises
    ------
    InputError
        Not a 2-D image with at least 16 usable pixels.
    """
    y = np.asarray(observed, dtype=np.float64)
    if y.ndim != 2:
        raise InputError("quiet-Sun fraction needs a 2-D image with at least 16 finite pixels")
    usable = _region_of(y, region)
    if usable.sum() < 16:
        raise InputError("quiet-Sun fraction needs a 2-D image with at least 16 finite pixels")
    level = float(np.median(y[usable]))
    noise = _spectral_input_noise(y, usable)
    smooth = gaussian_filter(np.where(usable, y - level, 0.0), QUIET_SMOOTHING_PX)
    return float(np.mean(np.abs(smooth[usable]) < QUIET_THRESHOLD * noise))


def resolve_noise_estimate(
    observed: object,
    how: str,
    *,
    quiet_fraction: float | None = None,
    region: np.ndarray | None = None,
) -> str:
    """The estimate ``how`` names for this image: "auto" becomes "histogram" or "spectral".

    Parameters
    ----------
    observed : array_like
        The input image (2-D).
    how : {"spectral", "histogram", "auto"}
        A noise estimate of :data:`NOISE_ESTIMATES`.
    quiet_fraction : float, optional
        :func:`quiet_sun_fraction` of ``observed`` when the caller has it
        (it costs about 2 s on a 4096^2 frame); computed otherwise.
    region : numpy.ndarray of bool, optional
        The pixels that count (:func:`quiet_sun_fraction`).

    Returns
    -------
    str
        ``how`` itself unless it is "auto"; for "auto", "histogram" when at
        least :data:`QUIET_SUN_FRACTION_MIN` of the image is quiet Sun, else
        "spectral". The histogram core measures the noise of a mostly quiet
        magnetogram, including noise correlated between pixels, which the
        spectral level misses; where field dominates, the core measures
        field and the spectral level is the better estimate
        (docs/model_card.md, "Forward consistency").

    Raises
    ------
    ConfigError
        ``how`` is not one of :data:`NOISE_ESTIMATES`.
    """
    check_noise_estimate(how)
    if how != "auto":
        return how
    if quiet_fraction is None:
        quiet_fraction = quiet_sun_fraction(observed, region=region)
    return "histogram" if quiet_fraction >= QUIET_SUN_FRACTION_MIN else "spectral"


def estimate_input_noise(observed: object, how: str, *, region: np.ndarray | None = None) -> float:
    """The noise of an HMI input frame, estimated from the frame alone.

    The one definition of "the input noise" that the projection onto the
    input stops at and the per-frame quality figures are measured in.

    Parameters
    ----------
    observed : array_like
        The input image (2-D, input units), NaN where it has no value.
    how : {"spectral", "histogram"}
        "spectral": the white-noise level beyond HMI's cutoff
        (:func:`hmi_noise_sigma`, of the central half when that is all
        usable); right for continuum images. "histogram": the width of the
        core of the value histogram (:func:`histogram_core_sigma`); right
        for mostly quiet magnetograms, whose noise is not white. Resolve
        "auto" first (:func:`resolve_noise_estimate`).
    region : numpy.ndarray of bool, optional
        The pixels that count: for a full disk the disk without its limb,
        since hmi.M_720s keeps noisy values beyond the limb that are 5-10x
        the disk's noise (``../shared/data/INVENTORY.md``). Default every
        finite pixel.

    Raises
    ------
    ConfigError
        ``how`` is not "spectral" or "histogram".
    InputError
        Fewer than 16 usable pixels.
    """
    if how not in ("spectral", "histogram"):
        raise ConfigError(f"the input noise is estimated as spectral or histogram, not {how!r}")
    y = np.asarray(observed, dtype=np.float64)
    usable = _region_of(y, region)
    if usable.sum() < 16:
        raise InputError("the input noise needs at least 16 usable pixels")
    if how == "histogram":
        return histogram_core_sigma(y[usable])
    return _spectral_input_noise(y, usable)


def input_noise(
    observed: object, how: str, *, region: np.ndarray | None = None
) -> tuple[float, str]:
    """:func:`estimate_input_noise` after :func:`resolve_noise_estimate`: (noise, estimate used).

    ``how`` may be "auto"; the second value says what it resolved to
    ("histogram" or "spectral"), over the same ``region``.
    """
    source = resolve_noise_estimate(observed, how, region=region)
    return estimate_input_noise(observed, source, region=region), source
