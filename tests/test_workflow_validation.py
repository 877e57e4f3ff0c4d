"""Validation inside the workflow: Hinode targets, the default twin, frames out of tolerance.

Real parts only: real Snakemake runs of ``workflow/Snakefile``, the real
``drms`` client against the JSOC stand-in on 127.0.0.1
(``tests/jsoc_standin.py``), the real Hinode SOT/NFI magnetogram of
``../shared/data`` and an HMI frame made from it by the package's physics
(:func:`enhance_hmi.physics.degrade`) with a known pointing error, the shipped
networks and the bundled real HMI frames.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import astropy.units as u
import numpy as np
import pandas as pd
import pytest
import yaml
from astropy.io import fits
from astropy.time import Time
from jsoc_standin import JsocStandin, _crop_template

from enhance_hmi.cube import TimeCube
from enhance_hmi.physics import degrade
from enhance_hmi.validation.hinode import read_hinode
from enhance_hmi.validation.target import coarse_header, degraded_grid_header

REPO = Path(__file__).resolve().parents[1]
SNAKEFILE = REPO / "workflow" / "Snakefile"
SAMPLE = REPO / "enhance_hmi" / "data" / "sample"
HINODE = "hinode/FGMG4_20110214_030443.7.cols0-879.fits"
EMAIL = "john.doe@example.org"
#: Pointing error of the HMI frame's header, HMI pixels (dx, dy): the header
#: says the frame lies this far from where the Hinode image puts it.
POINTING_ERROR = (1.3, -0.9)
#: NFI V/I to gauss of the made HMI frame (within the 1.5-3 G/DN of
#: enhance_hmi.training.scenes.NFI_VI_GAUSS_PER_DN).
GAUSS_PER_DN = 2.0


def hmi_frame_from_hinode(hinode: Path, out: Path, *, noise: float = 10.0) -> tuple[Path, Time]:
    """An hmi.M_45s-like JSOC file of the Hinode field, seen by HMI, its WCS off by POINTING_ERROR.

    The Hinode image is degraded by :func:`enhance_hmi.physics.degrade` (HMI PSF,
    0.504"/px), put in gauss and given 10 G of noise; its header is the
    0.504"/px grid nested in the Hinode grid with CRPIX moved by
    :data:`POINTING_ERROR`, the observer of the Hinode file (Earth) and the
    Hinode observation time.
    """
    image = read_hinode(hinode)
    pair = degrade(image.data, image.pixel_scale, wavelength=image.wavelength)
    fine = degraded_grid_header(image, pair.target.shape, 0.252 * u.arcsec)
    header = fits.Header()
    for key, value in coarse_header(fine).items():
        header[key.upper()] = value
    header["CRPIX1"] += POINTING_ERROR[0]
    header["CRPIX2"] += POINTING_ERROR[1]
    when = Time(image.date_obs, scale="utc")
    header.update(
        TELESCOP="SDO/HMI",
        INSTRUME="HMI_SIDE1",
        CONTENT="MAGNETOGRAM",
        BUNIT="Gauss",
        T_REC="2000.01.01_00:00:00_TAI",
        T_OBS="2000.01.01_00:00:00.00_TAI",
        QUALITY=0,
        DRMS_ID="hmi.M_45s:0:magnetogram",
        RECNUM=0,
        CAMERA=2,
    )
    header["DATE-OBS"] = when.utc.isot
    rng = np.random.default_rng(1)
    data = GAUSS_PER_DN * pair.input + rng.normal(0.0, noise, pair.input.shape)
    hdu = fits.CompImageHDU(
        data.astype(np.float32), header=header, compression_type="GZIP_2", quantize_level=0.0
    )
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(out)
    return out, when


class HinodeStandin(JsocStandin):
    """The JSOC stand-in serving one made file per series, observed at a given time.

    Every record of the series is ``files[series]`` with its per-record
    keywords; ``T_OBS`` and ``DATE-OBS`` are the given observation time (the
    stand-in's own files say ``T_REC - 8 s``).
    """

    def __init__(self, files: dict[str, Path], times: dict[str, Time], **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.files, self.times = files, times

    def template(self, series):
        with self._lock:
            if series.name not in self._templates:
                path = self.files[series.name]
                with fits.open(path) as hdul:
                    size = min(hdul[1].data.shape)
                blob, offsets = _crop_template(path, series, size)
                self._templates[series.name] = (blob, offsets)
                with fits.open(io.BytesIO(blob)) as hdul:
                    self._header_values[series.name] = hdul[1].header.copy()
            return self._templates[series.name]

    def file_bytes(self, series, when):
        out = bytearray(super().file_bytes(series, when))
        _, offsets = self.template(series)
        t_obs = self.times[series.name]
        stamp = t_obs.tai.strftime("%Y.%m.%d_%H:%M:%S.%f")[:-4] + "_TAI"
        for key, value in (("T_OBS", stamp), ("DATE-OBS", t_obs.utc.isot)):
            out[offsets[key] : offsets[key] + 80] = fits.Card(key, value).image.encode()
        return bytes(out)


def run_workflow(workdir: Path, config: Path, *args: str, timeout: float = 1200):
    cmd = [*(sys.executable, "-m", "snakemake"), "-s", str(SNAKEFILE), "-d", str(workdir)]
    cmd += ["--configfile", str(config), "--workflow-profile", str(REPO / "profiles" / "local")]
    cmd += ["--cores", "2", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ENHANCE_JSOC_EMAIL": EMAIL}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    return proc.returncode, proc.stdout + proc.stderr


def write_config(path: Path, **values: object) -> Path:
    config = {"enhance": {"device": "cpu", "tile": 128, "frames_per_job": 4}, **values}
    path.write_text(yaml.safe_dump(config))
    return path


def far_copy(hinode: Path, out: Path, when: str) -> Path:
    """The Hinode file observed at ``when`` instead (no HMI frame near it on the stand-in)."""
    with fits.open(hinode) as hdul:
        hdul[0].header["DATE_OBS"] = when
        hdul.writeto(out)
    return out


@pytest.mark.slow
@pytest.mark.shared_data
def test_hinode_targets_fetch_their_hmi_frame_and_report(shared_data, tmp_path):
    hinode = shared_data / HINODE
    made, when = hmi_frame_from_hinode(hinode, tmp_path / "made.fits")
    far = far_copy(hinode, tmp_path / "FGMG4_far.fits", "2011-02-14T09:00:00.000")
    standin = HinodeStandin({"hmi.M_45s": made}, {"hmi.M_45s": when})
    standin.last = (when + 1 * u.h).tai.datetime  # no record near the far file's 09:00
    standin.registered.add(EMAIL)
    standin.start()
    try:
        base = {
            "source": standin.url,
            "series": ["hmi.M_45s"],
            # the run's own range is hours before the Hinode observation
            "start": "2011-02-14T00:00:00",
            "end": "2011-02-14T00:00:45",
            "cadence": "45s",
            "output": "out",
            "jsoc": {"retries": 2, "retry_wait": 0.01},
            "validation": {"twins": [], "hinode": [str(hinode), str(far)]},
            # the report runs the network as the run does: averaged over the sign of the field
            "enhance": {"device": "cpu", "tile": 128, "frames_per_job": 4, "symmetries": 2},
        }
        config = write_config(tmp_path / "config.yaml", **base)
        code, output = run_workflow(tmp_path, config)
        assert code == 0, output[-4000:]
        out = tmp_path / "out"
        doc = json.loads((out / "validation/hinode" / hinode.stem / "metrics.json").read_text())
        assert doc["status"] == "validated" and doc["observable"] == "magnetogram"
        align = doc["alignment"]
        assert align["enhanced_file"].startswith("hmi.M_45s.20110214_0305")
        assert abs(align["time_difference_s"]) < 1
        dy, dx = align["shift_applied_px"]  # enhanced pixels: twice the HMI pointing error
        assert abs(dx - 2 * POINTING_ERROR[0]) < 0.1 and abs(dy - 2 * POINTING_ERROR[1]) < 0.1
        methods = doc["methods"]
        assert methods["enhance"]["psnr"] > methods["bicubic"]["psnr"]
        assert (out / "validation/hinode" / hinode.stem / "images.png").stat().st_size > 10_000
        assert doc["context"]["symmetries"] == 2 and doc["provenance"]["symmetries"] == "2"
        (enhanced,) = (out / "validation/hinode" / hinode.stem / "enhanced").glob("*.fits")
        with fits.open(enhanced) as hdul:
            image = next(h for h in hdul if h.header.get("NAXIS") == 2)
            assert str(image.header["ENHSYMM"]) == "2"
        # the far file: an entry, not a crash
        entry = json.loads((out / "validation/hinode/FGMG4_far/metrics.json").read_text())
        assert entry["status"] == "no HMI frame" and "within 30.0 min" in entry["reason"]
        page = (out / "validation/hinode/FGMG4_far/report.html").read_text()
        assert "no HMI frame" in page
        summary = json.loads((out / "report/hmi.M_45s/validation.json").read_text())
        status = {e["target"]: e["status"] for e in summary["hinode"]}
        assert status == {hinode.stem: "validated", "FGMG4_far": "no HMI frame"}

        strict = {**base, "validation": {"twins": [], "hinode": [str(far)], "strict": True}}
        config = write_config(tmp_path / "strict.yaml", **strict)
        # strict applies to the targets validated by the run: force the one already written
        code, output = run_workflow(tmp_path, config, "--forcerun", "validation_hinode")
        assert code != 0
        assert "validation FGMG4_far: FGMG4_far.fits: no hmi.M_45s frame" in output
    finally:
        standin.stop()


def noisy_archive(directory: Path, sigma: float = 200.0) -> Path:
    """The bundled sample, one magnetogram with heavy Gaussian noise added (the bad frame)."""
    shutil.copytree(SAMPLE, directory)
    bad = directory / "hmi.M_720s.20160707_010000_TAI.3.magnetogram.fits"
    with fits.open(bad) as hdul:
        header = hdul[1].header.copy()
        data = np.asarray(hdul[1].data, dtype=np.float32)
    noise = np.random.default_rng(0).normal(0.0, sigma, data.shape).astype(np.float32)
    for key in ("BLANK", "BSCALE", "BZERO", "CHECKSUM", "DATASUM"):
        header.remove(key, ignore_missing=True)
    hdu = fits.CompImageHDU(data + noise, header=header, compression_type="GZIP_2")
    bad.unlink()
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(bad)
    return directory


@pytest.mark.slow
def test_default_run_validates_and_lists_the_frame_out_of_tolerance(tmp_path):
    """The embedded default (shipped weights, shipped truth crop) with one bad frame."""
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["source"] = str(noisy_archive(tmp_path / "archive"))
    config["output"] = "out"
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    code, output = run_workflow(tmp_path, path)
    assert code == 0, output[-4000:]
    out = tmp_path / "out"
    twin = out / "validation/twin/muram_heldout/continuum"
    doc = json.loads((twin / "metrics.json").read_text())
    psnr = {name: method["psnr"] for name, method in doc["methods"].items()}
    assert psnr["enhance"] > psnr["tikhonov"] > psnr["bicubic"]
    assert doc["summary"]["enhance_beats_tikhonov_psnr"] is True
    assert (twin / "images.png").stat().st_size > 10_000
    # the bad frame is out of tolerance in its cube's table and listed; the good ones are not
    flags = {}
    for cube in sorted((out / "cubes/hmi.M_720s").glob("*.h5")):
        for row in TimeCube(cube).quality_table():
            flags[row["t_rec"][:10]] = row["flags"]
    assert flags == {"2011.12.17": "", "2016.07.07": "input_noise", "2019.06.21": ""}
    listed = pd.read_csv(out / "report/hmi.M_720s/frames_out_of_tolerance.csv", dtype=str)
    assert list(listed["t_rec"].str[:10]) == ["2016.07.07"]
    assert list(listed["out_of_tolerance"]) == ["input_noise"]
    summary = json.loads((out / "report/hmi.M_720s/validation.json").read_text())
    assert summary["out_of_tolerance_frames"] == 1
    continuum = json.loads((out / "report/hmi.Ic_45s/validation.json").read_text())
    assert continuum["out_of_tolerance_frames"] == 0
    assert continuum["twins"][0]["target"] == "muram_heldout"
    code, output = run_workflow(tmp_path, path, "--report", "report.html")
    assert code == 0, output[-4000:]
    html = (tmp_path / "report.html").read_text()
    for name in ("muram_heldout", "metrics.json", "frame_quality.png", "frames_out_of_tolerance"):
        assert name in html, name


def test_default_config_names_the_shipped_truth():
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    assert config["validation"]["twins"] == [
        {"scene": "sample", "name": "muram_heldout", "observable": "continuum"}
    ]
    from enhance_hmi.validation.shipped_truth import shipped_truth

    with fits.open(shipped_truth()) as hdul:
        assert hdul[0].data.shape == (640, 319) and hdul[0].header["HOLDOUT"] == 0.35
    assert shipped_truth().stat().st_size < 500_000
