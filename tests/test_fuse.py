"""The inference copy of the network: folded batch norms, caching, channels-last, compile.

The networks have random batch-norm statistics and affine terms
(:func:`conftest.randomised_net`), so a fold that dropped or misplaced any
term would change the output far beyond float rounding.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import randomised_net
from torch import nn

from enhance_hmi.inference import enhance_array, prepare_model
from enhance_hmi.io import read_hmi
from enhance_hmi.model.fuse import fold_batchnorm

ROOT = Path(__file__).resolve().parents[1]
MAGNETOGRAM = ROOT / "tests" / "data" / "hmi.M_720s.20111217_060000_TAI.crop128.magnetogram.fits"


def _rel(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.abs(a - b).max() / np.abs(b).max())


@pytest.fixture(scope="module")
def blos() -> np.ndarray:
    return read_hmi(MAGNETOGRAM).data


def test_folded_network_matches_the_original(blos) -> None:
    model = randomised_net(3)  # paper architecture, 5 blocks x 64
    x = torch.from_numpy(blos[None, None, :64, :80] / 1000.0)
    folded = fold_batchnorm(model)
    with torch.inference_mode():
        reference, out = model(x), folded(x)
    assert out.shape == reference.shape == (1, 1, 128, 160)
    assert _rel(out, reference) <= 1e-5
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 11
    assert folded.receptive_radius == model.receptive_radius and folded.upscale == 2


def test_folding_leaves_the_original_alone() -> None:
    model = randomised_net(4, n_blocks=2, width=8).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    folded = fold_batchnorm(model)
    assert model.training and not folded.training
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not any(p.requires_grad for p in folded.parameters())


def test_fold_refuses_other_modules() -> None:
    with pytest.raises(TypeError, match="EnhanceNet"):
        fold_batchnorm(nn.Conv2d(1, 1, 3))


def test_prepared_copy_is_cached_and_rebuilt_when_the_weights_change() -> None:
    model = randomised_net(5, n_blocks=1, width=8).train()
    cpu = torch.device("cpu")
    first = prepare_model(model, cpu)
    assert prepare_model(model, cpu) is first
    assert model.training  # the caller's mode is not touched
    assert first.head.weight.is_contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        model.head.weight.mul_(2.0)  # e.g. an optimiser step between evaluations
    second = prepare_model(model, cpu)
    assert second is not first
    assert torch.allclose(second.head.weight, 2.0 * first.head.weight)


def test_enhance_array_uses_the_current_weights(blos) -> None:
    model = randomised_net(6, n_blocks=1, width=8)
    data = blos[:48, :48]
    before = enhance_array(data, model, device="cpu", input_scale=1000.0)
    with torch.no_grad():
        model.tail.bias.add_(0.5)  # +0.5 kG everywhere
    after = enhance_array(data, model, device="cpu", input_scale=1000.0)
    assert np.allclose(after - before, 500.0, atol=1e-2)


def test_compiled_network_gives_the_same_tiles(blos) -> None:
    """torch.compile path, including a smaller last batch (3 windows, batches of 2)."""
    model = randomised_net(7, n_blocks=1, width=8)
    data = blos[:40, :90]
    eager = enhance_array(data, model, device="cpu", tile=40, batch_size=2, input_scale=1000.0)
    compiled = enhance_array(
        data, model, device="cpu", tile=40, batch_size=2, input_scale=1000.0, compile=True
    )
    assert compiled.shape == eager.shape == (80, 180)
    assert _rel(compiled, eager) <= 1e-5
