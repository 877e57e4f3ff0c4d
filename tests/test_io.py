"""Reading HMI FITS into Frames, normalisation, and writing enhanced frames.

Real inputs: the committed crop of a JSOC hmi.M_720s file (tests/data), the
resampled hmi.Ic_45s full-disk test file shipped with sunpy, and (when
../shared/data is present) JSOC full-disk magnetograms and an HMI continuum
cut-out.
"""

from __future__ import annotations

import logging
import shutil
import warnings
from pathlib import Path

import astropy.units as u
import numpy as np
import pytest
import sunpy.map
from astropy.coordinates import SkyCoord
from astropy.io import fits
from sunpy.data.test import get_test_filepath

from enhance_hmi.atomic import part_path
from enhance_hmi.errors import (
    ConfigError,
    InputError,
    NotQuietSunUnitsWarning,
    OutputError,
    UnexpectedUnitWarning,
)
from enhance_hmi.frame import Frame
from enhance_hmi.io import (
    disk_mu,
    infer_observable,
    normalise_continuum,
    quiet_sun_level,
    read_hmi,
    upsample_header,
    write_enhanced,
)
from enhance_hmi.provenance import sha256_file

DATA = Path(__file__).parent / "data"
CROP = DATA / "hmi.M_720s.20111217_060000_TAI.crop128.magnetogram.fits"
CONTINUUM = Path(get_test_filepath("resampled_hmi.fits"))
FULLDISK = "hmi/fulldisk/hmi.M_720s.20111217_060000_TAI.magnetogram.fits"
CUTOUT = "hmi/hmi_quiet_ic_cutout.fits"


def _raw(path: Path, index: int) -> tuple[np.ndarray, fits.Header]:
    with warnings.catch_warnings():
        # sunpy's resampled file keeps a BLANK card on float data
        warnings.filterwarnings("ignore", message=r".*'BLANK' keyword")
        with fits.open(path) as hdul:
            return np.array(hdul[index].data, dtype=np.float64), hdul[index].header.copy()


# --------------------------------------------------------------------------- reading


def test_read_jsoc_magnetogram_crop() -> None:
    raw, raw_header = _raw(CROP, 1)
    frame = read_hmi(CROP)
    assert frame.observable == "magnetogram"
    assert frame.meta["observable_evidence"] == "CONTENT = 'MAGNETOGRAM'"
    assert frame.data.dtype == np.float32 and frame.data.shape == (128, 128)
    # north up: 180-degree rotation, gauss values unchanged
    np.testing.assert_array_equal(frame.data, raw[::-1, ::-1].astype(np.float32))
    assert abs(frame.header["CROTA2"]) < 0.1
    assert frame.header["CRPIX1"] == pytest.approx(129 - raw_header["CRPIX1"])
    assert frame.header["BUNIT"] == "G"
    for key in ("BSCALE", "BZERO", "BLANK", "XTENSION", "PCOUNT", "ZCMPTYPE"):
        assert key not in frame.header
    assert (frame.header["NAXIS1"], frame.header["NAXIS2"]) == (128, 128)
    assert frame.meta["normalisation"]["method"] == "none"
    assert frame.meta["normalisation"]["factor"] == 1.0
    assert frame.meta["quality"] == raw_header["QUALITY"]
    assert frame.meta["t_rec"] == raw_header["T_REC"]
    assert frame.meta["input_sha256"] == sha256_file(CROP)
    assert frame.meta["rotation"] == 180.0 and frame.meta["hdu_index"] == 1


@pytest.mark.shared_data
def test_read_full_disk_magnetogram_is_north_up(shared_data: Path) -> None:
    path = shared_data / FULLDISK
    raw, raw_header = _raw(path, 1)
    frame = read_hmi(path)
    assert frame.data.shape == (4096, 4096) and frame.data.dtype == np.float32
    assert np.isnan(frame.data).sum() == np.isnan(raw).sum() > 0  # off-disk NaN kept
    np.testing.assert_array_equal(np.isnan(frame.data), np.isnan(raw[::-1, ::-1]))
    assert frame.meta["quality"] == raw_header["QUALITY"] == 66560
    smap = sunpy.map.Map(frame.data, frame.header)
    north = SkyCoord(0 * u.arcsec, 900 * u.arcsec, frame=smap.coordinate_frame)
    south = SkyCoord(0 * u.arcsec, -900 * u.arcsec, frame=smap.coordinate_frame)
    east = SkyCoord(-900 * u.arcsec, 0 * u.arcsec, frame=smap.coordinate_frame)
    (xn, yn), (xs, ys), (xe, _) = (
        [v.to_value(u.pix) for v in smap.world_to_pixel(c)] for c in (north, south, east)
    )
    assert yn - ys == pytest.approx(1800 / raw_header["CDELT2"], rel=1e-3)  # north up
    assert xn == pytest.approx(xs, abs=2.0)
    assert xe < xn  # solar east to the left
    # the north pole region is on the disk (finite) at the top of the array
    assert np.isfinite(frame.data[int(round(yn)), int(round(xn))])


