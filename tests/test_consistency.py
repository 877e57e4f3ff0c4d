"""HMI's view of a 28 cm image, and the projection of network outputs onto their input."""

from __future__ import annotations

import re
from pathlib import Path

import astropy.units as u
import numpy as np
import pytest

from enhance_hmi.errors import ConfigError, InputError
from enhance_hmi.inference.consistency import project_to_observation
from enhance_hmi.inference.forward_model import ForwardModel
from enhance_hmi.physics import degrade, reobserve
from enhance_hmi.physics.transfer import hmi_given_target_transfer, reobserve_target
from enhance_hmi.validation import baselines

SCALE = 0.0662 * u.arcsec


def _granulation(n: int = 512, seed: int = 0) -> np.ndarray:
    """A granulation-like random field (1.5" cells, ~8 % contrast) at 0.0662"/px."""
    rng = np.random.default_rng(seed)
    f = np.hypot(*np.meshgrid(np.fft.fftfreq(n, 0.0662), np.fft.fftfreq(n, 0.0662)))
    spectrum = np.exp(-(((f - 0.7) / 0.35) ** 2)) + 0.2 * np.exp(-f / 0.4)
    field = np.real(np.fft.ifft2(np.fft.fft2(rng.normal(size=(n, n))) * spectrum))
    return 1.0 + 0.08 * field / field.std()


@pytest.fixture(scope="module")
def scene():
    return degrade(_granulation(), SCALE)


def test_a_28cm_image_seen_by_hmi_gives_back_the_hmi_image(scene):
    """The H/A kernel makes the 28 cm target consistent with HMI; the full HMI PSF does not."""
    edge = 4
    inner = (slice(edge, -edge), slice(edge, -edge))
    ratio = reobserve_target(scene.target)[inner] - scene.input[inner]
    double = reobserve(scene.target)[inner] - scene.input[inner]
    spread = scene.input[inner].std()
    assert np.sqrt(np.mean(ratio**2)) < 0.01 * spread
    assert np.sqrt(np.mean(double**2)) > 0.1 * spread  # blurred by 28 cm twice


def test_transfer_function_is_one_at_zero_frequency_and_zero_beyond_hmi():
    transfer = hmi_given_target_transfer((256, 256))
    assert transfer[0, 0] == pytest.approx(1.0, abs=1e-3)
    freq = np.fft.rfftfreq(256, d=0.252)
    beyond = freq > 1.6  # well beyond the 14 cm cutoff (1.1 cycles/arcsec)
    assert np.all(np.abs(transfer[0, beyond]) < 1e-3)


