"""sunpy Maps in and out (:func:`enhance_hmi.enhance_map`), on the bundled real HMI samples."""

from __future__ import annotations

import warnings
from pathlib import Path

import astropy.units as u
import numpy as np
import pytest
import sunpy.map
from astropy.nddata import StdDevUncertainty

import enhance_hmi
from enhance_hmi.errors import InputError

SAMPLE = Path(__file__).resolve().parents[1] / "enhance_hmi" / "data" / "sample"
MAGNETOGRAMS = sorted(SAMPLE.glob("hmi.M_720s.*.magnetogram.fits"))


def _input_pixel(smap, x_out: float, y_out: float) -> tuple[float, float]:
    """Where an output pixel lies on the input grid: 2x, and turned north up (CROTA2 ~ 180)."""
    x_rot, y_rot = (x_out + 0.5) / 2 - 0.5, (y_out + 0.5) / 2 - 0.5
    ny, nx = smap.data.shape
    return nx - 1 - x_rot, ny - 1 - y_rot


def test_a_map_comes_back_on_the_2x_wcs_with_observer_provenance_and_sigma():
    smap = sunpy.map.Map(MAGNETOGRAMS[1])
    assert abs(smap.meta["crota2"] - 180) < 1  # JSOC's orientation: the output is north up
    out = enhance_hmi.enhance_map(smap, device="cpu")
    assert isinstance(out, sunpy.map.GenericMap)
    assert out.data.shape == (2 * smap.data.shape[0], 2 * smap.data.shape[1])
    assert out.unit == smap.unit == u.G
    ny, nx = out.data.shape
    for x_out, y_out in [(0, 0), (nx - 1, 0), (0, ny - 1), (nx - 1, ny - 1), (137, 402)]:
        x_in, y_in = _input_pixel(smap, x_out, y_out)
        here = out.pixel_to_world(x_out * u.pix, y_out * u.pix)
        there = smap.pixel_to_world(x_in * u.pix, y_in * u.pix)
        assert here.separation(there).to_value(u.deg) < 1e-9
    observer, expected = out.observer_coordinate, smap.observer_coordinate
    assert observer.lon.to_value(u.deg) == pytest.approx(expected.lon.to_value(u.deg), abs=1e-12)
    assert observer.lat.to_value(u.deg) == pytest.approx(expected.lat.to_value(u.deg), abs=1e-12)
    assert observer.radius.to_value(u.m) == pytest.approx(expected.radius.to_value(u.m))
    assert out.date == smap.date
    # provenance and quality keywords of the FITS product
    assert out.meta["enhinput"].startswith("sunpy_map_2016.07.07_01")
    assert len(out.meta["enhwsha"]) == 64 and "enhqfwd" in out.meta
    # the sigma as the Map's uncertainty, where the output has values
    assert isinstance(out.uncertainty, StdDevUncertainty)
    sigma = out.uncertainty.array
    assert sigma.shape == out.data.shape and out.uncertainty.unit == u.G
    finite = np.isfinite(out.data)
    assert finite.mean() > 0.99 and np.all(sigma[finite] > 0)


def test_a_sequence_is_enhanced_in_order_with_one_network():
    maps = sunpy.map.Map(MAGNETOGRAMS[:2], sequence=True)
    out = enhance_hmi.enhance_map(maps, device="cpu", uncertainty=False)
    assert isinstance(out, sunpy.map.MapSequence) and len(out) == 2
    assert [m.date for m in out] == [m.date for m in maps]
    assert all(m.uncertainty is None for m in out)


def test_a_map_that_cannot_be_enhanced_is_one_clear_error():
    smap = sunpy.map.Map(MAGNETOGRAMS[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # sunpy's colour scale of all-NaN data
        blank = sunpy.map.Map(np.full(smap.data.shape, np.nan, np.float32), smap.meta)
    with pytest.raises(InputError, match=r"sunpy_map_2011\.12\.17.*no finite pixel"):
        enhance_hmi.enhance_map(blank, device="cpu")
    with pytest.raises(InputError, match="no Map"):
        enhance_hmi.enhance_map([], device="cpu")
