"""Plausibility checks before compute, on real FITS files.

Inputs: the committed crop of a real JSOC hmi.M_720s file (0.504"/px, gauss),
the bundled real HMI continuum cut-out (DN/s), sunpy's real hmi.Ic_45s full
disk resampled to 20.66"/px, and copies of these with one thing changed (a
card, the units, a few pixels, a sidecar value): each check must refuse the
wrong file with one line naming it, or mask and count what it masks, and an
explicit override must let a user who knows better through.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from astropy.io import fits
from sunpy.data.test import get_test_filepath

from enhance_hmi.cli import main
from enhance_hmi.errors import FieldDominatedNoiseWarning, InputError, WeightsError
from enhance_hmi.inference import enhance_frame
from enhance_hmi.io import read_hmi
from enhance_hmi.io.plausibility import (
    MAX_PLAUSIBLE_BLOS,
    check_pixel_scale,
    pixel_scale_arcsec,
)
from enhance_hmi.model import EnhanceNet, load_weights, save_weights
from enhance_hmi.model.weights import (
    PIXEL_SCALE_KEY,
    default_weights,
    read_sidecar,
    trained_pixel_scale,
)
from enhance_hmi.pipeline import enhance_file

REPO = Path(__file__).resolve().parents[1]
CROP = REPO / "tests" / "data" / "hmi.M_720s.20111217_060000_TAI.crop128.magnetogram.fits"
SAMPLE = REPO / "enhance_hmi" / "data" / "sample"
SAMPLE_IC = SAMPLE / "hmi.Ic_45s.20140301_000130_TAI.2.continuum.fits"
QUIET_IC = SAMPLE / "hmi_quiet_ic_cutout.fits"
RESAMPLED_IC = Path(get_test_filepath("resampled_hmi.fits"))


def _small_weights(directory: Path, observable: str, **extra: object) -> Path:
    torch.manual_seed(0)
    metadata = {
        "observable": observable,
        "input_normalisation": {
            "quantity": "continuum intensity" if observable == "continuum" else "Blos",
            "units": "quiet-Sun intensity" if observable == "continuum" else "G",
            "scale": 1.0 if observable == "continuum" else 1000.0,
        },
        "psf_model": "wachter",
        **extra,
    }
    path = directory / f"{observable}.safetensors"
    return Path(save_weights(EnhanceNet(n_blocks=1, width=8), path, metadata=metadata))


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("weights")
    return {o: _small_weights(directory, o) for o in ("continuum", "magnetogram")}


def _jsoc_copy(tmp_path: Path, name: str, change) -> Path:  # noqa: ANN001 - a callable
    """A copy of the real crop (JSOC layout) with ``change(header, data)`` applied."""
    with fits.open(CROP) as hdul:
        header = hdul[1].header.copy()
        data = np.asarray(hdul[1].data, dtype=np.float32)
    for key in ("BSCALE", "BZERO", "BLANK", "CHECKSUM", "DATASUM"):
        header.remove(key, ignore_missing=True)
    data = change(header, data)
    path = tmp_path / name
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(data, header)]).writeto(path)
    return path


def _error_line(capsys: pytest.CaptureFixture[str]) -> str:
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith("enhance predict: error: ")
    return lines[0]


# --------------------------------------------------------------------------- pixel scale


def test_pixel_scale_read_from_real_headers() -> None:
    assert pixel_scale_arcsec(read_hmi(CROP).header) == pytest.approx((0.504, 0.504), rel=2e-3)
    assert pixel_scale_arcsec(read_hmi(SAMPLE_IC).header) == pytest.approx((0.504291,) * 2)
    assert pixel_scale_arcsec(read_hmi(RESAMPLED_IC).header) == pytest.approx((20.65576,) * 2)
    # a bare cut-out: CDELT in arcsec without CTYPE/CUNIT
    assert pixel_scale_arcsec(read_hmi(QUIET_IC).header) == pytest.approx((0.504, 0.504))


def test_pixel_scale_from_cd_matrix_and_units() -> None:
    header = read_hmi(CROP).header
    cd = fits.Header({"CTYPE1": "HPLN-TAN", "CTYPE2": "HPLT-TAN", "CUNIT1": "deg"})
    cd["CUNIT2"] = "deg"
    angle = np.radians(30.0)
    scale = 0.504 / 3600
    cd["CD1_1"], cd["CD1_2"] = scale * np.cos(angle), -scale * np.sin(angle)
    cd["CD2_1"], cd["CD2_2"] = scale * np.sin(angle), scale * np.cos(angle)
    assert pixel_scale_arcsec(cd) == pytest.approx((0.504, 0.504))
    header["CUNIT1"] = "deg"  # the same number of degrees: 3600x too large
    with pytest.raises(InputError, match="has 1815x0.5043"):
        check_pixel_scale(header, 0.504, path=CROP)
    header["CUNIT1"] = "m"
    with pytest.raises(InputError, match="CUNIT1 = 'M' is not an angle unit"):
        check_pixel_scale(header, 0.504, path=CROP)


def test_wrong_or_missing_pixel_scale_refused_before_compute(weights, monkeypatch) -> None:
    """enhance_frame refuses before the network runs; check_scale=False overrides."""
    import enhance_hmi.inference.frame as frame_module

    calls = []
    real = frame_module.enhance_array
    monkeypatch.setattr(
        frame_module, "enhance_array", lambda *a, **k: calls.append(1) or real(*a, **k)
    )
    full_disk = read_hmi(RESAMPLED_IC)
    with pytest.raises(InputError, match=r"resampled_hmi.fits has 20.66x20.66\"/px"):
        enhance_frame(full_disk, weights=weights["continuum"], device="cpu")
    bare = read_hmi(QUIET_IC)
    del bare.header["CDELT1"], bare.header["CDELT2"]
    with pytest.raises(InputError, match="has no pixel scale in its header"):
        enhance_frame(bare, weights=weights["continuum"], device="cpu")
    assert calls == []
    out = enhance_frame(full_disk, weights=weights["continuum"], device="cpu", check_scale=False)
    assert out.data.shape == (200, 200) and calls == [1]
    assert out.meta["scale_checked"] is False


def test_sidecar_pixel_scale_is_the_reference(tmp_path: Path) -> None:
    """A network trained at 0.25"/px refuses a 0.504"/px frame; the default is 0.504"."""
    assert trained_pixel_scale(read_sidecar(default_weights("continuum"))) == 0.504
    path = _small_weights(tmp_path, "magnetogram", **{PIXEL_SCALE_KEY: 0.25})
    assert trained_pixel_scale(read_sidecar(path)) == 0.25
    with pytest.raises(InputError, match=r"trained at 0.25\"/px"):
        enhance_frame(read_hmi(CROP), weights=path, device="cpu")


