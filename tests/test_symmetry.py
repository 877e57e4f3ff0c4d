"""Averaging the network over the symmetries of the forward model (``symmetries``).

The groups are nested, each count a whole group; the averaged network is
then exactly equivariant to its group (turns, mirror images and, for
magnetograms, the sign of the field), which one pass is not; the sigma
channel is averaged without a sign; ``enhance
predict --symmetries`` records the count in the header and the settings
digest, and refuses a count that is not a group's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from astropy.io import fits
from conftest import untrained_magnetogram_weights

from enhance_hmi.cli import main
from enhance_hmi.errors import ConfigError
from enhance_hmi.inference import enhance_array
from enhance_hmi.inference.symmetry import Symmetry, symmetry_group
from enhance_hmi.model import EnhanceNet
from enhance_hmi.settings import SYMMETRY_COUNTS, EnhanceSettings

DATA = Path(__file__).parent / "data"
CROP = DATA / "hmi.M_720s.20111217_060000_TAI.crop128.magnetogram.fits"


def _key(image: np.ndarray) -> bytes:
    return image.shape[0].to_bytes(2, "little") + image.tobytes()


@pytest.mark.parametrize("observable", ["continuum", "magnetogram"])
def test_each_count_is_a_group_and_each_symmetry_is_undone(observable):
    rng = np.random.default_rng(0)
    image = rng.standard_normal((5, 7)).astype(np.float32)  # no symmetry of its own
    for count in SYMMETRY_COUNTS:
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
    with pytest.raises(ConfigError, match="symmetries must be one of 1, 2, 4, 8, got 16"):
        symmetry_group(16, "magnetogram")
    with pytest.raises(ConfigError, match="symmetries must be one of 1, 2, 4, 8, got 2.0"):
        symmetry_group(2.0, "continuum")  # type: ignore[arg-type]
    for bad in ("3", "2.0", True, 16):
        with pytest.raises(ConfigError, match=r"^symmetries must be one of 1, 2, 4, 8, got "):
            EnhanceSettings.from_mapping({"symmetries": bad})
    for bad in (2.0, np.int64(2), True):
        with pytest.raises(ConfigError, match="symmetries must be one of 1, 2, 4, 8"):
            EnhanceSettings(symmetries=bad).validate()
    for given in ("4", 4, np.int64(4)):
        settings = EnhanceSettings.from_mapping({"symmetries": given})
        assert type(settings.symmetries) is int and settings.symmetries == 4
    assert EnhanceSettings(symmetries=2).output_record() == {"symmetries": 2}
    assert "symmetries" not in EnhanceSettings().output_record()  # archives keep their digest
    # the workflow's one key holds for every observable it checks
    config = {"enhance": {"symmetries": 8}}
    for observable in ("continuum", "magnetogram"):
        assert EnhanceSettings.from_config(config, observable).symmetries == 8
    with pytest.raises(ConfigError, match="^enhance.symmetries must be one of 1, 2, 4, 8, got 16$"):
        EnhanceSettings.from_config({"enhance": {"symmetries": 16}}, "magnetogram")
    with pytest.raises(TypeError, match="symmetries must be Symmetry objects"):
        enhance_array(np.zeros((8, 8), np.float32), EnhanceNet(n_blocks=1, width=4), symmetries=2)


def test_the_averaged_network_is_exactly_equivariant_and_one_pass_is_not():
    torch.manual_seed(0)
    net = EnhanceNet(n_blocks=1, width=8)
    rng = np.random.default_rng(1)
    data = (300 * rng.standard_normal((40, 52))).astype(np.float32)  # not square
    data[:6, :9] = np.nan  # off-disk pixels
    options = {"device": "cpu", "input_scale": 1000.0, "tile": 64}
    group = symmetry_group(8, "magnetogram")  # quarter turns and the sign

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
    turned = Symmetry(turns=1, mirror=True)  # not in the group: one pass and the mean both miss
    mirrored = run(turned.apply(data), group)
    assert np.nanmax(np.abs(mirrored - turned.apply(averaged))) > 1e-3 * scale
    turned = Symmetry(turns=1)
    assert np.nanmax(np.abs(run(turned.apply(data)) - turned.apply(one))) > 1e-2 * scale
    assert np.nanmax(np.abs(run(-data) + one)) > 1e-2 * scale
    # the mask of wanted pixels turns with the image
    wanted = np.ones(data.shape, bool)
    wanted[:, 40:] = False
    kept = enhance_array(data, net, symmetries=group, wanted=wanted, **options)
    assert np.isnan(kept[:, 80:]).all() and np.isfinite(kept[12:, :80]).all()


def test_the_sigma_is_averaged_over_the_passes_and_keeps_its_sign():
    """The head's sigma does not change sign with the field: the mean of the passes' sigmas."""
    from enhance_hmi.inference import enhance_array_with_sigma
    from enhance_hmi.model.uncertainty import EnhanceWithUncertainty, SigmaHead

    torch.manual_seed(0)
    head = SigmaHead(width=8, hidden=3)
    with torch.no_grad():
        for parameter in head.parameters():
            parameter.add_(0.2 * torch.randn(parameter.shape))
    model = EnhanceWithUncertainty(EnhanceNet(n_blocks=1, width=8).eval(), head.eval())
    data = (300 * np.random.default_rng(2).standard_normal((24, 30))).astype(np.float32)
    options = {"device": "cpu", "input_scale": 1000.0}
    group = symmetry_group(2, "magnetogram")
    out, sigma = enhance_array_with_sigma(data, model, symmetries=group, **options)
    out_p, sigma_p = enhance_array_with_sigma(data, model, **options)
    out_m, sigma_m = enhance_array_with_sigma(-data, model, **options)
    np.testing.assert_allclose(out, (out_p - out_m) / 2, rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(sigma, (sigma_p + sigma_m) / 2, rtol=1e-5, atol=1e-5)
    assert np.all(sigma > 0) and np.abs(sigma_p - sigma_m).max() > 1e-3 * sigma.mean()
    _, sigma_neg = enhance_array_with_sigma(-data, model, symmetries=group, **options)
    np.testing.assert_allclose(sigma_neg, sigma, rtol=1e-5, atol=1e-5)


def test_predict_records_the_symmetries_and_refuses_a_count_without_a_group(tmp_path, capsys):
    weights = untrained_magnetogram_weights(tmp_path)
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
    code = main(["predict", str(CROP), "-o", str(out), *common, "--symmetries", "16"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and not out.exists()
    assert err == "enhance predict: error: --symmetries must be one of 1, 2, 4, 8, got '16'", err
