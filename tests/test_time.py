"""The one time model (enhance_hmi.time) and the modules that read times through it.

The acquisition, the cube layout and index, the Hinode target and the
workflow once had a parser each; they disagreed on sub-second ``T_REC``
values, date-only strings and UTC. These tests feed the same texts to every
consumer and check that they agree with each other and with astropy.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.time import Time

from enhance_hmi.acquire import get_series
from enhance_hmi.acquire.timespec import snap_up
from enhance_hmi.cube import CubeLayout, TimeCube
from enhance_hmi.errors import ConfigError, InputError, TimeFormatError
from enhance_hmi.frame import Frame
from enhance_hmi.io import read_hmi
from enhance_hmi.time import (
    T_REC_EPOCH,
    file_time,
    format_t_rec,
    grid_floor,
    parse_t_rec,
    parse_time,
    tai_datetime,
)
from enhance_hmi.validation.target import frame_time

REPO = Path(__file__).resolve().parents[1]
SAMPLE = (
    REPO / "enhance_hmi" / "data" / "sample" / "hmi.M_720s.20160707_010000_TAI.3.magnetogram.fits"
)

SUB_SECOND = "2014.01.01_06:00:00.600_TAI"
SUB_SECOND_TAI = dt.datetime(2014, 1, 1, 6, 0, 0, 600000)

#: Every accepted spelling of one TAI instant, 2014-01-01 00:12:00 TAI.
SPELLINGS = [
    "2014.01.01_00:12:00_TAI",
    "2014.01.01_00:12_TAI",
    "2014-01-01T00:12:00",
    "2014-01-01 00:12:00",
    "2014-01-01T00:12",
    "2014-01-01T00:12:00 TAI",
    "2014-01-01T00:11:25Z",  # UTC = TAI - 35 s in 2014
    "2014.01.01_00:11:25_UTC",
    "2014-01-01T00:11:25 UTC",
]


@pytest.mark.parametrize("text", SPELLINGS)
def test_every_spelling_is_one_instant(text: str) -> None:
    assert tai_datetime(text) == dt.datetime(2014, 1, 1, 0, 12)
    assert parse_time(text).scale == "tai"
    assert parse_time(text).to_datetime() == dt.datetime(2014, 1, 1, 0, 12)


@pytest.mark.parametrize(
    "text",
    [
        "2014-01-01T00:00:00",
        "2014-01-01",
        "2016-12-31T23:59:59.250",
        "2017-01-01T00:00:00",
        "1993-01-01",
        "2011-02-14T03:04:43.785",
    ],
)
def test_utc_conversion_is_astropy_s(text: str) -> None:
    """UTC texts (no suffix, scale="utc") become exactly what astropy makes of them."""
    want = Time(text, scale="utc").tai.to_datetime()
    assert tai_datetime(text, scale="utc") == want
    assert tai_datetime(text + "Z") == want
    assert abs((parse_time(text, scale="utc") - Time(text, scale="utc")).to_value("s")) < 1e-6


def test_leap_second_is_placed_by_astropy() -> None:
    # 2016-12-31T23:59:60 UTC is the 37th second of TAI - UTC
    assert tai_datetime("2016-12-31T23:59:60Z") == dt.datetime(2017, 1, 1, 0, 0, 36)
    with pytest.raises(TimeFormatError):
        tai_datetime("2016.12.31_23:59:60_TAI")  # TAI has no leap seconds


def test_sub_second_t_rec_agrees_everywhere(tmp_path) -> None:
    """The fraction is kept by the parser, the layout, the cube index and the target."""
    assert tai_datetime(SUB_SECOND) == SUB_SECOND_TAI
    assert parse_t_rec(SUB_SECOND) == SUB_SECOND_TAI
    assert parse_time(SUB_SECOND).to_datetime() == SUB_SECOND_TAI
    assert format_t_rec(SUB_SECOND_TAI) == SUB_SECOND  # written back as read
    # one-second cube windows: 06:00:00.6 is in the window of 06:00:00, not 06:00:01
    layout = CubeLayout(period="frames", frames=1, step=dt.timedelta(seconds=1))
    assert layout.period_of(SUB_SECOND) == "20140101_060000"
    header = fits.Header({"T_OBS": SUB_SECOND})
    assert frame_time(header).to_datetime() == SUB_SECOND_TAI
    frame = _frame(SUB_SECOND)
    cube = TimeCube(tmp_path / "c.h5")
    cube.append([frame])
    assert cube.times() == [SUB_SECOND]


def test_date_only_string_agrees_everywhere(tmp_path) -> None:
    """A date is its midnight (TAI) for the config, the layout and ``TimeCube.read_maps``."""
    midnight = dt.datetime(2016, 7, 8)
    assert tai_datetime("2016-07-08") == midnight
    assert tai_datetime("2016.07.08") == midnight
    assert tai_datetime(dt.date(2016, 7, 8)) == midnight  # YAML reads 2016-07-08 as a date
    assert CubeLayout().period_of("2016-07-08") == "20160708"
    cube = TimeCube(tmp_path / "c.h5")
    cube.append([_frame("2016.07.07_23:48:00_TAI"), _frame("2016.07.08_00:00:00_TAI")])
    maps = cube.read_maps(start="2016-07-08")
    assert [m.meta["t_rec"] for m in maps] == ["2016.07.08_00:00:00_TAI"]
    assert len(cube.read_maps(end="2016-07-08")) == 2  # the end is included


def test_tai_and_utc_agree_everywhere(tmp_path) -> None:
    """A UTC time is converted to TAI (35 s in 2014), never read as TAI or refused."""
    from enhance_hmi.acquire import acquire

    want = dt.datetime(2016, 7, 7, 1, 0, 0)
    utc = "2016-07-07T00:59:24Z"  # TAI - UTC = 36 s in 2016
    assert tai_datetime(utc) == want
    assert frame_time(fits.Header({"T_OBS": "2016.07.07_00:59:24_UTC"})).to_datetime() == want
    assert frame_time(fits.Header({"DATE-OBS": "2016-07-07T00:59:24"})).to_datetime() == want
    tai_sys = fits.Header({"DATE-OBS": "2016-07-07T01:00:00", "TIMESYS": "TAI"})
    assert frame_time(tai_sys).to_datetime() == want
    assert CubeLayout(period="frames", frames=1, step=dt.timedelta(minutes=12)).period_of(utc) == (
        "20160707_010000"
    )
    # acquire: a UTC range over the sample archive finds the frame at 01:00:00 TAI
    manifest = acquire(
        series="hmi.M_720s",
        start="2016-07-07T00:59:24Z",
        end="2016.07.07_00:59:24_UTC",
        cadence="12m",
        out_dir=tmp_path / "raw",
        server=str(REPO / "enhance_hmi" / "data" / "sample"),
    )
    assert [row["t_rec"] for row in manifest] == ["2016.07.07_01:00:00_TAI"]


def test_datetime_inputs() -> None:
    naive = dt.datetime(2014, 1, 1, 0, 12)
    assert tai_datetime(naive) == naive  # naive = TAI
    assert tai_datetime(naive, scale="utc") == naive + dt.timedelta(seconds=35)
    aware = dt.datetime(2014, 1, 1, 1, 11, 25, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    assert tai_datetime(aware) == naive  # 00:11:25 UTC
    assert tai_datetime(np.datetime64("2014-01-01T00:12:00")) == naive
    assert tai_datetime(Time("2014-01-01T00:11:25", scale="utc")) == naive
    assert parse_time(naive).isot == "2014-01-01T00:12:00.000000"


@pytest.mark.parametrize(
    "value",
    ["yesterday", "2014-13-01", "2014-01-32", "2014.01.01_25:00:00_TAI", "", "12", None, 3.5],
)
def test_bad_times_are_one_clear_error(value) -> None:
    with pytest.raises(TimeFormatError) as info:
        tai_datetime(value)
    assert "time" in str(info.value)
    assert isinstance(info.value, ConfigError) and isinstance(info.value, InputError)
    assert parse_t_rec(value) is None  # keyword values: None, not an error


def test_format_round_trip_and_file_time() -> None:
    for text in ("2011.12.17_06:00:00_TAI", "2011.12.17_06:00:08.326_TAI", SUB_SECOND):
        assert format_t_rec(tai_datetime(text)) == text
    assert format_t_rec(dt.datetime(2014, 1, 1, 0, 0, 0, 1)) == "2014.01.01_00:00:00.000001_TAI"
    assert format_t_rec("2014-01-01T00:11:25Z") == "2014.01.01_00:12:00_TAI"
    assert file_time(dt.datetime(2014, 1, 1, 0, 12)) == "20140101_001200_TAI"


def test_slot_grid_is_the_epoch_s() -> None:
    """Series grid, snapping and cube windows all count from 1993-01-01 TAI."""
    series = get_series("hmi.M_45s")
    assert tai_datetime("1993.01.01_00:00:00_TAI") == T_REC_EPOCH
    when = T_REC_EPOCH + dt.timedelta(seconds=45 * 1_000_003 + 7)
    assert not series.on_grid(when)
    assert snap_up(when, series) == T_REC_EPOCH + dt.timedelta(seconds=45 * 1_000_004)
    assert series.on_grid(snap_up(when, series))
    window = dt.timedelta(seconds=45 * 100)
    assert grid_floor(when, window) == T_REC_EPOCH + window * 10_000  # slot 1_000_003 // 100


def test_the_epoch_and_t_rec_grammar_are_defined_once() -> None:
    """No module but enhance_hmi.time spells the T_REC epoch, a T_REC strftime or a UTC stamp."""
    patterns = {
        "T_REC epoch": re.compile(r"datetime\(\s*1993\s*,\s*1\s*,\s*1\s*\)"),
        "T_REC format": re.compile(r"%Y\.%m\.%d_%H:%M:%S"),
        "UTC stamp": re.compile(r"%Y-%m-%dT%H:%M:%SZ"),
        "T_REC regex": re.compile(r"\\d\{4\}\)?\[\.\\-\]"),
    }
    sources = [
        *sorted((REPO / "enhance_hmi").rglob("*.py")),
        *sorted((REPO / "workflow").rglob("*")),
    ]
    found = []
    for path in sources:
        if path == REPO / "enhance_hmi" / "time.py" or not path.is_file():
            continue
        if path.suffix not in (".py", ".smk") and path.name != "Snakefile":
            continue
        text = path.read_text()
        found += [
            f"{path.relative_to(REPO)}: {what}" for what, p in patterns.items() if p.search(text)
        ]
    assert found == []


def _frame(t_rec: str) -> Frame:
    """The real sample frame, re-stamped at ``t_rec``."""
    base = read_hmi(SAMPLE)
    header = base.header.copy()
    header["T_REC"] = t_rec
    meta = {
        "t_rec": t_rec,
        "quality": 0,
        "input_file": "in.fits",
        "input_sha256": hashlib.sha256(t_rec.encode()).hexdigest(),
        "weights_sha256": "a" * 64,
        "psf_model": "wachter",
    }
    return Frame(data=base.data, header=header, observable="magnetogram", meta=meta)
