"""Calibrating sigma over the HMI forward-model family, and its leave-one-scene-out check.

The uncertainty head and its map (:mod:`enhance_hmi.training.uncertainty`)
are calibrated on held-out data made with the member of the forward-model
family the network was trained for. This module fits how sigma follows what
a run is told (:class:`enhance_hmi.model.uncertainty.FamilySigma`):

1. every held-out region is degraded with every plausible member
   (:func:`enhance_hmi.physics.forward_family.family`), noise added at each
   level of :data:`~enhance_hmi.training.uncertainty_calibration.CALIBRATION_NOISE_FACTORS`
   (the head map's levels, each its own draw), and run twice as
   ``enhance_frame`` runs it: told nothing (the network's own member; the
   output projected with it) and told the member (the input harmonised, the
   output projected with the member);
2. **told**: per member, the weight of the member's own error variance of
   the told output (:func:`~enhance_hmi.physics.forward_family.family_error_variance`
   with that member alone: what the harmonisation may have left) added to
   sigma^2, the one that brings the member's coverage over the regions and
   noise levels closest to 68.27 / 95.45 % (the loss of
   :func:`enhance_hmi.validation.calibration.fit_scale`);
3. **told nothing**: the smallest weight ``kappa`` of the family's error
   variance (:func:`~enhance_hmi.physics.forward_family.family_error_variance`)
   that keeps every (region, member) at or above :data:`UNTOLD_FLOOR` plus
   :data:`FLOOR_MARGIN` within 1 and 2 sigma;
4. both are refitted with each scene left out and measured on it
   (:func:`leave_one_scene_out`): the acceptance figures.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from enhance_hmi.errors import FamilyFloorWarning
from enhance_hmi.inference.consistency import project_as_recipe
from enhance_hmi.model.uncertainty import EnhanceWithUncertainty, FamilySigma
from enhance_hmi.physics import degrade
from enhance_hmi.physics.forward_family import (
    ForwardModelSpec,
    family,
    family_error_variance,
    forward_model_of,
)
from enhance_hmi.physics.harmonise import harmonise, signal_fraction
from enhance_hmi.physics.noise import input_noise
from enhance_hmi.physics.projection import recipe_noise_estimate
from enhance_hmi.scenes import Scene, held_out_part
from enhance_hmi.training.sigma_head import predict_with_sigma
from enhance_hmi.training.uncertainty_calibration import (
    CALIBRATION_NOISE_FACTORS,
    calibration_noise_seed,
)
from enhance_hmi.validation.calibration import coverage, coverage_miss

__all__ = [
    "FLOOR_MARGIN",
    "UNTOLD_FLOOR",
    "FamilyCell",
    "FamilyFit",
    "calibrate_family",
    "family_cells",
    "fit_family_sigma",
    "family_coverage",
    "leave_one_scene_out",
]

log = logging.getLogger(__name__)

#: The coverage a run told nothing must keep under every plausible member
#: (within 1 and 2 sigma).
UNTOLD_FLOOR = (0.60, 0.90)
#: How far above :data:`UNTOLD_FLOOR` the fit keeps the regions it sees: the
#: fit's noise draw is not the measurement's, and a scene it never saw may
#: need more (docs/forward_models.md).
FLOOR_MARGIN = 0.03
#: The weights ``kappa`` tried (the smallest that holds the floor is kept).
KAPPA_GRID = np.round(np.arange(0.0, 8.0001, 0.05), 2)
#: Every ``SUBSAMPLE``-th pixel along each axis is kept (memory: the cells
#: of three regions under six members at 2x).
SUBSAMPLE = 2


@dataclasses.dataclass
class FamilyCell:
    """The held-out pixels of one (region, member), as each run mode sees them.

    ``error_*`` are output minus truth, ``sigma_*`` the calibrated head's
    sigma, ``variance`` the family's error variance of the untold output and
    ``variance_told`` the told member's of the told output (zero for the
    trained member), all physical units, finite, flattened (every :data:`SUBSAMPLE`-th
    pixel inside the border).
    """

    scene: str
    region: str
    member: str
    noise_factor: float
    error_untold: np.ndarray
    sigma_untold: np.ndarray
    variance: np.ndarray
    error_told: np.ndarray
    sigma_told: np.ndarray
    variance_told: np.ndarray


def _kept(arrays: Sequence[np.ndarray], border: int) -> list[np.ndarray]:
    inner = [a[border:-border:SUBSAMPLE, border:-border:SUBSAMPLE] for a in arrays]
    ok = np.logical_and.reduce([np.isfinite(a) for a in inner])
    return [a[ok].astype(np.float32) for a in inner]


def family_cells(
    model: EnhanceWithUncertainty,
    meta: dict[str, Any],
    scenes: Sequence[Scene],
    *,
    holdout: float,
    noise: float,
    seed: int,
    border: int,
    projected: bool = True,
    members: Sequence[ForwardModelSpec] | None = None,
    noise_factors: Sequence[float] = CALIBRATION_NOISE_FACTORS,
) -> list[FamilyCell]:
    """Every (held-out region, member) cell, run told nothing and told the member.

    Parameters
    ----------
    model : EnhanceWithUncertainty
        The network with its calibrated head.
    meta : dict
        The network's sidecar.
    scenes : sequence of Scene
        Truth scenes; the held-out part of each is used (one region per
        calibration factor of a scene known up to one).
    holdout : float
        Held-out column fraction (as trained).
    noise : float
        Input noise, physical units, times each of ``noise_factors``.
    seed : int
        Draw set of the noise (:func:`calibration_noise_seed` of it and the
        factor; the same draw for every member of a region).
    border : int
        Output pixels left out at each edge.
    projected : bool
        Project the outputs onto their inputs, as ``enhance_frame`` does.
    members : sequence of ForwardModelSpec, optional
        Default: the plausible family.
    """
    scale = float(meta["input_normalisation"]["scale"])
    trained = forward_model_of(meta)
    cells = []
    for scene in scenes:
        part = held_out_part(scene, holdout=holdout)
        gains = (1.0,) if scene.gain == (1.0, 1.0) else tuple(scene.gain)
        for gain in gains:
            region = part.name if len(gains) == 1 else f"{part.name} k={gain:g}"
            for member, factor in itertools.product(members or family(), noise_factors):
                pair = degrade(part.data, part.pixel_scale, **member.options())
                target = pair.target * gain
                rng = np.random.default_rng(calibration_noise_seed(seed, factor))
                draw = rng.normal(0.0, noise * factor, pair.input.shape)
                noisy = (pair.input * gain + draw).astype(np.float32)
                untold = _run(model, meta, noisy, scale, projected)
                variance = family_error_variance(untold[0], trained=trained)
                if member == trained:
                    told, variance_told = untold, np.zeros_like(variance)
                else:
                    told_meta = {**meta, **member.options()}
                    sigma_in, _ = input_noise(noisy, recipe_noise_estimate(told_meta))
                    ready = harmonise(noisy, told=member, trained=trained, noise=sigma_in)
                    told = _run(model, told_meta, noisy, scale, projected, ready)
                    variance_told = family_error_variance(
                        told[0],
                        trained=trained,
                        members=[member],
                        signal_fraction=signal_fraction(noisy, noise=sigma_in),
                    )
                kept = _kept(
                    [
                        untold[0] - target,
                        untold[1],
                        variance,
                        told[0] - target,
                        told[1],
                        variance_told,
                    ],
                    border,
                )
                cells.append(FamilyCell(part.name, region, member.name, factor, *kept))
                log.info("family calibration: %s under %s, noise x%g", region, member.name, factor)
    return cells


def _run(
    model: EnhanceWithUncertainty,
    meta: dict[str, Any],
    observed: np.ndarray,
    scale: float,
    projected: bool,
    network_input: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Output and sigma of ``network_input`` (default ``observed``), projected onto ``observed``."""
    source = observed if network_input is None else network_input.astype(np.float32)
    out, sigma = predict_with_sigma(model, source, input_scale=scale)
    if projected:
        out = project_as_recipe(out, observed, meta)[0]
    return out, sigma


