"""From scene files to training and held-out pairs."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence

import numpy as np

from enhance_hmi.errors import ConfigError
from enhance_hmi.physics.psf import DEFAULT_PSF_MODEL
from enhance_hmi.scenes import (
    Scene,
    held_out_part,
    is_nfi_magnetogram,
    load_continuum_scene,
    load_magnetogram_scene,
    load_nfi_magnetogram_scene,
    parse_scene_spec,
    read_scene_image,
    split_scene,
)
from enhance_hmi.training.pairs import Pair, augmented_pairs, degraded_pair

__all__ = ["build_pairs", "held_out_pairs", "load_scenes"]

log = logging.getLogger(__name__)


def load_scenes(specs: Sequence[str], observable: str) -> list[Scene]:
    """Read ``PATH[:ARCSEC]`` specs as truth scenes of ``observable``.

    Continuum: high-resolution images. Magnetogram: a Hinode SOT/NFI V/I
    image (:func:`load_nfi_magnetogram_scene`) or an HMI magnetogram used
    self-similarly (:func:`load_magnetogram_scene`).
    """
    scenes = []
    for spec in specs:
        path, scale = parse_scene_spec(spec)
        if observable == "continuum":
            scenes.append(load_continuum_scene(path, scale))
        elif is_nfi_magnetogram(read_scene_image(path)[1]):
            scenes.append(load_nfi_magnetogram_scene(path, pixel_scale=scale))
        else:
            scenes.append(load_magnetogram_scene(path))
    return scenes


def held_out_pairs(
    scenes: Sequence[Scene],
    *,
    holdout: float,
    psf_model: str = DEFAULT_PSF_MODEL,
    gains: Sequence[float] | None = None,
) -> list[Pair]:
    """One noise-free degraded pair per held-out region (the split of :func:`build_pairs`).

    A scene known up to a calibration factor (``scene.gain`` not (1, 1))
    gives one pair per factor in ``gains`` (default: both ends of its
    range), scaled to physical units and labelled with the factor.
    """
    pairs = []
    for scene in scenes:
        pair = degraded_pair(held_out_part(scene, holdout=holdout), psf_model=psf_model)
        if scene.gain == (1.0, 1.0):
            pairs.append(pair)
            continue
        for k in gains if gains is not None else scene.gain:
            pairs.append(
                Pair(
                    input=pair.input * np.float32(k),
                    target=pair.target * np.float32(k),
                    valid=pair.valid,
                    label=f"{pair.label} k={k:g}",
                )
            )
    return pairs


def build_pairs(
    scenes: Sequence[Scene],
    *,
    variants: int,
    holdout: float,
    seed: int,
    psf_model: str = DEFAULT_PSF_MODEL,
    weights: Sequence[float] | None = None,
) -> tuple[list[Pair], list[Pair]]:
    """Split each scene by region, augment the training parts, degrade the rest.

    Parameters
    ----------
    scenes : sequence of Scene
    variants : int
        Augmented degradations of each scene's training region
        (:func:`~enhance_hmi.training.pairs.augmented_pairs`).
    holdout : float
        Fraction of each scene's columns held out (:func:`~enhance_hmi.scenes.split_scene`).
    seed : int
        Seed of the augmentations.
    psf_model : str
        HMI PSF of the degradation.
    weights : sequence of float, optional
        One per scene: training patches are drawn from each scene in
        proportion to its training area times its weight (default 1 each).

    Returns
    -------
    (train_pairs, held_out_pairs)
        ``variants`` augmented pairs per scene for training; one noise-free
        pair per held-out region.

    Raises
    ------
    ConfigError
        ``weights`` not one per scene, or a weight not positive and finite.
    """
    weights = [1.0] * len(scenes) if weights is None else [float(w) for w in weights]
    if len(weights) != len(scenes) or not all(0 < w < float("inf") for w in weights):
        raise ConfigError(
            f"give one positive, finite weight per scene ({len(scenes)} scenes); got {weights}"
        )
    rng = np.random.default_rng(seed)
    train_pairs = []
    for scene, weight in zip(scenes, weights, strict=True):
        train_part = split_scene(scene, holdout=holdout)[0]
        augmented = augmented_pairs(train_part, variants, rng=rng, psf_model=psf_model)
        train_pairs += [dataclasses.replace(pair, weight=weight) for pair in augmented]
        log.info("%s: %d training variants, weight %g", scene.name, variants, weight)
    return train_pairs, held_out_pairs(scenes, holdout=holdout, psf_model=psf_model)
