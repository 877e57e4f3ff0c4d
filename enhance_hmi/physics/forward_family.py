"""The family of HMI forward models a user may believe, each a named member.

The true HMI forward model is uncertain in two ways, and each member of the
family fixes both:

* **the PSF**: the modified Wachter form of Díaz Baso & Asensio Ramos (2018)
  ([1]_, ``"wachter"``), Wachter et al. (2012)'s own parameters ([2]_,
  ``"wachter2012"``) or the five-Gaussian PSF of Yeo et al. (2014) ([3]_,
  ``"yeo"``); see :func:`enhance_hmi.physics.psf.hmi_psf`. These are the
  *plausible* PSFs (:data:`PLAUSIBLE_PSF_MODELS`), each fitted to HMI data.
  The diffraction limit of the 14 cm aperture (``"airy14"``) is offered as a
  bound (:data:`BOUND_PSF_MODELS`): no HMI measurement supports it (the
  fits above lose more contrast at mid frequencies, MTF 0.40-0.31 at 0.4
  cycles per arcsec against its 0.52), but it shows how a method fares
  when HMI is sharper than believed. :func:`family` lists the plausible
  members; a bound member is scored only when named;
* **whether the measured PSF already includes the CCD pixel's own
  integration**. If it does not (``pixel_integration=True``, the project's
  default and what the shipped networks were trained with), the HMI image is
  the PSF-convolved sky integrated over each 0.504" pixel. If it does
  (``pixel_integration=False``), the image is the PSF-convolved sky sampled
  at the pixel centres, and integrating again would blur by the pixel twice.
  The published PSFs were fitted to pixelated HMI images ([2]_, [3]_), so
  neither reading can be ruled out from them.

A member's name is ``"<psf>+pixel"`` or ``"<psf>+point"``
(:attr:`ForwardModelSpec.name`); :func:`family` lists every member. The
functions that model HMI take the two fields as keywords, so
``degrade(truth, scale, **spec.options())`` degrades under member ``spec``;
the same holds for :func:`~enhance_hmi.physics.reobserve`,
:func:`~enhance_hmi.physics.transfer.reobserve_target`, the projection's
:class:`~enhance_hmi.physics.projection.ForwardModel` and
:func:`enhance_hmi.validation.baselines.tikhonov`.

Missing member: the HMI team's PSF of Norton et al. (2025) [4]_, a Lorentzian
convolved with an Airy function, fitted to pre-launch calibration, Venus
transit and lunar transit data. Its fitted parameters could not be read in
any text available to this project (only the abstract was), so the model is
not offered: :data:`MISSING_MODELS` says so, and :meth:`ForwardModelSpec.from_name`
refuses ``"norton2025"`` with that reason rather than guess its parameters.

References
----------
.. [1] Díaz Baso, C. J. & Asensio Ramos, A. (2018), "Enhancing SDO/HMI images
   using deep learning", A&A 614, A5, eq. 1.
.. [2] Wachter, R., Schou, J., Rabello-Soares, M. C. et al. (2012), "Image
   quality of the Helioseismic and Magnetic Imager (HMI) onboard the Solar
   Dynamics Observatory (SDO)", Sol. Phys. 275, 261.
.. [3] Yeo, K. L., Feller, A., Solanki, S. K. et al. (2014), "Point spread
   function of SDO/HMI and the effects of stray light correction on the
   apparent properties of solar surface phenomena", A&A 561, A22.
.. [4] Norton, A. A., Duvall, T. L., Jr., Schou, J. et al. (2025), "Stray
   Light Correction for the Helioseismic and Magnetic Imager",
   arXiv:2511.13348.
.. [5] Goodman, J. W., *Introduction to Fourier Optics*, Sect. 6.4 (the
   transfer function of a square detector pixel is a separable sinc).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import astropy.units as u
import numpy as np

from enhance_hmi.errors import ConfigError
from enhance_hmi.physics.constants import HMI_PIXEL_SCALE, to_arcsec
from enhance_hmi.physics.psf import DEFAULT_PSF_MODEL, HMI_PSF_MODELS, hmi_psf, psf_model_of
from enhance_hmi.physics.transfer import radial_otf

__all__ = [
    "DEFAULT_FORWARD_MODEL",
    "FAMILY_MARGIN",
    "FAMILY_RATIO_FLOOR",
    "FAMILY_WINDOW",
    "MISSING_MODELS",
    "PLAUSIBLE_PSF_MODELS",
    "BOUND_PSF_MODELS",
    "SAMPLING_NAMES",
    "ForwardModelSpec",
    "family",
    "family_error_variance",
    "forward_model_of",
    "parse_forward_models",
]

#: The name part of each pixel choice: ``True`` integrates over the pixel,
#: ``False`` samples at the pixel centre.
SAMPLING_NAMES: Mapping[bool, str] = MappingProxyType({True: "pixel", False: "point"})

#: PSF models fitted to HMI data: the members :func:`family` lists.
PLAUSIBLE_PSF_MODELS: tuple[str, ...] = ("wachter", "wachter2012", "yeo")
#: PSF models offered as bounds, not as beliefs (see the module notes).
BOUND_PSF_MODELS: tuple[str, ...] = tuple(
    m for m in HMI_PSF_MODELS if m not in PLAUSIBLE_PSF_MODELS
)

#: PSF models a user may name that the family cannot offer, and why.
MISSING_MODELS: Mapping[str, str] = MappingProxyType(
    {
        "norton2025": (
            "the Lorentzian-with-Airy HMI PSF of Norton et al. (2025, arXiv:2511.13348) is "
            "not available: its fitted parameters could not be read in any text available to "
            "this project, and they are not guessed"
        )
    }
)

#: PSF sampling step used for the tabulated MTF, in units of the HMI pixel
#: (fine enough that the tabulation's own pixel changes the MTF by < 1 %
#: at the HMI Nyquist frequency).
_MTF_OVERSAMPLE = 8


@dataclass(frozen=True)
class ForwardModelSpec:
    """One member of the HMI forward-model family.

    Parameters
    ----------
    psf_model : str
        One of :data:`enhance_hmi.physics.psf.HMI_PSF_MODELS`.
    pixel_integration : bool
        True: the PSF does not include the CCD pixel, and the image
        integrates the PSF-convolved sky over each 0.504" pixel. False: the
        PSF already includes the pixel, and the image samples the
        PSF-convolved sky at the pixel centres.

    Raises
    ------
    enhance_hmi.errors.ConfigError
        An unknown PSF model, or a pixel choice that is not a bool.
    """

    psf_model: str = DEFAULT_PSF_MODEL
    pixel_integration: bool = True

    def __post_init__(self) -> None:
        if self.psf_model in MISSING_MODELS:
            raise ConfigError(MISSING_MODELS[self.psf_model])
        if self.psf_model not in HMI_PSF_MODELS:
            raise ConfigError(
                f"unknown HMI PSF model {self.psf_model!r}; use one of {', '.join(HMI_PSF_MODELS)}"
            )
        if not isinstance(self.pixel_integration, bool):
            raise ConfigError(
                f"pixel_integration must be True or False; got {self.pixel_integration!r}"
            )

    @property
    def name(self) -> str:
        """``"<psf_model>+pixel"`` or ``"<psf_model>+point"``."""
        return f"{self.psf_model}+{SAMPLING_NAMES[self.pixel_integration]}"

    def __str__(self) -> str:
        return self.name

    @classmethod
    def from_name(cls, name: str) -> ForwardModelSpec:
        """The member called ``name`` (a bare PSF model name means ``+pixel``).

        Raises
        ------
        enhance_hmi.errors.ConfigError
            Not a member's name; the message lists the members.
        """
        text = str(name).strip()
        psf, _, sampling = text.partition("+")
        choices = {v: k for k, v in SAMPLING_NAMES.items()}
        if psf in MISSING_MODELS:
            raise ConfigError(MISSING_MODELS[psf])
        if psf not in HMI_PSF_MODELS or (sampling and sampling not in choices):
            members = ", ".join(spec.name for spec in family(bounds=True))
            raise ConfigError(f"unknown forward model {text!r}; use one of {members} (or 'all')")
        return cls(psf, choices[sampling] if sampling else True)

    def options(self) -> dict[str, Any]:
        """The keyword arguments that select this member in the physics functions.

        ``{"psf_model": ..., "pixel_integration": ...}``, as taken by
        :func:`~enhance_hmi.physics.degrade`, :func:`~enhance_hmi.physics.reobserve`,
        :func:`~enhance_hmi.physics.transfer.reobserve_target` and
        :func:`enhance_hmi.validation.baselines.tikhonov`.
        """
        return {"psf_model": self.psf_model, "pixel_integration": self.pixel_integration}

    def mtf(self, frequency: u.Quantity) -> np.ndarray:
        """The member's modulation transfer function along a pixel axis.

        The azimuthally averaged modulus of the PSF's transfer function,
        times the 0.504" pixel's ``|sinc(f p)|`` when the member integrates
        over the pixel ([5]_); a point-sampling member has the PSF's alone.

        Parameters
        ----------
        frequency : `~astropy.units.Quantity`
            Spatial frequencies (e.g. ``1 / u.arcsec``); the HMI Nyquist
            frequency is ``0.5 / HMI_PIXEL_SCALE`` (0.99 per arcsec).

        Returns
        -------
        numpy.ndarray
            The MTF at each frequency (1 at zero).
        """
        f = np.asarray(u.Quantity(frequency).to_value(1 / u.arcsec), dtype=np.float64)
        p = to_arcsec(HMI_PIXEL_SCALE, "pixel_scale")
        freq, otf = _psf_otf_table(self.psf_model)
        out: np.ndarray = np.interp(np.abs(f), freq, otf, right=0.0)
        if self.pixel_integration:
            out = out * np.abs(np.sinc(f * p))
        return out

    def otf(self, fy: np.ndarray, fx: np.ndarray) -> np.ndarray:
        """The member's 2-D transfer function at frequencies ``(fy, fx)`` (cycles/arcsec).

        The PSF's transfer function (the PSF models are radially symmetric,
        so it is a function of ``hypot(fy, fx)``, tabulated from the PSF
        sampled at 1/8 of the HMI pixel), times the square 0.504" pixel's
        separable ``sinc(fy p) sinc(fx p)`` when the member integrates over
        the pixel ([5]_). Real and positive inside the HMI Nyquist
        frequency (the pixel's sinc first vanishes at ``1 / p``, twice it).

        Parameters
        ----------
        fy, fx : numpy.ndarray
            Frequencies along the two axes (broadcastable), cycles per arcsec.

        Returns
        -------
        numpy.ndarray
            float64, broadcast over ``fy`` and ``fx``; 1 at zero frequency.
        """
        fy = np.asarray(fy, dtype=np.float64)
        fx = np.asarray(fx, dtype=np.float64)
        freq, table = _psf_otf_table(self.psf_model)
        out: np.ndarray = np.interp(np.hypot(fy, fx), freq, table, right=0.0)
        if self.pixel_integration:
            p = to_arcsec(HMI_PIXEL_SCALE, "pixel_scale")
            out = out * np.sinc(fy * p) * np.sinc(fx * p)
        return out


@functools.lru_cache(maxsize=8)
def _psf_otf_table(psf_model: str) -> tuple[np.ndarray, np.ndarray]:
    """Radial transfer function of an HMI PSF model: (frequency in cycles/arcsec, OTF)."""
    fine = to_arcsec(HMI_PIXEL_SCALE, "pixel_scale") / _MTF_OVERSAMPLE
    freq, otf = radial_otf(hmi_psf(fine * u.arcsec, model=psf_model), fine)
    freq.flags.writeable = False  # cached: shared by every caller
    otf.flags.writeable = False
    return freq, otf


#: The member that holds when nothing else is said: the project's default PSF,
#: integrated over the pixel.
DEFAULT_FORWARD_MODEL = ForwardModelSpec()


def family(*, bounds: bool = False) -> tuple[ForwardModelSpec, ...]:
    """Every plausible member of the family, pixel-integrated first.

    Each PSF model of :data:`PLAUSIBLE_PSF_MODELS`, integrated over the
    pixel and point-sampled; with ``bounds``, also those of
    :data:`BOUND_PSF_MODELS` after them.
    """
    models = PLAUSIBLE_PSF_MODELS + (BOUND_PSF_MODELS if bounds else ())
    return tuple(ForwardModelSpec(psf, integrate) for psf in models for integrate in (True, False))


def parse_forward_models(names: str | Iterable[str]) -> tuple[ForwardModelSpec, ...]:
    """Members from names: a list, comma-separated text, or ``"all"`` for :func:`family`.

    ``"all"`` means the plausible members; a bound member (``airy14+pixel``)
    is included only when named.

    Duplicates are dropped, order kept.

    Raises
    ------
    enhance_hmi.errors.ConfigError
        An unknown name, or no name at all.
    """
    items = [names] if isinstance(names, str) else list(names)
    words = [w.strip() for item in items for w in str(item).split(",") if w.strip()]
    if not words:
        raise ConfigError("name at least one forward model (or 'all')")
    specs: list[ForwardModelSpec] = []
    for word in words:
        for spec in family() if word == "all" else (ForwardModelSpec.from_name(word),):
            if spec not in specs:
                specs.append(spec)
    return tuple(specs)


def forward_model_of(meta: Mapping[str, Any]) -> ForwardModelSpec:
    """The member a network's weights sidecar ``meta`` was trained with.

    Its ``psf_model`` (:func:`~enhance_hmi.physics.psf.psf_model_of`) and its
    ``pixel_integration`` (True when the sidecar has none: every network so
    far was trained with pixel-integrated inputs).
    """
    return ForwardModelSpec(psf_model_of(meta), bool(meta.get("pixel_integration", True)))


#: Regularisation of ``T_T / T_k`` in :func:`family_error_variance`: the
#: ratio is ``T_T T_k / (T_k^2 + FAMILY_RATIO_FLOOR)``, bounded where a
#: member's transfer function vanishes.
FAMILY_RATIO_FLOOR = 1e-3
#: Side of the box (output pixels) over which :func:`family_error_variance`
#: averages the squared error images (the 9x9 window of the sigma map's
#: local output structure, :func:`enhance_hmi.model.uncertainty.output_structure`).
FAMILY_WINDOW = 9
#: Output pixels mirrored onto each edge before the transform (at most the
#: image's side), 16": the jump where the periodic transform wraps lands in
#: the margin, beyond the core of the error kernel (a few arcsec).
FAMILY_MARGIN = 64


def family_error_variance(
    output: np.ndarray,
    *,
    trained: ForwardModelSpec,
    members: Iterable[ForwardModelSpec] | None = None,
    pixel_scale: u.Quantity = HMI_PIXEL_SCALE / 2,
    window: int = FAMILY_WINDOW,
    signal_fraction: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """The local error variance of an output if the data came from another member.

    A network trained for member ``T`` that meets data made by member ``k``
    deconvolves ``T_k S`` as if it were ``T_T S``: where it inverts ``T_T``
    its output is ``O = (T_k / T_T) S``, so its error is
    ``O - S = (1 - T_T / T_k) O``. This is computed from the output itself
    for every member ``k`` of ``members`` (the plausible :func:`family` by
    default; ``trained`` itself adds nothing), squared, averaged over the
    members and over a ``window`` x ``window`` box. It is a linear estimate
    of what not knowing the forward model costs, for the sigma of a run
    that was told nothing; where the network does not invert ``T_T``
    (frequencies the noise dominates) it overestimates, and the calibration
    scales it (:class:`enhance_hmi.model.uncertainty.FamilySigma`).

    Told member ``k``, the input was harmonised first
    (:func:`enhance_hmi.physics.harmonise.harmonise`, weight ``w`` at each
    frequency, ``signal_fraction``): the network then sees ``R T_k S`` with
    ``R T_k = w T_T + (1 - w) T_k``, and the error is
    ``(1 - w)(T_k - T_T) / (w T_T + (1 - w) T_k)`` times the output: what
    the harmonisation left, nothing where the signal dominates.

    Parameters
    ----------
    output : numpy.ndarray
        The enhanced image (2-D; non-finite pixels are filled with the
        median for the transform and are NaN in the result).
    trained : ForwardModelSpec
        The member the network was trained for.
    members : iterable of ForwardModelSpec, optional
        The members the data may have come from; default :func:`family`.
    pixel_scale : `~astropy.units.Quantity`
        The output's pixel (0.252").
    window : int
        Box side of the local average, output pixels.
    signal_fraction : (numpy.ndarray, numpy.ndarray), optional
        The harmonisation's weight against radial frequency (cycles per
        arcsec, increasing; :func:`enhance_hmi.physics.harmonise.signal_fraction`
        of the input), held constant beyond its ends: the error left after
        harmonising. None: the input was not harmonised.

    Returns
    -------
    numpy.ndarray
        float32, the output's shape, in the output's units squared.
    """
    from scipy import fft as sfft
    from scipy import ndimage

    data = np.asarray(output, dtype=np.float32)
    finite = np.isfinite(data)
    fill = float(np.median(data[finite])) if finite.any() else 0.0
    filled = np.where(finite, data, np.float32(fill)) - np.float32(fill)
    # mirrored margins, so the periodic transform sees no jump at the edges
    margin = min(FAMILY_MARGIN, *data.shape)
    padded = np.pad(filled, margin, mode="symmetric")
    del filled
    scale = to_arcsec(pixel_scale, "pixel_scale")
    fy = np.fft.fftfreq(padded.shape[0], d=scale)[:, None]
    fx = np.fft.rfftfreq(padded.shape[1], d=scale)[None, :]
    spectrum = sfft.rfft2(padded, workers=-1)
    t_trained = trained.otf(fy, fx).astype(np.float32)
    weight = (
        np.float32(0.0)
        if signal_fraction is None
        else np.interp(np.hypot(fy, fx), signal_fraction[0], signal_fraction[1]).astype(np.float32)
    )
    others = [m for m in (family() if members is None else members) if m != trained]
    total = np.zeros(padded.shape, dtype=np.float32)
    for member in others:
        t_member = member.otf(fy, fx).astype(np.float32)
        seen = weight * t_trained + (1.0 - weight) * t_member  # R T_k
        gain = (1.0 - weight) * (t_member - t_trained) * seen / (seen**2 + FAMILY_RATIO_FLOOR)
        error = sfft.irfft2(spectrum * gain, s=padded.shape, workers=-1)
        total += error * error
    inner = (slice(margin, margin + data.shape[0]), slice(margin, margin + data.shape[1]))
    total = total[inner]
    # the box average is linear: one pass over the sum of the members' squares
    variance: np.ndarray = ndimage.uniform_filter(
        total / max(len(others), 1), size=window, mode="reflect"
    )
    variance[~finite] = np.nan
    return variance
