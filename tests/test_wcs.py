"""The 2x output grid and the north-up rotation keep world coordinates exact.

Inputs are real HMI headers: the committed crop of a JSOC hmi.M_720s file
(tests/data/README.md), sunpy's resampled hmi.Ic_45s test file, and (when
../shared/data is present) a full-disk JSOC magnetogram.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import astropy.units as u
import numpy as np
import pytest
import sunpy.map
from astropy.coordinates import SkyCoord
from astropy.io import fits
from sunpy.coordinates import Helioprojective
from sunpy.data.test import get_test_filepath

from enhance_hmi.errors import ConfigError, NotNorthUpWarning
from enhance_hmi.io import read_hmi, rotate_north_up, upsample_header

DATA = Path(__file__).parent / "data"
CROP = DATA / "hmi.M_720s.20111217_060000_TAI.crop128.magnetogram.fits"
FULLDISK = "hmi/fulldisk/hmi.M_720s.20160707_010000_TAI.magnetogram.fits"


def _raw_header(path: Path, index: int = 1) -> fits.Header:
    with fits.open(path) as hdul:
        return hdul[index].header.copy()


def _map(header: fits.Header, shape: tuple[int, int] | None = None) -> sunpy.map.GenericMap:
    """A sunpy map with a zero (broadcast) array of the header's shape."""
    if shape is None:
        shape = (int(header["NAXIS2"]), int(header["NAXIS1"]))
    return sunpy.map.Map(np.broadcast_to(np.float32(0), shape), header)


@pytest.fixture(scope="module")
def real_headers() -> dict[str, fits.Header]:
    return {
        "crop-raw-crota180": _raw_header(CROP),
        "crop-north-up": read_hmi(CROP).header,
        "resampled-continuum-north-up": read_hmi(get_test_filepath("resampled_hmi.fits")).header,
    }


def _sample_pixels(header: fits.Header) -> np.ndarray:
    """Pixel positions on and off centre, at the corners and between pixels."""
    nx, ny = int(header["NAXIS1"]), int(header["NAXIS2"])
    return np.array(
        [
            [0.0, 0.0],
            [nx - 1.0, ny - 1.0],
            [0.0, ny - 1.0],
            [(nx - 1) / 2, (ny - 1) / 2],
            [0.37 * nx, 0.81 * ny],
            [0.9 * nx + 0.25, 0.1 * ny - 0.4],
            [float(header["CRPIX1"]) - 1, float(header["CRPIX2"]) - 1],
        ]
    )


def _check_grid(header: fits.Header) -> None:
    up = upsample_header(header)
    small, big = _map(header), _map(up)
    assert big.data.shape == (2 * small.data.shape[0], 2 * small.data.shape[1])
    pixels = _sample_pixels(header)
    world = small.pixel_to_world(pixels[:, 0] * u.pix, pixels[:, 1] * u.pix)
    # add world points that are not on the input grid: disk centre, a limb
    # point and one off the disk (the world -> pixel direction on both grids)
    extra = SkyCoord(
        [0.0, 480.0, -1100.0] * u.arcsec,
        [0.0, -870.0, 35.0] * u.arcsec,
        frame=small.coordinate_frame,
    )
    for coord in (world, extra):
        p = np.array([v.to_value(u.pix) for v in small.world_to_pixel(coord)])
        q = np.array([v.to_value(u.pix) for v in big.world_to_pixel(coord)])
        # 0-based pixel centres: output q = 2 p + 0.5 (FITS: Q = 2 P - 0.5)
        np.testing.assert_allclose(q, 2 * p + 0.5, atol=0.25)
        np.testing.assert_allclose(q, 2 * p + 0.5, atol=1e-6)


def test_upsample_header_keywords(real_headers: dict[str, fits.Header]) -> None:
    header = real_headers["crop-raw-crota180"]
    up = upsample_header(header)
    for axis in (1, 2):
        assert up[f"NAXIS{axis}"] == 2 * header[f"NAXIS{axis}"]
        assert up[f"CDELT{axis}"] == pytest.approx(header[f"CDELT{axis}"] / 2, rel=1e-15)
        assert up[f"CRPIX{axis}"] == pytest.approx(2 * header[f"CRPIX{axis}"] - 0.5, abs=1e-12)
    assert up["CROTA2"] == header["CROTA2"]
    changed = {"NAXIS1", "NAXIS2", "CDELT1", "CDELT2", "CRPIX1", "CRPIX2"}
    for key in header:
        if key not in changed and key not in ("COMMENT", "HISTORY", ""):
            assert up[key] == header[key], key
    assert list(header.keys()) == list(up.keys())
    assert header["NAXIS1"] == 128, "the input header must not be modified"


