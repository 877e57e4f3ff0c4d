"""The completeness table and timeline of a series (the ``completeness`` rule's outputs).

Real manifest CSV files read by the real reader, cube summaries as the
``cube`` rule writes them.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from enhance_hmi.acquire import read_manifest
from enhance_hmi.acquire.manifest import COLUMNS
from enhance_hmi.cube.completeness import completeness_table, slot_status, write_completeness


def _manifest(path: Path, rows: list[dict[str, str]]) -> Path:
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(COLUMNS))
        writer.writeheader()
        for row in rows:
            writer.writerow({"series": "hmi.M_720s", **row})
    return path


def _png(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("L"), dtype=float)


@pytest.mark.parametrize(
    ("state", "bits", "cube", "status"),
    [
        ("verified", "", "20140101", "in cube"),
        ("flagged", "ISSTARGET|ECLIPSE", "20140101", "in cube (QUALITY bits set)"),
        ("verified", "", "", "not processed yet"),
        # the manifest's stored state name for a record with QUALITY bits set
        ("flagged", "ECLIPSE", "", "queried (QUALITY bits set)"),
        ("queried", "", "", "queried"),
        ("missing", "", "", "missing"),
        ("failed", "", "", "failed"),
    ],
)
def test_slot_status_rules(state, bits, cube, status):
    assert slot_status(state, bits, cube) == status


def test_completeness_table_joins_manifest_and_cubes_within_the_range(tmp_path):
    rows = [
        {"t_rec": "2014.01.01_00:00:00_TAI", "state": "verified", "file": "a.fits"},
        {"t_rec": "2014.01.01_00:12:00_TAI", "state": "verified", "quality_bits": "ECLIPSE"},
        {"t_rec": "2014.01.01_00:24:00_TAI", "state": "verified", "file": "c.fits"},
        {"t_rec": "2014.01.01_00:36:00_TAI", "state": "missing", "reason": "no data"},
        {"t_rec": "2014.01.02_00:00:00_TAI", "state": "verified", "file": "late.fits"},
    ]
    manifest = _manifest(tmp_path / "m.csv", rows)
    # the cube rule writes its slots as the cube stores them (milliseconds spelled out)
    cubes = [{"cube": "20140101", "t_rec": ["2014.01.01_00:00:00.000_TAI", "2014-01-01T00:12:00"]}]
    table = completeness_table(
        read_manifest(manifest), cubes, start="2014-01-01", end="2014.01.01_23:59:59_TAI"
    )
    assert list(table["status"]) == [
        "in cube",
        "in cube (QUALITY bits set)",
        "not processed yet",
        "missing",
    ]
    assert list(table["cube"]) == ["20140101", "20140101", "", ""]
    assert table["reason"].iloc[3] == "no data"
    # a frame the cube kept out, out of tolerance (cube.out_of_tolerance: exclude)
    excluded = {"t_rec": "2014.01.01_00:24:00.000_TAI", "out_of_tolerance": "ripple"}
    kept_out = [{**cubes[0], "kept_out": [excluded]}]
    table = completeness_table(
        read_manifest(manifest), kept_out, start="2014-01-01", end="2014.01.01_23:59:59_TAI"
    )
    assert table["status"].iloc[2] == "kept out of cube (out of tolerance)"
    assert table["reason"].iloc[2] == "figures out of tolerance: ripple"
    # a cube summary written before the key had that name
    old = [{**cubes[0], "kept_out": [{"t_rec": excluded["t_rec"], "flags": "ripple"}]}]
    table = completeness_table(
        read_manifest(manifest), old, start="2014-01-01", end="2014.01.01_23:59:59_TAI"
    )
    assert table["reason"].iloc[2] == "figures out of tolerance: ripple"

    csv_path, png_path = tmp_path / "frames.csv", tmp_path / "completeness.png"
    write_completeness(
        read_manifest(manifest),
        cubes,
        table_path=csv_path,
        figure_path=png_path,
        series="hmi.M_720s",
    )
    with open(csv_path, newline="") as fh:
        written = list(csv.DictReader(fh))
    assert [r["status"] for r in written][-1] == "not processed yet"  # no range: all five
    assert len(written) == 5 and list(written[0])[:2] == ["t_rec", "status"]
    assert _png(png_path).std() > 5  # ticks and labels, not a blank canvas
    assert not list(tmp_path.glob("*.part"))
