"""The validation outputs of a series (the ``validate`` rule's): quick look, quality, summaries.

Real HDF5 time cubes of the bundled HMI magnetogram, its real input file in a
raw archive, and a real validation report's ``metrics.json``.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import json
from pathlib import Path

import astropy.units as u
import numpy as np
import pytest
from PIL import Image

from enhance_hmi.cube import TimeCube, format_t_rec
from enhance_hmi.frame import Frame
from enhance_hmi.io import read_hmi
from enhance_hmi.physics import degrade
from enhance_hmi.validation.report import ValidationCase, write_report
from enhance_hmi.validation.series_report import latest_quick_look, write_series_validation

SAMPLE = (
    Path(__file__).resolve().parents[1]
    / "enhance_hmi"
    / "data"
    / "sample"
    / "hmi.M_720s.20160707_010000_TAI.3.magnetogram.fits"
)
T0 = dt.datetime(2016, 7, 7, 1, 0, 0)


def _png(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("L"), dtype=float)


def _frame(base: Frame, k: int) -> Frame:
    header = base.header.copy()
    header["T_REC"] = format_t_rec(T0 + dt.timedelta(minutes=12 * k))
    header["QUALITY"] = 0
    data = base.data.astype(np.float32).copy()
    data[:10, :10] = np.nan
    meta = {
        "t_rec": header["T_REC"],
        "quality": 0,
        "input_file": f"in{k}.fits",
        "input_sha256": hashlib.sha256(str(k).encode()).hexdigest(),
        "weights_sha256": "a" * 64,
        "psf_model": "wachter",
    }
    return Frame(data=data, header=header, observable="magnetogram", meta=meta)


def test_series_validation_writes_quick_look_quality_and_summaries(tmp_path):
    base = read_hmi(SAMPLE)
    first, second = TimeCube(tmp_path / "20160707.h5"), TimeCube(tmp_path / "20160708.h5")
    first.append(_frame(base, k) for k in range(2))
    second.append([_frame(base, 5)])
    raw = tmp_path / "raw" / "2016" / "0707"
    raw.mkdir(parents=True)
    (raw / "in1.fits").write_bytes(SAMPLE.read_bytes())  # the first cube's latest input

    rng = np.random.default_rng(0)
    pair = degrade(300 * rng.standard_normal((200, 200)), 0.0662 * u.arcsec)
    enhanced = pair.target + rng.normal(0.0, 1.0, pair.target.shape)  # 1 G from the truth
    case = ValidationCase("twin-a", "magnetogram", pair.input, pair.target, enhanced, "truth")
    html = write_report(case, tmp_path / "twin")

    out = tmp_path / "report"
    out.mkdir()
    summary = write_series_validation(
        [first.path, second.path, tmp_path / "20160709.h5"],  # the last holds no frame yet
        observable="magnetogram",
        series="hmi.M_720s",
        raw_dir=tmp_path / "raw",
        reports={"twins": [html.with_name("metrics.json")], "hinode": []},
        tolerances={"forward_residual": 10},
        figure_path=out / "quicklook.png",
        quality_path=out / "frame_quality.png",
        out_of_tolerance_path=out / "frames_out_of_tolerance.csv",
        summary_path=out / "validation.json",
    )
    assert json.loads((out / "validation.json").read_text()) == json.loads(
        json.dumps(summary, default=str)
    )
    stats = {s["cube"]: s for s in summary["cubes"]}
    assert set(stats) == {"20160707.h5", "20160708.h5"}
    assert stats["20160707.h5"]["frames"] == 2 and stats["20160708.h5"]["frames"] == 1
    assert stats["20160707.h5"]["latest"] == format_t_rec(T0 + dt.timedelta(minutes=12))
    finite = np.isfinite(base.data)
    finite[:10, :10] = False
    assert stats["20160707.h5"]["nan_fraction"] == pytest.approx(1 - finite.mean())
    p1, p99 = np.percentile(base.data[finite], [1, 99])
    assert stats["20160707.h5"]["p1_p99"] == pytest.approx([p1, p99], rel=1e-5)
    assert stats["20160707.h5"]["units"] == "G"
    assert summary["twins"][0]["target"] == "twin-a"
    assert summary["twins"][0]["enhance"]["psnr"] > 40
    assert summary["hinode"] == [] and summary["out_of_tolerance_frames"] == 0
    with open(out / "frames_out_of_tolerance.csv", newline="") as fh:
        reader = csv.reader(fh)
        columns = next(reader)
        assert columns[:3] == ["cube", "t_rec", "quality"] and list(reader) == []
        assert columns[-1] == "out_of_tolerance"
    for name in ("quicklook.png", "frame_quality.png"):
        assert _png(out / name).std() > 5
    # the first cube's latest input is in the raw archive, the second's is not
    look, _ = latest_quick_look(first, observable="magnetogram", raw_dir=tmp_path / "raw")
    assert look.input is not None and look.input.shape == base.data.shape
    look, _ = latest_quick_look(second, observable="magnetogram", raw_dir=tmp_path / "raw")
    assert look.input is None and look.output.shape == base.data.shape
    assert not list(out.glob("*.part"))
