"""Validation reports show the predicted sigma and its calibration (real scene, real browser)."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import require

from enhance_hmi.cli import main
from enhance_hmi.model import EnhanceNet, save_weights
from enhance_hmi.model.uncertainty import SigmaHead, save_sigma_head, uncertainty_path

SCENE = Path("highres") / "muram_quiet_ic_0.0662.fits"


@pytest.fixture(scope="module")
def reports(shared_data, tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("w")
    torch.manual_seed(0)
    weights = save_weights(
        EnhanceNet(n_blocks=1, width=8),
        folder / "continuum.safetensors",
        metadata={
            "observable": "continuum",
            "psf_model": "wachter",
            "input_normalisation": {"quantity": "continuum", "units": "quiet-Sun", "scale": 1.0},
        },
    )
    save_sigma_head(
        SigmaHead(width=8, hidden=4), uncertainty_path(weights), backbone=weights, metadata={}
    )
    out = {}
    for name in ("with", "without"):
        if name == "without":
            uncertainty_path(weights).unlink()
        out[name] = tmp_path_factory.mktemp(name) / "report"
        argv = ["validate", "--twin", str(shared_data / SCENE), "--pixel-scale", "0.0662"]
        argv += ["--weights", str(weights), "-o", str(out[name]), "--crop", "160"]
        assert main([*argv, "--device", "cpu"]) == 0
    return out


def test_report_has_sigma_figure_and_coverage(reports):
    report = reports["with"]
    doc = json.loads((report / "metrics.json").read_text())
    cov = doc["uncertainty"]
    assert 0.0 <= cov["within_1sigma"] <= cov["within_2sigma"] <= 1.0
    assert cov["median_sigma"] > 0 and cov["rms_error"] > 0
    assert doc["figures"]["uncertainty"] == "uncertainty.png"
    _assert_four_panel_figure(report / "uncertainty.png")
    html = (report / "report.html").read_text()
    figure = base64.b64encode((report / "uncertainty.png").read_bytes()).decode()
    assert f'src="data:image/png;base64,{figure}"' in html and "within 1&nbsp;sigma" in html
    # a network without a head: no uncertainty section, nothing invented
    bare = reports["without"]
    assert "uncertainty" not in json.loads((bare / "metrics.json").read_text())
    assert not (bare / "uncertainty.png").exists()
    page = (bare / "report.html").read_text()
    assert "<h2>Uncertainty</h2>" not in page and page.count("<img ") == 2


def _assert_four_panel_figure(path: Path) -> None:
    """``path`` is the 13 x 3.4 in (80 dpi) strip: two colour-mapped images, two line plots.

    Measured on the report above, per quarter of the width: the image panels
    are 37 % saturated colour (magma) in about 500 distinct colours; the
    line plots 5-6 % ink, 0.5 % of it the coloured curve. A blank or all-NaN
    image has no colour; a plot without its curve is grey axes only.
    """
    from matplotlib.image import imread

    rgb = imread(path)[..., :3]
    assert rgb.shape == (272, 1040, 3), rgb.shape  # 13 x 3.4 in at 80 dpi
    for number, panel in enumerate(np.array_split(rgb, 4, axis=1), 1):
        colour = panel.max(axis=2) - panel.min(axis=2) > 0.2
        if number <= 2:
            distinct = np.unique((panel[colour] * 255).astype(np.uint8), axis=0)
            assert colour.mean() > 0.2 and len(distinct) > 100, (number, colour.mean())
        else:
            ink = (panel < 0.9).any(axis=2).mean()
            assert ink > 0.02 and colour.mean() > 0.002, (number, ink, colour.mean())


def _screenshot(chromium: str, page: Path, png: Path) -> np.ndarray:
    from PIL import Image

    cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
    cmd += [f"--screenshot={png}", "--window-size=1200,2600", page.resolve().as_uri()]
    subprocess.run(cmd, capture_output=True, timeout=120, check=True)
    with Image.open(png) as shot:
        return np.asarray(shot.convert("RGB"), dtype=np.float64)


def test_sigma_figure_renders_in_headless_chromium(reports, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    require(chromium is not None, "chromium is not installed")
    # the page alone (the figures are embedded), and the same page without the sigma figure
    alone = tmp_path / "alone"
    alone.mkdir()
    page = (reports["with"] / "report.html").read_text()
    (alone / "report.html").write_text(page)
    shot = _screenshot(chromium, alone / "report.html", tmp_path / "with.png")
    start = page.index('<p><img src="data:image/png;base64,', page.index("<h2>Uncertainty</h2>"))
    (alone / "missing.html").write_text(page[:start] + page[page.index("</p>", start) + 4 :])
    missing = _screenshot(chromium, alone / "missing.html", tmp_path / "missing.png")
    changed = np.abs(shot - missing).sum(axis=2) > 30
    assert changed.mean() > 0.03, f"only {changed.mean():.3%} of the page shows the figure"
