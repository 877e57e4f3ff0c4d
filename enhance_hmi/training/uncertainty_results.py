"""What :func:`enhance_hmi.training.uncertainty.fit_uncertainty` fits and measures.

The dataclasses its steps return (a trained head, the calibration, the
coverage tables, the comparison with the alternatives, and
:class:`UncertaintyFit` holding them all), and what is built from them
alone: the head's sidecar (:func:`sidecar_metadata`, the prose included)
and the calibration figure (:func:`write_figure`).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import numpy as np

from enhance_hmi.model.uncertainty import (
    CALIBRATION_INPUT_WINDOW,
    CALIBRATION_PERCENTILES,
    CALIBRATION_WINDOW,
    SigmaCalibration,
    SigmaHead,
)
from enhance_hmi.training.family_calibration import FamilyFit
from enhance_hmi.training.uncertainty_calibration import CalibrationSample, without_histogram
from enhance_hmi.validation.calibration import calibration_figure

__all__ = [
    "REFERENCE",
    "Alternative",
    "CalibrationFit",
    "Comparison",
    "CoverageTables",
    "TrainedHead",
    "UncertaintyFit",
    "sidecar_metadata",
    "write_figure",
]

#: The literature the sidecar cites.
REFERENCE = (
    "Nix & Weigend 1994 (Gaussian likelihood); Immerkaer 1996 (noise operator); "
    "Kuleshov et al. 2018 (calibration by coverage); "
    "backbone: Diaz Baso & Asensio Ramos 2018, A&A 614, A5"
)


@dataclasses.dataclass(frozen=True)
class TrainedHead:
    """A sigma head and how it was trained.

    ``losses`` is the loss of every step (network units; ``[nan]`` for a head
    read back to be recalibrated), ``previous_training`` the ``training``
    record of a head read back (None for a new head).
    """

    head: SigmaHead
    losses: list[float]
    previous_training: dict[str, Any] | None = None


@dataclasses.dataclass(frozen=True)
class CalibrationFit:
    """The calibration map and the held-out pixels it was fitted on.

    Attributes
    ----------
    map : SigmaCalibration
    samples : list of CalibrationSample
        Each held-out region at each noise level of :attr:`seeds`.
    seed : int
        The draw set (:func:`calibration_noise_seed` gives each level's seed).
    seeds : dict
        Noise factor -> the seed of its noise draw.
    """

    map: SigmaCalibration
    samples: list[CalibrationSample]
    seed: int
    seeds: dict[float, int]


@dataclasses.dataclass(frozen=True)
class CoverageTables:
    """The calibrated sigma's coverage on the held-out regions, on another noise draw.

    Rows are :func:`enhance_hmi.validation.calibration.coverage` per region
    with ``region``, ``median_sigma`` and ``rmse`` (data units).

    Attributes
    ----------
    rows : list of dict
        The calibrated module run as a user runs it, at 1x the noise (with
        the z histograms).
    z_by_region : dict
        Their z-scores by region.
    noisier : list of dict
        The noise levels above 1x (``noise_factor`` in each row).
    unprojected : list of dict
        The same sigma against the un-projected output (empty when the
        calibration is against the network output itself).
    leave_one_region_out : list of dict
        Each region under a map fitted without its scene.
    samples : list of CalibrationSample
        The pixels of this draw, each region at each noise level.
    seeds : dict
        Noise factor -> the seed of its noise draw (the factors measured).
    """

    rows: list[dict[str, Any]]
    z_by_region: dict[str, np.ndarray]
    noisier: list[dict[str, Any]]
    unprojected: list[dict[str, Any]]
    leave_one_region_out: list[dict[str, Any]]
    samples: list[CalibrationSample]
    seeds: dict[float, int]

    @property
    def noise_factors(self) -> tuple[float, ...]:
        """The input-noise levels measured (multiples of the held-out noise)."""
        return tuple(self.seeds)


@dataclasses.dataclass(frozen=True)
class Alternative:
    """A way of getting sigma the map is compared with, and its coverage."""

    name: str
    forward_passes: int
    calibration_scale: float
    coverage: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        """The sidecar's entry (under ``alternatives``, keyed by :attr:`name`)."""
        return {
            "forward_passes": self.forward_passes,
            "calibration_scale": self.calibration_scale,
            "coverage": self.coverage,
        }


@dataclasses.dataclass(frozen=True)
class Comparison:
    """The alternatives measured on the same held-out regions and noise draws."""

    alternatives: tuple[Alternative, ...] = ()

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """The sidecar's ``alternatives``: name -> entry."""
        return {alt.name: alt.to_dict() for alt in self.alternatives}


@dataclasses.dataclass(frozen=True)
class UncertaintyFit:
    """What :func:`fit_uncertainty` fitted, measured and wrote.

    Attributes
    ----------
    path, figure : Path
        The head's weights file (its sidecar beside it) and the calibration PNG.
    observable, units : str
        The network's observable and data units.
    input_scale : float
        Network units = data units / this.
    held_out_noise : float
        The held-out input noise at 1x (data units).
    projected : bool
        Calibrated against the output projected onto the input.
    calibration : CalibrationFit
    coverage : CoverageTables
    comparison : Comparison
    training : dict
        The sidecar's ``training`` record.
    wall_seconds : float
    family : FamilyFit or None
        How sigma follows what a run is told about the forward model
        (:mod:`enhance_hmi.training.family_calibration`); None: not fitted.
    """

    path: Path
    figure: Path
    observable: str
    units: str
    input_scale: float
    held_out_noise: float
    projected: bool
    calibration: CalibrationFit
    coverage: CoverageTables
    comparison: Comparison
    training: dict[str, Any]
    wall_seconds: float
    family: FamilyFit | None = None

    @property
    def calibration_scale(self) -> float:
        """The map's factor on the head's sigma at the reference point."""
        return math.exp(self.calibration.map.log_scale)


# ---- the sidecar and the figure, from the steps' results ---------------------------------


def _output_description(projected: bool) -> str:
    if projected:
        return (
            "the network output projected onto its input as the weights' inference recipe "
            "says (enhance_hmi.inference.consistency.project_as_recipe, the enhance_frame "
            "default)"
        )
    return "the network output (no projection)"


def _draws(seeds: dict[float, int]) -> str:
    return ", ".join(f"{f:g} seed {seed}" for f, seed in seeds.items())


def _calibration_prose(fit: UncertaintyFit) -> str:
    """The sidecar's ``calibration``: the map's formula, what it was fitted and measured on."""
    return (
        "log sigma = log_scale + log s_ref + a (log s - log s_ref) + b (log d - log d_ref) "
        "+ c (log m - log m_ref) + e (log g - log g_ref), s the head's sigma, d and m the "
        "local standard deviation and mean absolute value of the network output "
        f"({CALIBRATION_WINDOW} px box), g the local standard deviation of the input "
        f"({CALIBRATION_INPUT_WINDOW} input px box, repeated onto the output grid), "
        "fitted over all held-out regions at once (no region label) so that their one- "
        "and two-sigma coverage, each region and noise level counting once, are closest "
        f"to 68.27 and 95.45 % (noise x {_draws(fit.calibration.seeds)}; each input clamped "
        "to its "
        + "-".join(f"{q:g}" for q in CALIBRATION_PERCENTILES)
        + f" percentile range there); coverage measured on noise x {_draws(fit.coverage.seeds)}"
        f", against {_output_description(fit.projected)}"
    )


def _calibration_summary(fit: UncertaintyFit) -> str:
    """The sidecar's ``calibration_summary`` (the FITS ENHSGCDS card)."""
    window = CALIBRATION_INPUT_WINDOW
    structure = f", input {window}x{window} std" if fit.calibration.map.uses_input else ""
    kind = "projected" if fit.projected else "unprojected"
    return f"log-linear in head sigma, output local std/level{structure}; held-out, {kind}"


def _calibration_model(fit: UncertaintyFit) -> dict[str, Any]:
    """The sidecar's ``calibration_model``: the map and what it was fitted on."""
    noise = [fit.held_out_noise * f for f in fit.calibration.seeds]
    return {
        **fit.calibration.map.to_dict(),
        "output": _output_description(fit.projected),
        "projected": bool(fit.projected),
        "fitted_on": [s.region for s in fit.calibration.samples if s.noise_factor == 1.0],
        "noise": [value / fit.input_scale for value in noise],
        "noise_in_data_units": {"values": noise, "units": fit.units},
        "noise_seed": fit.calibration.seed,
        "noise_seeds": {f"{f:g}": seed for f, seed in fit.calibration.seeds.items()},
        **({"forward_family": fit.family.to_dict()} if fit.family is not None else {}),
    }


def sidecar_metadata(fit: UncertaintyFit) -> dict[str, Any]:
    """The head's sidecar entries from the fit's results.

    :func:`~enhance_hmi.model.uncertainty.save_sigma_head` adds the network's
    and the weights file's.
    """
    return {
        "calibration_scale": fit.calibration_scale,
        "calibration_model": _calibration_model(fit),
        "calibration": _calibration_prose(fit),
        "calibration_summary": _calibration_summary(fit),
        "held_out_noise": fit.held_out_noise,
        "coverage": [without_histogram(r) for r in fit.coverage.rows],
        "coverage_noisier": fit.coverage.noisier,
        "coverage_unprojected": fit.coverage.unprojected,
        "leave_one_region_out": fit.coverage.leave_one_region_out,
        "alternatives": fit.comparison.to_dict(),
        **(
            {
                "forward_family_coverage": fit.family.coverage,
                "forward_family_leave_one_scene_out": fit.family.leave_one_scene_out,
            }
            if fit.family is not None
            else {}
        ),
        "training": fit.training,
        "reference": REFERENCE,
    }


def write_figure(fit: UncertaintyFit) -> Path:
    """The calibration figure (:func:`~enhance_hmi.validation.calibration.calibration_figure`)."""
    a, b, c, e = fit.calibration.map.exponents
    output = "projected" if fit.projected else "network"
    return calibration_figure(
        fit.coverage.rows,
        fit.figure,
        title=(
            f"{fit.observable} sigma on held-out regions ({output} output; map "
            f"a={a:.2f} b={b:.2f} c={c:.2f} e={e:.2f})"
        ),
        z_by_region=fit.coverage.z_by_region,
        left_out_rows=fit.coverage.leave_one_region_out,
    )
