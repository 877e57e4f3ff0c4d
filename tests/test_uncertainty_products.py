"""Sigma through tiled inference, enhance_frame, the FITS writer and the predict CLI."""

from __future__ import annotations

import astropy.units as u
import numpy as np
import pytest
import torch
from astropy.io import fits
from conftest import REPO_ROOT, randomised_net

from enhance_hmi.cli import main
from enhance_hmi.errors import WeightsError
from enhance_hmi.inference import enhance_array, enhance_frame
from enhance_hmi.inference.array import enhance_array_with_sigma
from enhance_hmi.io import read_hmi, write_enhanced
from enhance_hmi.io.sigma import SIGMA_EXTNAME, read_sigma
from enhance_hmi.model import save_weights
from enhance_hmi.model.uncertainty import (
    EnhanceWithUncertainty,
    SigmaCalibration,
    SigmaHead,
    save_sigma_head,
    uncertainty_path,
)

MAGNETOGRAM = (
    REPO_ROOT / "tests" / "data" / "hmi.M_720s.20111217_060000_TAI.crop128.magnetogram.fits"
)
METADATA = {
    "observable": "magnetogram",
    "input_normalisation": {"quantity": "Blos", "units": "G", "scale": 1000.0},
    "psf_model": "wachter",
}


def _head(width: int = 4) -> SigmaHead:
    torch.manual_seed(11)
    head = SigmaHead(width=width, hidden=3)
    with torch.no_grad():
        for p in head.parameters():
            p.add_(0.2 * torch.randn(p.shape))
    return head.eval()


@pytest.fixture
def weights_dir(tmp_path):
    """A magnetogram network with its head, as ``magnetogram.safetensors`` in a folder."""
    folder = tmp_path / "weights"
    folder.mkdir()
    weights = save_weights(
        randomised_net(4, n_blocks=1, width=4),
        folder / "magnetogram.safetensors",
        metadata=METADATA,
    )
    save_sigma_head(_head(), uncertainty_path(weights), backbone=weights, metadata={})
    return folder


@pytest.mark.parametrize(
    "calibration",
    [
        SigmaCalibration(),
        # a map that reads the output's and the input's local structure
        SigmaCalibration(
            log_scale=0.1,
            exponents=(0.6, 0.7, -0.3, 0.4),
            references=(0.01, 0.02, 0.03, 0.02),
        ),
    ],
)
def test_tiled_sigma_equals_whole_image_and_keeps_nan(calibration):
    model = EnhanceWithUncertainty(
        randomised_net(4, n_blocks=1, width=4), _head(), calibration=calibration
    )
    rng = np.random.default_rng(0)
    image = rng.normal(0, 40, (90, 77)).astype(np.float32)
    image[:6, :9] = np.nan
    whole_out, whole_sigma = enhance_array_with_sigma(
        image, model, device="cpu", tile=512, input_scale=1000.0
    )
    out, sigma = enhance_array_with_sigma(image, model, device="cpu", tile=48, input_scale=1000.0)
    np.testing.assert_allclose(sigma, whole_sigma, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out, whole_out, rtol=1e-5, atol=1e-4)
    assert np.isnan(sigma[:12, :18]).all() and np.isfinite(sigma[12:, 18:]).all()
    # channel 0 is the plain network's output
    plain = enhance_array(image, model.backbone, device="cpu", tile=48, input_scale=1000.0)
    np.testing.assert_allclose(out, plain, rtol=1e-5, atol=1e-4)
    # sigma needs the head's wider receptive field: the backbone's margin is not enough
    _, short = enhance_array_with_sigma(
        image,
        model,
        device="cpu",
        tile=48,
        input_scale=1000.0,
        margin=model.backbone.receptive_radius - 3,
    )
    assert np.nanmax(np.abs(short - whole_sigma)) > 1e-4


