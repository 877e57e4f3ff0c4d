"""An unattended run that quarantines a bad frame instead of stopping, and heals itself.

Real Snakemake runs (subprocesses) fetching with the real drms client from
the JSOC stand-in (tests/jsoc_standin.py) on 127.0.0.1:

- a range where one frame is all-NaN and another has a unit the reader
  refuses: the run exits 3 (quarantine), every other frame is in the cube,
  both frames are in status.json and the completeness table with their
  causes; a rerun with the server unchanged redoes no enhancement; once the
  server serves good copies the next run enhances and appends exactly those
  two, and the cube then equals a clean run's;
- a raw file changed after acquisition (same size): refused before
  enhancement, reported by ``enhance verify``, fetched again by the next
  run; no cube frame ever holds data whose input hash is not the manifest's.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from jsoc_standin import running_standin
from test_workflow import _make_weights, job_counts
from test_workflow_failures import remote_config, run_workflow

from enhance_hmi.acquire import manifest_path, read_manifest
from enhance_hmi.cube import TimeCube
from enhance_hmi.workflow.quarantine import QUARANTINE_EXIT_STATUS, read_quarantine

SERIES = "hmi.M_720s"
NAN_SLOT = dt.datetime(2014, 1, 1, 0, 24)
UNIT_SLOT = dt.datetime(2014, 1, 1, 0, 48)


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> dict[str, str]:
    return _make_weights(tmp_path_factory.mktemp("weights"), n_blocks=1, width=8)


def config_for(workdir: Path, url: str, weights: dict[str, str]) -> Path:
    workdir.mkdir(parents=True, exist_ok=True)
    return remote_config(workdir, url, weights)


def cube_content(path: Path) -> tuple[list[str], np.ndarray, str]:
    """Times, every frame's data, and the per-frame table and quality figures (as text)."""
    cube = TimeCube(path)
    times = cube.times()
    data = np.stack([cube.read_frame(i)[0] for i in range(len(times))])
    rows = [
        {k: v for k, v in row.items() if k != "input_file"}  # each run's own raw folder
        for row in cube.table()
    ]
    return times, data, repr(rows) + repr(cube.quality_table())


def manifest_sha(out: Path) -> dict[str, str]:
    raw = out / "raw" / SERIES
    return {r["t_rec"]: r["sha256"] for r in read_manifest(manifest_path(raw, SERIES))}


