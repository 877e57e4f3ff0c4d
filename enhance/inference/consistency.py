"""Forward consistency of an enhanced image with the HMI data it came from.

HMI's view of an enhanced (28 cm, 0.252"/px) image, the kernel with HMI's
transfer function over the 28 cm one followed by 2x2 binning
(:func:`enhance.physics.transfer.reobserve_target`), should give back the
input within its noise [1]_. A network fills in detail it learned; nothing in a
single forward pass forces it to agree with the particular input. The
projection here makes it agree: starting from the network output ``x0`` it
runs conjugate-gradient least squares (CGLS) on ``min ||R x - y||`` and
stops, by the discrepancy principle [2]_, at the first iterate whose
residual is within ``discrepancy`` times the input noise. CGLS started
at ``x0`` changes ``x0`` only inside the Krylov space of ``R^T R``, the
directions the data determine best (large scales first), and early
stopping keeps it from fitting the noise; the detail the data cannot
determine stays the network's. It is iterative back-projection with the
adjoint of the forward model as the back-projection operator and
conjugate-gradient steps.

The operator is applied on a margin-padded grid with FFTs (the PSF wraps
into the margin only, and its adjoint is exact there); pixels outside the
data (NaN in the input or the output, and the margin) do not constrain
the solution.

References
----------
.. [1] Díaz Baso, C. J. & Asensio Ramos, A. (2018), A&A 614, A5, Sect. 4
   (forward consistency of the network output).
.. [2] Morozov, V. A. (1966), Soviet Math. Dokl. 7, 414; Hansen, P. C.
   (2010), *Discrete Inverse Problems*, SIAM, Ch. 6 (CGLS and early
   stopping as regularisation).
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass

import astropy.units as u
import numpy as np
from scipy import fft as sfft
from scipy.ndimage import gaussian_filter

from enhance.errors import ConfigError, FieldDominatedNoiseWarning, InputError
from enhance.physics import ENHANCED_PIXEL_SCALE, hmi_psf, psf_model_of
from enhance.physics.noise import histogram_core_sigma, hmi_noise_sigma
from enhance.physics.transfer import hmi_given_target_transfer

__all__ = [
    "NOISE_ESTIMATES",
    "NOISE_SOURCES",
    "QUIET_SUN_FRACTION_MIN",
    "Projection",
    "input_noise_in_data_units",
    "noise_estimate_for",
    "parse_input_noise",
    "project_as_recipe",
    "project_to_observation",
    "quiet_sun_fraction",
    "recipe_noise_estimate",
    "resolve_noise_estimate",
    "warn_if_field_dominated",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Projection:
    """What :func:`project_to_observation` did.

    Attributes
    ----------
    noise : float
        Input noise used for the stopping rule (input units).
    residual_before, residual_after : float
        rms of ``reobserve(x) - y`` over the valid input pixels, input units.
    iterations : int
        CGLS iterations run (0: the input was already consistent).
    converged : bool
        The residual reached ``discrepancy * noise``.
    discrepancy : float
        The stopping threshold in units of the noise.
    noise_source : {"given", "spectral", "histogram"}
        Where ``noise`` came from: the caller, or the estimate of that name
        (no default: a projection whose noise has no stated origin is not
        one the caller gave).
    """

    noise: float
    residual_before: float
    residual_after: float
    iterations: int
    converged: bool
    discrepancy: float
    noise_source: str


class _ForwardModel:
    """HMI's view of a 28 cm image (``H / A`` kernel, 2x2 mean) and its exact adjoint.

    Works on a grid padded by ``margin`` input pixels per side (FFT-periodic
    on the padded grid), float32.
    """

    def __init__(self, shape_in: tuple[int, int], margin: int, psf_model: str) -> None:
        ny, nx = shape_in
        self.fine = (2 * (ny + 2 * margin), 2 * (nx + 2 * margin))
        self.otf = hmi_given_target_transfer(self.fine, psf_model=psf_model)

    def _convolve(self, x: np.ndarray) -> np.ndarray:
        spectrum = sfft.rfft2(x, workers=-1) * self.otf
        return sfft.irfft2(spectrum, s=x.shape, workers=-1).astype(np.float32, copy=False)

    def forward(self, x: np.ndarray) -> np.ndarray:
        blurred = self._convolve(x)
        my, mx = blurred.shape[0] // 2, blurred.shape[1] // 2
        return blurred.reshape(my, 2, mx, 2).mean(axis=(1, 3))

    def adjoint(self, r: np.ndarray) -> np.ndarray:
        up = np.repeat(np.repeat(r, 2, axis=0), 2, axis=1) * np.float32(0.25)
        return self._convolve(up)  # the transfer function is real and even


#: How the input noise is estimated (see :func:`project_to_observation`); "auto"
#: picks "histogram" or "spectral" per image.
NOISE_ESTIMATES = ("spectral", "histogram", "auto")
#: Where the noise of a :class:`Projection` came from ("auto" resolves to one of the two).
NOISE_SOURCES = ("given", "spectral", "histogram")

#: Quiet-Sun fraction (:func:`quiet_sun_fraction`) below which the histogram
#: core of a magnetogram measures field rather than noise: real HMI 720 s
#: magnetograms, whole disks and disk-centre crops, lie well above it, and
#: fields dominated by an active region (where the core is several times the
#: true noise) well below it; the measured fractions are in the docstring of
#: bench/quiet_sun_fraction.py.
QUIET_SUN_FRACTION_MIN = 0.5
#: Smoothing (pixels) and threshold (times the spectral noise) of the quiet-Sun test.
_QUIET_SMOOTHING_PX = 1.0
_QUIET_THRESHOLD = 3.0

#: Units of the input noise per observable: Blos in gauss, continuum in quiet-Sun units.
_NOISE_UNITS = {"magnetogram": u.G, "continuum": u.dimensionless_unscaled}


def noise_estimate_for(observable: str) -> str:
    """The noise estimate used for an observable: "auto" for Blos, else "spectral"."""
    return "auto" if observable == "magnetogram" else "spectral"


def recipe_noise_estimate(meta: dict) -> str:
    """The noise estimate a weights sidecar records (``inference.consistency_noise_estimate``).

    Default: :func:`noise_estimate_for` the sidecar's observable.
    """
    recipe = meta.get("inference", {})
    return str(recipe.get("consistency_noise_estimate", noise_estimate_for(meta["observable"])))


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


def input_noise_in_data_units(noise: u.Quantity, observable: str) -> float:
    """The input noise as a float in the units of the data ``enhance`` works on.

    Magnetograms are Blos in gauss, so ``noise`` must be a magnetic flux
    density (G, kG, mT, ...). Continuum images are in quiet-Sun units
    (:func:`enhance.io.read_hmi`), so ``noise`` must be dimensionless (a
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


def quiet_sun_fraction(observed: object) -> float:
    """Fraction of a magnetogram's finite pixels that look like quiet Sun.

    A pixel counts as quiet Sun when its deviation from the image median,
    smoothed by a Gaussian of 1 pixel, is below 3 times the spectral noise
    of the image (:func:`enhance.physics.noise.hmi_noise_sigma`, of the
    central half when that is all data): the smoothing averages the noise
    down, so nearly every noise-only pixel passes while field a few times
    stronger than the noise does not. The histogram-core estimate measures the noise only
    when this fraction is large (:data:`QUIET_SUN_FRACTION_MIN`).

    Raises
    ------
    InputError
        Not a 2-D image with at least 16 finite pixels.
    """
    y = np.asarray(observed, dtype=np.float64)
    finite = np.isfinite(y)
    if y.ndim != 2 or finite.sum() < 16:
        raise InputError("quiet-Sun fraction needs a 2-D image with at least 16 finite pixels")
    level = float(np.median(y[finite]))
    noise = _input_noise(y, level, "spectral")
    smooth = gaussian_filter(np.where(finite, y - level, 0.0), _QUIET_SMOOTHING_PX)
    return float(np.mean(np.abs(smooth[finite]) < _QUIET_THRESHOLD * noise))


def warn_if_field_dominated(
    observed: object, *, estimate: str = "auto", stacklevel: int = 2
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
    stacklevel : int
        Frame the warning is attributed to (:func:`warnings.warn`; 2: the caller).

    Returns
    -------
    float
        :func:`quiet_sun_fraction` of ``observed``; the warning
        (:class:`enhance.errors.FieldDominatedNoiseWarning`) is emitted when
        it is below :data:`QUIET_SUN_FRACTION_MIN`.
    """
    if estimate not in ("auto", "histogram"):
        raise ConfigError(
            f"the field-dominated check is for the auto or histogram estimate, not {estimate!r}"
        )
    fraction = quiet_sun_fraction(observed)
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


def _check_noise_estimate(how: str) -> None:
    """Raise :class:`ConfigError` unless ``how`` is one of :data:`NOISE_ESTIMATES`."""
    if how not in NOISE_ESTIMATES:
        raise ConfigError(
            f"unknown noise_estimate {how!r}; use one of {', '.join(NOISE_ESTIMATES)}"
        )


def resolve_noise_estimate(
    observed: object, how: str, *, quiet_fraction: float | None = None
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

    Returns
    -------
    str
        ``how`` itself unless it is "auto"; for "auto", "histogram" when at
        least :data:`QUIET_SUN_FRACTION_MIN` of the image is quiet Sun
        (:func:`quiet_sun_fraction`), else "spectral". The histogram core
        measures the noise of a mostly quiet magnetogram, including noise
        correlated between pixels, which the spectral level misses; where
        field dominates, the core measures field and the spectral level
        is the better estimate (docs/model_card.md, "Forward consistency").

    Raises
    ------
    ConfigError
        ``how`` is not one of :data:`NOISE_ESTIMATES`.
    """
    _check_noise_estimate(how)
    if how != "auto":
        return how
    if quiet_fraction is None:
        quiet_fraction = quiet_sun_fraction(observed)
    return "histogram" if quiet_fraction >= QUIET_SUN_FRACTION_MIN else "spectral"


def _input_noise(y: np.ndarray, level: float, how: str) -> float:
    """Noise of the input: histogram core, or spectrum of the central half if it is all data.

    The central half of a full-disk frame lies on the disk; the limb, where
    off-disk pixels would be filled, then adds no power beyond the cutoff.
    """
    if how == "histogram":
        return histogram_core_sigma(y)
    ny, nx = y.shape
    half = (ny // 4, nx // 4)
    centre = y[half[0] : ny - half[0], half[1] : nx - half[1]]
    if min(centre.shape) >= 64 and np.isfinite(centre).all():
        return hmi_noise_sigma(centre)
    return hmi_noise_sigma(np.where(np.isfinite(y), y, level))


def project_to_observation(
    enhanced: object,
    observed: object,
    *,
    noise: float | None = None,
    discrepancy: float = 1.1,
    max_iterations: int = 25,
    psf_model: str = "wachter",
    border: int = 2,
    noise_estimate: str = "spectral",
) -> tuple[np.ndarray, Projection]:
    """Make an enhanced image consistent with its HMI input, within the noise.

    Parameters
    ----------
    enhanced : array_like
        Enhanced image on the 0.252"/px grid, shape ``(2 ny, 2 nx)``.
    observed : array_like
        The HMI input at 0.504"/px, shape ``(ny, nx)``, same units.
    noise : float, optional
        Input noise (standard deviation, input units); default: estimated
        from the input alone, as ``noise_estimate`` says.
    discrepancy : float
        Stop when the rms residual is at most this many times the noise.
        1 is Morozov's choice [2]_; a little above 1 leaves room for the
        error of the noise estimate. Started from a network output rather
        than from zero, the level that gives the image closest to the truth
        can lie below 1; a network's sidecar records the level chosen for
        it (``inference.consistency_discrepancy``, docs/model_card.md,
        "Forward consistency").
    max_iterations : int
        CGLS iterations at most.
    psf_model : str
        HMI PSF model (:func:`enhance.physics.hmi_psf`).
    border : int
        Input pixels at each edge of the image that do not constrain the
        solution: beyond the edge the operator sees the image's mirror
        image, not the Sun, so the outermost pixels cannot be matched.
    noise_estimate : {"spectral", "histogram", "auto"}
        "spectral": the white-noise level beyond HMI's cutoff
        (:func:`enhance.physics.noise.hmi_noise_sigma`, of the central half
        when that holds no NaN); right for continuum images. "histogram":
        the width of the core of the value histogram
        (:func:`enhance.physics.noise.histogram_core_sigma`); right for
        magnetograms, whose noise is not white (on the central 1024^2 of
        a real 720 s magnetogram the spectral level is 2.3 G, the
        histogram core 5.3 G) and for which fitting to the spectral level
        would fit the noise). "auto": the histogram core where the image
        is mostly quiet Sun, else the spectral level
        (:func:`resolve_noise_estimate`); :func:`noise_estimate_for` picks
        it for magnetograms.

    Returns
    -------
    (numpy.ndarray, Projection)
        The projected image (float32, ``enhanced``'s shape, NaN where it
        was NaN) and what the projection did.

    Raises
    ------
    ConfigError
        ``discrepancy`` not positive or ``max_iterations`` negative.
    InputError
        Shapes that do not match 2:1, or no valid pixel.
    """
    _check_noise_estimate(noise_estimate)
    if not discrepancy > 0 or max_iterations < 0:
        raise ConfigError(
            f"projection needs discrepancy > 0 and max_iterations >= 0; got "
            f"{discrepancy}, {max_iterations}"
        )
    x0 = np.asarray(enhanced, dtype=np.float32)
    y = np.asarray(observed, dtype=np.float32)
    if y.ndim != 2 or x0.shape != (2 * y.shape[0], 2 * y.shape[1]):
        raise InputError(
            f"enhanced image {x0.shape} is not twice the observed image {y.shape} per axis"
        )
    bad_x = ~np.isfinite(x0)
    block_bad = bad_x.reshape(y.shape[0], 2, y.shape[1], 2).any(axis=(1, 3))
    valid = np.isfinite(y) & ~block_bad
    if border < 0 or 2 * border >= min(y.shape):
        raise InputError(f"border {border} leaves nothing of the {y.shape} input")
    if border:
        inner = np.zeros_like(valid)
        inner[border:-border, border:-border] = True
        valid &= inner
    if not valid.any():
        raise InputError("projection needs pixels valid in both the input and the output")
    level = float(np.median(y[valid]))
    source = "given"
    if noise is None:
        source = resolve_noise_estimate(y, noise_estimate)
        noise = _input_noise(y, level, source)
    noise = float(noise)
    if not noise > 0:
        raise InputError(f"projection needs a positive input noise; got {noise}")

    kernel_half = hmi_psf(ENHANCED_PIXEL_SCALE, model=psf_model).shape[0] // 2
    margin = kernel_half // 2 + 2
    model = _ForwardModel(y.shape, margin, psf_model)
    pad_in = ((margin, margin), (margin, margin))
    pad_out = ((2 * margin, 2 * margin), (2 * margin, 2 * margin))
    weight = np.pad(valid, pad_in).astype(np.float32)
    data = np.pad(np.where(valid, y, level) - level, pad_in, mode="reflect")
    filled = np.where(bad_x, level, x0) - level
    x = np.pad(filled, pad_out, mode="reflect").astype(np.float32)
    n_valid = float(valid.sum())

    def residual_rms(r: np.ndarray) -> float:
        return float(np.sqrt(np.sum(r.astype(np.float64) ** 2) / n_valid))

    r = weight * (data - model.forward(x))
    before = residual_rms(r)
    goal = discrepancy * noise
    res = before
    iterations = 0
    if res > goal and max_iterations > 0:
        s = model.adjoint(weight * r)
        p = s.copy()
        gamma = float(np.sum(s.astype(np.float64) ** 2))
        while iterations < max_iterations and res > goal and gamma > 0:
            q = weight * model.forward(p)
            qq = float(np.sum(q.astype(np.float64) ** 2))
            if qq <= 0:
                break
            alpha = np.float32(gamma / qq)
            x += alpha * p
            r -= alpha * q
            iterations += 1
            res = residual_rms(r)
            s = model.adjoint(weight * r)
            new = float(np.sum(s.astype(np.float64) ** 2))
            p = s + np.float32(new / gamma) * p
            gamma = new
    out = x[2 * margin : -2 * margin, 2 * margin : -2 * margin] + np.float32(level)
    out[bad_x] = np.nan
    info = Projection(
        noise=noise,
        residual_before=before,
        residual_after=res,
        iterations=iterations,
        converged=res <= goal,
        discrepancy=float(discrepancy),
        noise_source=source,
    )
    log.debug(
        "projection: residual %.4g -> %.4g (noise %.4g, %s) in %d iterations",
        before,
        res,
        noise,
        source,
        iterations,
    )
    return out.astype(np.float32, copy=False), info


def project_as_recipe(
    enhanced: object,
    observed: object,
    meta: dict,
    *,
    noise: float | None = None,
    noise_estimate: str | None = None,
) -> tuple[np.ndarray, Projection]:
    """:func:`project_to_observation` with the settings a weights sidecar records.

    ``meta`` is the network's sidecar: ``inference.consistency_discrepancy``
    (default 1), ``inference.consistency_noise_estimate`` (default
    :func:`noise_estimate_for` its observable, :func:`recipe_noise_estimate`)
    and ``psf_model``. ``noise`` (input units) replaces the estimate when
    given; ``noise_estimate`` replaces the recipe's estimate (a caller that
    has already resolved "auto" for this input, :func:`resolve_noise_estimate`,
    passes the result). This is the projection
    :func:`enhance.inference.enhance_frame` applies and the held-out
    evaluation scores.
    """
    recipe = meta.get("inference", {})
    return project_to_observation(
        enhanced,
        observed,
        noise=noise,
        discrepancy=float(recipe.get("consistency_discrepancy", 1.0)),
        psf_model=psf_model_of(meta),
        noise_estimate=noise_estimate or recipe_noise_estimate(meta),
    )
