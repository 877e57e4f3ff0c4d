"""EnhanceSettings is the one currency: the command line, the configuration and Python agree."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import astropy.units as u
import numpy as np
import pytest

from enhance_hmi.cli import build_parser
from enhance_hmi.cli.predict import settings_from_arguments
from enhance_hmi.errors import ConfigError
from enhance_hmi.io.frame_quality import QualityTolerances
from enhance_hmi.pipeline import settings_sha256
from enhance_hmi.settings import JOB_KEYS, EnhanceSettings, config_schema

REPO = Path(__file__).resolve().parents[1]


def predict_settings(*options: str) -> EnhanceSettings:
    args = build_parser("predict").parse_args(["predict", "in.fits", "-o", "out.fits", *options])
    return settings_from_arguments(args)


def config_settings(enhance: dict, observable: str = "magnetogram", **sections) -> EnhanceSettings:
    return EnhanceSettings.from_config({"enhance": enhance, **sections}, observable)


def test_the_three_routes_give_the_same_settings(tmp_path) -> None:
    weights = tmp_path / "net.safetensors"
    weights.write_bytes(b"")
    cli = predict_settings(
        "--observable",
        "magnetogram",
        "--tile",
        "256",
        "--device",
        "cpu",
        "--compression",
        "none",
        "--no-uncertainty",
        "--input-noise",
        "8G",
        "--no-range-check",
        "--weights",
        str(weights),
    )
    config = config_settings(
        {
            "tile": 256,
            "device": "cpu",
            "compression": "none",
            "compile": False,
            "uncertainty": False,
            "check_range": False,
            "input_noise": {"magnetogram": "8 G", "continuum": 0.002},
            "frames_per_job": 7,  # a job's key, not a setting
        },
        weights={"magnetogram": str(weights)},
    )
    python = EnhanceSettings(
        observable="magnetogram",
        weights=str(weights),
        tile=256,
        device="cpu",
        compression=None,
        uncertainty=False,
        check_range=False,
        input_noise=8 * u.G,
    )
    assert cli == python
    assert config == python
    assert (
        EnhanceSettings.from_mapping(
            {"observable": "magnetogram", "weights": str(weights), "tile": "256", "device": "cpu"}
            | {"compression": "none", "uncertainty": "false", "check_range": "false"}
            | {"input_noise": "8 G"}
        )
        == python
    )


def test_options_left_out_keep_the_defaults_of_each_route() -> None:
    assert predict_settings() == EnhanceSettings()
    # the archive's defaults are the schema's: plain frames, compile where it pays
    archive = config_settings({})
    assert archive.compression is None and archive.compile == "auto"
    assert archive.observable == "magnetogram" and archive.weights is None
    assert archive.quality == QualityTolerances()


@pytest.mark.parametrize(
    ("option", "cli", "config_value", "message"),
    [
        ("tile", "-3", -3, "must be a positive integer"),
        ("tile", "8", 8, "at least 16"),
        ("compression", "zip", "zip", "zip"),
        ("device", "tpu", "tpu", "unknown device 'tpu'"),
        ("precision", "fp8", "fp8", "unknown precision 'fp8'"),
        ("input_noise", "10 parsecs", "10 parsecs", "input-noise"),
    ],
)
def test_a_bad_value_is_refused_naming_the_option_as_written(
    option, cli, config_value, message
) -> None:
    flag = "--" + option.replace("_", "-")
    with pytest.raises(ConfigError, match=message) as raised:
        predict_settings(flag, cli)
    if option in ("tile", "compression", "input_noise"):
        assert flag in str(raised.value)
    value = {"magnetogram": config_value} if option == "input_noise" else config_value
    with pytest.raises(ConfigError) as raised:
        config_settings({option: value})
    assert message.replace("input-noise", "input_noise") in str(raised.value) or (
        option in ("device", "precision")
    )
    if option in ("tile", "compression", "input_noise"):
        assert f"enhance.{option}" in str(raised.value)


def test_unknown_options_and_wrong_units_are_refused() -> None:
    with pytest.raises(ConfigError, match="unknown option tiles"):
        EnhanceSettings.from_mapping({"tiles": 256})
    with pytest.raises(ConfigError, match="enhance.input_noise"):
        config_settings({"input_noise": {"magnetogram": 0.002}})  # no unit for a field
    with pytest.raises(ConfigError, match="validation.frame_quality"):
        config_settings({}, validation={"frame_quality": {"ripples": 2}})


def test_replace_reads_text_like_from_mapping() -> None:
    settings = EnhanceSettings(observable="magnetogram").replace(input_noise="5 G", tile="128")
    assert settings.input_noise == 5 * u.G and settings.tile == 128
    assert settings.observable == "magnetogram"


def test_every_option_is_recorded_and_a_new_default_keeps_the_archive_digests() -> None:
    settings = EnhanceSettings(tile=256, input_noise=3 * u.G)
    record = settings.provenance()
    assert set(record) == set(EnhanceSettings.option_names())
    assert record["tile"] == "256" and record["input_noise"] == "3.0 G"
    assert record["weights"] == "default"
    # the digest of default settings is the one frames already in the archive carry
    assert settings_sha256(EnhanceSettings(), observable="magnetogram", uncertainty=False) == (
        settings_sha256(EnhanceSettings(tile=64), observable="magnetogram", uncertainty=False)
    )
    assert EnhanceSettings().output_record() == {}


def test_the_schema_knows_every_configurable_option() -> None:
    properties = config_schema()["properties"]["enhance"]["properties"]
    read_elsewhere = {"observable", "weights", "quality"}  # series, weights:, validation:
    assert set(EnhanceSettings.option_names()) - read_elsewhere <= set(properties)
    assert set(properties) - set(EnhanceSettings.option_names()) == set(JOB_KEYS)


def test_building_settings_from_a_configuration_loads_no_torch() -> None:
    code = (
        "import sys\n"
        "from enhance_hmi.settings import EnhanceSettings\n"
        "EnhanceSettings.from_config({'enhance': {'tile': 256}}, 'continuum')\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_recipe_amends_a_copy_of_the_weights_sidecar() -> None:
    """Options tied to a sidecar key replace it in the recipe the run reads; None keeps it."""
    told = dataclasses.make_dataclass(
        "Told",
        [
            (
                "psf",
                str | None,
                dataclasses.field(default=None, metadata={"sidecar": ("psf_model",)}),
            ),
            (
                "level",
                float | None,
                dataclasses.field(
                    default=None, metadata={"sidecar": ("inference", "consistency_discrepancy")}
                ),
            ),
        ],
        bases=(EnhanceSettings,),
        frozen=True,
    )
    sidecar = {"psf_model": "wachter2012", "inference": {"consistency_discrepancy": 1.0}}
    assert EnhanceSettings().recipe(sidecar) == sidecar
    assert told().recipe(sidecar) == sidecar
    amended = told(psf="yeo", level=0.9).recipe(sidecar)
    assert amended == {"psf_model": "yeo", "inference": {"consistency_discrepancy": 0.9}}
    assert sidecar["inference"]["consistency_discrepancy"] == 1.0  # the sidecar is not changed


def test_the_forward_model_choice_reaches_the_projection_the_header_and_the_digest(
    tmp_path,
) -> None:
    """``psf_model``: the option added in one field, its schema entry and its flag."""
    from astropy.io import fits

    from enhance_hmi.pipeline import enhance_file

    assert predict_settings("--psf-model", "yeo").psf_model == "yeo"
    assert config_settings({"psf_model": "wachter"}).psf_model == "wachter"
    with pytest.raises(ConfigError, match="unknown psf_model 'gauss'; use one of wachter"):
        predict_settings("--psf-model", "gauss")
    with pytest.raises(ConfigError, match="unknown psf_model 'gauss'"):
        EnhanceSettings(psf_model="gauss").check()
    crop = REPO / "tests" / "data" / "hmi.M_720s.20111217_060000_TAI.crop128.magnetogram.fits"
    settings = EnhanceSettings(device="cpu", tile=64, uncertainty=False, input_noise=2 * u.G)
    own = enhance_file(crop, tmp_path / "own.fits", settings)
    told = enhance_file(crop, tmp_path / "yeo.fits", settings.replace(psf_model="yeo"))
    with fits.open(own) as a, fits.open(told) as b:
        history = "\n".join(str(card) for card in b[1].header["HISTORY"])
        assert "setting psf_model: yeo" in history
        assert a[1].header["ENHPSF"] == b[1].header["ENHPSF"]  # the network's own, both
        assert a[1].header["ENHSETSH"] != b[1].header["ENHSETSH"]  # a rerun redoes it
        assert a[1].header["ENHSETSH"] == settings_sha256(
            settings, observable="magnetogram", uncertainty=False
        )
        # the projection re-observes with the Yeo PSF: another image, same input noise
        assert not np.array_equal(a[1].data, b[1].data)
        assert a[1].header["ENHNOISE"] == b[1].header["ENHNOISE"]


def test_a_told_forward_model_harmonises_the_input_and_the_own_one_changes_nothing(
    tmp_path,
) -> None:
    """Telling the network its own member is the default, bit for bit; another harmonises."""
    from astropy.io import fits

    from enhance_hmi.pipeline import enhance_file

    crop = REPO / "tests" / "data" / "hmi.M_720s.20111217_060000_TAI.crop128.magnetogram.fits"
    settings = EnhanceSettings(device="cpu", tile=64, uncertainty=False, consistency=False)
    own = enhance_file(crop, tmp_path / "own.fits", settings)
    named = enhance_file(
        crop,
        tmp_path / "named.fits",
        settings.replace(psf_model="wachter2012", pixel_integration=True),
    )
    point = enhance_file(crop, tmp_path / "point.fits", settings.replace(pixel_integration=False))
    assert predict_settings("--no-pixel-integration").pixel_integration is False
    with fits.open(own) as a, fits.open(named) as b, fits.open(point) as c:
        np.testing.assert_array_equal(a[1].data, b[1].data)
        # no projection here: the difference is the harmonised input alone
        assert not np.array_equal(a[1].data, c[1].data)
        history = "\n".join(str(card) for card in c[1].header["HISTORY"])
        assert "setting pixel_integration: False" in history


def test_python_values_are_checked_as_the_other_routes_check_them() -> None:
    """A constructor value the command line or the configuration would refuse is refused."""
    for bad in (
        {"pixel_integration": "no"},
        {"check_scale": "no"},
        {"consistency": 1},
        {"tile": 8},
    ):
        with pytest.raises(ConfigError, match=next(iter(bad))):
            EnhanceSettings(**bad).validate()


def test_telling_the_network_its_own_forward_model_keeps_the_settings_digest() -> None:
    """Naming the member a network was trained for changes no pixel: without sigma, same digest.

    With sigma it does change the frame (told, sigma is not widened for the
    forward-model family), so the digest differs.
    """
    sidecar = {"psf_model": "wachter2012"}  # no pixel_integration key: it integrated
    own = EnhanceSettings(psf_model="wachter2012", pixel_integration=True)
    assert own.for_weights(sidecar) == EnhanceSettings()
    other = EnhanceSettings(psf_model="yeo", pixel_integration=True)
    assert other.for_weights(sidecar) == EnhanceSettings(psf_model="yeo")
    assert EnhanceSettings(pixel_integration=False).for_weights(sidecar).pixel_integration is False
    digest = {"observable": "magnetogram", "uncertainty": False}
    assert settings_sha256(own.for_weights(sidecar), **digest) == settings_sha256(
        EnhanceSettings(), **digest
    )
    with_sigma = {"observable": "magnetogram", "uncertainty": True}
    assert own.for_weights(sidecar, sigma=True) == own
    assert settings_sha256(own.for_weights(sidecar, sigma=True), **with_sigma) != settings_sha256(
        EnhanceSettings(), **with_sigma
    )
    assert own.tells_forward_model and not EnhanceSettings().tells_forward_model
    # the pixel choice alone does not name the PSF: sigma stays widened for the family
    assert not EnhanceSettings(pixel_integration=False).tells_forward_model
