"""Hinode readers on the real files in ../shared/data/hinode."""

from __future__ import annotations

import astropy.units as u
import numpy as np
import pytest

from enhance_hmi.validation.hinode import classify, read_header_text, read_hinode


def test_nfi_magnetogram_is_read_and_flagged(shared_data):
    img = read_hinode(shared_data / "hinode" / "FGMG4_20110214_030443.7.cols0-879.fits")
    assert img.product == "nfi-v/i"
    assert img.data.shape == (704, 880) and np.isfinite(img.data).all()
    assert img.pixel_scale.to_value(u.arcsec) == pytest.approx(0.16)
    assert img.wavelength == 5896 * u.AA
    assert any("not calibrated Blos" in n for n in img.notes)


def test_bfi_header_text(shared_data):
    header = read_header_text(shared_data / "hinode" / "HinodeSOT.header")
    product, _, _ = classify(header)
    assert product == "bfi"
    assert header["CDELT1"] == pytest.approx(0.10896)


def test_observation_times_of_real_files_in_tai(shared_data):
    """HMI T_OBS (TAI, sub-second) and Hinode DATE_OBS (UTC) read as one TAI instant each."""
    from astropy.io import fits
    from astropy.time import Time

    from enhance_hmi.validation.target import frame_time
    from enhance_hmi.validation.target_grid import hinode_time

    hmi = shared_data / "hmi" / "fulldisk" / "hmi.M_720s.20160707_010000_TAI.magnetogram.fits"
    header = fits.getheader(hmi, 1)
    assert header["T_OBS"] == "2016.07.07_01:00:08.326_TAI"
    when = frame_time(header)
    assert when.scale == "tai" and when.isot == "2016-07-07T01:00:08.326000"
    img = read_hinode(shared_data / "hinode" / "FGMG4_20110214_030443.7.cols0-879.fits")
    hinode = hinode_time(img)
    assert hinode.scale == "tai"
    # DATE_OBS is UTC: 34 s behind TAI in 2011
    assert abs((hinode - Time("2011-02-14T03:05:17.785", scale="tai")).to_value("s")) < 1e-6
