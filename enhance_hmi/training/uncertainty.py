"""Fitting the per-pixel uncertainty head of a trained network, and calibrating it.

:func:`fit_uncertainty` is the one call behind ``enhance fit-uncertainty``:

1. the scenes are split as for training (:func:`enhance_hmi.training.build_pairs`:
   the same columns held out, the same guard band) and the training regions
   are augmented and degraded;
2. the :class:`~enhance_hmi.model.uncertainty.SigmaHead` is trained on patches of
   the training regions with the Gaussian negative log-likelihood of the
   28 cm truth around the frozen network's output, ``log sigma + (y -
   mu)^2 / (2 sigma^2)`` [2]_. The patches get the network's own
   augmentation (contrast range of its recipe) and an input-noise range
   ``noise_widen`` times wider on each side than the network's, so the head
   learns how the error grows with the noise;
3. the head's sigma is calibrated against the output users get (the network
   output projected onto its input, as the weights' sidecar says, by
   default): a log-linear map of the head's sigma, of the local spread
   and level of the network output and of the local spread of its input
   (:class:`~enhance_hmi.model.uncertainty.SigmaCalibration`), one map fitted
   over all held-out regions at once, at the network's input noise and 3x
   it (one noise draw), so that the one- and two-sigma coverage of each
   region are closest to 68.27 and 95.45 %
   (:func:`enhance_hmi.validation.calibration.fit_log_linear`). The coverage
   per held-out region is measured on another noise draw with the
   calibrated module run as a user runs it, and a leave-one-region-out
   check refits the map without each scene and measures it there;
4. the head is written beside the network (``NAME.uncertainty.safetensors``
   and its sidecar: the network's sha256, the map and what it was fitted
   on, the recipe, the coverage tables), with ``NAME.uncertainty.png``
   (z histograms and coverage curves).

:func:`dihedral_prediction` is the alternative it is compared with:
test-time averaging over the 8 rotations and flips of the square (8 forward
passes), sigma being the spread of the 8 outputs times a fitted factor.

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
import logging
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from enhance_hmi.errors import TrainingError
from enhance_hmi.model import load_weights, psf_model_of
from enhance_hmi.model.fuse import fold_batchnorm
from enhance_hmi.model.network import EnhanceNet
from enhance_hmi.model.uncertainty import (
    CALIBRATION_INPUT_WINDOW,
    CALIBRATION_PERCENTILES,
    CALIBRATION_WINDOW,
    LOG_SIGMA_RANGE,
    EnhanceWithUncertainty,
    SigmaCalibration,
    SigmaHead,
    backbone_forward,
    fold_for_inference,
    load_uncertainty,
    save_sigma_head,
    uncertainty_path,
)
from enhance_hmi.scenes import Scene
from enhance_hmi.training.datasets import build_pairs, held_out_pairs
from enhance_hmi.training.pairs import Pair, PatchSampler
from enhance_hmi.validation.calibration import (
    calibration_figure,
    coverage,
    fit_log_linear,
    fit_scale,
    z_scores,
)

__all__ = [
    "CALIBRATION_NOISE_FACTORS",
    "CalibrationSample",
    "SigmaHeadConfig",
    "calibration_samples",
    "fit_calibration",
    "leave_one_region_out",
    "dihedral_prediction",
    "fit_sigma_head",
    "fit_uncertainty",
    "held_out_coverage",
    "predict_with_sigma",
]

log = logging.getLogger(__name__)


@dataclasses.dataclass
class SigmaHeadConfig:
    """Settings of the head's fit (the defaults fit in minutes on 2 CPU cores).

    Attributes
    ----------
    steps, batch, patch : int
        Optimiser steps, patches per step, input patch side.
    lr, lr_final : float
        Adam learning rate, cosine-decayed to ``lr_final``.
    hidden : int
        Channels of the head's hidden layers.
    variants : int
        Augmented degradations per training region.
    holdout : float
        Held-out column fraction (the network's split: 0.35).
    seed : int
    border : int
        Target pixels left out at each patch / region edge (reflect padding).
    noise_widen : float
        The head's input-noise range is the network's divided / multiplied by
        this on each side.
    calibration_seed, coverage_seed : int
        Noise draws on the held-out regions for the scale fit and for the
        reported coverage.
    """

    steps: int = 600
    batch: int = 8
    patch: int = 40
    lr: float = 3e-3
    lr_final: float = 1e-4
    hidden: int = 16
    variants: int = 6
    holdout: float = 0.35
    seed: int = 0
    border: int = 8
    noise_widen: float = 2.0
    calibration_seed: int = 1
    coverage_seed: int = 2

    def __post_init__(self) -> None:
        for name in ("steps", "batch", "patch", "hidden", "variants"):
            if int(getattr(self, name)) < 1:
                raise TrainingError(f"{name} must be a positive integer")
        if not self.noise_widen >= 1.0:
            raise TrainingError(f"noise_widen must be >= 1, got {self.noise_widen}")
        if 2 * self.border >= 2 * self.patch:
            raise TrainingError(f"border {self.border} leaves nothing of a {self.patch} patch")


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


def _lr_at(config: SigmaHeadConfig, step: int) -> float:
    frac = step / max(config.steps - 1, 1)
    return config.lr_final + 0.5 * (config.lr - config.lr_final) * (1 + math.cos(math.pi * frac))


def gaussian_nll(mu: torch.Tensor, log_sigma: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean Gaussian negative log-likelihood (without the constant log sqrt(2 pi))."""
    return torch.mean(log_sigma + 0.5 * ((target - mu) * torch.exp(-log_sigma)) ** 2)


def fit_sigma_head(
    backbone: EnhanceNet,
    sampler: PatchSampler,
    config: SigmaHeadConfig,
    *,
    progress: bool = False,
) -> tuple[SigmaHead, list[float]]:
    """Train a :class:`SigmaHead` on ``sampler``'s patches around the frozen ``backbone``.

    Returns
    -------
    (SigmaHead, list of float)
        The head in eval mode and the loss of every step (network units).
    """
    torch.manual_seed(config.seed)
    frozen = fold_batchnorm(backbone)
    head = SigmaHead(width=backbone.width, hidden=config.hidden, upscale=backbone.upscale)
    optimiser = torch.optim.Adam(head.parameters(), lr=config.lr)
    b = config.border
    losses: list[float] = []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=config.steps, desc="sigma head", unit="step", dynamic_ncols=True)
    head.train()
    try:
        for step in range(config.steps):
            xs, ys = sampler.sample(config.batch)
            x, y = torch.from_numpy(xs), torch.from_numpy(ys)
            with torch.no_grad():
                mu, features = backbone_forward(frozen, x)
            for group in optimiser.param_groups:
                group["lr"] = _lr_at(config, step)
            log_sigma = head(features, x)
            loss = gaussian_nll(mu[..., b:-b, b:-b], log_sigma[..., b:-b, b:-b], y[..., b:-b, b:-b])
            if not torch.isfinite(loss):
                raise TrainingError(f"the sigma head's loss is not finite at step {step}")
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            losses.append(float(loss.detach()))
            if bar is not None:
                bar.update(1)
                if step % 20 == 0:
                    bar.set_postfix(nll=f"{np.mean(losses[-20:]):.3f}")
    finally:
        if bar is not None:
            bar.close()
    return head.eval(), losses


