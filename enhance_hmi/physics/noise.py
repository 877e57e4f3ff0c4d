"""Noise level of an image estimated from the image alone.

Spatial frequencies above the diffraction cutoff of the telescope carry no
signal, only noise (and what aliasing folds there). The power of white
Gaussian noise at one frequency is exponentially distributed, so the median
power over those frequencies measures the noise variance robustly against
the few aliased outliers. Nothing here needs a truth image.

Here too: the noise of the input that the projection onto the input stops
at (:func:`input_noise`, given by the user as a Quantity:
:func:`parse_input_noise`, :func:`input_noise_in_data_units`), the
quiet-Sun fraction that picks its estimate, and the warnings about a given
noise or a field that does not fit. numpy, scipy and astropy only: a
settings object or a Snakefile reads them without loading torch.

References
----------
.. [1] Liu, Y. et al. (2012), "Comparison of line-of-sight magnetograms
   taken by SDO/HMI and SOHO/MDI", Sol. Phys. 279, 295 (noise as the width
   of the quiet-Sun histogram core).
.. [2] Rousseeuw, P. J. & Croux, C. (1993), J. Am. Stat. Assoc. 88, 1273
   (1.4826 MAD as a robust standard deviation).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from types import MappingProxyType

import astropy.units as u
import numpy as np

from enhance_hmi.errors import (
    ConfigError,
    FieldDominatedNoiseWarning,
    ImplausibleInputNoiseWarning,
    InputError,
)
from enhance_hmi.physics.constants import HMI_APERTURE, HMI_PIXEL_SCALE, HMI_WAVELENGTH
from enhance_hmi.physics.diagnostics import quiet_sun_mask, usable_pixels

__all__ = [
    "CADENCE_NOISE",
    "GIVEN_NOISE_FACTOR",
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
    "input_noise_in_data_units",
    "mad_sigma",
    "noise_estimate_for",
    "parse_input_noise",
    "quiet_sun_fraction",
    "resolve_noise_estimate",
    "spectral_noise_sigma",
    "warn_if_field_dominated",
    "warn_if_given_noise_implausible",
]


#: Input noise of real HMI frames by cadence, in network units (continuum:
#: quiet-Sun units; Blos: kG), for scoring at the noise of each product.
#: Magnetograms: ~15 G at 45 s (the JSOC series description of hmi.M_45s) and
#: ~10 G at 720 s (the noise Díaz Baso & Asensio Ramos 2018 trained with).
#: Continuum: no published per-cadence figure was found; 7e-4 and 4e-3 are the
#: ends of the range the shipped network was trained over, which spans both
#: (Immerkær's estimator gives 3.9e-3 on the bundled real HMI quiet-Sun
#: cut-out, an upper bound: it includes some granulation; a 720 s frame
#: averages many 45 s exposures).
CADENCE_NOISE: Mapping[str, Mapping[str, float]] = MappingProxyType(
    {
        "continuum": MappingProxyType({"720s": 7e-4, "45s": 4e-3}),
        "magnetogram": MappingProxyType({"720s": 1.0e-2, "45s": 1.5e-2}),
    }
)

#: Median absolute deviation to the standard deviation of a Gaussian [2]_.
MAD_TO_SIGMA = 1.4826


def _median_and_mad_sigma(values: np.ndarray) -> tuple[float, float]:
    """Median of 1-D ``values`` and their :data:`MAD_TO_SIGMA` x median absolute deviation."""
    centre = float(np.median(values))
    return centre, float(MAD_TO_SIGMA * np.median(np.abs(values - centre)))


def mad_sigma(image: object, mask: np.ndarray | None = None) -> float:
    """Robust standard deviation 1.4826 x MAD of an image over ``mask``.

    The plain robust width of the pixels of a quiet area (e.g.
    :func:`enhance_hmi.physics.diagnostics.quiet_sun_mask`); the input
    noise of the projection is the iterated :func:`histogram_core_sigma`.

    Parameters
    ----------
    image : array_like
        2-D image (any units); NaN pixels are left out.
    mask : numpy.ndarray of bool, optional
        The pixels that count; default every finite pixel.

    Raises
    ------
    InputError
        Not 2-D, or fewer than 2 finite pixels inside ``mask``.

    References
    ----------
    .. [1] Rousseeuw, P. J. & Croux, C. (1993), J. Am. Stat. Assoc. 88, 1273.
    """
    data = np.asarray(image, dtype=np.float64)
    if data.ndim != 2:
        raise InputError(f"the noise level needs a 2-D image; got shape {data.shape}")
    finite = np.isfinite(data)
    sel = finite if mask is None else (np.asarray(mask, bool) & finite)
    if sel.sum() < 2:
        raise InputError("the noise level needs at least 2 finite pixels inside the mask")
    return _median_and_mad_sigma(data[sel])[1]


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
    centre, width = _median_and_mad_sigma(values)
    for _ in range(rounds):
        core = values[np.abs(values - centre) <= clip * width]
        if core.size < 16:
            break
        centre, new = _median_and_mad_sigma(core)
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
    smoothed by a Gaussian of 1 pixel, is at most 3 times the spectral noise
    of the image (:func:`hmi_noise_sigma`, of the central half when that is
    all data): :func:`enhance_hmi.physics.diagnostics.quiet_sun_mask` with
    that threshold, not grown. The smoothing averages the noise down, so
    nearly every noise-only pixel passes while field a few times stronger
    than the noise does not. The histogram-core estimate measures the noise only when this
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
    usable = usable_pixels(y, region)
    if usable.sum() < 16:
        raise InputError("quiet-Sun fraction needs a 2-D image with at least 16 finite pixels")
    level = float(np.median(y[usable]))
    noise = _spectral_input_noise(y, usable)
    quiet = quiet_sun_mask(
        y,
        kind="blos",
        region=usable,
        field_threshold=QUIET_THRESHOLD * noise,
        field_zero=level,
        smooth=QUIET_SMOOTHING_PX,
        margin=0,
        min_fraction=0.0,
    )
    return float(np.mean(quiet[usable]))


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
    usable = usable_pixels(y, region)
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


#: Units of the input noise per observable: Blos in gauss, continuum in quiet-Sun units.
_NOISE_UNITS = {"magnetogram": u.G, "continuum": u.dimensionless_unscaled}


def parse_input_noise(value: object) -> u.Quantity:
    """Read an input noise given as text (``"10G"``, ``"1 mT"``, ``"0.002"``) or a number.

    A number without a unit is dimensionless. Which unit fits is checked
    against the observable by :func:`input_noise_in_data_units`.

    Raises
    ------
    ConfigError
        Not a number with an optional unit astropy reads.
    """
    if isinstance(value, u.Quantity):
        return value
    try:
        return u.Quantity(str(value).strip())
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"input noise {value!r} is not a number with a unit, e.g. 10G for a magnetogram "
            "or 0.002 (quiet-Sun units) for a continuum image"
        ) from exc


def input_noise_in_data_units(noise: object, observable: str) -> float:
    """The input noise as a float in the units of the data ``enhance`` works on.

    ``noise`` is a Quantity, or text or a number :func:`parse_input_noise`
    reads. Magnetograms are Blos in gauss, so ``noise`` must be a magnetic flux
    density (G, kG, mT, ...). Continuum images are in quiet-Sun units
    (:func:`enhance_hmi.io.read_hmi`), so ``noise`` must be dimensionless (a
    fraction of the quiet-Sun intensity: ``0.002`` or ``0.2 %``).

    Raises
    ------
    ConfigError
        A unit that does not fit the observable, or a value that is not
        positive and finite.
    """
    unit = _NOISE_UNITS.get(observable)
    if unit is None:
        raise ConfigError(f"no input-noise unit for observable {observable!r}")
    quantity = parse_input_noise(noise)
    if quantity.size != 1:
        raise ConfigError(f"input noise must be one value, got {quantity}")
    try:
        value = float(quantity.to_value(unit))
    except u.UnitConversionError as exc:
        if observable == "magnetogram":
            hint = "a magnetogram is in gauss: give e.g. 10G"
        else:
            hint = "a continuum image is in quiet-Sun units: give a plain fraction, e.g. 0.002"
        raise ConfigError(f"input noise {quantity} does not fit a {observable}; {hint}") from exc
    if not np.isfinite(value) or value <= 0:
        raise ConfigError(f"input noise must be positive and finite, got {quantity}")
    return value


#: A given input noise more than this factor above or below the frame's own
#: estimate draws :class:`~enhance_hmi.errors.ImplausibleInputNoiseWarning`: the
#: estimates of real frames differ from each other by 2-3x at most (histogram
#: core against spectral level, docs/model_card.md), a wrong unit by 1000x.
GIVEN_NOISE_FACTOR = 10.0


def warn_if_given_noise_implausible(
    observed: object,
    noise: float,
    *,
    estimate: str,
    region: np.ndarray | None = None,
    unit: str = "",
    stacklevel: int = 2,
) -> float | None:
    """Warn when a given input noise is far from the frame's own estimate.

    Parameters
    ----------
    observed : array_like
        The input image (2-D, data units).
    noise : float
        The given noise, in the same units.
    estimate : {"spectral", "histogram", "auto"}
        The frame's own estimate to compare with (the recipe's).
    region : numpy.ndarray of bool, optional
        The pixels that count (:func:`enhance_hmi.physics.disk.constraint_region`).
    unit : str
        Text after the numbers in the message (" G").
    stacklevel : int
        Of the warning, as for :func:`warnings.warn`.

    Returns
    -------
    float or None
        The frame's own estimate (None when it cannot be made);
        :class:`~enhance_hmi.errors.ImplausibleInputNoiseWarning` is issued when
        ``noise`` is more than :data:`GIVEN_NOISE_FACTOR` times above or
        below it.
    """
    try:
        own, source = input_noise(observed, estimate, region=region)
    except InputError:
        return None
    if own > 0 and not 1 / GIVEN_NOISE_FACTOR <= noise / own <= GIVEN_NOISE_FACTOR:
        effect = "barely acts" if noise > own else "fits the input's noise"
        warnings.warn(
            f"the given input noise {noise:.5g}{unit} is {noise / own:.3g} x this frame's own "
            f"{source} estimate ({own:.3g}{unit}): the projection onto the input then "
            f"{effect}; check its value and unit",
            ImplausibleInputNoiseWarning,
            stacklevel=stacklevel + 1,
        )
    return own


def warn_if_field_dominated(
    observed: object,
    *,
    estimate: str = "auto",
    region: np.ndarray | None = None,
    stacklevel: int = 2,
    quiet_fraction: float | None = None,
) -> float:
    """Warn when a magnetogram has too little quiet Sun for the histogram-core noise estimate.

    Parameters
    ----------
    observed : array_like
        The magnetogram (2-D).
    estimate : {"auto", "histogram"}
        The noise estimate the projection will use; the warning says what
        it does on such a field: "histogram" measures field (the projection
        barely acts), "auto" falls back to the spectral level, which is right
        for white noise but low for noise correlated between pixels (the
        projection then fits some noise).
    region : numpy.ndarray of bool, optional
        The pixels that count (:func:`enhance_hmi.physics.disk.constraint_region`); default every
        finite pixel.
    stacklevel : int
        Frame the warning is attributed to (:func:`warnings.warn`; 2: the caller).
    quiet_fraction : float, optional
        The quiet-Sun fraction when the caller has it (e.g. computed on the
        network's device,
        :func:`enhance_hmi.inference.device_noise.quiet_sun_fraction_on`).

    Returns
    -------
    float
        :func:`quiet_sun_fraction` of ``observed``; the warning
        (:class:`enhance_hmi.errors.FieldDominatedNoiseWarning`) is emitted when
        it is below :data:`QUIET_SUN_FRACTION_MIN`.
    """
    if estimate not in ("auto", "histogram"):
        raise ConfigError(
            f"the field-dominated check is for the auto or histogram estimate, not {estimate!r}"
        )
    fraction = (
        quiet_sun_fraction(observed, region=region) if quiet_fraction is None else quiet_fraction
    )
    if fraction < QUIET_SUN_FRACTION_MIN:
        if estimate == "histogram":
            consequence = (
                "the histogram-core noise estimate is dominated by field and the projection "
                "onto the input will be weak"
            )
        else:
            consequence = (
                "the noise for the projection onto the input is the spectral level, right "
                "for white noise but 2-3x low for the correlated noise of hmi.M_720s "
                "(bench/quiet_sun_fraction.py)"
            )
        warnings.warn(
            f"only {100 * fraction:.0f} % of the magnetogram is quiet Sun, so {consequence}; "
            "pass the input noise (enhance predict --input-noise 10G, "
            "enhance_frame(input_noise=10 * u.G) or the workflow's enhance.input_noise)",
            FieldDominatedNoiseWarning,
            stacklevel=stacklevel,
        )
    return fraction
