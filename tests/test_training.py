"""Training: scenes, disjoint splits, augmentation, a seeded resumable loop, evaluation.

Tiny nets (``n_blocks=1, width=8``) and a few steps: the point is the
machinery (reproducibility, resume, outputs, held-out split), not the
science, which the shipped weights' evaluation measures.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import subprocess
import sys

import astropy.units as u
import numpy as np
import pytest
from astropy.io import fits

from enhance_hmi.errors import ConfigError, InputError, TrainingError
from enhance_hmi.model import load_weights
from enhance_hmi.physics import reobserve
from enhance_hmi.scenes import Scene, load_continuum_scene, parse_scene_spec, split_scene
from enhance_hmi.training import (
    PatchSampler,
    TrainConfig,
    augmented_pairs,
    build_pairs,
    degraded_pair,
    train,
)
from enhance_hmi.validation.heldout import (
    evaluate_over_draws,
    evaluate_pairs,
    format_table,
    write_evaluation,
)

TINY = {
    "n_blocks": 1,
    "width": 8,
    "patch": 16,
    "batch": 2,
    "val_every": 2,
    "checkpoint_every": 2,
    "bn_recalibration": 3,
}


def _granulation(shape=(400, 420), seed=0) -> np.ndarray:
    """A granulation-like random field (cells ~1"), mean 1, contrast ~10 %."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    field = ndimage.gaussian_filter(rng.normal(size=shape), 6, mode="wrap")
    return 1.0 + 0.1 * field / field.std()


def _scene(seed=0) -> Scene:
    return Scene(
        name=f"synthetic{seed}",
        data=_granulation(seed=seed),
        pixel_scale=0.0662 * u.arcsec,
        observable="continuum",
        wavelength=6173 * u.AA,
        source="synthetic test field",
    )


@pytest.fixture(scope="module")
def pairs():
    return build_pairs([_scene(0), _scene(1)], variants=2, holdout=0.35, seed=0)


@pytest.fixture(scope="module")
def tiny_weights(pairs, tmp_path_factory):
    """A continuum network trained for 2 steps, and the held-out pairs to score it on."""
    train_pairs, held = pairs
    config = TrainConfig(observable="continuum", steps=2, seed=0, **TINY)
    return train(config, train_pairs, held, tmp_path_factory.mktemp("run")), held


def test_split_is_disjoint_with_a_guard_band():
    scene = _scene()
    train_part, held = split_scene(scene, holdout=0.35)
    nx = scene.data.shape[1]
    cut = train_part.data.shape[1]
    guard = nx - cut - held.data.shape[1]
    # 4 HMI pixels at 0.0662"/px: ceil(4 * 0.504 / 0.0662) = 31 truth pixels
    assert guard == 31
    np.testing.assert_array_equal(held.data, scene.data[:, cut + guard :])
    with pytest.raises(InputError, match="fraction"):
        split_scene(scene, holdout=1.5)


def test_quiet_sun_normalisation_and_pixel_scale(tmp_path):
    data = (_granulation() * 5000.0).astype(np.float32)
    data[:40, :40] = 1000.0  # an "umbra" must not pull the quiet-Sun level down
    path = tmp_path / "scene.fits"
    header = fits.Header({"CDELT1": 0.059, "CDELT2": 0.059, "WAVELNTH": 8542.0})
    fits.writeto(path, data, header)
    scene = load_continuum_scene(path)
    assert scene.pixel_scale == 0.059 * u.arcsec
    assert scene.wavelength == 8542 * u.AA
    quiet = scene.data[100:, 100:]
    assert abs(np.median(quiet) - 1.0) < 0.01
    assert parse_scene_spec(f"{path}:0.1") == (path, 0.1 * u.arcsec)
    bare = tmp_path / "bare.fits"
    fits.writeto(bare, data)
    with pytest.raises(InputError, match="CDELT1"):
        load_continuum_scene(bare)
    assert load_continuum_scene(bare, 0.05 * u.arcsec).pixel_scale == 0.05 * u.arcsec


def test_scene_quiet_sun_level_is_read_hmis_level_at_hmi_resolution(shared_data):
    """MURaM (quiet Sun, ~15 % raw contrast): the level is the scene's mean.

    The estimator of real HMI frames, applied to the raw scene, lands ~16 %
    high on the granules; seen at HMI resolution it gives the mean intensity
    (INVENTORY: a quiet-Sun frame is normalised by its mean).
    """
    from enhance_hmi.io.normalise import quiet_sun_level
    from enhance_hmi.scenes import scene_quiet_sun_level

    raw = fits.getdata(shared_data / "highres" / "muram_quiet_ic_0.0662.fits").astype(float)
    level = scene_quiet_sun_level(raw, 0.0662 * u.arcsec)
    assert level == pytest.approx(raw.mean(), rel=0.005)
    assert quiet_sun_level(raw) / level > 1.1
    with pytest.raises(InputError, match="finite"):
        scene_quiet_sun_level(np.where(raw > raw.mean(), np.nan, raw), 0.0662 * u.arcsec)


def test_held_out_twin_is_enhance_train_held_out_region(shared_data):
    """The twin's held-out scene: the same pixels, in the same units, as training's."""
    from enhance_hmi.validation.twin import read_scene

    path = shared_data / "highres" / "sst_crisp_wb8542_spot_20200727.fits"
    held = split_scene(load_continuum_scene(path, 0.059 * u.arcsec), holdout=0.35)[1]
    twin = read_scene(path, pixel_scale=0.059, holdout=0.35)
    np.testing.assert_allclose(twin.data, held.data, rtol=1e-12)
    assert "whole scene" in twin.normalisation["method"]
    # a crop of it keeps the whole scene's units
    cropped = read_scene(path, pixel_scale=0.059, holdout=0.35, crop=200)
    y0, _, x0, _ = cropped.normalisation["region_yx"]
    x0 -= twin.normalisation["region_yx"][2]
    np.testing.assert_allclose(cropped.data, held.data[y0 : y0 + 200, x0 : x0 + 200], rtol=1e-12)


def test_augmented_pairs_are_consistent_degradations():
    rng = np.random.default_rng(3)
    scene = _scene()
    pairs = augmented_pairs(scene, 3, rng=rng)
    for pair in pairs:
        assert pair.target.shape == (2 * pair.input.shape[0], 2 * pair.input.shape[1])
        # the target re-observed by HMI is close to the input where valid
        back = reobserve(pair.target.astype(float))
        ok = pair.valid[2:-2, 2:-2]
        diff = (back - pair.input)[2:-2, 2:-2][ok]
        assert np.sqrt(np.mean(diff**2)) < 0.01
    assert pairs[0].valid.all() and not pairs[1].valid.all()


def _dihedral(image: np.ndarray, turns: int, flip: bool) -> np.ndarray:
    """The sampler's augmentation: ``turns`` quarter turns, then a left-right flip."""
    out = np.rot90(image, turns)
    return out[:, ::-1] if flip else out


def test_patch_sampler_flips_and_noise():
    """Each patch is one of the 8 turns/flips of a crop, the same for input and
    target, and the input alone carries Gaussian noise of the requested sigma."""
    pair = degraded_pair(_scene())
    sigma, batch, p = 1e-3, 64, 16

    def sampler(noise: float) -> PatchSampler:
        return PatchSampler(
            [pair], patch=p, noise_sigma=noise, input_scale=1.0, rng=np.random.default_rng(0)
        )

    x, y = sampler(sigma).sample(batch)
    clean, y_clean = sampler(0.0).sample(batch)  # same seed: same crops and turns
    assert x.shape == (batch, 1, p, p) and y.shape == (batch, 1, 2 * p, 2 * p)
    assert x.dtype == np.float32 and y.dtype == np.float32
    np.testing.assert_array_equal(y, y_clean)  # the target gets no noise
    noise = (x - clean).astype(float)
    assert abs(noise.std() / sigma - 1) < 0.05 and abs(noise.mean()) < 0.1 * sigma

    windows = np.lib.stride_tricks.sliding_window_view(pair.input, (p, p))
    seen = set()
    for patch, target in zip(clean[:, 0], y_clean[:, 0], strict=True):
        found = []
        for turns in range(4):
            for flip in (False, True):
                # undo the augmentation, then look for the crop in the input
                crop = np.rot90(patch[:, ::-1] if flip else patch, -turns)
                for y0, x0 in np.argwhere((windows == crop).all(axis=(2, 3))):
                    truth = pair.target[2 * y0 : 2 * y0 + 2 * p, 2 * x0 : 2 * x0 + 2 * p]
                    if np.array_equal(_dihedral(truth, turns, flip), target):
                        found.append((turns, flip))
        assert len(found) == 1, found  # a crop of the input, its target turned alike
        seen.update(found)
    assert len(seen) == 8  # every turn, flipped and not


def test_training_leaves_torch_process_state_alone(tmp_path, pairs):
    """The run's seed and thread count are its own: the caller's RNG and threads come back."""
    import torch

    train_pairs, held = pairs
    threads = torch.get_num_threads()
    wanted = 1 if threads != 1 else 2
    torch.manual_seed(12345)
    state = torch.get_rng_state()
    config = TrainConfig(observable="continuum", steps=2, seed=7, threads=wanted, **TINY)
    train(config, train_pairs, held, tmp_path / "run", training_data=["synthetic"])
    assert torch.get_num_threads() == threads
    assert torch.equal(torch.get_rng_state(), state)


def _curve(out):
    with open(out / "loss.csv") as fh:
        return [(int(r["step"]), float(r["train_loss"]), r["val_loss"]) for r in csv.DictReader(fh)]


def test_training_is_reproducible_and_writes_its_outputs(tmp_path, pairs):
    train_pairs, held = pairs
    config = TrainConfig(observable="continuum", steps=6, seed=7, **TINY)
    a = train(config, train_pairs, held, tmp_path / "a", training_data=["synthetic"])
    b = train(config, train_pairs, held, tmp_path / "b", training_data=["synthetic"])
    assert _curve(tmp_path / "a") == _curve(tmp_path / "b")
    assert len(_curve(tmp_path / "a")) == 4  # steps 1, 2, 4, 6
    net_a, meta = load_weights(a)
    net_b, _ = load_weights(b)
    for pa, pb in zip(net_a.parameters(), net_b.parameters(), strict=True):
        assert np.array_equal(pa.detach().numpy(), pb.detach().numpy())
    assert meta["training"]["steps_done"] == 6
    assert meta["training"]["config"]["weight_decay"] == 1e-6  # paper, continuum
    assert meta["training"]["config"]["noise_sigma"] == 1e-3
    assert meta["training_data"] == ["synthetic"]
    png = (tmp_path / "a" / "loss.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    other = train(
        TrainConfig(observable="continuum", steps=6, seed=8, **TINY),
        train_pairs,
        held,
        tmp_path / "c",
    )
    assert _curve(tmp_path / "c") != _curve(tmp_path / "a")
    assert other.is_file()


def test_resume_continues_where_it_stopped(tmp_path, pairs):
    train_pairs, held = pairs
    full = TrainConfig(observable="continuum", steps=6, seed=1, **TINY)
    train(full, train_pairs, held, tmp_path / "full")
    part = TrainConfig(observable="continuum", steps=4, seed=1, **TINY)
    train(part, train_pairs, held, tmp_path / "resumed")
    train(full, train_pairs, held, tmp_path / "resumed")
    assert _curve(tmp_path / "resumed") == _curve(tmp_path / "full")
    changed = TrainConfig(observable="continuum", steps=6, seed=1, **{**TINY, "width": 4})
    with pytest.raises(TrainingError, match="other settings"):
        train(changed, train_pairs, held, tmp_path / "resumed")


def test_bad_training_settings():
    with pytest.raises(TrainingError, match="observable"):
        TrainConfig(observable="doppler")
    with pytest.raises(TrainingError, match="steps"):
        TrainConfig(steps=0)
    assert TrainConfig(observable="magnetogram").weight_decay == 1e-5


def test_evaluation_table_and_files(tmp_path, tiny_weights):
    weights, held = tiny_weights
    rows, images = evaluate_pairs(weights, held)
    methods = {r["method"] for r in rows}
    assert methods == {
        "bicubic",
        "unsharp",
        "richardson_lucy",
        "tikhonov",
        "enhance",
        "oracle_linear",
    }
    bicubic = next(r for r in rows if r["method"] == "bicubic")
    rl = next(r for r in rows if r["method"] == "richardson_lucy")
    # the linear filter fitted on the truth bounds the short linear filters, scene by scene
    for scene in {r["scene"] for r in rows}:
        score = {r["method"]: r["psnr"] for r in rows if r["scene"] == scene}
        assert score["oracle_linear"] > max(score["bicubic"], score["unsharp"])
    # a classical deconvolution sharpens: higher contrast than bicubic, truth's is higher still
    assert bicubic["contrast"] < rl["contrast"] < bicubic["truth_contrast"] * 1.5
    assert all(np.isfinite(r["psnr"]) for r in rows)
    # every row carries the truth's own residuals beside the method's, in the same noise unit
    for scene in {r["scene"] for r in rows}:
        same = [r for r in rows if r["scene"] == scene]
        for key in ("truth_forward_rms_quiet_in_noise", "forward_noise"):
            assert len({r[key] for r in same}) == 1 and np.isfinite(same[0][key]), key
        assert len({r["forward_rms_quiet_in_noise"] for r in same}) == len(same)
    paths = write_evaluation(tmp_path / "eval", weights=weights, rows=rows, images=images)
    record = json.loads(paths["json"].read_text())
    assert len(record["held_out"]) == 12
    assert record["provenance"]["weights_sha256"]
    assert "| richardson_lucy |" in format_table(rows)
    assert paths["figure"].read_bytes()[:4] == b"\x89PNG"


def test_evaluation_over_noise_draws_averages_each_draw(tmp_path, tiny_weights):
    """The summary is the mean of per-draw scores; the draws are different noise realisations."""
    weights, held = tiny_weights
    with pytest.raises(ConfigError, match="draws"):
        evaluate_over_draws(weights, held, draws=0)
    summary, per_draw, images = evaluate_over_draws(weights, held, draws=2)
    assert {r["noise_seed"] for r in per_draw} == {1, 2}
    assert len(per_draw) == 2 * len(summary) == 24
    single, _ = evaluate_pairs(weights, held, noise_seed=2)
    assert [r["psnr"] for r in per_draw if r["noise_seed"] == 2] == [r["psnr"] for r in single]
    # draw 1 is the default single evaluation, and its images are the ones returned
    first, first_images = evaluate_pairs(weights, held)
    assert [r["psnr"] for r in per_draw if r["noise_seed"] == 1] == [r["psnr"] for r in first]
    for scene, imgs in first_images.items():
        np.testing.assert_array_equal(images[scene]["input"], imgs["input"])
        np.testing.assert_array_equal(images[scene]["enhance"], imgs["enhance"])
    for row in summary:
        draws = [r for r in per_draw if (r["scene"], r["method"]) == (row["scene"], row["method"])]
        assert row["draws"] == 2
        assert row["psnr"] == pytest.approx(np.mean([r["psnr"] for r in draws]))
        assert row["psnr_min"] <= row["psnr"] <= row["psnr_max"]
        if row["method"] == "bicubic":
            assert row["psnr_min"] < row["psnr_max"]  # the noise differs between draws
        if row["method"] == "enhance":
            tik = {
                r["noise_seed"]: r["psnr"]
                for r in per_draw
                if (r["scene"], r["method"]) == (row["scene"], "tikhonov")
            }
            margins = [r["psnr"] - tik[r["noise_seed"]] for r in draws]
            assert row["psnr_minus_tikhonov"] == pytest.approx(np.mean(margins))
            assert row["psnr_minus_tikhonov_min"] == pytest.approx(min(margins))
    header = format_table(summary).splitlines()[0]  # columns of every row, not only the first
    assert "psnr_minus_tikhonov" in header and "psnr_min" in header
    paths = write_evaluation(
        tmp_path / "eval", weights=weights, rows=summary, images=images, per_draw=per_draw
    )
    record = json.loads(paths["json"].read_text())
    assert len(record["held_out_draws"]) == 24 and len(record["held_out"]) == 12


def test_draw_summary_averages_only_the_draws_that_define_a_score(monkeypatch):
    """A score undefined in one draw (None) is averaged over the others, and says so."""
    import enhance_hmi.validation.heldout as heldout

    def fake(weights, pairs, *, noise_seed, **kwargs):
        rows = [
            {"scene": "s", "method": "tikhonov", "psnr": 30.0 + noise_seed, "x": None},
            {
                "scene": "s",
                "method": "enhance",
                "psnr": 32.0 + 2 * noise_seed,
                "x": None if noise_seed == 1 else float(noise_seed),
                "flag": noise_seed == 2,
                "note": "same",
                **({"late": 7.0} if noise_seed == 3 else {}),
            },
        ]
        return rows, {"s": {}}

    monkeypatch.setattr(heldout, "evaluate_pairs", fake)
    summary, _, _ = heldout.evaluate_over_draws("w", [], draws=3)
    tik, enh = summary
    assert tik["psnr"] == 32.0 and tik["x"] is None and "x_draws" not in tik
    assert enh["psnr"] == 36.0 and (enh["psnr_min"], enh["psnr_max"]) == (34.0, 38.0)
    assert enh["x"] == 2.5 and enh["x_draws"] == 2  # draws 2 and 3 only
    assert enh["psnr_minus_tikhonov"] == 4.0
    assert (enh["psnr_minus_tikhonov_min"], enh["psnr_minus_tikhonov_max"]) == (3.0, 5.0)
    assert enh["flag"] is False and enh["flag_varies"]  # a bool is not averaged
    assert enh["note"] == "same" and "note_varies" not in enh
    assert enh["late"] == 7.0 and enh["late_draws"] == 1  # a key only a later draw has
    assert enh["draws"] == 3


@pytest.mark.slow
def test_train_and_evaluate_cli(tmp_path, shared_data):
    muram = shared_data / "highres" / "muram_quiet_ic_0.0662.fits"
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "enhance_hmi"]
    common = ["--n-blocks", "1", "--width", "8", "--patch", "16", "--batch", "2"]
    common += ["--bn-recalibration", "3"]
    subprocess.run(
        [*cmd, "train", "--observable", "continuum", "--scene", str(muram), "--out", str(run)]
        + [*common, "--steps", "3", "--val-every", "3", "--variants", "2"],
        check=True,
        capture_output=True,
    )
    weights = run / "continuum.safetensors"
    meta = json.loads(weights.with_suffix(".json").read_text())
    assert "muram_quiet_ic_0.0662.fits divided by its quiet-Sun level" in meta["training_data"][0]
    evaluate = [*cmd, "evaluate", "--weights", str(weights), "--scene", str(muram)]
    result = subprocess.run(
        [*evaluate, "--draws", "2", "-o", str(tmp_path)],
        check=True,
        capture_output=True,
        text=True,
    )
    assert "| muram_quiet_ic_0.0662[held-out] | enhance |" in result.stdout
    record = json.loads((tmp_path / "evaluation.json").read_text())
    assert {r["noise_seed"] for r in record["held_out_draws"]} == {1, 2}
    assert all(r["draws"] == 2 for r in record["held_out"])
    zero = subprocess.run(
        [*evaluate, "--draws", "0", "-o", str(tmp_path / "zero")], capture_output=True, text=True
    )
    assert zero.returncode == 2 and "--draws" in zero.stderr and not (tmp_path / "zero").exists()
    bad = subprocess.run(
        [*cmd, "train", "--observable", "continuum", "--scene", str(tmp_path / "nope.fits")]
        + ["--out", str(tmp_path / "x")],
        capture_output=True,
        text=True,
    )
    assert bad.returncode != 0
    assert len(bad.stderr.strip().splitlines()) == 1 and "nope.fits" in bad.stderr


