"""Quality figures of one enhanced frame, measured without a truth.

Each frame of the archive gets four figures while it is enhanced, so a bad
frame (weights of the wrong observable, a corrupt or very noisy input, a
network that misbehaves near the limb) stands out in the cube's per-frame
table and in the report without anybody looking at it:

* the **forward residual**: the enhanced frame observed again with HMI
  (:func:`enhance_hmi.physics.transfer.reobserve_target`: HMI's view of the 28 cm output and
  2x2 binning) minus the input, rms over the pixels both have, in units of
  the input noise. A physically consistent output gives back the input to
  about the noise [1]_;
* for magnetograms the **unsigned-flux ratio**: mean |B| of the output over
  the field regions of the input (|B| above 5 noise after a 1 px Gaussian,
  grown by 2 px), divided by the mean |B| of the input there. The paper's
  network amplifies fields near 1 kG by 1.3-1.4 [1]_;
* for continuum the **quiet-Sun contrast** of the output: rms/mean over the
  quiet Sun (pixels whose 2 px smoothed intensity lies within 0.85-1.1 of
  the median, grown away from the rest by 5 px). The 28 cm granulation
  contrast is ~7 % against HMI's ~3.7 % [1]_;
* the **masked fraction**: the share of the input's on-disk pixels (all
  pixels when the header gives no disk) without a value;
* the **ripple** figure: the output's power at 0.15-0.375 cycles per output
  pixel (around HMI's Nyquist frequency) inside 0.9 solar radii, over the
  same power of the network's own output before the projection onto the
  input. A projection that fits the input's noise leaves a labyrinth of
  ripples there that no other figure sees (1.0 when it leaves the
  network's output alone; NaN without a projection);

plus the input's JSOC ``QUALITY`` word [2]_. :class:`QualityTolerances`
says which values are out of tolerance; a frame out of tolerance is written
all the same, its figures out of tolerance named in ``ENHQFLAG``, and the
time cube keeps it unless told to exclude it (:class:`enhance_hmi.cube.CubeInput`).
"Out of tolerance" is enhance's own verdict on its output; "QUALITY bits set"
is JSOC's on the input (docs/workflow.md, "Words").

The **input noise sigma** (``ENHQNOIS``) is the standard deviation of the
noise of the input frame in the data's units: the one the projection onto the
input used (``ENHNOISE``, given or estimated), or, without a projection, the
same estimate from the input alone
(:func:`enhance_hmi.physics.noise.estimate_input_noise`). Every figure that
compares the output with the input uses the disk within
:data:`enhance_hmi.physics.disk.CONSTRAINED_RADIUS` only, where the forward model
holds (beyond it hmi.M_720s keeps a ring of off-limb noise).

References
----------
.. [1] Díaz Baso, C. J. & Asensio Ramos, A. (2018), "Enhancing SDO/HMI images
   using deep learning", A&A 614, A5, Sect. 4 (forward consistency,
   granulation contrast, field amplification).
.. [2] Hoeksema, J. T. et al. (2014), Sol. Phys. 289, 3483 (HMI QUALITY
   keyword).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from astropy.io import fits

from enhance_hmi.errors import ConfigError, InputError
from enhance_hmi.io.cards import set_card
from enhance_hmi.physics.diagnostics import (
    FIELD_SNR,
    QUIET_SUN_RANGE,
    field_mask,
    forward_residual_stats,
    quiet_sun_mask,
)
from enhance_hmi.physics.disk import SolarDisk, constraint_region
from enhance_hmi.physics.noise import input_noise, noise_estimate_for
from enhance_hmi.physics.psf import DEFAULT_PSF_MODEL
from enhance_hmi.physics.spectrum import band_power

__all__ = [
    "FIELD_SNR",
    "FLAG_NAMES",
    "QUALITY_COLUMNS",
    "QUALITY_KEYWORDS",
    "FrameQuality",
    "QualityKernels",
    "QualityTolerances",
    "frame_quality",
    "quality_from_header",
]

log = logging.getLogger(__name__)

#: Quiet-Sun continuum: smoothed intensity within these fractions of the median
#: (:data:`enhance_hmi.physics.diagnostics.QUIET_SUN_RANGE`) [1]_.
QUIET_RANGE = QUIET_SUN_RANGE
#: Pixels too few for a figure (it is then NaN).
MIN_PIXELS = 16
#: Input pixels at each edge left out of the forward residual, as the
#: projection onto the input leaves them out of its own.
RESIDUAL_BORDER = 2
#: Band of the ripple figure, cycles per output pixel: 0.6-1.5 x HMI's Nyquist
#: frequency, where a projection that fits noise leaves its pattern.
RIPPLE_BAND = (0.15, 0.375)
#: The ripple figure is measured inside this fraction of the solar radius.
RIPPLE_RADIUS = 0.9
#: Tile (output pixels) of the ripple figure's local spectra.
RIPPLE_TILE = 128

#: Figures written as header keywords (name -> keyword, comment); also the
#: numeric columns of the cube's per-frame table (``frame_quality/<name>``).
#: A comment fits the 47 characters a card leaves after a number.
QUALITY_KEYWORDS: dict[str, tuple[str, str]] = {
    "forward_residual": ("ENHQFWD", "rms(re-observed output - input) / ENHQNOIS"),
    "input_noise": ("ENHQNOIS", "input noise sigma (ENHUNIT); = ENHNOISE if set"),
    "flux_ratio": ("ENHQFLUX", "unsigned flux output/input over field regions"),
    "contrast": ("ENHQCON", "quiet-Sun rms contrast of the output"),
    "input_contrast": ("ENHQICON", "quiet-Sun rms contrast of the input"),
    "masked_fraction": ("ENHQMASK", "fraction of on-disk input pixels without value"),
    "ripple": ("ENHQRIPL", "power near HMI Nyquist, output/network"),
}
#: Keyword naming the figures out of tolerance (comma-separated names of
#: :data:`FLAG_NAMES`; "" when none). The keyword keeps its name, which files
#: already written carry.
FLAGS_KEYWORD = ("ENHQFLAG", "quality figures out of tolerance ('': none)")
#: Every figure a frame can be out of tolerance in (``quality_bits``: the
#: input's ``QUALITY`` bits meet :attr:`QualityTolerances.quality_mask`).
FLAG_NAMES = (
    "forward_residual",
    "input_noise",
    "flux_ratio",
    "contrast",
    "masked_fraction",
    "ripple",
    "quality_bits",
)
#: Names of the per-frame quality columns, numeric then the figures out of tolerance.
QUALITY_COLUMNS = (*QUALITY_KEYWORDS, "flags")


def _pair(value: object, name: str) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in value)  # type: ignore[attr-defined]
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"quality tolerance {name} must be [low, high]; got {value!r}") from exc
    if not 0 <= low < high:
        raise ConfigError(f"quality tolerance {name} must have 0 <= low < high; got {value!r}")
    return low, high


@dataclasses.dataclass(frozen=True)
class QualityTolerances:
    """The tolerances of the quality figures: a frame beyond one is out of tolerance.

    Attributes
    ----------
    forward_residual : float
        Largest forward residual, in units of the input noise sigma. On the
        bundled real HMI frames the shipped networks leave 0.55-0.80 x the
        noise, the projection onto the input
        (:func:`enhance_hmi.inference.consistency.project_to_observation`)
        not acting (magnetogram noise: the histogram core); continuum
        enhanced with the magnetogram weights leaves ~1000 before the
        projection and more than 20 after it (which then does not converge).
    input_noise : mapping
        Largest input noise sigma per observable, in input units (gauss;
        quiet-Sun units). The bundled real frames have 3.6-5.6 G (the
        histogram core of hmi.M_720s, ~5-8 G on full disks) and 1.1e-3.
    flux_ratio : (float, float)
        Accepted range of the unsigned-flux ratio (magnetograms). The
        shipped network gives 1.08-1.14 on the bundled real frames (the
        paper's network amplifies fields near 1 kG by 1.3-1.4 [1]_); the
        previous projection that fitted the off-limb noise of a full disk
        gave 7.6 there. The figure catches a network that loses or invents
        flux, not weights of the wrong observable.
    contrast : (float, float)
        Accepted range of the output's quiet-Sun rms contrast (continuum;
        the paper's networks give ~7 %, HMI itself ~3.7 % [1]_).
    masked_fraction : float
        Largest share of on-disk input pixels without a value.
    ripple : float
        Largest ripple figure (output over network power near HMI's
        Nyquist frequency). A projection that leaves the network alone gives
        1.0; one that fitted the off-limb noise of the three real full disks
        gave 26-60 there and 79-296 on crops holding the limb
        (docs/performance.md, "Full disks").
    quality_mask : int
        JSOC ``QUALITY`` bits that put a frame out of tolerance (0: none; the
        acquisition's quality policy already decides which frames are
        enhanced).

    References
    ----------
    .. [1] Díaz Baso & Asensio Ramos (2018), A&A 614, A5, Sect. 4.
    """

    forward_residual: float = 20.0
    input_noise: Mapping[str, float] = dataclasses.field(
        default_factory=lambda: {"magnetogram": 25.0, "continuum": 5e-3}
    )
    flux_ratio: tuple[float, float] = (0.5, 2.0)
    contrast: tuple[float, float] = (0.02, 0.15)
    masked_fraction: float = 0.05
    ripple: float = 1.5
    quality_mask: int = 0

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None) -> QualityTolerances:
        """Tolerances from a config mapping (missing keys take the defaults).

        Raises
        ------
        ConfigError
            An unknown key or a value out of range, in one sentence.
        """
        values = dict(values or {})
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(
                f"unknown quality tolerance {', '.join(unknown)}; use {', '.join(sorted(known))}"
            )
        out: dict[str, Any] = {}
        for key, value in values.items():
            if key in ("flux_ratio", "contrast"):
                out[key] = _pair(value, key)
            elif key == "input_noise":
                if not isinstance(value, Mapping) or not all(
                    k in ("magnetogram", "continuum")
                    and not isinstance(v, bool)
                    and isinstance(v, (int, float))
                    and v > 0
                    for k, v in value.items()
                ):
                    raise ConfigError(
                        "quality tolerance input_noise must map magnetogram and/or continuum "
                        f"to a positive noise; got {value!r}"
                    )
                out[key] = {**cls().input_noise, **{k: float(v) for k, v in value.items()}}
            elif key == "quality_mask":
                mask = int(value, 0) if isinstance(value, str) else value
                if isinstance(mask, bool) or not isinstance(mask, int) or mask < 0:
                    raise ConfigError(f"quality_mask must be a non-negative integer; got {value!r}")
                out[key] = mask
            else:
                if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                    raise ConfigError(f"quality tolerance {key} must be positive; got {value!r}")
                out[key] = float(value)
        return cls(**out)


@dataclasses.dataclass(frozen=True)
class FrameQuality:
    """The quality figures of one enhanced frame (NaN: not measurable there).

    Attributes
    ----------
    forward_residual, input_noise, flux_ratio, contrast, input_contrast, masked_fraction, ripple
        See the module description and :data:`QUALITY_KEYWORDS`.
    quality : int
        The input's JSOC ``QUALITY`` bits.
    flags : tuple of str
        Names (:data:`FLAG_NAMES`) of the figures out of tolerance (written
        as ``ENHQFLAG``).
    """

    forward_residual: float
    input_noise: float
    flux_ratio: float
    contrast: float
    input_contrast: float
    masked_fraction: float
    ripple: float = math.nan
    quality: int = 0
    flags: tuple[str, ...] = ()

    @property
    def out_of_tolerance(self) -> bool:
        """Whether any figure is out of tolerance."""
        return bool(self.flags)

    def as_dict(self) -> dict[str, Any]:
        """Plain values (floats, the figures out of tolerance joined by commas)."""
        out: dict[str, Any] = {name: float(getattr(self, name)) for name in QUALITY_KEYWORDS}
        out["quality"] = int(self.quality)
        out["flags"] = ",".join(self.flags)
        return out

    def write_cards(self, header: fits.Header) -> None:
        """Set the :data:`QUALITY_KEYWORDS` and ``ENHQFLAG`` in ``header``.

        A NaN figure is written as the string ``'nan'`` (FITS has no NaN
        number); :func:`quality_from_header` reads it back as NaN. A long
        list of figures out of tolerance shortens its card's comment
        (:func:`enhance_hmi.io.cards.set_card`).
        """
        for name, (keyword, comment) in QUALITY_KEYWORDS.items():
            value = float(getattr(self, name))
            set_card(header, keyword, round(value, 6) if math.isfinite(value) else "nan", comment)
        set_card(header, FLAGS_KEYWORD[0], ",".join(self.flags), FLAGS_KEYWORD[1])


def quality_from_header(header: Mapping[str, Any]) -> dict[str, Any]:
    """The quality figures written by :meth:`FrameQuality.write_cards` (NaN / "" when absent)."""
    out: dict[str, Any] = {}
    for name, (keyword, _) in QUALITY_KEYWORDS.items():
        try:
            out[name] = float(header.get(keyword, math.nan))
        except (TypeError, ValueError):
            out[name] = math.nan
    out["flags"] = str(header.get(FLAGS_KEYWORD[0], "") or "").strip()
    return out


def _masked_fraction(data: np.ndarray, disk: SolarDisk | None) -> float:
    inside = None if disk is None else disk.inside(data.shape)
    region = np.ones(data.shape, bool) if inside is None or not inside.any() else inside
    return float(np.mean(~np.isfinite(data[region])))


def _ripple(
    enhanced: np.ndarray,
    network: np.ndarray | None,
    disk: SolarDisk | None,
    projection: Any,
    kernels: QualityKernels,
) -> float:
    """Output over network power in :data:`RIPPLE_BAND` inside :data:`RIPPLE_RADIUS` (or NaN)."""
    if network is None:
        # a projection that did not iterate delivered the network's own image
        return 1.0 if projection is not None and projection.iterations == 0 else math.nan
    network = np.asarray(network, dtype=np.float32)
    if network.shape != enhanced.shape:
        raise InputError(
            f"the network output {network.shape} does not match the enhanced image {enhanced.shape}"
        )
    if np.array_equal(network, enhanced, equal_nan=True):
        return 1.0  # the projection left the network's image alone
    region = None if disk is None else disk.scaled(2).inside(enhanced.shape, RIPPLE_RADIUS)
    reference = kernels.band_power(network, RIPPLE_BAND, region, RIPPLE_TILE)
    if not reference > 0:
        return math.nan
    return kernels.band_power(enhanced, RIPPLE_BAND, region, RIPPLE_TILE) / reference


def _block_mean(enhanced: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    ny, nx = shape
    blocks = enhanced[: 2 * ny, : 2 * nx].reshape(ny, 2, nx, 2)
    with np.errstate(invalid="ignore"):
        means: np.ndarray = blocks.mean(axis=(1, 3))
    return means


class QualityKernels:
    """The array work of the quality figures, in numpy and scipy on the host.

    :func:`frame_quality` leaves its costly measures to this object; a
    subclass computes them where the frame already is, with the same
    definitions (:class:`enhance_hmi.inference.device_quality.TorchQualityKernels`,
    on the GPU the network ran on).
    """

    def reobserve(self, enhanced: np.ndarray, psf_model: str) -> np.ndarray:
        """HMI's view of ``enhanced`` (:func:`enhance_hmi.physics.transfer.reobserve_target`)."""
        from enhance_hmi.physics.transfer import reobserve_target

        return reobserve_target(enhanced, psf_model=psf_model)

    def band_power(
        self, image: np.ndarray, band: tuple[float, float], region: np.ndarray | None, tile: int
    ) -> float:
        """Power of ``image`` in ``band``, tile-wise (:mod:`enhance_hmi.physics.spectrum`)."""
        return band_power(image, band, region=region, tile=tile)

    def flux_ratio(
        self, data: np.ndarray, enhanced: np.ndarray, noise: float, region: np.ndarray | None
    ) -> float:
        """Mean |B| of the output over the input's field regions over the input's there."""
        finite = np.isfinite(data)
        if region is not None:
            finite &= region
        if not noise > 0 or finite.sum() < MIN_PIXELS:
            return math.nan
        field = field_mask(data, noise, snr=FIELD_SNR, grow=2, region=region)
        out = _block_mean(np.abs(enhanced), data.shape)
        field &= np.isfinite(out)
        if field.sum() < MIN_PIXELS:
            return math.nan
        return float(np.mean(out[field]) / np.mean(np.abs(data[field])))

    def quiet_contrast(self, image: np.ndarray, smooth: float) -> float:
        """rms/mean of ``image`` over its quiet Sun (smoothing ``smooth`` pixels).

        The quiet Sun of :func:`enhance_hmi.physics.diagnostics.quiet_sun_mask`
        (continuum, grown by 5 pixels, never falling back to the whole image).
        """
        finite = np.isfinite(image)
        if finite.sum() < MIN_PIXELS:
            return math.nan
        if not float(np.median(image[finite])) > 0:
            return math.nan
        quiet = quiet_sun_mask(image, kind="continuum", smooth=smooth, margin=5, min_fraction=0.0)
        if quiet.sum() < MIN_PIXELS:
            return math.nan
        values = image[quiet]
        return float(np.std(values) / np.mean(values))


def frame_quality(
    data: object,
    enhanced: object,
    *,
    observable: str,
    header: Mapping[str, Any] | None = None,
    quality: int = 0,
    psf_model: str = DEFAULT_PSF_MODEL,
    tolerances: QualityTolerances | None = None,
    projection: Any = None,
    network_output: object | None = None,
    kernels: QualityKernels | None = None,
) -> FrameQuality:
    """Measure the quality figures of one enhanced frame against their tolerances.

    Parameters
    ----------
    data : array_like
        The network's input at 0.504"/px (north up, normalised: quiet-Sun
        units or gauss), NaN where there is no value.
    enhanced : array_like
        The delivered output at 0.252"/px, shape twice that of ``data``.
    observable : {"continuum", "magnetogram"}
    header : mapping, optional
        Header of ``data`` (north up): the disk geometry
        (:meth:`enhance_hmi.physics.disk.SolarDisk.from_header`) for the masked
        fraction, the pixels compared with the input and the ripple figure.
    quality : int
        The input's JSOC ``QUALITY`` bits.
    psf_model : str
        HMI PSF of the re-observation (the one the network was trained for).
    tolerances : QualityTolerances, optional
        Default :class:`QualityTolerances`.
    projection : enhance_hmi.inference.consistency.Projection, optional
        What the projection onto the input did, when it ran: its ``noise``
        is the input noise sigma, and a projection that ran no iteration
        delivered the network's own image (ripple figure 1). Default: the
        input noise estimated from ``data`` alone the same way. The forward
        residual is always the delivered image re-observed here, mirrored
        at its edges: an independent check of the projection's own
        residual, which lets the pixels beyond the edges vary.
    network_output : array_like, optional
        The network's output before the projection onto the input, for the
        ripple figure: 1 without it when ``projection`` ran no iteration,
        else NaN.
    kernels : QualityKernels, optional
        Where the re-observation, the flux ratio, the quiet-Sun contrast
        and the ripple figure's band power are computed; default
        :class:`QualityKernels` (numpy, here).

    Returns
    -------
    FrameQuality

    Raises
    ------
    InputError
        Not 2-D arrays, ``enhanced`` (or ``network_output``) is not twice
        the shape of ``data``.
    """
    tolerances = tolerances or QualityTolerances()
    kernels = kernels or QualityKernels()
    x = np.asarray(data, dtype=np.float64)
    y = np.asarray(enhanced, dtype=np.float32)
    if x.ndim != 2 or y.shape != (2 * x.shape[0], 2 * x.shape[1]):
        raise InputError(
            f"quality figures need an input image and an output of twice its shape; got "
            f"{x.shape} and {y.shape}"
        )
    disk = SolarDisk.from_header(header)
    region = constraint_region(x.shape, disk)
    if projection is not None:
        noise = float(projection.noise)
    else:  # as the projection would estimate it
        try:
            noise = input_noise(x, noise_estimate_for(observable), region=region)[0]
        except InputError:
            noise = math.nan
    back = kernels.reobserve(y, psf_model)  # HMI's view of the output: the forward operator
    try:
        residual = forward_residual_stats(
            None,
            x,
            reobserved=back,
            noise=noise,
            region=region,
            border=RESIDUAL_BORDER,
            min_pixels=MIN_PIXELS,
        )["rms_in_noise"]
    except InputError:  # no input pixel to compare with
        residual = None
    residual = math.nan if residual is None else residual
    if observable == "magnetogram":
        flux, contrast, input_contrast = kernels.flux_ratio(x, y, noise, region), math.nan, math.nan
    else:
        flux = math.nan
        contrast = kernels.quiet_contrast(y, smooth=4.0)  # 2 input pixels on the 2x grid
        input_contrast = kernels.quiet_contrast(x, smooth=2.0)
    masked = _masked_fraction(x, disk)
    network = None if network_output is None else np.asarray(network_output)
    ripple = _ripple(y, network, disk, projection, kernels)
    flags = []
    if not residual <= tolerances.forward_residual:  # NaN (nothing re-observed) too
        flags.append("forward_residual")
    max_noise = tolerances.input_noise.get(observable, math.inf)
    if math.isfinite(noise) and noise > max_noise:
        flags.append("input_noise")
    if math.isfinite(flux) and not tolerances.flux_ratio[0] <= flux <= tolerances.flux_ratio[1]:
        flags.append("flux_ratio")
    if observable == "continuum" and not (
        tolerances.contrast[0] <= contrast <= tolerances.contrast[1]
    ):
        flags.append("contrast")
    if masked > tolerances.masked_fraction:
        flags.append("masked_fraction")
    if math.isfinite(ripple) and ripple > tolerances.ripple:
        flags.append("ripple")
    if int(quality) & tolerances.quality_mask:
        flags.append("quality_bits")
    result = FrameQuality(
        forward_residual=residual,
        input_noise=noise,
        flux_ratio=flux,
        contrast=contrast,
        input_contrast=input_contrast,
        masked_fraction=masked,
        ripple=ripple,
        quality=int(quality) & 0xFFFFFFFF,
        flags=tuple(flags),
    )
    if flags:
        log.warning("frame quality out of tolerance (%s): %s", ", ".join(flags), result.as_dict())
    return result
