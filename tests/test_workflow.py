"""The Snakemake workflow, run for real (subprocesses, small configs in tmp dirs).

End to end on the bundled sample, a rerun with nothing to do, an extended
range (only new frames enhanced), a run interrupted mid-job and resumed, a
bad configuration, ``snakemake --lint`` and ``snakefmt --check``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import yaml
from astropy.io import fits
from astropy.io.fits.verify import VerifyWarning
from conftest import require

from enhance_hmi.cube import TimeCube

REPO = Path(__file__).resolve().parents[1]
SNAKEFILE = REPO / "workflow" / "Snakefile"
SAMPLE = REPO / "enhance_hmi" / "data" / "sample"
SOURCE = SAMPLE / "hmi.M_720s.20160707_010000_TAI.3.magnetogram.fits"
T0 = dt.datetime(2016, 7, 7, 1, 0, 0)
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def make_archive(directory: Path, slots: list[int], *, size: int = 96) -> Path:
    """A local archive of real (cropped) hmi.M_720s frames at slots T0 + 12 min * k."""
    directory.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", VerifyWarning)  # float BLANK card of JSOC files
        with fits.open(SOURCE) as hdul:
            header = hdul[1].header.copy()
            data = np.asarray(hdul[1].data, dtype=np.float32)
    y0 = (data.shape[0] - size) // 2
    for key in ("BLANK", "BSCALE", "BZERO", "CHECKSUM", "DATASUM"):
        header.remove(key, ignore_missing=True)
    header["CRPIX1"] -= y0
    header["CRPIX2"] -= y0
    for k in slots:
        when = T0 + dt.timedelta(minutes=12 * k)
        header["T_REC"] = when.strftime("%Y.%m.%d_%H:%M:%S_TAI")
        header["DRMS_ID"] = f"hmi.M_720s:{495257 + k}:magnetogram"
        crop = data[y0 : y0 + size, y0 : y0 + size] + np.float32(k)
        name = f"hmi.M_720s.{when:%Y%m%d_%H%M%S}_TAI.3.magnetogram.fits"
        hdu = fits.CompImageHDU(crop, header=header, compression_type="GZIP_2", quantize_level=0)
        fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(directory / name, overwrite=True)
    return directory


def _make_weights(out: Path, **architecture: int) -> dict[str, str]:
    """Freshly initialised networks (no trained weights are needed to test the plumbing)."""
    try:
        import enhance_hmi.inference  # noqa: F401  (the enhancement jobs need it)
        from enhance_hmi.model import EnhanceNet, save_weights
    except ModuleNotFoundError as exc:
        require(False, f"the network code is not installed yet ({exc})")
    import torch

    paths = {}
    for observable in ("magnetogram", "continuum"):
        torch.manual_seed(0)
        scale = 1000.0 if observable == "magnetogram" else 1.0
        paths[observable] = str(
            save_weights(
                EnhanceNet(**architecture),
                out / f"{observable}.safetensors",
                metadata={
                    "observable": observable,
                    "psf_model": "wachter",
                    "training_data": "none: untrained test network",
                    "input_normalisation": {
                        "quantity": observable,
                        "units": "G" if scale > 1 else "quiet-Sun",
                        "scale": scale,
                    },
                },
            )
        )
    return paths


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> dict[str, str]:
    """A tiny untrained network: fast, enough to test the plumbing."""
    return _make_weights(tmp_path_factory.mktemp("weights"), n_blocks=1, width=8)


@pytest.fixture(scope="module")
def paper_weights(tmp_path_factory) -> dict[str, str]:
    """The paper's architecture, untrained: slow enough (seconds per frame) to interrupt."""
    return _make_weights(tmp_path_factory.mktemp("paper"))


def write_config(path: Path, **values: object) -> Path:
    config = {"enhance": {"device": "cpu", "tile": 64, "frames_per_job": 4}, **values}
    path.write_text(yaml.safe_dump(config))
    return path


