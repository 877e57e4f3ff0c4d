"""Tiled inference: exactness, NaN handling, precision, units, devices, frames.

Images are real HMI data shipped with the package or the tests (quiet-Sun
continuum cut-out, a 128x128 magnetogram crop, a resampled full-disk
continuum with off-disk NaN); the networks are untrained but have non-trivial
batch-norm statistics so every layer matters.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import randomised_net
from sunpy.data.test import get_test_filepath

from enhance_hmi.errors import (
    ConfigError,
    InputError,
    NotQuietSunUnitsWarning,
    UnexpectedUnitWarning,
    WeightsError,
)
from enhance_hmi.frame import Frame
from enhance_hmi.inference import (
    InferenceTimings,
    cudnn_settings,
    enhance_array,
    enhance_frame,
    plan_windows,
    prepare_model,
)
from enhance_hmi.inference.tiling import axis_plan
from enhance_hmi.io import read_hmi
from enhance_hmi.model import EnhanceNet, save_weights

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "enhance_hmi" / "data" / "sample"
MAGNETOGRAM = ROOT / "tests" / "data" / "hmi.M_720s.20111217_060000_TAI.crop128.magnetogram.fits"
QUIET_IC = SAMPLE / "hmi_quiet_ic_cutout.fits"
FULL_DISK_IC = Path(get_test_filepath("resampled_hmi.fits"))  # sunpy: real, resampled

#: bf16 keeps 8 bits of mantissa (relative step 2**-8 = 0.4%); through 14
#: layers of an untrained net the error measured with this setup was ~2% of
#: the output range (also ~2% at the paper's width 64), so bound it at 5%.
BF16_BOUND = 5e-2


def net(seed: int = 0, **arch: int) -> EnhanceNet:
    """EnhanceNet with random batch-norm statistics, in eval mode."""
    return randomised_net(seed, **arch)


@pytest.fixture(scope="module")
def narrow() -> EnhanceNet:
    """Paper depth (5 blocks), 16 filters: exact tiling is about depth, not width."""
    return net(width=16)


@pytest.fixture(scope="module")
def magnetogram() -> Frame:
    return read_hmi(MAGNETOGRAM)


@pytest.fixture(scope="module")
def quiet_sun() -> np.ndarray:
    return read_hmi(QUIET_IC).data


def rel_diff(a: np.ndarray, b: np.ndarray) -> float:
    """max |a - b| relative to max |b|, over pixels finite in both."""
    ok = np.isfinite(a) & np.isfinite(b)
    return float(np.abs(a[ok] - b[ok]).max() / np.abs(b[ok]).max())


def whole(data: np.ndarray, model: EnhanceNet, **kw: object) -> np.ndarray:
    return enhance_array(data, model, device="cpu", tile=max(data.shape) + 1, **kw)


# ----------------------------------------------------------- exact tiling
@pytest.mark.parametrize(
    ("shape", "tile", "batch_size"),
    [((97, 123), 48, 4), ((101, 77), 53, 3), ((128, 65), 61, 1)],
)
def test_tiled_equals_whole_image(narrow, magnetogram, shape, tile, batch_size) -> None:
    data = magnetogram.data[: shape[0], : shape[1]]
    reference = whole(data, narrow, input_scale=1000.0)
    tiled = enhance_array(
        data, narrow, device="cpu", tile=tile, batch_size=batch_size, input_scale=1000.0
    )
    _, windows = plan_windows(shape, tile=tile, margin=narrow.receptive_radius, blend=8)
    assert len(windows) > 1  # really tiled, and the tiles do not divide the image
    assert shape[0] % tile and shape[1] % tile
    assert tiled.shape == (2 * shape[0], 2 * shape[1]) and tiled.dtype == np.float32
    assert rel_diff(tiled, reference) <= 1e-5


@pytest.mark.parametrize("length", [97, 123, 300, 1024, 4096, 4097])
@pytest.mark.parametrize("tile", [48, 61, 256, 1024])
def test_window_plan_covers_with_the_overlap(length: int, tile: int) -> None:
    overlap = 34  # 2 x 13 (paper net's receptive radius) + 8
    window, starts = axis_plan(length, tile, overlap)
    assert window <= tile and starts[0] == 0 and starts[-1] + window == length
    shared = [window - (b - a) for a, b in zip(starts, starts[1:], strict=False)]
    assert all(s >= overlap for s in shared)
    if len(starts) > 1:  # no window could be dropped, none could be smaller
        assert (len(starts) - 2) * (tile - overlap) + tile < length  # n - 1 tiles fall short
        assert window - 1 < (length + (len(starts) - 1) * overlap) / len(starts)


def test_window_plan_of_a_full_disk_frame() -> None:
    """4096 px in 1024-px windows: 5 windows of 847 px (1.07x the axis), not of 1024 (1.25x)."""
    assert axis_plan(4096, 1024, 34) == (847, [0, 812, 1624, 2436, 3249])


def test_too_small_margin_would_show(narrow, magnetogram) -> None:
    """The exactness test has teeth: a margin below the receptive radius breaks it."""
    data = magnetogram.data[:97, :123]
    reference = whole(data, narrow, input_scale=1000.0)
    seams = enhance_array(data, narrow, device="cpu", tile=48, input_scale=1000.0, margin=2)
    assert rel_diff(seams, reference) > 1e-4


def test_tiled_equals_whole_image_paper_default(quiet_sun) -> None:
    model = net(seed=5)  # 5 blocks x 64 filters, 445,249 parameters
    data = quiet_sun[:120, :130]
    reference = whole(data, model)
    tiled = enhance_array(data, model, device="cpu", tile=64, batch_size=4)
    assert rel_diff(tiled, reference) <= 1e-5


# ------------------------------------------------------------------- NaN
def test_nan_pixels_stay_nan_at_the_upsampled_positions(narrow) -> None:
    with pytest.warns(UnexpectedUnitWarning), pytest.warns(NotQuietSunUnitsWarning):
        disk = read_hmi(FULL_DISK_IC, normalize="none", check_range=False).data  # raw DN/s
    data = disk.copy()
    data[40, 41] = np.nan  # an isolated bad pixel on the disk too
    mask = ~np.isfinite(data)
    assert 0 < mask.sum() < mask.size
    out = enhance_array(data, narrow, device="cpu", tile=48)
    expected = np.repeat(np.repeat(mask, 2, axis=0), 2, axis=1)
    np.testing.assert_array_equal(np.isnan(out), expected)
    assert np.isfinite(out[~expected]).all()
    # tiled and whole agree on the finite part with NaN present too
    assert rel_diff(out, whole(data, narrow)) <= 1e-5


def test_all_nan_and_non_2d_are_input_errors(narrow) -> None:
    with pytest.raises(InputError, match="no finite pixels"):
        enhance_array(np.full((20, 20), np.nan, dtype=np.float32), narrow, device="cpu")
    with pytest.raises(InputError, match="2-D"):
        enhance_array(np.zeros((2, 20, 20), dtype=np.float32), narrow, device="cpu")
    with pytest.raises(InputError, match="2-D"):
        enhance_array(np.zeros(20, dtype=np.float32), narrow, device="cpu")


def test_windows_without_finite_pixels_are_skipped(magnetogram) -> None:
    model = net(n_blocks=1, width=8)
    data = magnetogram.data.copy()
    data[:, :70] = np.nan  # left half "off disk"
    tile, margin, blend = 32, model.receptive_radius, 8
    (wh, ww), windows = plan_windows(data.shape, tile=tile, margin=margin, blend=blend)
    live = [w for w in windows if np.isfinite(data[w.y0 : w.y0 + wh, w.x0 : w.x0 + ww]).any()]
    assert 0 < len(live) < len(windows)

    # The batches reach the cached inference copy that enhance_array runs.
    seen: list[int] = []
    hook = prepare_model(model, torch.device("cpu")).register_forward_pre_hook(
        lambda _module, inputs: seen.append(inputs[0].shape[0])
    )
    timings = InferenceTimings()
    try:
        out = enhance_array(
            data, model, device="cpu", tile=tile, batch_size=1, input_scale=1000.0, timings=timings
        )
    finally:
        hook.remove()
    assert sum(seen) == len(live) == len(seen) == timings.windows
    assert timings.window_pixels == len(live) * wh * ww
    assert timings.compute_s > 0
    assert np.isnan(out[:, :140]).all() and np.isfinite(out[:, 140:]).all()
    assert rel_diff(out, whole(data, model, input_scale=1000.0)) <= 1e-5


def test_windows_without_wanted_pixels_are_skipped_and_the_rest_unchanged(magnetogram) -> None:
    """A disk mask: windows wholly outside it are not run; wanted pixels are as without it."""
    model = net(n_blocks=1, width=8)
    data = magnetogram.data
    wanted = np.zeros(data.shape, bool)
    wanted[:, 70:] = True  # a "disk" whose edge cuts the image
    tile, margin, blend = 32, model.receptive_radius, 8
    (wh, ww), windows = plan_windows(data.shape, tile=tile, margin=margin, blend=blend)
    live = [w for w in windows if wanted[w.y0 : w.y0 + wh, w.x0 : w.x0 + ww].any()]
    assert 0 < len(live) < len(windows)
    timings = InferenceTimings()
    out = enhance_array(
        data, model, device="cpu", tile=tile, input_scale=1000.0, timings=timings, wanted=wanted
    )
    assert timings.windows == len(live)
    assert np.isnan(out[:, :140]).all() and np.isfinite(out[:, 140:]).all()
    every = enhance_array(data, model, device="cpu", tile=tile, input_scale=1000.0)
    assert np.array_equal(out[:, 140:], every[:, 140:])
    with pytest.raises(InputError, match="wanted pixels"):
        enhance_array(data, model, device="cpu", tile=tile, wanted=wanted[1:])


def test_a_failing_compiler_falls_back_to_the_eager_network(magnetogram, monkeypatch, caplog):
    """TorchInductor needs a C++ compiler on a CPU: without one the frame is still enhanced."""
    model = net(seed=23, n_blocks=1, width=8)  # not in prepare_model's cache yet
    data = magnetogram.data[:64, :64]
    eager = enhance_array(data, model, device="cpu", tile=48, input_scale=1000.0)

    def no_compiler(module):
        def run(*args, **kwargs):
            raise RuntimeError("InvalidCxxCompiler: No working C++ compiler found")

        return run

    monkeypatch.setattr(torch, "compile", no_compiler)
    with caplog.at_level("WARNING", logger="enhance_hmi.inference.array"):
        out = enhance_array(data, model, device="cpu", tile=48, input_scale=1000.0, compile=True)
    np.testing.assert_array_equal(out, eager)
    assert "torch.compile failed (InvalidCxxCompiler" in caplog.text


# ------------------------------------------------------------ process state
CUDNN_STATES = [(False, True), (True, False)]


@pytest.fixture
def cudnn_flags_kept():
    """Put cuDNN's process-wide flags back however the test ends."""
    backend = torch.backends.cudnn
    saved = (backend.benchmark, backend.allow_tf32)
    yield
    backend.benchmark, backend.allow_tf32 = saved


