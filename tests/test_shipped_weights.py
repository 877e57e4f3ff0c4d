"""The weights shipped in the package: present, checksummed, used by default, sane.

These are the trained networks of docs/model_card.md. The checks are cheap
(the bundled 256x256 magnetogram crop and the 130x130 quiet-Sun cut-out):
``enhance predict`` picks the shipped weights without ``--weights`` and
verifies their sha256; a corrupted copy is refused; the continuum network
raises the quiet-Sun contrast of real HMI data (bounded from both sides) and
the magnetogram network's flux and noise on a real HMI magnetogram are
bounded from both sides.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from conftest import CONTINUUM_SCENES, require

from enhance_hmi.inference import enhance_array
from enhance_hmi.io import read_hmi
from enhance_hmi.model import default_weights, load_weights, psf_model_of
from enhance_hmi.provenance import sha256_file
from enhance_hmi.validation import metrics

SHIPPED = Path(str(resources.files("enhance_hmi") / "data" / "weights"))
SAMPLE = Path(str(resources.files("enhance_hmi") / "data" / "sample"))
MAGNETOGRAM = SAMPLE / "hmi.M_720s.20160707_010000_TAI.3.magnetogram.fits"
QUIET = SAMPLE / "hmi_quiet_ic_cutout.fits"
DISCREPANCY = {"continuum": 1.0, "magnetogram": 0.9}


@pytest.fixture(autouse=True)
def _no_override(monkeypatch):
    monkeypatch.delenv("ENHANCE_WEIGHTS_DIR", raising=False)


@pytest.mark.parametrize("observable", ["continuum", "magnetogram"])
def test_shipped_weights_are_complete_and_checksummed(observable):
    path = default_weights(observable)
    assert path.parent == SHIPPED
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["sha256"] == sha256_file(path)
    assert meta["observable"] == observable
    # the paper's depth and width, plus the learned 9x9 linear polyphase skip
    arch = {"n_blocks": 5, "width": 64, "upscale": 2, "linear_skip": 9}
    assert meta["architecture"] == arch
    # the projection's stopping level, chosen on the training regions (docs/model_card.md)
    assert meta["inference"]["consistency_discrepancy"] == DISCREPANCY[observable]
    assert meta["training"]["steps_done"] > 0 and meta["training_data"]
    assert path.stat().st_size < 4_000_000
    model, loaded = load_weights(path)
    assert loaded["sha256"] == meta["sha256"]
    assert not model.training


def test_predict_uses_shipped_weights_and_checks_them(tmp_path, monkeypatch):
    out = tmp_path / "out.fits"
    subprocess.run(
        [sys.executable, "-m", "enhance_hmi", "predict", str(MAGNETOGRAM), "-o", str(out)],
        check=True,
        capture_output=True,
        text=True,
    )
    with fits.open(out) as hdul:
        header = next(h.header for h in hdul if h.header.get("NAXIS") == 2)
    assert header["ENHWSHA"] == sha256_file(default_weights("magnetogram"))
    # a corrupted copy (one byte changed) is refused by name, nothing written
    broken = tmp_path / "weights"
    broken.mkdir()
    for name in ("magnetogram.safetensors", "magnetogram.json"):
        shutil.copy(SHIPPED / name, broken / name)
    data = bytearray((broken / "magnetogram.safetensors").read_bytes())
    data[-100] ^= 0xFF
    (broken / "magnetogram.safetensors").write_bytes(bytes(data))
    out2 = tmp_path / "out2.fits"
    result = subprocess.run(
        [sys.executable, "-m", "enhance_hmi", "predict", str(MAGNETOGRAM), "-o", str(out2)],
        capture_output=True,
        text=True,
        env={**os.environ, "ENHANCE_WEIGHTS_DIR": str(broken)},
    )
    assert result.returncode != 0
    assert "magnetogram.safetensors" in result.stderr and "sha256" in result.stderr
    assert not out2.exists()


def test_continuum_network_sharpens_real_hmi_granulation():
    frame = read_hmi(QUIET, observable="continuum")
    model, _ = load_weights(default_weights("continuum"))
    out = enhance_array(frame.data, model, device="cpu")
    before = metrics.rms_contrast(frame.data, metrics.quiet_sun_mask(frame.data))
    after = metrics.rms_contrast(out, metrics.quiet_sun_mask(out))
    assert 0.03 < before < 0.045  # HMI quiet-Sun contrast (paper: 3.7-3.8 %)
    assert after > 1.4 * before
    # bounded from above too: a network that overshoots the granulation contrast
    # (the paper's Enhance gives 6.7-7.7 %, Hinode at full resolution ~7 %) fails
    assert 0.06 < after < 0.08  # the 6-8 % of the paper and Hinode (~7 %)
    assert np.isfinite(out).all()


def test_enhanced_files_and_the_projection_use_the_psf_the_network_was_trained_for(tmp_path):
    """The continuum network assumes another HMI PSF than the default: the product says so.

    The file names the sidecar's PSF, and the projection onto the input
    re-observes with it (another PSF gives another projected image).
    """
    from enhance_hmi.inference.consistency import project_as_recipe
    from enhance_hmi.pipeline import enhance_file

    model, meta = load_weights(default_weights("continuum"))
    assert meta["psf_model"] != "wachter"  # the default elsewhere: the check would be blind
    written = enhance_file(
        QUIET, tmp_path / "qs.fits", observable="continuum", device="cpu", uncertainty=False
    )
    with fits.open(written) as hdul:
        header = next(h.header for h in hdul if h.data is not None)
    assert header["ENHPSF"] == meta["psf_model"]
    data = read_hmi(QUIET, observable="continuum").data
    raw = enhance_array(data, model, device="cpu")
    own, own_info = project_as_recipe(raw, data, meta)
    other, other_info = project_as_recipe(raw, data, {**meta, "psf_model": "yeo"})
    assert own_info.residual_before != pytest.approx(other_info.residual_before, rel=1e-3)
    assert not np.allclose(own, other)


def test_magnetogram_network_bounds_field_flux_and_does_not_add_noise():
    """Real HMI crop: flux of the field regions raised by 2-15 %, noise below the input's.

    The shipped network, trained on the Hinode NFI band and a self-similar HMI
    frame, raises the flux of the magnetic features
    (:func:`enhance_hmi.validation.metrics.field_mask`) of real HMI data by
    8.3-13.1 % on the central 1024^2 of three frames (1.119 on this crop,
    output noise 0.81 x the input's; the network before it, with a quarter
    of its patches from NFI instead of 72 %: 1.121 and 0.75 x; the one
    trained with input noise up to 16 G: 1.079; the one trained with the
    paper's broader PSF: 1.154; a 28 cm truth raises it by 3 % on the NFI
    held-out band). The bounds catch a network that loses
    flux, and one that inflates it as the paper-PSF network did. Its
    quiet-Sun noise stays below the input's and far below Richardson-Lucy's
    (with the same PSF).
    """
    import astropy.units as u

    from enhance_hmi.validation import baselines

    frame = read_hmi(MAGNETOGRAM, observable="magnetogram")
    model, meta = load_weights(default_weights("magnetogram"))
    data = frame.data
    out = enhance_array(data, model, device="cpu", input_scale=1000.0)
    quiet = metrics.quiet_sun_mask(data, kind="blos")
    noise = metrics.noise_level(data, quiet)
    field = metrics.field_mask(data, noise)
    assert 0.02 < field.mean() < 0.5
    big = np.repeat(np.repeat(field, 2, axis=0), 2, axis=1)
    pixel = (0.504 * 725 * u.km) ** 2
    kept = metrics.unsigned_flux(np.where(big, out, 0), pixel / 4) / metrics.unsigned_flux(
        np.where(field, data, 0), pixel
    )
    assert 1.02 < float(kept) < 1.15
    quiet2 = np.repeat(np.repeat(quiet, 2, axis=0), 2, axis=1)
    rl = baselines.richardson_lucy(data, psf_model=psf_model_of(meta))
    assert metrics.noise_level(out, quiet2) < noise < metrics.noise_level(rl, quiet2)


FULL_DISK = [
    f"hmi/fulldisk/hmi.M_720s.{t}_TAI.magnetogram.fits"
    for t in ("20111217_060000", "20160707_010000", "20190621_060000")
]


def test_the_self_similar_reference_says_what_field_flux_a_correct_enhancement_gives():
    """On the bundled magnetogram's own view, the truth's field flux rises; the network's too.

    The frame, taken as a truth at 0.126"/px and degraded with the shipped
    network's forward model and its own noise, has 15.7 % more field-region
    flux in the 28 cm truth than in HMI's view; the shipped recipe gives
    15.6 %. A reference whose truth does not rise (no PSF, or the output grid
    not mapped onto the input's) fails, so does a network that inflates or
    loses flux where the truth is known.
    """
    from enhance_hmi.validation.heldout import self_similar_field_flux

    data = np.asarray(read_hmi(MAGNETOGRAM, observable="magnetogram").data, np.float32)
    model, meta = load_weights(default_weights("magnetogram"))
    noise = metrics.noise_level(data, metrics.quiet_sun_mask(data, kind="blos"))
    reference = self_similar_field_flux(data, model, meta, noise=noise)
    assert 1.08 < reference["truth"] < 1.25
    assert abs(reference["enhance"] / reference["truth"] - 1) < 0.03
    assert 0.02 < reference["field_fraction"] < 0.2


@pytest.mark.slow
def test_magnetogram_recipe_on_the_three_real_hmi_frames(shared_data):
    """The real-HMI figures on the central 1024^2 of the three JSOC frames, as shipped.

    Network and projection (``enhance evaluate --hmi``, docs/model_card.md,
    "Real HMI magnetograms"): field-region flux 1.083 / 1.117 / 1.131 of the
    input's (the 10 % goal is missed on the 2016 and 2019 frames; the network
    before: 1.085 / 1.119 / 1.136; dd2d65be: 1.076 / 1.082 / 1.097; the one
    trained with the paper's PSF up to 1.161; Richardson-Lucy with the same
    PSF 1.20-1.34), forward residual 0.61 / 0.55 / 0.55 x the noise over
    quiet Sun and 0.97 / 0.75 / 0.71 x over field regions (bicubic's 4.30 /
    3.31 / 3.06), output quiet-Sun noise 0.74-0.83 x the input's (the
    network trained on NFI alone: 1.30-1.37 x, it fails). A network that inflates flux as the
    paper-PSF one did, or loses it, fails; so does one inconsistent with its
    input and one that fits the noise (the projection stopped at 0.7 x the
    noise: output noise at or above the input's) or smooths the quiet-Sun
    field away.

    The self-similar reference (each frame's own view at 0.126"/px degraded
    with the network's forward model, where the truth is known): a perfect
    enhancement raises the field flux by 7.5 / 14.1 / 17.1 % and the network
    by 7.5 / 13.3 / 15.5 %. A reference that loses its field mask or
    misaligns its grids (truth not above its view) fails, so does a network
    that inflates or loses flux on the view by more than 3 % of the truth's.
    """
    from enhance_hmi.validation.heldout import evaluate_hmi_magnetograms

    for scene in FULL_DISK:
        require((shared_data / scene).is_file(), f"{scene} not in the shared data")
    rows = evaluate_hmi_magnetograms(
        default_weights("magnetogram"), [shared_data / s for s in FULL_DISK], crop=1024
    )
    for row in rows:
        name = row["file"]
        assert 1.03 < row["field_flux_ratio_enhance"] < 1.15, name
        truth_gain = row["field_flux_ratio_self_similar_truth"]
        assert 1.05 < truth_gain < 1.25, name
        assert abs(row["field_flux_ratio_self_similar_enhance"] / truth_gain - 1) < 0.03, name
        field, field_bicubic = (
            row["forward_residual_field_in_noise_enhance"],
            row["forward_residual_field_in_noise_bicubic"],
        )
        assert 0.5 < field < min(2.5, field_bicubic), name
        assert 0.5 < row["forward_residual_quiet_in_noise_enhance"] <= 1.2, name
        assert 0.5 * row["noise_in_G"] < row["noise_enhance_G"] < row["noise_in_G"], name


NFI = "hinode/FGMG4_20110214_030443.7.cols0-879.fits"


@pytest.mark.slow
def test_magnetogram_network_on_the_hinode_nfi_held_out_band(shared_data):
    """Real small-scale magnetic structure: RMSE bounded against bicubic, flux against the truth.

    The held-out band of the NFI image (Blos = k V/I at both ends of the
    calibration range), degraded with 10 G noise, enhanced with the shipped
    recipe (network, then the projection onto the input), over three noise
    draws here. Measured over five draws (docs/model_card.md, network
    cf64c6da): RMSE 0.56 / 0.43 of bicubic's at k = 1.5 / 3, above Tikhonov
    by +0.81 to +1.23 / +0.84 to +1.16 dB per draw, forward residual 0.90 /
    0.90 x the truth's (0.89 / 0.91 above 100 G), unsigned flux 1.001 /
    1.002 of the truth's. A network no better than bicubic (the self-similar
    one: 0.97 / 0.96) fails, so does one below Tikhonov on a draw (a1cbecf9,
    with the histogram-core noise estimate: -0.53 dB at k = 3, forward
    residual 1.33 x), one that fits the noise (dd2d65be with the projection
    stopped at 0.7 x the noise: 37.9 dB at k = 1.5 on draw 1, quiet-Sun
    residual 0.70 x the truth's) and one that inflates or loses flux.
    """
    from enhance_hmi.training import held_out_pairs, load_scenes
    from enhance_hmi.validation.heldout import evaluate_over_draws

    psf = psf_model_of(load_weights(default_weights("magnetogram"))[1])
    pairs = held_out_pairs(
        load_scenes([str(shared_data / NFI)], "magnetogram"), holdout=0.35, psf_model=psf
    )
    rows, _, _ = evaluate_over_draws(
        default_weights("magnetogram"), pairs, draws=3, noise_sigma=1e-2
    )
    psnr = {(r["scene"], r["method"]): r["psnr"] for r in rows}
    quiet_checked = []
    for row in rows:
        if row["method"] != "enhance":
            continue
        rmse_ratio = 10 ** (-(row["psnr"] - psnr[(row["scene"], "bicubic")]) / 20)
        assert 0.35 < rmse_ratio < 0.8, row["scene"]
        assert row["psnr_minus_tikhonov"] > 0, row["scene"]  # on average over the draws
        assert row["psnr_minus_tikhonov_min"] > 0, row["scene"]  # and on each draw
        assert 0.9 < row["flux_ratio"] < 1.1, row["scene"]
        assert 0.9 < row["flux_ratio_500G"] < 1.1, row["scene"]
        # consistent with the input as the truth is, over the whole band and above
        # 100 G; far below the truth's own residual would be fitting the noise
        for key in ("forward_rms", "forward_rms_field_pixels"):
            assert 0.6 < row[key] / row[f"truth_{key}"] < 1.25, (row["scene"], key)
        if row["forward_rms_quiet_in_noise"] is not None:  # the band has quiet Sun
            quiet_checked.append(row["scene"])
            # over quiet Sun the truth misses the noisy input by more than bicubic, which
            # keeps the noise in HMI's passband; the network may fit a little of it but
            # not much (five draws at k = 1.5: truth 0.71, bicubic 0.63, Enhance 0.62 x
            # the input's quiet-Sun rms; the projection stopped at 0.7 x the noise
            # instead fits it: 0.53 against the truth's 0.75 on draw 1, 0.70 x)
            qs, truth_qs = (
                row["forward_rms_quiet_in_noise"],
                row["truth_forward_rms_quiet_in_noise"],
            )
            bicubic_qs = next(
                r["forward_rms_quiet_in_noise"]
                for r in rows
                if r["scene"] == row["scene"] and r["method"] == "bicubic"
            )
            assert bicubic_qs < truth_qs
            assert 0.8 * truth_qs < qs < 1.2 * truth_qs, row["scene"]
    assert any("k=1.5" in scene for scene in quiet_checked), quiet_checked


def _highres_scenes(shared_data):
    from enhance_hmi.training import load_scenes

    for scene in CONTINUUM_SCENES:
        require((shared_data / scene).is_file(), f"{scene} not in the shared data")
    return load_scenes([str(shared_data / s) for s in CONTINUUM_SCENES], "continuum")


@pytest.mark.slow
def test_continuum_network_told_the_forward_model_on_the_held_out_scenes(shared_data):
    """The forward-model grid at the 720 s noise, bounded from both sides (docs/forward_models.md).

    Measured (network e8d6b6b6, noise 7e-4, seed 1): told - Tikhonov told +1.00
    to +1.93 dB, told - linear bound -0.02 to +0.51 dB, default - Tikhonov with
    the default PSF +0.56 to +1.55 dB over these members. A network that is not told
    (the default under yeo+pixel: -2.4 to -1.5 dB against Tikhonov told) fails
    the first bound; one that beats the linear bound by a wide margin would be
    scoring on its training data.
    """
    from enhance_hmi.physics.forward_family import ForwardModelSpec
    from enhance_hmi.validation.forward_grid import evaluate_forward_grid

    members = [ForwardModelSpec.from_name(n) for n in ("wachter2012", "yeo", "wachter+point")]
    rows = evaluate_forward_grid(
        default_weights("continuum"), _highres_scenes(shared_data), members, noise_sigma=7e-4
    )
    assert len(rows) == 9
    for row in rows:
        cell = (row["scene"], row["forward_model"])
        assert 0.6 < row["network_told_minus_tikhonov_told"] < 2.3, cell
        assert -0.4 < row["network_told_minus_oracle_linear"] < 0.8, cell
        assert 0.3 < row["network_default"] - row["tikhonov_default"] < 2.0, cell


@pytest.mark.slow
def test_continuum_sigma_over_the_forward_model_family_with_each_scene_left_out(shared_data):
    """The head's family calibration refitted without each scene and measured on it.

    Three members here (the trained one, the hardest and the closest), at 1x
    the noise; ``enhance fit-uncertainty`` measures all six at 1x and 3x.

    Measured (``enhance fit-uncertainty --calibrate-only``, 1x noise, fit draw 1,
    measured on draw 2): told the member, 62.4-74.4 % within 1 sigma and
    92.2-97.0 % within 2 over all six members; told nothing, 61.9-100 % /
    94.6-100 % (the trained
    member over-covered: its sigma allows for every member). Without the family
    term (kappa 0) told nothing fell to 21-34 % under yeo+pixel.
    """
    from enhance_hmi.model.uncertainty import load_uncertainty
    from enhance_hmi.physics.forward_family import ForwardModelSpec, forward_model_of
    from enhance_hmi.training.family_calibration import family_cells, leave_one_scene_out

    weights = default_weights("continuum")
    net, meta = load_weights(weights)
    model, _ = load_uncertainty(weights, net, meta)
    scenes = _highres_scenes(shared_data)
    # the trained member, the hardest (yeo+pixel) and the closest (wachter+point)
    members = [ForwardModelSpec.from_name(n) for n in ("wachter2012", "yeo", "wachter+point")]
    options = dict(holdout=0.35, noise=1e-3, border=8, noise_factors=(1.0,), members=members)
    fit_cells = family_cells(model, meta, scenes, seed=1, **options)
    measured = family_cells(model, meta, scenes, seed=2, **options)
    rows = leave_one_scene_out(fit_cells, measured, forward_model_of(meta).name)
    assert len(rows) == 9
    for row in rows:
        cell = (row["region"], row["member"])
        assert 0.60 < row["told_within_1sigma"] < 0.78, cell
        assert 0.90 < row["told_within_2sigma"] < 0.99, cell
        assert row["untold_within_1sigma"] > 0.57 and row["untold_within_2sigma"] > 0.90, cell
    trained = [r for r in rows if r["member"] == forward_model_of(meta).name]
    assert all(r["untold_within_1sigma"] > 0.9 for r in trained)  # the family term is there


@pytest.mark.slow
def test_averaging_the_magnetogram_network_over_the_sign_lowers_its_error_on_nfi(shared_data):
    """``--symmetries 2`` on the NFI held-out band, bounded from both sides.

    Measured (network cf64c6da, wachter2012+pixel, 10 G, seed 1; model card,
    "Averaging over symmetries"): the RMSE with the field and its negative
    averaged is 0.979 x one pass's at k = 1.5 and 0.997 x at k = 3. A mean
    that undoes nothing, or a network already odd in the field, gives 1.0;
    a sign not undone on the way back gives far more.
    """
    from enhance_hmi.physics.forward_family import ForwardModelSpec
    from enhance_hmi.training import load_scenes
    from enhance_hmi.validation.forward_grid import evaluate_forward_grid

    scenes = load_scenes([str(shared_data / NFI)], "magnetogram")
    member = [ForwardModelSpec.from_name("wachter2012")]
    weights = default_weights("magnetogram")
    one, two = (
        evaluate_forward_grid(weights, scenes, member, noise_sigma=1e-2, symmetries=n)
        for n in (1, 2)
    )
    bounds = {"k=1.5": (0.96, 0.99), "k=3": (0.985, 0.999)}
    for single, averaged in zip(one, two, strict=True):
        (gain,) = (k for k in bounds if single["scene"].endswith(k))
        assert single["score"] == "rmse"
        ratio = averaged["network_told"] / single["network_told"]
        low, high = bounds[gain]
        assert low < ratio < high, (gain, ratio)
        assert averaged["tikhonov_told"] == single["tikhonov_told"]
        assert averaged["network_told_over_tikhonov_told"] < 0.9, gain
