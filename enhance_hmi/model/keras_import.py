"""Import the 2018 Keras weights of the original Enhance code.

The code published with Díaz Baso & Asensio Ramos (2018) builds the network
in Keras 2 (``models.keepsize``: ``ReflectionPadding2D`` before every 3x3
``Conv2D`` with ``padding='valid'``, ``BatchNormalization`` with Keras'
defaults, ``UpSampling2D`` by 2) and ships ``network/{intensity,blos}_weights.hdf5``
written by ``Model.save_weights``. This module reads such a file with h5py,
maps its layers one to one onto :class:`~enhance_hmi.model.network.EnhanceNet`
(:meth:`~enhance_hmi.model.network.EnhanceNet.keras_layer_order`) and writes an
ordinary weights file with :func:`~enhance_hmi.model.weights.save_weights`.

File layouts understood
-----------------------
* ``Model.save_weights`` (Keras 2): one group per layer at the top level,
  ``conv2d_1/conv2d_1/kernel:0``; the file attribute ``layer_names`` lists
  the layers and each layer group's ``weight_names`` its datasets.
* ``Model.save``: the same under a ``model_weights`` group.
* Files without those attributes: the datasets are found by walking each
  layer group. Layer names with or without a numeric suffix (``conv2d``,
  ``conv2d_1``, ... as tf.keras names them) are ordered by that suffix,
  which is their creation order, i.e. the order of the network.

Conversions
-----------
* Keras kernels ``(kh, kw, in, out)`` -> PyTorch ``(out, in, kh, kw)``. Both
  frameworks compute a cross-correlation, so no kernel flip.
* Keras' ``ReflectionPadding2D`` of the 2018 code is ``tf.pad(...,
  "REFLECT")``, which mirrors without repeating the edge pixel, as
  PyTorch's ``padding_mode="reflect"`` does.
* ``gamma, beta, moving_mean, moving_variance`` -> BatchNorm ``weight, bias,
  running_mean, running_var``; the epsilon is Keras' default 1e-3 (PyTorch:
  1e-5), set on the network and recorded in the sidecar's architecture.

References
----------
.. [1] Díaz Baso, C. J. & Asensio Ramos, A. (2018), "Enhancing SDO/HMI images
   using deep learning", A&A 614, A5; code: github.com/cdiazbas/enhance
   (``models.py``, ``enhance.py``).
.. [2] Keras 2 documentation, ``BatchNormalization(epsilon=1e-3)`` and the
   HDF5 weights format of ``Model.save_weights``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from enhance_hmi.errors import WeightsError
from enhance_hmi.model.network import EnhanceNet
from enhance_hmi.model.weights import save_weights
from enhance_hmi.physics.psf import DEFAULT_PSF_MODEL
from enhance_hmi.provenance import sha256_file

__all__ = [
    "KERAS_BN_EPS",
    "INPUT_NORMALISATION",
    "KerasWeights",
    "import_keras_weights",
    "keras_to_safetensors",
    "read_keras_weights",
]

log = logging.getLogger(__name__)

#: Keras 2 ``BatchNormalization`` default epsilon (the 2018 code kept the default).
KERAS_BN_EPS = 1e-3

#: Network input units of the 2018 networks (paper Sect. 3: continuum in
#: quiet-Sun units, Blos in kG, i.e. gauss / 1000).
INPUT_NORMALISATION: dict[str, dict[str, object]] = {
    "continuum": {"quantity": "continuum intensity", "units": "I/I_quiet-Sun", "scale": 1.0},
    "magnetogram": {"quantity": "Blos", "units": "G", "scale": 1000.0},
}

_CONV = re.compile(r"^conv2d(?:_(\d+))?$")
_BN = re.compile(r"^batch_normalization(?:_(\d+))?$")
_CONV_KEYS = ("kernel", "bias")
_BN_KEYS = ("gamma", "beta", "moving_mean", "moving_variance")


@dataclasses.dataclass
class KerasWeights:
    """The arrays of a Keras weights file, grouped by layer, in network order.

    Attributes
    ----------
    convs : list of (name, {"kernel", "bias"})
        ``conv2d_*`` layers in creation order.
    bns : list of (name, {"gamma", "beta", "moving_mean", "moving_variance"})
        ``batch_normalization_*`` layers in creation order.
    attrs : dict
        File attributes worth recording (``keras_version``, ``backend``).
    """

    convs: list[tuple[str, dict[str, np.ndarray]]]
    bns: list[tuple[str, dict[str, np.ndarray]]]
    attrs: dict[str, str]


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _short(name: str) -> str:
    """``conv2d_1/kernel:0`` -> ``kernel``."""
    return name.rsplit("/", 1)[-1].split(":", 1)[0]


def _layer_arrays(group: Any, layer: str, path: Path) -> dict[str, np.ndarray]:
    """All datasets of one layer group, keyed by their short name."""
    import h5py

    arrays: dict[str, np.ndarray] = {}
    names = [_text(n) for n in group.attrs.get("weight_names", [])]
    if names:
        for name in names:
            if name not in group:
                raise WeightsError(
                    f"Keras file {path} lists weight {name} of layer {layer} but does not hold it"
                )
            arrays[_short(name)] = np.asarray(group[name][()], dtype=np.float32)
        return arrays

    def visit(name: str, obj: object) -> None:
        if isinstance(obj, h5py.Dataset):
            arrays[_short(name)] = np.asarray(obj[()], dtype=np.float32)

    group.visititems(visit)
    return arrays


def _ordered(
    found: dict[str, tuple[int, dict[str, np.ndarray]]], kind: str, path: Path
) -> list[tuple[str, dict[str, np.ndarray]]]:
    """Layers sorted by suffix, with a clear error on a gap in the numbering."""
    items = sorted(found.items(), key=lambda item: item[1][0])
    numbers = [number for _, (number, _) in items]
    if numbers:
        expected = range(numbers[0], numbers[-1] + 1)
        missing = [n for n in expected if n not in set(numbers)]
        if missing:
            names = ", ".join(f"{kind}_{n}" for n in missing)
            raise WeightsError(f"Keras file {path} lacks layer(s) {names}; is the file complete?")
    return [(name, arrays) for name, (_, arrays) in items]


def read_keras_weights(path: str | os.PathLike[str]) -> KerasWeights:
    """Read the convolution and batch-norm arrays of a Keras 2 weights file.

    Parameters
    ----------
    path : path-like
        An HDF5 file written by Keras ``Model.save_weights`` or ``Model.save``.

    Returns
    -------
    KerasWeights

    Raises
    ------
    WeightsError
        Not a readable HDF5 file, no convolution layers, a layer listed but
        absent, a gap in the layer numbering or a missing weight.
    """
    import h5py

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"Keras weights file {path} does not exist")
    try:
        handle = h5py.File(path, "r")
    except OSError as exc:
        raise WeightsError(f"Keras weights file {path} is not a readable HDF5 file") from exc
    with handle:
        root = handle.get("model_weights", handle)
        listed = [_text(n) for n in root.attrs.get("layer_names", [])]
        for name in listed:
            if name not in root:
                raise WeightsError(
                    f"Keras file {path} lists layer {name} in layer_names but does not hold it"
                )
        names = listed or [k for k in root if isinstance(root[k], h5py.Group)]
        convs: dict[str, tuple[int, dict[str, np.ndarray]]] = {}
        bns: dict[str, tuple[int, dict[str, np.ndarray]]] = {}
        for name in names:
            for pattern, table, keys in ((_CONV, convs, _CONV_KEYS), (_BN, bns, _BN_KEYS)):
                match = pattern.match(name)
                if not match:
                    continue
                arrays = _layer_arrays(root[name], name, path)
                absent = [k for k in keys if k not in arrays]
                if absent:
                    raise WeightsError(
                        f"Keras file {path}: layer {name} lacks weight(s) {', '.join(absent)}"
                    )
                table[name] = (int(match.group(1) or 0), {k: arrays[k] for k in keys})
        attrs = {
            key: _text(handle.attrs[key])
            for key in ("keras_version", "backend")
            if key in handle.attrs
        }
    if not convs:
        raise WeightsError(
            f"Keras file {path} holds no conv2d layers; expected the weights of the 2018 "
            "Enhance model (conv2d_1..conv2d_14, batch_normalization_1..11)"
        )
    return KerasWeights(
        convs=_ordered(convs, "conv2d", path),
        bns=_ordered(bns, "batch_normalization", path),
        attrs=attrs,
    )


def _architecture(weights: KerasWeights, path: Path) -> tuple[int, int]:
    """``(n_blocks, width)`` implied by the layer counts and the first kernel."""
    n_conv, n_bn = len(weights.convs), len(weights.bns)
    n_blocks = (n_conv - 4) // 2
    if n_blocks < 0 or n_conv != 2 * n_blocks + 4 or n_bn != 2 * n_blocks + 1:
        raise WeightsError(
            f"Keras file {path} has {n_conv} conv2d and {n_bn} batch_normalization layers; "
            "the Enhance model with n residual blocks has 2n+4 and 2n+1 (14 and 11 for n=5)"
        )
    kernel = weights.convs[0][1]["kernel"]
    if kernel.ndim != 4:
        raise WeightsError(
            f"Keras file {path}: {weights.convs[0][0]} kernel has shape {kernel.shape}, "
            "expected (kh, kw, in, out)"
        )
    return n_blocks, int(kernel.shape[3])


def _copy(target: torch.Tensor | None, value: np.ndarray, what: str, path: Path) -> None:
    if target is None:
        raise WeightsError(
            f"Keras file {path}: the network has no tensor for {what} (a layer built without "
            "bias or batch-norm statistics); it cannot hold these weights"
        )
    if tuple(target.shape) != value.shape:
        raise WeightsError(
            f"Keras file {path}: {what} has shape {value.shape} where the network expects "
            f"{tuple(target.shape)}"
        )
    with torch.no_grad():
        target.copy_(torch.from_numpy(np.ascontiguousarray(value)))


def import_keras_weights(path: str | os.PathLike[str], *, upscale: int = 2) -> EnhanceNet:
    """Build an :class:`EnhanceNet` holding the weights of a 2018 Keras file.

    Parameters
    ----------
    path : path-like
        Keras ``*_weights.hdf5`` (see the module docstring for the layouts).
    upscale : int
        The ``UpSampling2D`` factor, which the weights do not record (the
        2018 code used Keras' default, 2).

    Returns
    -------
    EnhanceNet
        In eval mode, with ``bn_eps`` = :data:`KERAS_BN_EPS`; depth and width
        inferred from the file.

    Raises
    ------
    WeightsError
        A missing layer or weight, or shapes that do not form the Enhance model.
    """
    path = Path(path)
    return _build(read_keras_weights(path), path, upscale=upscale)


def _build(weights: KerasWeights, path: Path, *, upscale: int) -> EnhanceNet:
    n_blocks, width = _architecture(weights, path)
    model = EnhanceNet(n_blocks=n_blocks, width=width, upscale=upscale, bn_eps=KERAS_BN_EPS)
    convs, bns = model.keras_layer_order()
    for conv, (name, arrays) in zip(convs, weights.convs, strict=True):
        kernel = arrays["kernel"]
        if kernel.ndim != 4:
            raise WeightsError(f"Keras file {path}: {name} kernel is not 4-D ({kernel.shape})")
        _copy(conv.weight, kernel.transpose(3, 2, 0, 1), f"{name} kernel (as out,in,kh,kw)", path)
        _copy(conv.bias, arrays["bias"], f"{name} bias", path)
    for bn, (name, arrays) in zip(bns, weights.bns, strict=True):
        _copy(bn.weight, arrays["gamma"], f"{name} gamma", path)
        _copy(bn.bias, arrays["beta"], f"{name} beta", path)
        _copy(bn.running_mean, arrays["moving_mean"], f"{name} moving_mean", path)
        _copy(bn.running_var, arrays["moving_variance"], f"{name} moving_variance", path)
        if np.any(arrays["moving_variance"] < 0):
            raise WeightsError(f"Keras file {path}: {name} has a negative moving_variance")
    log.info(
        "imported %s: %d residual blocks, %d filters, %d conv / %d batch-norm layers",
        path.name,
        n_blocks,
        width,
        len(weights.convs),
        len(weights.bns),
    )
    return model.eval()


def keras_to_safetensors(
    source: str | os.PathLike[str],
    destination: str | os.PathLike[str],
    *,
    observable: str,
    psf_model: str = DEFAULT_PSF_MODEL,
    training_data: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Convert a 2018 Keras weights file to ``destination`` (+ JSON sidecar).

    Parameters
    ----------
    source : path-like
        Keras ``*_weights.hdf5``.
    destination : path-like
        ``.safetensors`` file to write (atomically, with its sidecar).
    observable : {"continuum", "magnetogram"}
        What the network was trained on (the 2018 files are
        ``intensity_weights.hdf5`` and ``blos_weights.hdf5``).
    psf_model : str
        PSF the training inputs were degraded with (paper eq. 1, the modified
        Wachter et al. 2012 form).
    training_data : str, optional
        Description stored in the sidecar; default names the paper's MURaM set.
    extra : mapping, optional
        More sidecar keys.

    Returns
    -------
    pathlib.Path
        ``destination``.
    """
    if observable not in INPUT_NORMALISATION:
        raise WeightsError(
            f"unknown observable {observable!r}; use one of {', '.join(INPUT_NORMALISATION)}"
        )
    source = Path(source)
    weights = read_keras_weights(source)
    model = _build(weights, source, upscale=2)
    attrs = weights.attrs
    metadata: dict[str, Any] = {
        "observable": observable,
        "input_normalisation": dict(INPUT_NORMALISATION[observable]),
        "psf_model": psf_model,
        "training_data": training_data
        or (
            "MURaM simulations (Cheung et al. 2010) degraded to HMI, as in "
            "Diaz Baso & Asensio Ramos 2018, A&A 614, A5 (original Keras training)"
        ),
        "batch_norm_eps": KERAS_BN_EPS,
        "imported_from": {
            "file": source.name,
            "sha256": sha256_file(source),
            "format": "Keras 2 HDF5 weights (github.com/cdiazbas/enhance)",
            **attrs,
        },
        "notes": (
            "the 2018 code normalised continuum images by their maximum before the "
            "network; this package feeds quiet-Sun units"
        )
        if observable == "continuum"
        else "the 2018 network takes Blos in kG",
    }
    metadata.update(extra or {})
    return save_weights(model, destination, metadata=metadata)
