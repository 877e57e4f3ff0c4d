"""Tests of enhance_hmi.physics against theory: PSFs, resampling, degrade, reobserve.

Constants under test: Díaz Baso & Asensio Ramos (2018), A&A 614, A5 (eq. 1,
Sect. 2); Wachter et al. (2012), Sol. Phys. 275, 261; Yeo et al. (2014),
A&A 561, A22; Airy first zero at 1.22 lambda/D (Born & Wolf, Sect. 8.5.2).
"""

from __future__ import annotations

import math
import warnings

import astropy.units as u
import numpy as np
import pytest
from scipy import ndimage, optimize, special

from enhance_hmi.errors import CoarseTruthWarning, ConfigError, InputError
from enhance_hmi.physics import (
    ENHANCED_PIXEL_SCALE,
    HMI_APERTURE,
    HMI_PIXEL_SCALE,
    HMI_WAVELENGTH,
    TARGET_APERTURE,
    WACHTER_2012_PARAMETERS,
    WACHTER_PARAMETERS,
    YEO_PARAMETERS,
    DegradedPair,
    airy_psf,
    convolve_fft,
    degrade,
    hmi_psf,
    reobserve,
    resample,
)

ARCSEC_PER_RAD = 180 * 3600 / math.pi


def half_max_radius(profile: np.ndarray, scale: float) -> float:
    """Radius (arcsec) where a centred 1-D profile first drops to half its peak."""
    centre = profile.size // 2
    right = profile[centre:] / profile[centre]
    i = int(np.argmax(right < 0.5))
    # linear interpolation between samples i-1 and i
    frac = (right[i - 1] - 0.5) / (right[i - 1] - right[i])
    return (i - 1 + frac) * scale


def centroid(image: np.ndarray) -> np.ndarray:
    """Centroid in pixel units with pixel k covering [k, k+1)."""
    ys, xs = np.indices(image.shape)
    total = image.sum()
    return np.array([((ys + 0.5) * image).sum() / total, ((xs + 0.5) * image).sum() / total])


def smooth_field(shape: tuple[int, int], sigma_px: float, seed: int) -> np.ndarray:
    noise = np.random.default_rng(seed).normal(size=shape)
    field = ndimage.gaussian_filter(noise, sigma_px, mode="wrap")
    return 1.0 + 0.1 * field / field.std()


# --------------------------------------------------------------------- constants
def test_constants_are_the_papers() -> None:
    assert HMI_PIXEL_SCALE.to_value(u.arcsec) == pytest.approx(0.504)
    assert ENHANCED_PIXEL_SCALE.to_value(u.arcsec) == pytest.approx(0.252)
    assert HMI_APERTURE.to_value(u.cm) == pytest.approx(14)
    assert TARGET_APERTURE.to_value(u.cm) == pytest.approx(28)
    assert HMI_WAVELENGTH.to_value(u.nm) == pytest.approx(617.3)
    assert dict(WACHTER_PARAMETERS) == {"eps": 0.1, "w": 2.0, "k": 3.0, "W": 3.4}
    assert dict(WACHTER_2012_PARAMETERS) == {"eps": 0.1, "w": 1.8, "k": 3.0, "W": 3.0}
    assert sum(YEO_PARAMETERS["weights"]) == pytest.approx(1.0, abs=1e-3)


# --------------------------------------------------------------------------- PSFs
@pytest.mark.parametrize("scale", [0.0662, 0.109, 0.252, 0.504, 1.0])
@pytest.mark.parametrize("model", ["wachter", "wachter2012", "yeo", "airy"])
def test_psf_unit_sum_odd_centred_symmetric(scale: float, model: str) -> None:
    psf = airy_psf(scale * u.arcsec) if model == "airy" else hmi_psf(scale * u.arcsec, model=model)
    assert psf.ndim == 2 and psf.shape[0] == psf.shape[1] and psf.shape[0] % 2 == 1
    assert psf.sum() == pytest.approx(1.0, abs=1e-12)
    assert np.all(psf >= 0)
    c = psf.shape[0] // 2
    assert np.unravel_index(np.argmax(psf), psf.shape) == (c, c)
    np.testing.assert_allclose(psf, psf.T, atol=1e-15)
    np.testing.assert_allclose(psf, psf[::-1, ::-1], atol=1e-15)