def _flags() -> tuple[bool, bool]:
    return torch.backends.cudnn.benchmark, torch.backends.cudnn.allow_tf32


@pytest.mark.parametrize("before", CUDNN_STATES)
@pytest.mark.parametrize(("precision", "tf32_inside"), [("fp32", False), ("bf16", True)])
def test_cudnn_flags_set_during_the_call_and_restored_after(
    narrow, cudnn_flags_kept, before, precision, tf32_inside
) -> None:
    torch.backends.cudnn.benchmark, torch.backends.cudnn.allow_tf32 = before
    inside: list[tuple[bool, bool]] = []
    hook = torch.nn.modules.module.register_module_forward_pre_hook(
        lambda _module, _inputs: inside.append(_flags())
    )
    try:
        enhance_array(np.ones((24, 24)), narrow, device="cpu", precision=precision)
    finally:
        hook.remove()
    assert inside and set(inside) == {(True, tf32_inside)}  # what the network ran with
    assert _flags() == before  # and the process's own values are back


@pytest.mark.parametrize("before", CUDNN_STATES)
def test_cudnn_flags_restored_when_the_call_fails(narrow, cudnn_flags_kept, before) -> None:
    torch.backends.cudnn.benchmark, torch.backends.cudnn.allow_tf32 = before
    with pytest.raises(InputError, match="no finite pixels"):
        enhance_array(np.full((24, 24), np.nan), narrow, device="cpu")
    assert _flags() == before
    with (
        pytest.raises(RuntimeError, match="inside"),
        cudnn_settings(benchmark=not before[0], allow_tf32=not before[1]),
    ):
        assert _flags() == (not before[0], not before[1])
        raise RuntimeError("inside")
    assert _flags() == before


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cudnn_flags_restored_after_a_gpu_call(narrow, cudnn_flags_kept) -> None:
    torch.backends.cudnn.benchmark, torch.backends.cudnn.allow_tf32 = False, True
    data = np.random.default_rng(0).normal(size=(70, 90)).astype(np.float32)
    out = enhance_array(data, narrow, device="cuda", tile=48)
    assert _flags() == (False, True)
    # fp32 ran with TF32 off inside the call: tiled still equals whole to 1e-5
    assert rel_diff(out, whole(data, narrow)) <= 1e-5