def test_read_full_disk_continuum_removes_limb_darkening() -> None:
    raw, _ = _raw(CONTINUUM, 0)
    frame = read_hmi(CONTINUUM)
    info = frame.meta["normalisation"]
    assert frame.observable == "continuum"
    assert info["method"] == "limb-darkening-fit"
    assert len(info["coefficients"]) == 6
    assert frame.header["ENHNORM"] == "limb-darkening-fit"
    assert frame.header["ENHLDC0"] == pytest.approx(info["coefficients"][0])
    assert frame.header["BUNIT"] == "" and frame.meta["input_units"] == "DN/s"
    mu, _ = disk_mu(frame.header, frame.data.shape)
    raw_north_up = raw[::-1, ::-1]
    medians, raw_medians = [], []
    for low, high in [(0.3, 0.5), (0.5, 0.7), (0.7, 0.9), (0.9, 1.0)]:
        ring = (mu >= low) & (mu < high) & np.isfinite(frame.data)
        medians.append(float(np.median(frame.data[ring])))
        raw_medians.append(float(np.median(raw_north_up[ring])))
    # raw data are limb darkened by tens of percent between these rings ...
    assert raw_medians[-1] / raw_medians[0] > 1.2
    # ... the normalised quiet Sun is flat at 1
    np.testing.assert_allclose(medians, 1.0, atol=0.03)
    assert info["factor"] == pytest.approx(raw_medians[-1], rel=0.05)
    # off-disk pixels stay NaN
    assert np.all(np.isnan(frame.data[~np.isfinite(mu)]))
    assert np.isnan(frame.data).sum() >= np.isnan(raw).sum()


@pytest.mark.shared_data
def test_limb_darkening_fit_recovers_a_known_law(shared_data: Path) -> None:
    """Known answer on a real full-disk geometry: law x granulation noise x a spot."""
    header = read_hmi(shared_data / FULLDISK).header
    mu, geometry = disk_mu(header, (4096, 4096))
    assert geometry["radius_px"] == pytest.approx(header["RSUN_OBS"] / header["CDELT1"], rel=1e-6)
    rng = np.random.default_rng(7)
    law = 1 - 0.6 * (1 - mu) - 0.15 * (1 - mu) ** 2  # smooth test law, not the Sun's
    image = (4.2e4 * law * (1 + 0.04 * rng.standard_normal(mu.shape))).astype(np.float32)
    yy, xx = np.indices(mu.shape)
    spot = (xx - 1300) ** 2 + (yy - 2600) ** 2 < 180**2
    image[spot] *= 0.3
    normalised, info = normalise_continuum(image, header)
    assert info["method"] == "limb-darkening-fit"
    assert info["factor"] == pytest.approx(4.2e4, rel=0.002)
    quiet = np.isfinite(mu) & ~spot
    for low, high in [(0.1, 0.3), (0.3, 0.6), (0.6, 0.9), (0.9, 1.0)]:
        ring = quiet & (mu >= low) & (mu < high)
        assert float(np.mean(normalised[ring])) == pytest.approx(1.0, abs=0.002)
    assert float(np.median(normalised[spot])) == pytest.approx(0.3, abs=0.01)
    assert np.all(np.isnan(normalised[~np.isfinite(mu)]))


def test_normalize_quiet_sun_on_full_disk_keeps_limb_darkening() -> None:
    frame = read_hmi(CONTINUUM, normalize="quiet-sun")
    info = frame.meta["normalisation"]
    assert info["method"] == "quiet-sun-median"
    raw, _ = _raw(CONTINUUM, 0)
    assert info["factor"] > np.nanmedian(raw)  # dark limb pixels excluded
    np.testing.assert_allclose(
        frame.data, (raw[::-1, ::-1] / info["factor"]).astype(np.float32), rtol=1e-6
    )


