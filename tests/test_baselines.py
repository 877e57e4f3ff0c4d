"""Tikhonov 2x deconvolution, its noise estimate and the oracle linear bound.

The science checks run on the held-out band of the real SST/CRISP quiet-Sun
scene (../shared/data/highres), degraded by the package's own physics and
given 1e-3 white noise (seeded): 114 x 35 input pixels, a few seconds.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from scipy import ndimage

from enhance_hmi.errors import ConfigError, InputError
from enhance_hmi.physics import HMI_PIXEL_SCALE, HMI_WAVELENGTH
from enhance_hmi.physics.constants import HMI_APERTURE
from enhance_hmi.scenes import load_continuum_scene, split_scene
from enhance_hmi.training import degraded_pair
from enhance_hmi.validation import baselines, metrics

SST_QS = "sst_crisp_wb8542_qs_20190801.fits"
NOISE = 1e-3
#: Scores leave out this many input pixels at each edge (the report's convention).
BORDER = 4


def _inner(image: np.ndarray) -> np.ndarray:
    return image[2 * BORDER : -2 * BORDER, 2 * BORDER : -2 * BORDER]


@pytest.fixture(scope="module")
def held_out(shared_data):
    """(noisy HMI-like input, noise-free input, 28 cm truth) of the SST held-out band."""
    scene = load_continuum_scene(shared_data / "highres" / SST_QS)
    pair = degraded_pair(split_scene(scene)[1])
    clean = pair.input.astype(np.float64)
    noisy = clean + np.random.default_rng(0).normal(0.0, NOISE, clean.shape)
    return noisy, clean, pair.target.astype(np.float64)


@pytest.fixture(scope="module")
def tikhonov_result(held_out):
    noisy, _, _ = held_out
    return baselines.tikhonov(noisy, return_details=True)


def test_tikhonov_beats_bicubic_and_richardson_lucy_on_real_granulation(held_out, tikhonov_result):
    noisy, _, truth = held_out
    out, _ = tikhonov_result
    assert out.shape == (2 * noisy.shape[0], 2 * noisy.shape[1]) and out.dtype == np.float64
    assert np.isfinite(out).all()
    scores = {
        "bicubic": metrics.psnr(_inner(baselines.bicubic(noisy)), _inner(truth)),
        "richardson_lucy": metrics.psnr(_inner(baselines.richardson_lucy(noisy)), _inner(truth)),
        "tikhonov": metrics.psnr(_inner(out), _inner(truth)),
    }
    # measured: bicubic 24.3 dB, Richardson-Lucy 27.2 dB, Tikhonov 29.6 dB
    assert scores["tikhonov"] > scores["richardson_lucy"] + 1.0, scores
    assert scores["tikhonov"] > scores["bicubic"] + 3.0, scores


def test_tikhonov_follows_the_discrepancy_principle(tikhonov_result):
    _, details = tikhonov_result
    # the noise comes from the input alone and is close to the 1e-3 that was added
    assert details["noise"] == pytest.approx(NOISE, rel=0.15)
    # the re-observed solution misses the input by the noise (discrepancy 1), not less
    assert details["residual"] == pytest.approx(details["noise"], rel=0.10)
    assert 0 < details["lambda"] < 10


def test_tikhonov_discrepancy_sets_the_residual(held_out):
    noisy, _, _ = held_out
    crop = noisy[:64]
    _, loose = baselines.tikhonov(crop, discrepancy=2.0, return_details=True)
    _, tight = baselines.tikhonov(crop, discrepancy=1.0, return_details=True)
    assert loose["residual"] == pytest.approx(2.0 * loose["noise"], rel=0.10)
    assert tight["residual"] == pytest.approx(tight["noise"], rel=0.10)
    assert loose["lambda"] > 3 * tight["lambda"]  # measured 7.5x


def test_tikhonov_is_affine_equivariant_and_keeps_a_constant(held_out):
    """A linear method: tikhonov(a x + c) = a tikhonov(x) + c (lambda follows the noise)."""
    noisy, _, _ = held_out
    crop = noisy[:48]
    base = baselines.tikhonov(crop)
    scaled = baselines.tikhonov(250.0 * crop - 40.0)
    np.testing.assert_allclose(scaled, 250.0 * base - 40.0, rtol=0, atol=1e-6 * 250.0)
    flat = baselines.tikhonov(np.full((24, 30), 0.93))
    assert flat.shape == (48, 60)
    np.testing.assert_allclose(flat, 0.93, rtol=0, atol=1e-9)


def test_tikhonov_keeps_nan_blocks(held_out):
    noisy, _, _ = held_out
    crop = noisy[:40].copy()
    crop[5, 7] = np.nan
    crop[30:32, 0:3] = np.nan
    out = baselines.tikhonov(crop)
    expected = np.kron(~np.isfinite(crop), np.ones((2, 2), bool))
    assert out.shape == (80, 2 * crop.shape[1])
    np.testing.assert_array_equal(np.isnan(out), expected)


def test_tikhonov_refuses_bad_options_and_inputs():
    image = np.ones((16, 16))
    for options in ({"discrepancy": 0.0}, {"iterations": 0}):
        with pytest.raises(ConfigError):
            baselines.tikhonov(image, **options)
    with pytest.raises(InputError):
        baselines.tikhonov(np.ones((4, 4, 4)))
    with pytest.raises(InputError):
        baselines.tikhonov(np.full((8, 8), np.nan))


def test_spectral_noise_sigma_recovers_white_noise_on_a_smooth_image():
    rng = np.random.default_rng(3)
    smooth = ndimage.gaussian_filter(rng.normal(size=(128, 160)), 4.0, mode="wrap")
    smooth = 1.0 + 0.05 * smooth / smooth.std()  # 5 % contrast, 10x the noise
    cutoff = HMI_APERTURE.to_value("m") / HMI_WAVELENGTH.to_value("m") * np.pi / 648000.0
    scale = HMI_PIXEL_SCALE.to_value("arcsec")
    for sigma in (2e-3, 5e-3, 2e-2):
        image = smooth + rng.normal(0.0, sigma, smooth.shape)
        found = baselines.spectral_noise_sigma(image, psf_cutoff=cutoff, pixel_scale=scale)
        assert found == pytest.approx(sigma, rel=0.10), sigma
        assert baselines.spectral_noise_sigma_hmi(image) == pytest.approx(found, rel=1e-12)
    # the smooth image alone has (next to) nothing beyond the cutoff
    assert baselines.spectral_noise_sigma(smooth, psf_cutoff=cutoff, pixel_scale=scale) < 2e-4
    with pytest.raises(InputError, match="too small"):
        baselines.spectral_noise_sigma(smooth[:3, :3], psf_cutoff=cutoff, pixel_scale=scale)


def _polyphase(image: np.ndarray, filters: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Apply one ``size`` x ``size`` filter plus a constant per output phase."""
    size = filters.shape[-1]
    half = size // 2
    ny, nx = image.shape
    windows = np.lib.stride_tricks.sliding_window_view(
        np.pad(image, half, mode="symmetric"), (size, size)
    )
    out = np.empty((2 * ny, 2 * nx))
    for py in (0, 1):
        for px in (0, 1):
            out[py::2, px::2] = np.einsum("ijkl,kl->ij", windows, filters[py, px]) + offsets[py, px]
    return out