def test_sigma_hdu_has_the_image_wcs_and_units(weights_dir, tmp_path):
    frame = read_hmi(MAGNETOGRAM)
    enhanced = enhance_frame(
        frame,
        weights=weights_dir / "magnetogram.safetensors",
        device="cpu",
        uncertainty=True,
        input_noise=5 * u.G,  # an active-region cut-out: no quiet Sun to estimate it on
    )
    sigma = enhanced.meta["sigma"]
    assert sigma.data.shape == enhanced.data.shape == (256, 256)
    for compression in ("gzip", "rice", None):
        path = write_enhanced(
            tmp_path / f"out_{compression}.fits",
            enhanced,
            provenance={"weights_file": "magnetogram.safetensors"},
            compression=compression,
        )
        with fits.open(path) as hdul:
            names = [h.name for h in hdul]
            assert SIGMA_EXTNAME in names
            image_hdu = hdul[1] if compression else hdul[0]
            image_header = image_hdu.header
        data, header = read_sigma(path)
        assert header["BUNIT"] == "G" == image_header["BUNIT"]
        assert header["ENHSGMET"] == "gaussian-nll-head"
        assert "ENHSGSHA" in header and "ENHSGCAL" in header
        wcs_keys = [
            k
            for k in image_header
            if k.startswith(
                (
                    "CRPIX",
                    "CDELT",
                    "CRVAL",
                    "CTYPE",
                    "CUNIT",
                    "CROTA",
                    "PC",
                    "RSUN",
                    "DSUN",
                    "HGLN",
                    "HGLT",
                    "DATE-OBS",
                )
            )
        ]
        assert {"CRPIX1", "CDELT1", "CRVAL1", "CTYPE1"} <= set(wcs_keys)
        for key in wcs_keys:
            assert header[key] == image_header[key], key
        if compression == "gzip" or compression is None:
            np.testing.assert_array_equal(data, sigma.data)
        else:
            assert np.nanmax(np.abs(data - sigma.data)) < 0.1 * np.nanmedian(sigma.data)
    # without uncertainty there is no SIGMA HDU
    plain = enhance_frame(
        frame,
        weights=weights_dir / "magnetogram.safetensors",
        device="cpu",
        input_noise=5 * u.G,
        uncertainty=False,
    )
    assert "sigma" not in plain.meta
    path = write_enhanced(tmp_path / "plain.fits", plain, provenance={})
    with fits.open(path) as hdul:
        assert SIGMA_EXTNAME not in [h.name for h in hdul]


def test_uncertainty_for_weights_without_a_head_is_one_clear_error(weights_dir):
    uncertainty_path(weights_dir / "magnetogram.safetensors").unlink()
    with pytest.raises(WeightsError, match="fit-uncertainty"):
        enhance_frame(
            read_hmi(MAGNETOGRAM),
            weights=weights_dir / "magnetogram.safetensors",
            device="cpu",
            uncertainty=True,
        )


def test_predict_uncertainty_options(weights_dir, tmp_path, capsys):
    weights = str(weights_dir / "magnetogram.safetensors")
    weights_and_noise = [weights, "--input-noise", "5G"]  # an active-region cut-out
    out = tmp_path / "with.fits"
    assert main(["predict", str(MAGNETOGRAM), "-o", str(out), "--weights", *weights_and_noise]) == 0
    assert read_sigma(out)[0].shape == (256, 256)
    out2 = tmp_path / "without.fits"
    code = main(
        [
            "predict",
            str(MAGNETOGRAM),
            "-o",
            str(out2),
            "--weights",
            *weights_and_noise,
            "--no-uncertainty",
        ]
    )
    assert code == 0
    with fits.open(out2) as hdul:
        assert SIGMA_EXTNAME not in [h.name for h in hdul]
    # a network without its head: written without sigma by default; --uncertainty makes
    # it an error (exit 2, one line naming the way out, nothing written)
    uncertainty_path(weights).unlink()
    out3 = tmp_path / "auto.fits"
    assert (
        main(["predict", str(MAGNETOGRAM), "-o", str(out3), "--weights", *weights_and_noise]) == 0
    )
    with fits.open(out3) as hdul:
        assert SIGMA_EXTNAME not in [h.name for h in hdul]
    out4 = tmp_path / "refused.fits"
    capsys.readouterr()
    argv = ["predict", str(MAGNETOGRAM), "-o", str(out4), "--weights", weights, "--uncertainty"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--no-uncertainty" in err
    assert not out4.exists()
