"""Fitting the per-pixel uncertainty head of a trained network, and calibrating it.

:func:`fit_uncertainty` is the one call behind ``enhance fit-uncertainty``:

1. the scenes are split as for training (:func:`enhance.training.build_pairs`:
   the same columns held out, the same guard band) and the training regions
   are augmented and degraded;
2. the :class:`~enhance.model.uncertainty.SigmaHead` is trained on patches of
   the training regions with the Gaussian negative log-likelihood of the
   28 cm truth around the frozen network's output, ``log sigma + (y -
   mu)^2 / (2 sigma^2)`` [2]_. The patches get the network's own
   augmentation (contrast range of its recipe) and an input-noise range
   ``noise_widen`` times wider on each side than the network's, so the head
   learns how the error grows with the noise;
3. one factor on sigma is fitted on the held-out regions (one noise draw),
   so that the one- and two-sigma coverage over the regions are closest to
   68.27 and 95.45 % (:func:`enhance.validation.calibration.fit_scale`), and
   the coverage per
   held-out region is measured on another noise draw;
4. the head is written beside the network (``NAME.uncertainty.safetensors``
   and its sidecar: the network's sha256, the scale, the recipe, the
   coverage table), with ``NAME.uncertainty.png`` (z histograms and
   coverage curves).

:func:`dihedral_prediction` is the alternative it is compared with:
test-time averaging over the 8 rotations and flips of the square (8 forward
passes), sigma being the spread of the 8 outputs times a fitted factor.

References
----------
.. [1] Díaz Baso, C. J. & Asensio Ramos, A. (2018), "Enhancing SDO/HMI images
   using deep learning", A&A 614, A5.
.. [2] Nix, D. A. & Weigend, A. S. (1994), "Estimating the mean and variance
   of the target probability distribution", Proc. IEEE ICNN, 55.
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

from enhance.errors import TrainingError
from enhance.model import load_weights
from enhance.model.fuse import fold_batchnorm
from enhance.model.network import EnhanceNet
from enhance.model.uncertainty import (
    EnhanceWithUncertainty,
    SigmaHead,
    backbone_forward,
    fold_for_inference,
    load_uncertainty,
    save_sigma_head,
    uncertainty_path,
)
from enhance.scenes import Scene
from enhance.training.datasets import build_pairs, held_out_pairs
from enhance.training.pairs import Pair, PatchSampler
from enhance.validation.calibration import calibration_figure, coverage, fit_scale, z_scores

__all__ = [
    "SigmaHeadConfig",
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
    tiled inference (:func:`enhance.inference.enhance_array`) instead.
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
    :func:`enhance.validation.calibration.coverage` and the median sigma)
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
        (:func:`enhance.model.uncertainty.uncertainty_path`).
    figure : path-like, optional
        The calibration figure (PNG); default beside the head, ``.png``.
    compare_dihedral : bool
        Also calibrate and score test-time dihedral averaging on the same
        held-out regions (recorded in the sidecar as ``alternatives``).
    calibrate_only : path-like, optional
        A head already fitted for this network: it is not trained again,
        only its factor is refitted and its coverage measured (seconds).
    progress : bool
        A tqdm bar over the training steps.

    Returns
    -------
    dict
        ``path`` (the head), ``figure``, ``calibration_scale``, ``coverage``
        (rows per held-out region) and ``alternatives``.

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
    psf = meta.get("psf_model", "wachter")
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

    def head_predict(data: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return predict_with_sigma(model, data, input_scale=scale)

    def calibrated_coverage(predict):
        """One factor fitted on the calibration noise draw, coverage on the other draw."""
        _, z_fit = held_out_coverage(
            predict, held, noise=held_noise, seed=config.calibration_seed, border=config.border
        )
        factor = fit_scale(list(z_fit.values()))
        rows, zs = held_out_coverage(
            predict,
            held,
            noise=held_noise,
            seed=config.coverage_seed,
            border=config.border,
            scale=factor,
        )
        return factor, rows, zs

    calibration, rows, zs = calibrated_coverage(head_predict)
    for row in rows:
        log.info("%s", _summary_line(row))
    alternatives: dict[str, Any] = {}
    if compare_dihedral:

        def dihedral(data: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            mean, spread = dihedral_prediction(backbone, data, input_scale=scale)
            return mean, np.maximum(spread, np.float32(1e-12))

        alt_scale, alt_rows, _ = calibrated_coverage(dihedral)
        alternatives["dihedral-ensemble"] = {
            "forward_passes": 8,
            "calibration_scale": alt_scale,
            "coverage": [{k: v for k, v in r.items() if k != "histogram"} for r in alt_rows],
        }
    wall = time.monotonic() - started
    path = Path(out) if out is not None else uncertainty_path(weights)
    metadata = {
        "calibration_scale": calibration,
        "calibration": (
            "one factor on sigma fitted so that the fractions of held-out pixels within one "
            "and two sigma, each region counting once, are closest to 68.27 and 95.45 % "
            f"(noise seed {config.calibration_seed}); coverage measured on noise seed "
            f"{config.coverage_seed}"
        ),
        "held_out_noise": held_noise,
        "coverage": rows,
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
            "backbone: Diaz Baso & Asensio Ramos 2018, A&A 614, A5"
        ),
    }
    save_sigma_head(head, path, backbone=weights, metadata=metadata)
    if figure is None:
        figure = path.with_name(path.name.replace(".safetensors", ".png"))
    calibration_figure(
        rows,
        figure,
        title=f"{observable} uncertainty on held-out regions (scale {calibration:.3f})",
        z_by_region=zs,
    )
    return {
        "path": path,
        "figure": figure,
        "calibration_scale": calibration,
        "coverage": rows,
        "alternatives": alternatives,
        "wall_seconds": wall,
    }
