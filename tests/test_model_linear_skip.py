"""EnhanceNet's optional learned linear polyphase 2x skip (``linear_skip=k``)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import randomised_net

from enhance_hmi.errors import ConfigError, WeightsError
from enhance_hmi.inference import enhance_array
from enhance_hmi.model import EnhanceNet, load_weights, save_weights, sidecar_path
from enhance_hmi.model.fuse import fold_batchnorm
from enhance_hmi.model.weights import parameter_count

METADATA = {
    "observable": "continuum",
    "input_normalisation": {"quantity": "continuum", "units": "quiet-Sun", "scale": 1.0},
    "psf_model": "wachter",
    "training_data": "unit test",
}


def _with_random_skip(model: EnhanceNet, seed: int = 5) -> EnhanceNet:
    """Give the linear skip random taps, so every tap and phase matters."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        model.linear.weight.copy_(0.1 * torch.randn(model.linear.weight.shape, generator=gen))
        model.linear.bias.copy_(0.1 * torch.randn(model.linear.bias.shape, generator=gen))
    return model


def _image(shape=(70, 83), seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (1.0 + 0.05 * rng.normal(size=shape)).astype(np.float32)


def _run(model: torch.nn.Module, image: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return model(torch.from_numpy(image)[None, None]).numpy()[0, 0]


def test_linear_skip_round_trips_through_weights_files(tmp_path):
    model = _with_random_skip(randomised_net(1, n_blocks=1, width=4, linear_skip=9))
    path = save_weights(model, tmp_path / "skip.safetensors", metadata=METADATA)
    side = json.loads(sidecar_path(path).read_text())
    assert side["architecture"]["linear_skip"] == 9
    loaded, meta = load_weights(path)
    assert loaded.linear_skip == 9 and meta["architecture"] == model.architecture
    assert loaded.linear.weight.shape == (4, 1, 9, 9)
    n_params = sum(p.numel() for p in loaded.parameters())
    assert parameter_count(meta["architecture"]) == n_params
    image = _image()
    np.testing.assert_array_equal(_run(loaded, image), _run(model, image))
    # the paper's network keeps its sidecar unchanged (no linear_skip key)
    plain = save_weights(
        EnhanceNet(n_blocks=1, width=4), tmp_path / "p.safetensors", metadata=METADATA
    )
    assert "linear_skip" not in json.loads(sidecar_path(plain).read_text())["architecture"]


def test_sidecar_with_an_even_linear_skip_is_refused(tmp_path):
    path = save_weights(
        EnhanceNet(n_blocks=1, width=4, linear_skip=3),
        tmp_path / "s.safetensors",
        metadata=METADATA,
    )
    side = sidecar_path(path)
    doc = json.loads(side.read_text())
    doc["architecture"]["linear_skip"] = 4
    side.write_text(json.dumps(doc))
    with pytest.raises(WeightsError, match="linear_skip"):
        load_weights(path)


@pytest.mark.parametrize("bad", [2, 8, -1, -3])
def test_even_or_negative_linear_skip_is_refused(bad):
    with pytest.raises(ConfigError, match="linear_skip"):
        EnhanceNet(n_blocks=1, width=4, linear_skip=bad)


def test_untrained_skip_with_deep_weights_zeroed_is_nearest_neighbour():
    torch.manual_seed(0)
    model = EnhanceNet(n_blocks=2, width=4, linear_skip=9).eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if not name.startswith("linear."):
                parameter.zero_()
    image = _image((21, 17))
    out = _run(model, image)
    np.testing.assert_allclose(out, np.kron(image, np.ones((2, 2))), rtol=0, atol=1e-7)


def test_skip_channels_are_the_output_phases():
    """Channel ``2 py + px`` of the skip fills output pixels ``(2i + py, 2j + px)``."""
    model = EnhanceNet(n_blocks=0, width=4, linear_skip=3).eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if not name.startswith("linear."):
                parameter.zero_()
        model.linear.weight.zero_()
        model.linear.weight[0, 0, 1, 1] = 1.0  # (0, 0): the pixel itself
        model.linear.weight[1, 0, 1, 2] = 1.0  # (0, 1): its right neighbour
        model.linear.weight[2, 0, 2, 1] = 1.0  # (1, 0): the one below
        model.linear.weight[3, 0, 1, 1] = 2.0  # (1, 1): twice the pixel
    image = _image((9, 11))
    out = _run(model, image)
    right = np.pad(image, 1, mode="reflect")[1:-1, 2:]
    below = np.pad(image, 1, mode="reflect")[2:, 1:-1]
    np.testing.assert_allclose(out[0::2, 0::2], image, atol=1e-7)
    np.testing.assert_allclose(out[0::2, 1::2], right, atol=1e-7)
    np.testing.assert_allclose(out[1::2, 0::2], below, atol=1e-7)
    np.testing.assert_allclose(out[1::2, 1::2], 2 * image, atol=1e-6)


def test_receptive_radius_covers_a_wide_skip():
    assert EnhanceNet(n_blocks=0, width=4, linear_skip=13).receptive_radius == 6
    assert EnhanceNet(n_blocks=1, width=4, linear_skip=3).receptive_radius == 5


def test_tiled_inference_equals_whole_image_with_a_wide_skip():
    """The skip (radius 6) reaches further than the shallow deep path (radius 3)."""
    model = _with_random_skip(randomised_net(2, n_blocks=0, width=4, linear_skip=13))
    image = _image((70, 83), seed=3)
    whole = enhance_array(image, model, device="cpu", tile=200)
    tiled = enhance_array(image, model, device="cpu", tile=32, blend=4)
    assert tiled.shape == whole.shape == (140, 166)
    scale = float(np.abs(whole).max())
    assert float(np.abs(tiled - whole).max()) <= 1e-5 * scale
    # the same tiling with the deep path's radius only shows seams: the check has teeth
    short = enhance_array(image, model, device="cpu", tile=32, blend=4, margin=3)
    assert float(np.abs(short - whole).max()) > 1e-3 * scale


def test_fold_batchnorm_keeps_the_skip():
    model = _with_random_skip(randomised_net(4, n_blocks=2, width=6, linear_skip=5))
    folded = fold_batchnorm(model)
    assert folded.linear_skip == 5 and folded.receptive_radius == model.receptive_radius
    image = _image((30, 26), seed=1)
    reference = _run(model, image)
    np.testing.assert_allclose(_run(folded, image), reference, rtol=0, atol=1e-5)
    # without the skip the output would differ: it carries the linear part
    without = _run(
        fold_batchnorm(_zero_skip(randomised_net(4, n_blocks=2, width=6, linear_skip=5))), image
    )
    assert float(np.abs(without - reference).max()) > 1e-2


def _zero_skip(model: EnhanceNet) -> EnhanceNet:
    with torch.no_grad():
        model.linear.weight.zero_()
        model.linear.bias.zero_()
    return model
