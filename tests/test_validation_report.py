"""Validation reports end to end: synthetic twin, real Hinode file, real browser.

The twin uses the real MURaM quiet-Sun snapshot (HelioML, BSD-3-Clause) in
../shared/data/highres, a short central crop and a tiny randomly initialised
network (``EnhanceNet(n_blocks=1, width=8)``): the point is the machinery
(files, metrics, links), not the science. The Hinode path uses the real
Hinode SOT/NFI file of NOAA 11158 (sunpy test data, BSD-2-Clause) with
synthetic HMI and enhanced frames made from it by the package's own physics,
whose WCS carries a known pointing error, so the co-alignment must find it.
"""

from __future__ import annotations

import base64
import json
import math
import re
import shutil
import subprocess
from pathlib import Path

import astropy.units as u
import numpy as np
import pytest
import torch
from astropy.io import fits
from conftest import require

from enhance_hmi.cli import main
from enhance_hmi.errors import ReportError
from enhance_hmi.frame import Frame
from enhance_hmi.io import upsample_header, write_enhanced
from enhance_hmi.model import EnhanceNet, save_weights
from enhance_hmi.physics import degrade
from enhance_hmi.validation.hinode import read_hinode
from enhance_hmi.validation.report import METHODS, ValidationCase
from enhance_hmi.validation.target import coarse_header, degraded_grid_header

SCENE = Path("highres") / "muram_quiet_ic_0.0662.fits"
HINODE = Path("hinode") / "FGMG4_20110214_030443.7.cols0-879.fits"
HINODE_TIME = "2011-02-14T03:04:43.785"
COMMON_KEYS = ("psnr", "ssim", "pearson", "spectrum_distance", "forward_residual")
#: Pointing error written into the synthetic HMI WCS, in HMI pixels (x, y);
#: the report must find the shift (dy, dx) = (2 ky, 2 kx) enhanced pixels.
INJECTED = (0.8, -0.55)


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    return save_weights(
        EnhanceNet(n_blocks=1, width=8),
        tmp_path_factory.mktemp("w") / "continuum.safetensors",
        metadata={
            "observable": "continuum",
            "psf_model": "wachter",
            "training_data": "untrained: random initialisation (test)",
            "input_normalisation": {"quantity": "continuum", "units": "quiet-Sun", "scale": 1.0},
        },
    )