def test_upsample_header_factor_three_and_cd_matrix() -> None:
    header = fits.Header(
        {
            "NAXIS": 2,
            "NAXIS1": 10,
            "NAXIS2": 20,
            "CTYPE1": "HPLN-TAN",
            "CTYPE2": "HPLT-TAN",
            "CRPIX1": 4.0,
            "CRPIX2": 7.5,
            "CD1_1": 0.6,
            "CD1_2": -0.1,
            "CD2_1": 0.1,
            "CD2_2": 0.6,
        }
    )
    up = upsample_header(header, factor=3)
    assert (up["NAXIS1"], up["NAXIS2"]) == (30, 60)
    assert up["CRPIX1"] == pytest.approx(3 * 4.0 - 1.0)
    assert up["CRPIX2"] == pytest.approx(3 * 7.5 - 1.0)
    assert up["CD1_2"] == pytest.approx(-0.1 / 3)
    assert up["CD2_2"] == pytest.approx(0.2)


def test_upsample_header_without_wcs_adds_no_reference_pixel() -> None:
    header = fits.Header({"NAXIS": 2, "NAXIS1": 130, "NAXIS2": 130, "CDELT1": 0.504})
    up = upsample_header(header)
    assert up["CDELT1"] == pytest.approx(0.252)
    assert "CRPIX1" not in up and "CRPIX2" not in up
    assert (up["NAXIS1"], up["NAXIS2"]) == (260, 260)


@pytest.mark.parametrize("factor", [0, -2, 1.5, True])
def test_upsample_header_rejects_bad_factor(factor: object) -> None:
    with pytest.raises(ConfigError, match="positive integer"):
        upsample_header(fits.Header({"NAXIS": 2, "NAXIS1": 4, "NAXIS2": 4}), factor=factor)


@pytest.mark.parametrize(
    "name", ["crop-raw-crota180", "crop-north-up", "resampled-continuum-north-up"]
)
def test_upsampled_grid_places_world_points(
    real_headers: dict[str, fits.Header], name: str
) -> None:
    _check_grid(real_headers[name])


@pytest.mark.shared_data
def test_upsampled_grid_full_disk(shared_data: Path) -> None:
    _check_grid(read_hmi(shared_data / FULLDISK).header)


def _centroid(data: np.ndarray) -> tuple[float, float]:
    yy, xx = np.indices(data.shape)
    return float((xx * data).sum() / data.sum()), float((yy * data).sum() / data.sum())


@pytest.mark.parametrize("name", ["crop-north-up", "resampled-continuum-north-up"])
def test_feature_keeps_its_world_position(real_headers: dict[str, fits.Header], name: str) -> None:
    """A compact feature replicated 2x2 per pixel stays at the same world point."""
    header = real_headers[name]
    ny, nx = int(header["NAXIS2"]), int(header["NAXIS1"])
    small_world = []
    big_world = []
    for fx, fy in [(0.5, 0.5), (0.2, 0.7), (0.83, 0.31)]:
        yy, xx = np.indices((ny, nx))
        x0, y0 = fx * nx + 0.3, fy * ny - 0.2
        blob = np.exp(-((xx - x0) ** 2 + (yy - y0) ** 2) / (2 * 1.7**2)).astype(np.float64)
        big = np.kron(blob, np.ones((2, 2)))
        small_map = sunpy.map.Map(blob, header)
        big_map = sunpy.map.Map(big, upsample_header(header))
        small_world.append(small_map.pixel_to_world(*(_centroid(blob) * u.pix)))
        big_world.append(big_map.pixel_to_world(*(_centroid(big) * u.pix)))
    output_pixel = abs(float(upsample_header(header)["CDELT1"])) * u.arcsec
    for a, b in zip(small_world, big_world, strict=True):
        assert a.separation(b) < 0.25 * output_pixel
        assert a.separation(b) < 1e-6 * output_pixel


