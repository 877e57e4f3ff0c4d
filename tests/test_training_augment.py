"""Per-patch augmentations (noise level, granulation contrast, calibration gain),
the Hinode SOT/NFI magnetogram truth and the training CLI options that use them.
"""

from __future__ import annotations

import json

import astropy.units as u
import numpy as np
import pytest
from astropy.io import fits
from scipy import ndimage

from enhance_hmi.cli import main
from enhance_hmi.errors import ConfigError, InputError
from enhance_hmi.model import load_weights
from enhance_hmi.scenes import (
    NFI_VI_GAUSS_PER_DN,
    Scene,
    is_nfi_magnetogram,
    load_nfi_magnetogram_scene,
    split_scene,
)
from enhance_hmi.training import (
    Pair,
    PatchSampler,
    degraded_pair,
    held_out_pairs,
    load_scenes,
)
from enhance_hmi.training.pairs import quiet_contrast

NFI = "FGMG4_20110214_030443.7.cols0-879.fits"


def _flat_pair(input_value=1.0, target_value=1.0, shape=(40, 40), gain=(1.0, 1.0)) -> Pair:
    return Pair(
        input=np.full(shape, input_value, np.float32),
        target=np.full((2 * shape[0], 2 * shape[1]), target_value, np.float32),
        valid=np.ones(shape, bool),
        label="flat",
        gain=gain,
    )


def _granulation(shape=(360, 360), seed=0, contrast=0.05, spot=False) -> np.ndarray:
    """Granulation-like field (cells ~1"), mean 1, rms ``contrast``; optional dark umbra."""
    rng = np.random.default_rng(seed)
    field = ndimage.gaussian_filter(rng.normal(size=shape), 5, mode="wrap")
    image = 1.0 + contrast * field / field.std()
    if spot:
        yy, xx = np.mgrid[: shape[0], : shape[1]]
        r = np.hypot(yy - shape[0] / 2, xx - shape[1] / 2)
        image = np.where(r < 70, 0.15, image)
    return image


def _granulation_pair(**kw) -> Pair:
    scene = Scene(
        name="synthetic",
        data=_granulation(**kw),
        pixel_scale=0.0662 * u.arcsec,
        observable="continuum",
        wavelength=6173 * u.AA,
        source="synthetic granulation",
    )
    return degraded_pair(scene)


def test_noise_range_draws_a_log_uniform_level_per_patch():
    low, high = 1e-3, 1e-2
    sampler = PatchSampler(
        [_flat_pair()],
        patch=16,
        noise_sigma=(low, high),
        input_scale=1.0,
        rng=np.random.default_rng(0),
    )
    xs, ys = sampler.sample(600)
    assert xs.shape == (600, 1, 16, 16) and ys.shape == (600, 1, 32, 32)
    np.testing.assert_array_equal(ys, 1.0)  # the target gets no noise
    stds = (xs - 1.0).reshape(600, -1).std(axis=1)
    # 256 pixels per patch measure a std to ~5 %
    assert stds.min() > 0.85 * low and stds.max() < 1.15 * high
    assert np.percentile(stds, 5) < 1.6 * low and np.percentile(stds, 95) > high / 1.6
    # log-uniform: as many patches below the geometric mean as above it
    below = float(np.mean(stds < np.sqrt(low * high)))
    assert 0.4 < below < 0.6, below


def test_a_scalar_noise_sigma_stays_fixed_and_bad_ranges_are_refused():
    sampler = PatchSampler(
        [_flat_pair()], patch=16, noise_sigma=4e-3, input_scale=1.0, rng=np.random.default_rng(1)
    )
    xs, _ = sampler.sample(200)
    stds = (xs - 1.0).reshape(200, -1).std(axis=1)
    assert np.all(np.abs(stds / 4e-3 - 1) < 0.2)
    for bad in ((0.0, 1e-2), (2e-2, 1e-2), (-1e-3, 1e-3)):
        with pytest.raises(ConfigError, match="noise|log-uniform"):
            PatchSampler(
                [_flat_pair()],
                patch=16,
                noise_sigma=bad,
                input_scale=1.0,
                rng=np.random.default_rng(),
            )
    with pytest.raises(ConfigError, match="contrast"):
        PatchSampler(
            [_flat_pair()],
            patch=16,
            noise_sigma=1e-3,
            input_scale=1.0,
            rng=np.random.default_rng(),
            contrast=(0.09, 0.03),
        )


