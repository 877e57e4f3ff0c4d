"""Tests of enhance_hmi.cube: HDF5 time cubes (atomic, idempotent append; sunpy Maps)."""

from __future__ import annotations

import datetime as dt
import hashlib
import subprocess
import sys
from pathlib import Path

import astropy.units as u
import h5py
import numpy as np
import pytest

from enhance_hmi.cube import Codec, CubeLayout, TimeCube, format_t_rec, parse_t_rec, read_enhanced
from enhance_hmi.errors import ConfigError, CubeError
from enhance_hmi.frame import Frame
from enhance_hmi.io import read_hmi, upsample_header, write_enhanced

REPO = Path(__file__).resolve().parents[1]
SAMPLE = (
    REPO / "enhance_hmi" / "data" / "sample" / "hmi.M_720s.20160707_010000_TAI.3.magnetogram.fits"
)
T0 = dt.datetime(2016, 7, 7, 1, 0, 0)


@pytest.fixture(scope="module")
def base() -> Frame:
    return read_hmi(SAMPLE)


def make_frame(base: Frame, k: int, *, weights: str = "a" * 64, scale: float = 1.0) -> Frame:
    """Frame k of a 12-min sequence from the real sample (NaN corner = off disk)."""
    when = T0 + dt.timedelta(minutes=12 * k)
    header = base.header.copy()
    header["T_REC"] = format_t_rec(when)
    header["QUALITY"] = 0x400 * (k % 2)
    data = (base.data * scale + k).astype(np.float32)
    data[:20, :20] = np.nan
    meta = {
        "t_rec": header["T_REC"],
        "quality": header["QUALITY"],
        "input_file": f"in{k}.fits",
        "input_sha256": hashlib.sha256(str(k).encode()).hexdigest(),
        "weights_sha256": weights,
        "psf_model": "wachter",
    }
    return Frame(data=data, header=header, observable="magnetogram", meta=meta)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_append_roundtrip_and_layout(tmp_path, base):
    cube = TimeCube(tmp_path / "m.h5", provenance={"config_sha256": "c0ffee"})
    frames = [make_frame(base, k) for k in range(3)]
    assert cube.append(iter(frames)) == 3
    assert cube.times() == [format_t_rec(T0 + dt.timedelta(minutes=12 * k)) for k in range(3)]
    data, header = cube.read_frame(1)
    np.testing.assert_array_equal(data, frames[1].data)  # exact, NaN included
    assert np.isnan(data[:20, :20]).all()
    assert header["T_REC"] == frames[1].header["T_REC"]
    attrs = cube.attributes()
    assert attrs["observable"] == "magnetogram" and attrs["units"] == "G"
    assert attrs["weights_sha256"] == "a" * 64 and attrs["psf_model"] == "wachter"
    assert attrs["config_sha256"] == "c0ffee" and attrs["package_version"]
    with h5py.File(cube.path, "r") as h5:  # hdf5plugin already imported by the cube
        assert h5["data"].dtype == np.float32 and h5["data"].shape == (3, 256, 256)
        assert h5["data"].is_virtual  # over the segment files, read as one dataset
        np.testing.assert_array_equal(h5["data"][1], frames[1].data)
        segments = sorted(cube.segments_dir.rglob("*.h5"))
        assert [p.name for p in segments] == ["0.h5", "1.h5", "2.h5"]  # one file per frame
        for k, segment in enumerate(segments):
            with h5py.File(segment, "r") as seg:
                assert seg["data"].chunks == (1, 256, 256)
                np.testing.assert_array_equal(seg["data"][0], frames[k].data)
        assert list(h5["quality"][:]) == [0, 0x400, 0]
        assert h5["input_sha256"][2].decode() == frames[2].meta["input_sha256"]
        assert h5["wcs/CDELT1"][0] == pytest.approx(base.header["CDELT1"])
        assert h5["wcs/CTYPE1"][0].decode() == base.header["CTYPE1"]


def test_append_is_idempotent_and_sorted_after_backfill(tmp_path, base):
    cube = TimeCube(tmp_path / "m.h5")
    assert cube.append([make_frame(base, 0), make_frame(base, 2)]) == 2
    before = sha(cube.path)
    assert cube.append([make_frame(base, 0), make_frame(base, 2)]) == 0
    assert sha(cube.path) == before  # nothing rewritten
    assert cube.append([make_frame(base, 2), make_frame(base, 1)]) == 1  # backfilled gap
    assert [parse_t_rec(t).minute for t in cube.times()] == [0, 12, 24]
    np.testing.assert_array_equal(cube.read_frame(1)[0], make_frame(base, 1).data)
    np.testing.assert_array_equal(cube.read_frame(2)[0], make_frame(base, 2).data)
    assert [r["input_file"] for r in cube.table()] == ["in0.fits", "in1.fits", "in2.fits"]