def test_no_limb_dark_series_uses_quiet_sun_level(tmp_path: Path) -> None:
    target = tmp_path / "hmi.Ic_noLimbDark_720s.20140301_000000_TAI.continuum.fits"
    shutil.copy(CONTINUUM, target)
    frame = read_hmi(target)
    assert frame.meta["normalisation"]["method"] == "quiet-sun-median"


@pytest.mark.shared_data
def test_read_bare_cutout_without_wcs(shared_data: Path) -> None:
    path = shared_data / CUTOUT
    raw, _ = _raw(path, 0)
    frame = read_hmi(path)
    assert frame.observable == "continuum"
    assert frame.meta["rotation"] == 0.0
    np.testing.assert_array_equal(frame.data * 0, raw * 0)  # same shape, no NaN added
    assert frame.meta["normalisation"]["method"] == "quiet-sun-median"
    assert float(np.median(frame.data)) == pytest.approx(1.0, abs=0.01)
    np.testing.assert_allclose(frame.data * frame.meta["normalisation"]["factor"], raw, rtol=1e-6)


@pytest.mark.shared_data
def test_quiet_sun_level_ignores_a_sunspot(shared_data: Path) -> None:
    raw, _ = _raw(shared_data / CUTOUT, 0)
    clean = quiet_sun_level(raw)
    spotted = raw.copy()
    yy, xx = np.indices(raw.shape)
    r2 = (xx - 65) ** 2 + (yy - 60) ** 2
    umbra = r2 < 30**2
    penumbra = (r2 < 66**2) & ~umbra
    spotted[umbra] *= 0.25
    spotted[penumbra] *= 0.75
    assert penumbra.mean() > 0.5 and (umbra | penumbra).mean() > 0.7
    assert np.median(spotted) < 0.8 * clean  # a plain median lands in the penumbra
    assert quiet_sun_level(spotted) == pytest.approx(clean, rel=0.01)


def test_normalize_none_keeps_values(tmp_path: Path) -> None:
    frame = read_hmi(CONTINUUM)
    path = tmp_path / "normalised.fits"
    fits.PrimaryHDU(frame.data, frame.header).writeto(path)
    again = read_hmi(path, normalize="none")
    np.testing.assert_array_equal(again.data, frame.data)
    assert again.meta["normalisation"] == {"method": "none", "factor": 1.0, "input_units": ""}


def test_integer_image_in_extension_with_blank(tmp_path: Path) -> None:
    values = np.arange(20 * 30, dtype=np.int16).reshape(20, 30) + 100
    values[3, 4] = -999
    header = fits.Header({"BLANK": -999, "CONTENT": "CONTINUUM", "BUNIT": "DN/s"})
    path = tmp_path / "ints.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(values, header)]).writeto(path)
    # raw DN/s wanted: both caveats of taking them as quiet-Sun units are raised
    with (
        pytest.warns(UnexpectedUnitWarning, match="BUNIT = 'DN/s'"),
        pytest.warns(NotQuietSunUnitsWarning, match="median"),
    ):
        frame = read_hmi(path, normalize="none", check_range=False)
    assert frame.meta["hdu_index"] == 1
    assert np.isnan(frame.data[3, 4]) and np.isfinite(frame.data).sum() == values.size - 1
    assert frame.data[0, 1] == 101.0


def test_explicit_observable_for_unlabelled_image(tmp_path: Path) -> None:
    path = tmp_path / "plain.fits"
    fits.PrimaryHDU(np.full((16, 16), 3.0, dtype=np.float32)).writeto(path)
    frame = read_hmi(path, observable="magnetogram")
    assert frame.observable == "magnetogram" and frame.meta["observable_evidence"]


# --------------------------------------------------------------------------- observable


