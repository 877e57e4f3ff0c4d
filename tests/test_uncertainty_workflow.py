"""The workflow writes sigma into the enhanced frames and the cubes (default config keys)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from astropy.io import fits
from test_workflow import REPO, snakemake

from enhance_hmi.cube import TimeCube
from enhance_hmi.model import EnhanceNet, save_weights
from enhance_hmi.model.uncertainty import SigmaHead, save_sigma_head, uncertainty_path


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> dict[str, str]:
    """Small untrained networks with an uncertainty head each."""
    folder = tmp_path_factory.mktemp("weights")
    paths = {}
    for observable, scale, units in (("magnetogram", 1000.0, "G"), ("continuum", 1.0, "qs")):
        torch.manual_seed(0)
        path = save_weights(
            EnhanceNet(n_blocks=1, width=8),
            folder / f"{observable}.safetensors",
            metadata={
                "observable": observable,
                "psf_model": "wachter",
                "input_normalisation": {"quantity": observable, "units": units, "scale": scale},
            },
        )
        save_sigma_head(
            SigmaHead(width=8, hidden=4), uncertainty_path(path), backbone=path, metadata={}
        )
        paths[observable] = str(path)
    return paths


def _config(tmp_path: Path, weights: dict[str, str]) -> Path:
    embedded = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    embedded["weights"] = weights
    embedded["output"] = "out"
    embedded["enhance"].update(device="cpu", tile=64)
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(embedded))
    return config


@pytest.mark.slow
def test_workflow_stores_sigma_in_frames_and_cubes(tmp_path, weights):
    snakemake(tmp_path, _config(tmp_path, weights), timeout=900)
    out = tmp_path / "out"
    frames = sorted(out.glob("enhanced/hmi.M_720s/**/*.fits"))
    assert frames
    with fits.open(frames[0]) as hdul:
        sigma = np.asarray(hdul["SIGMA"].data)
        assert hdul["SIGMA"].header["BUNIT"] == "G"
    cube = TimeCube(sorted((out / "cubes" / "hmi.M_720s").glob("*.h5"))[0])
    (stored,) = cube.read_maps(dataset="sigma")
    assert stored.data.shape == sigma.shape
    np.testing.assert_array_equal(stored.data, sigma)
