"""Averaging the network over the symmetries of the forward model (``symmetries``).

The groups are nested, each count a whole group; the averaged network is
then exactly equivariant to its group (turns, mirror images and, for
magnetograms, the sign of the field), which one pass is not; ``enhance
predict --symmetries`` records the count in the header and the settings
digest, and refuses a count the observable has no group for.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from astropy.io import fits

from enhance_hmi.cli import main
from enhance_hmi.errors import ConfigError
from enhance_hmi.inference import enhance_array
from enhance_hmi.inference.symmetry import Symmetry, symmetry_group
from enhance_hmi.model import EnhanceNet, save_weights
from enhance_hmi.settings import SYMMETRY_COUNTS, EnhanceSettings

DATA = Path(__file__).parent / "data"
CROP = DATA / "hmi.M_720s.20111217_060000_TAI.crop128.magnetogram.fits"


def _key(image: np.ndarray) -> bytes:
    return image.shape[0].to_bytes(2, "little") + image.tobytes()


@pytest.mark.parametrize("observable", ["continuum", "magnetogram"])
def test_each_count_is_a_group_and_each_symmetry_is_undone(observable):
    rng = np.random.default_rng(0)
    image = rng.standard_normal((5, 7)).astype(np.float32)  # no symmetry of its own
    for count in SYMMETRY_COUNTS[observable]:
        group = symmetry_group(count, observable)
        assert group[0] == Symmetry() and len(set(group)) == count
        images = {_key(g.apply(image)) for g in group}
        assert len(images) == count  # distinct maps
        for g in group:
            np.testing.assert_array_equal(g.undo(g.apply(image)), image)
            for h in group:  # closed: the composition is a member
                assert _key(h.apply(g.apply(image))) in images
    assert not any(g.negate for g in symmetry_group(8, "continuum"))
    assert symmetry_group(2, "magnetogram")[1] == Symmetry(negate=True)


def test_a_count_without_a_group_is_refused_in_one_line():
    with pytest.raises(ConfigError, match="symmetries for continuum must be one of 1, 2, 4, 8"):
        symmetry_group(16, "continuum")
    with pytest.raises(ConfigError, match="symmetries must be one of 1, 2, 4, 8, 16, got '3'"):
        EnhanceSettings.from_mapping({"symmetries": "3"})
    with pytest.raises(ConfigError, match="must be one of 1, 2, 4, 8 for continuum, got 16"):
        EnhanceSettings(observable="continuum", symmetries=16).validate()
    assert EnhanceSettings.from_mapping({"symmetries": "4"}).symmetries == 4
    assert EnhanceSettings(symmetries=2).output_record() == {"symmetries": 2}
    assert "symmetries" not in EnhanceSettings().output_record()  # archives keep their digest


def test_the_averaged_network_is_exactly_equivariant_and_one_pass_is_not():
    torch.manual_seed(0)
    net = EnhanceNet(n_blocks=1, width=8)
    rng = np.random.default_rng(1)
    data = (300 * rng.standard_normal((40, 52))).astype(np.float32)  # not square
    data[:6, :9] = np.nan  # off-disk pixels
    options = {"device": "cpu", "input_scale": 1000.0, "tile": 64}
    group = symmetry_group(16, "magnetogram")

    def run(image, symmetries=()):
        return enhance_array(np.ascontiguousarray(image), net, symmetries=symmetries, **options)

    one, averaged = run(data), run(data, group)
    np.testing.assert_array_equal(np.isnan(averaged), np.isnan(one))
    assert np.nanmax(np.abs(averaged - one)) > 1.0  # the passes differ
    scale = np.nanmax(np.abs(averaged))
    for g in group[1:]:
        # enhancing the mapped input gives the mapped output, to rounding
        mapped = run(g.apply(data), group)
        np.testing.assert_allclose(mapped, g.apply(averaged), atol=1e-5 * scale, equal_nan=True)
    turned = Symmetry(turns=1)
    assert np.nanmax(np.abs(run(turned.apply(data)) - turned.apply(one))) > 1e-2 * scale
    assert np.nanmax(np.abs(run(-data) + one)) > 1e-2 * scale
    # the mask of wanted pixels turns with the image
    wanted = np.ones(data.shape, bool)
    wanted[:, 40:] = False
    kept = enhance_array(data, net, symmetries=group, wanted=wanted, **options)
    assert np.isnan(kept[:, 80:]).all() and np.isfinite(kept[12:, :80]).all()


def _weights(path: Path, observable: str) -> Path:
    torch.manual_seed(0)
    metadata = {
        "observable": observable,
        "input_normalisation": {
            "quantity": "Blos" if observable == "magnetogram" else "continuum intensity",
            "units": "G" if observable == "magnetogram" else "quiet-Sun intensity",
            "scale": 1000.0 if observable == "magnetogram" else 1.0,
        },
        "psf_model": "wachter",
        "training_data": "untrained: random initialisation (test)",
    }
    return Path(save_weights(EnhanceNet(n_blocks=1, width=8), path, metadata=metadata))


def test_predict_records_the_symmetries_and_refuses_a_count_without_a_group(tmp_path, capsys):
    weights = _weights(tmp_path / "magnetogram.safetensors", "magnetogram")
    common = ["--weights", str(weights), "--device", "cpu", "--input-noise", "5G"]
    outputs = {}
    for count in ("1", "2"):
        out = tmp_path / f"enhanced_{count}.fits"
        assert main(["predict", str(CROP), "-o", str(out), *common, "--symmetries", count]) == 0
        with fits.open(out) as hdul:
            index = next(i for i, h in enumerate(hdul) if h.header.get("NAXIS") == 2)
            outputs[count] = (hdul[index].header, hdul[index].data.copy())
    (h1, d1), (h2, d2) = outputs["1"], outputs["2"]
    assert str(h1["ENHSYMM"]) == "1" and str(h2["ENHSYMM"]) == "2"
    assert h1["ENHSETSH"] != h2["ENHSETSH"]  # an archive made with one pass is redone
    assert np.nanmax(np.abs(d2 - d1)) > 0.1
    capsys.readouterr()
    out = tmp_path / "refused.fits"
    code = main(["predict", str(CROP), "-o", str(out), *common, "--symmetries", "32"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and not out.exists()
    assert err == (
        "enhance predict: error: --symmetries must be one of 1, 2, 4, 8, 16, got '32'"
    ), err
