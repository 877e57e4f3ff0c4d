"""Weights files: a safetensors ``state_dict`` plus a JSON sidecar.

``NAME.safetensors`` holds the tensors; ``NAME.json`` beside it holds what a
user needs to trust and reuse them: the architecture, the observable, the
input normalisation and its units, the PSF model and training data, the
package version and the sha256 of the ``.safetensors`` file. Loading checks
the sha256 and loads strictly, so a truncated, edited or mismatched file is a
clear :class:`~enhance_hmi.errors.WeightsError` naming the file, never a silently
wrong network.
"""

from __future__ import annotations

import copy
import functools
import json
import logging
import math
import numbers
import os
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from enhance_hmi import __version__
from enhance_hmi.atomic import atomic_path
from enhance_hmi.errors import WeightsError
from enhance_hmi.frame import OBSERVABLES
from enhance_hmi.model.network import EnhanceNet
from enhance_hmi.physics.constants import HMI_PIXEL_SCALE
from enhance_hmi.provenance import REFERENCE, sha256_file

__all__ = [
    "WEIGHTS_DIR_ENV",
    "default_weights",
    "load_weights",
    "check_trained_for",
    "load_weights_cached",
    "read_sidecar",
    "save_weights",
    "sidecar_path",
    "trained_pixel_scale",
]

log = logging.getLogger(__name__)

#: Environment variable naming a directory of ``{observable}.safetensors``
#: files that replaces the weights shipped in the package.
WEIGHTS_DIR_ENV = "ENHANCE_WEIGHTS_DIR"

#: Sidecar keys every weights file must have.
REQUIRED_KEYS = ("sha256", "architecture", "observable", "input_normalisation")

#: Sidecar key: the pixel scale of the network's training inputs, arcsec per
#: pixel. Sidecars without it were trained on HMI's 0.504"/px grid
#: (:data:`enhance_hmi.physics.HMI_PIXEL_SCALE`).
PIXEL_SCALE_KEY = "input_pixel_scale_arcsec"

#: Bounds on the sidecar's ``architecture`` that a network may have before
#: anything is allocated: the paper's network is 5 blocks of 64 filters
#: (445,249 parameters); these allow ~200x that, so a typo (``width: 1e6``,
#: 36 TB of parameters) is an error instead of an allocation.
ARCHITECTURE_LIMITS = {"n_blocks": (0, 64), "width": (1, 512), "upscale": (1, 8)}
#: At most this many parameters (400 MB in float32).
MAX_PARAMETERS = 100_000_000
#: Largest side of the optional linear skip filter (odd).
MAX_LINEAR_SKIP = 31


def sidecar_path(path: str | os.PathLike[str]) -> Path:
    """The JSON sidecar of a weights file (same name, ``.json``)."""
    return Path(path).with_suffix(".json")


def write_sidecar(path: str | os.PathLike[str], sidecar: dict[str, Any]) -> Path:
    """Write the JSON sidecar of weights file ``path`` atomically (sorted keys, indented)."""
    target = sidecar_path(path)
    with atomic_path(target) as tmp:
        tmp.write_text(json.dumps(sidecar, indent=2, sort_keys=True, default=str) + "\n")
    return target


