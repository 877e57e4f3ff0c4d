"""The CUDA path, on a real GPU: skipped (with the reason) where there is none.

These run on a machine with a GPU (``bench/gpu_check.sh`` runs them on a lent
one); CI has no GPU, and there the same code paths are exercised on the CPU by
``test_inference.py``, ``test_fuse.py`` and ``test_batch.py``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import randomised_net
from sunpy.data.test import get_test_filepath

from enhance_hmi.batch import enhance_files
from enhance_hmi.inference import enhance_array
from enhance_hmi.io import read_hmi
from enhance_hmi.model import save_weights
from enhance_hmi.pipeline import EnhanceSettings

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU here")

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "enhance_hmi" / "data" / "sample"
FULL_DISK_IC = Path(get_test_filepath("resampled_hmi.fits"))  # sunpy: real, resampled
MAGNETOGRAMS = sorted(SAMPLE.glob("hmi.M_720s.*.magnetogram.fits"))
#: bf16 keeps 8 mantissa bits; the bound of test_inference.py (5 % of the range).
BF16_BOUND = 5e-2


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    ok = np.isfinite(a) & np.isfinite(b)
    return float(np.abs(a[ok] - b[ok]).max() / np.abs(b[ok]).max())


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    return randomised_net(11)  # paper architecture


@pytest.fixture(scope="module")
def disk() -> np.ndarray:
    return read_hmi(FULL_DISK_IC).data  # resampled full disk with off-disk NaN


def test_gpu_tiled_equals_whole_in_fp32(model, disk) -> None:
    """Exact tiling on the GPU, with TF32 off as enhance_array sets it for fp32."""
    whole = enhance_array(disk, model, device="cuda", tile=max(disk.shape) + 1)
    tiled = enhance_array(disk, model, device="cuda", tile=96, batch_size=3)
    assert np.array_equal(np.isnan(whole), np.isnan(tiled))
    assert _rel(tiled, whole) <= 1e-5


def test_gpu_matches_cpu(model, disk) -> None:
    cpu = enhance_array(disk, model, device="cpu", tile=128)
    gpu = enhance_array(disk, model, device="cuda", tile=128)
    assert np.array_equal(np.isnan(cpu), np.isnan(gpu))
    assert _rel(gpu, cpu) <= 1e-4


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_gpu_reduced_precision_error(model, disk, precision, record_property) -> None:
    fp32 = enhance_array(disk, model, device="cuda", tile=128)
    low = enhance_array(disk, model, device="cuda", tile=128, precision=precision)
    ok = np.isfinite(fp32)
    err = float(np.abs(low[ok] - fp32[ok]).max() / (fp32[ok].max() - fp32[ok].min()))
    record_property(f"{precision}_max_error_of_range", err)
    assert err <= BF16_BOUND


def test_gpu_batch_threaded(tmp_path: Path) -> None:
    torch.manual_seed(0)
    weights = save_weights(
        randomised_net(12, n_blocks=1, width=8),
        tmp_path / "magnetogram.safetensors",
        metadata={
            "observable": "magnetogram",
            "input_normalisation": {"quantity": "Blos", "units": "G", "scale": 1000.0},
            "psf_model": "wachter",
            "training_data": "untrained (test)",
        },
    )
    pairs = [(src, tmp_path / f"{src.stem}.out.fits") for src in MAGNETOGRAMS]
    outcomes = enhance_files(pairs, EnhanceSettings(weights=weights, device="cuda"))
    assert [o.status for o in outcomes] == ["enhanced"] * len(pairs)
    assert all(out.is_file() for _, out in pairs)


def test_gpu_projection_equals_the_numpy_path() -> None:
    """The projection onto the input on the GPU: the CPU numpy result within 1e-5 of the range.

    The bundled limb crop, started from a 2x2 block copy (far from consistent), so
    CGLS iterates; the disk from its header leaves the off-limb ring out.
    """
    from enhance_hmi.inference.consistency import project_to_observation
    from enhance_hmi.physics.disk import SolarDisk

    frame = read_hmi(SAMPLE / "hmi.M_720s.20190621_060000_TAI.3.magnetogram.fits")
    disk = SolarDisk.from_header(frame.header)
    start = np.repeat(np.repeat(frame.data, 2, axis=0), 2, axis=1)
    options = dict(noise=2.0, discrepancy=0.5, max_iterations=6, psf_model="wachter2012")
    ref, ref_info = project_to_observation(start, frame.data, disk=disk, **options)
    out, info = project_to_observation(
        start, frame.data, disk=disk, backend="torch", device="cuda", **options
    )
    assert ref_info.iterations >= 3 and info.iterations == ref_info.iterations
    assert _rel(out, ref) <= 1e-5


def _float_figures(quality) -> dict[str, float]:
    return {k: v for k, v in quality.as_dict().items() if isinstance(v, float)}


def test_gpu_noise_estimate_and_quality_figures_equal_the_numpy_ones() -> None:
    """What stays on the GPU for a GPU frame: the input noise and every quality figure.

    The noise of a limb crop, the figures of a disk-centre magnetogram with a
    network image that differs from the output (so the ripple figure's band
    power runs), and a 1024^2 continuum
    (the quiet-Sun contrast on a 2048^2 output) whose filters must stay
    within a few images of GPU memory.
    """
    from enhance_hmi.inference.device_noise import input_noise_on
    from enhance_hmi.inference.device_quality import TorchQualityKernels
    from enhance_hmi.io.frame_quality import frame_quality
    from enhance_hmi.physics.disk import SolarDisk, constraint_region
    from enhance_hmi.physics.noise import input_noise

    frame = read_hmi(SAMPLE / "hmi.M_720s.20190621_060000_TAI.3.magnetogram.fits")
    region = constraint_region(frame.data.shape, SolarDisk.from_header(frame.header))
    ref, ref_source = input_noise(frame.data, "auto", region=region)
    noise, source = input_noise_on(frame.data, "auto", region=region, device="cuda")
    assert source == ref_source and noise == pytest.approx(ref, rel=1e-5)
    rng = np.random.default_rng(2)
    frame = read_hmi(SAMPLE / "hmi.M_720s.20160707_010000_TAI.3.magnetogram.fits")  # centre
    output = np.kron(frame.data, np.ones((2, 2), np.float32)) * np.float32(1.1)
    network = output + rng.normal(0, 1, output.shape).astype(np.float32)
    options = dict(
        observable="magnetogram",
        header=frame.header,
        psf_model="wachter2012",
        network_output=network,
    )
    here = frame_quality(frame.data, output, **options)
    there = frame_quality(frame.data, output, kernels=TorchQualityKernels("cuda"), **options)
    assert np.isfinite(here.ripple) and np.isfinite(here.flux_ratio)
    assert _float_figures(there) == pytest.approx(_float_figures(here), rel=1e-5, nan_ok=True)

    texture = 1 + 0.04 * rng.standard_normal((1024, 1024))
    texture[300:400, 500:600] = 0.5
    fine = np.kron(texture, np.ones((2, 2))).astype(np.float32)
    continuum = dict(observable="continuum", psf_model="wachter2012")
    here = frame_quality(texture, fine, **continuum)
    torch.cuda.reset_peak_memory_stats()
    there = frame_quality(texture, fine, kernels=TorchQualityKernels("cuda"), **continuum)
    assert np.isfinite(here.contrast)
    assert _float_figures(there) == pytest.approx(_float_figures(here), rel=1e-5, nan_ok=True)
    image_bytes = fine.size * 8  # the contrast works in float64
    assert torch.cuda.max_memory_allocated() < 12 * image_bytes