@pytest.mark.parametrize(
    ("cards", "name", "expected"),
    [
        ({"CONTENT": "CONTINUUM INTENSITY"}, "x.fits", "continuum"),
        ({"CONTENT": "MAGNETOGRAM"}, "x.fits", "magnetogram"),
        ({"DRMS_ID": "hmi.M_45s:1:magnetogram"}, "x.fits", "magnetogram"),
        ({"TELESCOP": "hmi.Ic_720s"}, "x.fits", "continuum"),
        ({}, "hmi.Ic_noLimbDark_720s.20140101_000000_TAI.continuum.fits", "continuum"),
        ({}, "hmi.m_45s.20140101_000000_TAI.2.magnetogram.fits", "magnetogram"),
        ({"BUNIT": "Gauss"}, "x.fits", "magnetogram"),
        ({"BUNIT": "DN/s"}, "x.fits", "continuum"),
    ],
)
def test_infer_observable(cards: dict[str, str], name: str, expected: str) -> None:
    observable, evidence = infer_observable(fits.Header(cards), name)
    assert observable == expected and evidence


@pytest.mark.parametrize(
    ("cards", "name", "match"),
    [
        ({"CONTENT": "DOPPLERGRAM"}, "x.fits", "DOPPLERGRAM"),
        ({}, "hmi.V_45s.20140101_000000_TAI.2.Dopplergram.fits", "Dopplergram"),
        ({"BUNIT": "m/s"}, "x.fits", "pass --observable"),
    ],
)
def test_infer_observable_errors(cards: dict[str, str], name: str, match: str) -> None:
    with pytest.raises(InputError, match=match):
        infer_observable(fits.Header(cards), name)


def test_observable_conflict_is_an_error() -> None:
    with pytest.raises(InputError, match="looks like a magnetogram"):
        read_hmi(CROP, observable="continuum")