def predict_with_sigma(
    model: EnhanceWithUncertainty, data: np.ndarray, *, input_scale: float
) -> tuple[np.ndarray, np.ndarray]:
    """``(output, sigma)`` of a small finite image in physical units, in one pass.

    For held-out regions (a few hundred pixels a side); frames go through
    tiled inference (:func:`enhance_hmi.inference.enhance_array`) instead.
    """
    net = fold_for_inference(model)
    x = torch.from_numpy(np.ascontiguousarray(data, dtype=np.float32) / np.float32(input_scale))
    with torch.inference_mode():
        out = net(x[None, None])[0].numpy() * np.float32(input_scale)
    return out[0], out[1]


#: The 8 symmetries of the square: (turns by 90 degrees, flip left-right).
DIHEDRAL = tuple((k, f) for f in (False, True) for k in range(4))


def dihedral_prediction(
    backbone: EnhanceNet, data: np.ndarray, *, input_scale: float
) -> tuple[np.ndarray, np.ndarray]:
    """Mean and spread of the network's outputs over the 8 symmetries of the square.

    The input is turned / flipped, enhanced and turned back, 8 times (8x
    the cost of one pass). Returns ``(mean, std)`` in physical units; the
    spread is an uncalibrated sigma (a factor is fitted like the head's).
    """
    net = fold_batchnorm(backbone)
    x = torch.from_numpy(np.ascontiguousarray(data, dtype=np.float32) / np.float32(input_scale))
    outs = []
    with torch.inference_mode():
        for turns, flip in DIHEDRAL:
            t = torch.rot90(x, turns, dims=(0, 1))
            if flip:
                t = torch.flip(t, dims=(1,))
            y = net(t[None, None].contiguous())[0, 0]
            if flip:
                y = torch.flip(y, dims=(1,))
            outs.append(torch.rot90(y, -turns, dims=(0, 1)))
    stack = torch.stack(outs).numpy() * np.float32(input_scale)
    return stack.mean(axis=0), stack.std(axis=0)