def test_contrast_augmentation_spans_the_requested_range():
    pair = _granulation_pair(contrast=0.05)
    scene_contrast = quiet_contrast(pair.target)
    low, high = 0.03, 0.09
    sampler = PatchSampler(
        [pair],
        patch=16,
        noise_sigma=0.0,
        input_scale=1.0,
        rng=np.random.default_rng(2),
        contrast=(low, high),
    )
    xs, ys = sampler.sample(400)
    y = ys.reshape(400, -1)
    x = xs.reshape(400, -1)
    contrast = y.std(axis=1) / y.mean(axis=1)
    # the unscaled patches scatter around the scene's contrast by ~15 %
    plain = PatchSampler(
        [pair], patch=16, noise_sigma=0.0, input_scale=1.0, rng=np.random.default_rng(2)
    )
    _, ys0 = plain.sample(400)
    y0 = ys0.reshape(400, -1)
    spread0 = y0.std(axis=1) / y0.mean(axis=1) / scene_contrast
    assert spread0.min() > 0.7 and spread0.max() < 1.3
    assert contrast.min() > 0.7 * low and contrast.max() < 1.3 * high
    assert np.percentile(contrast, 10) < 0.045 and np.percentile(contrast, 90) > 0.075
    # input and target are scaled alike (I -> 1 + c (I - 1) on both): their
    # contrast ratio stays the degradation's, whatever the drawn contrast
    ratio = (x.std(axis=1) / x.mean(axis=1)) / contrast
    assert ratio.std() / ratio.mean() < 0.15
    # the level stays 1 (patch means scatter by the scaled granulation)
    assert abs(float(x.mean()) - 1) < 0.005 and np.abs(x.mean(axis=1) - 1).max() < 0.05


def test_contrast_augmentation_never_makes_an_umbra_darker_than_5_percent():
    pair = _granulation_pair(contrast=0.04, spot=True)
    assert pair.target.min() < 0.2
    sampler = PatchSampler(
        [pair],
        patch=16,
        noise_sigma=0.0,
        input_scale=1.0,
        rng=np.random.default_rng(3),
        contrast=(0.06, 0.09),  # 1.5-2.25x the scene's: uncapped, the umbra would go negative
    )
    _, ys = sampler.sample(400)
    dark = ys.reshape(400, -1).min(axis=1)
    assert dark.min() >= 0.05 - 1e-5
    assert np.mean(dark < 0.1) > 0.05  # patches on the umbra reach the cap


def test_gain_range_scales_input_and_target_alike():
    pair = _flat_pair(input_value=1.0, target_value=2.0, gain=(1.5, 3.0))
    sampler = PatchSampler(
        [pair], patch=16, noise_sigma=0.0, input_scale=1.0, rng=np.random.default_rng(4)
    )
    xs, ys = sampler.sample(300)
    gains = xs.reshape(300, -1)[:, 0]
    # one factor per patch
    np.testing.assert_array_equal(xs, np.broadcast_to(gains[:, None, None, None], xs.shape))
    np.testing.assert_allclose(ys, np.broadcast_to(2.0 * xs[:, :, :1, :1], ys.shape), rtol=1e-6)
    assert gains.min() >= 1.5 and gains.max() <= 3.0
    assert gains.min() < 1.6 and gains.max() > 2.9
    assert 0.4 < np.mean(gains < 2.25) < 0.6  # uniform in the range
    # a calibrated truth is left as it is
    plain = PatchSampler(
        [_flat_pair(target_value=2.0)],
        patch=16,
        noise_sigma=0.0,
        input_scale=1.0,
        rng=np.random.default_rng(4),
    )
    xs, ys = plain.sample(20)
    np.testing.assert_array_equal(xs, 1.0)
    np.testing.assert_array_equal(ys, 2.0)


@pytest.fixture(scope="module")
def nfi_path(shared_data):
    return shared_data / "hinode" / NFI


def test_nfi_loader_keeps_data_numbers_and_the_calibration_range(nfi_path, shared_data):
    header = fits.getheader(nfi_path)
    assert is_nfi_magnetogram(header)
    scene = load_nfi_magnetogram_scene(nfi_path)
    assert scene.observable == "magnetogram" and scene.gain == NFI_VI_GAUSS_PER_DN == (1.5, 3.0)
    assert scene.data.shape == (704, 880)
    assert scene.pixel_scale.to_value(u.arcsec) == pytest.approx(0.16)
    raw = fits.getdata(nfi_path).astype(np.float64)
    np.testing.assert_allclose(scene.data, raw - np.median(raw))
    assert "Blos = k V/I" in scene.source
    # load_scenes dispatches on the header: NFI V/I, not the self-similar HMI loader
    (loaded,) = load_scenes([str(nfi_path)], "magnetogram")
    assert loaded.gain == (1.5, 3.0) and loaded.pixel_scale == scene.pixel_scale
    with pytest.raises(InputError, match="not a Hinode SOT/NFI V/I"):
        load_nfi_magnetogram_scene(shared_data / "highres" / "sst_crisp_wb8542_qs_20190801.fits")
    with pytest.raises(InputError, match="calibration range"):
        load_nfi_magnetogram_scene(nfi_path, gain=(3.0, 1.5))


