"""Import of the 2018 Keras weights (github.com/cdiazbas/enhance, ``models.keepsize``).

The HDF5 files are written here with h5py in the layouts Keras 2 uses
(``Model.save_weights`` and ``Model.save``), from random arrays, and the
imported network is checked against a NumPy re-implementation of the Keras
model: reflection padding (``tf.pad(..., "REFLECT")``) + valid 3x3
convolution, BatchNormalization with Keras' epsilon 1e-3, nearest 2x
upsampling (Díaz Baso & Asensio Ramos 2018, A&A 614, A5, Fig. 2).
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from enhance_hmi.cli import main
from enhance_hmi.errors import WeightsError
from enhance_hmi.model import EnhanceNet, load_weights, save_weights, sidecar_path
from enhance_hmi.model.keras_import import (
    KERAS_BN_EPS,
    import_keras_weights,
    keras_to_safetensors,
    read_keras_weights,
)

Layers = dict[str, dict[str, np.ndarray]]


# ------------------------------------------------- a Keras file from scratch
def keras_layers(n_blocks: int, width: int, seed: int = 0) -> tuple[list[str], Layers]:
    """Layer names of ``models.keepsize`` in creation order, and random weights."""
    rng = np.random.default_rng(seed)
    count: dict[str, int] = {}
    names: list[str] = []
    weights: Layers = {}

    def layer(kind: str) -> str:
        count[kind] = count.get(kind, 0) + 1
        name = f"{kind}_{count[kind]}"
        names.append(name)
        return name

    def conv(c_in: int, c_out: int, k: int = 3) -> None:
        std = np.sqrt(2.0 / (k * k * c_in))
        weights[layer("conv2d")] = {
            "kernel": rng.normal(0, std, (k, k, c_in, c_out)).astype(np.float32),
            "bias": rng.normal(0, 0.05, c_out).astype(np.float32),
        }

    def bn() -> None:
        weights[layer("batch_normalization")] = {
            "gamma": (0.5 + rng.random(width)).astype(np.float32),
            "beta": rng.normal(0, 0.1, width).astype(np.float32),
            "moving_mean": rng.normal(0, 0.1, width).astype(np.float32),
            "moving_variance": (0.01 + rng.random(width) * 0.05).astype(np.float32),
        }

    layer("input")
    layer("gaussian_noise")
    layer("reflection_padding2d")
    conv(1, width)
    layer("activation")
    for _ in range(n_blocks):
        layer("reflection_padding2d")
        conv(width, width)
        bn()
        layer("activation")
        layer("reflection_padding2d")
        conv(width, width)
        bn()
        layer("add")
    layer("reflection_padding2d")
    conv(width, width)
    bn()
    layer("add")
    layer("up_sampling2d")
    layer("reflection_padding2d")
    conv(width, width)
    layer("activation")
    conv(width, 1, k=1)
    return names, weights


def write_keras(path: Path, names: list[str], weights: Layers, *, layout: str) -> Path:
    """Write ``weights`` as Keras 2 would.

    layout: ``save_weights`` (top level, with ``layer_names``/``weight_names``),
    ``save`` (the same under ``model_weights``), or ``bare`` (no attributes,
    tf.keras style names without a suffix for the first layer of each kind).
    """
    with h5py.File(path, "w") as fh:
        fh.attrs["keras_version"] = b"2.1.5"
        fh.attrs["backend"] = b"tensorflow"
        root = fh.create_group("model_weights") if layout == "save" else fh
        if layout == "save":
            fh.attrs["model_config"] = b"{}"
        if layout != "bare":
            root.attrs["layer_names"] = np.array([n.encode() for n in names])
        for name in names:
            stored = name
            if layout == "bare":
                kind, number = name.rsplit("_", 1)
                stored = kind if number == "1" else f"{kind}_{int(number) - 1}"
            group = root.create_group(stored)
            arrays = weights.get(name, {})
            keys = [f"{stored}/{k}:0" for k in arrays]
            if layout != "bare":
                group.attrs["weight_names"] = np.array([k.encode() for k in keys])
            for key, value in zip(keys, arrays.values(), strict=True):
                group.create_dataset(key, data=value)
    return path


# --------------------------------------------- NumPy re-implementation (NHWC)
def np_conv(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """ReflectionPadding2D (for 3x3) + Conv2D(padding='valid'), x of shape (H, W, C)."""
    k = kernel.shape[0]
    pad = k // 2
    xp = np.pad(x, ((pad, pad), (pad, pad), (0, 0)), mode="reflect") if pad else x
    h, w = x.shape[:2]
    out = np.zeros((h, w, kernel.shape[3]), dtype=np.float64)
    for i in range(k):
        for j in range(k):
            out += np.einsum("hwc,co->hwo", xp[i : i + h, j : j + w], kernel[i, j])
    return out + bias


def np_bn(x: np.ndarray, p: dict[str, np.ndarray]) -> np.ndarray:
    return (x - p["moving_mean"]) / np.sqrt(p["moving_variance"] + 1e-3) * p["gamma"] + p["beta"]


def np_keepsize(image: np.ndarray, names: list[str], weights: Layers) -> np.ndarray:
    """The 2018 ``models.keepsize`` forward pass at inference (no noise)."""
    convs = [weights[n] for n in names if n.startswith("conv2d")]
    bns = [weights[n] for n in names if n.startswith("batch_normalization")]
    relu = lambda v: np.maximum(v, 0.0)  # noqa: E731
    x0 = relu(np_conv(image[..., None].astype(np.float64), **convs[0]))
    x = x0
    n_blocks = (len(convs) - 4) // 2
    for b in range(n_blocks):
        y = relu(np_bn(np_conv(x, **convs[1 + 2 * b]), bns[2 * b]))
        x = x + np_bn(np_conv(y, **convs[2 + 2 * b]), bns[2 * b + 1])
    x = x0 + np_bn(np_conv(x, **convs[-3]), bns[-1])
    x = np.repeat(np.repeat(x, 2, axis=0), 2, axis=1)
    x = relu(np_conv(x, **convs[-2]))
    return np_conv(x, **convs[-1])[..., 0]


def torch_out(module: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    """Apply a module to an (H, W, C) array, NCHW inside."""
    tensor = torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1))[None].astype(np.float32))
    with torch.inference_mode():
        return module(tensor)[0].numpy().transpose(1, 2, 0).astype(np.float64)


@pytest.fixture(scope="module")
def paper_layers() -> tuple[list[str], Layers]:
    """The paper's depth (5 blocks: 14 convs, 11 BNs), 8 filters to stay fast."""
    return keras_layers(5, 8)


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return np.random.default_rng(7).normal(0, 1, (9, 12)).astype(np.float32)


