"""Forward consistency of an enhanced image with the HMI data it came from.

HMI's view of an enhanced (28 cm, 0.252"/px) image, the kernel with HMI's
transfer function over the 28 cm one followed by 2x2 binning
(:func:`enhance_hmi.physics.transfer.reobserve_target`), should give back the
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
into the margin only, and its adjoint is exact there;
:mod:`enhance_hmi.inference.forward_model`, in numpy or in torch on the
network's device); pixels outside the data (NaN in the input or the output,
and the margin) do not constrain the solution, and on a frame with a known
disk neither does anything beyond :data:`enhance_hmi.physics.disk.CONSTRAINED_RADIUS`
of the solar radius. The stopping rule compares the residual's rms with the
noise over the same pixels: on a full disk the off-limb ring of hmi.M_720s
(5-10x the disk's noise) would otherwise keep the residual above any goal,
and CGLS would run on, fitting the disk's noise into ripples at HMI's
Nyquist frequency.

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

from enhance_hmi.errors import (
    ConfigError,
    FieldDominatedNoiseWarning,
    ImplausibleInputNoiseWarning,
    InputError,
)
from enhance_hmi.inference.forward_model import BACKENDS, ForwardModel
from enhance_hmi.physics import ENHANCED_PIXEL_SCALE, hmi_psf, psf_model_of
from enhance_hmi.physics.disk import CONSTRAINED_RADIUS, SolarDisk, constraint_region
from enhance_hmi.physics.noise import (
    NOISE_ESTIMATES,
    QUIET_SUN_FRACTION_MIN,
    check_noise_estimate,
    input_noise,
    noise_estimate_for,
    quiet_sun_fraction,
    resolve_noise_estimate,
)

__all__ = [
    "GIVEN_NOISE_FACTOR",
    "warn_if_given_noise_implausible",
    "CONSTRAINED_RADIUS",
    "NOISE_ESTIMATES",
    "NOISE_SOURCES",
    "QUIET_SUN_FRACTION_MIN",
    "STALL_FRACTION",
    "Projection",
    "constraint_region",
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
        rms of ``reobserve(x) - y`` over the constrained input pixels, input units.
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
    stalled : bool
        Stopped because an iteration lowered the residual by less than
        :data:`STALL_FRACTION` of itself, before reaching the goal.
    constrained_radius : float or None
        The pixels that constrained the solution lay within this fraction
        of the solar radius (None: every valid pixel did, because the image
        had no disk geometry or lay wholly inside that radius).
    """

    noise: float
    residual_before: float
    residual_after: float
    iterations: int
    converged: bool
    discrepancy: float
    noise_source: str
    stalled: bool = False
    constrained_radius: float | None = None


#: An iteration that lowers the residual by less than this fraction of it
#: ends the projection (the remaining misfit is not one the data resolve).
STALL_FRACTION = 0.01

#: Where the noise of a :class:`Projection` came from ("auto" resolves to one of the two).
NOISE_SOURCES = ("given", "spectral", "histogram")