def _covers(z: np.ndarray) -> tuple[float, float]:
    absz = np.abs(z)
    return float(np.mean(absz <= 1.0)), float(np.mean(absz <= 2.0))


def _untold_z(cell: FamilyCell, kappa: float) -> np.ndarray:
    sigma = np.sqrt(cell.sigma_untold.astype(np.float64) ** 2 + kappa**2 * cell.variance)
    return cell.error_untold / sigma


def _told_z(cell: FamilyCell, kappa: float) -> np.ndarray:
    sigma = np.sqrt(cell.sigma_told.astype(np.float64) ** 2 + kappa**2 * cell.variance_told)
    return cell.error_told / sigma


def _told_kappa(cells: Sequence[FamilyCell]) -> float:
    """The weight that brings the cells' coverage closest to nominal (each cell counts once).

    The loss of :func:`enhance_hmi.validation.calibration.fit_scale`: squared
    misses of 68.27 / 95.45 % in units of their tolerance, over
    :data:`KAPPA_GRID`.
    """
    losses = [
        np.mean([coverage_miss(*_covers(_told_z(c, float(kappa)))) for c in cells])
        for kappa in KAPPA_GRID
    ]
    return float(KAPPA_GRID[int(np.argmin(losses))])


def fit_family_sigma(cells: Sequence[FamilyCell], trained: str) -> FamilySigma:
    """The told factors and the untold weight fitted on ``cells`` (see the module's steps)."""
    kappas = {}
    for member in dict.fromkeys(c.member for c in cells):
        if member != trained:
            kappas[member] = _told_kappa([c for c in cells if c.member == member])
    low1, low2 = (f + FLOOR_MARGIN for f in UNTOLD_FLOOR)
    kappa = float(KAPPA_GRID[-1])
    for candidate in KAPPA_GRID:
        worst = [_covers(_untold_z(c, float(candidate))) for c in cells]
        if all(c1 >= low1 and c2 >= low2 for c1, c2 in worst):
            kappa = float(candidate)
            break
    else:
        warnings.warn(
            f"no weight of the family's spread up to {kappa:g} keeps every held-out cell at "
            f"{UNTOLD_FLOOR[0]:.0%} / {UNTOLD_FLOOR[1]:.0%}; sigma told nothing is "
            "under-covered there",
            FamilyFloorWarning,
            stacklevel=2,
        )
    return FamilySigma(trained=trained, told_kappas=kappas, untold_kappa=kappa)


