"""Every figure of the Snakemake report is drawn: real workflow, real report, real browser.

The embedded default configuration (``config/config.yaml``: the bundled HMI
sample, the shipped networks with their uncertainty heads, the MURaM
held-out twin) is run by Snakemake; ``snakemake --report`` then writes the
report as one HTML file and as a ``.zip``. Headless Chromium
(``tests/report_browser.py``, DevTools protocol over pipes) opens each,
shows every result the report displays inside itself (figures, and the
validation report pages in their iframe) and reads the natural size of
every ``<img>``: 0 is a broken image. A counter-case puts back the page as
it was written before its figures were embedded (relative links) and must
be caught.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml
from conftest import require
from report_browser import Chromium, SnakemakeReport

REPO = Path(__file__).resolve().parents[1]
SNAKEFILE = REPO / "workflow" / "Snakefile"
TWIN_PAGE = "out/validation/twin/muram_heldout/continuum/report.html"

pytestmark = pytest.mark.slow


def _chromium() -> str:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    require(chromium is not None, "chromium is not installed")
    return chromium


def _snakemake(workdir: Path, config: Path, *args: str) -> None:
    cmd = [sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), "--directory", str(workdir)]
    cmd += ["--configfile", str(config), "--cores", "2", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]


@pytest.fixture(scope="module")
def reports(tmp_path_factory) -> dict[str, Path]:
    """The default run's report as ``html`` (one file) and ``zip`` (unpacked)."""
    workdir = tmp_path_factory.mktemp("run")
    embedded = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    embedded["output"] = "out"
    embedded["enhance"]["device"] = "cpu"
    config = workdir / "config.yaml"
    config.write_text(yaml.safe_dump(embedded))
    profile = ["--workflow-profile", str(REPO / "profiles" / "local")]
    _snakemake(workdir, config, *profile)
    _snakemake(workdir, config, "--report", "report.html")
    _snakemake(workdir, config, "--report", "report.zip")
    with zipfile.ZipFile(workdir / "report.zip") as archive:
        archive.extractall(workdir / "unzipped")
    return {
        "html": workdir / "report.html",
        "zip": next((workdir / "unzipped").glob("*/report.html")),
        "workdir": workdir,
    }


@pytest.fixture
def browser(tmp_path):
    with Chromium(_chromium(), tmp_path / "profile") as chromium:
        yield chromium


@pytest.mark.parametrize("kind", ["html", "zip"])
def test_every_image_of_every_report_page_is_drawn(reports, browser, kind):
    report = SnakemakeReport(browser, reports[kind])
    pages = report.pages()
    assert TWIN_PAGE in pages
    assert sum(p.endswith(".png") for p in pages) >= 8  # quick looks, quality, twin figures
    images = [image for page in pages for image in report.images(page)]
    broken = [image for image in images if image.broken]
    assert not broken, "\n".join(f"{i.result}: {i.frame} <img alt={i.alt!r}>" for i in broken)
    # the twin page shows its three figures inside the report, in the iframe
    twin = [image for image in images if image.result == TWIN_PAGE and image.frame == "page"]
    alts = [image.alt for image in twin]
    assert len(twin) == 3, alts
    assert any("power spectra" in alt for alt in alts)
    assert any("sigma" in alt for alt in alts)
    assert all(image.width >= 800 for image in twin)


def test_a_page_that_links_its_figures_by_name_shows_broken_images(reports, browser):
    """Has teeth: the twin page as written before (relative links) is caught."""
    report = SnakemakeReport(browser, reports["html"])
    page = (reports["workdir"] / TWIN_PAGE).read_text()
    names = iter(["images.png", "spectra.png", "uncertainty.png"])
    linked = re.sub(r'src="data:image/png;base64,[^"]*"', lambda _: f'src="{next(names)}"', page)
    uri = "data:text/html;charset=utf8;base64," + base64.b64encode(linked.encode()).decode()
    browser.evaluate(f"results[{json.dumps(TWIN_PAGE)}].data_uri = {json.dumps(uri)}; true")
    broken = [image for image in report.images(TWIN_PAGE) if image.broken]
    assert [(image.frame, image.src) for image in broken] == [
        ("page", "images.png"),
        ("page", "spectra.png"),
        ("page", "uncertainty.png"),
    ]