# ------------------------------------------------------------------- tests
@pytest.mark.parametrize("layout", ["save_weights", "save", "bare"])
def test_import_matches_numpy_keras_model(tmp_path, paper_layers, image, layout) -> None:
    names, weights = paper_layers
    path = write_keras(tmp_path / "intensity_weights.hdf5", names, weights, layout=layout)
    model = import_keras_weights(path)
    assert model.architecture == {"n_blocks": 5, "width": 8, "upscale": 2, "bn_eps": 1e-3}
    assert not model.training
    convs, bns = model.keras_layer_order()
    assert len(convs) == 14 and len(bns) == 11
    assert all(bn.eps == KERAS_BN_EPS for bn in bns)

    x = image[..., None].astype(np.float64)
    # first conv + ReLU
    first = weights["conv2d_1"]
    expected = np.maximum(np_conv(x, **first), 0.0)
    got = np.maximum(torch_out(model.head, x), 0.0)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    # one conv + BN of the first residual block (conv2d_2, batch_normalization_1)
    feat = np.random.default_rng(3).normal(0, 1, (9, 12, 8))
    block = model.blocks[0]
    expected = np_bn(np_conv(feat, **weights["conv2d_2"]), weights["batch_normalization_1"])
    got = torch_out(torch.nn.Sequential(block.conv1, block.bn1), feat)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    # and the whole network
    expected = np_keepsize(image, names, weights)
    got = torch_out(model, x)[..., 0]
    assert got.shape == (18, 24)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def test_pytorch_default_epsilon_would_differ(tmp_path, paper_layers, image) -> None:
    """The recorded 1e-3 matters: with PyTorch's 1e-5 the output changes."""
    names, weights = paper_layers
    model = import_keras_weights(write_keras(tmp_path / "k.hdf5", names, weights, layout="save"))
    x = image[..., None].astype(np.float64)
    reference = torch_out(model, x)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.eps = 1e-5
    assert np.abs(torch_out(model, x) - reference).max() > 1e-3 * np.abs(reference).max()