def test_nfi_held_out_pairs_one_per_calibration_factor(nfi_path):
    scene = load_nfi_magnetogram_scene(nfi_path)
    pairs = held_out_pairs([scene], holdout=0.35)
    assert [p.label.rsplit(" ", 1)[1] for p in pairs] == ["k=1.5", "k=3"]
    low, high = pairs
    np.testing.assert_array_equal(high.target, 2 * low.target)
    np.testing.assert_array_equal(high.input, 2 * low.input)
    # the held-out band, degraded: the right 35 % of 880 columns (less the guard band)
    held = split_scene(scene)[1]
    reference = degraded_pair(held)
    np.testing.assert_allclose(low.target, 1.5 * reference.target, rtol=1e-6)
    assert low.target.shape[1] == pytest.approx(held.data.shape[1] * 0.16 / 0.252, abs=2)
    assert held.data.shape[1] < 0.35 * 880
    # in gauss: k = 3 puts the strongest fields of the band near the kilogauss
    assert 500 < np.abs(high.target).max() < 5000
    (single,) = held_out_pairs([scene], holdout=0.35, gains=[2.0])
    assert single.label.endswith("k=2")
    np.testing.assert_allclose(single.target, low.target * (2.0 / 1.5), rtol=1e-6)


def test_calibrated_scenes_give_one_unlabelled_held_out_pair():
    pair_scene = Scene(
        name="synthetic",
        data=_granulation((300, 300)),
        pixel_scale=0.0662 * u.arcsec,
        observable="continuum",
        wavelength=6173 * u.AA,
        source="synthetic granulation",
    )
    (pair,) = held_out_pairs([pair_scene], holdout=0.35)
    assert "k=" not in pair.label and pair.gain == (1.0, 1.0)


def _crop_scene(shared_data, tmp_path) -> str:
    data = fits.getdata(shared_data / "highres" / "muram_quiet_ic_0.0662.fits")
    path = tmp_path / "muram_crop.fits"
    header = fits.Header()
    header["CDELT1"] = header["CDELT2"] = 0.0662
    fits.PrimaryHDU(np.asarray(data[:420, :420], np.float32), header).writeto(path)
    return str(path)


def test_train_cli_records_linear_skip_and_augmentation_ranges(shared_data, tmp_path):
    scene = _crop_scene(shared_data, tmp_path)
    run = tmp_path / "run"
    argv = ["train", "--observable", "continuum", "--scene", scene, "--out", str(run)]
    argv += ["--steps", "3", "--width", "4", "--n-blocks", "1", "--variants", "1"]
    argv += ["--bn-recalibration", "1", "--patch", "16", "--batch", "2", "--val-every", "3"]
    argv += ["--linear-skip", "3", "--noise-range", "1e-3", "4e-3"]
    argv += ["--contrast-range", "0.03", "0.09"]
    assert main(argv) == 0
    weights = run / "continuum.safetensors"
    meta = json.loads(weights.with_suffix(".json").read_text())
    assert meta["architecture"]["linear_skip"] == 3
    config = meta["training"]["config"]
    assert config["linear_skip"] == 3
    assert config["noise_range"] == [1e-3, 4e-3]
    assert config["contrast_range"] == [0.03, 0.09]
    model, _ = load_weights(weights)
    assert model.linear_skip == 3 and model.linear.weight.shape == (4, 1, 3, 3)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--noise-range", "1e-2", "1e-3"], "noise_range"),
        (["--linear-skip", "4"], "linear_skip"),
    ],
)
def test_train_cli_refuses_bad_augmentation_options(shared_data, tmp_path, capsys, extra, message):
    scene = _crop_scene(shared_data, tmp_path)
    run = tmp_path / "run"
    argv = ["train", "--observable", "continuum", "--scene", scene, "--out", str(run)]
    argv += ["--steps", "1", "--width", "4", "--n-blocks", "1", "--variants", "1", *extra]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err
    assert not (run / "continuum.safetensors").exists()


def test_train_cli_refuses_contrast_range_for_magnetograms(shared_data, tmp_path, capsys):
    argv = ["train", "--observable", "magnetogram", "--scene", str(shared_data / "hinode" / NFI)]
    argv += ["--out", str(tmp_path / "run"), "--steps", "1", "--contrast-range", "0.03", "0.09"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "contrast_range" in err