@pytest.mark.parametrize(
    ("aperture", "wavelength"),
    [(0.28 * u.m, 6173 * u.AA), (0.14 * u.m, 6173 * u.AA), (0.28 * u.m, 6684 * u.AA)],
)
def test_airy_first_zero_at_1_22_lambda_over_d(aperture, wavelength) -> None:
    scale = 0.005
    lam_over_d = (wavelength / aperture).decompose().value * ARCSEC_PER_RAD
    psf = airy_psf(scale * u.arcsec, aperture=aperture, wavelength=wavelength, size=801)
    profile = psf[psf.shape[0] // 2, psf.shape[0] // 2 :]
    i = int(np.argmax(np.diff(profile) > 0))  # first local minimum
    # parabolic refinement of the minimum
    a, b, cc = profile[i - 1], profile[i], profile[i + 1]
    r_min = (i + 0.5 * (a - cc) / (a - 2 * b + cc)) * scale
    assert r_min == pytest.approx(1.22 * lam_over_d, abs=0.2 * scale)
    assert profile[i] < 1e-3 * profile[0]


def wachter_fwhm(params: dict, wavelength_m: float, aperture_m: float) -> float:
    """Analytic FWHM (arcsec) of the Wachter-form PSF of eq. 1 of the paper."""
    eps, w, k, W = params["eps"], params["w"], params["k"], params["W"]

    def excess(r: float) -> float:
        return (1 - eps) * math.exp(-((r / w) ** 2)) + eps / (1 + (r / W) ** k) - 0.5

    r_half = optimize.brentq(excess, 0.0, 10 * w)
    return 2 * r_half * wavelength_m / (math.pi * aperture_m) * ARCSEC_PER_RAD


@pytest.mark.parametrize(
    ("model", "params"), [("wachter", WACHTER_PARAMETERS), ("wachter2012", WACHTER_2012_PARAMETERS)]
)
def test_hmi_psf_fwhm_matches_analytic(model: str, params) -> None:
    expected = wachter_fwhm(dict(params), 6173e-10, 0.14)
    # HMI's resolution is about 1" (Wachter et al. 2012): a sanity bracket on the formula
    assert 0.9 < expected < 1.4
    scale = 0.01
    psf = hmi_psf(scale * u.arcsec, model=model, size=401)
    measured = 2 * half_max_radius(psf[200], scale)
    assert measured == pytest.approx(expected, rel=0.01)


def test_yeo_psf_fwhm_matches_analytic() -> None:
    weights, sigmas = YEO_PARAMETERS["weights"], YEO_PARAMETERS["sigmas"]

    def profile(r: float) -> float:
        return sum(
            w / s**2 * math.exp(-(r**2) / (2 * s**2)) for w, s in zip(weights, sigmas, strict=True)
        )

    expected = 2 * optimize.brentq(lambda r: profile(r) - 0.5 * profile(0.0), 0.0, 5.0)
    scale = 0.01
    psf = hmi_psf(scale * u.arcsec, model="yeo", size=401)
    assert 2 * half_max_radius(psf[200], scale) == pytest.approx(expected, rel=0.01)


@pytest.mark.parametrize("model", ["wachter", "yeo", "airy"])
def test_coarse_psf_is_pixel_integrated(model: str) -> None:
    """The PSF at 0.504"/px equals a 9x finer PSF binned 9x9 (sub-pixel integration)."""
    coarse_size, n = 41, 9

    def make(scale: float, size: int) -> np.ndarray:
        if model == "airy":
            return airy_psf(scale * u.arcsec, size=size)
        return hmi_psf(scale * u.arcsec, model=model, size=size)

    coarse = make(0.504, coarse_size)
    fine = make(0.504 / n, coarse_size * n)
    binned = fine.reshape(coarse_size, n, coarse_size, n).sum(axis=(1, 3))
    np.testing.assert_allclose(coarse, binned, atol=2e-3 * coarse.max())
    # point sampling at pixel centres would be clearly wrong at this scale
    c = fine.shape[0] // 2
    point = fine[c % n :: n, c % n :: n]
    point = point / point.sum()
    assert abs(point.max() - coarse.max()) > 5 * np.abs(coarse - binned).max()


@pytest.mark.parametrize(
    ("model", "documented"), [("wachter", 0.988), ("wachter2012", 0.990), ("yeo", 0.998)]
)
def test_default_hmi_psf_extent_encloses_documented_fraction(model: str, documented: float) -> None:
    """The default kernel holds the fraction of light the docstring states (circle radius)."""
    default = hmi_psf(0.504 * u.arcsec, model=model)
    big = hmi_psf(0.504 * u.arcsec, model=model, size=2001)  # 504" radius
    c, h = big.shape[0] // 2, default.shape[0] // 2
    enclosed = big[c - h : c + h + 1, c - h : c + h + 1].sum()
    # the square kernel holds a bit more than the circle of the same radius
    assert documented <= enclosed < documented + 0.01


def test_default_airy_extent_encloses_documented_fraction() -> None:
    default = airy_psf(0.252 * u.arcsec)
    big = airy_psf(0.252 * u.arcsec, size=1001)
    c, h = big.shape[0] // 2, default.shape[0] // 2
    x = 40 * math.pi  # 40 lambda/D in units of lambda / (pi D)
    circle = 1 - special.j0(x) ** 2 - special.j1(x) ** 2  # Airy encircled energy
    assert circle == pytest.approx(0.995, abs=5e-4)
    assert circle <= big[c - h : c + h + 1, c - h : c + h + 1].sum() < circle + 0.005


def test_psf_parameters_override_and_wavelength() -> None:
    base = hmi_psf(0.1 * u.arcsec, size=101)
    wider = hmi_psf(0.1 * u.arcsec, size=101, parameters={"w": 3.0})
    assert wider.max() < base.max()
    assert np.array_equal(hmi_psf(0.1 * u.arcsec, size=101, parameters={"w": 2.0}), base)
    # a longer wavelength scales the PSF up in angle
    longer = hmi_psf(0.1 * u.arcsec, size=101, wavelength=2 * 6173 * u.AA)
    assert longer.max() < base.max()


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda: hmi_psf(0.5 * u.arcsec, size=10), ConfigError),
        (lambda: hmi_psf(0.5 * u.arcsec, size=0), ConfigError),
        (lambda: hmi_psf(0.5 * u.arcsec, model="gauss"), ConfigError),
        (lambda: hmi_psf(0.5), ConfigError),
        (lambda: hmi_psf(0.5 * u.m), ConfigError),
        (lambda: hmi_psf(-0.5 * u.arcsec), ConfigError),
        (lambda: hmi_psf(0.5 * u.arcsec, parameters={"sigma": 1.0}), ConfigError),
        (lambda: hmi_psf(0.5 * u.arcsec, parameters={"eps": 1.5}), ConfigError),
        (lambda: hmi_psf(0.5 * u.arcsec, model="yeo", parameters={"sigmas": (0, 1)}), ConfigError),
        (lambda: airy_psf(0.5 * u.arcsec, aperture=28), ConfigError),
    ],
)
def test_psf_bad_arguments(call, error) -> None:
    with pytest.raises(error):
        call()


