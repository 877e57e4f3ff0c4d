"""Input harmonisation (physics.harmonise): data made under one member, filtered to another."""

from __future__ import annotations

import astropy.units as u
import numpy as np
import pytest

from enhance_hmi.errors import ConfigError
from enhance_hmi.physics import HMI_PIXEL_SCALE, degrade
from enhance_hmi.physics.forward_family import ForwardModelSpec
from enhance_hmi.physics.harmonise import MAX_GAIN, harmonise, harmonising_filter
from enhance_hmi.scenes import load_continuum_scene
from enhance_hmi.validation.shipped_truth import shipped_truth

TRAINED = ForwardModelSpec("wachter2012", True)
TOLD = ForwardModelSpec("yeo", True)


@pytest.fixture(scope="module")
def pair():
    """The shipped truth degraded noise-free under TOLD and under TRAINED (HMI inputs)."""
    scene = load_continuum_scene(shipped_truth(), None)
    data = scene.data[:480, :480]
    made = degrade(data, scene.pixel_scale, **TOLD.options()).input
    wanted = degrade(data, scene.pixel_scale, **TRAINED.options()).input
    return made, wanted


def _rms(a, b, border=4):
    inner = (slice(border, -border),) * 2
    return float(np.sqrt(np.mean((a[inner] - b[inner]) ** 2)))


def test_identity_when_told_the_trained_member(pair):
    made, _ = pair
    noisy = made + np.random.default_rng(0).normal(0, 1e-3, made.shape)
    assert np.array_equal(harmonise(noisy, told=TRAINED, trained=TRAINED, noise=1e-3), noisy)


def test_harmonised_input_is_close_to_the_trained_members_view(pair):
    made, wanted = pair
    before = _rms(made, wanted)
    after = _rms(harmonise(made, told=TOLD, trained=TRAINED, noise=1e-4), wanted)
    # measured: 0.0094 -> 0.0014 (the wrong way round: 0.016); the contrast is ~0.1
    assert after < 0.25 * before
    # counter-case: the filter run the wrong way round moves the data away
    wrong = harmonise(made, told=TRAINED, trained=TOLD, noise=1e-4)
    assert _rms(wrong, wanted) > before


def test_noise_dominated_frequencies_are_left_alone(pair):
    made, _ = pair
    # noise far above the signal at every frequency: the filter is 1 everywhere
    out = harmonise(made, told=TOLD, trained=TRAINED, noise=10.0)
    np.testing.assert_allclose(out, made, rtol=0, atol=1e-12)


def test_nans_are_put_back(pair):
    made, _ = pair
    image = made.copy()
    image[10:20, 30:45] = np.nan
    out = harmonise(image, told=TOLD, trained=TRAINED, noise=1e-3)
    assert np.array_equal(np.isnan(out), np.isnan(image))
    # the filled block does not spread NaN or pull the rest far off
    assert _rms(out[30:], harmonise(made, told=TOLD, trained=TRAINED, noise=1e-3)[30:]) < 5e-3


def test_gain_is_capped():
    shape = (64, 33)
    freq = np.array([0.0, 2.0])
    full = np.ones(2)  # signal everywhere: the filter is the bare ratio of the OTFs
    ratio = harmonising_filter(
        shape,
        told=TOLD,
        trained=TRAINED,
        pixel_scale=HMI_PIXEL_SCALE,
        frequency=freq,
        signal_fraction=full,
        max_gain=100.0,
    )
    assert ratio.max() > MAX_GAIN  # yeo is blurrier: the bare ratio exceeds the cap
    capped = harmonising_filter(
        shape,
        told=TOLD,
        trained=TRAINED,
        pixel_scale=HMI_PIXEL_SCALE,
        frequency=freq,
        signal_fraction=full,
    )
    assert capped.max() == pytest.approx(MAX_GAIN)
    assert capped.min() >= 1.0 and capped[0, 0] == 1.0
    with pytest.raises(ConfigError, match="max_gain"):
        harmonising_filter(
            shape,
            told=TOLD,
            trained=TRAINED,
            pixel_scale=HMI_PIXEL_SCALE,
            frequency=freq,
            signal_fraction=full,
            max_gain=0.5,
        )


def test_otf_along_an_axis_is_the_mtf():
    f = np.linspace(0.0, 0.99, 12)
    for spec in (TRAINED, ForwardModelSpec("yeo", False)):
        np.testing.assert_allclose(spec.otf(f, 0.0), spec.mtf(f / u.arcsec), rtol=1e-12)
    # the pixel factor is separable, not radial: on the diagonal it is sinc^2
    p = HMI_PIXEL_SCALE.to_value(u.arcsec)
    point, pixel = ForwardModelSpec("yeo", False), ForwardModelSpec("yeo", True)
    d = 0.6
    assert pixel.otf(d, d) == pytest.approx(point.otf(d, d) * np.sinc(d * p) ** 2)


def test_bad_noise_is_refused(pair):
    made, _ = pair
    with pytest.raises(ConfigError, match="noise"):
        harmonise(made, told=TOLD, trained=TRAINED, noise=float("nan"))