@pytest.fixture(scope="module")
def twin_report(shared_data, weights, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("twin") / "report"
    argv = ["validate", "--twin", str(shared_data / SCENE), "--pixel-scale", "0.0662"]
    argv += ["--weights", str(weights), "-o", str(out), "--crop", "192", "--device", "cpu"]
    assert main(argv) == 0
    return out


def test_twin_report_files_metrics_and_links(twin_report):
    doc = json.loads((twin_report / "metrics.json").read_text())
    assert doc["kind"] == "twin" and doc["observable"] == "continuum"
    # 192 px x 0.0662" / 0.504" -> 25 input pixels, 50 enhanced
    assert doc["hmi_shape"] == [25, 25] and doc["shape"] == [50, 50]
    for method in METHODS:
        values = doc["methods"][method]
        for key in (*COMMON_KEYS, "rms_contrast", "contrast_difference_pp"):
            assert isinstance(values[key], float) and math.isfinite(values[key]), (method, key)
    # granulation of the 28 cm truth is far more contrasted than HMI's (paper: ~7 % vs 3.8 %)
    truth_contrast = doc["truth_stats"]["rms_contrast"]
    assert 0.05 < truth_contrast < 0.12
    assert doc["hmi_input"]["rms_contrast"] < 0.7 * truth_contrast
    assert doc["methods"]["bicubic"]["psnr"] < doc["methods"]["richardson_lucy"]["psnr"]
    assert doc["provenance"]["weights_sha256"] and doc["provenance"]["scene_file"] == SCENE.name
    page = (twin_report / "report.html").read_text()
    # self-contained: the figures are in the page, the very PNGs written beside it
    sources = re.findall(r'<img src="([^"]+)"', page)
    embedded = [base64.b64decode(src.split(",", 1)[1]) for src in sources]
    assert all(src.startswith("data:image/png;base64,") for src in sources)
    assert embedded == [(twin_report / name).read_bytes() for name in ("images.png", "spectra.png")]
    links = re.findall(r'href="([^"]+)"', page)
    assert links == ["metrics.json"] and (twin_report / "metrics.json").stat().st_size > 1000
    assert doc["spectrum_band_arcsec"] == pytest.approx([0.05 / 0.252, 0.25 / 0.252])
    assert "arcsec<sup>&minus;1</sup>" in page
    assert not list(twin_report.glob("*.part"))


def test_twin_report_runs_the_network_averaged_over_symmetries(
    shared_data, weights, twin_report, tmp_path, capsys
):
    """``--symmetries 2``: the report scores the averaged network and says so."""
    out = tmp_path / "report"
    argv = ["validate", "--twin", str(shared_data / SCENE), "--pixel-scale", "0.0662"]
    argv += ["--weights", str(weights), "--crop", "192", "--device", "cpu"]
    assert main([*argv, "-o", str(out), "--symmetries", "2"]) == 0
    doc = json.loads((out / "metrics.json").read_text())
    one_pass = json.loads((twin_report / "metrics.json").read_text())
    assert doc["context"]["symmetries"] == 2 and one_pass["context"]["symmetries"] == 1
    assert doc["provenance"]["symmetries"] == "2"
    # the random network is not equivariant to a half turn: the mean is another image
    # (its score moves by ~2e-4 dB; the same pass twice gives the same bits)
    psnr_change = doc["methods"]["enhance"]["psnr"] - one_pass["methods"]["enhance"]["psnr"]
    # (this checks the plumbing; that each pass is turned back is tests/test_symmetry.py's)
    assert abs(psnr_change) > 2e-5, psnr_change
    assert doc["methods"]["bicubic"] == one_pass["methods"]["bicubic"]
    capsys.readouterr()
    refused = tmp_path / "refused"
    assert main([*argv, "-o", str(refused), "--symmetries", "3"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "enhance validate: error: --symmetries must be one of 1, 2, 4, 8, got 3", err
    assert not refused.exists()
    hinode = ["validate", "--hinode", str(shared_data / HINODE), "--enhanced", "any.fits"]
    assert main([*hinode, "-o", str(refused), "--symmetries", "2"]) == 2
    assert "--symmetries goes with --twin" in capsys.readouterr().err
    assert not refused.exists()


def _synthetic_frames(directory: Path, hinode: Path) -> tuple[list[Path], list[Path]]:
    """HMI-like and enhanced frames made from the Hinode image, one at its time."""
    image = read_hinode(hinode)
    pair = degrade(image.data, image.pixel_scale, wavelength=image.wavelength)
    fine = degraded_grid_header(image, pair.target.shape, 0.252 * u.arcsec)
    header = fits.Header()
    for key, value in coarse_header(fine).items():
        header[key.upper()] = value
    header["CRPIX1"] += INJECTED[0]
    header["CRPIX2"] += INJECTED[1]
    header.update(TELESCOP="SDO/HMI", CONTENT="MAGNETOGRAM", BUNIT="G")
    hmi, enhanced = [], []
    for tag, when, gain in (("near", HINODE_TIME, 1.0), ("far", "2011-02-14T03:25:00", -1.0)):
        card = header.copy()
        card["DATE-OBS"] = when
        hmi.append(directory / f"hmi.M_45s.{tag}.magnetogram.fits")
        fits.PrimaryHDU((gain * pair.input).astype(np.float32), card).writeto(hmi[-1])
        frame = Frame(
            (gain * pair.target).astype(np.float32),
            upsample_header(card),
            "magnetogram",
            meta={"input_file": hmi[-1].name},
        )
        enhanced.append(directory / f"enhanced.{tag}.fits")
        write_enhanced(enhanced[-1], frame, provenance={"psf_model": "wachter"})
    return hmi, enhanced


@pytest.mark.slow
def test_hinode_target_recovers_pointing_error(shared_data, tmp_path):
    hmi, enhanced = _synthetic_frames(tmp_path, shared_data / HINODE)
    out = tmp_path / "report"
    argv = ["validate", "--hinode", str(shared_data / HINODE), "--enhanced", *enhanced[::-1]]
    assert main([*map(str, argv), "--hmi", *map(str, hmi), "-o", str(out)]) == 0
    doc = json.loads((out / "metrics.json").read_text())
    align = doc["alignment"]
    assert align["enhanced_file"] == "enhanced.near.fits" and align["time_difference_s"] == 0
    assert align["hmi_input"] == "hmi.M_45s.near.magnetogram.fits"
    dy, dx = align["shift_applied_px"]
    assert abs(dy - 2 * INJECTED[1]) < 0.1 and abs(dx - 2 * INJECTED[0]) < 0.1
    assert max(map(abs, align["residual_shift_px"])) < 0.05
    assert align["calibration"]["gain_G"] == pytest.approx(1.0, abs=0.01)
    assert doc["observable"] == "magnetogram" and doc["kind"] == "hinode"
    # the "enhanced" frame is the degraded Hinode image itself: once aligned it must match
    enh = doc["methods"]["enhance"]
    assert enh["pearson"] > 0.999 and enh["unsigned_flux_ratio"] == pytest.approx(1, abs=0.01)
    assert doc["methods"]["bicubic"]["pearson"] < enh["pearson"]
    for method in METHODS:
        for key in (*COMMON_KEYS, "unsigned_flux_Mx", "noise_level_G"):
            assert math.isfinite(doc["methods"][method][key]), (method, key)
    assert any("not calibrated Blos" in note for note in doc["notes"])
    assert "shift_applied_px" in (out / "report.html").read_text()


def test_hinode_target_errors_are_one_line(shared_data, tmp_path, capsys):
    _, enhanced = _synthetic_frames(tmp_path, shared_data / HINODE)
    argv = ["validate", "--hinode", str(shared_data / HINODE), "-o", str(tmp_path / "r")]
    assert main([*argv, "--enhanced", str(enhanced[1]), "--max-dt", "5"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("enhance validate: error: the nearest enhanced frame enhanced.far")
    assert "from the observation at 2011-02-14T03:04:43" in err
    assert len(err.splitlines()) == 1
    assert main(argv) == 2
    assert "--hinode needs --enhanced" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_case_rejects_grids_that_do_not_nest():
    hmi, good, bad = np.ones((16, 16)), np.ones((32, 32)), np.ones((32, 30))
    with pytest.raises(ReportError, match="twice the HMI input"):
        ValidationCase("x", "continuum", hmi, bad, good, "truth")


def _screenshot(chromium: str, page: Path, png: Path) -> np.ndarray:
    from PIL import Image

    cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
    cmd += [f"--screenshot={png}", "--window-size=1200,1600", page.resolve().as_uri()]
    subprocess.run(cmd, capture_output=True, timeout=120, check=True)
    assert png.stat().st_size > 0
    with Image.open(png) as shot:
        return np.asarray(shot.convert("RGB"), dtype=np.float64)


def test_report_opens_in_headless_chromium(twin_report, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    require(chromium is not None, "chromium is not installed")
    # the page alone, nothing beside it: it still shows its figures
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(twin_report / "report.html", alone / "report.html")
    shot = _screenshot(chromium, alone / "report.html", tmp_path / "shot.png")
    assert shot.shape == (1600, 1200, 3)
    assert shot.mean(axis=2).std() > 20  # not blank
    colours = len(np.unique(shot.reshape(-1, 3), axis=0))
    # the same page without its figures: only text and table colours remain
    page = (twin_report / "report.html").read_text()
    (alone / "text.html").write_text(re.sub(r"<img [^>]*>", "", page))
    text_only = _screenshot(chromium, alone / "text.html", tmp_path / "bare.png")
    assert colours > 2 * len(np.unique(text_only.reshape(-1, 3), axis=0))


def test_scoring_border_crops_every_image_and_the_forward_residual():
    """``evaluate(border=...)``: the scorer of ``enhance evaluate`` and of the reports."""
    from enhance_hmi.validation import metrics
    from enhance_hmi.validation.report import evaluate

    rng = np.random.default_rng(4)
    pair = degrade(1 + 0.08 * rng.standard_normal((400, 400)), 0.0662 * u.arcsec)
    truth, hmi = pair.target, pair.input
    enhanced = truth + 0.01 * rng.standard_normal(truth.shape)
    case = ValidationCase("x", "continuum", hmi, truth, enhanced, "truth")
    whole, inner = evaluate(case).metrics, evaluate(case, border=10).metrics
    crop = (slice(10, -10), slice(10, -10))
    assert inner["border_px"] == 10 and whole["border_px"] == 0
    assert inner["methods"]["enhance"]["psnr"] == pytest.approx(
        metrics.psnr(enhanced[crop], truth[crop])
    )
    assert whole["methods"]["enhance"]["psnr"] == pytest.approx(metrics.psnr(enhanced, truth))
    assert inner["methods"]["enhance"]["psnr"] != whole["methods"]["enhance"]["psnr"]
    # the forward residual leaves out the same area: border // 2 input pixels per edge
    expected = metrics.forward_residual_stats(enhanced, hmi, border=5)["relative"]
    assert inner["methods"]["enhance"]["forward_residual"] == pytest.approx(expected)
    assert whole["methods"]["enhance"]["forward_residual"] == pytest.approx(
        metrics.forward_residual_stats(enhanced, hmi)["relative"]
    )
    assert expected != whole["methods"]["enhance"]["forward_residual"]
    for bad in (3, -2, 200):
        with pytest.raises(ReportError, match="border"):
            evaluate(case, border=bad)


def test_hinode_continuum_truth_is_in_read_hmis_quiet_sun_units(shared_data, tmp_path):
    """A BFI-like continuum target: the truth is divided by the field's level at HMI resolution.

    The Hinode file is the real MURaM snapshot in raw intensity units behind
    the real NFI file's SOT header (made a BFI red-continuum header). The HMI
    and enhanced frames are its degradations divided by the quiet-Sun level
    read_hmi would find (that of the HMI-resolution view), so once the truth
    is put in the same units the "enhanced" frame must equal it. A level
    taken on the 28 cm truth itself (MURaM: 8.6 % contrast) would be biased.
    """
    from enhance_hmi.io.normalise import quiet_sun_level

    header = fits.getheader(shared_data / HINODE)
    raw = fits.getdata(shared_data / SCENE).astype(np.float64)
    header.update(
        INSTRUME="SOT/WB", OBS_TYPE="FG (simple)", WAVE="red cont 6684", CDELT1=0.0662,
        CDELT2=0.0662, CRPIX1=raw.shape[1] / 2 + 0.5, CRPIX2=raw.shape[0] / 2 + 0.5,
    )  # fmt: skip
    bfi = tmp_path / "FG_bfi_red.fits"
    fits.PrimaryHDU(raw, header).writeto(bfi)
    image = read_hinode(bfi)
    pair = degrade(image.data, image.pixel_scale, wavelength=image.wavelength)
    level = quiet_sun_level(pair.input)
    card = fits.Header()
    for key, value in coarse_header(
        degraded_grid_header(image, pair.target.shape, 0.252 * u.arcsec)
    ).items():
        card[key.upper()] = value
    card.update(TELESCOP="SDO/HMI", CONTENT="CONTINUUM INTENSITY", DATE_OBS=HINODE_TIME)
    hmi = tmp_path / "hmi.Ic_45s.near.continuum.fits"
    fits.PrimaryHDU((pair.input / level).astype(np.float32), card).writeto(hmi)
    enhanced = tmp_path / "enhanced.near.fits"
    frame = Frame(
        (pair.target / level).astype(np.float32),
        upsample_header(card),
        "continuum",
        meta={"input_file": hmi.name},
    )
    write_enhanced(enhanced, frame, provenance={"psf_model": "wachter"})
    out = tmp_path / "report"
    argv = ["validate", "--hinode", bfi, "--enhanced", enhanced, "--hmi", hmi, "-o", out]
    assert main(list(map(str, argv))) == 0
    doc = json.loads((out / "metrics.json").read_text())
    assert doc["observable"] == "continuum"
    calibration = doc["alignment"]["calibration"]
    assert "HMI resolution" in calibration["method"]
    # the level of the field that overlaps (a box inside the frame) is the frame's
    assert calibration["factor"] == pytest.approx(level, rel=1e-3)
    assert quiet_sun_level(pair.target) / level > 1.01  # what the truth alone would give
    enh = doc["methods"]["enhance"]
    # 1.4 % off in units (the truth's own level) would cap the PSNR near 37 dB
    assert enh["pearson"] > 0.999 and enh["psnr"] > 60
    assert abs(enh["contrast_difference_pp"]) < 0.1
    assert doc["truth_stats"]["rms_contrast"] == pytest.approx(
        doc["methods"]["enhance"]["rms_contrast"], rel=0.01
    )


def test_a_right_magnetogram_misses_a_noisy_input_over_quiet_sun_by_more_than_bicubic():
    """The quiet-Sun forward residual of the scorer, on a field whose truth is known.

    HMI's view of the exact 28 cm image misses the noisy input by the added
    noise; bicubic keeps the noise inside HMI's passband, so its view misses
    by less. The residual and the input noise are those of the real-HMI
    checks (``evaluate_hmi_magnetograms``).
    """
    from scipy import ndimage

    from enhance_hmi.validation import metrics
    from enhance_hmi.validation.report import evaluate

    rng = np.random.default_rng(7)
    weak = ndimage.gaussian_filter(rng.standard_normal((480, 480)), 4.0)
    truth_hr = 6.0 * weak / weak.std()  # internetwork field at 0.126"/px, G
    yy, xx = np.mgrid[:480, :480]
    for y, x, b in ((120, 130, 900.0), (300, 360, -700.0), (380, 100, 600.0)):
        truth_hr += b * np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * 5.0**2))
    pair = degrade(truth_hr, 0.126 * u.arcsec)
    sigma = 10.0
    hmi = pair.input + rng.normal(0.0, sigma, pair.input.shape).astype(np.float32)
    enhanced = pair.target + 0.01 * rng.standard_normal(pair.target.shape)  # PSNR finite
    case = ValidationCase("field", "magnetogram", hmi, pair.target, enhanced, "truth")
    residuals = evaluate(case, border=8).metrics["forward_residuals"]
    truth, bicubic = residuals["truth"], residuals["bicubic"]
    # the noise unit: the input's robust rms over its own quiet-Sun mask (weak field included)
    quiet = metrics.quiet_sun_mask(hmi, kind="blos")
    assert truth["noise"] == pytest.approx(metrics.noise_level(hmi, quiet))
    assert sigma < truth["noise"] < 1.2 * sigma
    assert truth["rms_quiet"] == pytest.approx(sigma, rel=0.1)  # the added noise, in G
    assert bicubic["rms_quiet_in_noise"] < 0.95 * truth["rms_quiet_in_noise"]  # 0.85 x here
    # over the flux concentrations bicubic's blur dominates: it misses by more than the truth
    assert bicubic["rms_field_pixels"] > 2 * truth["rms_field_pixels"]
    # a field with no quiet Sun has no quiet-Sun residual (not the whole field's under that name)
    strong = ValidationCase(
        "strong", "magnetogram", hmi + 400.0, pair.target + 400.0, enhanced + 400.0, "truth"
    )
    none = evaluate(strong, border=8).metrics["forward_residuals"]["truth"]
    assert none["rms_quiet_in_noise"] is None and none["rms"] is not None