def test_api_override_through_enhance_file(tmp_path: Path, weights) -> None:
    out = tmp_path / "out.fits"
    with pytest.raises(InputError, match="--no-scale-check"):
        enhance_file(RESAMPLED_IC, out, weights=weights["continuum"], device="cpu")
    assert not out.exists()
    enhance_file(RESAMPLED_IC, out, weights=weights["continuum"], device="cpu", check_scale=False)
    assert fits.getheader(out, 1)["NAXIS1"] == 200


# --------------------------------------------------------------------------- observable


@pytest.mark.parametrize(
    ("cards", "name", "words"),
    [
        ({"BUNIT": "DN/s"}, "x.fits", ["CONTENT = 'MAGNETOGRAM' says magnetogram", "BUNIT"]),
        ({"CONTENT": "CONTINUUM INTENSITY"}, "x.fits", ["says continuum", "series hmi.M_720s"]),
        ({}, "hmi.Ic_45s.20111217_060000_TAI.2.continuum.fits", ["series hmi.Ic_45s"]),
    ],
)
def test_header_that_contradicts_itself_is_refused(
    tmp_path: Path, cards: dict[str, str], name: str, words: list[str]
) -> None:
    path = _jsoc_copy(tmp_path, name, lambda h, d: (h.update(cards), d)[1])
    with pytest.raises(InputError, match="contradictory header") as info:
        read_hmi(path)
    for word in words:
        assert word in str(info.value)
    assert "pass --observable" in str(info.value)
    if "BUNIT" in cards:  # saying "magnetogram" does not make DN/s a field unit
        with pytest.raises(InputError, match="BUNIT = 'DN/s' is not a magnetic field unit"):
            read_hmi(path, observable="magnetogram")
    else:  # the user says which card is right
        assert read_hmi(path, observable="magnetogram").observable == "magnetogram"


