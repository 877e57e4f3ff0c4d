"""The sigma head's training on a frozen network, and predictions with it.

:func:`fit_sigma_head` trains a :class:`~enhance_hmi.model.uncertainty.SigmaHead`
on patches of the training regions with the Gaussian negative
log-likelihood of the 28 cm truth around the frozen network's output,
``log sigma + (y - mu)^2 / (2 sigma^2)`` [1]_. :func:`predict_with_sigma`
runs a head on a small image; :func:`dihedral_prediction` is the
alternative the head is compared with: test-time averaging over the 8
rotations and flips of the square (8 forward passes), sigma being the
spread of the 8 outputs.

References
----------
.. [1] Nix, D. A. & Weigend, A. S. (1994), "Estimating the mean and variance
   of the target probability distribution", Proc. IEEE ICNN, 55.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch

from enhance_hmi.errors import TrainingError
from enhance_hmi.inference.symmetry import symmetry_group
from enhance_hmi.model.fuse import fold_batchnorm
from enhance_hmi.model.network import EnhanceNet
from enhance_hmi.model.uncertainty import (
    EnhanceWithUncertainty,
    SigmaHead,
    backbone_forward,
    fold_for_inference,
)
from enhance_hmi.training.pairs import PatchSampler

__all__ = [
    "DIHEDRAL",
    "SigmaHeadConfig",
    "dihedral_prediction",
    "fit_sigma_head",
    "gaussian_nll",
    "predict_with_sigma",
]


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


#: The 8 symmetries of the square (quarter turns and mirror images), as
#: :func:`enhance_hmi.inference.symmetry_group` gives them for a continuum image.
DIHEDRAL = symmetry_group(8, "continuum")


def dihedral_prediction(
    backbone: EnhanceNet, data: np.ndarray, *, input_scale: float
) -> tuple[np.ndarray, np.ndarray]:
    """Mean and spread of the network's outputs over the 8 symmetries of the square.

    The input is mapped by each of :data:`DIHEDRAL`, enhanced and mapped back
    (:meth:`enhance_hmi.inference.Symmetry.undo`), 8 times (8x the cost of
    one pass). Returns ``(mean, std)`` in physical units; the spread is an
    uncalibrated sigma (a factor is fitted like the head's).
    """
    net = fold_batchnorm(backbone)
    x = np.asarray(data, dtype=np.float32) / np.float32(input_scale)
    outs = []
    with torch.inference_mode():
        for symmetry in DIHEDRAL:
            y = net(torch.from_numpy(symmetry.apply(x))[None, None])[0, 0].numpy()
            outs.append(symmetry.undo(y))
    stack = np.stack(outs) * np.float32(input_scale)
    return stack.mean(axis=0), stack.std(axis=0)
