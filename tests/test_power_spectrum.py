"""Power spectra per unit solar area (enhance_hmi.physics.spectrum.radial_power_spectrum).

Known answers: white noise of one variance density (variance times pixel
area) has one flat power whatever the sampling, the integral of the density
over the frequency plane is the variance, and a real HMI frame and its 2x
enhancement by the shipped network agree at the lowest frequencies. Each
test also shows that the per-pixel periodogram, what the quick-looks drew
before, fails it by the factor 4 of the pixel areas.
"""

from __future__ import annotations

from pathlib import Path

import astropy.units as u
import numpy as np
import pytest

from enhance_hmi.errors import ConfigError, InputError
from enhance_hmi.physics.spectrum import radial_power_spectrum
from enhance_hmi.validation import metrics

SAMPLE = Path(__file__).resolve().parents[1] / "enhance_hmi" / "data" / "sample"
#: Field of view of the white-noise images, arcsec per side.
FIELD = 192.0


def _white(scale: float, density: float, seed: int) -> np.ndarray:
    """White noise over FIELD arcsec at ``scale``, variance density ``density`` (arcsec^2)."""
    n = int(round(FIELD / scale))
    sigma = np.sqrt(density) / scale  # per-pixel variance = density / pixel area
    return sigma * np.random.default_rng(seed).standard_normal((n, n))


@pytest.mark.parametrize("window", [True, False])
def test_white_noise_of_one_variance_density_has_one_power_at_any_sampling(window):
    density = 0.3  # data units^2 arcsec^2
    coarse, fine = 0.5, 0.25
    curves = {}
    for scale, seed in ((coarse, 1), (fine, 2)):
        image = _white(scale, density, seed)
        freq, power = radial_power_spectrum(image, scale * u.arcsec, window=window)
        assert freq.unit == 1 / u.arcsec and power.unit == u.arcsec**2
        assert freq.max().to_value(1 / u.arcsec) == pytest.approx(0.5 / scale, rel=0.01)
        curves[scale] = (freq.to_value(1 / u.arcsec), power.to_value(u.arcsec**2))
    shared = 1.0  # arcsec^-1: below the coarse sampling's Nyquist frequency
    level = {s: float(np.mean(p[(f > 0.05) & (f < shared)])) for s, (f, p) in curves.items()}
    assert level[coarse] == pytest.approx(density, rel=0.03)
    assert level[fine] == pytest.approx(level[coarse], rel=0.03)
    # flat: the low and high halves of the shared band agree
    f, p = curves[fine]
    low, high = p[(f > 0.05) & (f < 0.5)].mean(), p[(f >= 0.5) & (f < shared)].mean()
    assert high == pytest.approx(low, rel=0.05)
    # has teeth: the per-pixel periodogram (power / pixel area) puts the fine one 4x higher
    per_pixel = {s: level[s] / s**2 for s in level}
    assert per_pixel[fine] / per_pixel[coarse] == pytest.approx(4.0, rel=0.05)


def test_integral_over_the_frequency_plane_is_the_variance_at_any_sampling():
    """A smooth random field (1" correlation) sampled at 0.5" and at 0.25": same integral."""
    from scipy import ndimage

    rng = np.random.default_rng(3)
    fine = ndimage.gaussian_filter(rng.standard_normal((768, 768)), 4.0, mode="wrap")
    coarse = fine.reshape(384, 2, 384, 2).mean(axis=(1, 3))  # the same sky, 2x2 pixels
    for image, scale in ((fine, 0.25), (coarse, 0.5)):
        freq, power = radial_power_spectrum(image, scale * u.arcsec, window=False)
        f, p = freq.to_value(1 / u.arcsec), power.to_value(u.arcsec**2)
        step = f[1] - f[0]
        integral = float(np.sum(2 * np.pi * f * p) * step)
        assert integral == pytest.approx(image.var(), rel=0.05), scale


def test_enhanced_frame_and_its_input_agree_at_the_lowest_frequency():
    """The real quick-look case: a bundled hmi.M_720s crop and the shipped network's 2x output."""
    from enhance_hmi.inference.frame import enhance_frame
    from enhance_hmi.io import read_hmi

    path = SAMPLE / "hmi.M_720s.20160707_010000_TAI.3.magnetogram.fits"
    frame = read_hmi(path, observable="magnetogram")
    out = enhance_frame(frame, device="cpu")
    spectra = {}
    for name, image in (("input", frame), ("enhanced", out)):
        scale = abs(float(image.header["CDELT1"])) * u.arcsec
        freq, power = radial_power_spectrum(image.data * u.G, scale)
        assert power.unit == u.G**2 * u.arcsec**2
        spectra[name] = (freq, power, scale)
    (f_in, p_in, s_in), (f_out, p_out, s_out) = spectra["input"], spectra["enhanced"]
    # the same field of view: the same frequency steps, the output reaching twice as far
    assert f_out[:4].to_value(1 / u.arcsec) == pytest.approx(f_in[:4].to_value(1 / u.arcsec))
    ratio = (p_out[:3] / p_in[:3]).to_value(u.one)
    assert np.all((ratio > 0.9) & (ratio < 1.1)), ratio
    # per pixel (the former normalisation) the output lay ~4x above at every frequency
    per_pixel = ratio * (s_in / s_out).to_value(u.one) ** 2
    assert np.all(per_pixel > 3.5), per_pixel


def test_metrics_spectrum_is_the_same_density():
    """metrics.power_spectrum unstandardised is the unwindowed density, 3x padded."""
    image = _white(0.252, 0.3, 4)[:200, :200]
    f, p = metrics.power_spectrum(image, pixel_scale=0.252 * u.arcsec, standardise=False)
    g, q = radial_power_spectrum(image, 0.252 * u.arcsec, window=False, pad=3)
    assert np.array_equal(f, g) and np.array_equal(p, q)
    assert float(np.mean(p.value[f.value < 1.5])) == pytest.approx(0.3, rel=0.05)
    band = metrics.spectrum_band(0.252 * u.arcsec).to_value(1 / u.arcsec)
    assert band == pytest.approx([0.05 / 0.252, 0.25 / 0.252])


def test_bad_arguments_say_what_to_pass():
    image = np.zeros((32, 32))
    with pytest.raises(ConfigError, match="Quantity"):
        radial_power_spectrum(image, 0.5)
    with pytest.raises(ConfigError, match="pad"):
        radial_power_spectrum(image, 0.5 * u.arcsec, pad=0)
    with pytest.raises(InputError, match="2-D"):
        radial_power_spectrum(np.zeros(64), 0.5 * u.arcsec)
    with pytest.raises(InputError, match="16 finite"):
        radial_power_spectrum(np.full((8, 8), np.nan), 0.5 * u.arcsec)