def test_oracle_linear_recovers_a_polyphase_filter_exactly():
    rng = np.random.default_rng(7)
    image = rng.normal(size=(26, 22))
    filters = rng.normal(size=(2, 2, 9, 9))
    offsets = rng.normal(size=(2, 2))
    truth = _polyphase(image, filters, offsets)
    out = baselines.oracle_linear(image, truth, size=9)
    assert out.shape == truth.shape
    np.testing.assert_allclose(out, truth, rtol=0, atol=1e-8)
    # a smaller support cannot represent the 9x9 filters
    small = baselines.oracle_linear(image, truth, size=5)
    assert np.sqrt(np.mean((small - truth) ** 2)) > 0.1 * truth.std()


def test_oracle_linear_bounds_the_linear_baselines(held_out, tikhonov_result):
    noisy, _, truth = held_out
    tik, _ = tikhonov_result
    oracle = baselines.oracle_linear(noisy, truth)
    bound = metrics.psnr(oracle, truth)
    for name, image in (
        ("bicubic", baselines.bicubic(noisy)),
        ("unsharp", baselines.unsharp_mask(noisy)),
        ("tikhonov", tik),
    ):
        assert bound >= metrics.psnr(image, truth), name
    # fitted on the truth it is scored against, yet not an identity: noise limits it
    assert bound < 40.0


