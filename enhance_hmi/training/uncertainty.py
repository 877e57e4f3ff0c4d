"""Fitting the per-pixel uncertainty head of a trained network, and calibrating it.

:func:`fit_uncertainty` is the one call behind ``enhance fit-uncertainty``;
each of its steps returns a dataclass the next steps, the sidecar and the
figure are built from:

1. :func:`prepare_fit` -> :class:`FitInputs`: the network, its sidecar and
   the held-out regions, split as for training
   (:func:`enhance_hmi.training.build_pairs`: the same columns held out, the
   same guard band);
2. :func:`train_head` -> :class:`TrainedHead`: the
   :class:`~enhance_hmi.model.uncertainty.SigmaHead` trained on patches of
   the augmented, degraded training regions with the Gaussian negative
   log-likelihood of the 28 cm truth around the frozen network's output
   [2]_ (:mod:`enhance_hmi.training.sigma_head`). The patches get the
   network's own augmentation (contrast range of its recipe) and an
   input-noise range ``noise_widen`` times wider on each side than the
   network's, so the head learns how the error grows with the noise
   (:func:`load_head` instead reads a head back to recalibrate it);
3. :func:`calibrate` -> :class:`CalibrationFit`: the head's sigma calibrated
   against the output users get (the network output projected onto its
   input, as the weights' sidecar says, by default): a log-linear map of the
   head's sigma, of the local spread and level of the network output and of
   the local spread of its input
   (:class:`~enhance_hmi.model.uncertainty.SigmaCalibration`), one map
   fitted over all held-out regions at once, at the network's input noise
   and 3x it (one noise draw), so that the one- and two-sigma coverage of
   each region are closest to 68.27 and 95.45 %
   (:mod:`enhance_hmi.training.uncertainty_calibration`);
4. :func:`measure_coverage` -> :class:`CoverageTables`: the coverage per
   held-out region on another noise draw, with the calibrated module run as
   a user runs it, and a leave-one-region-out check that refits the map
   without each scene and measures it there;
5. :func:`compare_alternatives` -> :class:`Comparison`: one factor on the
   head's sigma and, when asked, test-time averaging over the 8 rotations
   and flips of the square (:func:`dihedral_prediction`: 8 forward passes,
   sigma the spread of the 8 outputs times a fitted factor);
5b. :func:`~enhance_hmi.training.family_calibration.calibrate_family` ->
   :class:`~enhance_hmi.training.family_calibration.FamilyFit`: how sigma
   follows what a run is told about the HMI forward model (a factor per
   member told, the family's spread when told nothing), with its
   leave-one-scene-out check;
6. the head is written beside the network (``NAME.uncertainty.safetensors``
   and its sidecar, :func:`sidecar_metadata`: the network's sha256, the map
   and what it was fitted on, the recipe, the coverage tables), with
   ``NAME.uncertainty.png`` (:func:`write_figure`: z histograms and coverage
   curves). :class:`UncertaintyFit` holds all of it.

References
----------
.. [1] Díaz Baso, C. J. & Asensio Ramos, A. (2018), "Enhancing SDO/HMI images
   using deep learning", A&A 614, A5.
.. [2] Nix, D. A. & Weigend, A. S. (1994), "Estimating the mean and variance
   of the target probability distribution", Proc. IEEE ICNN, 55.
.. [3] Kuleshov, V., Fenner, N. & Ermon, S. (2018), "Accurate uncertainties
   for deep learning using calibrated regression", ICML, 2796 (calibrating
   a predicted uncertainty on held-out data by its coverage).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from enhance_hmi.errors import TrainingError
from enhance_hmi.model import load_weights, psf_model_of
from enhance_hmi.model.network import EnhanceNet
from enhance_hmi.model.uncertainty import (
    EnhanceWithUncertainty,
    SigmaCalibration,
    load_uncertainty,
    save_sigma_head,
    uncertainty_path,
)
from enhance_hmi.scenes import Scene
from enhance_hmi.training.datasets import build_pairs, held_out_pairs
from enhance_hmi.training.family_calibration import calibrate_family
from enhance_hmi.training.pairs import Pair, PatchSampler
from enhance_hmi.training.sigma_head import (
    DIHEDRAL,
    SigmaHeadConfig,
    dihedral_prediction,
    fit_sigma_head,
    gaussian_nll,
    predict_with_sigma,
)
from enhance_hmi.training.uncertainty_calibration import (
    CALIBRATION_NOISE_FACTORS,
    CalibrationSample,
    Prediction,
    calibrated_log_sigma,
    calibration_noise_seed,
    calibration_noisy_inputs,
    calibration_samples,
    fit_calibration,
    held_out_coverage,
    leave_one_region_out,
    sample_coverage,
    without_histogram,
)
from enhance_hmi.training.uncertainty_results import (
    Alternative,
    CalibrationFit,
    Comparison,
    CoverageTables,
    TrainedHead,
    UncertaintyFit,
    sidecar_metadata,
    write_figure,
)
from enhance_hmi.validation.calibration import fit_scale

__all__ = [
    "CALIBRATION_NOISE_FACTORS",
    "DIHEDRAL",
    "Alternative",
    "CalibrationFit",
    "CalibrationSample",
    "Comparison",
    "CoverageTables",
    "FitInputs",
    "SigmaHeadConfig",
    "TrainedHead",
    "UncertaintyFit",
    "calibrate",
    "calibrated_log_sigma",
    "calibration_noise_seed",
    "calibration_noisy_inputs",
    "calibration_samples",
    "compare_alternatives",
    "dihedral_prediction",
    "fit_calibration",
    "fit_sigma_head",
    "fit_uncertainty",
    "gaussian_nll",
    "held_out_coverage",
    "leave_one_region_out",
    "load_head",
    "measure_coverage",
    "predict_with_sigma",
    "prepare_fit",
    "sidecar_metadata",
    "train_head",
    "write_figure",
]

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class FitInputs:
    """What every step reads: the network, its sidecar and the held-out regions.

    Attributes
    ----------
    weights : Path
        The network's weights file.
    backbone : EnhanceNet
        The network, loaded from ``weights``.
    meta : dict
        Its sidecar.
    held : list of Pair
        One noise-free pair per held-out region (the network's split).
    noise_range : (float, float)
        The input-noise range the head is trained with (network units).
    contrast : (float, float) or None
        The network's contrast augmentation, which the head's patches get too.
    held_out_noise : float
        The held-out input noise at 1x (data units): the network's.
    projected : bool
        Calibrate and measure against the output projected onto the input.
    """

    weights: Path
    backbone: EnhanceNet
    meta: dict[str, Any]
    held: list[Pair]
    noise_range: tuple[float, float]
    contrast: tuple[float, float] | None
    held_out_noise: float
    projected: bool

    @property
    def input_scale(self) -> float:
        """Network units = data units / this."""
        return float(self.meta["input_normalisation"].get("scale", 1.0))

    @property
    def units(self) -> str:
        """The data units (empty when the sidecar names none)."""
        return str(self.meta["input_normalisation"].get("units") or "")


# ---- the steps ---------------------------------------------------------------------------


def _recipe(meta: dict[str, Any]) -> dict[str, Any]:
    return dict(meta.get("training", {}).get("config", {}))


def _noise_range(meta: dict[str, Any], widen: float) -> tuple[float, float]:
    recipe = _recipe(meta)
    if recipe.get("noise_range"):
        low, high = (float(v) for v in recipe["noise_range"])
    else:
        low = high = float(recipe.get("noise_sigma") or 0.0)
    if not high > 0:
        raise TrainingError("the network's sidecar records no input noise to train the head with")
    return low / widen, high * widen


def prepare_fit(
    weights: str | os.PathLike[str],
    scenes: Sequence[Scene],
    config: SigmaHeadConfig,
    *,
    projected: bool,
) -> FitInputs:
    """Load the network and degrade the held-out regions of ``scenes`` (:class:`FitInputs`).

    Raises
    ------
    TrainingError
        No scenes, scenes of another observable, or a network whose sidecar
        records no input noise.
    """
    if not scenes:
        raise TrainingError("give at least one truth scene to fit the uncertainty on")
    backbone, meta = load_weights(weights)
    observable = meta["observable"]
    wrong = [s.name for s in scenes if s.observable != observable]
    if wrong:
        raise TrainingError(f"scenes {', '.join(wrong)} are not {observable} scenes")
    recipe = _recipe(meta)
    held = held_out_pairs(scenes, holdout=config.holdout, psf_model=psf_model_of(meta))
    noise_range = _noise_range(meta, config.noise_widen)
    scale = float(meta["input_normalisation"].get("scale", 1.0))
    held_noise = float(recipe.get("noise_sigma") or noise_range[0] * config.noise_widen) * scale
    return FitInputs(
        weights=Path(weights),
        backbone=backbone,
        meta=meta,
        held=held,
        noise_range=noise_range,
        contrast=tuple(recipe["contrast_range"]) if recipe.get("contrast_range") else None,
        held_out_noise=held_noise,
        projected=projected,
    )


def train_head(
    inputs: FitInputs,
    scenes: Sequence[Scene],
    config: SigmaHeadConfig,
    *,
    progress: bool = False,
) -> TrainedHead:
    """Train a head on the augmented training regions of ``scenes`` (:func:`fit_sigma_head`)."""
    train_pairs, _ = build_pairs(
        scenes,
        variants=config.variants,
        holdout=config.holdout,
        seed=config.seed,
        psf_model=psf_model_of(inputs.meta),
    )
    sampler = PatchSampler(
        train_pairs,
        patch=config.patch,
        noise_sigma=inputs.noise_range,
        input_scale=inputs.input_scale,
        rng=np.random.default_rng(config.seed),
        contrast=inputs.contrast,
    )
    head, losses = fit_sigma_head(inputs.backbone, sampler, config, progress=progress)
    return TrainedHead(head=head, losses=losses)


def load_head(inputs: FitInputs, path: str | os.PathLike[str]) -> TrainedHead:
    """A head already fitted for this network, as it is (only its calibration is refitted)."""
    fitted, previous = load_uncertainty(inputs.weights, inputs.backbone, inputs.meta, path=path)
    return TrainedHead(
        head=fitted.head, losses=[float("nan")], previous_training=previous.get("training")
    )


def _held_out_samples(
    model: EnhanceWithUncertainty, inputs: FitInputs, *, seed: int, border: int
) -> list[CalibrationSample]:
    """:func:`calibration_samples` of every held-out region at every noise level, draw ``seed``."""
    return [
        sample
        for factor in CALIBRATION_NOISE_FACTORS
        for sample in calibration_samples(
            model,
            inputs.held,
            meta=inputs.meta,
            noise=inputs.held_out_noise,
            noise_factor=factor,
            seed=seed,
            border=border,
            consistency=inputs.projected,
        )
    ]


def _seeds(seed: int) -> dict[float, int]:
    return {f: calibration_noise_seed(seed, f) for f in CALIBRATION_NOISE_FACTORS}


def calibrate(
    model: EnhanceWithUncertainty, inputs: FitInputs, *, seed: int, border: int
) -> CalibrationFit:
    """Fit the calibration map of ``model``'s head on the held-out draw set ``seed``."""
    samples = _held_out_samples(model, inputs, seed=seed, border=border)
    return CalibrationFit(
        map=fit_calibration(samples), samples=samples, seed=seed, seeds=_seeds(seed)
    )


def _shipped_prediction(
    model: EnhanceWithUncertainty, inputs: FitInputs, data: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The calibrated model's output and sigma, projected as enhance_frame projects."""
    enhanced, sigma = predict_with_sigma(model, data, input_scale=inputs.input_scale)
    if inputs.projected:
        from enhance_hmi.inference.consistency import project_as_recipe

        enhanced = project_as_recipe(enhanced, data, inputs.meta)[0]
    return enhanced, sigma


def _summary_line(row: dict[str, Any]) -> str:
    return (
        f"{row['region']}: {100 * row['within_1sigma']:.1f} % within 1 sigma, "
        f"{100 * row['within_2sigma']:.1f} % within 2 sigma"
    )


def measure_coverage(
    model: EnhanceWithUncertainty,
    inputs: FitInputs,
    calibration: CalibrationFit,
    *,
    seed: int,
    border: int,
) -> CoverageTables:
    """The coverage tables of ``model`` (calibrated by ``calibration``) on the draw set ``seed``.

    At 1x the noise the calibrated module itself, run as a user runs it;
    above 1x and against the un-projected output from the pixels the map
    reads; each region also under a map refitted without its scene.
    """
    scale = inputs.input_scale
    rows, zs = held_out_coverage(
        functools.partial(_shipped_prediction, model, inputs),
        inputs.held,
        noise=inputs.held_out_noise,
        seed=seed,
        border=border,
    )
    for row in rows:
        log.info("%s", _summary_line(row))
    samples = _held_out_samples(model, inputs, seed=seed, border=border)
    nominal = [s for s in samples if s.noise_factor == 1.0]

    def table(chosen: list[CalibrationSample], *, network: bool = False) -> list[dict[str, Any]]:
        return [
            without_histogram(
                sample_coverage(
                    s, calibrated_log_sigma(calibration.map, s.log_inputs), scale, network=network
                )
            )
            for s in chosen
        ]

    return CoverageTables(
        rows=rows,
        z_by_region=zs,
        noisier=table([s for s in samples if s.noise_factor != 1.0]),
        unprojected=table(nominal, network=True) if inputs.projected else [],
        leave_one_region_out=leave_one_region_out(calibration.samples, nominal, scale=scale),
        samples=samples,
        seeds=_seeds(seed),
    )


def _single_factor(
    inputs: FitInputs, calibration: CalibrationFit, coverage: CoverageTables
) -> Alternative:
    """One factor on the head's sigma, fitted and measured on the map's pixels."""
    factor = fit_scale([s.error / np.exp(s.log_inputs[0]) for s in calibration.samples])
    single = SigmaCalibration.factor(factor)
    rows = [
        without_histogram(
            sample_coverage(s, calibrated_log_sigma(single, s.log_inputs), inputs.input_scale)
        )
        for s in coverage.samples
    ]
    return Alternative("single-factor", forward_passes=1, calibration_scale=factor, coverage=rows)


def _dihedral_spread(inputs: FitInputs, data: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The dihedral ensemble's mean (projected as the head's output is) and spread."""
    mean, spread = dihedral_prediction(inputs.backbone, data, input_scale=inputs.input_scale)
    if inputs.projected:
        from enhance_hmi.inference.consistency import project_as_recipe

        mean = project_as_recipe(mean, data, inputs.meta)[0]
    return mean, np.maximum(spread, np.float32(1e-12))


def _dihedral_ensemble(
    inputs: FitInputs, calibration: CalibrationFit, coverage: CoverageTables, *, border: int
) -> Alternative:
    """Test-time dihedral averaging: a factor on its spread fitted and measured at 1x the noise."""
    predict: Prediction = functools.partial(_dihedral_spread, inputs)
    noise = inputs.held_out_noise
    _, z_fit = held_out_coverage(
        predict, inputs.held, noise=noise, seed=calibration.seed, border=border
    )
    scale = fit_scale(list(z_fit.values()))
    rows, _ = held_out_coverage(
        predict, inputs.held, noise=noise, seed=coverage.seeds[1.0], border=border, scale=scale
    )
    return Alternative(
        "dihedral-ensemble",
        forward_passes=8,
        calibration_scale=scale,
        coverage=[without_histogram(r) for r in rows],
    )


def compare_alternatives(
    inputs: FitInputs,
    calibration: CalibrationFit,
    coverage: CoverageTables,
    *,
    dihedral: bool,
    border: int,
) -> Comparison:
    """The alternatives to the map on the same regions and draws.

    One factor on the head's sigma, and with ``dihedral`` test-time
    averaging over the 8 symmetries of the square.
    """
    alternatives = [_single_factor(inputs, calibration, coverage)]
    if dihedral:
        alternatives.append(_dihedral_ensemble(inputs, calibration, coverage, border=border))
    return Comparison(tuple(alternatives))


def _training_record(
    inputs: FitInputs,
    trained: TrainedHead,
    scenes: Sequence[Scene],
    config: SigmaHeadConfig,
    wall_seconds: float,
) -> dict[str, Any]:
    """The sidecar's ``training``: the recipe of this fit, or the recalibrated head's own."""
    return trained.previous_training or {
        "config": dataclasses.asdict(config),
        "noise_range_network_units": list(inputs.noise_range),
        "contrast_range": list(inputs.contrast) if inputs.contrast else None,
        "scenes": [s.source for s in scenes],
        "final_nll": float(np.mean(trained.losses[-50:])),
        "wall_seconds": round(wall_seconds, 1),
        "torch_threads": torch.get_num_threads(),
    }


def _png_name(head: Path) -> str:
    return head.name.replace(".safetensors", ".png")


# ---- the whole fit -----------------------------------------------------------------------


def fit_uncertainty(
    weights: str | os.PathLike[str],
    scenes: Sequence[Scene],
    *,
    config: SigmaHeadConfig | None = None,
    out: str | os.PathLike[str] | None = None,
    figure: str | os.PathLike[str] | None = None,
    compare_dihedral: bool = False,
    calibrate_only: str | os.PathLike[str] | None = None,
    consistency: bool = True,
    progress: bool = False,
    forward_family: bool = True,
) -> UncertaintyFit:
    """Fit, calibrate and write the uncertainty head of network ``weights`` (steps 1-6 above).

    Parameters
    ----------
    weights : path-like
        The trained network (its sidecar gives the observable, input scale,
        PSF model and augmentation recipe).
    scenes : sequence of Scene
        Truth scenes, those the network was trained on.
    config : SigmaHeadConfig, optional
    out, figure : path-like, optional
        The head's weights file, default beside the network
        (:func:`~enhance_hmi.model.uncertainty.uncertainty_path`), and the
        calibration PNG, default beside the head.
    compare_dihedral : bool
        Also calibrate and score test-time dihedral averaging.
    calibrate_only : path-like, optional
        A head already fitted for this network: only its map is refitted.
    consistency : bool
        Calibrate against the output projected onto the input as the
        weights' sidecar says (what ``enhance_frame`` ships by default);
        False: against the network output itself.
    progress : bool
        A tqdm bar over the training steps.
    forward_family : bool
        Also fit how sigma follows what a run is told about the HMI forward
        model, over the plausible family
        (:func:`enhance_hmi.training.family_calibration.calibrate_family`).

    Returns
    -------
    UncertaintyFit

    Raises
    ------
    TrainingError, WeightsError, InputError
        No scenes, a bad network, unusable scenes.
    """
    config = config or SigmaHeadConfig()
    started = time.monotonic()
    inputs = prepare_fit(weights, scenes, config, projected=consistency)
    if calibrate_only is not None:
        trained = load_head(inputs, calibrate_only)
    else:
        trained = train_head(inputs, scenes, config, progress=progress)
    model = EnhanceWithUncertainty(inputs.backbone, trained.head)
    calibration = calibrate(model, inputs, seed=config.calibration_seed, border=config.border)
    model.calibration = calibration.map
    coverage = measure_coverage(
        model, inputs, calibration, seed=config.coverage_seed, border=config.border
    )
    comparison = compare_alternatives(
        inputs, calibration, coverage, dihedral=compare_dihedral, border=config.border
    )
    family = None
    if forward_family:
        family = calibrate_family(
            model,
            inputs.meta,
            scenes,
            holdout=config.holdout,
            noise=inputs.held_out_noise,
            seeds=(config.calibration_seed, config.coverage_seed),
            border=config.border,
            projected=consistency,
        )
    wall = time.monotonic() - started
    path = Path(out) if out is not None else uncertainty_path(inputs.weights)
    fit = UncertaintyFit(
        path=path,
        figure=Path(figure) if figure is not None else path.with_name(_png_name(path)),
        observable=str(inputs.meta["observable"]),
        units=inputs.units,
        input_scale=inputs.input_scale,
        held_out_noise=inputs.held_out_noise,
        projected=consistency,
        calibration=calibration,
        coverage=coverage,
        comparison=comparison,
        training=_training_record(inputs, trained, scenes, config, wall),
        wall_seconds=wall,
        family=family,
    )
    save_sigma_head(trained.head, path, backbone=inputs.weights, metadata=sidecar_metadata(fit))
    write_figure(fit)
    return fit
