"""The HMI forward-model family: members, pixel integration, the default unchanged."""

from __future__ import annotations

import astropy.units as u
import numpy as np
import pytest
from scipy import ndimage

from enhance_hmi.errors import ConfigError
from enhance_hmi.physics import HMI_PIXEL_SCALE, HMI_PSF_MODELS, degrade, reobserve
from enhance_hmi.physics.convolve import convolve_fft
from enhance_hmi.physics.forward_family import (
    BOUND_PSF_MODELS,
    DEFAULT_FORWARD_MODEL,
    FAMILY_RATIO_FLOOR,
    PLAUSIBLE_PSF_MODELS,
    ForwardModelSpec,
    family,
    family_error_variance,
    forward_model_of,
    parse_forward_models,
)
from enhance_hmi.physics.projection import ForwardModel
from enhance_hmi.physics.psf import YEO_PARAMETERS, airy_psf, hmi_psf
from enhance_hmi.physics.resample import overlap_matrix
from enhance_hmi.physics.transfer import reobserve_target
from enhance_hmi.validation.baselines import tikhonov

MURAM = 0.0662 * u.arcsec


def _truth(shape=(360, 340), seed=0):
    rng = np.random.default_rng(seed)
    return 1.0 + ndimage.gaussian_filter(rng.normal(0.0, 0.3, shape), 2.0)


def test_family_names_round_trip():
    members = family()
    assert len(members) == 2 * len(PLAUSIBLE_PSF_MODELS)
    assert {m.psf_model for m in family(bounds=True)} == set(HMI_PSF_MODELS)
    assert all(m.psf_model not in BOUND_PSF_MODELS for m in members)
    assert len({m.name for m in members}) == len(members)
    for member in members:
        assert ForwardModelSpec.from_name(member.name) == member
        assert str(member) == member.name
    assert ForwardModelSpec.from_name("wachter2012") == ForwardModelSpec("wachter2012", True)
    assert ForwardModelSpec.from_name("yeo+point").pixel_integration is False
    assert parse_forward_models("all") == members
    assert parse_forward_models("all,airy14+point")[-1] == ForwardModelSpec("airy14", False)
    assert parse_forward_models(["wachter+point,yeo", "wachter+point"]) == (
        ForwardModelSpec("wachter", False),
        ForwardModelSpec("yeo", True),
    )
    assert DEFAULT_FORWARD_MODEL.name == "wachter+pixel"
    assert forward_model_of({"psf_model": "wachter2012"}).name == "wachter2012+pixel"


@pytest.mark.parametrize("name", ["airy+pixel", "wachter+binned", "", "norton2025+pixel"])
def test_unknown_members_are_refused(name):
    with pytest.raises(ConfigError):
        parse_forward_models(name)


def test_the_diffraction_bound_is_sharper_than_every_fit_at_mid_frequencies():
    """airy14 is the 14 cm Airy PSF: its MTF at 0.4 cycles/arcsec is above every fitted PSF's."""
    f = np.array([0.0, 0.4]) / u.arcsec
    bound = ForwardModelSpec("airy14", True).mtf(f)
    assert bound[0] == pytest.approx(1.0)
    for member in family():
        if member.pixel_integration:
            assert member.mtf(f)[1] < bound[1] - 0.1
    # no wavelength-independent shortcut: the PSF is an Airy pattern of the 14 cm aperture
    psf = hmi_psf(0.0504 * u.arcsec, model="airy14", size=201)
    row = psf[100, 100:]
    first_dark = 1.22 * 6173e-10 / 0.14 * 206264.806 / 0.0504
    assert np.argmin(row[:40]) == pytest.approx(first_dark, abs=1.0)


def test_norton_2025_says_why_it_is_missing():
    with pytest.raises(ConfigError, match="Norton et al. \\(2025"):
        ForwardModelSpec.from_name("norton2025")


def test_yeo_weights_sum_to_one():
    # the fourth weight is 0.0467: with 0.00467 the light fractions would sum to 0.958
    assert sum(YEO_PARAMETERS["weights"]) == pytest.approx(1.0, abs=5e-4)


@pytest.mark.parametrize("member", family(), ids=str)
def test_each_member_builds(member):
    pair = degrade(_truth((200, 190)), MURAM, **member.options())
    assert pair.pixel_integration is member.pixel_integration
    assert pair.psf_model == member.psf_model
    for image in (
        reobserve(pair.target, **member.options()),
        reobserve_target(pair.target, **member.options()),
        tikhonov(pair.input, **member.options()),
    ):
        assert np.isfinite(image).all()
    model = ForwardModel(pair.input.shape, 6, member.psf_model, **_pixel(member))
    assert np.isfinite(np.asarray(model.otf)).all()


def _pixel(member):
    return {"pixel_integration": member.pixel_integration}


@pytest.mark.parametrize("psf_model", HMI_PSF_MODELS)
def test_pixel_integration_lowers_the_mtf_at_nyquist(psf_model):
    nyquist = 0.5 / HMI_PIXEL_SCALE
    integrated = ForwardModelSpec(psf_model, True).mtf(nyquist)
    sampled = ForwardModelSpec(psf_model, False).mtf(nyquist)
    assert 0 < integrated < sampled
    assert integrated / sampled == pytest.approx(2 / np.pi, rel=1e-6)  # sinc(1/2)


def _amplitude(image, freq_per_px):
    """Amplitude of the cosine of ``freq_per_px`` (cycles per pixel) along the rows."""
    profile = image.mean(axis=1) - image.mean()
    k = np.arange(profile.size)
    return 2 * abs(np.mean(profile * np.exp(-2j * np.pi * freq_per_px * k)))