def family_coverage(cells: Sequence[FamilyCell], fit: FamilySigma) -> list[dict[str, Any]]:
    """Coverage of every cell under ``fit``: told the member, and told nothing."""
    rows = []
    for cell in cells:
        told = coverage(_told_z(cell, fit.kappa_for(cell.member)))
        untold = coverage(_untold_z(cell, fit.untold_kappa))
        rows.append(
            {
                "region": cell.region,
                "member": cell.member,
                "noise_factor": cell.noise_factor,
                "told_within_1sigma": told["within_1sigma"],
                "told_within_2sigma": told["within_2sigma"],
                "untold_within_1sigma": untold["within_1sigma"],
                "untold_within_2sigma": untold["within_2sigma"],
            }
        )
    return rows


def leave_one_scene_out(
    fit_cells: Sequence[FamilyCell],
    measured_cells: Sequence[FamilyCell],
    trained: str,
) -> list[dict[str, Any]]:
    """Each scene's ``measured_cells``, calibrated on the other scenes' ``fit_cells``.

    The rows of :func:`family_coverage`, plus the ``told_kappa`` and
    ``untold_kappa`` fitted without the scene.
    """
    rows = []
    for scene in dict.fromkeys(c.scene for c in measured_cells):
        others = [c for c in fit_cells if c.scene != scene]
        mine = [c for c in measured_cells if c.scene == scene]
        if not others:
            continue
        left_out = fit_family_sigma(others, trained)
        for row, cell in zip(family_coverage(mine, left_out), mine, strict=True):
            row["told_kappa"] = left_out.kappa_for(cell.member)
            row["untold_kappa"] = left_out.untold_kappa
            rows.append(row)
    return rows


@dataclasses.dataclass(frozen=True)
class FamilyFit:
    """The family calibration of a head and its measurements.

    Attributes
    ----------
    sigma : FamilySigma
        Fitted on every scene (draw set ``seeds[0]``).
    coverage : list of dict
        :func:`family_coverage` of ``sigma`` on draw set ``seeds[1]``.
    leave_one_scene_out : list of dict
        :func:`leave_one_scene_out`: fitted on draw set ``seeds[0]`` of the
        other scenes, measured on draw set ``seeds[1]`` of the scene.
    members : tuple of str
        The members of the cells.
    seeds : (int, int)
        The fit's and the measurement's draw sets.
    """

    sigma: FamilySigma
    coverage: list[dict[str, Any]]
    leave_one_scene_out: list[dict[str, Any]]
    members: tuple[str, ...]
    seeds: tuple[int, int]

    def to_dict(self) -> dict[str, Any]:
        """The ``forward_family`` entry of the sidecar's ``calibration_model``."""
        return {
            **self.sigma.to_dict(),
            "members": list(self.members),
            "floor": list(UNTOLD_FLOOR),
            "floor_margin": FLOOR_MARGIN,
            "noise_seeds": list(self.seeds),
        }


def calibrate_family(
    model: EnhanceWithUncertainty,
    meta: dict[str, Any],
    scenes: Sequence[Scene],
    *,
    holdout: float,
    noise: float,
    seeds: tuple[int, int],
    border: int,
    projected: bool = True,
) -> FamilyFit:
    """Fit :class:`FamilySigma` for ``model`` and measure it (the module's steps 1-4).

    ``seeds``: the draw sets the fit and the measurement use; the other
    arguments as :func:`family_cells`.
    """
    fit_cells, measured = (
        family_cells(
            model,
            meta,
            scenes,
            holdout=holdout,
            noise=noise,
            seed=seed,
            border=border,
            projected=projected,
        )
        for seed in seeds
    )
    trained = forward_model_of(meta).name
    sigma = fit_family_sigma(fit_cells, trained)
    return FamilyFit(
        sigma=sigma,
        coverage=family_coverage(measured, sigma),
        leave_one_scene_out=leave_one_scene_out(fit_cells, measured, trained),
        members=tuple(dict.fromkeys(c.member for c in fit_cells)),
        seeds=seeds,
    )
