"""``enhance evaluate --forward-models``: the grid of forward models on the shipped truth."""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import pytest

from enhance_hmi.model import psf_model_of, read_sidecar
from enhance_hmi.physics.forward_family import ForwardModelSpec, forward_model_of
from enhance_hmi.scenes import load_continuum_scene
from enhance_hmi.validation.forward_grid import (
    GRID_METHODS,
    NOTES,
    evaluate_forward_grid,
    write_forward_grid,
)
from enhance_hmi.validation.shipped_truth import shipped_truth

WEIGHTS = Path(__file__).resolve().parents[1] / "enhance_hmi/data/weights/continuum.safetensors"


@pytest.fixture(scope="module")
def grid():
    scene = load_continuum_scene(shipped_truth(), None)
    scene = dataclasses.replace(scene, data=scene.data[:320])  # 42 x 41 HMI pixels
    default = forward_model_of(read_sidecar(WEIGHTS))
    other = ForwardModelSpec("yeo", False)
    assert default != other and default.pixel_integration
    rows = evaluate_forward_grid(WEIGHTS, [scene], [default, other])
    return default, other, rows


def test_grid_rows_and_columns(grid):
    default, other, rows = grid
    assert [r["forward_model"] for r in rows] == [default.name, other.name]
    for row in rows:
        assert row["score"] == "psnr_dB"
        assert all(15 < row[m] < 45 for m in GRID_METHODS)
        assert row["network_minus_tikhonov_told"] == pytest.approx(
            row["network_default"] - row["tikhonov_told"]
        )
        assert row["network_told_minus_tikhonov_told"] == pytest.approx(
            row["network_told"] - row["tikhonov_told"]
        )


def test_tikhonov_told_is_tikhonov_default_under_the_default_member(grid):
    _, _, rows = grid
    assert rows[0]["tikhonov_told"] == rows[0]["tikhonov_default"]


def test_the_network_told_its_own_member_is_the_default_network(grid):
    _, _, rows = grid
    assert rows[0]["network_told"] == rows[0]["network_default"]


def test_telling_the_network_the_member_helps_when_it_differs(grid):
    _, _, rows = grid
    # yeo+point: the harmonised input puts the network ahead of Tikhonov told again
    # (measured on this crop: +3.0 dB over the default network, +1.7 dB over Tikhonov told)
    assert rows[1]["network_told"] > rows[1]["network_default"] + 1.0
    assert rows[1]["network_told_minus_tikhonov_told"] > 0.5


def test_telling_tikhonov_the_member_helps_when_it_differs(grid):
    _, _, rows = grid
    # the Yeo PSF, point-sampled: Tikhonov told beats Tikhonov with the weights' PSF
    assert rows[1]["tikhonov_told"] > rows[1]["tikhonov_default"] + 0.5
    # the network wins only under the forward model it was trained for (measured
    # on this crop: +1.7 dB there, -1.2 dB under yeo+point)
    assert rows[0]["network_minus_tikhonov_told"] > 0.5
    assert rows[1]["network_minus_tikhonov_told"] < rows[0]["network_minus_tikhonov_told"] - 1.0
    # bicubic stays far behind the deconvolution in both cells
    assert all(row["bicubic"] < row["tikhonov_told"] for row in rows)


def test_write_forward_grid(grid, tmp_path):
    _, _, rows = grid
    paths = write_forward_grid(tmp_path, weights=WEIGHTS, rows=rows)
    assert {p.name for p in paths.values()} == {
        "forward_grid.csv",
        "forward_grid.md",
        "forward_grid.json",
        "forward_grid.png",
    }
    with open(paths["csv"], newline="") as fh:
        table = list(csv.DictReader(fh))
    assert [r["forward_model"] for r in table] == [r["forward_model"] for r in rows]
    assert float(table[1]["tikhonov_told"]) == pytest.approx(rows[1]["tikhonov_told"])
    text = paths["table"].read_text()
    assert NOTES[0] in text and "| yeo+point |" in text
    record = json.loads(paths["json"].read_text())
    assert record["methods"] == list(GRID_METHODS)
    assert record["provenance"]["weights_sha256"] == read_sidecar(WEIGHTS)["sha256"]
    assert paths["figure"].stat().st_size > 1000
    assert not list(tmp_path.glob("*.part"))


def test_sidecar_psf_is_the_default_members(grid):
    default, _, _ = grid
    assert default.psf_model == psf_model_of(read_sidecar(WEIGHTS))


def test_the_grid_scores_each_noise_level_as_its_own_rows(tmp_path):
    """Two levels (720 s and 45 s continuum): one row per (member, level), noisier is worse."""
    from enhance_hmi.cli.evaluate import grid_noise_levels

    scene = load_continuum_scene(shipped_truth(), None)
    scene = dataclasses.replace(scene, data=scene.data[:320])
    member = forward_model_of(read_sidecar(WEIGHTS))
    levels = grid_noise_levels("cadences", "continuum")
    assert levels == [7e-4, 4e-3]
    rows = evaluate_forward_grid(WEIGHTS, [scene], [member], noise_sigma=levels)
    assert [(r["forward_model"], r["noise"]) for r in rows] == [(member.name, n) for n in levels]
    quiet, noisy = rows
    for method in ("network_default", "tikhonov_told", "bicubic"):
        assert noisy[method] < quiet[method], method
    paths = write_forward_grid(tmp_path, weights=WEIGHTS, rows=rows)
    header = paths["table"].read_text().splitlines()[0]
    assert "noise" in [column.strip() for column in header.split("|")]
    assert paths["figure"].stat().st_size > 1000


def test_averaging_over_symmetries_changes_only_the_network_and_is_recorded(grid, tmp_path):
    """``--symmetries 2``: the network columns move, every classical one is the same."""
    default, _, rows = grid
    scene = load_continuum_scene(shipped_truth(), None)
    scene = dataclasses.replace(scene, data=scene.data[:320])
    averaged = evaluate_forward_grid(WEIGHTS, [scene], [default], symmetries=2)[0]
    single = rows[0]
    for method in ("tikhonov_told", "tikhonov_default", "bicubic", "oracle_linear"):
        assert averaged[method] == single[method], method
    assert averaged["network_default"] != single["network_default"]
    assert abs(averaged["network_default"] - single["network_default"]) < 1.0  # dB
    paths = write_forward_grid(tmp_path, weights=WEIGHTS, rows=[averaged], symmetries=2)
    assert json.loads(paths["json"].read_text())["provenance"]["symmetries"] == "2"