def test_converted_file_round_trips_with_keras_epsilon(tmp_path, paper_layers, image) -> None:
    names, weights = paper_layers
    source = write_keras(tmp_path / "blos_weights.hdf5", names, weights, layout="save_weights")
    out = keras_to_safetensors(source, tmp_path / "blos.safetensors", observable="magnetogram")
    loaded, meta = load_weights(out)
    assert all(m.eps == KERAS_BN_EPS for m in loaded.modules() if hasattr(m, "running_var"))
    assert meta["architecture"]["bn_eps"] == KERAS_BN_EPS
    assert meta["input_normalisation"] == {"quantity": "Blos", "units": "G", "scale": 1000.0}
    assert meta["imported_from"]["file"] == "blos_weights.hdf5"
    assert meta["imported_from"]["keras_version"] == "2.1.5"
    expected = np_keepsize(image, names, weights)
    got = torch_out(loaded, image[..., None])[..., 0]
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def test_native_networks_keep_the_torch_epsilon(tmp_path) -> None:
    model = EnhanceNet(n_blocks=1, width=4)
    assert model.architecture == {"n_blocks": 1, "width": 4, "upscale": 2}
    meta = {"observable": "continuum", "input_normalisation": {"scale": 1.0}}
    loaded, side = load_weights(save_weights(model, tmp_path / "n.safetensors", metadata=meta))
    assert "bn_eps" not in side["architecture"]
    assert loaded.body_bn.eps == 1e-5


def test_cli_end_to_end(tmp_path, paper_layers, capsys) -> None:
    names, weights = paper_layers
    source = write_keras(tmp_path / "intensity_weights.hdf5", names, weights, layout="save")
    target = tmp_path / "continuum.safetensors"
    code = main(["import-keras", str(source), "-o", str(target), "--observable", "continuum"])
    assert code == 0
    assert capsys.readouterr().out.strip() == str(target)
    side = json.loads(sidecar_path(target).read_text())
    assert side["observable"] == "continuum"
    assert side["input_normalisation"]["scale"] == 1.0
    assert side["architecture"] == {"n_blocks": 5, "width": 8, "upscale": 2, "bn_eps": 1e-3}
    assert side["psf_model"] == "wachter" and len(side["imported_from"]["sha256"]) == 64
    model, _ = load_weights(target)
    np.testing.assert_array_equal(
        model.tail.weight.detach().numpy()[:, :, 0, 0], weights["conv2d_14"]["kernel"][0, 0].T
    )


def test_cli_rejects_a_bad_observable(tmp_path, paper_layers, capsys) -> None:
    names, weights = paper_layers
    source = write_keras(tmp_path / "k.hdf5", names, weights, layout="save")
    code = main(
        ["import-keras", str(source), "-o", str(tmp_path / "x.safetensors")]
        + ["--observable", "blos"]
    )
    assert code == 2
    assert "unknown --observable 'blos'" in capsys.readouterr().err
    assert not (tmp_path / "x.safetensors").exists()


def test_missing_layer_is_a_clear_error(tmp_path, paper_layers, capsys) -> None:
    names, weights = paper_layers
    source = write_keras(tmp_path / "cut.hdf5", names, weights, layout="save_weights")
    with h5py.File(source, "r+") as fh:
        del fh["conv2d_7"]
    with pytest.raises(WeightsError, match="lists layer conv2d_7 in layer_names but does not"):
        read_keras_weights(source)
    with h5py.File(source, "r+") as fh:  # and without the listing: a gap in the numbering
        fh.attrs["layer_names"] = np.array([n.encode() for n in names if n != "conv2d_7"])
    with pytest.raises(WeightsError, match=r"cut\.hdf5 lacks layer\(s\) conv2d_7"):
        import_keras_weights(source)
    target = tmp_path / "cut.safetensors"
    code = main(["import-keras", str(source), "-o", str(target), "--observable", "continuum"])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("enhance import-keras: error:") and "conv2d_7" in err
    assert not target.exists() and not sidecar_path(target).exists()


def test_missing_weight_and_non_hdf5(tmp_path, paper_layers) -> None:
    names, weights = paper_layers
    source = write_keras(tmp_path / "w.hdf5", names, weights, layout="bare")
    with h5py.File(source, "r+") as fh:
        del fh["batch_normalization_2/batch_normalization_2/moving_variance:0"]
    with pytest.raises(WeightsError, match="batch_normalization_2 lacks weight.*moving_variance"):
        import_keras_weights(source)
    text = tmp_path / "notes.hdf5"
    text.write_text("not hdf5")
    with pytest.raises(WeightsError, match="not a readable HDF5 file"):
        import_keras_weights(text)
    empty = tmp_path / "empty.hdf5"
    h5py.File(empty, "w").close()
    with pytest.raises(WeightsError, match="holds no conv2d layers"):
        import_keras_weights(empty)


def test_wrong_layer_counts(tmp_path) -> None:
    names, weights = keras_layers(2, 4)
    names = [n for n in names if n != "batch_normalization_5"]
    del weights["batch_normalization_5"]
    source = write_keras(tmp_path / "odd.hdf5", names, weights, layout="save_weights")
    with pytest.raises(WeightsError, match="8 conv2d and 4 batch_normalization layers"):
        import_keras_weights(source)
