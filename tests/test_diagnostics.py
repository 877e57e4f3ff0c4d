"""The one home of the science diagnostics: quiet Sun, field regions, noise, forward residual.

:mod:`enhance_hmi.physics.diagnostics`, :mod:`enhance_hmi.physics.noise` and
:mod:`enhance_hmi.physics.projection` load no torch; the quality figures, the
validation scores and the projection use their definitions, and the torch
mirrors on the GPU equal them.
"""

from __future__ import annotations

import subprocess
import sys

import astropy.units as u
import numpy as np
import pytest
from scipy import ndimage

from enhance_hmi.errors import ConfigError, InputError
from enhance_hmi.io import frame_quality as fq
from enhance_hmi.physics import diagnostics, noise, projection
from enhance_hmi.physics.transfer import reobserve_target
from enhance_hmi.validation import baselines, metrics


def _granulation(
    shape: tuple[int, int], seed: int, contrast: float = 0.04, size: float = 2.0
) -> np.ndarray:
    """Quiet-Sun-like continuum: 1 + a random pattern of ``size`` px and rms ``contrast``."""
    rng = np.random.default_rng(seed)
    pattern = ndimage.gaussian_filter(rng.normal(size=shape), size, mode="wrap")
    return 1.0 + contrast * pattern / pattern.std()


def _magnetogram(shape: tuple[int, int], seed: int, sigma: float = 8.0) -> np.ndarray:
    """White noise of ``sigma`` G with a 600 G spot in a corner."""
    rng = np.random.default_rng(seed)
    blos = rng.normal(0.0, sigma, shape)
    blos[10:30, 10:30] += 600.0
    return blos


# --------------------------------------------------------------------------- no torch


@pytest.mark.parametrize(
    "module",
    [
        "enhance_hmi.physics.diagnostics",
        "enhance_hmi.physics.noise",
        "enhance_hmi.physics.projection",
        "enhance_hmi.physics",
        "enhance_hmi.io.frame_quality",
        "enhance_hmi.workflow",
    ],
)
def test_importing_the_diagnostics_or_the_workflow_loads_no_torch(module):
    code = f"import sys, {module}; assert 'torch' not in sys.modules, sorted(sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]


