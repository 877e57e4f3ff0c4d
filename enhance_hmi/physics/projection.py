"""Projection of an enhanced image onto the HMI data it came from, within the noise.

HMI's view of an enhanced (28 cm, 0.252"/px) image, the kernel with HMI's
transfer function over the 28 cm one followed by 2x2 binning
(:func:`enhance_hmi.physics.transfer.reobserve_target`), should give back the
input within its noise [1]_. A network fills in detail it learned; nothing in a
single forward pass forces it to agree with the particular input. The
projection here makes it agree: starting from the network output ``x0`` it
runs conjugate-gradient least squares (CGLS) on ``min ||R x - y||`` and
stops, by the discrepancy principle [2]_, when its residual reaches
``discrepancy`` times the input noise (the step that would pass that goal
is shortened to end on it, :data:`GOAL_LANDING`). CGLS started
at ``x0`` changes ``x0`` only inside the Krylov space of ``R^T R``, the
directions the data determine best (large scales first), and early
stopping keeps it from fitting the noise; the detail the data cannot
determine stays the network's. It is iterative back-projection with the
adjoint of the forward model as the back-projection operator and
conjugate-gradient steps.

The operator (:class:`ForwardModel`) is applied on a margin-padded grid
with FFTs (the PSF wraps into the margin only, and its adjoint is exact
there); pixels outside the data (NaN in the input or the output, and the
margin) do not constrain the solution, and on a frame with a known disk
neither does anything beyond
:data:`enhance_hmi.physics.disk.CONSTRAINED_RADIUS` of the solar radius.
The stopping rule compares the residual's rms with the noise over the same
pixels: on a full disk the off-limb ring of hmi.M_720s (5-10x the disk's
noise) would otherwise keep the residual above any goal, and CGLS would run
on, fitting the disk's noise into ripples at HMI's Nyquist frequency.

numpy and scipy only. The same iterations run on the network's GPU with
the torch mirror of the operator and of the noise estimate
(:func:`enhance_hmi.inference.consistency.project_to_observation` with
``backend="torch"``), passed in as ``operator`` and ``estimate_noise``.

References
----------
.. [1] Díaz Baso, C. J. & Asensio Ramos, A. (2018), A&A 614, A5, Sect. 4
   (forward consistency of the network output).
.. [2] Morozov, V. A. (1966), Soviet Math. Dokl. 7, 414; Hansen, P. C.
   (2010), *Discrete Inverse Problems*, SIAM, Ch. 6 (CGLS and early
   stopping as regularisation).
.. [3] Frigo, M. & Johnson, S. G. (2005), "The design and implementation of
   FFTW3", Proc. IEEE 93, 216 (FFT cost and smooth sizes).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import fft as sfft

from enhance_hmi.errors import ConfigError, InputError
from enhance_hmi.physics.constants import ENHANCED_PIXEL_SCALE
from enhance_hmi.physics.diagnostics import inside
from enhance_hmi.physics.disk import CONSTRAINED_RADIUS, SolarDisk, constraint_region
from enhance_hmi.physics.noise import check_noise_estimate, input_noise, noise_estimate_for
from enhance_hmi.physics.psf import DEFAULT_PSF_MODEL, hmi_psf, psf_model_of
from enhance_hmi.physics.transfer import hmi_given_target_transfer

__all__ = [
    "GOAL_LANDING",
    "NOISE_SOURCES",
    "STALL_FRACTION",
    "ForwardModel",
    "NoiseEstimator",
    "OperatorFactory",
    "Projection",
    "fast_padded_length",
    "project_as_recipe",
    "project_to_observation",
    "recipe_noise_estimate",
]

log = logging.getLogger(__name__)

#: An iteration that lowers the residual by less than this fraction of it
#: ends the projection (the remaining misfit is not one the data resolve).
STALL_FRACTION = 0.01

#: Where a CGLS step would take the residual below the discrepancy goal, the
#: step is shortened to end at this fraction of the goal (just inside it), not
#: at the step's own minimum: the first step's minimum can lie far below the
#: goal, and the excess is noise put back into the image.
GOAL_LANDING = 0.999

#: Where the noise of a :class:`Projection` came from ("auto" resolves to one of the two).
NOISE_SOURCES = ("given", "spectral", "histogram")


def fast_padded_length(length: int, margin: int) -> int:
    """Smallest padded input length >= ``length + 2 margin`` whose 2x grid is 5-smooth.

    FFTs are fastest on sizes with small prime factors only (2, 3, 5) [3]_:
    an FFT pair on an 8440-pixel square (2^3 x 5 x 211 per axis) takes 2.8x
    as long as on an 8640-pixel one (docs/performance.md, "Full disks").

    Parameters
    ----------
    length : int
        Input pixels along the axis.
    margin : int
        Padding wanted on each side at least.

    Returns
    -------
    int
        The padded length ``m``: the operator's FFTs run on the 2x grid, so
        ``2 m`` has no prime factor above 5.
    """
    fine = int(sfft.next_fast_len(2 * (length + 2 * margin), real=True))
    while fine % 2:  # a 5-smooth size that is also even
        fine = int(sfft.next_fast_len(fine + 1, real=True))
    return fine // 2


class ForwardModel:
    """HMI's view of a 28 cm image (``H / A`` kernel, 2x2 mean) and its exact adjoint.

    The forward operator of the projection: the ``H / A`` transfer function
    (:func:`enhance_hmi.physics.transfer.hmi_given_target_transfer`) applied
    with FFTs on a padded grid of ``padded`` input pixels per axis (the
    image plus at least ``margin`` on each side; periodic on that grid),
    then 2x2 binning; the adjoint repeats each residual pixel over its 2x2
    block with weight 1/4 and applies the same (real, even) transfer
    function. float32 numpy arrays; the torch mirror
    (:class:`enhance_hmi.inference.forward_model.TorchForwardModel`)
    overrides the array methods and does the same arithmetic on a device.

    Parameters
    ----------
    shape_in : (int, int)
        Input (0.504"/px) shape of the image, before padding.
    margin : int
        Input pixels of padding at least, per side.
    psf_model : str
        HMI PSF model (:func:`enhance_hmi.physics.hmi_psf`).
    pixel_integration : bool
        True (default): the binning integrates over the 0.504" pixel; False:
        the PSF already includes the pixel and the operator point-samples
        (:func:`enhance_hmi.physics.transfer.hmi_given_target_transfer`).

    Attributes
    ----------
    padded : (int, int)
        Padded input shape; ``fine`` is twice it.
    pad_before : (int, int)
        Padding before the image per axis (the rest goes after it).
    otf : array
        The transfer function for real FFTs of the ``fine`` grid.
    """

    #: The array library of the arrays this operator takes and returns.
    backend = "numpy"

    def __init__(
        self,
        shape_in: tuple[int, int],
        margin: int,
        psf_model: str,
        *,
        pixel_integration: bool = True,
    ) -> None:
        self.padded = (
            fast_padded_length(shape_in[0], margin),
            fast_padded_length(shape_in[1], margin),
        )
        self.pad_before = (margin, margin)
        self.fine = (2 * self.padded[0], 2 * self.padded[1])
        self.otf: Any = hmi_given_target_transfer(
            self.fine, psf_model=psf_model, pixel_integration=pixel_integration
        )

    # array conversion -------------------------------------------------------------
    def array(self, values: np.ndarray) -> Any:
        """``values`` (float32) as an array of this backend."""
        return np.ascontiguousarray(values, dtype=np.float32)

    def to_numpy(self, values: Any) -> np.ndarray:
        """A backend array as a float32 numpy array."""
        return np.asarray(values, dtype=np.float32)

    def sum_of_squares(self, values: Any) -> float:
        """Sum of squares accumulated in float64."""
        return float(np.sum(np.square(values), dtype=np.float64))

    # the operator -----------------------------------------------------------------
    def _convolve(self, x: Any) -> Any:
        spectrum = sfft.rfft2(x, workers=-1) * self.otf
        return sfft.irfft2(spectrum, s=x.shape, workers=-1).astype(np.float32, copy=False)

    def _upsample(self, r: Any) -> Any:
        """Each pixel of ``r`` repeated over a 2x2 block, times 1/4."""
        return np.repeat(np.repeat(r, 2, axis=0), 2, axis=1) * np.float32(0.25)

    def forward(self, x: Any) -> Any:
        """HMI's view of ``x`` (fine grid) on the padded input grid."""
        blurred = self._convolve(x)
        my, mx = blurred.shape[0] // 2, blurred.shape[1] // 2
        return blurred.reshape(my, 2, mx, 2).mean(axis=(1, 3))

    def adjoint(self, r: Any) -> Any:
        """The exact adjoint of :meth:`forward` (the transfer function is real and even)."""
        return self._convolve(self._upsample(r))


#: Builds the operator of a projection: ``(input shape, margin, psf_model,
#: pixel_integration=...) -> ForwardModel``.
OperatorFactory = Callable[..., ForwardModel]
#: Estimates the input noise: ``(image, estimate, region=...) -> (noise, estimate used)``,
#: as :func:`enhance_hmi.physics.noise.input_noise`.
NoiseEstimator = Callable[..., tuple[float, str]]


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


def recipe_noise_estimate(meta: Mapping[str, Any]) -> str:
    """The noise estimate a weights sidecar records (``inference.consistency_noise_estimate``).

    Default: :func:`enhance_hmi.physics.noise.noise_estimate_for` the
    sidecar's observable.
    """
    recipe = meta.get("inference", {})
    return str(recipe.get("consistency_noise_estimate", noise_estimate_for(meta["observable"])))


def project_to_observation(
    enhanced: object,
    observed: object,
    *,
    noise: float | None = None,
    discrepancy: float = 1.1,
    max_iterations: int = 25,
    psf_model: str = DEFAULT_PSF_MODEL,
    pixel_integration: bool = True,
    border: int = 2,
    noise_estimate: str = "spectral",
    disk: SolarDisk | None = None,
    operator: OperatorFactory = ForwardModel,
    estimate_noise: NoiseEstimator = input_noise,
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
    pixel_integration : bool
        Whether the forward operator integrates over the HMI pixel (default)
        or point-samples (a PSF that includes the pixel; :class:`ForwardModel`).
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
        :func:`enhance_hmi.physics.noise.noise_estimate_for` picks it for
        magnetograms.
    disk : SolarDisk, optional
        Where the solar disk lies in ``observed``
        (:meth:`enhance_hmi.physics.disk.SolarDisk.from_header`). Only input
        pixels within :data:`~enhance_hmi.physics.disk.CONSTRAINED_RADIUS`
        of it constrain the solution and enter the noise estimate and the
        residual; the limb and the values beyond it are left as the network
        made them, up to the spill of the PSF. Default: every valid pixel
        constrains.
    operator : callable
        Builds the forward operator from the input shape, the margin and
        the PSF model: :class:`ForwardModel` (numpy, here), or its torch
        mirror on the network's device; both give the same image within
        float32 rounding.
    estimate_noise : callable
        Estimates the input noise when ``noise`` is not given:
        :func:`enhance_hmi.physics.noise.input_noise`, or its torch mirror
        (:func:`enhance_hmi.inference.device_noise.input_noise_on`).

    Returns
    -------
    (numpy.ndarray, Projection)
        The projected image (float32, ``enhanced``'s shape, NaN where it
        was NaN; ``enhanced`` itself, when it is a float32 array and no
        iteration was needed) and what the projection did.

    Raises
    ------
    ConfigError
        ``discrepancy`` not positive, ``max_iterations`` negative or an
        unknown ``noise_estimate``.
    InputError
        Shapes that do not match 2:1, or no valid pixel.
    """
    check_noise_estimate(noise_estimate)
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
    region = constraint_region((y.shape[0], y.shape[1]), disk)
    valid = _constraining_pixels(y, bad_x, border, region)
    level = float(np.median(y[valid]))
    source = "given"
    if noise is None:  # the noise of every input pixel the forward model describes
        noise, source = estimate_noise(y, noise_estimate, region=region)
    noise = float(noise)
    if not noise > 0:
        raise InputError(f"projection needs a positive input noise; got {noise}")

    kernel_half = hmi_psf(ENHANCED_PIXEL_SCALE, model=psf_model).shape[0] // 2
    model = operator(
        (y.shape[0], y.shape[1]),
        kernel_half // 2 + 2,
        psf_model,
        pixel_integration=pixel_integration,
    )
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
    res, iterations, stalled = before, 0, False
    if res > goal and max_iterations > 0:
        res, iterations, stalled = _cgls(
            model, weight, x, r, res, goal=goal, max_iterations=max_iterations, rms=residual_rms
        )
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


def _constraining_pixels(
    y: np.ndarray, bad_x: np.ndarray, border: int, region: np.ndarray | None
) -> np.ndarray:
    """The input pixels that constrain the projection (finite in both images, inside).

    Raises
    ------
    InputError
        A border that leaves nothing, or no pixel left.
    """
    block_bad = bad_x.reshape(y.shape[0], 2, y.shape[1], 2).any(axis=(1, 3))
    valid = inside(np.isfinite(y) & ~block_bad, border=border, region=region)
    if not valid.any():
        raise InputError("projection needs pixels valid in both the input and the output")
    return valid


def _cgls(
    model: Any,
    weight: Any,
    x: Any,
    r: Any,
    res: float,
    *,
    goal: float,
    max_iterations: int,
    rms: Callable[[Any], float],
) -> tuple[float, int, bool]:
    """CGLS iterations on ``x`` (in place) and its weighted residual ``r`` (in place).

    Stops at ``goal`` (the discrepancy principle), after ``max_iterations``,
    or when an iteration lowers the residual by less than
    :data:`STALL_FRACTION` of itself. A step whose minimum lies below the
    goal is shortened to end on it (:data:`GOAL_LANDING`): along the step
    the squared residual is ``|r|^2 - 2 t gamma + t^2 |q|^2`` (CGLS keeps
    ``<r, q> = gamma``), so the step that ends on ``GOAL_LANDING`` x the
    goal is the smaller root of that quadratic. Returns the residual rms, the
    iterations done and whether they stalled.
    """
    iterations = 0
    s = model.adjoint(weight * r)
    p = s  # neither is changed in place: both are rebound below
    gamma = model.sum_of_squares(s)
    # rms(r)^2 times this is |r|^2: the squared residual follows from res, no second sum
    count = model.sum_of_squares(r) / res**2
    target = count * (GOAL_LANDING * goal) ** 2
    while iterations < max_iterations and res > goal and gamma > 0:
        q = weight * model.forward(p)
        qq = model.sum_of_squares(q)
        if qq <= 0:
            break
        alpha = gamma / qq
        rr = count * res**2
        landing = rr - gamma * alpha < target
        if landing:
            alpha = (gamma - math.sqrt(max(gamma * gamma - qq * (rr - target), 0.0))) / qq
        x += alpha * p
        r -= alpha * q
        iterations += 1
        previous, res = res, rms(r)
        if landing and res <= goal:
            break
        if res > goal and previous - res < STALL_FRACTION * previous:
            return res, iterations, True
        s = model.adjoint(weight * r)
        new = model.sum_of_squares(s)
        p = s + (new / gamma) * p
        gamma = new
    return res, iterations, False


def project_as_recipe(
    enhanced: object,
    observed: object,
    meta: Mapping[str, Any],
    *,
    noise: float | None = None,
    noise_estimate: str | None = None,
    disk: SolarDisk | None = None,
    operator: OperatorFactory = ForwardModel,
    estimate_noise: NoiseEstimator = input_noise,
) -> tuple[np.ndarray, Projection]:
    """:func:`project_to_observation` with the settings a weights sidecar records.

    ``meta`` is the network's sidecar: ``inference.consistency_discrepancy``
    (default 1), ``inference.consistency_noise_estimate`` (default
    :func:`enhance_hmi.physics.noise.noise_estimate_for` its observable,
    :func:`recipe_noise_estimate`), ``psf_model`` and ``pixel_integration``
    (default True). ``noise`` (input
    units) replaces the estimate when given; ``noise_estimate`` replaces
    the recipe's estimate (a caller that has already resolved "auto" for
    this input, :func:`enhance_hmi.physics.noise.resolve_noise_estimate`,
    passes the result). ``disk``, ``operator`` and ``estimate_noise`` are
    passed on (:func:`project_to_observation`). This is the projection
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
        pixel_integration=bool(meta.get("pixel_integration", True)),
        noise_estimate=noise_estimate or recipe_noise_estimate(meta),
        disk=disk,
        operator=operator,
        estimate_noise=estimate_noise,
    )