# ---------------------------------------------------------------------- resample
def test_resample_binning_is_block_mean() -> None:
    image = np.random.default_rng(1).normal(size=(10, 14))
    binned = resample(image, factor=0.5)
    np.testing.assert_allclose(binned, image.reshape(5, 2, 7, 2).mean(axis=(1, 3)), atol=1e-14)
    # odd sizes: the partial last pixel is dropped
    assert resample(image[:9, :13], factor=0.5).shape == (4, 6)


def test_resample_up_then_down_is_identity_and_mean_is_conserved() -> None:
    image = np.random.default_rng(2).normal(size=(12, 9))
    up = resample(image, factor=2)
    assert up.shape == (24, 18)
    np.testing.assert_allclose(resample(up, factor=0.5), image, atol=1e-14)
    # a non-integer factor whose grid covers the image exactly: 10 px -> 3 px of 10/3
    square = np.random.default_rng(3).normal(size=(10, 10))
    out = resample(square, factor=0.3)
    assert out.shape == (3, 3)
    assert out.mean() == pytest.approx(square.mean(), abs=1e-12)
    flat = resample(np.full((37, 23), 4.2), factor=0.37)
    np.testing.assert_allclose(flat, 4.2, rtol=1e-13)


def test_resample_rejects_grid_outside_image() -> None:
    with pytest.raises(InputError, match="outside"):
        resample(np.ones((10, 10)), factor=0.5, shape=(6, 5))
    with pytest.raises(InputError, match="2-D"):
        resample(np.ones(10), factor=0.5)
    with pytest.raises(ConfigError):
        resample(np.ones((10, 10)), factor=0.0)