def _noisy_inputs(pairs: Sequence[Pair], sigma: float, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [p.input + rng.normal(0.0, sigma, p.input.shape).astype(np.float32) for p in pairs]


def held_out_coverage(
    predict: Any,
    pairs: Sequence[Pair],
    *,
    noise: float,
    seed: int,
    border: int,
    scale: float = 1.0,
) -> tuple[list[dict[str, Any]], dict[str, np.ndarray]]:
    """Coverage per held-out pair of the ``(output, sigma)`` that ``predict(input)`` returns.

    ``noise`` (physical units) is added to each input with ``seed``; sigma
    is multiplied by ``scale``. Returns the rows (``region`` plus
    :func:`enhance_hmi.validation.calibration.coverage` and the median sigma)
    and the z-scores by region.
    """
    rows, zs = [], {}
    for pair, noisy in zip(pairs, _noisy_inputs(pairs, noise, seed), strict=True):
        out, sigma = predict(noisy)
        z = z_scores(out, pair.target, sigma * scale, border=border)
        row = {"region": pair.label, **coverage(z)}
        row["median_sigma"] = float(np.median(sigma * scale))
        error = (out - pair.target)[border:-border, border:-border]
        row["rmse"] = float(np.sqrt(np.mean(error**2)))
        rows.append(row)
        zs[pair.label] = z
    return rows, zs


#: Input-noise levels (multiples of the network's held-out noise) the calibration
#: map is fitted on: one level cannot show how the error grows with the noise,
#: and 3x lies inside the range the head was trained on (the network's, widened
#: ``noise_widen`` = 2 on each side, times its upper end).
CALIBRATION_NOISE_FACTORS = (1.0, 3.0)


def calibration_noise_seed(seed: int, noise_factor: float) -> int:
    """The seed of the noise drawn at ``noise_factor`` in the draw set ``seed``.

    ``seed`` itself at 1x (the draw :func:`held_out_coverage` makes with it),
    ``seed + 100 i`` at the i-th factor of :data:`CALIBRATION_NOISE_FACTORS`:
    each level gets its own noise, not a multiple of the 1x draw.
    """
    if noise_factor == 1.0:
        return int(seed)
    factors = [f for f in CALIBRATION_NOISE_FACTORS if f != 1.0]
    index = factors.index(noise_factor) + 1 if noise_factor in factors else len(factors) + 1
    return int(seed) + 100 * index


def calibration_noisy_inputs(
    pairs: Sequence[Pair], *, noise: float, noise_factor: float, seed: int
) -> list[np.ndarray]:
    """The held-out inputs with white noise ``noise * noise_factor`` (physical units).

    Drawn with :func:`calibration_noise_seed` of ``seed`` and the factor.
    """
    draw = calibration_noise_seed(seed, noise_factor)
    return _noisy_inputs(pairs, noise * noise_factor, draw)


@dataclasses.dataclass
class CalibrationSample:
    """The held-out pixels of one region and noise draw, as the calibration sees them.

    ``error`` is the shipped output minus the truth, ``error_network`` the
    un-projected network output minus the truth, and ``log_inputs`` the
    logarithms of the map's four inputs (:data:`enhance_hmi.model.uncertainty.CALIBRATION_INPUTS`),
    all in network units and flattened over the pixels inside ``border``.
    """

    region: str
    group: str
    noise_factor: float
    seed: int
    error: np.ndarray
    error_network: np.ndarray
    log_inputs: np.ndarray


def _group(label: str) -> str:
    """The scene a held-out pair comes from (NFI gains ``k=`` are one region)."""
    return label.split(" k=")[0]


def calibration_samples(
    model: EnhanceWithUncertainty,
    pairs: Sequence[Pair],
    *,
    meta: dict[str, Any],
    noise: float,
    noise_factor: float,
    seed: int,
    border: int,
    consistency: bool,
) -> list[CalibrationSample]:
    """The errors of the shipped output and the calibration inputs on every held-out pair.

    The output is the network's, projected onto its noisy input as the
    weights' sidecar says (:func:`enhance_hmi.inference.consistency.project_as_recipe`,
    as :func:`enhance_hmi.inference.enhance_frame` does by default) when
    ``consistency``; the head's sigma and the local structure of the
    network output and of its input are those the model computes before
    its calibration.
    """
    from enhance_hmi.inference.consistency import project_as_recipe
    from enhance_hmi.model.uncertainty import calibration_log_inputs

    scale = float(meta["input_normalisation"].get("scale", 1.0))
    net = fold_for_inference(model)
    inner = (slice(border, -border or None),) * 2
    samples = []
    draw = calibration_noise_seed(seed, noise_factor)
    noisy_inputs = calibration_noisy_inputs(
        pairs, noise=noise, noise_factor=noise_factor, seed=seed
    )
    for pair, noisy in zip(pairs, noisy_inputs, strict=True):
        x = torch.from_numpy(np.ascontiguousarray(noisy, dtype=np.float32) / np.float32(scale))
        with torch.inference_mode():
            out, log_sigma = net.raw(x[None, None])
            log_inputs = calibration_log_inputs(log_sigma, out, x[None, None])
        network = out[0, 0].numpy() * np.float32(scale)
        shipped = project_as_recipe(network, noisy, meta)[0] if consistency else network
        logs = [t[0, 0].numpy()[inner].ravel() for t in log_inputs]
        error = ((shipped - pair.target)[inner] / scale).ravel()
        error_network = ((network - pair.target)[inner] / scale).ravel()
        ok = np.isfinite(error) & np.isfinite(error_network)
        ok &= np.isfinite(np.stack(logs)).all(axis=0)
        samples.append(
            CalibrationSample(
                region=pair.label,
                group=_group(pair.label),
                noise_factor=float(noise_factor),
                seed=draw,
                error=error[ok].astype(np.float64),
                error_network=error_network[ok].astype(np.float64),
                log_inputs=np.stack(logs)[:, ok].astype(np.float64),
            )
        )
    return samples


def fit_calibration(samples: Sequence[CalibrationSample]) -> SigmaCalibration:
    """The log-linear sigma map (:class:`~enhance_hmi.model.uncertainty.SigmaCalibration`).

    Fitted by :func:`enhance_hmi.validation.calibration.fit_log_linear` on all
    ``samples`` at once, each region and noise level counting once; the
    references are the medians of the four inputs over the samples, and
    the map is fitted inside the :data:`~enhance_hmi.model.uncertainty.CALIBRATION_PERCENTILES`
    range of each input over the samples (stored with the map, which is
    applied the same way: :meth:`~enhance_hmi.model.uncertainty.SigmaCalibration.log_terms`).
    """
    if not samples:
        raise TrainingError("no held-out pixels to calibrate the uncertainty on")
    pooled = np.concatenate([s.log_inputs for s in samples], axis=1)
    log_refs = np.median(pooled, axis=1)
    low, high = np.percentile(pooled, CALIBRATION_PERCENTILES, axis=1)
    ranged = SigmaCalibration(
        log_ranges=tuple((float(lo), float(hi)) for lo, hi in zip(low, high, strict=True))
    )
    terms = [ranged.log_terms(s.log_inputs) for s in samples]
    # errors in units of the reference sigma (and of the head's sigma beyond its range):
    # the map is then exp(c0 + c . centred clamped inputs)
    log_scale, exponents = fit_log_linear(
        [
            s.error / np.exp(log_refs[0] + through)
            for s, (_, through) in zip(samples, terms, strict=True)
        ],
        [np.stack(clamped) - log_refs[:, None] for clamped, _ in terms],
    )
    return SigmaCalibration(
        log_scale=log_scale,
        exponents=tuple(exponents),
        references=tuple(float(np.exp(v)) for v in log_refs),
        log_ranges=ranged.log_ranges,
    )


def calibrated_log_sigma(calibration: SigmaCalibration, log_inputs: np.ndarray) -> np.ndarray:
    """log of the calibrated sigma from a sample's ``log_inputs`` (numpy twin of ``apply``)."""
    refs = np.log(np.asarray(calibration.references, dtype=np.float64))
    weights = np.asarray(calibration.exponents, dtype=np.float64)
    clamped, through = calibration.log_terms(log_inputs)
    centred = np.stack(clamped) - refs[:, None]
    log_sigma = calibration.log_scale + refs[0] + weights @ centred + through
    return np.clip(log_sigma, *LOG_SIGMA_RANGE)


def _sample_row(sample: CalibrationSample, log_sigma: np.ndarray, scale: float, *, network=False):
    error = sample.error_network if network else sample.error
    z = error / np.exp(log_sigma)
    row = {"region": sample.region, "noise_factor": sample.noise_factor, **coverage(z)}
    row["median_sigma"] = float(np.median(np.exp(log_sigma))) * scale
    row["rmse"] = float(np.sqrt(np.mean(error**2))) * scale
    return row


def leave_one_region_out(
    fit_samples: Sequence[CalibrationSample],
    test_samples: Sequence[CalibrationSample],
    *,
    scale: float,
) -> list[dict[str, Any]]:
    """Coverage of each region under a map fitted without it (all its gains, all noise levels).

    Shows how the calibration does on a scene it has not seen: the map is
    refitted on ``fit_samples`` minus the region's scene and measured on the
    region's ``test_samples`` (another noise draw).
    """
    rows = []
    for group in dict.fromkeys(s.group for s in test_samples):
        others = [s for s in fit_samples if s.group != group]
        if not others:
            continue
        calibration = fit_calibration(others)
        for sample in (s for s in test_samples if s.group == group):
            row = _sample_row(sample, calibrated_log_sigma(calibration, sample.log_inputs), scale)
            row["fitted_without"] = group
            rows.append({k: v for k, v in row.items() if k != "histogram"})
    return rows


def _summary_line(row: dict[str, Any]) -> str:
    return (
        f"{row['region']}: {100 * row['within_1sigma']:.1f} % within 1 sigma, "
        f"{100 * row['within_2sigma']:.1f} % within 2 sigma"
    )


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
) -> dict[str, Any]:
    """Fit, calibrate and write the uncertainty head of network ``weights``.

    Parameters
    ----------
    weights : path-like
        The trained network (its sidecar gives the observable, input scale,
        PSF model and augmentation recipe).
    scenes : sequence of Scene
        Truth scenes (those the network was trained on; a Hinode NFI scene
        brings its held-out band at both ends of its calibration range).
    config : SigmaHeadConfig, optional
    out : path-like, optional
        The head's weights file; default beside the network
        (:func:`enhance_hmi.model.uncertainty.uncertainty_path`).
    figure : path-like, optional
        The calibration figure (PNG); default beside the head, ``.png``.
    compare_dihedral : bool
        Also calibrate and score test-time dihedral averaging on the same
        held-out regions (recorded in the sidecar as ``alternatives``).
    calibrate_only : path-like, optional
        A head already fitted for this network: it is not trained again,
        only its calibration map is refitted and its coverage measured
        (a minute).
    consistency : bool
        Calibrate and measure sigma against the output projected onto the
        input as the weights' sidecar says (what ``enhance_frame`` and
        ``enhance predict`` ship by default); False: against the network
        output itself.
    progress : bool
        A tqdm bar over the training steps.

    Returns
    -------
    dict
        ``path`` (the head), ``figure``, ``calibration`` (the map),
        ``calibration_scale`` (its factor at the reference point),
        ``coverage`` (rows per held-out region, the calibrated module run
        as a user runs it), ``coverage_noisier`` (3x the input noise),
        ``coverage_unprojected`` (the same sigma against the un-projected
        output), ``leave_one_region_out``, ``alternatives`` (one factor
        on the head's sigma; the dihedral ensemble when asked), and what the
        tables were measured with: ``held_out_noise`` (1x, data ``units``),
        ``noise_factors`` and the noise seeds per factor
        (``calibration_seeds``, ``coverage_seeds``).

    Raises
    ------
    TrainingError, WeightsError, InputError
        No scenes, a bad network, unusable scenes.
    """
    config = config or SigmaHeadConfig()
    if not scenes:
        raise TrainingError("give at least one truth scene to fit the uncertainty on")
    weights = Path(weights)
    backbone, meta = load_weights(weights)
    observable = meta["observable"]
    wrong = [s.name for s in scenes if s.observable != observable]
    if wrong:
        raise TrainingError(f"scenes {', '.join(wrong)} are not {observable} scenes")
    scale = float(meta["input_normalisation"].get("scale", 1.0))
    psf = psf_model_of(meta)
    recipe = _recipe(meta)
    started = time.monotonic()
    held = held_out_pairs(scenes, holdout=config.holdout, psf_model=psf)
    noise_range = _noise_range(meta, config.noise_widen)
    contrast = tuple(recipe["contrast_range"]) if recipe.get("contrast_range") else None
    previous_training = None
    if calibrate_only is not None:  # the fitted head as it is: only the factor is refitted
        fitted, previous = load_uncertainty(weights, backbone, meta, path=calibrate_only)
        head, losses, previous_training = fitted.head, [float("nan")], previous.get("training")
    else:
        train_pairs, _ = build_pairs(
            scenes,
            variants=config.variants,
            holdout=config.holdout,
            seed=config.seed,
            psf_model=psf,
        )
        sampler = PatchSampler(
            train_pairs,
            patch=config.patch,
            noise_sigma=noise_range,
            input_scale=scale,
            rng=np.random.default_rng(config.seed),
            contrast=contrast,
        )
        head, losses = fit_sigma_head(backbone, sampler, config, progress=progress)
    model = EnhanceWithUncertainty(backbone, head)
    held_noise = float(recipe.get("noise_sigma") or noise_range[0] * config.noise_widen) * scale

    def samples_at(seed: int) -> list[CalibrationSample]:
        return [
            sample
            for factor in CALIBRATION_NOISE_FACTORS
            for sample in calibration_samples(
                model,
                held,
                meta=meta,
                noise=held_noise,
                noise_factor=factor,
                seed=seed,
                border=config.border,
                consistency=consistency,
            )
        ]

    fit_samples, test_samples = (
        samples_at(config.calibration_seed),
        samples_at(config.coverage_seed),
    )
    calibration = fit_calibration(fit_samples)
    model.calibration = calibration

    def shipped(data: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The calibrated model's output and sigma, projected as enhance_frame projects."""
        enhanced, sigma = predict_with_sigma(model, data, input_scale=scale)
        if consistency:
            from enhance_hmi.inference.consistency import project_as_recipe

            enhanced = project_as_recipe(enhanced, data, meta)[0]
        return enhanced, sigma

    # the reported coverage: the calibrated module itself, as a user runs it
    rows, zs = held_out_coverage(
        shipped, held, noise=held_noise, seed=config.coverage_seed, border=config.border
    )
    for row in rows:
        log.info("%s", _summary_line(row))
    by_level = {
        factor: [s for s in test_samples if s.noise_factor == factor]
        for factor in CALIBRATION_NOISE_FACTORS
    }

    def strip(row: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in row.items() if k != "histogram"}

    noisier = [
        strip(_sample_row(s, calibrated_log_sigma(calibration, s.log_inputs), scale))
        for factor, level in by_level.items()
        if factor != 1.0
        for s in level
    ]
    unprojected = [
        strip(_sample_row(s, calibrated_log_sigma(calibration, s.log_inputs), scale, network=True))
        for s in by_level[1.0]
    ]
    loro = leave_one_region_out(fit_samples, by_level[1.0], scale=scale)
    # the alternative the map is measured against: one factor on the head's sigma
    factor = fit_scale([s.error / np.exp(s.log_inputs[0]) for s in fit_samples])
    single = SigmaCalibration.factor(factor)
    alternatives: dict[str, Any] = {
        "single-factor": {
            "forward_passes": 1,
            "calibration_scale": factor,
            "coverage": [
                strip(_sample_row(s, calibrated_log_sigma(single, s.log_inputs), scale))
                for s in test_samples
            ],
        }
    }
    if compare_dihedral:

        def dihedral(data: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            mean, spread = dihedral_prediction(backbone, data, input_scale=scale)
            if consistency:
                from enhance_hmi.inference.consistency import project_as_recipe

                mean = project_as_recipe(mean, data, meta)[0]
            return mean, np.maximum(spread, np.float32(1e-12))

        _, z_fit = held_out_coverage(
            dihedral, held, noise=held_noise, seed=config.calibration_seed, border=config.border
        )
        alt_scale = fit_scale(list(z_fit.values()))
        alt_rows, _ = held_out_coverage(
            dihedral,
            held,
            noise=held_noise,
            seed=config.coverage_seed,
            border=config.border,
            scale=alt_scale,
        )
        alternatives["dihedral-ensemble"] = {
            "forward_passes": 8,
            "calibration_scale": alt_scale,
            "coverage": [strip(r) for r in alt_rows],
        }
    wall = time.monotonic() - started
    data_units = str(meta["input_normalisation"].get("units") or "")
    path = Path(out) if out is not None else uncertainty_path(weights)
    output = (
        "the network output projected onto its input as the weights' inference recipe says "
        "(enhance_hmi.inference.consistency.project_as_recipe, the enhance_frame default)"
        if consistency
        else "the network output (no projection)"
    )
    metadata = {
        "calibration_scale": math.exp(calibration.log_scale),
        "calibration_model": {
            **calibration.to_dict(),
            "output": output,
            "projected": bool(consistency),
            "fitted_on": [s.region for s in fit_samples if s.noise_factor == 1.0],
            "noise": [held_noise * f / scale for f in CALIBRATION_NOISE_FACTORS],
            "noise_in_data_units": {
                "values": [held_noise * f for f in CALIBRATION_NOISE_FACTORS],
                "units": data_units,
            },
            "noise_seed": config.calibration_seed,
            "noise_seeds": {
                f"{f:g}": calibration_noise_seed(config.calibration_seed, f)
                for f in CALIBRATION_NOISE_FACTORS
            },
        },
        "calibration": (
            "log sigma = log_scale + log s_ref + a (log s - log s_ref) + b (log d - log d_ref) "
            "+ c (log m - log m_ref) + e (log g - log g_ref), s the head's sigma, d and m the "
            "local standard deviation and mean absolute value of the network output "
            f"({CALIBRATION_WINDOW} px box), g the local standard deviation of the input "
            f"({CALIBRATION_INPUT_WINDOW} input px box, repeated onto the output grid), "
            "fitted over all held-out regions at once (no region label) so that their one- "
            "and two-sigma coverage, each region and noise level counting once, are closest "
            "to 68.27 and 95.45 % (noise x "
            + ", ".join(
                f"{f:g} seed {calibration_noise_seed(config.calibration_seed, f)}"
                for f in CALIBRATION_NOISE_FACTORS
            )
            + "; each input clamped to its "
            + "-".join(f"{q:g}" for q in CALIBRATION_PERCENTILES)
            + " percentile range there); coverage measured on noise x "
            + ", ".join(
                f"{f:g} seed {calibration_noise_seed(config.coverage_seed, f)}"
                for f in CALIBRATION_NOISE_FACTORS
            )
            + f", against {output}"
        ),
        "calibration_summary": (
            "log-linear in head sigma, output local std/level"
            + (
                f", input {CALIBRATION_INPUT_WINDOW}x{CALIBRATION_INPUT_WINDOW} std"
                if calibration.uses_input
                else ""
            )
            + f"; held-out, {'projected' if consistency else 'unprojected'}"
        ),
        "held_out_noise": held_noise,
        "coverage": [strip(r) for r in rows],
        "coverage_noisier": noisier,
        "coverage_unprojected": unprojected if consistency else [],
        "leave_one_region_out": loro,
        "alternatives": alternatives,
        "training": previous_training
        or {
            "config": dataclasses.asdict(config),
            "noise_range_network_units": list(noise_range),
            "contrast_range": list(contrast) if contrast else None,
            "scenes": [s.source for s in scenes],
            "final_nll": float(np.mean(losses[-50:])),
            "wall_seconds": round(wall, 1),
            "torch_threads": torch.get_num_threads(),
        },
        "reference": (
            "Nix & Weigend 1994 (Gaussian likelihood); Immerkaer 1996 (noise operator); "
            "Kuleshov et al. 2018 (calibration by coverage); "
            "backbone: Diaz Baso & Asensio Ramos 2018, A&A 614, A5"
        ),
    }
    save_sigma_head(head, path, backbone=weights, metadata=metadata)
    if figure is None:
        figure = path.with_name(path.name.replace(".safetensors", ".png"))
    a, b, c, e = calibration.exponents
    calibration_figure(
        rows,
        figure,
        title=(
            f"{observable} sigma on held-out regions ({'projected' if consistency else 'network'}"
            f" output; map a={a:.2f} b={b:.2f} c={c:.2f} e={e:.2f})"
        ),
        z_by_region=zs,
        left_out_rows=loro,
    )
    return {
        "path": path,
        "figure": figure,
        "calibration": calibration,
        "calibration_scale": math.exp(calibration.log_scale),
        "coverage": rows,
        "coverage_noisier": noisier,
        "coverage_unprojected": unprojected,
        "leave_one_region_out": loro,
        "alternatives": alternatives,
        "held_out_noise": held_noise,
        "units": data_units,
        "noise_factors": CALIBRATION_NOISE_FACTORS,
        "calibration_seeds": {
            f: calibration_noise_seed(config.calibration_seed, f) for f in CALIBRATION_NOISE_FACTORS
        },
        "coverage_seeds": {
            f: calibration_noise_seed(config.coverage_seed, f) for f in CALIBRATION_NOISE_FACTORS
        },
        "wall_seconds": wall,
    }