def test_continuum_passed_as_magnetogram_is_refused(
    tmp_path: Path, weights, capsys: pytest.CaptureFixture[str]
) -> None:
    """Real continuum pixels (~6e4 DN/s) with nothing saying what they are, read as Blos."""
    with fits.open(QUIET_IC) as hdul:
        data = np.asarray(hdul[0].data, dtype=np.float32)
        header = fits.Header({"CDELT1": 0.504, "CDELT2": 0.504})
    path = tmp_path / "unlabelled.fits"
    fits.PrimaryHDU(data, header).writeto(path)
    out = tmp_path / "out.fits"
    argv = ["predict", str(path), "-o", str(out), "--observable", "magnetogram"]
    argv += ["--weights", str(weights["magnetogram"]), "--device", "cpu"]
    assert main(argv) == 2
    line = _error_line(capsys)
    assert "unlabelled.fits does not look like a magnetogram" in line
    assert f"|Blos| > {MAX_PLAUSIBLE_BLOS:g} G" in line and "--no-range-check" in line
    assert not out.exists()
    with pytest.warns(FieldDominatedNoiseWarning):  # granulation is no quiet-Sun Blos
        assert main([*argv, "--no-range-check"]) == 0  # the user knows better
    header = fits.getheader(out, 1)
    assert header["ENHMBAD"] == 0 and header["ENHOBS"] == "magnetogram"
    assert any("range_check: off" in str(h) for h in header["HISTORY"])


def test_magnetogram_passed_as_continuum_is_refused(tmp_path: Path) -> None:
    with fits.open(CROP) as hdul:
        data = np.asarray(hdul[1].data, dtype=np.float32)
    path = tmp_path / "unlabelled.fits"
    fits.PrimaryHDU(data, fits.Header({"CDELT1": 0.504, "CDELT2": 0.504})).writeto(path)
    with pytest.raises(InputError, match="does not look like a continuum.*negative intensity"):
        read_hmi(path, observable="continuum")


# --------------------------------------------------------------------------- units


@pytest.mark.parametrize(("bunit", "per_gauss"), [("kG", 1e-3), ("T", 1e-4), ("Mx/cm^2", 1.0)])
def test_magnetogram_units_converted_to_gauss(tmp_path: Path, bunit: str, per_gauss: float) -> None:
    reference = read_hmi(CROP)

    def change(header: fits.Header, data: np.ndarray) -> np.ndarray:
        header["BUNIT"] = bunit
        return data * np.float32(per_gauss)

    frame = read_hmi(_jsoc_copy(tmp_path, "converted.fits", change))
    np.testing.assert_allclose(frame.data, reference.data, rtol=1e-6, atol=1e-3)
    assert frame.header["BUNIT"] == "G" and frame.meta["input_units"] == bunit
    if per_gauss != 1.0:
        assert "-> G" in frame.meta["normalisation"]["unit_conversion"]
        assert any("converted from" in str(h) for h in frame.header["HISTORY"])


def test_magnetogram_in_other_units_is_refused(tmp_path: Path) -> None:
    path = _jsoc_copy(tmp_path, "velocity.fits", lambda h, d: (h.update(BUNIT="m/s"), d)[1])
    with pytest.raises(InputError, match="BUNIT = 'm/s' is not a magnetic field unit"):
        read_hmi(path)


# --------------------------------------------------------------------------- bad pixels


def _damage(header: fits.Header, data: np.ndarray) -> np.ndarray:
    data[10, 11] = 3e38
    data[20, 21] = np.inf
    data[30, 31] = -np.inf
    data[40, 41] = -3.4e38
    data[50, 51] = 5e4  # finite, but no solar field
    data[60, 61] = np.nan
    return data


BAD_PIXELS = [(10, 11), (20, 21), (30, 31), (40, 41), (50, 51), (60, 61)]


def test_absurd_pixels_masked_counted_and_never_propagated(
    tmp_path: Path, weights, capsys: pytest.CaptureFixture[str]
) -> None:
    source = _jsoc_copy(tmp_path, "damaged.fits", _damage)
    frame = read_hmi(source)
    assert frame.meta["masked"] == {"nan": 1, "infinite": 2, "fill": 2, "implausible": 1}
    # the frame is north up (rotated 180 deg): find the pixels there
    ny, nx = frame.data.shape
    for y, x in BAD_PIXELS:
        assert np.isnan(frame.data[ny - 1 - y, nx - 1 - x])
    assert np.isfinite(frame.data).sum() == frame.data.size - len(BAD_PIXELS)

    out = tmp_path / "out.fits"
    argv = ["predict", str(source), "-o", str(out), "--weights", str(weights["magnetogram"])]
    with pytest.warns(FieldDominatedNoiseWarning):  # an active-region cut-out
        assert main([*argv, "--device", "cpu"]) == 0, capsys.readouterr().err
    with fits.open(out) as hdul:
        header, data = hdul[1].header, hdul[1].data
    assert (header["ENHMNAN"], header["ENHMINF"], header["ENHMFILL"], header["ENHMBAD"]) == (
        1,
        2,
        2,
        1,
    )
    expected_nan = np.kron(~np.isfinite(frame.data), np.ones((2, 2), dtype=bool))
    np.testing.assert_array_equal(np.isnan(data), expected_nan)
    assert np.abs(data[np.isfinite(data)]).max() < MAX_PLAUSIBLE_BLOS


