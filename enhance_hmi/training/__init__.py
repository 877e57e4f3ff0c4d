"""Training the Enhance networks: pairs from truth scenes, augmentation, the loop.

Public API
----------
load_scenes
    Truth scenes (:mod:`enhance_hmi.scenes`) of an observable from ``PATH[:ARCSEC]`` specs.
Pair, degraded_pair, augmented_pairs, PatchSampler
    Degraded pairs (:func:`enhance_hmi.physics.degrade`) and augmented patches.
TrainConfig, train, PAPER_RECIPE
    The seeded, resumable training loop.
build_pairs
    Scenes -> (train pairs, held-out pairs) for an observable.

Must not import drms.

References
----------
.. [1] Díaz Baso, C. J. & Asensio Ramos, A. (2018), "Enhancing SDO/HMI images
   using deep learning", A&A 614, A5.
"""

from enhance_hmi.training.datasets import build_pairs, held_out_pairs, load_scenes
from enhance_hmi.training.loop import (
    PAPER_RECIPE,
    TrainConfig,
    recalibrate_batchnorm,
    train,
    validation_loss,
)
from enhance_hmi.training.pairs import Pair, PatchSampler, augmented_pairs, degraded_pair

__all__ = [
    "PAPER_RECIPE",
    "Pair",
    "PatchSampler",
    "TrainConfig",
    "augmented_pairs",
    "build_pairs",
    "degraded_pair",
    "held_out_pairs",
    "load_scenes",
    "recalibrate_batchnorm",
    "train",
    "validation_loss",
]