def test_forward_model_adjoint_is_exact():
    rng = np.random.default_rng(3)
    model = ForwardModel((40, 30), 8, "wachter")
    x = rng.normal(size=model.fine).astype(np.float32)
    r = rng.normal(size=(model.fine[0] // 2, model.fine[1] // 2)).astype(np.float32)
    lhs = float(np.sum(model.forward(x).astype(np.float64) * r))
    rhs = float(np.sum(x.astype(np.float64) * model.adjoint(r)))
    assert lhs == pytest.approx(rhs, rel=1e-4)


def test_projection_reaches_the_noise_and_moves_towards_the_truth(scene):
    rng = np.random.default_rng(5)
    sigma = 1e-3
    noisy = scene.input + rng.normal(0, sigma, scene.input.shape)
    start = baselines.bicubic(noisy)  # far from consistent: no deconvolution at all
    out, info = project_to_observation(start, noisy, noise=sigma, discrepancy=1.0)
    assert info.residual_before > 5 * sigma
    assert info.converged and info.residual_after <= sigma
    assert info.iterations > 0
    back = reobserve_target(out) - noisy
    assert np.sqrt(np.mean(back[4:-4, 4:-4] ** 2)) < 1.2 * sigma
    err_before = np.sqrt(np.mean((start - scene.target) ** 2))
    err_after = np.sqrt(np.mean((out - scene.target) ** 2))
    assert err_after < 0.8 * err_before


def test_projection_leaves_a_consistent_image_alone(scene):
    rng = np.random.default_rng(6)
    sigma = 1e-3
    noisy = scene.input + rng.normal(0, sigma, scene.input.shape)
    out, info = project_to_observation(scene.target, noisy, noise=sigma, discrepancy=1.2)
    assert info.iterations == 0
    assert np.array_equal(out, scene.target.astype(np.float32))  # bit for bit


def test_projection_stops_on_the_discrepancy_goal_not_below_it(scene):
    """A nearly consistent image: the one step it needs ends on the goal.

    The first CGLS step's minimum can lie far below the goal (measured on the
    2019-06-21 held-out strip: 9.71 -> 8.32 for a goal of 9.50 G, which put
    back enough input noise to cost 5.6 dB); the step is shortened to end on
    the goal, so the image moves no more than the discrepancy principle asks.
    """
    rng = np.random.default_rng(11)
    sigma = 1e-3
    noisy = scene.input + rng.normal(0, sigma, scene.input.shape)
    _, alone = project_to_observation(scene.target, noisy, noise=sigma, discrepancy=10.0)
    assert alone.iterations == 0
    discrepancy = 0.97 * alone.residual_before / sigma
    out, info = project_to_observation(scene.target, noisy, noise=sigma, discrepancy=discrepancy)
    goal = discrepancy * sigma
    assert info.iterations == 1 and info.converged
    assert 0.99 * goal <= info.residual_after <= goal
    moved = np.sqrt(np.mean((out - scene.target) ** 2))
    assert moved < 0.5 * sigma  # a small step, not the input's noise put back


def test_projection_estimates_the_noise_from_the_input(scene):
    rng = np.random.default_rng(7)
    noisy = scene.input + rng.normal(0, 2e-3, scene.input.shape)
    _, info = project_to_observation(baselines.bicubic(noisy), noisy)
    assert info.noise == pytest.approx(2e-3, rel=0.2)


def test_projection_keeps_nan_blocks_and_ignores_them(scene):
    rng = np.random.default_rng(8)
    noisy = scene.input + rng.normal(0, 1e-3, scene.input.shape)
    noisy[:10, :10] = np.nan
    start = baselines.bicubic(noisy)
    out, info = project_to_observation(start, noisy, noise=1e-3)
    assert np.isnan(out[:20, :20]).all()
    assert np.isfinite(out[20:, 20:]).all()
    assert info.residual_after < info.residual_before


def test_projection_refuses_bad_arguments(scene):
    with pytest.raises(InputError, match="twice"):
        project_to_observation(scene.target[:-2], scene.input)
    with pytest.raises(ConfigError, match="discrepancy"):
        project_to_observation(scene.target, scene.input, discrepancy=0)
    with pytest.raises(InputError, match="valid"):
        project_to_observation(np.full_like(scene.target, np.nan), scene.input)


SAMPLE = Path(__file__).resolve().parents[1] / "enhance_hmi" / "data" / "sample"


@pytest.mark.parametrize(
    ("name", "observable"),
    [
        ("hmi_quiet_ic_cutout.fits", "continuum"),
        ("hmi.M_720s.20111217_060000_TAI.1.magnetogram.fits", "magnetogram"),
    ],
)
def test_predict_returns_an_image_consistent_with_its_input(tmp_path, name, observable):
    """enhance_file projects by default, records it, and --no-consistency leaves the raw output."""
    from astropy.io import fits

    from enhance_hmi.inference.consistency import recipe_noise_estimate, resolve_noise_estimate
    from enhance_hmi.io import read_hmi
    from enhance_hmi.model import default_weights, load_weights, psf_model_of
    from enhance_hmi.physics.noise import histogram_core_sigma, hmi_noise_sigma
    from enhance_hmi.pipeline import enhance_file

    source = SAMPLE / name
    data = read_hmi(source, observable=observable).data.astype(np.float64)
    # re-observed with the HMI PSF the shipped network was trained for (its sidecar)
    meta = load_weights(default_weights(observable))[1]
    psf = psf_model_of(meta)
    # the noise the projection stops at: the estimate the recipe picks for this input
    if resolve_noise_estimate(data, recipe_noise_estimate(meta)) == "histogram":
        noise = histogram_core_sigma(data)
    else:
        noise = hmi_noise_sigma(np.nan_to_num(data, nan=float(np.nanmedian(data))))
    residuals, images, record = {}, {}, ""
    for consistency in (True, False):
        out = enhance_file(
            source,
            tmp_path / f"{consistency}.fits",
            observable=observable,
            device="cpu",
            consistency=consistency,
            uncertainty=False,
        )
        with fits.open(out) as hdul:
            image = next(h.data for h in hdul if h.data is not None).astype(np.float64)
            header = next(h.header for h in hdul if h.data is not None)
            cards = "".join(str(v) for v in header.get("HISTORY", []))
        back = reobserve_target(image, psf_model=psf) - data
        inner = back[4:-4, 4:-4]
        residuals[consistency] = float(np.sqrt(np.nanmean(inner**2))) / noise
        images[consistency] = image
        assert ("CGLS projection" in cards) == consistency
        record = record or cards
    assert residuals[True] <= 1.2
    # the projection acts only where the network's own output misses its input by
    # more than the stopping level (its own noise estimate); then it lowers the miss
    match = re.search(
        r"CGLS projection onto the input, (\d+) iterations, residual (\S+) -> (\S+)", record
    )
    iterations, before, after = int(match[1]), float(match[2]), float(match[3])
    if iterations:
        assert after < before and residuals[False] > residuals[True]
    else:
        assert after == before
        # unchanged up to the float32 round trip of the write
        scale = float(np.nanmax(np.abs(images[False])))
        np.testing.assert_allclose(images[True], images[False], rtol=1e-6, atol=1e-6 * scale)


def _synthetic_disk(seed: int = 9):
    """A 96x96 magnetogram-like input whose right part lies beyond a limb, with 10x noise there.

    Returns (start, observed, disk, truth_noise): the start is a consistent
    image (the 28 cm scene re-observed has the input's shape only inside).
    """
    from enhance_hmi.physics.disk import SolarDisk

    rng = np.random.default_rng(seed)
    target = 50.0 * _granulation(192, seed)  # a smooth "field" at the 2x scale
    clean = reobserve_target(target)
    disk = SolarDisk(x0=-30.0, y0=48.0, radius=100.0)  # limb at column 70
    radius = disk.relative_radius(clean.shape)
    sigma = np.where(radius <= 1.0, 1.0, 10.0)
    observed = (clean + sigma * rng.normal(size=clean.shape)).astype(np.float32)
    return target.astype(np.float32), observed, disk


def test_the_projection_ignores_the_off_limb_ring_when_told_the_disk():
    """Without the disk the 10x off-limb noise keeps the residual above its goal and
    CGLS fits noise across the disk; with it the consistent start is left alone."""
    start, observed, disk = _synthetic_disk()
    told, told_info = project_to_observation(start, observed, noise=1.0, disk=disk)
    assert told_info.iterations == 0 and told_info.constrained_radius == 0.99
    assert np.array_equal(told, start)
    blind, blind_info = project_to_observation(start, observed, noise=1.0, max_iterations=8)
    assert blind_info.iterations > 0 and not blind_info.converged
    inside = disk.scaled(2).inside(start.shape, 0.9)
    assert np.abs(blind - start)[inside].max() > 1.0  # the disk changed, by more than the noise


def test_the_projection_stops_when_it_stalls():
    """A goal below what the data allow: it stops once an iteration gains < 1 %, not at the cap."""
    start, observed, disk = _synthetic_disk(10)
    _, info = project_to_observation(
        start, observed, noise=1.0, discrepancy=0.1, max_iterations=200, disk=disk
    )
    assert info.stalled and not info.converged
    assert 0 < info.iterations < 200


def test_an_unknown_backend_is_a_config_error(scene):
    with pytest.raises(ConfigError, match="backend"):
        project_to_observation(scene.target, scene.input, backend="jax")


def test_a_given_input_noise_far_from_the_frames_own_is_named():
    import warnings

    from enhance_hmi.errors import ImplausibleInputNoiseWarning
    from enhance_hmi.inference.consistency import (
        GIVEN_NOISE_FACTOR,
        warn_if_given_noise_implausible,
    )
    from enhance_hmi.io import read_hmi

    sample = Path(__file__).resolve().parents[1] / "enhance_hmi" / "data" / "sample"
    data = read_hmi(sample / "hmi.M_720s.20160707_010000_TAI.3.magnetogram.fits").data
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        own = warn_if_given_noise_implausible(data, 5.0, estimate="auto", unit=" G")
    assert 2 < own < 8  # the histogram core of the quiet sample, gauss
    with pytest.warns(ImplausibleInputNoiseWarning, match="barely acts"):
        warn_if_given_noise_implausible(data, own * GIVEN_NOISE_FACTOR * 1.01, estimate="auto")
    with pytest.warns(ImplausibleInputNoiseWarning, match="fits the input's noise"):
        warn_if_given_noise_implausible(data, own / GIVEN_NOISE_FACTOR / 1.01, estimate="auto")
