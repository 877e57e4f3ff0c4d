"""The per-pixel uncertainty head: backbone features, weights files, calibration, OOD response."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from astropy.io import fits
from conftest import CONTINUUM_SCENES, REPO_ROOT, randomised_net, require
from numpy.lib.stride_tricks import sliding_window_view

from enhance_hmi.cube.source import read_enhanced
from enhance_hmi.errors import InputError, SigmaCalibrationMismatchWarning, WeightsError
from enhance_hmi.inference.uncertainty import sigma_map
from enhance_hmi.model import (
    default_weights,
    load_weights,
    psf_model_of,
    save_weights,
    sidecar_path,
)
from enhance_hmi.model.uncertainty import (
    EnhanceWithUncertainty,
    SigmaCalibration,
    SigmaHead,
    backbone_forward,
    calibration_digest,
    fold_for_inference,
    input_structure,
    load_uncertainty,
    local_noise,
    output_structure,
    save_sigma_head,
    uncertainty_path,
)
from enhance_hmi.training.uncertainty import (
    calibrated_log_sigma,
    calibration_noise_seed,
    calibration_noisy_inputs,
    dihedral_prediction,
    gaussian_nll,
    predict_with_sigma,
)
from enhance_hmi.validation.calibration import (
    NOMINAL_1SIGMA,
    NOMINAL_2SIGMA,
    calibration_figure,
    coverage,
    fit_log_linear,
    fit_scale,
    z_scores,
)

METADATA = {
    "observable": "magnetogram",
    "input_normalisation": {"quantity": "Blos", "units": "G", "scale": 1000.0},
    "psf_model": "wachter",
}


def _random_head(seed: int = 3, width: int = 4) -> SigmaHead:
    torch.manual_seed(seed)
    head = SigmaHead(width=width, hidden=3)
    with torch.no_grad():
        for p in head.parameters():
            p.add_(0.2 * torch.randn(p.shape))
    return head.eval()


@pytest.mark.parametrize("folded", [False, True])
@pytest.mark.parametrize("skip", [0, 9])
def test_the_head_reads_the_features_of_the_networks_own_forward_pass(skip, folded):
    """The uncertainty model's output is the network's, bit for bit, and its features are
    the ones that output is made of (one forward pass, not a copy that can drift)."""
    net = randomised_net(2, n_blocks=2, width=4, linear_skip=skip)
    if folded:
        from enhance_hmi.model.fuse import fold_batchnorm

        net = fold_batchnorm(net)
    x = torch.from_numpy(np.random.default_rng(0).normal(1, 0.05, (2, 1, 21, 18)).astype("f4"))
    with torch.no_grad():
        expected = net(x)
        out, features = backbone_forward(net, x)
        combined = EnhanceWithUncertainty(net, _random_head()).eval()(x)
        # the output convolution (and the linear skip) of the features is the output
        rebuilt = net.tail(features) + (net.shuffle(net.linear(x)) if skip else 0.0)
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
    torch.testing.assert_close(combined[:, :1], expected, rtol=0, atol=0)
    torch.testing.assert_close(rebuilt, expected, rtol=0, atol=0)
    assert features.shape == (2, 4, 42, 36)
    assert float(features.min()) >= 0.0  # after the last ReLU, as the head was trained on


def test_combined_output_channel_zero_is_the_network_and_sigma_is_positive():
    net = randomised_net(2, n_blocks=1, width=4, linear_skip=9)
    model = EnhanceWithUncertainty(net, _random_head(), calibration_scale=2.5)
    image = np.random.default_rng(1).normal(0, 0.02, (30, 33)).astype("f4")
    out, sigma = predict_with_sigma(model, image, input_scale=1000.0)
    with torch.no_grad():
        plain = net(torch.from_numpy(image / 1000.0)[None, None]).numpy()[0, 0] * 1000.0
    np.testing.assert_allclose(out, plain, rtol=1e-4, atol=1e-3)
    assert sigma.shape == out.shape == (60, 66)
    assert np.all(sigma > 0)
    # the calibration factor multiplies sigma and nothing else
    model.calibration_scale = 1.0
    out1, sigma1 = predict_with_sigma(model, image, input_scale=1000.0)
    np.testing.assert_allclose(sigma, 2.5 * sigma1, rtol=1e-5)
    np.testing.assert_array_equal(out, out1)
    folded = fold_for_inference(model)
    assert folded.receptive_radius == model.receptive_radius > net.receptive_radius


def test_local_noise_is_the_white_noise_sigma():
    rng = np.random.default_rng(4)
    x = torch.from_numpy(rng.normal(0, 0.3, (1, 1, 200, 200)).astype("f4"))
    estimate = local_noise(x)
    assert estimate.shape == x.shape
    assert float(estimate.mean()) == pytest.approx(0.3, rel=0.03)


def test_gaussian_nll_is_minimal_at_the_true_sigma():
    rng = np.random.default_rng(5)
    target = torch.from_numpy(rng.normal(0, 0.7, 20000).astype("f4"))
    mu = torch.zeros_like(target)
    values = {
        s: float(gaussian_nll(mu, torch.full_like(target, math.log(s)), target))
        for s in (0.35, 0.7, 1.4)
    }
    assert values[0.7] < values[0.35] and values[0.7] < values[1.4]


def test_head_weights_round_trip_and_refuse_another_network(tmp_path):
    net = randomised_net(1, n_blocks=1, width=4)
    weights = save_weights(net, tmp_path / "magnetogram.safetensors", metadata=METADATA)
    head = _random_head()
    path = save_sigma_head(
        head, uncertainty_path(weights), backbone=weights, metadata={"calibration_scale": 1.7}
    )
    assert path.name == "magnetogram.uncertainty.safetensors"
    side = json.loads(sidecar_path(path).read_text())
    assert side["units"] == "G" and side["method"] == "gaussian-nll-head"
    loaded_net, net_meta = load_weights(weights)
    model, meta = load_uncertainty(weights, loaded_net, net_meta)
    assert model.calibration_scale == 1.7 and meta["backbone_sha256"] == net_meta["sha256"]
    image = np.random.default_rng(2).normal(0, 30, (24, 24)).astype("f4")
    _, sigma = predict_with_sigma(model, image, input_scale=1000.0)
    _, expected = predict_with_sigma(
        EnhanceWithUncertainty(net, head, calibration_scale=1.7), image, input_scale=1000.0
    )
    np.testing.assert_allclose(sigma, expected, rtol=1e-6)
    # another network (retrained: new sha256) is refused with the way out
    other = save_weights(
        randomised_net(9, n_blocks=1, width=4), tmp_path / "other.safetensors", metadata=METADATA
    )
    other_net, other_meta = load_weights(other)
    with pytest.raises(WeightsError, match="fit-uncertainty"):
        load_uncertainty(other, other_net, other_meta, path=path)
    # an edited head file is refused
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="corrupt"):
        load_uncertainty(weights, loaded_net, net_meta)
    # no head at all: one sentence naming the command
    with pytest.raises(WeightsError, match="enhance fit-uncertainty"):
        load_uncertainty(other, other_net, other_meta)


def test_coverage_of_gaussian_z_is_nominal_and_scale_is_recovered():
    rng = np.random.default_rng(6)
    z = rng.normal(0, 1, 200_000)
    cov = coverage(z)
    assert cov["within_1sigma"] == pytest.approx(NOMINAL_1SIGMA, abs=0.005)
    assert cov["within_2sigma"] == pytest.approx(NOMINAL_2SIGMA, abs=0.003)
    assert cov["median_abs_z"] == pytest.approx(0.6745, abs=0.01)
    width = 12.0 / 48
    assert sum(cov["histogram"]) * width == pytest.approx(1.0)
    # sigma 2.5x too small: the fitted factor is 2.5, each region counting once
    assert fit_scale([2.5 * z[:1000], 2.5 * z[1000:]]) == pytest.approx(2.5, rel=0.02)


def test_z_scores_checks_its_inputs():
    a = np.zeros((10, 10))
    with pytest.raises(InputError, match="one shape"):
        z_scores(a, a, np.ones((10, 9)))
    with pytest.raises(InputError, match="positive"):
        z_scores(a, a, np.zeros((10, 10)))
    sigma = np.full((10, 10), 2.0)
    truth = np.ones((10, 10))
    truth[0, 0] = np.nan
    z = z_scores(a, truth, sigma, border=1)
    assert z.shape == (64,) and np.allclose(z, -0.5)


def test_calibration_figure_is_a_png(tmp_path):
    rng = np.random.default_rng(7)
    zs = {"a": rng.normal(0, 1, 5000), "b": rng.normal(0, 1.3, 5000)}
    rows = [{"region": k, **coverage(v)} for k, v in zs.items()]
    path = calibration_figure(rows, tmp_path / "cal.png", title="t", z_by_region=zs)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _d4_symmetric(net: torch.nn.Module) -> torch.nn.Module:
    """``net`` with every 3x3 kernel averaged over the 8 symmetries of the square.

    With reflect padding, nearest-neighbour upsampling and per-channel batch
    norms such a network commutes with every turn and flip of its input (up
    to float rounding).
    """
    with torch.no_grad():
        for conv in net.modules():
            if isinstance(conv, torch.nn.Conv2d) and conv.kernel_size == (3, 3):
                w = conv.weight
                images = [torch.rot90(v, k, dims=(2, 3)) for v in (w, w.flip(3)) for k in range(4)]
                w.copy_(torch.stack(images).mean(dim=0))
    return net


def test_dihedral_prediction_undoes_each_symmetry_it_applies():
    image = np.random.default_rng(8).normal(1, 0.3, (20, 24)).astype("f4")
    # a network that commutes with the symmetries: the 8 outputs turned back agree
    symmetric = _d4_symmetric(randomised_net(5, n_blocks=1, width=8))
    mean, spread = dihedral_prediction(symmetric, image, input_scale=1.0)
    with torch.no_grad():
        single = symmetric(torch.from_numpy(image)[None, None]).numpy()[0, 0]
    assert mean.shape == spread.shape == single.shape == (40, 48)
    level = float(np.abs(single).max())
    assert float(single.std()) > 0.05 * level  # the output follows the image
    assert float(spread.max()) < 1e-5 * level, float(spread.max()) / level
    np.testing.assert_allclose(mean, single, rtol=0, atol=1e-5 * level)
    # any network: the ensemble itself commutes with the symmetries (the same 8
    # passes in another order), while the single pass does not
    net = randomised_net(5, n_blocks=1, width=8)
    mean, spread = dihedral_prediction(net, image, input_scale=1.0)
    level = float(np.abs(mean).max())
    assert float(spread.max()) > 0.1 * level  # a random network is far from symmetric
    for turned, turn_back in (
        (np.rot90(image, 1), lambda a: np.rot90(a, -1)),
        (np.rot90(image, 2), lambda a: np.rot90(a, 2)),
        (image[:, ::-1], lambda a: a[:, ::-1]),
        (np.rot90(image, 1)[::-1], lambda a: np.rot90(a[::-1], -1)),
    ):
        other_mean, other_spread = dihedral_prediction(net, turned.copy(), input_scale=1.0)
        np.testing.assert_allclose(turn_back(other_mean), mean, rtol=0, atol=1e-6 * level)
        np.testing.assert_allclose(turn_back(other_spread), spread, rtol=0, atol=1e-6 * level)


# ---- the shipped heads on in- and out-of-distribution inputs -------------------------


def _shipped(observable: str):
    weights = default_weights(observable)
    net, meta = load_weights(weights)
    model, head_meta = load_uncertainty(weights, net, meta)
    return model, float(meta["input_normalisation"]["scale"]), head_meta


def test_shipped_heads_match_the_shipped_networks():
    for observable in ("continuum", "magnetogram"):
        _, _, head_meta = _shipped(observable)
        assert head_meta["observable"] == observable
        assert 0.2 < head_meta["calibration_scale"] < 5


def test_tripled_granulation_contrast_raises_the_continuum_sigma():
    model, scale, _ = _shipped("continuum")
    path = REPO_ROOT / "enhance_hmi" / "data" / "sample" / "hmi_quiet_ic_cutout.fits"
    from enhance_hmi.io import read_hmi

    data = read_hmi(path, observable="continuum").data.astype(np.float32)
    _, sigma_in = predict_with_sigma(model, data, input_scale=scale)
    tripled = 1.0 + 3.0 * (data - 1.0)
    _, sigma_out = predict_with_sigma(model, tripled, input_scale=scale)
    ratio = float(np.median(sigma_out) / np.median(sigma_in))
    assert ratio > 1.5, f"median sigma grew only {ratio:.2f}x with 3x the contrast"


def test_five_times_hmi_noise_raises_the_magnetogram_sigma():
    model, scale, _ = _shipped("magnetogram")
    path = REPO_ROOT / "tests" / "data" / "hmi.M_720s.20111217_060000_TAI.crop128.magnetogram.fits"
    with fits.open(path) as hdul:
        data = next(h.data for h in hdul if h.data is not None).astype(np.float32)
    data = np.nan_to_num(data)
    from enhance_hmi.validation.baselines import spectral_noise_sigma_hmi

    hmi_noise = spectral_noise_sigma_hmi(data)
    rng = np.random.default_rng(0)
    noisier = data + rng.normal(0, math.sqrt(24.0) * hmi_noise, data.shape).astype(np.float32)
    _, sigma_in = predict_with_sigma(model, data, input_scale=scale)
    _, sigma_out = predict_with_sigma(model, noisier, input_scale=scale)
    ratio = float(np.median(sigma_out) / np.median(sigma_in))
    assert 2 < hmi_noise < 15, hmi_noise  # HMI 720 s: a few gauss
    # a sigma blind to the input noise stays at 1x; how much it grows on this field crop
    # is in the model card (the held-out test below checks it against the truth)
    assert ratio > 1.25, f"median sigma grew only {ratio:.2f}x with 5x the noise"


# ---- the calibration map ---------------------------------------------------------------


def _regions_with_two_error_sources(seed: int = 12):
    """Three regions whose error grows as s^1.4 d^0.6, s and d at different levels per region.

    Four features per pixel, as the calibration has (the last two do not
    change the error).
    """
    rng = np.random.default_rng(seed)
    errors, features = [], []
    for level_s, level_d in ((0.5, 2.0), (1.0, 1.0), (2.0, 0.5)):
        f = rng.normal(0.0, 0.25, (4, 30000))
        f[0] += math.log(level_s)
        f[1] += math.log(level_d)
        sigma = np.exp(0.1 + 1.4 * f[0] + 0.6 * f[1])
        errors.append(sigma * rng.standard_t(8, f.shape[1]) / math.sqrt(8 / 6))
        features.append(f)
    return errors, features


def _in_band(z: np.ndarray) -> bool:
    cov = coverage(z)
    return abs(cov["within_1sigma"] - 0.68) <= 0.05 and abs(cov["within_2sigma"] - 0.95) <= 0.03


def test_log_linear_calibration_puts_every_region_in_band_where_one_factor_cannot():
    errors, features = _regions_with_two_error_sources()
    log_scale, exponents = fit_log_linear(errors, features)
    for error, f in zip(errors, features, strict=True):
        sigma = np.exp(log_scale + np.asarray(exponents) @ f)
        assert _in_band(error / sigma), coverage(error / sigma)["within_1sigma"]
    assert exponents[0] > 1.1 and exponents[1] > 0.3
    # the head's sigma times one factor: the outer regions fall out of the band
    factor = fit_scale([e / np.exp(f[0]) for e, f in zip(errors, features, strict=True)])
    scaled = [e / (factor * np.exp(f[0])) for e, f in zip(errors, features, strict=True)]
    assert not all(_in_band(z) for z in scaled)


def test_calibration_map_is_stored_applied_and_old_heads_read_as_one_factor(tmp_path):
    net = randomised_net(1, n_blocks=1, width=4)
    weights = save_weights(net, tmp_path / "magnetogram.safetensors", metadata=METADATA)
    calibration = SigmaCalibration(
        log_scale=0.2,
        exponents=(0.7, 0.5, -0.3, 0.4),
        references=(0.02, 0.03, 0.05, 0.03),
        log_ranges=((-5.0, -3.0), (-4.0, -3.0), (-4.0, -2.5), (-4.5, -3.0)),
    )
    head = _random_head()
    path = save_sigma_head(
        head,
        uncertainty_path(weights),
        backbone=weights,
        metadata={"calibration_model": calibration.to_dict(), "calibration_scale": 1.22},
    )
    loaded_net, net_meta = load_weights(weights)
    model, _ = load_uncertainty(weights, loaded_net, net_meta)
    assert model.calibration == calibration and model.calibration_scale == 1.0
    assert model.receptive_radius > EnhanceWithUncertainty(net, head).receptive_radius
    image = np.random.default_rng(9).normal(0, 30, (26, 24)).astype("f4")
    out, sigma = predict_with_sigma(model, image, input_scale=1000.0)
    # the map is log-linear in the head's sigma, the output's local std and level
    # and the input's local std (3x3 input pixels, repeated onto the output grid)
    x = torch.from_numpy(image / 1000.0)[None, None]
    with torch.no_grad():
        raw_out, log_sigma = model.raw(x)
        spread, level = output_structure(raw_out)
        structure = input_structure(x, 2)
    box = sliding_window_view(np.pad(image / 1000.0, 1, mode="reflect"), (3, 3)).std(axis=(-2, -1))
    np.testing.assert_allclose(
        structure[0, 0].numpy(), np.kron(np.maximum(box, 1e-4), np.ones((2, 2))), rtol=1e-4
    )
    logs = np.stack(
        [t[0, 0].numpy().ravel() for t in (log_sigma, spread.log(), level.log(), structure.log())]
    )
    expected = np.exp(calibrated_log_sigma(calibration, logs)).reshape(out.shape) * 1000.0
    np.testing.assert_allclose(sigma, expected, rtol=1e-4)
    np.testing.assert_allclose(out, raw_out[0, 0].numpy() * 1000.0, rtol=1e-5, atol=1e-3)
    # a head written before the map (one factor) is read as that factor on the head's sigma
    side = json.loads(sidecar_path(path).read_text())
    del side["calibration_model"]
    sidecar_path(path).write_text(json.dumps(side))
    old, _ = load_uncertainty(weights, loaded_net, net_meta)
    assert old.calibration == SigmaCalibration() and old.calibration_scale == 1.22
    _, old_sigma = predict_with_sigma(old, image, input_scale=1000.0)
    np.testing.assert_allclose(
        old_sigma, 1.22 * np.exp(log_sigma[0, 0].numpy()) * 1000.0, rtol=1e-4
    )
    # a map of a form this version does not know: one sentence with the refit command
    side["calibration_model"] = {**calibration.to_dict(), "form": "isotonic"}
    sidecar_path(path).write_text(json.dumps(side))
    with pytest.raises(WeightsError, match="calibrate-only"):
        load_uncertainty(weights, loaded_net, net_meta)


def _shipped_held_out(observable: str, scenes: list[str], shared: Path, *, noise_factor=1.0):
    from enhance_hmi.inference.consistency import project_as_recipe
    from enhance_hmi.training import load_scenes
    from enhance_hmi.training.datasets import held_out_pairs
    from enhance_hmi.training.uncertainty import held_out_coverage

    model, scale, head_meta = _shipped(observable)
    net_meta = load_weights(default_weights(observable))[1]
    # degraded with the PSF the network was trained for, as fit-uncertainty does
    held = held_out_pairs(
        load_scenes([str(shared / s) for s in scenes], observable),
        holdout=0.35,
        psf_model=psf_model_of(net_meta),
    )

    def shipped(data):  # what enhance_frame returns: the projected output and its sigma
        out, sigma = predict_with_sigma(model, data, input_scale=scale)
        return project_as_recipe(out, data, net_meta)[0], sigma

    noise = head_meta["held_out_noise"] * noise_factor
    rows, _ = held_out_coverage(shipped, held, noise=noise, seed=2, border=8)
    return rows, head_meta


def test_shipped_continuum_sigma_is_calibrated_for_the_projected_output(shared_data):
    for path in CONTINUUM_SCENES:
        require((shared_data / path).is_file(), f"{path} not in the shared data")
    rows, head_meta = _shipped_held_out("continuum", list(CONTINUUM_SCENES), shared_data)
    assert head_meta["calibration_model"]["projected"] is True
    recorded = {r["region"]: r for r in head_meta["coverage"]}
    for row in rows:
        one, two = row["within_1sigma"], row["within_2sigma"]
        assert abs(one - 0.68) <= 0.05 and abs(two - 0.95) <= 0.03, (row["region"], one, two)
        # the sidecar's table is what the shipped head gives
        assert one == pytest.approx(recorded[row["region"]]["within_1sigma"], abs=1e-3)


def test_shipped_magnetogram_sigma_follows_five_times_the_noise_on_held_out_truth(shared_data):
    scene = "hmi/fulldisk/hmi.M_720s.20111217_060000_TAI.magnetogram.fits"
    require((shared_data / scene).is_file(), f"{scene} not in the shared data")
    (nominal,), _ = _shipped_held_out("magnetogram", [scene], shared_data)
    (noisier,), _ = _shipped_held_out("magnetogram", [scene], shared_data, noise_factor=5.0)
    assert abs(nominal["within_1sigma"] - 0.68) <= 0.05
    grew = noisier["median_sigma"] / nominal["median_sigma"]
    error_grew = noisier["rmse"] / nominal["rmse"]
    assert grew > 3 and grew > 0.7 * error_grew, (grew, error_grew)
    assert noisier["within_2sigma"] > 0.9


def test_written_sigma_is_the_calibrated_map_of_the_shipped_head(tmp_path):
    from enhance_hmi.inference import enhance_frame
    from enhance_hmi.io import read_hmi, write_enhanced
    from enhance_hmi.io.sigma import read_sigma

    path = REPO_ROOT / "enhance_hmi" / "data" / "sample" / "hmi_quiet_ic_cutout.fits"
    frame = read_hmi(path, observable="continuum")
    # told its own forward model: the head's map alone (told nothing adds the family)
    enhanced = enhance_frame(frame, device="cpu", uncertainty=True, psf_model="wachter2012")
    written = write_enhanced(tmp_path / "qs.enhanced.fits", enhanced, provenance={})
    sigma, header = read_sigma(written)
    model, scale, head_meta = _shipped("continuum")
    _, expected = predict_with_sigma(model, frame.data.astype(np.float32), input_scale=scale)
    np.testing.assert_allclose(sigma, expected, rtol=2e-3)
    # the head alone (the map switched off) is a different sigma: the file carries the map
    raw = EnhanceWithUncertainty(model.backbone, model.head)
    _, uncalibrated = predict_with_sigma(raw, frame.data.astype(np.float32), input_scale=scale)
    # (median 4 % apart on this cut-out, 20x the tolerance of the match above)
    assert np.median(np.abs(sigma / uncalibrated - 1)) > 0.01
    assert header["ENHSGCDS"] == head_meta["calibration_summary"]
    assert header["ENHSGCDS"].endswith("held-out, projected")
    assert header["ENHSGCAL"] == pytest.approx(head_meta["calibration_scale"])
    # the calibration's digest is written and read back as the cube reads the frame
    assert header["ENHSGCSH"] == calibration_digest(head_meta)
    assert read_enhanced(written).meta["sigma"].calibration_sha256 == header["ENHSGCSH"]


def test_sigma_allows_for_what_the_run_was_told_about_the_forward_model(tmp_path):
    """Told nothing: the family's spread added; told a member: that member's; told its own: none."""
    from enhance_hmi.inference import enhance_frame
    from enhance_hmi.io import read_hmi, write_enhanced
    from enhance_hmi.io.sigma import read_sigma
    from enhance_hmi.model.uncertainty import family_sigma_of
    from enhance_hmi.physics.forward_family import (
        ForwardModelSpec,
        family,
        family_error_variance,
    )

    path = REPO_ROOT / "enhance_hmi" / "data" / "sample" / "hmi_quiet_ic_cutout.fits"
    frame = read_hmi(path, observable="continuum")
    _, _, head_meta = _shipped("continuum")
    fit = family_sigma_of(head_meta)
    assert fit is not None and fit.trained == "wachter2012+pixel"
    assert fit.untold_kappa > 1 and set(fit.told_kappas) == {
        m.name for m in family() if m.name != fit.trained
    }
    own = enhance_frame(frame, device="cpu", uncertainty=True, psf_model="wachter2012")
    untold = enhance_frame(frame, device="cpu", uncertainty=True)
    np.testing.assert_array_equal(own.data, untold.data)  # the same image
    s_own, s_untold = own.meta["sigma"].data, untold.meta["sigma"].data
    variance = family_error_variance(untold.data, trained=ForwardModelSpec.from_name(fit.trained))
    np.testing.assert_allclose(
        s_untold, np.sqrt(s_own.astype(float) ** 2 + fit.untold_kappa**2 * variance), rtol=1e-4
    )
    assert np.median(s_untold / s_own) > 1.2  # not knowing the PSF is a real uncertainty here
    yeo = enhance_frame(frame, device="cpu", uncertainty=True, psf_model="yeo")
    assert "told yeo+pixel" in yeo.meta["sigma"].forward_model
    assert fit.told_kappas["yeo+pixel"] > 0
    assert np.median(yeo.meta["sigma"].data / s_own) > 1.0  # what harmonising left
    written = write_enhanced(tmp_path / "untold.enhanced.fits", untold, provenance={})
    _, header = read_sigma(written)
    assert header["ENHSGFWD"].startswith("not told: family spread (kappa")
    assert read_enhanced(written).meta["sigma"].forward_model == header["ENHSGFWD"]


def test_sigma_calibrated_for_the_projected_output_says_so_when_written_unprojected(tmp_path):
    from enhance_hmi.inference import enhance_frame
    from enhance_hmi.io import read_hmi, write_enhanced
    from enhance_hmi.io.sigma import read_sigma

    path = REPO_ROOT / "enhance_hmi" / "data" / "sample" / "hmi_quiet_ic_cutout.fits"
    frame = read_hmi(path, observable="continuum")
    with pytest.warns(SigmaCalibrationMismatchWarning, match="calibrated on held-out truth"):
        enhanced = enhance_frame(frame, device="cpu", uncertainty=True, consistency=False)
    written = write_enhanced(tmp_path / "raw.enhanced.fits", enhanced, provenance={})
    _, header = read_sigma(written)
    assert header["ENHSGCDS"].endswith(
        "held-out, calibrated projected, applied to un-projected output"
    ), header["ENHSGCDS"]


def test_calibration_digest_changes_with_the_map_and_not_with_the_weights():
    _, _, head_meta = _shipped("continuum")
    refitted = json.loads(json.dumps(head_meta))
    refitted["calibration_model"]["log_scale"] += 0.01
    first, second = (
        sigma_map(np.ones((2, 2), "f4"), head_meta),
        sigma_map(np.ones((2, 2), "f4"), refitted),
    )
    assert first.weights_sha256 == second.weights_sha256 == head_meta["sha256"]
    assert len(first.calibration_sha256) == 64
    assert first.calibration_sha256 != second.calibration_sha256
    # key order in the sidecar does not change it
    reordered = dict(reversed(list(head_meta.items())))
    reordered["calibration_model"] = dict(reversed(list(head_meta["calibration_model"].items())))
    assert calibration_digest(reordered) == first.calibration_sha256
    # a head with only one factor: the factor is what is hashed
    old = {k: v for k, v in head_meta.items() if k != "calibration_model"}
    assert calibration_digest(old) != calibration_digest({**old, "calibration_scale": 0.5})


def test_shipped_sidecars_store_the_calibration_noise_in_network_units():
    for observable in ("continuum", "magnetogram"):
        _, scale, head_meta = _shipped(observable)
        model = head_meta["calibration_model"]
        assert model["units"] == "network"
        data = model["noise_in_data_units"]
        assert data["units"] == head_meta["units"]
        assert data["values"][0] == pytest.approx(head_meta["held_out_noise"])
        np.testing.assert_allclose(np.asarray(model["noise"]) * scale, data["values"])
    # magnetograms: 10 G of input noise is 0.01 kG, the network's unit
    assert _shipped("magnetogram")[2]["calibration_model"]["noise"][0] == pytest.approx(0.01)


def test_each_calibration_noise_level_has_its_own_draw():
    from types import SimpleNamespace

    pairs = [SimpleNamespace(input=np.zeros((64, 64), np.float32))]
    one = calibration_noisy_inputs(pairs, noise=1.0, noise_factor=1.0, seed=1)[0]
    three = calibration_noisy_inputs(pairs, noise=1.0, noise_factor=3.0, seed=1)[0]
    assert float(one.std()) == pytest.approx(1.0, rel=0.05)
    assert float(three.std()) == pytest.approx(3.0, rel=0.05)
    # independent draws, not the 1x draw scaled by 3
    assert abs(float(np.corrcoef(one.ravel(), three.ravel())[0, 1])) < 0.1
    # the 1x draw is the one held_out_coverage makes with the same seed
    again = calibration_noisy_inputs(pairs, noise=1.0, noise_factor=1.0, seed=1)[0]
    np.testing.assert_array_equal(one, again)
    assert calibration_noise_seed(2, 3.0) not in (calibration_noise_seed(1, f) for f in (1, 3))


def test_calibration_map_is_not_extrapolated_beyond_its_fitted_range():
    ranges = ((math.log(0.01), math.log(0.04)), (-5.0, -2.0), (-0.1, 0.1), (-6.0, -3.0))
    calibration = SigmaCalibration(
        log_scale=0.1,
        exponents=(0.7, 0.5, -1.0, 0.3),
        references=(0.02, 0.05, 1.0, 0.01),
        log_ranges=ranges,
    )
    restored = SigmaCalibration.from_dict(calibration.to_dict())
    assert restored == calibration
    # the head's sigma: the map's power 0.7 inside the range, power 1 beyond it
    log_s = np.log([0.001, 0.01, 0.02, 0.04, 4.0])
    at = {"d": np.full(5, math.log(0.05)), "m": np.zeros(5), "g": np.full(5, math.log(0.01))}
    sigma = np.exp(calibrated_log_sigma(restored, np.stack([log_s, at["d"], at["m"], at["g"]])))
    assert sigma[2] == pytest.approx(math.exp(0.1) * 0.02, rel=1e-9)
    assert sigma[3] / sigma[2] == pytest.approx(2.0**0.7, rel=1e-9)
    assert sigma[4] / sigma[3] == pytest.approx(100.0, rel=1e-9)
    assert sigma[0] / sigma[1] == pytest.approx(0.1, rel=1e-9)
    # the output's local std and level: clamped (an umbra's level of 0.1 counts as 0.9)
    log_m = np.log([0.1, 0.5, math.exp(-0.1), 1.0, 3.0])
    middle = np.full(5, log_s[2])
    by_level = np.exp(calibrated_log_sigma(restored, np.stack([middle, at["d"], log_m, at["g"]])))
    np.testing.assert_allclose(by_level[:3], by_level[2], rtol=1e-9)
    assert by_level[4] == pytest.approx(by_level[2] * math.exp(-0.2), rel=1e-9)
    log_d = np.log([1e-4, math.exp(-5.0), 0.05, math.exp(-2.0), 10.0])
    by_std = np.exp(calibrated_log_sigma(restored, np.stack([middle, log_d, at["m"], at["g"]])))
    assert by_std[0] == pytest.approx(by_std[1], rel=1e-9)
    assert by_std[4] == pytest.approx(by_std[3], rel=1e-9)
    # the input's local std: power 0.3 inside its range, clamped outside
    log_g = np.log([1e-5, math.exp(-6.0), 0.01, math.exp(-3.0), 1.0])
    by_input = np.exp(calibrated_log_sigma(restored, np.stack([middle, at["d"], at["m"], log_g])))
    assert by_input[0] == pytest.approx(by_input[1], rel=1e-9)
    assert by_input[4] == pytest.approx(by_input[3], rel=1e-9)
    assert by_input[3] / by_input[2] == pytest.approx((math.exp(-3.0) / 0.01) ** 0.3, rel=1e-9)
    # the torch map applies the same rule
    torch_s = torch.from_numpy(log_s.astype(np.float32)).reshape(1, 1, 1, 5)
    head_only = SigmaCalibration(
        log_scale=0.1, exponents=(0.7, 0, 0, 0), references=(0.02, 1, 1, 1)
    )
    ranged = dataclasses.replace(head_only, log_ranges=ranges)
    applied = ranged.apply(torch_s, torch.zeros_like(torch_s)).ravel().double().numpy()
    twin = np.exp(calibrated_log_sigma(ranged, np.stack([log_s] * 4)))
    np.testing.assert_allclose(applied, twin, rtol=1e-5)
    # a map stored without ranges extrapolates with its own power
    assert "log_input_ranges" not in head_only.to_dict()
    free = head_only.apply(torch_s, torch.zeros_like(torch_s)).ravel().double().numpy()
    assert free[4] / free[3] == pytest.approx(100.0**0.7, rel=1e-4)


def test_fitted_calibration_stores_the_percentile_range_of_its_inputs():
    from enhance_hmi.training.uncertainty import CalibrationSample, fit_calibration

    errors, features = _regions_with_two_error_sources()
    samples = [
        CalibrationSample(
            region=f"r{i}",
            group=f"r{i}",
            noise_factor=1.0,
            seed=0,
            error=e,
            error_network=e,
            log_inputs=f + np.log(0.02),
        )
        for i, (e, f) in enumerate(zip(errors, features, strict=True))
    ]
    calibration = fit_calibration(samples)
    pooled = np.concatenate([s.log_inputs for s in samples], axis=1)
    np.testing.assert_allclose(
        np.asarray(calibration.log_ranges), np.percentile(pooled, (1, 99), axis=1).T
    )
    for observable in ("continuum", "magnetogram"):
        model, _, _ = _shipped(observable)
        assert model.calibration.log_ranges is not None, observable


def test_fit_uncertainty_summary_names_the_noise_it_used_and_the_left_out_coverage(capsys):
    from enhance_hmi.cli.fit_uncertainty import print_summary
    from enhance_hmi.training.uncertainty import (
        CalibrationFit,
        Comparison,
        CoverageTables,
        UncertaintyFit,
    )

    row = {"within_1sigma": 0.7, "within_2sigma": 0.95, "median_sigma": 1.0, "rmse": 1.0}
    calibration = SigmaCalibration(log_scale=0.0, exponents=(0.5, 0.2, 0.1, 0.3))
    result = UncertaintyFit(
        path=Path("head.safetensors"),
        figure=Path("head.png"),
        observable="magnetogram",
        units="G",
        input_scale=1000.0,
        held_out_noise=7.0,
        projected=True,
        calibration=CalibrationFit(map=calibration, samples=[], seed=1, seeds={1.0: 1, 4.0: 101}),
        coverage=CoverageTables(
            rows=[{**row, "region": "a"}, {**row, "region": "b"}],
            z_by_region={},
            noisier=[{**row, "region": "a", "noise_factor": 4.0}],
            unprojected=[],
            leave_one_region_out=[{**row, "region": "a", "within_1sigma": 0.512}],
            samples=[],
            seeds={1.0: 5, 4.0: 105},
        ),
        comparison=Comparison(),
        training={},
        wall_seconds=1.0,
    )
    print_summary(result)
    text = capsys.readouterr().out
    assert "input noise 7 G, noise seed 5" in text
    assert "4x the input noise (28 G, noise seed 105)" in text
    assert "seed 2" not in text and "3x" not in text and "seed 101" not in text
    # the left-out coverage sits in the held-out table, beside the in-sample one
    assert "| a | 70.0 % | 95.0 % | **51.2** % | 95.0 % |" in text
    assert "| b | 70.0 % | 95.0 % | - | - |" in text


def test_calibration_figure_shows_the_left_out_coverage(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(7)
    zs = {"a": rng.normal(0, 1, 5000)}
    rows = [{"region": "a", **coverage(zs["a"])}]
    plain = calibration_figure(rows, tmp_path / "plain.png", z_by_region=zs)
    loro = calibration_figure(
        rows, tmp_path / "loro.png", z_by_region=zs, left_out_rows=[{**rows[0]}]
    )
    with Image.open(loro) as three_panels, Image.open(plain) as two_panels:
        assert three_panels.size[0] > 1.4 * two_panels.size[0]


def test_a_map_of_the_first_three_inputs_is_read_with_no_power_on_the_input_structure():
    four = SigmaCalibration(
        log_scale=0.1,
        exponents=(0.7, 0.5, -0.3, 0.0),
        references=(0.02, 0.03, 0.05, 1.0),
        log_ranges=((-5.0, -3.0), (-4.0, -3.0), (-4.0, -2.5), (0.0, 0.0)),
    )
    entry = four.to_dict()
    entry["inputs"] = entry["inputs"][:3]
    entry["exponents"], entry["references"] = entry["exponents"][:3], entry["references"][:3]
    entry["log_input_ranges"] = entry["log_input_ranges"][:3]
    del entry["input_window"], entry["input_floor"]
    old = SigmaCalibration.from_dict(entry)
    assert old == four and not old.uses_input
    # it does not need the input, and gives what the four-input map with power 0 gives
    log_s = torch.full((1, 1, 4, 4), math.log(0.02))
    out = torch.linspace(0.0, 0.1, 16).reshape(1, 1, 4, 4)
    torch.testing.assert_close(
        old.apply(log_s, out), four.apply(log_s, out, torch.ones(1, 1, 2, 2))
    )
    # a four-input map with another input window is refused, with the command to refit it
    entry = dataclasses.replace(four, exponents=(0.7, 0.5, -0.3, 0.2)).to_dict()
    entry["input_window"] = 5
    with pytest.raises(WeightsError, match="--calibrate-only"):
        SigmaCalibration.from_dict(entry)
    with pytest.raises(InputError, match="pass x"):
        SigmaCalibration.from_dict({**entry, "input_window": 3}).apply(log_s, out)


def test_the_settings_digest_of_a_frame_with_sigma_covers_the_heads_calibration(tmp_path):
    """ENHSETSH holds the head's calibration (ENHSGCSH): a refitted head redoes the frames."""
    from enhance_hmi.io.sigma import read_sigma
    from enhance_hmi.pipeline import enhance_file, settings_sha256
    from enhance_hmi.settings import EnhanceSettings

    sample = REPO_ROOT / "enhance_hmi" / "data" / "sample"
    source = next(sample.glob("hmi.M_720s.*.magnetogram.fits"))
    settings = EnhanceSettings(device="cpu", uncertainty=True, tile=64)
    written = enhance_file(source, tmp_path / "m.fits", settings)
    _, sigma_header = read_sigma(written)
    with fits.open(written) as hdul:
        digest = hdul[1].header["ENHSETSH"]
    _, _, head_meta = _shipped("magnetogram")
    assert sigma_header["ENHSGCSH"] == calibration_digest(head_meta)
    record = dict(observable="magnetogram", uncertainty=True)
    meta = load_weights(default_weights("magnetogram"))[1]
    mine = settings.for_weights(meta, sigma=True)
    assert digest == settings_sha256(mine, sigma_calibration=sigma_header["ENHSGCSH"], **record)
    assert digest != settings_sha256(mine, sigma_calibration="0" * 64, **record)
    # without sigma the calibration does not enter: frames made without it keep their digest
    off = dict(observable="magnetogram", uncertainty=False)
    assert settings_sha256(mine, sigma_calibration="0" * 64, **off) == settings_sha256(mine, **off)
