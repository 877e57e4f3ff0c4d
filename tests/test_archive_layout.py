"""Where the workflow keeps enhanced frames: one folder per TAI day, named after the input."""

from __future__ import annotations

from pathlib import Path

import pytest

from enhance_hmi.batch import enhanced_frame_path


@pytest.mark.parametrize(
    ("t_rec", "input_file", "expected"),
    [
        (
            "2014.12.31_23:59:24_TAI",
            "raw/2014/hmi.M_720s.20141231_235924_TAI.3.magnetogram.fits",
            "2014/1231/hmi.M_720s.20141231_235924_TAI.3.magnetogram.enhanced.fits",
        ),
        # a 45 s slot with a fraction of a second; the TAI day, not the UTC one
        (
            "2016.07.07_00:00:00.600_TAI",
            "hmi.Ic_45s.20160707_000000_TAI.2.continuum.fits",
            "2016/0707/hmi.Ic_45s.20160707_000000_TAI.2.continuum.enhanced.fits",
        ),
        ("2011-02-14T03:04:43", "cutout", "2011/0214/cutout.enhanced.fits"),
    ],
)
def test_enhanced_frame_path(tmp_path, t_rec, input_file, expected):
    assert enhanced_frame_path(tmp_path / "frames", t_rec, input_file) == (
        tmp_path / "frames" / Path(expected)
    )