def test_oracle_linear_refuses_mismatched_shapes_and_even_sizes():
    image = np.ones((10, 12))
    for truth in (np.ones((20, 23)), np.ones((10, 12)), np.ones((24, 20))):
        with pytest.raises(InputError, match="twice the input"):
            baselines.oracle_linear(image, truth)
    with pytest.raises(ConfigError, match="odd"):
        baselines.oracle_linear(image, np.ones((20, 24)), size=4)


def _case(held_out, enhanced: np.ndarray, observable: str = "continuum"):
    from enhance_hmi.validation.report import ValidationCase

    noisy, _, truth = held_out
    return ValidationCase("sst held-out", observable, noisy, truth, enhanced, "SST at 28 cm")


def test_report_scores_tikhonov_and_the_oracle_bound(held_out, tmp_path):
    from enhance_hmi.validation.report import BOUNDS, METHODS, evaluate, write_report

    assert "tikhonov" in METHODS and BOUNDS == ("oracle_linear",)
    assert "oracle_linear" not in METHODS  # a bound, never a competitor
    noisy, _, truth = held_out
    near_truth = truth + np.random.default_rng(1).normal(0.0, 2e-3, truth.shape)
    good = evaluate(_case(held_out, near_truth), border=BORDER).metrics
    for name in ("tikhonov", "oracle_linear"):
        row = good["methods"][name]
        assert np.isfinite(row["psnr"]) and np.isfinite(row["forward_residual"]), name
    table, summary = good["methods"], good["summary"]
    assert table["tikhonov"]["psnr"] > table["richardson_lucy"]["psnr"]
    assert table["oracle_linear"]["psnr"] >= table["tikhonov"]["psnr"]
    assert summary["enhance_beats_tikhonov_psnr"] is True
    assert summary["enhance_minus_linear_bound_db"] == pytest.approx(
        table["enhance"]["psnr"] - table["oracle_linear"]["psnr"]
    )
    assert summary["enhance_minus_linear_bound_db"] > 0
    # the bound is not a method: a network beaten only by the bound is still the best method
    assert summary["best_psnr"] == "enhance"
    # an "enhancement" that is bicubic interpolation loses to Tikhonov and to the bound
    bicubic = baselines.bicubic(noisy)
    poor = evaluate(_case(held_out, bicubic), border=BORDER).metrics["summary"]
    assert poor["enhance_beats_tikhonov_psnr"] is False
    assert poor["enhance_minus_linear_bound_db"] < -3
    # the page of the bicubic case, where the bound beats every method
    page = write_report(_case(held_out, bicubic), tmp_path / "report").read_text()
    doc = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert set(doc["methods"]) == {*METHODS, *BOUNDS}
    best_method = max(doc["methods"][m]["psnr"] for m in METHODS)
    assert doc["methods"]["oracle_linear"]["psnr"] > best_method
    assert {"enhance_beats_tikhonov_psnr", "enhance_minus_linear_bound_db"} <= set(doc["summary"])
    row = re.search(r'<tr class="oracle_linear">(.*?)</tr>', page)
    assert row is not None and "upper bound" in row.group(1)
    assert 'class="best"' not in row.group(1)  # never marked best, even where it is
    assert re.search(r'<tr class="tikhonov">.*?class="best".*?</tr>', page)  # the best method
    assert re.search(r'<tr class="tikhonov"><td>Tikhonov', page)


def test_report_scores_tikhonov_on_a_magnetogram(shared_data):
    from enhance_hmi.scenes import load_nfi_magnetogram_scene
    from enhance_hmi.training import held_out_pairs
    from enhance_hmi.validation.report import ValidationCase, evaluate

    scene = load_nfi_magnetogram_scene(
        shared_data / "hinode" / "FGMG4_20110214_030443.7.cols0-879.fits"
    )
    (pair,) = held_out_pairs([scene], holdout=0.35, gains=[1.5])
    truth = pair.target.astype(np.float64)[:160]
    clean = pair.input.astype(np.float64)[:80]
    hmi = clean + np.random.default_rng(2).normal(0.0, 10.0, clean.shape)  # 10 G
    case = ValidationCase("nfi", "magnetogram", hmi, truth, baselines.bicubic(hmi), "NFI")
    doc = evaluate(case, border=BORDER).metrics
    table = doc["methods"]
    assert np.isfinite(table["tikhonov"]["psnr"]) and np.isfinite(table["oracle_linear"]["psnr"])
    assert table["oracle_linear"]["psnr"] >= table["tikhonov"]["psnr"] > table["bicubic"]["psnr"]
    assert doc["summary"]["enhance_beats_tikhonov_psnr"] is False