# ---------------------------------------------------------------------- convolve
@pytest.mark.parametrize("boundary", ["symmetric", "reflect", "wrap", "edge"])
def test_convolution_keeps_flat_field_flat_to_the_edges(boundary: str) -> None:
    flat = np.full((50, 70), 3.0)
    out = convolve_fft(flat, hmi_psf(0.2 * u.arcsec), boundary=boundary)
    np.testing.assert_allclose(out, 3.0, rtol=1e-12)


# numpy.pad mode -> the equivalent scipy.ndimage mode
NDIMAGE_MODES = {"symmetric": "reflect", "reflect": "mirror", "wrap": "wrap", "edge": "nearest"}


@pytest.mark.parametrize("boundary", sorted(NDIMAGE_MODES))
@pytest.mark.parametrize("kernel_size", [9, 41])  # 41 > the 17-pixel image side
def test_convolution_matches_direct_sum(boundary: str, kernel_size: int) -> None:
    rng = np.random.default_rng(4)
    image = rng.normal(size=(17, 23))
    kernel = airy_psf(0.1 * u.arcsec, size=kernel_size)
    expected = ndimage.convolve(image, kernel, mode=NDIMAGE_MODES[boundary])
    got = convolve_fft(image, kernel, boundary=boundary)
    np.testing.assert_allclose(got, expected, atol=1e-12)


def test_degrade_is_convolution_then_pixel_integration() -> None:
    """With 4 truth pixels per input pixel, degrade == convolve + 4x4 / 2x2 block means."""
    scale = 0.504 / 4
    truth = np.random.default_rng(12).random((70, 53))  # 17.5 x 13.25 input pixels
    pair = degrade(truth, scale * u.arcsec)
    assert pair.input.shape == (17, 13)
    assert pair.truth_region == (slice(0, 68), slice(0, 52))
    blurred = convolve_fft(truth, hmi_psf(scale * u.arcsec))[:68, :52]
    np.testing.assert_allclose(
        pair.input, blurred.reshape(17, 4, 13, 4).mean(axis=(1, 3)), rtol=1e-12
    )
    sharp = convolve_fft(truth, airy_psf(scale * u.arcsec))[:68, :52]
    np.testing.assert_allclose(
        pair.target, sharp.reshape(34, 2, 26, 2).mean(axis=(1, 3)), rtol=1e-12
    )


def test_convolution_nan_modes() -> None:
    image = np.ones((20, 20))
    image[5, 5] = np.nan
    with pytest.raises(InputError, match="NaN"):
        convolve_fft(image, hmi_psf(0.5 * u.arcsec))
    out = convolve_fft(image, hmi_psf(0.5 * u.arcsec), nan="interpolate")
    np.testing.assert_allclose(out, 1.0, rtol=1e-10)


# ----------------------------------------------------------------------- degrade
@pytest.mark.parametrize("scale", [0.0504, 0.0662, 0.109, 0.16, 0.252])
def test_degrade_shapes_are_exactly_one_to_two(scale: float) -> None:
    for shape in [(37, 37), (64, 101), (255, 128)]:
        pair = degrade(np.ones(shape), scale * u.arcsec)
        assert isinstance(pair, DegradedPair)
        expected = tuple(math.floor(n * scale / 0.504 + 1e-9) for n in shape)
        assert pair.input.shape == expected
        assert pair.target.shape == (2 * expected[0], 2 * expected[1])
        for extent, n_in in zip(pair.truth_extent, expected, strict=True):
            assert extent == pytest.approx(n_in * 0.504 / scale)
        for region, n in zip(pair.truth_region, shape, strict=True):
            assert region.stop <= n