def test_read_maps_are_sunpy_maps_with_wcs(tmp_path, base):
    import sunpy.map

    cube = TimeCube(tmp_path / "m.h5")
    cube.append([make_frame(base, k) for k in (1, 0)])
    maps = cube.read_maps()
    assert all(isinstance(m, sunpy.map.GenericMap) for m in maps)
    assert maps[0].meta["t_rec"] < maps[1].meta["t_rec"]
    assert maps[0].unit == u.G
    assert maps[0].scale.axis1.to_value(u.arcsec / u.pix) == pytest.approx(base.header["CDELT1"])
    assert np.isnan(maps[1].data[:20, :20]).all()
    assert len(cube.read_maps(start="2016-07-07T01:06:00")) == 1


def test_rejects_mismatched_frames_and_leaves_cube(tmp_path, base):
    cube = TimeCube(tmp_path / "m.h5")
    cube.append([make_frame(base, 0)])
    before = sha(cube.path)
    with pytest.raises(CubeError, match="weights"):
        cube.append([make_frame(base, 1, weights="b" * 64)])
    small = make_frame(base, 2)
    small.data = small.data[:100, :100]
    with pytest.raises(CubeError, match="shape"):
        cube.append([small])
    other = make_frame(base, 3)
    other.observable = "continuum"
    with pytest.raises(CubeError, match="magnetogram"):
        cube.append([other])
    assert sha(cube.path) == before and not (tmp_path / "m.h5.part").exists()
    untimed = make_frame(base, 4)
    untimed.meta["t_rec"] = ""
    del untimed.header["T_REC"]
    with pytest.raises(CubeError, match="T_REC"):
        cube.append([untimed])


def test_quantised_blosc_and_gzip_readable(tmp_path, base):
    step = 0.1 * u.G
    codec = Codec.from_options(compression="zstd", quantize=step, observable="magnetogram")
    cube = TimeCube(tmp_path / "q.h5", codec=codec, tile=64)
    frame = make_frame(base, 0)
    cube.append([frame])
    data = cube.read_frame(0)[0]
    good = np.isfinite(frame.data)
    assert np.isnan(data[~good]).all()
    assert np.abs(data[good] - frame.data[good]).max() <= 0.05 + 1e-4
    assert np.allclose(data[good] / 0.1, np.round(data[good] / 0.1), atol=1e-3)
    assert cube.attributes()["quantization_step"] == pytest.approx(0.1)
    with pytest.raises(ConfigError, match="units"):
        Codec.from_options(quantize=1 * u.m, observable="magnetogram")
    with pytest.raises(ConfigError, match="compression"):
        Codec(compression="lz4hc")
    # gzip: a plain h5py (no hdf5plugin, no enhance) reads it
    gz = TimeCube(tmp_path / "g.h5", codec=Codec(compression="gzip"))
    gz.append([frame])
    code = (
        "import sys, h5py, numpy as np; f = h5py.File(sys.argv[1], 'r'); "
        "assert 'hdf5plugin' not in sys.modules; d = f['data'][0]; "
        "print(d.shape, int(np.isnan(d).sum()), f['t_rec'][0].decode())"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(gz.path)], capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["(256,", "256)", str(int((~good).sum())), frame.meta["t_rec"]]


def test_read_enhanced_file(tmp_path, base):
    header = upsample_header(base.header)
    data = np.repeat(np.repeat(base.data, 2, axis=0), 2, axis=1)
    frame = Frame(data=data, header=header, observable="magnetogram", meta=dict(base.meta))
    out = write_enhanced(
        tmp_path / "e.fits", frame, provenance={"weights_sha256": "f" * 64, "psf_model": "yeo"}
    )
    back = read_enhanced(out)
    assert back.observable == "magnetogram" and back.data.shape == (512, 512)
    assert back.meta["weights_sha256"] == "f" * 64 and back.meta["psf_model"] == "yeo"
    assert back.meta["input_sha256"] == base.meta["input_sha256"]
    cube = TimeCube(tmp_path / "e.h5")
    cube.append([back])
    np.testing.assert_array_equal(cube.read_frame(0)[0], back.data)
    assert cube.table()[0]["input_sha256"] == base.meta["input_sha256"]


def test_layout_periods():
    day = CubeLayout(period="day")
    assert day.period_of("2014.01.01_23:59:15_TAI") == "20140101"
    frames = CubeLayout(period="frames", frames=10, step=dt.timedelta(minutes=12))
    first = frames.period_of("2014.01.01_00:00:00_TAI")
    assert frames.period_of("2014.01.01_01:48:00_TAI") == first  # slot 9 of the window
    assert frames.period_of("2014.01.01_02:00:00_TAI") != first  # slot 10: the next one
    with pytest.raises(ConfigError):
        CubeLayout(period="week")