#: Units of the input noise per observable: Blos in gauss, continuum in quiet-Sun units.
_NOISE_UNITS = {"magnetogram": u.G, "continuum": u.dimensionless_unscaled}


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
        The pixels that count (:func:`constraint_region`).
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
        The pixels that count (:func:`constraint_region`); default every
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
    disk: SolarDisk | None = None,
    backend: str = "numpy",
    device: object = None,
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
        from the input alone over the constrained pixels, as
        ``noise_estimate`` says
        (:func:`enhance_hmi.physics.noise.estimate_input_noise`).
    discrepancy : float
        Stop when the rms residual is at most this many times the noise.
        1 is Morozov's choice [2]_; a little above 1 leaves room for the
        error of the noise estimate. Started from a network output rather
        than from zero, the level that gives the image closest to the truth
        can lie below 1; a network's sidecar records the level chosen for
        it (``inference.consistency_discrepancy``, docs/model_card.md,
        "Forward consistency").
    max_iterations : int
        CGLS iterations at most. The projection also stops when an
        iteration lowers the residual by less than :data:`STALL_FRACTION`
        of itself: more iterations would fit what the data do not resolve.
    psf_model : str
        HMI PSF model (:func:`enhance_hmi.physics.hmi_psf`).
    border : int
        Input pixels at each edge of the image that do not constrain the
        solution: beyond the edge the operator sees the image's mirror
        image, not the Sun, so the outermost pixels cannot be matched.
    noise_estimate : {"spectral", "histogram", "auto"}
        "spectral": the white-noise level beyond HMI's cutoff
        (:func:`enhance_hmi.physics.noise.hmi_noise_sigma`, of the central half
        when that is all constrained data); right for continuum images.
        "histogram": the width of the core of the value histogram
        (:func:`enhance_hmi.physics.noise.histogram_core_sigma`); right for
        magnetograms, whose noise is not white (on the central 1024^2 of
        a real 720 s magnetogram the spectral level is 2.3 G, the
        histogram core 5.3 G) and for which fitting to the spectral level
        would fit the noise. "auto": the histogram core where the image
        is mostly quiet Sun, else the spectral level
        (:func:`enhance_hmi.physics.noise.resolve_noise_estimate`);
        :func:`noise_estimate_for` picks it for magnetograms.
    disk : SolarDisk, optional
        Where the solar disk lies in ``observed``
        (:meth:`enhance_hmi.physics.disk.SolarDisk.from_header`). Only input
        pixels within :data:`CONSTRAINED_RADIUS` of it constrain the
        solution and enter the noise estimate and the residual; the limb
        and the values beyond it are left as the network made them, up to
        the spill of the PSF. Default: every valid pixel constrains.
    backend : {"numpy", "torch"}
        Array library of the iterations (:class:`enhance_hmi.inference.forward_model.ForwardModel`);
        both give the same image within float32 rounding.
    device : torch.device or str, optional
        Where the torch backend runs (default the CPU): the network's
        device, so a GPU run iterates on the GPU and estimates the input
        noise there (:func:`enhance_hmi.inference.device_noise.input_noise_on`).

    Returns
    -------
    (numpy.ndarray, Projection)
        The projected image (float32, ``enhanced``'s shape, NaN where it
        was NaN; ``enhanced`` itself, when it is a float32 array and no
        iteration was needed) and what the projection did.

    Raises
    ------
    ConfigError
        ``discrepancy`` not positive or ``max_iterations`` negative.
    InputError
        Shapes that do not match 2:1, or no valid pixel.
    """
    check_noise_estimate(noise_estimate)
    if backend not in BACKENDS:
        raise ConfigError(f"unknown projection backend {backend!r}; use {' or '.join(BACKENDS)}")
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
    region = constraint_region(y.shape, disk)
    if region is not None:
        valid &= region
    if not valid.any():
        raise InputError("projection needs pixels valid in both the input and the output")
    level = float(np.median(y[valid]))
    source = "given"
    if noise is None:  # the noise of every input pixel the forward model describes
        if backend == "torch":  # on the device the projection runs on
            from enhance_hmi.inference.device_noise import input_noise_on

            noise, source = input_noise_on(y, noise_estimate, region=region, device=device)
        else:
            noise, source = input_noise(y, noise_estimate, region=region)
    noise = float(noise)
    if not noise > 0:
        raise InputError(f"projection needs a positive input noise; got {noise}")

    kernel_half = hmi_psf(ENHANCED_PIXEL_SCALE, model=psf_model).shape[0] // 2
    model = ForwardModel(y.shape, kernel_half // 2 + 2, psf_model, backend=backend, device=device)
    (by, bx), (py, px) = model.pad_before, model.padded
    pad_in = ((by, py - y.shape[0] - by), (bx, px - y.shape[1] - bx))
    pad_out = tuple((2 * lo, 2 * hi) for lo, hi in pad_in)
    weight = model.array(np.pad(valid, pad_in))
    data = model.array(np.pad(np.where(valid, y, level) - level, pad_in, mode="reflect"))
    x = model.array(np.pad(np.where(bad_x, level, x0) - level, pad_out, mode="reflect"))
    n_valid = float(valid.sum())
    del valid

    def residual_rms(r: object) -> float:
        return float(np.sqrt(model.sum_of_squares(r) / n_valid))

    r = weight * (data - model.forward(x))
    del data
    before = residual_rms(r)
    goal = discrepancy * noise
    res = before
    iterations = 0
    stalled = False
    if res > goal and max_iterations > 0:
        s = model.adjoint(weight * r)
        p = s  # neither is changed in place: both are rebound below
        gamma = model.sum_of_squares(s)
        while iterations < max_iterations and res > goal and gamma > 0:
            q = weight * model.forward(p)
            qq = model.sum_of_squares(q)
            if qq <= 0:
                break
            alpha = gamma / qq
            x += alpha * p
            r -= alpha * q
            iterations += 1
            previous, res = res, residual_rms(r)
            if res > goal and previous - res < STALL_FRACTION * previous:
                stalled = True
                break
            s = model.adjoint(weight * r)
            new = model.sum_of_squares(s)
            p = s + (new / gamma) * p
            gamma = new
    if iterations:
        (top, _), (left, _) = pad_out
        out = model.to_numpy(x)[top : top + x0.shape[0], left : left + x0.shape[1]]
        out = out + np.float32(level)
        out[bad_x] = np.nan
    else:  # nothing to project: the network's image itself, bit for bit
        out = x0
    info = Projection(
        noise=noise,
        residual_before=before,
        residual_after=res,
        iterations=iterations,
        converged=res <= goal,
        discrepancy=float(discrepancy),
        noise_source=source,
        stalled=stalled,
        constrained_radius=None if region is None else CONSTRAINED_RADIUS,
    )
    log.debug(
        "projection: residual %.4g -> %.4g (noise %.4g, %s) in %d iterations%s",
        before,
        res,
        noise,
        source,
        iterations,
        " (stalled)" if stalled else "",
    )
    return out.astype(np.float32, copy=False), info


def project_as_recipe(
    enhanced: object,
    observed: object,
    meta: dict,
    *,
    noise: float | None = None,
    noise_estimate: str | None = None,
    disk: SolarDisk | None = None,
    backend: str = "numpy",
    device: object = None,
) -> tuple[np.ndarray, Projection]:
    """:func:`project_to_observation` with the settings a weights sidecar records.

    ``meta`` is the network's sidecar: ``inference.consistency_discrepancy``
    (default 1), ``inference.consistency_noise_estimate`` (default
    :func:`noise_estimate_for` its observable, :func:`recipe_noise_estimate`)
    and ``psf_model``. ``noise`` (input units) replaces the estimate when
    given; ``noise_estimate`` replaces the recipe's estimate (a caller that
    has already resolved "auto" for this input, :func:`resolve_noise_estimate`,
    passes the result). ``disk``, ``backend`` and ``device`` are passed on
    (:func:`project_to_observation`). This is the projection
    :func:`enhance_hmi.inference.enhance_frame` applies and the held-out
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
        disk=disk,
        backend=backend,
        device=device,
    )