def test_degrade_warns_when_the_truth_is_coarser_than_the_target() -> None:
    """A 0.3"/px truth cannot give a 0.252"/px 28 cm target; the exact 0.252 is fine."""
    with pytest.warns(CoarseTruthWarning, match="coarser than the 0.2520 arcsec target"):
        pair = degrade(np.ones((84, 84)), 0.3 * u.arcsec)
    assert pair.input.shape == (50, 50)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        degrade(np.ones((84, 84)), 0.252 * u.arcsec)


def test_degrade_point_source_registration_and_flux() -> None:
    """A point lands on the same sky in input and target and its flux is conserved."""
    scale = 0.504 / 8  # 8 truth pixels per input pixel: the crop is the whole truth
    truth = np.zeros((480, 480))
    r, c = 203, 261
    truth[r, c] = 1.0
    pair = degrade(truth, scale * u.arcsec)
    # flux: mean intensity x pixel area is conserved (symmetric boundary, whole crop)
    assert pair.input.sum() * 8**2 == pytest.approx(1.0, rel=1e-9)
    assert pair.target.sum() * 4**2 == pytest.approx(1.0, rel=1e-9)
    # position, within the same sky window of +-12 input pixels around the source
    expected = np.array([(r + 0.5) / 8, (c + 0.5) / 8])
    lo = np.floor(expected).astype(int) - 12
    win_in = pair.input[lo[0] : lo[0] + 25, lo[1] : lo[1] + 25]
    win_t = pair.target[2 * lo[0] : 2 * lo[0] + 50, 2 * lo[1] : 2 * lo[1] + 50]
    pos_in = centroid(win_in) + lo
    pos_t = centroid(win_t) / 2 + lo
    assert np.abs(pos_in - pos_t).max() < 0.05
    assert np.abs(pos_in - expected).max() < 0.05
    assert np.abs(pos_t - expected).max() < 0.05


def test_degrade_point_source_registration_non_integer_scale() -> None:
    scale = 0.0662  # 7.61 truth pixels per input pixel
    step = 0.504 / scale
    truth = np.zeros((501, 480))
    r, c = 250, 219
    truth[r, c] = 1.0
    pair = degrade(truth, scale * u.arcsec, psf_model="yeo")
    expected = np.array([(r + 0.5) / step, (c + 0.5) / step])
    lo = np.floor(expected).astype(int) - 12
    pos_in = centroid(pair.input[lo[0] : lo[0] + 25, lo[1] : lo[1] + 25]) + lo
    pos_t = centroid(pair.target[2 * lo[0] : 2 * lo[0] + 50, 2 * lo[1] : 2 * lo[1] + 50]) / 2 + lo
    assert np.abs(pos_in - pos_t).max() < 0.05
    assert np.abs(pos_t - expected).max() < 0.05


@pytest.mark.parametrize("psf_model", ["wachter", "wachter2012", "yeo"])
def test_degrade_preserves_flat_field(psf_model: str) -> None:
    pair = degrade(np.full((203, 190), 0.87), 0.0662 * u.arcsec, psf_model=psf_model)
    np.testing.assert_allclose(pair.input, 0.87, rtol=1e-12)
    np.testing.assert_allclose(pair.target, 0.87, rtol=1e-12)


def test_degrade_preserves_mean_of_structured_field() -> None:
    scale = 0.504 / 6
    truth = smooth_field((240, 180), 4.0, seed=5)
    pair = degrade(truth, scale * u.arcsec)
    assert pair.input.mean() == pytest.approx(truth.mean(), rel=1e-10)
    assert pair.target.mean() == pytest.approx(truth.mean(), rel=1e-10)
    # the HMI-like input has lost more contrast than the 28 cm target
    assert pair.input.std() < pair.target.std() < truth.std()


def test_degrade_noise_has_requested_sigma_and_is_seeded() -> None:
    truth = smooth_field((600, 600), 6.0, seed=6)
    clean = degrade(truth, 0.0662 * u.arcsec)
    noisy = degrade(truth, 0.0662 * u.arcsec, noise_sigma=0.01, rng=7)
    residual = noisy.input - clean.input
    assert residual.std() == pytest.approx(0.01, rel=0.05)
    assert abs(residual.mean()) < 5 * 0.01 / math.sqrt(residual.size)
    np.testing.assert_array_equal(noisy.target, clean.target)  # noise only on the input
    again = degrade(truth, 0.0662 * u.arcsec, noise_sigma=0.01, rng=7)
    np.testing.assert_array_equal(again.input, noisy.input)
    other = degrade(truth, 0.0662 * u.arcsec, noise_sigma=0.01, rng=8)
    assert not np.array_equal(other.input, noisy.input)
    assert noisy.noise_sigma == 0.01


