"""Sigma survives the trip enhanced FITS -> time cube -> sunpy Map (and plain h5py)."""

from __future__ import annotations

import dataclasses

import astropy.units as u
import h5py
import numpy as np
import sunpy.map
import torch
from conftest import REPO_ROOT, randomised_net

from enhance_hmi.cube import TimeCube, read_enhanced
from enhance_hmi.inference import enhance_frame
from enhance_hmi.io import read_hmi, write_enhanced
from enhance_hmi.io.sigma import SigmaMap
from enhance_hmi.model import save_weights
from enhance_hmi.model.uncertainty import SigmaHead, save_sigma_head, uncertainty_path

MAGNETOGRAM = (
    REPO_ROOT / "tests" / "data" / "hmi.M_720s.20111217_060000_TAI.crop128.magnetogram.fits"
)
METADATA = {
    "observable": "magnetogram",
    "input_normalisation": {"quantity": "Blos", "units": "G", "scale": 1000.0},
    "psf_model": "wachter",
}


def _enhanced_file(tmp_path):
    weights = save_weights(
        randomised_net(4, n_blocks=1, width=4),
        tmp_path / "magnetogram.safetensors",
        metadata=METADATA,
    )
    torch.manual_seed(2)
    head = SigmaHead(width=4, hidden=3)
    with torch.no_grad():
        for p in head.parameters():
            p.add_(0.2 * torch.randn(p.shape))
    save_sigma_head(head, uncertainty_path(weights), backbone=weights, metadata={})
    # an active-region cut-out: no quiet Sun to estimate the noise on, so it is given
    frame = enhance_frame(
        read_hmi(MAGNETOGRAM),
        weights=weights,
        device="cpu",
        uncertainty=True,
        input_noise=5 * u.G,
    )
    path = write_enhanced(tmp_path / "frame.enhanced.fits", frame, provenance={})
    return path, frame


def test_sigma_survives_the_cube_round_trip(tmp_path):
    path, frame = _enhanced_file(tmp_path)
    first = read_enhanced(path)
    assert isinstance(first.meta["sigma"], SigmaMap)
    np.testing.assert_array_equal(first.meta["sigma"].data, frame.meta["sigma"].data)
    assert "sigma" not in read_enhanced(path, sigma=False).meta
    # a later frame stored without its uncertainty
    header = first.header.copy()
    header["T_REC"] = "2011.12.17_06:12:00_TAI"
    meta = {k: v for k, v in first.meta.items() if k != "sigma"}
    meta["t_rec"], meta["input_sha256"] = header["T_REC"], "0" * 64
    second = dataclasses.replace(first, header=header, meta=meta)
    note = "not told: family spread (kappa 2.85)"  # ENHSGFWD, as read from the file
    first.meta["sigma"] = dataclasses.replace(first.meta["sigma"], forward_model=note)
    cube = TimeCube(tmp_path / "cube.h5")
    assert cube.append([first, second]) == 2
    assert [row["sigma_forward_model"] for row in cube.table()] == [note, ""]
    end = "2011.12.17_06:05:00_TAI"
    data_maps = cube.read_maps(end=end)
    sigma_maps = cube.read_maps(end=end, dataset="sigma")
    assert len(sigma_maps) == 1 and isinstance(sigma_maps[0], sunpy.map.GenericMap)
    np.testing.assert_array_equal(sigma_maps[0].data, frame.meta["sigma"].data)
    # same WCS and units as the enhanced frame
    assert sigma_maps[0].wcs.to_header() == data_maps[0].wcs.to_header()
    assert sigma_maps[0].unit == data_maps[0].unit
    # plain h5py reads the virtual dataset through the root file
    with h5py.File(tmp_path / "cube.h5", "r") as handle:
        stored = handle["sigma"][:]
    np.testing.assert_array_equal(stored[0], frame.meta["sigma"].data)
    assert np.isnan(stored[1]).all()
    np.testing.assert_array_equal(cube.read_frame(0)[0], frame.data)