@pytest.mark.slow
def test_bad_frames_are_quarantined_and_retried_once_the_server_has_good_copies(tmp_path, weights):
    with running_standin() as standin:
        standin.variants[NAN_SLOT] = {"fill": float("nan")}
        standin.variants[UNIT_SLOT] = {"cards": {"BUNIT": "furlong"}}
        work = tmp_path / "archive"
        config = config_for(work, standin.url, weights)
        out = work / "out"

        code, output = run_workflow(work, config)
        assert code == QUARANTINE_EXIT_STATUS, output[-3000:]
        assert "2 frame(s) quarantined" in output and "Traceback" not in output
        cube = out / "cubes" / SERIES / "20140101.h5"
        assert len(TimeCube(cube).times()) == 4  # every other frame went on
        status = json.loads((out / "status.json").read_text())
        assert status["success"] is True and status["exit_status"] == QUARANTINE_EXIT_STATUS
        causes = {row["t_rec"]: row["cause"] for row in status["quarantined"][SERIES]}
        assert set(causes) == {"2014.01.01_00:24:00_TAI", "2014.01.01_00:48:00_TAI"}
        assert "no finite pixel" in causes["2014.01.01_00:24:00_TAI"]
        assert "furlong" in causes["2014.01.01_00:48:00_TAI"]
        frames = pd.read_csv(out / "report" / SERIES / "frames.csv", dtype=str)
        shown = frames[frames["status"] == "quarantined"]
        assert sorted(shown["t_rec"]) == sorted(causes)
        assert all(r.startswith("quarantined: ") for r in shown["reason"])
        listed = subprocess.run(
            [sys.executable, "-m", "enhance_hmi", "quarantine", str(out)],
            capture_output=True,
            text=True,
        )
        assert listed.returncode == 0 and "2 frame(s) quarantined" in listed.stdout

        served = dict(standin.served)
        code, output = run_workflow(work, config)  # the server still serves the bad files
        assert code == QUARANTINE_EXIT_STATUS, output[-3000:]
        assert "enhance_batch" not in job_counts(output)  # same input, same settings
        fetched = {t for t in standin.served if standin.served[t] > served.get(t, 0)}
        assert fetched == {NAN_SLOT, UNIT_SLOT}  # only the quarantined ones again

        standin.variants.clear()  # good copies now
        code, output = run_workflow(work, config)
        assert code == 0, output[-3000:]
        assert job_counts(output).get("enhance_batch") == 2  # the two batches that hold them
        assert read_quarantine(out, SERIES) == []
        status = json.loads((out / "status.json").read_text())
        assert status["exit_status"] == 0 and status["quarantined"] == {}
        frames = pd.read_csv(out / "report" / SERIES / "frames.csv", dtype=str)
        assert set(frames["status"]) == {"in cube"}

        clean = tmp_path / "clean"
        code, output = run_workflow(clean, config_for(clean, standin.url, weights))
        assert code == 0, output[-3000:]
    times, data, table = cube_content(cube)
    clean_times, clean_data, clean_table = cube_content(
        clean / "out" / "cubes" / SERIES / cube.name
    )
    assert times == clean_times and len(times) == 6
    np.testing.assert_array_equal(data, clean_data)  # bit for bit, NaN where NaN
    assert table == clean_table


@pytest.mark.slow
def test_a_raw_file_changed_after_acquisition_is_refused_reported_and_fetched_again(
    tmp_path, weights
):
    with running_standin() as standin:
        work = tmp_path / "archive"
        config = config_for(work, standin.url, weights)
        out = work / "out"
        code, output = run_workflow(work, config, "--until", "acquire")
        assert code == 0, output[-3000:]
        assert not (out / "enhanced").exists()
        # the raw file of a frame not yet enhanced changes, keeping its size
        key = "2014.01.01_00:36:00_TAI"
        raw_dir = out / "raw" / SERIES
        row = next(r for r in read_manifest(manifest_path(raw_dir, SERIES)) if r["t_rec"] == key)
        raw = raw_dir / row["file"]
        body = bytearray(raw.read_bytes())
        body[-3000] ^= 0x01
        raw.write_bytes(bytes(body))

        verify = subprocess.run(
            [sys.executable, "-m", "enhance_hmi", "verify", "--no-progress", str(out)],
            capture_output=True,
            text=True,
        )
        assert verify.returncode == 1, verify.stdout + verify.stderr
        assert f"raw {SERIES} {key}: sha256" in verify.stdout and "changed after" in verify.stdout

        code, output = run_workflow(work, config)
        assert code == QUARANTINE_EXIT_STATUS, output[-3000:]
        (entry,) = read_quarantine(out, SERIES)
        assert entry.t_rec == key and entry.stage == "verify"
        assert "changed after acquisition" in entry.cause
        cube = TimeCube(out / "cubes" / SERIES / "20140101.h5")
        assert key not in cube.times() and len(cube.times()) == 5

        code, output = run_workflow(work, config)  # fetched again, then enhanced
        assert code == 0, output[-3000:]
        assert len(cube.times()) == 6 and read_quarantine(out, SERIES) == []
        expected = manifest_sha(out)
        assert all(row["input_sha256"] == expected[row["t_rec"]] for row in cube.table())
        verify = subprocess.run(
            [sys.executable, "-m", "enhance_hmi", "verify", "--no-progress", str(out)],
            capture_output=True,
            text=True,
        )
        assert verify.returncode == 0, verify.stdout + verify.stderr
        assert "6 raw, 6 enhanced, 6 cube: all match" in verify.stdout
