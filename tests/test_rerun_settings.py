"""A rerun keeps a frame only when the settings that change its pixels match too.

:func:`enhance_hmi.batch.is_already_enhanced` compares the input, the weights
and the settings digest ``ENHSETSH`` (:func:`enhance_hmi.pipeline.settings_sha256`);
real sample magnetograms, real FITS files, real Snakemake runs, and the
cube columns that record each frame's input noise.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import astropy.units as u
import numpy as np
import pytest
from astropy.io import fits
from conftest import untrained_magnetogram_weights

from enhance_hmi.batch import is_already_enhanced
from enhance_hmi.cube import TimeCube, read_enhanced
from enhance_hmi.pipeline import (
    EnhanceSettings,
    accepted_settings_sha256,
    enhance_file,
    settings_sha256,
)
from enhance_hmi.provenance import sha256_file

REPO = Path(__file__).resolve().parents[1]
MAGNETOGRAMS = sorted(
    (REPO / "enhance_hmi" / "data" / "sample").glob("hmi.M_720s.*.magnetogram.fits")
)


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return untrained_magnetogram_weights(tmp_path_factory.mktemp("weights"))


def _digest(**options: object) -> str:
    return settings_sha256(EnhanceSettings(**options), observable="magnetogram", uncertainty=False)


def _header(path: Path) -> fits.Header:
    with fits.open(path) as hdul:
        return next(h.header for h in hdul if h.header.get("NAXIS") == 2)


def test_the_digest_follows_the_settings_that_change_the_pixels():
    base = _digest(input_noise=10 * u.G)
    assert _digest(input_noise=1 * u.mT) == base  # the same noise in other units
    assert _digest(input_noise=10 * u.G, device="cpu", tile=64, compile=True) == base
    # lossless outputs hold the same pixels: a gzip frame stays valid for a plain run
    assert _digest(input_noise=10 * u.G, compression=None) == base
    assert _digest(input_noise=10 * u.G, compression="gzip") == base
    changed = {
        "noise": _digest(input_noise=20 * u.G),
        "estimated noise": _digest(),
        "no projection": _digest(consistency=False),
        "normalisation": _digest(input_noise=10 * u.G, normalize="none"),
        "range check": _digest(input_noise=10 * u.G, check_range=False),
        "precision": _digest(input_noise=10 * u.G, precision="bf16"),
        "lossy output": _digest(input_noise=10 * u.G, compression="rice"),
    }
    assert base not in changed.values()
    assert len(set(changed.values())) == len(changed)
    with_sigma = settings_sha256(
        EnhanceSettings(input_noise=10 * u.G), observable="magnetogram", uncertainty=True
    )
    assert with_sigma != base


def test_a_frame_made_with_other_settings_is_not_already_enhanced(tmp_path, weights):
    source, out = MAGNETOGRAMS[0], tmp_path / "out.fits"
    shas = (sha256_file(source), sha256_file(weights))
    enhance_file(source, out, weights=weights, device="cpu", input_noise=10 * u.G)
    header = _header(out)
    assert header["ENHSETSH"] == _digest(input_noise=10 * u.G)
    assert is_already_enhanced(out, *shas, settings_sha256=_digest(input_noise=10 * u.G))
    for other in ({"input_noise": 20 * u.G}, {}, {"consistency": False}):
        assert not is_already_enhanced(out, *shas, settings_sha256=_digest(**other)), other
    # a frame written before ENHSETSH was recorded does not say how it was made
    old = tmp_path / "old.fits"
    with fits.open(out) as hdul:
        del hdul[1].header["ENHSETSH"]
        hdul.writeto(old, checksum=True)
    assert not is_already_enhanced(old, *shas, settings_sha256=_digest(input_noise=10 * u.G))
    # a plain frame written while plain and gzip frames had records of their own is kept
    record = {
        "normalize": "auto",
        "check_range": True,
        "precision": "fp32",
        "compression": None,
        "uncertainty": False,
        "consistency": True,
        "input_noise": 10.0,
    }
    plain_digest = hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()
    plain = tmp_path / "plain.fits"
    with fits.open(out) as hdul:
        hdul[1].header["ENHSETSH"] = plain_digest
        hdul.writeto(plain, checksum=True)
    settings = EnhanceSettings(input_noise=10 * u.G, compression=None)
    accepted = accepted_settings_sha256(settings, observable="magnetogram", uncertainty=False)
    assert accepted == {plain_digest, _digest(input_noise=10 * u.G)}
    assert is_already_enhanced(plain, *shas, settings_sha256=accepted)
    assert not is_already_enhanced(plain, *shas, settings_sha256=_digest(input_noise=10 * u.G))
    lossy = EnhanceSettings(input_noise=10 * u.G, compression="rice")
    assert accepted_settings_sha256(lossy, observable="magnetogram", uncertainty=False) == {
        _digest(input_noise=10 * u.G, compression="rice")
    }


def test_the_cube_records_each_frames_input_noise(tmp_path, weights):
    given, estimated, off = (tmp_path / f"{name}.fits" for name in ("given", "estimated", "off"))
    enhance_file(MAGNETOGRAMS[0], given, weights=weights, device="cpu", input_noise=10 * u.G)
    enhance_file(MAGNETOGRAMS[1], estimated, weights=weights, device="cpu")
    enhance_file(MAGNETOGRAMS[2], off, weights=weights, device="cpu", consistency=False)
    cube = TimeCube(tmp_path / "m.h5")
    assert cube.append(read_enhanced(path) for path in (given, estimated, off)) == 3
    table = TimeCube(tmp_path / "m.h5").table()
    assert [row["input_noise_source"] for row in table] == ["given", "histogram", ""]
    assert table[0]["input_noise"] == 10.0
    assert table[1]["input_noise"] == pytest.approx(float(_header(estimated)["ENHNOISE"]))
    assert 0 < table[1]["input_noise"] < 100
    assert np.isnan(table[2]["input_noise"])


@pytest.mark.slow
def test_a_workflow_rerun_re_enhances_frames_whose_input_noise_changed(tmp_path):
    """Run at 10 G, change enhance.input_noise to 20 G and force the batch rule: every
    frame is enhanced again; forced once more with the same setting, every frame is kept."""
    from test_workflow import _make_weights, make_archive, snakemake, write_config

    archive = make_archive(tmp_path / "archive", [0, 1])
    config = write_config(
        tmp_path / "c.yaml",
        source=str(archive),
        series=["hmi.M_720s"],
        start="2016-07-07T01:00:00",
        end="2016-07-07T01:12:00",
        cadence="12m",
        weights=_make_weights(tmp_path, n_blocks=1, width=8),
        output="out",
    )
    text = config.read_text()
    config.write_text(
        text.replace("enhance:\n", "enhance:\n  input_noise:\n    magnetogram: 10 G\n")
    )
    snakemake(tmp_path, config)

    def noises() -> list[float]:
        frames = sorted((tmp_path / "out").glob("enhanced/*/*/*/*.fits"))
        assert len(frames) == 2
        return [float(_header(path)["ENHNOISE"]) for path in frames]

    def statuses() -> list[str]:
        batches = sorted((tmp_path / "out").glob("enhanced/*/batches/*.json"))
        return [f["status"] for b in batches for f in json.loads(b.read_text())["frames"]]

    assert noises() == [10.0, 10.0]
    config.write_text(
        text.replace("enhance:\n", "enhance:\n  input_noise:\n    magnetogram: 20 G\n")
    )
    snakemake(tmp_path, config, "--forcerun", "enhance_batch")
    assert noises() == [20.0, 20.0]
    assert statuses() == ["enhanced", "enhanced"]
    snakemake(tmp_path, config, "--forcerun", "enhance_batch")
    assert statuses() == ["kept", "kept"]
