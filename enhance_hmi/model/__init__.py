"""The Enhance network and its weights files.

Public API
----------
EnhanceNet
    The network of Díaz Baso & Asensio Ramos (2018, A&A 614, A5).
FLOP_PER_INPUT_PIXEL
    Its cost per input pixel (~1.1 MFLOP), for throughput figures.
save_weights, load_weights, load_weights_cached, read_sidecar, sidecar_path
    safetensors + JSON sidecar (sha256-verified, strict loading).
check_trained_for
    The one check that weights fit the observable of an image.
psf_model_of
    The HMI PSF model a network was trained with (its sidecar's;
    :func:`enhance_hmi.physics.psf_model_of`).
default_weights
    The shipped (or ``$ENHANCE_WEIGHTS_DIR``) weights for an observable.
import_keras_weights, keras_to_safetensors
    The 2018 Keras ``*_weights.hdf5`` files -> an :class:`EnhanceNet` / a
    weights file with its sidecar.

This package never imports drms.
"""

from enhance_hmi.model.keras_import import import_keras_weights, keras_to_safetensors
from enhance_hmi.model.network import FLOP_PER_INPUT_PIXEL, PAPER_ARCHITECTURE, EnhanceNet
from enhance_hmi.model.weights import (
    WEIGHTS_DIR_ENV,
    check_trained_for,
    default_weights,
    load_weights,
    load_weights_cached,
    read_sidecar,
    save_weights,
    sidecar_path,
)
from enhance_hmi.physics.psf import psf_model_of

__all__ = [
    "FLOP_PER_INPUT_PIXEL",
    "PAPER_ARCHITECTURE",
    "WEIGHTS_DIR_ENV",
    "EnhanceNet",
    "check_trained_for",
    "default_weights",
    "import_keras_weights",
    "keras_to_safetensors",
    "load_weights",
    "load_weights_cached",
    "psf_model_of",
    "read_sidecar",
    "save_weights",
    "sidecar_path",
]