def test_range_override_keeps_finite_values_but_not_fill_values(tmp_path: Path) -> None:
    frame = read_hmi(_jsoc_copy(tmp_path, "damaged.fits", _damage), check_range=False)
    assert frame.meta["masked"] == {"nan": 1, "infinite": 2, "fill": 2, "implausible": 0}
    ny, nx = frame.data.shape
    assert frame.data[ny - 1 - 50, nx - 1 - 51] == pytest.approx(5e4)


def test_many_implausible_pixels_refuse_the_frame(tmp_path: Path) -> None:
    def change(header: fits.Header, data: np.ndarray) -> np.ndarray:
        data[:4] = 2e4  # 4 of 128 rows: 3 % of the pixels
        return data

    with pytest.raises(InputError, match=r"512 of 16384 pixels \(3 %\)"):
        read_hmi(_jsoc_copy(tmp_path, "striped.fits", change))


# --------------------------------------------------------------------------- sidecars


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda m: m["input_normalisation"].update(scale=0), "scale = 0 must be a finite positive"),
        (lambda m: m["input_normalisation"].update(scale=float("nan")), "scale = nan"),
        (lambda m: m["architecture"].update(width=1e6), "width = 1000000.0 is not an integer"),
        (lambda m: m["architecture"].update(width=1_000_000), "width = 1000000 is not"),
        (lambda m: m["architecture"].update(n_blocks=-1), "n_blocks = -1"),
        (lambda m: m["architecture"].update(n_blocks=64, width=512), "parameters"),
        (lambda m: m["architecture"].update(linear_skip=4), "linear_skip = 4"),
        (lambda m: m.update(observable="dopplergram"), "observable 'dopplergram'"),
        (lambda m: m.update({PIXEL_SCALE_KEY: 0}), f"{PIXEL_SCALE_KEY} = 0"),
    ],
)
def test_sidecar_values_refused_before_any_allocation(
    tmp_path: Path, weights, monkeypatch, capsys, edit, match: str
) -> None:
    bad = tmp_path / "magnetogram.safetensors"
    shutil.copy(weights["magnetogram"], bad)
    meta = json.loads(weights["magnetogram"].with_suffix(".json").read_text())
    edit(meta)
    bad.with_suffix(".json").write_text(json.dumps(meta))
    built = []
    monkeypatch.setattr(EnhanceNet, "__init__", lambda *a, **k: built.append(k))
    with pytest.raises(WeightsError, match=match):
        load_weights(bad)
    assert built == []  # refused before a network was built
    monkeypatch.undo()
    out = tmp_path / "out.fits"
    assert main(["predict", str(CROP), "-o", str(out), "--weights", str(bad)]) == 2
    line = _error_line(capsys)
    assert "magnetogram.json" in line and not out.exists()


def test_shipped_sidecars_pass_the_checks() -> None:
    for observable in ("continuum", "magnetogram"):
        meta = read_sidecar(default_weights(observable))
        assert trained_pixel_scale(meta) == pytest.approx(0.504)


def test_batch_settings_carry_the_overrides(tmp_path: Path, weights) -> None:
    """The workflow's path (enhance_files + EnhanceSettings, config enhance.check_*)."""
    from enhance_hmi.batch import enhance_files
    from enhance_hmi.pipeline import EnhanceSettings

    pairs = [(RESAMPLED_IC, tmp_path / "a.fits"), (SAMPLE_IC, tmp_path / "b.fits")]
    checked = enhance_files(pairs, EnhanceSettings(weights=weights["continuum"], device="cpu"))
    assert [o.status for o in checked] == ["failed", "enhanced"]
    assert "20.66x20.66" in checked[0].error and not (tmp_path / "a.fits").exists()
    (tmp_path / "b.fits").unlink()
    settings = EnhanceSettings(weights=weights["continuum"], device="cpu", check_scale=False)
    unchecked = enhance_files(pairs, settings)
    assert [o.status for o in unchecked] == ["enhanced", "enhanced"]
