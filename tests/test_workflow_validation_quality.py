"""Per-frame quality figures: measured while a frame is enhanced, written to its header.

Real parts only: the bundled real HMI frames, the shipped networks, the real
pipeline (:func:`enhance_hmi.pipeline.enhance_file`) and FITS files read back.
The bad frames are the two the issue names: a continuum frame enhanced with
weights of the other observable (the magnetogram network, its sidecar
relabelled so the pipeline accepts it), and a magnetogram with heavy noise
added to its input.
"""

from __future__ import annotations

import json
import math
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from enhance_hmi.errors import ConfigError, FieldDominatedNoiseWarning
from enhance_hmi.io.frame_quality import (
    QUALITY_KEYWORDS,
    QualityTolerances,
    frame_quality,
    quality_from_header,
)
from enhance_hmi.pipeline import enhance_file

SAMPLE = Path(__file__).resolve().parents[1] / "enhance_hmi" / "data" / "sample"
WEIGHTS = Path(__file__).resolve().parents[1] / "enhance_hmi" / "data" / "weights"
CONTINUUM = SAMPLE / "hmi.Ic_45s.20140301_000130_TAI.2.continuum.fits"
MAGNETOGRAMS = sorted(SAMPLE.glob("hmi.M_720s.*.magnetogram.fits"))


def _header(path: Path) -> fits.Header:
    with fits.open(path) as hdul:
        return hdul[1].header if len(hdul) > 1 else hdul[0].header


def relabelled_weights(directory: Path, source: str, claimed: str) -> Path:
    """The shipped ``source`` network whose sidecar claims it was trained for ``claimed``."""
    weights = directory / f"{source}-as-{claimed}.safetensors"
    shutil.copy(WEIGHTS / f"{source}.safetensors", weights)
    sidecar = json.loads((WEIGHTS / f"{source}.json").read_text())
    sidecar["observable"] = claimed
    weights.with_suffix(".json").write_text(json.dumps(sidecar))
    return weights


def noisy_copy(path: Path, out: Path, sigma: float, seed: int = 0) -> Path:
    """``path`` with Gaussian noise of ``sigma`` (data units) added to its image."""
    with fits.open(path) as hdul:
        header = hdul[1].header.copy()
        data = np.asarray(hdul[1].data, dtype=np.float32)
    noise = np.random.default_rng(seed).normal(0.0, sigma, data.shape).astype(np.float32)
    for key in ("BLANK", "BSCALE", "BZERO", "CHECKSUM", "DATASUM"):
        header.remove(key, ignore_missing=True)
    hdu = fits.CompImageHDU(data + noise, header=header, compression_type="GZIP_2")
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(out)
    return out


def test_good_frames_carry_their_figures_and_are_within_tolerance(tmp_path):
    for path in [CONTINUUM, *MAGNETOGRAMS]:
        out = enhance_file(path, tmp_path / f"{path.stem}.enhanced.fits", device="cpu")
        header = _header(out)
        figures = quality_from_header(header)
        assert figures["flags"] == "", (path.name, figures)
        # in units of the input noise: 0.49-0.9 here (the 28 cm truth's is 0.65-0.96 on
        # the held-out scenes); far below would mean an output fitted to the noise
        assert 0.4 < figures["forward_residual"] < 20, (path.name, figures)
        assert figures["masked_fraction"] == 0.0
        if "continuum" in path.name:
            # the paper: ~7 % at 28 cm against HMI's ~3.7 %
            assert 0.06 < figures["contrast"] < 0.11 and 0.03 < figures["input_contrast"] < 0.05
            assert math.isnan(figures["flux_ratio"])
        else:
            assert 0.7 < figures["flux_ratio"] < 1.6 and math.isnan(figures["contrast"])
            # gauss, real hmi.M_720s: the histogram core the projection stops at (3.6-5.0 G
            # here; Liu et al. 2012 quote ~6 G for 720 s), the same value as ENHNOISE
            assert 3 < figures["input_noise"] < 8
            assert figures["input_noise"] == pytest.approx(float(header["ENHNOISE"]), rel=1e-3)
            # one name for that figure, in both keywords' comments
            assert header.comments["ENHNOISE"].startswith("input noise sigma (ENHUNIT)")
            assert header.comments["ENHQNOIS"].startswith("input noise sigma (ENHUNIT)")
        assert "out of tolerance" in header.comments["ENHQFLAG"]
        for keyword, _ in QUALITY_KEYWORDS.values():
            assert keyword in header


def test_continuum_enhanced_with_magnetogram_weights_is_out_of_tolerance(tmp_path):
    wrong = relabelled_weights(tmp_path, "magnetogram", "continuum")
    # the magnetogram recipe's "auto" noise estimate finds no quiet-Sun Blos in granulation
    # and takes the spectral level, the continuum estimate: no magnetogram caveat is due
    with warnings.catch_warnings():
        warnings.simplefilter("error", FieldDominatedNoiseWarning)
        out = enhance_file(CONTINUUM, tmp_path / "wrong.fits", weights=wrong, device="cpu")
    assert _header(out)["ENHNSRC"] == "spectral"
    figures = quality_from_header(_header(out))
    assert out.is_file()  # out of tolerance, never dropped
    # the projection must change such an output far to fit its input: the ripple figure is
    # out of tolerance; what is left of the misfit (1.7 x the noise with the magnetogram network
    # of 2026-12-07, 8.7 with the one before; 0.7 with the continuum weights) is within the
    # forward-residual tolerance once the projection ran
    assert figures["flags"].split(",") == ["ripple"]
    assert figures["ripple"] > 10 * QualityTolerances().ripple
    assert 1.2 < figures["forward_residual"] < QualityTolerances().forward_residual