def test_degrade_pixel_integration_suppresses_high_frequencies():
    # a cosine at 0.8 of the HMI Nyquist frequency, along y
    nyquist = 0.5 / HMI_PIXEL_SCALE.to_value(u.arcsec)
    freq = 0.8 * nyquist  # cycles per arcsec
    n_in = 100
    ny = int(round(n_in * 0.504 / 0.0662))
    y = (np.arange(ny) + 0.5) * 0.0662
    truth = 1.0 + 0.1 * np.cos(2 * np.pi * freq * y)[:, None] * np.ones((1, 64))
    per_px = freq * 0.504
    a_int = _amplitude(degrade(truth, MURAM, boundary="wrap").input, per_px)
    a_pt = _amplitude(degrade(truth, MURAM, boundary="wrap", pixel_integration=False).input, per_px)
    mtf = ForwardModelSpec().mtf(freq / u.arcsec)
    assert a_int < a_pt
    assert a_int / a_pt == pytest.approx(np.sinc(per_px), rel=0.05)
    assert a_int / 0.1 == pytest.approx(mtf, rel=0.1)


def test_default_reproduces_the_pixel_integrated_degradation():
    truth = _truth()
    default = degrade(truth, MURAM, noise_sigma=1e-3, rng=4)
    member = degrade(truth, MURAM, noise_sigma=1e-3, rng=4, **DEFAULT_FORWARD_MODEL.options())
    np.testing.assert_array_equal(default.input, member.input)
    np.testing.assert_array_equal(default.target, member.target)
    # built again from its parts: PSF, convolution, integration over 0.504" pixels
    step = 0.504 / 0.0662
    n = (int(truth.shape[0] / step), int(truth.shape[1] / step))
    blurred, _ = convolve_fft(truth, [hmi_psf(MURAM), airy_psf(MURAM)], boundary="symmetric")
    a_y = overlap_matrix(truth.shape[0], n[0], step=step)
    a_x = overlap_matrix(truth.shape[1], n[1], step=step)
    expected = (a_x @ (a_y @ blurred).T).T
    noise = np.random.default_rng(4).normal(0.0, 1e-3, size=n)
    np.testing.assert_array_equal(default.input, expected + noise)
    # and the point-sampled input is another image
    other = degrade(truth, MURAM, noise_sigma=1e-3, rng=4, pixel_integration=False)
    assert np.abs(other.input - default.input).max() > 1e-3


@pytest.mark.parametrize("psf_model", ["wachter", "wachter2012"])
def test_point_sampling_agrees_between_degrade_and_the_transfer_function(psf_model):
    """HMI's view of the 28 cm target reproduces the input under the same member only.

    Has teeth: under the other pixel choice the miss is > 10x larger.
    """
    truth = _truth((600, 600), seed=1)
    inner = (slice(10, -10), slice(10, -10))
    for integrate in (True, False):
        pair = degrade(truth, MURAM, psf_model=psf_model, pixel_integration=integrate)
        same = reobserve_target(pair.target, psf_model=psf_model, pixel_integration=integrate)
        other = reobserve_target(pair.target, psf_model=psf_model, pixel_integration=not integrate)
        miss_same = np.std((same - pair.input)[inner])
        miss_other = np.std((other - pair.input)[inner])
        assert miss_same < 0.1 * miss_other


def test_family_error_variance_is_the_member_transfer_ratio_on_a_sinusoid():
    """((T_k - T_T) T_k / (T_k^2 + floor))^2 / 2 times the amplitude^2, for one frequency.

    Told the member (harmonised with weight w), the error is what the
    harmonisation left: (1 - w)(T_k - T_T) R T_k / ((R T_k)^2 + floor),
    R T_k = w T_T + (1 - w) T_k; none where w = 1.
    """
    n, scale = 256, HMI_PIXEL_SCALE.to_value(u.arcsec) / 2
    cycles = 40  # 40 cycles over 256 output pixels: 0.62 cycles/arcsec
    x = np.arange(n) * scale
    f = cycles / (n * scale)
    image = 1.0 + 0.1 * np.cos(2 * np.pi * f * x)[None, :] * np.ones((n, 1))
    trained, member = ForwardModelSpec("wachter2012", True), ForwardModelSpec("yeo", True)
    variance = family_error_variance(image, trained=trained, members=[member])
    t_t, t_k = trained.otf(np.zeros(1), np.array([f]))[0], member.otf(np.zeros(1), np.array([f]))[0]
    gain = (t_k - t_t) * t_k / (t_k**2 + FAMILY_RATIO_FLOOR)
    assert abs(gain) > 0.1  # yeo is blurrier than wachter2012 there: a real error
    np.testing.assert_allclose(np.median(variance), 0.01 * gain**2 / 2, rtol=0.02)
    grid = np.array([0.0, 5.0])
    for w in (0.5, 1.0):
        told = family_error_variance(
            image, trained=trained, members=[member], signal_fraction=(grid, np.full(2, w))
        )
        seen = w * t_t + (1 - w) * t_k
        left = (1 - w) * (t_k - t_t) * seen / (seen**2 + FAMILY_RATIO_FLOOR)
        np.testing.assert_allclose(np.median(told), 0.01 * left**2 / 2, rtol=0.02, atol=1e-12)
    # the trained member adds nothing; a flat image has no error under any member
    assert np.all(family_error_variance(image, trained=trained, members=[trained]) == 0)
    assert np.abs(family_error_variance(np.ones((64, 64)), trained=trained)).max() < 1e-12
    # non-finite pixels stay NaN and do not spread
    holed = image.copy()
    holed[:10] = np.nan
    out = family_error_variance(holed, trained=trained)
    assert np.isnan(out[:10]).all() and np.isfinite(out[10:]).all()