def test_batchnorm_recalibration_uses_exact_averages(pairs):
    import torch

    from enhance_hmi.model import EnhanceNet
    from enhance_hmi.training import recalibrate_batchnorm

    train_pairs, _ = pairs
    sampler = PatchSampler(
        train_pairs, patch=16, noise_sigma=0.0, input_scale=1.0, rng=np.random.default_rng(0)
    )
    torch.manual_seed(0)
    net = EnhanceNet(n_blocks=1, width=4)
    recalibrate_batchnorm(net, sampler, batches=4, batch=8)
    assert not net.training
    assert all(bn.momentum == 0.1 for bn in net.modules() if isinstance(bn, torch.nn.BatchNorm2d))
    # the first BN sees conv1(relu(head(x))): its running mean is the exact batch mean
    replay = PatchSampler(
        train_pairs, patch=16, noise_sigma=0.0, input_scale=1.0, rng=np.random.default_rng(0)
    )
    with torch.no_grad():
        feats = [
            net.blocks[0].conv1(torch.relu(net.head(torch.from_numpy(replay.sample(8)[0]))))
            for _ in range(4)
        ]
    mean = torch.stack([f.mean(dim=(0, 2, 3)) for f in feats]).mean(0)
    torch.testing.assert_close(net.blocks[0].bn1.running_mean, mean, rtol=1e-4, atol=1e-6)


