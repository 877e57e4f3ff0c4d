"""Known-answer tests for enhance_hmi.validation.metrics and baselines."""

from __future__ import annotations

import astropy.units as u
import numpy as np
import pytest

from enhance_hmi.errors import InputError
from enhance_hmi.validation import baselines, metrics


def test_power_spectrum_peaks_at_sinusoid_frequency():
    x = np.arange(120)[None, :] * np.ones((120, 1))
    for freq in (0.1, 0.2):  # cycles per pixel
        f, p = metrics.power_spectrum(np.sin(2 * np.pi * freq * x), pixel_scale=0.5 * u.arcsec)
        assert f.unit == 1 / u.arcsec and p.unit == u.arcsec**2
        peak = f[np.argmax(p)].to_value(1 / u.arcsec)
        assert abs(peak - freq / 0.5) <= 1 / (360 * 0.5) + 1e-9


def test_rms_contrast_of_known_field():
    rng = np.random.default_rng(1)
    field = 1.0 + 0.07 * rng.standard_normal((200, 200))
    assert metrics.rms_contrast(field) == pytest.approx(0.07, rel=0.02)


def test_quiet_sun_mask_excludes_spot_with_margin():
    rng = np.random.default_rng(2)
    img = 1.0 + 0.03 * rng.standard_normal((100, 100))
    img[40:60, 40:60] = 0.2
    mask = metrics.quiet_sun_mask(img, margin=3)
    assert not mask[37:63, 37:63].any()
    assert mask[:30].mean() > 0.99
    assert metrics.rms_contrast(img, mask) == pytest.approx(0.03, rel=0.05)
    assert metrics.umbral_intensity(img) == pytest.approx(0.2, rel=0.02)


def test_unsigned_flux_of_known_map():
    blos = np.zeros((10, 10))
    blos[2, 2], blos[5, 5] = 1000.0, -500.0
    flux = metrics.unsigned_flux(blos, (1 * u.Mm) ** 2)
    assert flux.to_value(u.Mx) == pytest.approx(1500 * 1e16)


def test_noise_level_and_pearson_psnr():
    rng = np.random.default_rng(3)
    noise = 10 * rng.standard_normal((200, 200))
    assert metrics.noise_level(noise) == pytest.approx(10, rel=0.05)
    a = rng.random((64, 64))
    assert metrics.pearson(a, 2 * a + 1) == pytest.approx(1.0)
    assert metrics.psnr(a + 0.01, a, data_range=1.0) == pytest.approx(40.0, abs=1e-6)
    assert metrics.ssim(a, a) == pytest.approx(1.0)
    assert metrics.spectrum_distance(a, a) == 0.0
    with pytest.raises(InputError):
        metrics.psnr(a, a[:10])


def test_field_amplification():
    ref = np.full((20, 20), 1000.0)
    assert metrics.field_amplification(1.3 * ref, ref) == pytest.approx(1.3)


def _smooth_scene(seed: int = 4, n: int = 256) -> np.ndarray:
    """A granulation-like scene at 0.0662"/px: smoothed noise, 8 % contrast."""
    from scipy import ndimage

    field = ndimage.gaussian_filter(np.random.default_rng(seed).standard_normal((n, n)), 6)
    return 1 + 0.08 * field / field.std()


def test_forward_residual_of_the_truth_adds_the_noise_and_bicubic_misses_more():
    """The truth's residual against a noisy input is its own miss plus the noise, in quadrature.

    The 28 cm truth is blurrier than the scene (the aperture's OTF), so even
    without noise it does not re-observe to the input exactly; noise adds
    in quadrature. Bicubic, which does not deconvolve, misses by far more.
    """
    from enhance_hmi.physics import degrade

    pair = degrade(_smooth_scene(), 0.0662 * u.arcsec)
    sigma = 3e-3
    noisy = pair.input + np.random.default_rng(5).normal(0, sigma, pair.input.shape)
    clean = metrics.forward_residual_stats(pair.target, pair.input)["rms"]
    truth = metrics.forward_residual_stats(pair.target, noisy, noise=sigma)
    assert truth["rms"] == pytest.approx(np.hypot(clean, sigma), rel=0.15)
    assert truth["rms"] == pytest.approx(truth["rms_in_noise"] * sigma)
    bicubic = metrics.forward_residual_stats(baselines.bicubic(noisy), noisy, noise=sigma)
    assert bicubic["rms_in_noise"] > 2 * truth["rms_in_noise"]


def test_relative_forward_residual_ignores_the_mean():
    """Relative form divides by the input's spread, not by an rms that includes the mean."""
    from enhance_hmi.physics import degrade

    pair = degrade(_smooth_scene(), 0.0662 * u.arcsec)
    out = baselines.bicubic(pair.input)
    base = metrics.forward_residual(out, pair.input)
    shifted = metrics.forward_residual(out + 10.0, pair.input + 10.0)
    assert shifted == pytest.approx(base, rel=1e-6)
    stats = metrics.forward_residual_stats(out, pair.input)
    assert base == pytest.approx(stats["rms"] / np.std(pair.input), rel=1e-9)


def test_forward_residual_regions():
    """Region figures use only their pixels; a missing mask or noise gives None."""
    from enhance_hmi.physics import degrade

    pair = degrade(_smooth_scene(), 0.0662 * u.arcsec)
    out = baselines.bicubic(pair.input)
    left = np.zeros(pair.input.shape, bool)
    left[:, : pair.input.shape[1] // 2] = True
    stats = metrics.forward_residual_stats(out, pair.input, field=left, quiet=~left)
    assert stats["rms_field"] is not None and stats["rms_quiet"] is not None
    assert min(stats["rms_field"], stats["rms_quiet"]) <= stats["rms"] * 1.0001
    assert max(stats["rms_field"], stats["rms_quiet"]) >= stats["rms"] * 0.9999
    assert stats["rms_in_noise"] is None and stats["noise"] is None


@pytest.mark.parametrize(
    "fn", [baselines.bicubic, baselines.unsharp_mask, baselines.richardson_lucy]
)
def test_baselines_shape_and_pixel_convention(fn):
    ramp = np.tile(np.arange(16, dtype=float), (16, 1)) + 10
    out = fn(ramp)
    assert out.shape == (32, 32)
    if fn is baselines.bicubic:
        # output pixel j has its centre at input coordinate j/2 - 1/4
        assert out[8, 10] == pytest.approx(10 + 10 / 2 - 0.25, abs=1e-3)
    withnan = ramp.copy()
    withnan[3, 4] = np.nan
    res = fn(withnan)
    assert np.isnan(res[6:8, 8:10]).all() and np.isfinite(res).sum() == 32 * 32 - 4


def test_richardson_lucy_handles_negative_blos_and_sharpens():
    from enhance_hmi.physics import degrade

    rng = np.random.default_rng(5)
    truth = np.zeros((128, 128))
    truth[rng.integers(0, 128, 40), rng.integers(0, 128, 40)] = rng.choice([-1500, 1500], 40)
    pair = degrade(truth, 0.126 * u.arcsec)
    rl = baselines.richardson_lucy(pair.input)
    bc = baselines.bicubic(pair.input)
    assert np.isfinite(rl).all() and rl.min() < 0
    assert np.abs(rl).max() > np.abs(bc).max()