def test_heavily_noised_magnetogram_is_out_of_tolerance(tmp_path):
    noisy = noisy_copy(MAGNETOGRAMS[1], tmp_path / MAGNETOGRAMS[1].name, sigma=200.0)
    out = enhance_file(noisy, tmp_path / "noisy.enhanced.fits", device="cpu")
    figures = quality_from_header(_header(out))
    assert figures["flags"].split(",") == ["input_noise"]
    assert figures["input_noise"] == pytest.approx(200, rel=0.1)


def test_tolerances_decide_the_flags():
    rng = np.random.default_rng(1)
    data = 1 + 0.04 * rng.standard_normal((64, 64))
    enhanced = np.kron(data, np.ones((2, 2)))
    enhanced[:8] = np.nan
    data[:4] = np.nan
    loose = frame_quality(data, enhanced, observable="continuum", quality=0x400)
    assert "masked_fraction" in loose.flags and "quality_bits" not in loose.flags
    strict = frame_quality(
        data,
        enhanced,
        observable="continuum",
        quality=0x400,
        tolerances=QualityTolerances.from_mapping(
            {"quality_mask": "0x400", "masked_fraction": 0.1}
        ),
    )
    assert "quality_bits" in strict.flags and "masked_fraction" not in strict.flags
    assert strict.masked_fraction == pytest.approx(4 / 64)


def test_bad_tolerances_are_one_line_config_errors():
    with pytest.raises(ConfigError, match="unknown quality tolerance bogus"):
        QualityTolerances.from_mapping({"bogus": 1})
    with pytest.raises(ConfigError, match=r"flux_ratio must have 0 <= low < high"):
        QualityTolerances.from_mapping({"flux_ratio": [2, 1]})
    with pytest.raises(ConfigError, match="input_noise must map"):
        QualityTolerances.from_mapping({"input_noise": {"doppler": 3}})
    merged = QualityTolerances.from_mapping({"input_noise": {"magnetogram": 40}})
    assert merged.input_noise == {"magnetogram": 40.0, "continuum": 5e-3}


def test_every_cube_holds_the_per_frame_table_with_the_bad_frame_out_of_tolerance(tmp_path):
    from enhance_hmi.cube import CubeInput, TimeCube, read_enhanced

    good = [
        enhance_file(path, tmp_path / f"{path.stem}.enhanced.fits", device="cpu")
        for path in MAGNETOGRAMS[:2]
    ]
    noisy = noisy_copy(MAGNETOGRAMS[2], tmp_path / MAGNETOGRAMS[2].name, sigma=200.0)
    bad = enhance_file(noisy, tmp_path / "noisy.enhanced.fits", device="cpu")
    cube = TimeCube(tmp_path / "cube.h5")
    cube.append(read_enhanced(path) for path in [*good, bad])
    table = cube.quality_table()
    assert [row["t_rec"][:10] for row in table] == ["2011.12.17", "2016.07.07", "2019.06.21"]
    assert [row["flags"] for row in table] == ["", "", "input_noise"]
    assert table[2]["input_noise"] == pytest.approx(200, rel=0.1)
    # the config may keep frames out of tolerance out of the cube's data instead
    source = CubeInput([*good, bad], out_of_tolerance="exclude")
    kept = TimeCube(tmp_path / "kept.h5")
    assert kept.append(source) == 2
    assert [row["flags"] for row in kept.quality_table()] == ["", ""]
    assert [(item["file"], item["out_of_tolerance"]) for item in source.kept_out] == [
        ("noisy.enhanced.fits", "input_noise")
    ]
    assert source.kept_out_of(kept.times()) == source.kept_out
    assert source.kept_out_of(cube.times()) == []  # a cube that already holds it (kept before)
    with pytest.raises(ConfigError, match="kept or excluded"):
        CubeInput(good, out_of_tolerance="drop")
    assert table[0]["quality"] == 0x10400  # the input's QUALITY bits beside the figures
    for row, path in zip(table, [*good, bad], strict=True):
        figures = quality_from_header(_header(path))
        assert row["forward_residual"] == pytest.approx(figures["forward_residual"])


def test_the_config_key_for_frames_out_of_tolerance_keeps_its_older_name():
    from enhance_hmi.cube import out_of_tolerance_choice

    assert out_of_tolerance_choice({}) == "keep"
    assert out_of_tolerance_choice({"out_of_tolerance": "exclude"}) == "exclude"
    # configs written while the key was cube.flagged
    assert out_of_tolerance_choice({"flagged": "exclude"}) == "exclude"
    assert out_of_tolerance_choice({"flagged": "keep", "out_of_tolerance": "keep"}) == "keep"
    with pytest.raises(ConfigError, match="older name cube.flagged is 'keep'"):
        out_of_tolerance_choice({"out_of_tolerance": "exclude", "flagged": "keep"})
    with pytest.raises(ConfigError, match="use one of keep, exclude"):
        out_of_tolerance_choice({"flagged": "drop"})