# ------------------------------------------------------- precision, units
def test_bf16_autocast_on_cpu_is_close_to_fp32(narrow, magnetogram, record_property) -> None:
    data = magnetogram.data[:64, :64]
    fp32 = enhance_array(data, narrow, device="cpu", tile=64, input_scale=1000.0)
    bf16 = enhance_array(data, narrow, device="cpu", precision="bf16", tile=64, input_scale=1000.0)
    assert bf16.dtype == np.float32
    err = float(np.abs(bf16 - fp32).max() / (fp32.max() - fp32.min()))
    log.info("bf16 vs fp32: max error %.4f of the output range", err)
    record_property("bf16_max_error_of_range", err)
    assert 0 < err < BF16_BOUND
    assert np.corrcoef(bf16.ravel(), fp32.ravel())[0, 1] > 0.999


def test_unknown_precision_is_a_config_error(narrow) -> None:
    with pytest.raises(ConfigError, match="unknown precision"):
        enhance_array(np.ones((8, 8)), narrow, device="cpu", precision="int8")


def test_input_scale_round_trip(narrow, magnetogram) -> None:
    gauss = magnetogram.data[:50, :60]
    via_scale = enhance_array(gauss, narrow, device="cpu", tile=64, input_scale=1000.0)
    kilogauss = enhance_array(gauss / 1000.0, narrow, device="cpu", tile=64, input_scale=1.0)
    np.testing.assert_allclose(via_scale, 1000.0 * kilogauss, rtol=1e-5, atol=1e-3)
    # and the scale matters: the net is not linear
    unscaled = enhance_array(gauss, narrow, device="cpu", tile=64, input_scale=1.0)
    assert rel_diff(unscaled, via_scale) > 1e-2