def test_degrade_target_wavelength_for_hinode() -> None:
    """Hinode validation: 28 cm at 6684 Å blurs more than at 6173 Å."""
    truth = smooth_field((400, 400), 1.5, seed=9)
    red = degrade(truth, 0.109 * u.arcsec, wavelength=6684 * u.AA)
    hmi_line = degrade(truth, 0.109 * u.arcsec)
    assert red.target.shape == hmi_line.target.shape
    assert red.target.std() < hmi_line.target.std()
    np.testing.assert_array_equal(red.input, hmi_line.input)
    assert red.wavelength == 6684 * u.AA


def test_degrade_passes_psf_parameters() -> None:
    truth = smooth_field((300, 300), 3.0, seed=11)
    base = degrade(truth, 0.0662 * u.arcsec)
    wide = degrade(truth, 0.0662 * u.arcsec, psf_parameters={"w": 3.0})
    assert wide.input.std() < base.input.std()
    np.testing.assert_array_equal(wide.target, base.target)
    assert wide.psf_parameters == {"w": 3.0}
    assert base.psf_parameters is None
    wide_again = reobserve(base.target, psf_parameters={"w": 3.0})
    assert wide_again.std() < reobserve(base.target).std()


def test_degrade_bad_arguments() -> None:
    with pytest.raises(InputError, match="NaN"):
        truth = np.ones((50, 50))
        truth[3, 3] = np.nan
        degrade(truth, 0.1 * u.arcsec)
    with pytest.raises(InputError, match="smaller than one"):
        degrade(np.ones((4, 4)), 0.1 * u.arcsec)
    with pytest.raises(InputError, match="2-D"):
        degrade(np.ones(100), 0.1 * u.arcsec)
    with pytest.raises(ConfigError, match="half"):
        degrade(np.ones((50, 50)), 0.1 * u.arcsec, target_scale=0.3 * u.arcsec)
    with pytest.raises(ConfigError, match="noise_sigma"):
        degrade(np.ones((50, 50)), 0.1 * u.arcsec, noise_sigma=-1.0)
    with pytest.raises(ConfigError, match="Quantity"):
        degrade(np.ones((50, 50)), 0.1)
    with pytest.raises(ConfigError, match="boundary"):
        degrade(np.ones((50, 50)), 0.1 * u.arcsec, boundary="zero")


# --------------------------------------------------------------------- reobserve
def test_reobserve_target_gives_back_input_for_smooth_field() -> None:
    scale = 0.0662
    truth = smooth_field((760, 760), 30.0, seed=10)  # ~2" correlation length
    pair = degrade(truth, scale * u.arcsec)
    again = reobserve(pair.target)
    assert again.shape == pair.input.shape
    # the residual comes from the extra 28 cm blur and pixel integration of the target;
    # relative to the field's contrast it is a few per cent (the paper reports 2-4 %)
    rms = np.sqrt(np.mean((again - pair.input) ** 2))
    contrast = pair.input.std()
    assert rms < 0.06 * contrast
    # and the HMI PSF is what makes it small: binning alone leaves a much larger residual
    binned = resample(pair.target, factor=0.5)
    assert np.sqrt(np.mean((binned - pair.input) ** 2)) > 2.5 * rms


def test_reobserve_keeps_nan_blocks() -> None:
    image = np.ones((40, 40))
    image[10, 11] = np.nan
    out = reobserve(image)
    assert out.shape == (20, 20)
    assert np.isnan(out[5, 5])
    assert np.isfinite(out).sum() == out.size - 1
    np.testing.assert_allclose(out[np.isfinite(out)], 1.0, rtol=1e-10)
    with pytest.raises(InputError, match="no finite"):
        reobserve(np.full((8, 8), np.nan))