def test_the_input_noise_of_a_settings_object_is_read_without_torch():
    code = (
        "import sys\n"
        "from enhance_hmi.physics.noise import input_noise_in_data_units, parse_input_noise\n"
        "assert input_noise_in_data_units(parse_input_noise('1 mT'), 'magnetogram') == 10.0\n"
        "assert 'torch' not in sys.modules\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]


def test_every_layer_uses_the_one_definition():
    """The scores, the quality figures and the projection offer the physics functions themselves."""
    from enhance_hmi.inference import consistency

    assert metrics.quiet_sun_mask is diagnostics.quiet_sun_mask
    assert metrics.field_mask is diagnostics.field_mask
    assert metrics.forward_residual_stats is diagnostics.forward_residual_stats
    assert metrics.noise_level is noise.mad_sigma
    assert baselines.spectral_noise_sigma_hmi is noise.hmi_noise_sigma
    assert consistency.parse_input_noise is noise.parse_input_noise
    assert consistency.quiet_sun_fraction is noise.quiet_sun_fraction
    assert consistency.Projection is projection.Projection


# --------------------------------------------------------------------------- quiet Sun


def test_continuum_quiet_sun_leaves_out_spot_and_facula_with_their_margin():
    image = _granulation((120, 120), 1)
    image[20:40, 20:40] = 0.3  # umbra
    image[80:90, 80:90] = 1.3  # bright facula
    mask = diagnostics.quiet_sun_mask(image, margin=4)
    assert not mask[16:44, 16:44].any() and not mask[77:93, 77:93].any()
    assert mask[50:70, :].mean() > 0.98  # granulation with its dark lanes stays quiet
    # has teeth: without the smoothing the lanes of a 9 % granulation are taken for penumbra
    lanes = _granulation((120, 120), 2, contrast=0.09, size=0.7)
    assert diagnostics.quiet_sun_mask(lanes, margin=0).mean() > 0.99
    assert diagnostics.quiet_sun_mask(lanes, margin=0, smooth=0).mean() < 0.9


def test_quiet_sun_falls_back_or_is_empty_when_almost_nothing_is_quiet():
    image = _granulation((60, 60), 3)
    image[:, :30] = 0.3  # half umbra: the median lies between umbra and quiet Sun
    assert diagnostics.quiet_sun_mask(image).all()  # fallback: every finite pixel
    assert not diagnostics.quiet_sun_mask(image, fallback=False).any()
    assert not diagnostics.quiet_sun_mask(image, min_fraction=0.0).any()
    image = _granulation((60, 60), 3)
    image[:, :10] = 0.3  # a smaller spot: the quiet Sun is found, no fallback
    assert 0.5 < diagnostics.quiet_sun_mask(image).mean() < 0.9


def test_quiet_sun_never_holds_nan_or_pixels_outside_the_region():
    image = _granulation((64, 64), 4)
    image[5, 5] = np.nan
    region = np.zeros(image.shape, bool)
    region[:, 32:] = True
    mask = diagnostics.quiet_sun_mask(image, region=region)
    assert not mask[5, 5] and not mask[:, :32].any() and mask[:, 32:].mean() > 0.95
    with pytest.raises(InputError, match="region"):
        diagnostics.quiet_sun_mask(image, region=region[:10])
    with pytest.raises(InputError, match="kind"):
        diagnostics.quiet_sun_mask(image, kind="dopplergram")


def test_magnetogram_quiet_sun_excludes_the_spot_and_its_margin():
    blos = _magnetogram((100, 100), 5)
    mask = diagnostics.quiet_sun_mask(blos, kind="blos")
    assert not mask[5:35, 5:35].any()
    assert mask[50:, 50:].mean() > 0.99  # 8 G noise is far below 50 G
    shifted = diagnostics.quiet_sun_mask(blos + 30.0, kind="blos", field_zero=30.0)
    assert np.array_equal(shifted, mask)


def test_quiet_sun_fraction_is_the_share_of_the_noise_relative_mask():
    blos = _magnetogram((128, 128), 6)
    assert noise.quiet_sun_fraction(blos) > 0.9  # noise and one spot
    mixed = ndimage.gaussian_filter(np.random.default_rng(7).normal(size=(64, 128)), 3.0)
    blos[64:, :] += 100.0 * mixed / mixed.std()  # resolved mixed field of 100 G rms
    fraction = noise.quiet_sun_fraction(blos)
    sigma = noise.estimate_input_noise(blos, "spectral")
    mask = diagnostics.quiet_sun_mask(
        blos,
        kind="blos",
        field_threshold=noise.QUIET_THRESHOLD * sigma,
        field_zero=float(np.median(blos)),
        smooth=noise.QUIET_SMOOTHING_PX,
        margin=0,
        min_fraction=0.0,
    )
    assert fraction == pytest.approx(mask.mean(), abs=1e-12)
    assert 0.45 < fraction < 0.65  # the quiet half, less the spot


# --------------------------------------------------------------------------- field regions


def test_field_mask_finds_the_spot_grown_by_two_pixels_inside_the_region():
    blos = _magnetogram((80, 80), 8)
    field = diagnostics.field_mask(blos, 8.0)
    assert field[10:30, 10:30].all() and field[8, 15] and not field[6, 15]
    assert field[40:, 40:].mean() < 0.01
    region = np.ones(blos.shape, bool)
    region[:, :20] = False
    assert not diagnostics.field_mask(blos, 8.0, region=region)[:, :20].any()


# --------------------------------------------------------------------------- noise


def test_mad_sigma_measures_noise_and_leaves_out_the_masked_field():
    blos = _magnetogram((200, 200), 9, sigma=10.0)
    assert noise.mad_sigma(blos[50:, 50:]) == pytest.approx(10.0, rel=0.05)
    quiet = diagnostics.quiet_sun_mask(blos, kind="blos")
    assert noise.mad_sigma(blos, quiet) == pytest.approx(10.0, rel=0.05)
    with pytest.raises(InputError, match="2 finite"):
        noise.mad_sigma(blos, np.zeros(blos.shape, bool))


def test_parse_and_convert_the_input_noise():
    assert noise.input_noise_in_data_units("1 mT", "magnetogram") == pytest.approx(10.0)
    assert noise.input_noise_in_data_units(noise.parse_input_noise("0.2%"), "continuum") == (
        pytest.approx(0.002)
    )
    assert noise.input_noise_in_data_units(12 * u.G, "magnetogram") == pytest.approx(12.0)
    for value, observable, words in (
        ("10 G", "continuum", "quiet-Sun units"),
        ("0.002", "magnetogram", "gauss"),
        ("-3 G", "magnetogram", "positive"),
        ("ten", "magnetogram", "not a number"),
    ):
        with pytest.raises(ConfigError, match=words):
            noise.input_noise_in_data_units(value, observable)


# --------------------------------------------------------------------------- forward residual


def test_forward_residual_is_the_offset_from_a_consistent_input_in_noise_units():
    enhanced = np.repeat(np.repeat(_granulation((64, 64), 10), 2, axis=0), 2, axis=1)
    observed = reobserve_target(enhanced)
    stats = diagnostics.forward_residual_stats(enhanced, observed, noise=0.01)
    assert stats["rms"] == pytest.approx(0.0, abs=1e-12)
    shifted = diagnostics.forward_residual_stats(enhanced, observed + 0.003, noise=0.01)
    assert shifted["rms"] == pytest.approx(0.003, rel=1e-9)
    assert shifted["rms_in_noise"] == pytest.approx(0.3, rel=1e-9)
    assert shifted["relative"] == pytest.approx(0.003 / np.std(observed), rel=1e-9)
    assert shifted["rms_quiet"] is None and shifted["rms_field"] is None
    # only the region counts: an offset outside it does not show
    region = np.zeros(observed.shape, bool)
    region[:, :32] = True
    half = observed.copy()
    half[:, 32:] += 1.0
    inside = diagnostics.forward_residual_stats(enhanced, half, region=region)
    assert inside["rms"] == pytest.approx(0.0, abs=1e-12)
    assert diagnostics.forward_residual_stats(enhanced, half)["rms"] > 0.5
    # a re-observation computed elsewhere (the GPU) replaces the one here
    given = diagnostics.forward_residual_stats(None, observed, reobserved=observed + 0.003)
    assert given["rms"] == pytest.approx(0.003, rel=1e-9)
    with pytest.raises(InputError, match="does not match"):
        diagnostics.forward_residual_stats(enhanced, observed[:-2])


def test_the_quality_figure_is_the_forward_residual_over_the_constrained_pixels():
    rng = np.random.default_rng(11)
    data = _granulation((64, 64), 12) + rng.normal(0, 1e-3, (64, 64))
    enhanced = baselines.bicubic(data).astype(np.float32)
    quality = fq.frame_quality(data, enhanced, observable="continuum")
    expected = diagnostics.forward_residual_stats(
        enhanced, data, noise=quality.input_noise, border=fq.RESIDUAL_BORDER, min_pixels=16
    )["rms_in_noise"]
    assert quality.forward_residual == pytest.approx(expected, rel=1e-12)
    assert quality.forward_residual > 1.0  # bicubic is not a deconvolution: it misses the input
    assert quality.input_noise == noise.input_noise(data, "spectral")[0]


def test_the_quality_contrast_is_measured_over_the_one_quiet_sun():
    image = _granulation((96, 96), 13).astype(np.float32)
    image[10:30, 10:30] = 0.3
    contrast = fq.QualityKernels().quiet_contrast(image, smooth=2.0)
    quiet = diagnostics.quiet_sun_mask(image, margin=5, min_fraction=0.0)
    assert contrast == float(np.std(image[quiet]) / np.mean(image[quiet]))
    assert contrast == pytest.approx(0.04, rel=0.1)  # the spot is left out


# --------------------------------------------------------------------------- projection


def test_the_physics_projection_reaches_the_noise_and_equals_the_inference_one():
    from enhance_hmi.inference.consistency import project_to_observation

    rng = np.random.default_rng(14)
    truth = np.repeat(np.repeat(_granulation((48, 48), 15), 2, axis=0), 2, axis=1)
    observed = reobserve_target(truth) + rng.normal(0, 1e-3, (48, 48))
    start = baselines.bicubic(observed)
    here, info = projection.project_to_observation(start, observed, noise=1e-3, discrepancy=1.0)
    there, _ = project_to_observation(start, observed, noise=1e-3, discrepancy=1.0)
    assert info.iterations > 0 and info.converged
    assert info.residual_after <= 1e-3 < info.residual_before
    assert np.array_equal(here, there)


# --------------------------------------------------------------------------- torch mirrors


def test_the_torch_mirrors_equal_the_numpy_definitions():
    from enhance_hmi.inference.consistency import project_to_observation
    from enhance_hmi.inference.device_noise import input_noise_on, quiet_sun_fraction_on
    from enhance_hmi.inference.device_quality import TorchQualityKernels

    blos = _magnetogram((96, 96), 16)
    blos[48:, :] += np.random.default_rng(17).normal(0, 60.0, (48, 96))
    assert quiet_sun_fraction_on(blos, device="cpu") == pytest.approx(
        noise.quiet_sun_fraction(blos), abs=1e-5
    )
    for how in ("spectral", "histogram", "auto"):
        mine, source = input_noise_on(blos, how, device="cpu")
        theirs, their_source = noise.input_noise(blos, how)
        assert source == their_source and mine == pytest.approx(theirs, rel=1e-5)
    here, there = fq.QualityKernels(), TorchQualityKernels("cpu")
    enhanced = baselines.bicubic(blos).astype(np.float32)
    assert there.flux_ratio(blos, enhanced, 8.0, None) == pytest.approx(
        here.flux_ratio(blos, enhanced, 8.0, None), rel=1e-5
    )
    image = _granulation((96, 96), 18).astype(np.float32)
    image[10:30, 10:30] = 0.3
    assert there.quiet_contrast(image, 2.0) == pytest.approx(
        here.quiet_contrast(image, 2.0), rel=1e-5
    )
    truth = np.repeat(np.repeat(_granulation((40, 40), 19), 2, axis=0), 2, axis=1)
    observed = reobserve_target(truth) + np.random.default_rng(20).normal(0, 1e-3, (40, 40))
    start = baselines.bicubic(observed)
    ref, ref_info = project_to_observation(start, observed, noise_estimate="spectral")
    out, info = project_to_observation(start, observed, backend="torch", device="cpu")
    assert info.iterations == ref_info.iterations > 0
    assert info.noise == pytest.approx(ref_info.noise, rel=1e-5)
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-5)