def save_weights(
    model: EnhanceNet, path: str | os.PathLike[str], *, metadata: Mapping[str, Any]
) -> Path:
    """Write ``model``'s state_dict to ``path`` and its sidecar, atomically.

    Parameters
    ----------
    model : EnhanceNet
    path : path-like
        Destination ``.safetensors`` file; the sidecar goes to
        ``path.with_suffix(".json")``.
    metadata : mapping
        At least ``observable`` and ``input_normalisation`` (``{"quantity",
        "units", "scale"}``: network input = physical value / scale). Other
        keys (``psf_model``, ``training_data``, ``training``, ``metrics``...)
        are stored as given. ``architecture``, ``sha256``, ``package_version``
        and ``reference`` are filled in here.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    path = Path(path)
    if path.suffix != ".safetensors":
        raise WeightsError(f"weights file {path} must end in .safetensors")
    for key in ("observable", "input_normalisation"):
        if key not in metadata:
            raise WeightsError(f"metadata for {path.name} lacks {key!r}")
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata={"format": "pt", "observable": metadata["observable"]})
        os.chmod(tmp, 0o644)  # safetensors creates 0600 files; weights are meant to be shared
    sidecar = dict(metadata)
    sidecar.update(
        architecture=model.architecture,
        package_version=__version__,
        reference=REFERENCE,
        sha256=sha256_file(path),
        weights_file=path.name,
    )
    write_sidecar(path, sidecar)
    log.info("wrote %s (sha256 %s…)", path, sidecar["sha256"][:12])
    return path


def _is_integer(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _positive_finite(value: object) -> bool:
    return (
        isinstance(value, numbers.Real)
        and not isinstance(value, bool)
        and math.isfinite(float(value))
        and float(value) > 0.0
    )


def parameter_count(architecture: Mapping[str, Any]) -> int:
    """Parameters of an :class:`~enhance_hmi.model.EnhanceNet` of ``architecture``, unbuilt.

    Counts the head (3x3, 1 -> width), ``2 n_blocks + 2`` 3x3 width x width
    convolutions with their batch norms (``n_blocks`` blocks of two, the body
    convolution, the one after upsampling), the 1x1 tail and the optional
    linear skip (``upscale**2`` filters of ``linear_skip**2`` weights).
    """
    blocks, width = int(architecture.get("n_blocks", 5)), int(architecture.get("width", 64))
    upscale, skip = int(architecture.get("upscale", 2)), int(architecture.get("linear_skip", 0))
    convolutions = 2 * blocks + 2
    batch_norms = 2 * blocks + 1
    count = 10 * width  # head: 9 weights + 1 bias per filter
    count += convolutions * (9 * width * width + width)
    count += batch_norms * 2 * width  # scale and shift (running statistics are buffers)
    count += width + 1  # tail
    if skip:
        count += upscale**2 * (skip * skip + 1)
    return count


def _check_sidecar_values(meta: dict[str, Any], side: Path) -> None:
    """Raise unless the sidecar describes a network that can be built and used.

    Checked before anything is allocated: the architecture (integers within
    :data:`ARCHITECTURE_LIMITS`, at most :data:`MAX_PARAMETERS` parameters),
    the observable, the input scale (finite, positive: the network input is
    the physical value divided by it) and, when present, the training pixel
    scale (finite, positive).
    """
    where = f"sidecar {side}"
    if meta["observable"] not in OBSERVABLES:
        raise WeightsError(
            f"{where}: observable {meta['observable']!r} is not one of {', '.join(OBSERVABLES)}"
        )
    arch = meta["architecture"]
    if not isinstance(arch, dict):
        raise WeightsError(f"{where}: architecture must be an object, got {arch!r}")
    for key, (low, high) in ARCHITECTURE_LIMITS.items():
        if key not in arch:
            continue
        value = arch[key]
        if not _is_integer(value) or not low <= value <= high:
            raise WeightsError(
                f"{where}: architecture {key} = {value!r} is not an integer in "
                f"[{low}, {high}]; fix the sidecar or retrain"
            )
    if "linear_skip" in arch:
        skip = arch["linear_skip"]
        if not _is_integer(skip) or not (skip == 0 or (skip % 2 == 1 and skip <= MAX_LINEAR_SKIP)):
            raise WeightsError(
                f"{where}: architecture linear_skip = {skip!r} must be 0 or an odd integer "
                f"up to {MAX_LINEAR_SKIP}"
            )
    if "bn_eps" in arch and not _positive_finite(arch["bn_eps"]):
        raise WeightsError(f"{where}: architecture bn_eps = {arch['bn_eps']!r} must be positive")
    count = parameter_count(arch)
    if count > MAX_PARAMETERS:
        raise WeightsError(
            f"{where}: architecture {arch} means {count:,} parameters (at most "
            f"{MAX_PARAMETERS:,}); fix the sidecar"
        )
    norm = meta["input_normalisation"]
    scale = norm.get("scale", 1.0) if isinstance(norm, dict) else None
    if not _positive_finite(scale):
        raise WeightsError(
            f"{where}: input_normalisation scale = {scale!r} must be a finite positive "
            "number (network input = physical value / scale); fix the sidecar"
        )
    if PIXEL_SCALE_KEY in meta and not _positive_finite(meta[PIXEL_SCALE_KEY]):
        raise WeightsError(
            f"{where}: {PIXEL_SCALE_KEY} = {meta[PIXEL_SCALE_KEY]!r} must be a finite "
            "positive number of arcsec per pixel"
        )


def trained_pixel_scale(meta: Mapping[str, Any]) -> float:
    """The pixel scale the network of sidecar ``meta`` was trained for, arcsec per pixel.

    The sidecar's :data:`PIXEL_SCALE_KEY`; HMI's 0.504"/px
    (:data:`enhance_hmi.physics.HMI_PIXEL_SCALE`) when the sidecar does not say.
    """
    value = meta.get(PIXEL_SCALE_KEY)
    if value is None:
        return float(HMI_PIXEL_SCALE.to_value("arcsec"))
    return float(value)


def read_sidecar(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and check the sidecar of ``path`` (not the tensors).

    Raises
    ------
    WeightsError
        The sidecar is missing, not a JSON object, lacks a required key, or
        holds a value the network cannot use (see :func:`_check_sidecar_values`):
        one sentence naming the sidecar, before any tensor is allocated.
    """
    path = Path(path)
    side = sidecar_path(path)
    if not side.is_file():
        raise WeightsError(f"weights file {path} has no sidecar {side.name} beside it")
    try:
        meta = json.loads(side.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WeightsError(f"sidecar {side} is not valid JSON ({exc})") from exc
    if not isinstance(meta, dict):
        raise WeightsError(f"sidecar {side} does not hold a JSON object")
    missing = [k for k in REQUIRED_KEYS if k not in meta]
    if missing:
        raise WeightsError(f"sidecar {side} lacks {', '.join(missing)}")
    _check_sidecar_values(meta, side)
    return meta


def load_weights(
    path: str | os.PathLike[str], *, device: str | torch.device = "cpu"
) -> tuple[EnhanceNet, dict[str, Any]]:
    """Load a network from ``path``, verifying its sha256 and loading strictly.

    Returns
    -------
    (EnhanceNet, dict)
        The network in eval mode on ``device`` and the sidecar metadata.

    Raises
    ------
    WeightsError
        The file or its sidecar is missing or unreadable, the sha256 differs
        from the sidecar's, or the tensors do not fit the architecture.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist")
    meta = read_sidecar(path)
    actual = sha256_file(path)
    if actual != meta["sha256"]:
        raise WeightsError(
            f"weights file {path} is corrupt or was changed: sha256 {actual[:12]}… does not "
            f"match {meta['sha256'][:12]}… in {sidecar_path(path).name}"
        )
    try:
        model = EnhanceNet(**meta["architecture"])
    except (TypeError, ValueError) as exc:
        raise WeightsError(f"{sidecar_path(path)} has an invalid architecture: {exc}") from exc
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise WeightsError(f"weights file {path} is not a readable safetensors file") from exc
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise WeightsError(
            f"weights file {path} does not fit architecture {meta['architecture']}: {first}"
        ) from exc
    model.eval()
    return model.to(device), meta


@functools.lru_cache(maxsize=8)
def _cached(path: str, version: tuple[int, ...], device: str) -> tuple[EnhanceNet, dict[str, Any]]:
    if torch.device(device).type == "cpu":
        return load_weights(path, device=device)
    # Another device: a copy of the checked CPU network, so the file is read
    # and hashed once per process however many devices use it.
    model, meta = _cached(path, version, "cpu")
    return copy.deepcopy(model).to(device), meta


def check_trained_for(
    meta: dict[str, Any], observable: str, weights: str | os.PathLike[str], image: str
) -> None:
    """Raise unless the weights of sidecar ``meta`` were trained for ``observable``.

    Parameters
    ----------
    meta : dict
        Sidecar metadata (:func:`read_sidecar`, :func:`load_weights`).
    observable : str
        Observable of the image about to be enhanced.
    weights : path-like
        The weights file, for the message.
    image : str
        What the image is, for the message (a file name).

    Raises
    ------
    WeightsError
        One sentence naming both and the way out.
    """
    trained_for = meta.get("observable")
    if trained_for != observable:
        raise WeightsError(
            f"weights {Path(weights).name} were trained for {trained_for} but {image} is a "
            f"{observable} image; pass weights trained for {observable}"
        )


def load_weights_cached(
    path: str | os.PathLike[str], *, device: str | torch.device = "cpu"
) -> tuple[EnhanceNet, dict[str, Any]]:
    """:func:`load_weights` once per (file, version on disk, device) per process.

    The file is read and its sha256 checked once, for the CPU; a GPU copy is
    made from that CPU network.

    A batch job enhancing many frames loads and checks the network once; a
    weights file replaced on disk is loaded again. The version on disk is
    the inode, size, mtime and ctime: :func:`save_weights` replaces the file
    by a rename (new inode), so even two saves within one file-system clock
    tick with the same size are told apart.
    """
    path = Path(path).resolve()
    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist")
    stat = path.stat()
    version = (stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)
    return _cached(str(path), version, str(device))


def default_weights(observable: str) -> Path:
    """The trained weights for ``observable``.

    ``$ENHANCE_WEIGHTS_DIR/{observable}.safetensors`` when that variable is
    set, else the weights shipped in ``enhance_hmi/data/weights/``.

    Raises
    ------
    WeightsError
        No weights are installed for ``observable``.
    """
    override = os.environ.get(WEIGHTS_DIR_ENV)
    if override:
        path = Path(override) / f"{observable}.safetensors"
        where = f"{WEIGHTS_DIR_ENV}={override}"
    else:
        path = Path(str(resources.files("enhance_hmi") / "data" / "weights")) / (
            f"{observable}.safetensors"
        )
        where = "the package"
    if not path.is_file():
        raise WeightsError(f"no trained weights are installed for {observable} (looked in {where})")
    return path
