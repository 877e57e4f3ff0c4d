"""``enhance fetch``: bad input, a JSOC stand-in run, and the local archive (bundled sample)."""

from __future__ import annotations

import json
import logging
import os
import shutil

import pandas as pd
import pytest
from jsoc_standin import running_standin

from enhance_hmi.acquire import Manifest, acquire, sample_dir
from enhance_hmi.cli import main
from enhance_hmi.provenance import sha256_file

EMAIL = "jane.roe@example.org"


@pytest.fixture
def standin():
    with running_standin() as server:
        yield server


def fetch(*args: str) -> list[str]:
    return ["fetch", "--no-progress", *args]


RANGE = ("--start", "2014-01-01T00:00", "--end", "2014-01-01T01:00", "--cadence", "12m")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            (
                "--series",
                "hmi.M_720s",
                "--start",
                "2014-01-02",
                "--end",
                "2014-01-01",
                "--cadence",
                "12m",
            ),
            "is before start",
        ),
        (("--series", "hmi.V_45s", *RANGE), "unknown series"),
        (
            (
                "--series",
                "hmi.M_720s",
                "--start",
                "2014-01-01",
                "--end",
                "2014-01-02",
                "--cadence",
                "12 minutes",
            ),
            "malformed cadence",
        ),
        (
            (
                "--series",
                "hmi.M_720s",
                "--start",
                "2014-01-01",
                "--end",
                "2014-01-02",
                "--cadence",
                "45s",
            ),
            "not a multiple",
        ),
        (("--series", "hmi.M_720s", *RANGE), "needs a registered e-mail"),
        (
            (
                "--series",
                "hmi.M_720s",
                "--start",
                "yesterday",
                "--end",
                "2014-01-01",
                "--cadence",
                "1h",
            ),
            "malformed time",
        ),
        (("--series", "hmi.M_720s", *RANGE, "--email", "not-an-address"), "malformed"),
        (("--series", "hmi.M_720s", *RANGE, "--quality-policy", "sunny"), "QUALITY policy"),
        (("--series", "hmi.M_720s", *RANGE, "--server", "ftp://nowhere"), "not jsoc, kis"),
    ],
)
def test_bad_input_is_one_line_and_nonzero(argv, message, tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.delenv("ENHANCE_JSOC_EMAIL", raising=False)
    code = main(fetch(*argv, "--out", str(tmp_path / "out")))
    err = capsys.readouterr().err
    assert code != 0
    assert err.count("\n") == 1 and err.startswith("enhance fetch: error:"), err
    assert message in err
    assert not (tmp_path / "out").exists()  # nothing written on bad input


def test_unwritable_output_directory(tmp_path, capsys) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    code = main(
        fetch(
            "--series", "hmi.M_720s", "--server", str(sample_dir()), "--out", str(blocker / "out")
        )
    )
    err = capsys.readouterr().err
    assert code != 0 and err.count("\n") == 1 and "output directory" in err
    if os.geteuid() != 0:  # root writes through permission bits
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        code = main(
            fetch("--series", "hmi.M_720s", "--server", str(sample_dir()), "--out", str(locked))
        )
        err = capsys.readouterr().err
        assert code != 0 and "not writable" in err


def test_cli_against_the_standin_masks_the_email(standin, tmp_path, capsys, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    code = main(
        [
            "-vv",
            *fetch(
                "--series",
                "hmi.M_720s",
                *RANGE,
                "--out",
                str(tmp_path),
                "--server",
                standin.url,
                "--email",
                EMAIL,
                "--max-per-request",
                "3",
            ),
        ]
    )
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "6 expected, 6 present (6 verified)" in out.out
    assert standin.calls["exp_request"] == 2
    assert EMAIL not in caplog.text + out.out + out.err
    assert "j***@example.org" in caplog.text
    frame = pd.read_csv(tmp_path / "hmi.M_720s.manifest.csv", dtype=str, keep_default_na=False)
    assert (frame["state"] == "verified").all() and len(frame) == 6


def test_email_from_the_environment(standin, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("ENHANCE_JSOC_EMAIL", EMAIL)
    assert (
        main(
            fetch("--series", "hmi.M_720s", *RANGE, "--out", str(tmp_path), "--server", standin.url)
        )
        == 0
    )
    assert len(standin.downloads) == 6


def test_local_archive_of_the_bundled_sample(tmp_path, capsys) -> None:
    assert (
        main(fetch("--series", "hmi.M_720s", "--server", str(sample_dir()), "--out", str(tmp_path)))
        == 0
    )
    assert "3 expected, 3 present (3 verified)" in capsys.readouterr().out
    manifest = Manifest.load(tmp_path / "hmi.M_720s.manifest.csv", "hmi.M_720s")
    assert [r["quality_bits"] for r in manifest] == ["LOWINTERPNUM|NOCOSMICRAY", "", "LOWINTERPNUM"]
    for row, src in zip(manifest, sorted(sample_dir().glob("hmi.M_720s.*.fits")), strict=True):
        # a link to the archive file, under the name derived from the record
        assert row["file"] == src.name.replace(".1.magnetogram", ".magnetogram").replace(
            ".3.magnetogram", ".magnetogram"
        )
        assert (tmp_path / row["file"]).resolve() == src.resolve()
        assert sha256_file(src) == row["sha256"]
        assert row["CRPIX1"] and row["CAMERA"] in {"1", "3"}
        assert row["request_id"] == "local"
    continuum = acquire(
        series="hmi.Ic_45s",
        start=None,
        end=None,
        cadence=None,
        out_dir=tmp_path,
        server=str(sample_dir()),
    )
    assert [r["t_rec"] for r in continuum] == ["2014.03.01_00:01:30_TAI"]


def test_local_archive_with_a_cadence_reports_gaps(tmp_path) -> None:
    archive = tmp_path / "archive"
    archive.mkdir()
    for src in sample_dir().glob("*.fits"):
        shutil.copy(src, archive)
    (archive / "notes.fits").write_text("not FITS at all")
    manifest = acquire(
        series="hmi.M_720s",
        start="2011-12-17T05:36",
        end="2011-12-17T06:24",
        cadence="12m",
        out_dir=tmp_path / "out",
        server=str(archive),
        quality_policy="strict",
    )
    states = [r["state"] for r in manifest]
    assert states == ["missing", "missing", "skipped", "missing", "missing"]
    report = json.loads((tmp_path / "out" / "hmi.M_720s.gaps.json").read_text())
    assert report["expected"] == 5 and len(report["gaps"]) == 2
    assert not list((tmp_path / "out").glob("*.fits"))  # the flagged frame was skipped