def test_cuda_without_gpu_is_a_config_error(narrow, monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="no CUDA GPU"):
        enhance_array(np.ones((8, 8)), narrow, device="cuda")
    out = enhance_array(np.ones((8, 8)), net(n_blocks=1, width=8), device="auto")
    assert out.shape == (16, 16)


# ----------------------------------------------------------------- frames
def _weights(tmp_path: Path, model: EnhanceNet, observable: str, scale: float) -> Path:
    units = "G" if observable == "magnetogram" else "I/I_quiet-Sun"
    metadata = {
        "observable": observable,
        "input_normalisation": {"quantity": observable, "units": units, "scale": scale},
        "psf_model": "wachter",
        "training_data": "unit test",
    }
    return save_weights(model, tmp_path / f"{observable}.safetensors", metadata=metadata)


def test_enhance_frame_header_units_and_provenance(tmp_path, magnetogram) -> None:
    model = net(n_blocks=1, width=8)
    path = _weights(tmp_path, model, "magnetogram", 1000.0)
    # the network's output as it is (no projection onto the input): equal to enhance_array
    out = enhance_frame(magnetogram, weights=path, device="cpu", tile=64, consistency=False)
    h_in, h_out = magnetogram.header, out.header
    assert out.data.shape == (256, 256) and out.observable == "magnetogram"
    for axis in (1, 2):
        assert h_out[f"CRPIX{axis}"] == pytest.approx(2 * h_in[f"CRPIX{axis}"] - 0.5)
        assert h_out[f"CDELT{axis}"] == pytest.approx(h_in[f"CDELT{axis}"] / 2)
        assert h_out[f"CRVAL{axis}"] == h_in[f"CRVAL{axis}"]
    expected = enhance_array(magnetogram.data, model, device="cpu", tile=64, input_scale=1000.0)
    np.testing.assert_array_equal(out.data, expected)
    assert out.meta["weights_sha256"] and out.meta["weights_file"] == path.name
    assert out.meta["input_file"] == magnetogram.meta["input_file"]


def test_enhance_frame_refuses_weights_of_the_other_observable(tmp_path, magnetogram) -> None:
    path = _weights(tmp_path, net(n_blocks=1, width=8), "continuum", 1.0)
    with pytest.raises(WeightsError, match="trained for continuum but the image is a magnetogram"):
        enhance_frame(magnetogram, weights=path, device="cpu")


def test_enhance_frame_without_installed_weights(tmp_path, monkeypatch, magnetogram) -> None:
    monkeypatch.setenv("ENHANCE_WEIGHTS_DIR", str(tmp_path))
    with pytest.raises(WeightsError, match="no trained weights are installed for magnetogram"):
        enhance_frame(magnetogram, device="cpu")