def test_quiet_sun_normalisation_of_magnetogram_is_refused() -> None:
    with pytest.raises(ConfigError, match="continuum"):
        read_hmi(CROP, normalize="quiet-sun")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"observable": "dopplergram"}, "unknown observable"), ({"normalize": "max"}, "normalis")],
)
def test_bad_options(kwargs: dict[str, str], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        read_hmi(CROP, **kwargs)


# --------------------------------------------------------------------------- bad inputs


def _bad_input(tmp_path: Path, kind: str) -> Path:
    path = tmp_path / f"{kind}.fits"
    if kind == "missing":
        return path
    if kind == "directory":
        path.mkdir()
    elif kind == "not-fits":
        path.write_text("SIMPLE? no, this is a text file\n" * 10)
    elif kind == "cube":
        fits.PrimaryHDU(np.ones((3, 8, 8), dtype=np.float32)).writeto(path)
    elif kind == "all-nan":
        fits.PrimaryHDU(np.full((8, 8), np.nan, dtype=np.float32)).writeto(path)
    elif kind == "no-image":
        table = fits.BinTableHDU.from_columns([fits.Column(name="a", format="E", array=[1.0])])
        fits.HDUList([fits.PrimaryHDU(), table]).writeto(path)
    elif kind == "truncated-compressed":
        path.write_bytes(CROP.read_bytes()[:20000])
    elif kind == "truncated-plain":
        plain = tmp_path / "plain.fits"
        fits.PrimaryHDU(np.ones((64, 64), dtype=np.float32)).writeto(plain)
        path.write_bytes(plain.read_bytes()[:9000])
        plain.unlink()
    elif kind == "unknown-observable":
        fits.PrimaryHDU(np.ones((8, 8), dtype=np.float32)).writeto(path)
    return path


BAD_INPUTS = {
    "missing": "does not exist",
    "directory": "is a directory",
    "not-fits": "not a readable FITS file",
    "cube": r"no 2-D image \(found 3x8x8\)",
    "all-nan": "no finite pixel",
    "no-image": "no image data",
    "unknown-observable": "cannot tell whether",
    "truncated-compressed": "truncated or corrupt",
    "truncated-plain": "truncated or corrupt",
}


@pytest.mark.parametrize(("kind", "match"), sorted(BAD_INPUTS.items()))
def test_bad_input_raises_one_clear_input_error(tmp_path: Path, kind: str, match: str) -> None:
    path = _bad_input(tmp_path, kind)
    with pytest.raises(InputError, match=match) as info:
        read_hmi(path)
    message = str(info.value)
    assert "\n" not in message and path.name in message


# --------------------------------------------------------------------------- writing


def _fake_enhanced(frame: Frame) -> Frame:
    """2x frame whose pixels repeat the input (no network: tests the I/O only)."""
    data = np.kron(frame.data, np.ones((2, 2), dtype=np.float32))
    return Frame(data, upsample_header(frame.header), frame.observable, dict(frame.meta))


@pytest.mark.parametrize("compression", ["gzip", None])
def test_write_enhanced_round_trip(tmp_path: Path, compression: str | None) -> None:
    frame = read_hmi(CONTINUUM)
    enhanced = _fake_enhanced(frame)
    out = tmp_path / "enhanced.fits"
    provenance = {
        "weights_sha256": "0123456789abcdef" * 4,
        "psf_model": "wachter",
        "weights_file": "/somewhere/continuum.safetensors",
        "tile": 256,
    }
    assert write_enhanced(out, enhanced, provenance=provenance, compression=compression) == out
    assert not part_path(out).exists()
    index = 1 if compression == "gzip" else 0
    with fits.open(out, checksum=True) as hdul:
        data, header = hdul[index].data, hdul[index].header
        assert data.dtype.kind == "f" and data.dtype.itemsize == 4
        np.testing.assert_array_equal(data, enhanced.data)  # bit-exact, NaN included
        # long HISTORY lines are wrapped at 72 characters: join without separator
        history = "".join(str(h) for h in header["HISTORY"])
    assert header["ENHWSHA"] == provenance["weights_sha256"]
    assert header["ENHPSF"] == "wachter"
    assert header["ENHWTS"] == "continuum.safetensors"
    assert header["ENHINPUT"] == CONTINUUM.name
    assert header["ENHINSHA"] == sha256_file(CONTINUUM)
    assert header["ENHVERS"].startswith("enhance ")
    assert header["ENHREF"].startswith("Diaz Baso & Asensio Ramos 2018")
    assert header["ENHDATE"].endswith("Z") and header["ENHTILE"] == "256"
    assert header["ENHNORM"] == "limb-darkening-fit" and header["BUNIT"] == ""
    assert "weights_sha256: " + provenance["weights_sha256"] in history
    assert "rotated 180 deg" in history
    for key in ("DATAMEAN", "DATAMIN", "BLANK", "TOTVALS"):
        assert key not in header, key

    smap = sunpy.map.Map(out)
    source = sunpy.map.Map(frame.data, frame.header)
    assert smap.data.shape == (200, 200)
    assert smap.observer_coordinate.separation_3d(source.observer_coordinate) < 1 * u.m
    assert smap.coordinate_frame.name == "helioprojective"
    assert smap.unit == u.dimensionless_unscaled
    point = SkyCoord(-300 * u.arcsec, 420 * u.arcsec, frame=source.coordinate_frame)
    p = np.array([v.to_value(u.pix) for v in source.world_to_pixel(point)])
    q = np.array([v.to_value(u.pix) for v in smap.world_to_pixel(point)])
    np.testing.assert_allclose(q, 2 * p + 0.5, atol=0.25)


def test_write_enhanced_lossy_rice(tmp_path: Path) -> None:
    frame = read_hmi(CROP)
    rng = np.random.default_rng(3)
    data = np.kron(frame.data, np.ones((2, 2), dtype=np.float32))
    data += rng.normal(0.0, 10.0, data.shape).astype(np.float32)  # HMI-like noise, G
    data[:5, :7] = np.nan
    enhanced = Frame(data, upsample_header(frame.header), frame.observable, frame.meta)
    gzip = write_enhanced(tmp_path / "g.fits", enhanced, provenance={})
    rice = write_enhanced(tmp_path / "r.fits", enhanced, provenance={}, compression="rice")
    assert rice.stat().st_size < 0.6 * gzip.stat().st_size
    with fits.open(rice) as hdul:
        back = hdul[1].data
        assert hdul[1].compression_type == "RICE_1"
    np.testing.assert_array_equal(np.isnan(back), np.isnan(data))
    error = np.abs(back - data)[np.isfinite(data)]
    assert 0 < float(error.max()) < 10.0 / 4  # quantised at ~noise/16, far below the noise


def test_write_magnetogram_units(tmp_path: Path) -> None:
    out = write_enhanced(tmp_path / "m.fits", _fake_enhanced(read_hmi(CROP)), provenance={})
    smap = sunpy.map.Map(out)
    assert smap.unit == u.G and smap.data.shape == (256, 256)


def test_write_to_missing_directory_leaves_nothing(tmp_path: Path) -> None:
    out = tmp_path / "missing" / "x.fits"
    with pytest.raises(OutputError, match="does not exist"):
        write_enhanced(out, _fake_enhanced(read_hmi(CROP)), provenance={})
    assert not out.parent.exists()


def test_failed_write_leaves_no_partial_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "x.fits"

    def crash(self: fits.HDUList, name: Path, **kwargs: object) -> None:
        Path(name).write_bytes(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(fits.HDUList, "writeto", crash)
    with pytest.raises(OutputError, match="disk full"):
        write_enhanced(out, _fake_enhanced(read_hmi(CROP)), provenance={})
    assert list(tmp_path.iterdir()) == []


def test_write_refuses_header_shape_mismatch(tmp_path: Path) -> None:
    frame = read_hmi(CROP)
    wrong = Frame(frame.data, upsample_header(frame.header), frame.observable, frame.meta)
    with pytest.raises(InputError, match="NAXIS1"):
        write_enhanced(tmp_path / "x.fits", wrong, provenance={})
    assert list(tmp_path.iterdir()) == []


def test_read_logs_what_it_did(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="enhance_hmi.io"):
        read_hmi(CONTINUUM)
    assert "limb darkening fitted" in caplog.text
    assert "rotated 180 deg" in caplog.text


# --------------------------------------------------------------------------- bundled sample

SAMPLE_DIR = Path(__file__).resolve().parents[1] / "enhance_hmi" / "data" / "sample"
SAMPLE_IC = SAMPLE_DIR / "hmi.Ic_45s.20140301_000130_TAI.2.continuum.fits"


def test_bundled_continuum_sample_is_real_hmi_at_native_scale() -> None:
    """The cut-out's pixels under the real hmi.Ic_45s header, WCS placing it at disk centre."""
    with fits.open(SAMPLE_IC) as hdul:
        header, stored = hdul[1].header, np.array(hdul[1].data)
    with fits.open(SAMPLE_DIR / "hmi_quiet_ic_cutout.fits") as hdul:
        source = np.array(hdul[0].data, dtype=np.float32)
    np.testing.assert_array_equal(stored, source)  # pixel values unchanged
    assert header["T_REC"] == "2014.03.01_00:01:30_TAI" and header["CONTENT"].startswith("CONT")
    assert header["CDELT1"] == header["CDELT2"] == pytest.approx(0.504291)
    assert (header["NAXIS1"], header["NAXIS2"]) == source.shape[::-1]
    assert header["DATAMEAN"] == pytest.approx(float(source.mean()), rel=1e-6)
    assert "SATVALS" not in header and "DATAMIN2" not in header
    assert SAMPLE_IC.stat().st_size < 200_000
    frame = read_hmi(SAMPLE_IC)
    assert frame.meta["pixel_scale"] == pytest.approx((0.504291, 0.504291))
    smap = sunpy.map.Map(frame.data, frame.header)
    centre = SkyCoord(0 * u.arcsec, 0 * u.arcsec, frame=smap.coordinate_frame)
    x, y = (float(v.to_value(u.pix)) for v in smap.world_to_pixel(centre))
    assert (x, y) == pytest.approx(((source.shape[1] - 1) / 2, (source.shape[0] - 1) / 2))
    # quiet-Sun granulation at HMI resolution: rms contrast ~3.7 % (paper Sect. 4)
    assert 0.03 < float(np.std(frame.data)) < 0.045


def test_sample_generator_reproduces_the_continuum_sample(
    shared_data: Path, tmp_path: Path
) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "make_hmi_sample", Path(__file__).parent / "data" / "make_hmi_sample.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*'BLANK' keyword")  # sunpy's header
        made = module.continuum_cutout(
            shared_data / CUTOUT, shared_data / "hmi" / "resampled_hmi.fits", tmp_path
        )
    assert made.name == SAMPLE_IC.name
    with fits.open(made) as new, fits.open(SAMPLE_IC) as old:
        np.testing.assert_array_equal(new[1].data, old[1].data)
        skip = {"CHECKSUM", "DATASUM", "ZHECKSUM", "ZDATASUM"}
        cards = [(c.keyword, c.value) for c in new[1].header.cards if c.keyword not in skip]
        assert cards == [(c.keyword, c.value) for c in old[1].header.cards if c.keyword not in skip]
