"""The data model of a validation report: one target's images and its scores.

A :class:`ValidationCase` holds three images of one field of view: the
HMI(-like) input at 0.504"/px, the Enhance output at 0.252"/px, and the
reference ("truth") on the same 0.252"/px grid, i.e. what a diffraction-limited
28 cm telescope would have seen (Hinode SOT degraded to 28 cm, or a
high-resolution scene degraded by :func:`enhance_hmi.physics.degrade` in the
synthetic twin). An :class:`Evaluation` is what the scorer
(:func:`enhance_hmi.validation.report.score.evaluate`) makes of it.

References
----------
.. [1] Díaz Baso, C. J. & Asensio Ramos, A. (2018), "Enhancing SDO/HMI images
   using deep learning", A&A 614, A5, Sect. 4 (the methods compared).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import astropy.units as u
import numpy as np

from enhance_hmi.errors import ReportError
from enhance_hmi.frame import OBSERVABLES
from enhance_hmi.physics import ENHANCED_PIXEL_SCALE, SOLAR_KM_PER_ARCSEC
from enhance_hmi.physics.psf import DEFAULT_PSF_MODEL

__all__ = [
    "ARCSEC_KM",
    "BOUNDS",
    "FILES",
    "METHODS",
    "METHOD_LABELS",
    "TRUTH_SCALE",
    "Evaluation",
    "ValidationCase",
]

#: Methods compared with the truth, in table order.
METHODS: tuple[str, ...] = ("bicubic", "unsharp", "richardson_lucy", "tikhonov", "enhance")
#: References scored beside the methods but not competing with them: the
#: least-squares linear 2x filter fitted on the truth itself
#: (:func:`enhance_hmi.validation.baselines.oracle_linear`), an upper bound for
#: linear methods.
BOUNDS: tuple[str, ...] = ("oracle_linear",)
#: Human-readable method names.
METHOD_LABELS: dict[str, str] = {
    "bicubic": "HMI (bicubic)",
    "unsharp": "HMI (unsharp mask)",
    "richardson_lucy": "Richardson-Lucy",
    "tikhonov": "Tikhonov (HMI PSF, discrepancy principle)",
    "enhance": "Enhance",
    "oracle_linear": "linear filter fitted on the truth (upper bound, not a method)",
}
#: Km on the Sun per arcsecond, for flux pixel areas
#: (:data:`enhance_hmi.physics.SOLAR_KM_PER_ARCSEC`).
ARCSEC_KM = float(SOLAR_KM_PER_ARCSEC.to_value(u.km / u.arcsec))
#: Grid of the truth and enhanced images (:data:`enhance_hmi.physics.ENHANCED_PIXEL_SCALE`).
TRUTH_SCALE = ENHANCED_PIXEL_SCALE
#: Names of the files a report directory holds.
FILES = {
    "images": "images.png",
    "spectra": "spectra.png",
    "uncertainty": "uncertainty.png",
    "metrics": "metrics.json",
    "html": "report.html",
}


@dataclass
class ValidationCase:
    """One validation target: HMI input, Enhance output and 28 cm truth.

    Attributes
    ----------
    name : str
        Short name of the target (page title, JSON ``target``).
    observable : {"continuum", "magnetogram"}
        Continuum in quiet-Sun units, magnetograms in gauss.
    hmi : numpy.ndarray
        HMI(-like) input at 0.504"/px, shape (H, W).
    truth : numpy.ndarray
        Reference at 0.252"/px, shape (2H, 2W).
    enhanced : numpy.ndarray
        Enhance output at 0.252"/px, shape (2H, 2W).
    truth_label : str
        What the truth is (e.g. "Hinode SOT/BFI degraded to 28 cm").
    kind : {"twin", "hinode"}
        Synthetic twin or real Hinode target.
    psf_model : str
        HMI PSF model for Richardson-Lucy and the forward residual.
    provenance : dict
        Provenance record (:func:`enhance_hmi.provenance.provenance_record`).
    notes : list of str
        Caveats shown on the page.
    alignment : dict, optional
        Co-alignment details of a real target (shift applied, time offset).
    context : dict
        Other facts shown on the page (scene, crop, noise, ...).
    sigma : numpy.ndarray, optional
        Predicted per-pixel uncertainty of ``enhanced`` (same grid and
        units; :mod:`enhance_hmi.model.uncertainty`); the report then shows it
        and its calibration against the truth.

    Raises
    ------
    ReportError
        Unknown observable, an HMI input that is not a 2-D image of at least
        8x8 pixels, or a truth or enhanced image not exactly twice its shape.
    """

    name: str
    observable: str
    hmi: np.ndarray
    truth: np.ndarray
    enhanced: np.ndarray
    truth_label: str
    kind: str = "twin"
    psf_model: str = DEFAULT_PSF_MODEL
    provenance: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    alignment: dict[str, Any] | None = None
    context: dict[str, Any] = field(default_factory=dict)
    sigma: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.observable not in OBSERVABLES:
            raise ReportError(
                f"unknown observable {self.observable!r}; use one of {', '.join(OBSERVABLES)}"
            )
        self.hmi = np.asarray(self.hmi, dtype=np.float64)
        self.truth = np.asarray(self.truth, dtype=np.float64)
        self.enhanced = np.asarray(self.enhanced, dtype=np.float64)
        if self.hmi.ndim != 2 or min(self.hmi.shape) < 8:
            raise ReportError(
                f"the HMI input must be a 2-D image of at least 8x8 pixels; got {self.hmi.shape}"
            )
        double = (2 * self.hmi.shape[0], 2 * self.hmi.shape[1])
        for label, image in (("truth", self.truth), ("enhanced", self.enhanced)):
            if image.shape != double:
                raise ReportError(
                    f"the {label} image has shape {image.shape} but must be twice the HMI "
                    f"input {self.hmi.shape}, i.e. {double}; put it on the 0.252 arcsec grid"
                )
        if self.sigma is not None:
            self.sigma = np.asarray(self.sigma, dtype=np.float64)
            if self.sigma.shape != double:
                raise ReportError(
                    f"the sigma map has shape {self.sigma.shape}; it must match the enhanced "
                    f"image {double}"
                )


@dataclass
class Evaluation:
    """Images of every method and the metrics of a :class:`ValidationCase`.

    Attributes
    ----------
    images : dict of str to numpy.ndarray
        ``truth`` and each of :data:`METHODS` and :data:`BOUNDS` at
        0.252"/px, whole field.
    metrics : dict
        The report's JSON document, without provenance.
    quiet_mask : numpy.ndarray
        Quiet-Sun mask of the scored region (computed on the truth).
    """

    images: dict[str, np.ndarray]
    metrics: dict[str, Any]
    quiet_mask: np.ndarray