@pytest.mark.parametrize("name", ["crop-raw-crota180", "resampled-continuum-north-up"])
def test_upsampled_map_keeps_observer_and_frame(
    real_headers: dict[str, fits.Header], name: str
) -> None:
    header = real_headers[name]
    small, big = _map(header), _map(upsample_header(header))
    assert isinstance(big.coordinate_frame, Helioprojective)
    assert big.observer_coordinate.separation_3d(small.observer_coordinate) < 1 * u.m
    assert big.observer_coordinate.radius.to_value(u.m) == pytest.approx(header["DSUN_OBS"])
    assert big.date == small.date
    assert big.rsun_meters == small.rsun_meters
    assert u.allclose(big.scale.axis1, small.scale.axis1 / 2)


def test_rotate_north_up_keeps_every_pixel_on_its_world_point() -> None:
    with fits.open(CROP) as hdul:
        header = hdul[1].header.copy()
        data = hdul[1].data.astype(np.float32)
    rotated, new_header, rotation = rotate_north_up(data, header)
    assert rotation.applied == 180.0
    assert abs(new_header["CROTA2"]) < 0.1
    assert new_header["CROTA2"] == pytest.approx(header["CROTA2"] - 180.0)
    np.testing.assert_array_equal(rotated, data[::-1, ::-1])
    before, after = sunpy.map.Map(data, header), sunpy.map.Map(rotated, new_header)
    ny, nx = data.shape
    pix = _sample_pixels(header)
    w_before = before.pixel_to_world(pix[:, 0] * u.pix, pix[:, 1] * u.pix)
    w_after = after.pixel_to_world((nx - 1 - pix[:, 0]) * u.pix, (ny - 1 - pix[:, 1]) * u.pix)
    assert np.all(w_before.separation(w_after) < 1e-6 * u.arcsec)
    # solar north is now up: a point north of another has a larger row index
    north = SkyCoord(w_before[3].Tx, w_before[3].Ty + 20 * u.arcsec, frame=after.coordinate_frame)
    _, y_north = after.world_to_pixel(north)
    _, y_centre = after.world_to_pixel(w_before[3])
    assert (y_north - y_centre).to_value(u.pix) == pytest.approx(20 / header["CDELT2"], rel=1e-3)


@pytest.mark.parametrize("matrix", ["PC", "CD"])
def test_rotate_north_up_with_linear_matrix(matrix: str) -> None:
    header = _raw_header(CROP)
    angle = np.deg2rad(header["CROTA2"])
    cos, sin = np.cos(angle), np.sin(angle)
    scale = header["CDELT1"]
    del header["CROTA2"]
    if matrix == "PC":
        header.update({"PC1_1": cos, "PC1_2": -sin, "PC2_1": sin, "PC2_2": cos})
    else:
        del header["CDELT1"], header["CDELT2"]
        header.update(
            {
                "CD1_1": scale * cos,
                "CD1_2": -scale * sin,
                "CD2_1": scale * sin,
                "CD2_2": scale * cos,
            }
        )
    data = np.arange(128 * 128, dtype=np.float32).reshape(128, 128)
    rotated, new_header, rotation = rotate_north_up(data, header)
    assert rotation.applied == 180.0
    assert new_header[f"{matrix}1_1"] == pytest.approx(-header[f"{matrix}1_1"])
    before, after = _map(header), _map(new_header)
    w_before = before.pixel_to_world([3, 100] * u.pix, [7, 64] * u.pix)
    w_after = after.pixel_to_world([124, 27] * u.pix, [120, 63] * u.pix)
    assert np.all(w_before.separation(w_after) < 1e-6 * u.arcsec)


def test_rotate_keeps_other_angles_and_warns() -> None:
    header = _raw_header(CROP)
    header["CROTA2"] = 92.0  # an SDO roll manoeuvre
    data = np.arange(16, dtype=np.float32).reshape(4, 4)
    with pytest.warns(NotNorthUpWarning, match="92.000 deg"):
        same, new_header, rotation = rotate_north_up(data, header)
    assert rotation.applied == 0.0
    np.testing.assert_array_equal(same, data)
    assert new_header == header

    header["CROTA2"] = 0.05  # already north up: silently kept
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        same, _, rotation = rotate_north_up(data, header)
    assert rotation.applied == 0.0


def test_rotate_without_wcs_is_identity() -> None:
    data = np.ones((3, 5), dtype=np.float32)
    header = fits.Header({"NAXIS": 2, "NAXIS1": 5, "NAXIS2": 3, "CDELT1": 0.504})
    same, new_header, rotation = rotate_north_up(data, header)
    assert same is data and rotation.angle_in is None and new_header == header
