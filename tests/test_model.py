"""EnhanceNet and its weights files (Díaz Baso & Asensio Ramos 2018, A&A 614, A5)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from conftest import randomised_net
from torch import nn

from enhance_hmi.errors import ConfigError, WeightsError
from enhance_hmi.model import (
    PAPER_ARCHITECTURE,
    EnhanceNet,
    default_weights,
    load_weights,
    load_weights_cached,
    save_weights,
    sidecar_path,
)

METADATA = {
    "observable": "magnetogram",
    "input_normalisation": {"quantity": "Blos", "units": "G", "scale": 1000.0},
    "psf_model": "wachter",
    "training_data": "unit test",
}


def tiny(seed: int = 0, **arch: int) -> EnhanceNet:
    """A small network with non-trivial batch-norm statistics, in eval mode."""
    return randomised_net(seed, **{"n_blocks": 1, "width": 8, **arch})


def run(model: EnhanceNet, x: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return model(x)


# ---------------------------------------------------------------- network
@pytest.mark.parametrize("shape", [(1, 1, 7, 9), (2, 1, 13, 5), (3, 1, 3, 2)])
def test_output_is_twice_the_input_for_odd_sizes(shape: tuple[int, ...]) -> None:
    out = run(tiny(), torch.randn(shape))
    assert out.shape == (shape[0], 1, 2 * shape[2], 2 * shape[3])
    assert torch.isfinite(out).all()


def test_paper_default_shape_and_parameter_count() -> None:
    model = EnhanceNet().eval()
    assert model.architecture == PAPER_ARCHITECTURE
    n_params = sum(p.numel() for p in model.parameters())
    # paper Sect. 3 quotes ~450k; exact count of this layout
    assert n_params == 445_249
    out = run(model, torch.randn(1, 1, 15, 11))
    assert out.shape == (1, 1, 30, 22)


def test_every_3x3_conv_pads_by_reflection() -> None:
    model = EnhanceNet()
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    threes = [c for c in convs if c.kernel_size == (3, 3)]
    assert len(convs) == 14 and len(threes) == 13
    for conv in threes:
        assert conv.padding_mode == "reflect"
        assert conv.padding == (1, 1)
    # behaviour, not just attributes: with reflection everywhere a constant
    # image gives a constant output (zero padding darkens the borders)
    out = run(tiny(n_blocks=2), torch.full((1, 1, 12, 10), 0.7))
    assert float(out.max() - out.min()) < 1e-5 * max(1.0, float(out.abs().max()))
    zero_padded = tiny(n_blocks=2)
    for conv in zero_padded.modules():
        if isinstance(conv, nn.Conv2d):
            conv.padding_mode = "zeros"
    out_zero = run(zero_padded, torch.full((1, 1, 12, 10), 0.7))
    assert float(out_zero.max() - out_zero.min()) > 1e-3


def test_receptive_radius_bounds_the_influence_of_a_pixel() -> None:
    model = tiny(n_blocks=2)  # radius 2*2 + 3 = 7 input pixels
    radius = model.receptive_radius
    assert radius == 7
    x = torch.randn(1, 1, 41, 41)
    bumped = x.clone()
    bumped[0, 0, 20, 20] += 5.0
    diff = (run(model, bumped) - run(model, x)).abs()[0, 0].numpy()
    rows, cols = np.nonzero(diff > 0)
    centre = 20.5  # the bumped pixel's centre, in input pixels
    dist_y = np.abs((rows + 0.5) / 2 - centre)
    dist_x = np.abs((cols + 0.5) / 2 - centre)
    assert rows.size > 0
    assert max(dist_y.max(), dist_x.max()) <= radius
    assert max(dist_y.max(), dist_x.max()) > radius - 1.5  # the bound is tight


def test_keras_layer_order_of_the_default() -> None:
    model = EnhanceNet()
    convs, bns = model.keras_layer_order()
    assert len(convs) == 14 and len(bns) == 11
    assert convs[0] is model.head and convs[-1] is model.tail
    assert convs[-2] is model.up_conv and bns[-1] is model.body_bn
    assert [c.in_channels for c in convs[:2]] == [1, 64]
    assert (convs[-1].in_channels, convs[-1].out_channels) == (64, 1)
    assert len({id(m) for m in convs}) == 14  # every conv once
    own = {id(m) for m in model.modules() if isinstance(m, nn.Conv2d | nn.BatchNorm2d)}
    assert own == {id(m) for m in convs + bns}


def test_invalid_architecture() -> None:
    with pytest.raises(ConfigError, match="invalid architecture"):
        EnhanceNet(width=0)


# ---------------------------------------------------------------- weights
def test_save_load_round_trip_is_identical(tmp_path) -> None:
    model = tiny(seed=3)
    path = save_weights(model, tmp_path / "m.safetensors", metadata=METADATA)
    side = json.loads(sidecar_path(path).read_text())
    assert side["architecture"] == {"n_blocks": 1, "width": 8, "upscale": 2}
    assert side["observable"] == "magnetogram"
    assert side["input_normalisation"]["scale"] == 1000.0
    assert len(side["sha256"]) == 64 and side["package_version"]
    loaded, meta = load_weights(path)
    assert not loaded.training
    assert meta["sha256"] == side["sha256"]
    x = torch.randn(2, 1, 11, 13)
    assert torch.equal(run(model, x), run(loaded, x))


def test_flipped_byte_is_a_checksum_error_naming_the_file(tmp_path) -> None:
    path = save_weights(tiny(), tmp_path / "flip.safetensors", metadata=METADATA)
    raw = bytearray(path.read_bytes())
    raw[-5] ^= 0x01  # inside the last tensor
    path.write_bytes(bytes(raw))
    with pytest.raises(WeightsError, match=r"flip\.safetensors.*sha256"):
        load_weights(path)


def test_missing_sidecar(tmp_path) -> None:
    path = save_weights(tiny(), tmp_path / "alone.safetensors", metadata=METADATA)
    sidecar_path(path).unlink()
    with pytest.raises(WeightsError, match=r"alone\.safetensors has no sidecar alone\.json"):
        load_weights(path)


def test_wrong_architecture_in_sidecar_fails_strict_load(tmp_path) -> None:
    path = save_weights(tiny(), tmp_path / "arch.safetensors", metadata=METADATA)
    side = sidecar_path(path)
    meta = json.loads(side.read_text())
    meta["architecture"]["n_blocks"] = 2  # tensors of one block, sidecar says two
    side.write_text(json.dumps(meta))
    with pytest.raises(WeightsError, match=r"arch\.safetensors does not fit architecture"):
        load_weights(path)
    meta["architecture"] = {"n_blocks": 1, "width": 8, "upscale": 2, "depth": 3}
    side.write_text(json.dumps(meta))
    with pytest.raises(WeightsError, match="invalid architecture"):
        load_weights(path)


def test_metadata_must_name_observable_and_normalisation(tmp_path) -> None:
    with pytest.raises(WeightsError, match="lacks 'input_normalisation'"):
        save_weights(tiny(), tmp_path / "x.safetensors", metadata={"observable": "continuum"})
    with pytest.raises(WeightsError, match="must end in .safetensors"):
        save_weights(tiny(), tmp_path / "x.pt", metadata=METADATA)


def test_default_weights_honours_env_and_says_when_absent(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("ENHANCE_WEIGHTS_DIR", str(tmp_path))
    with pytest.raises(WeightsError, match="no trained weights are installed for magnetogram"):
        default_weights("magnetogram")
    path = save_weights(tiny(), tmp_path / "magnetogram.safetensors", metadata=METADATA)
    assert default_weights("magnetogram") == path
    with pytest.raises(WeightsError, match="no trained weights are installed for continuum"):
        default_weights("continuum")


def test_load_weights_cached_reuses_and_reloads(tmp_path) -> None:
    path = tmp_path / "c.safetensors"
    save_weights(tiny(seed=1), path, metadata=METADATA)
    old = path.stat()
    first, _ = load_weights_cached(path)
    again, _ = load_weights_cached(str(path))
    assert first is again
    # replaced on disk by new weights of the same size within the same clock tick
    save_weights(tiny(seed=2), path, metadata=METADATA)
    assert path.stat().st_size == old.st_size
    os.utime(path, ns=(old.st_atime_ns, old.st_mtime_ns))
    reloaded, meta = load_weights_cached(path)
    assert reloaded is not first
    x = torch.randn(1, 1, 9, 9)
    assert torch.equal(run(reloaded, x), run(tiny(seed=2), x))
    assert meta["sha256"] == json.loads(sidecar_path(path).read_text())["sha256"]
    with pytest.raises(WeightsError, match="does not exist"):
        load_weights_cached(tmp_path / "nope.safetensors")


def test_other_devices_copy_the_checked_cpu_network(tmp_path) -> None:
    """Another device gets a copy of the network checked for the CPU: the disk is not read again.

    After the CPU load the sidecar's sha256 is made wrong (the weights file,
    whose inode, size and times name the version, is untouched): a fresh
    load refuses the file, a device copy does not go back to it.
    """
    path = tmp_path / "d.safetensors"
    save_weights(tiny(seed=3), path, metadata=METADATA)
    cpu, meta = load_weights_cached(path)
    sidecar = json.loads(sidecar_path(path).read_text())
    sidecar_path(path).write_text(json.dumps({**sidecar, "sha256": "0" * 64}))
    with pytest.raises(WeightsError, match="corrupt or was changed"):
        load_weights(path)
    # "meta" is a real torch device without storage: it stands in for a GPU here
    other, other_meta = load_weights_cached(path, device="meta")
    assert other_meta["sha256"] == meta["sha256"] == sidecar["sha256"]
    assert other is not cpu
    assert {p.device.type for p in other.parameters()} == {"meta"}
    assert {p.device.type for p in cpu.parameters()} == {"cpu"}
    assert [n for n, _ in other.named_parameters()] == [n for n, _ in cpu.named_parameters()]
    assert not other.training


def test_check_trained_for_names_both_sides() -> None:
    from enhance_hmi.model import check_trained_for

    check_trained_for(METADATA, "magnetogram", "m.safetensors", "x.fits")
    with pytest.raises(WeightsError, match=r"m.safetensors were trained for magnetogram but x"):
        check_trained_for(METADATA, "continuum", "/a/m.safetensors", "x.fits")
