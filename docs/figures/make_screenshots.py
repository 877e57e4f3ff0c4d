"""Regenerate the README's screenshot of the Snakemake report (twin report page).

Runs the workflow on the embedded default configuration
(``config/config.yaml``: the bundled HMI sample, the shipped networks, the
MURaM held-out twin) in a work directory, builds ``snakemake --report
report.html``, opens it in headless Chromium (``tests/report_browser.py``:
the DevTools protocol over pipes, standard library only), shows Results ->
Validation -> twin -> "report page" as its button does and saves the
viewport as ``docs/figures/report_validation_twin.png``. It fails, and
writes no screenshot, when any ``<img>`` of the report or of the page in its
iframe is not drawn (natural size 0).

Usage (about 2 minutes on 2 CPU cores)::

    python docs/figures/make_screenshots.py                  # run in a temporary directory
    python docs/figures/make_screenshots.py --workdir run/   # keep the run; rerun reuses it
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))

from report_browser import Chromium, SnakemakeReport  # noqa: E402

#: The result the screenshot shows: the default twin's report page.
TWIN_PAGE = "out/validation/twin/muram_heldout/continuum/report.html"


def snakemake(workdir: Path, config: Path, *args: str) -> None:
    """Run the workflow in ``workdir`` (2 cores); raise on failure with its log's tail."""
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "workflow" / "Snakefile")]
    cmd += ["--directory", str(workdir), "--configfile", str(config), "--cores", "2", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"snakemake failed:\n{(proc.stdout + proc.stderr)[-3000:]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, help="run directory (default: a temporary one)")
    parser.add_argument("--device", default="cpu", help="config enhance.device (default cpu)")
    parser.add_argument(
        "--output", type=Path, default=REPO / "docs" / "figures" / "report_validation_twin.png"
    )
    parser.add_argument("--width", type=int, default=1400, help="viewport, CSS pixels")
    parser.add_argument("--height", type=int, default=2000, help="viewport, CSS pixels")
    args = parser.parse_args(argv)
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("chromium is not installed (apt-get install chromium)")
    with tempfile.TemporaryDirectory() as scratch:
        workdir = (args.workdir or Path(scratch) / "run").resolve()
        workdir.mkdir(parents=True, exist_ok=True)
        config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
        config["output"] = "out"
        config["enhance"]["device"] = args.device
        path = workdir / "config.yaml"
        path.write_text(yaml.safe_dump(config))
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        snakemake(workdir, path, "--workflow-profile", str(REPO / "profiles" / "local"))
        snakemake(workdir, path, "--report", "report.html")
        with Chromium(
            chromium, Path(scratch) / "profile", width=args.width, height=args.height
        ) as browser:
            report = SnakemakeReport(browser, workdir / "report.html")
            broken = [
                image for page in report.pages() for image in report.images(page) if image.broken
            ]
            if broken:
                lines = [f"{i.result}: <img alt={i.alt!r}> ({i.frame})" for i in broken]
                raise SystemExit("broken images in the report:\n" + "\n".join(lines))
            report.show(TWIN_PAGE)
            shot = browser.screenshot(Path(scratch) / "shot.png")
        args.output.parent.mkdir(parents=True, exist_ok=True)
        part = args.output.with_name(args.output.name + ".part")
        shutil.copyfile(shot, part)
        os.replace(part, args.output)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