def test_the_bundled_held_out_truth_is_scored_whole_and_never_trained_on(tmp_path):
    """``enhance evaluate`` on the shipped truth crop (a held-out region already)."""
    from pathlib import Path

    data = Path(__file__).resolve().parents[1] / "enhance_hmi" / "data"
    truth = data / "truth" / "muram_quiet_ic_heldout.fits"
    scene = load_continuum_scene(truth)
    assert scene.held_out
    with pytest.raises(InputError, match="held-out region"):
        build_pairs([scene], variants=1, holdout=0.35, seed=0)
    weights = data / "weights" / "continuum.safetensors"
    result = subprocess.run(
        [sys.executable, "-m", "enhance_hmi", "evaluate", "--weights", str(weights)]
        + ["--scene", str(truth), "-o", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    record = json.loads((tmp_path / "evaluation.json").read_text())
    rows = {row["method"]: row for row in record["held_out"]}
    assert set(rows) >= {"bicubic", "tikhonov", "enhance", "oracle_linear"}
    assert {row["scene"] for row in rows.values()} == {"muram_quiet_ic_heldout[held-out]"}


def test_a_warm_start_reproduces_its_source_and_may_add_identity_blocks(tmp_path, tiny_weights):
    """``init_weights``: step 0 computes the source's image, with more residual blocks too."""
    import torch

    from enhance_hmi.model.network import deepened
    from enhance_hmi.training.loop import _new_run

    weights, _ = tiny_weights
    source, _meta = load_weights(weights)
    x = torch.from_numpy(np.random.default_rng(3).normal(1.0, 0.05, (1, 1, 20, 20)).astype("f4"))
    for blocks in (1, 3):
        config = TrainConfig(
            observable="continuum",
            steps=2,
            init_weights=str(weights),
            **{**TINY, "n_blocks": blocks},
        )
        model = _new_run(config).model.eval()
        assert model.n_blocks == blocks
        with torch.no_grad():
            np.testing.assert_allclose(model(x).numpy(), source(x).numpy(), rtol=0, atol=2e-5)
    # each added block starts with a zero last batch-norm scale: its residual is zero
    grown = deepened(source, 2)
    assert float(grown.blocks[1].bn2.weight.detach().abs().max()) == 0.0
    with pytest.raises(TrainingError, match="n_blocks may only grow"):
        _new_run(
            TrainConfig(observable="continuum", init_weights=str(weights), **{**TINY, "width": 4})
        )
    with pytest.raises(TrainingError, match="cannot start from"):
        _new_run(TrainConfig(observable="continuum", init_weights=str(tmp_path / "none"), **TINY))


def _copied_weights(weights, directory):
    """A copy of ``weights`` in ``directory`` (without its sidecar) and the sidecar's content."""
    from enhance_hmi.model.weights import read_sidecar

    directory.mkdir()
    copy = directory / weights.name
    copy.write_bytes(weights.read_bytes())
    return copy, read_sidecar(weights)


def test_a_warm_start_carries_its_sources_history_and_inference_recipe(
    tmp_path, pairs, tiny_weights
):
    """Two chained warm starts: the sidecar traces each run back to step 0, keeps ``inference``."""
    from enhance_hmi.model.weights import read_sidecar, write_sidecar

    train_pairs, held = pairs
    source, _ = tiny_weights
    first_source, meta = _copied_weights(source, tmp_path / "source")
    meta["inference"] = {"consistency_discrepancy": 0.8}
    write_sidecar(first_source, meta)

    def warm(init, out, steps):
        config = TrainConfig(
            observable="continuum", steps=steps, seed=1, init_weights=str(init), **TINY
        )
        return train(config, train_pairs, held, tmp_path / out)

    second = warm(first_source, "second", 2)
    third = warm(second, "third", 4)
    first_meta, second_meta, third_meta = (read_sidecar(p) for p in (source, second, third))
    assert "history" not in first_meta["training"]
    history = third_meta["training"]["history"]
    assert [entry["steps"] for entry in history] == [[0, 2], [2, 4], [4, 8]]
    assert [entry.get("sha256_at_end") for entry in history] == [
        first_meta["sha256"],
        second_meta["sha256"],
        None,
    ]
    assert third_meta["training"]["steps_done_total"] == 8
    assert third_meta["training"]["steps_done"] == 4
    assert third_meta["inference"] == {"consistency_discrepancy": 0.8}
    assert second_meta["inference"] == {"consistency_discrepancy": 0.8}
    # a network trained from scratch has neither
    assert "inference" not in first_meta and "steps_done_total" not in first_meta["training"]


def test_scene_weights_set_the_share_of_patches_each_scene_gives():
    """``build_pairs(weights=...)``: equal areas weighted 1 and 3 give 1/4 and 3/4 of patches."""
    scenes = [_scene(0), _scene(1)]
    scenes[1] = dataclasses.replace(scenes[1], data=scenes[1].data + 1.0)  # mean 2, not 1
    train_pairs, _ = build_pairs(scenes, variants=1, holdout=0.35, seed=0, weights=[1.0, 3.0])
    assert [p.weight for p in train_pairs] == [1.0, 3.0]
    sampler = PatchSampler(
        train_pairs, patch=16, noise_sigma=0.0, input_scale=1.0, rng=np.random.default_rng(0)
    )
    inputs, _ = sampler.sample(2000)
    from_second = float(np.mean(inputs.mean(axis=(1, 2, 3)) > 1.5))
    assert from_second == pytest.approx(0.75, abs=0.03)
    unweighted, _ = build_pairs(scenes, variants=1, holdout=0.35, seed=0)
    even = PatchSampler(
        unweighted, patch=16, noise_sigma=0.0, input_scale=1.0, rng=np.random.default_rng(0)
    )
    assert float(np.mean(even.sample(2000)[0].mean(axis=(1, 2, 3)) > 1.5)) == pytest.approx(
        0.5, abs=0.03
    )
    for bad in ([1.0], [1.0, 0.0], [1.0, float("nan")]):
        with pytest.raises(ConfigError, match="one positive, finite weight per scene"):
            build_pairs(scenes, variants=1, holdout=0.35, seed=0, weights=bad)
    zero = [dataclasses.replace(p, weight=0.0) for p in train_pairs]
    with pytest.raises(ConfigError, match="pair weights must be positive and finite"):
        PatchSampler(zero, patch=16, noise_sigma=0.0, input_scale=1.0, rng=np.random.default_rng(0))


def test_train_cli_refuses_scene_weights_that_do_not_match_the_scenes(tmp_path):
    """One ``--scene-weight`` per ``--scene``: otherwise a one-line error and a failed exit."""
    from pathlib import Path

    truth = Path(__file__).resolve().parents[1] / "enhance_hmi" / "data" / "truth"
    result = subprocess.run(
        [sys.executable, "-m", "enhance_hmi", "train", "--observable", "continuum"]
        + ["--scene", str(truth / "muram_quiet_ic_heldout.fits")]
        + ["--scene-weight", "1", "--scene-weight", "3", "--out", str(tmp_path / "run")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "one --scene-weight per --scene (1 scenes); got 2" in lines[0]
    assert not (tmp_path / "run" / "continuum.safetensors").exists()


def test_a_warm_start_refuses_another_observable_an_untraceable_history_and_a_changed_source(
    tmp_path, pairs, tiny_weights
):
    """The source must be a network of the same observable whose history can be read,
    and a resumed run must find the same source it started from."""
    from enhance_hmi.model.weights import read_sidecar, write_sidecar
    from enhance_hmi.training.loop import _new_run

    train_pairs, held = pairs
    source, _ = tiny_weights
    copy, meta = _copied_weights(source, tmp_path / "src")
    write_sidecar(copy, {**meta, "observable": "magnetogram"})
    with pytest.raises(TrainingError, match="a magnetogram network"):
        _new_run(TrainConfig(observable="continuum", init_weights=str(copy), **TINY))
    write_sidecar(copy, {**meta, "training": {**meta["training"], "history": [{"note": "x"}]}})
    with pytest.raises(TrainingError, match="cannot read the training history"):
        _new_run(TrainConfig(observable="continuum", init_weights=str(copy), **TINY))
    # a run started from one network does not resume from another at the same path
    write_sidecar(copy, meta)
    config = TrainConfig(observable="continuum", steps=2, init_weights=str(copy), **TINY)
    train(config, train_pairs, held, tmp_path / "run")
    other = train(
        TrainConfig(observable="continuum", steps=2, seed=5, **TINY),
        train_pairs,
        held,
        tmp_path / "other",
    )
    copy.write_bytes(other.read_bytes())
    write_sidecar(copy, read_sidecar(other))
    more = dataclasses.replace(config, steps=4)
    with pytest.raises(TrainingError, match="started from a network of sha256"):
        train(more, train_pairs, held, tmp_path / "run")