def snakemake(workdir: Path, config: Path, *args: str, timeout: float = 240) -> str:
    """Run the workflow in ``workdir`` with the local profile; return its output."""
    cmd = [
        *SNAKEMAKE,
        "-s",
        str(SNAKEFILE),
        "--directory",
        str(workdir),
        "--configfile",
        str(config),
        "--workflow-profile",
        str(REPO / "profiles" / "local"),
        "--cores",
        "2",
        *args,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    output = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise AssertionError(f"snakemake failed ({proc.returncode}):\n{output[-4000:]}")
    return output


def job_counts(output: str) -> dict[str, int]:
    """Jobs that ran, per rule, from the "rule NAME:" lines of a snakemake log."""
    counts: dict[str, int] = {}
    for match in re.finditer(r"^(?:local)?(?:rule|checkpoint) (\w+):$", output, re.MULTILINE):
        counts[match.group(1)] = counts.get(match.group(1), 0) + 1
    return counts


def frame_files(out: Path) -> dict[str, float]:
    return {p.name: p.stat().st_mtime_ns for p in out.glob("enhanced/*/*/*/*.fits")}


@pytest.mark.slow
def test_bad_config_fails_with_clear_message(tmp_path):
    cases = {
        "bogus: 1\n": "Additional properties are not allowed ('bogus' was unexpected)",
        "enhance:\n  tile: 8\n": "8 is less than the minimum of 16",
        "source: jsoc\ncadence: 12m\n": "needs start, end (a time or now) and cadence",
        "source: /no/such/dir\n": "is not sample, jsoc, kis, an http(s) URL or an existing",
        "start: 2014-01-02\nend: 2014-01-01\n": "end 2014-01-01 is before start",
        # the older name of cube.out_of_tolerance is still read, so the two may not disagree
        "cube:\n  out_of_tolerance: exclude\n  flagged: keep\n": "its older name cube.flagged",
    }
    for text, message in cases.items():
        config = tmp_path / "bad.yaml"
        config.write_text(text)
        proc = subprocess.run(
            [*SNAKEMAKE, "-s", str(SNAKEFILE), "-d", str(tmp_path), "--configfile", str(config)]
            + ["-n"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode != 0
        assert message in proc.stdout + proc.stderr, text


def test_lint_and_snakefmt_clean(tmp_path):
    lint = subprocess.run(
        [*SNAKEMAKE, "--lint", "-s", str(SNAKEFILE), "-d", str(tmp_path)]
        + ["--configfile", str(REPO / "config" / "config.yaml")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert "Congratulations, your workflow is in a good condition" in lint.stdout + lint.stderr
    require(shutil.which("snakefmt") is not None, "snakefmt is not installed")
    fmt = subprocess.run(
        ["snakefmt", "--check", str(REPO / "workflow")], capture_output=True, text=True
    )
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr


@pytest.mark.slow
def test_sample_end_to_end_then_nothing_to_do_and_report(tmp_path, weights):
    embedded = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    embedded["weights"] = weights
    embedded["output"] = "out"
    embedded["enhance"].update(device="cpu", tile=64)
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(embedded))
    first = snakemake(tmp_path, config)
    out = tmp_path / "out"
    magnetograms = sorted((out / "cubes" / "hmi.M_720s").glob("*.h5"))
    assert len(magnetograms) == 3  # three sample days, one cube each
    maps = TimeCube(magnetograms[0]).read_maps()
    assert len(maps) == 1 and maps[0].data.shape == (512, 512)  # 2x the 256^2 crop
    assert TimeCube(magnetograms[0]).attributes()["weights_sha256"]
    assert len(list((out / "cubes" / "hmi.Ic_45s").glob("*.h5"))) == 1
    assert job_counts(first)["enhance_batch"] == 4
    frames = (out / "report" / "hmi.M_720s" / "frames.csv").read_text().splitlines()
    assert len(frames) == 4 and all(",in cube" in line for line in frames[1:])

    again = snakemake(tmp_path, config)
    assert "Nothing to be done" in again and job_counts(again) == {}

    snakemake(tmp_path, config, "--report", "report.html")
    html = (tmp_path / "report.html").read_text()
    assert "Completeness" in html and "Validation" in html and "frames.csv" in html


@pytest.mark.slow
def test_extended_range_processes_only_new_frames(tmp_path, weights):
    archive = make_archive(tmp_path / "archive", [0, 1, 2, 4, 5])  # slot 3 is a gap
    base = {
        "source": str(archive),
        "series": ["hmi.M_720s"],
        "start": "2016-07-07T01:00:00",
        "cadence": "12m",
        "weights": weights,
        "output": "out",
    }
    config = write_config(tmp_path / "c1.yaml", **base, end="2016-07-07T01:24:00")
    snakemake(tmp_path, config)
    out = tmp_path / "out"
    before = frame_files(out)
    assert len(before) == 3
    config = write_config(tmp_path / "c2.yaml", **base, end="2016-07-07T02:00:00")
    second = snakemake(tmp_path, config)
    after = frame_files(out)
    assert len(after) == 5
    assert all(after[name] == mtime for name, mtime in before.items())  # nothing redone
    markers = {p.stem: json.loads(p.read_text()) for p in out.glob("enhanced/*/batches/*.json")}
    assert sorted(markers) == ["20160707-0001", "20160707-0002"]
    new = markers["20160707-0002"]["frames"]  # frames 4 and 5 only, enhanced in the new batch
    assert [(f["t_rec"][11:16], f["status"]) for f in new] == [
        ("01:48", "enhanced"),
        ("02:00", "enhanced"),
    ]
    # batches are fixed on the slot grid (4 slots each): 01:00-01:24 are slots 5-7 of the
    # day, in batch 1 with 00:48, untouched; 01:48 and 02:00 fill the new batch 2 alone
    assert job_counts(second)["enhance_batch"] == 1
    cube = TimeCube(out / "cubes" / "hmi.M_720s" / "20160707.h5")
    assert [t[11:16] for t in cube.times()] == ["01:00", "01:12", "01:24", "01:48", "02:00"]
    table = (out / "report" / "hmi.M_720s" / "frames.csv").read_text()
    assert "2016.07.07_01:36:00_TAI,missing" in table


@pytest.mark.slow
def test_frames_out_of_tolerance_kept_out_of_the_cube_when_the_config_says_so(tmp_path):
    """``cube.out_of_tolerance: exclude``: a frame out of tolerance is listed, not cubed."""
    archive = make_archive(tmp_path / "archive", [0, 1, 2])
    noisy = sorted(archive.glob("*.fits"))[1]  # 01:12, its input 200 G noisier
    with fits.open(noisy) as hdul:
        header, data = hdul[1].header.copy(), np.asarray(hdul[1].data, dtype=np.float32)
    data += np.random.default_rng(0).normal(0, 200, data.shape).astype(np.float32)
    hdu = fits.CompImageHDU(data, header=header, compression_type="GZIP_2", quantize_level=0)
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(noisy, overwrite=True)
    config = write_config(
        tmp_path / "c.yaml",
        source=str(archive),
        series=["hmi.M_720s"],
        start="2016-07-07T01:00:00",
        end="2016-07-07T01:24:00",
        cadence="12m",
        output="out",
        cube={"out_of_tolerance": "exclude"},
    )
    snakemake(tmp_path, config)
    out = tmp_path / "out"
    assert len(frame_files(out)) == 3  # every frame enhanced and kept as a file
    cube = TimeCube(out / "cubes" / "hmi.M_720s" / "20160707.h5")
    assert [t[11:16] for t in cube.times()] == ["01:00", "01:24"]
    summary = json.loads((out / "cubes" / "hmi.M_720s" / "20160707.json").read_text())
    kept_out = [(item["t_rec"][11:16], item["out_of_tolerance"]) for item in summary["kept_out"]]
    assert kept_out == [("01:12", "input_noise")]
    table = (out / "report" / "hmi.M_720s" / "frames.csv").read_text()
    assert re.search(
        r"01:12:00_TAI,kept out of cube \(out of tolerance\),verified,"
        r".*figures out of tolerance: input_noise",
        table,
    )


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.slow
def test_interrupted_run_resumes_without_redoing(tmp_path, paper_weights):
    archive = make_archive(tmp_path / "archive", list(range(4)), size=256)
    config = write_config(
        tmp_path / "c.yaml",
        source=str(archive),
        series=["hmi.M_720s"],
        weights=paper_weights,
        output="out",
        enhance={"device": "cpu", "tile": 64, "frames_per_job": 12},  # slots 5-8: one batch
    )
    cmd = [
        *SNAKEMAKE,
        "-s",
        str(SNAKEFILE),
        "-d",
        str(tmp_path),
        "--configfile",
        str(config),
        "--workflow-profile",
        str(REPO / "profiles" / "local"),
        "--cores",
        "1",
    ]
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        # a suite started in the background by a shell inherits SIGINT ignored, and
        # so would snakemake: give it the default, as a terminal's Ctrl-C finds it
        preexec_fn=_default_sigint,
    )
    out = tmp_path / "out"
    try:
        deadline = time.monotonic() + 180
        while not frame_files(out):
            assert proc.poll() is None, "snakemake ended before the first frame was written"
            assert time.monotonic() < deadline
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGINT)  # snakemake ignores SIGTERM
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    first = frame_files(out)
    assert 1 <= len(first) < 4, "the interruption came too late to test a resume"
    assert not list(out.glob("enhanced/*/batches/*.json"))  # the batch did not complete
    snakemake(tmp_path, config)
    after = frame_files(out)
    assert len(after) == 4
    assert all(after[name] == mtime for name, mtime in first.items())
    cube = TimeCube(out / "cubes" / "hmi.M_720s" / "20160707.h5")
    assert len(cube.times()) == 4
