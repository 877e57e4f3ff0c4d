"""The workflow left unattended: failures exit non-zero, are never frozen, and say so.

Real Snakemake runs (subprocesses) fetching with the real drms client from
the JSOC stand-in (tests/jsoc_standin.py) on 127.0.0.1: a server that is
down (nothing listening on its port) and then up, files that fail every
download attempt and then succeed, the status file of each run, and job
totals ("N of M steps") that stay fixed while the checkpoint expands.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from jsoc_standin import running_standin
from test_workflow import SNAKEFILE, SNAKEMAKE, _make_weights, job_counts, write_config

from enhance_hmi.cube import TimeCube

REPO = Path(__file__).resolve().parents[1]
EMAIL = "john.doe@example.org"
SERIES = "hmi.M_720s"


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> dict[str, str]:
    return _make_weights(tmp_path_factory.mktemp("weights"), n_blocks=1, width=8)


def free_port() -> int:
    """A port on 127.0.0.1 with nothing listening (until a stand-in binds it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_workflow(workdir: Path, config: Path, *args: str, timeout: float = 300) -> tuple[int, str]:
    """Run the workflow with the local profile (and ``args``); return its exit status and output."""
    cmd = [*SNAKEMAKE, "-s", str(SNAKEFILE), "-d", str(workdir), "--configfile", str(config)]
    cmd += list(args)
    cmd += ["--workflow-profile", str(REPO / "profiles" / "local"), "--cores", "2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ENHANCE_JSOC_EMAIL": EMAIL}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    return proc.returncode, proc.stdout + proc.stderr


def step_totals(output: str) -> list[int]:
    """The M of every "N of M steps" line Snakemake printed."""
    return [int(m) for m in re.findall(r"^\d+ of (\d+) steps", output, re.MULTILINE)]


def remote_config(tmp_path: Path, url: str, weights: dict[str, str]) -> Path:
    return write_config(
        tmp_path / "config.yaml",
        source=url,
        series=[SERIES],
        start="2014-01-01T00:00:00",
        end="2014-01-01T01:00:00",
        cadence="12m",
        weights=weights,
        output="out",
        jsoc={"retries": 2, "retry_wait": 0.01},
    )


@pytest.mark.slow
def test_server_down_exits_nonzero_then_the_same_command_completes(tmp_path, weights):
    port = free_port()
    config = remote_config(tmp_path, f"http://127.0.0.1:{port}/", weights)
    out = tmp_path / "out"

    code, output = run_workflow(tmp_path, config)
    assert code == 1, output[-3000:]
    assert "acquisition failed" in output and "may be down" in output
    assert not list(out.glob("acquire/*/*.json"))  # the checkpoint froze nothing
    assert not (out / "report").exists()  # no completeness table for slots never queried
    gaps = pd.read_csv(out / "raw" / SERIES / f"{SERIES}.gaps.csv", dtype=str)
    assert list(gaps["status"]) == ["not queried"] * 6  # not "missing on the server"
    status = json.loads((out / "status.json").read_text())
    assert status["success"] is False and status["exit_status"] == 1
    assert "6 not queried" in status["reason"] and "may be down" in status["reason"]
    assert status["acquisition"][SERIES]["counts"]["not_queried"] == 6
    assert status["failed_rules"] == {"acquire": 2}  # the profile retries a job once

    with running_standin(port=port):
        code, output = run_workflow(tmp_path, config)
    assert code == 0, output[-3000:]
    cube = TimeCube(out / "cubes" / SERIES / "20140101.h5")
    assert len(cube.times()) == 6
    frames = pd.read_csv(out / "report" / SERIES / "frames.csv", dtype=str)
    assert set(frames["status"]) <= {"in cube", "in cube (QUALITY bits set)"} and len(frames) == 6
    status = json.loads((out / "status.json").read_text())
    assert status["success"] is True and status["acquisition"][SERIES]["complete"] is True
    totals = step_totals(output)
    assert totals and set(totals) == {totals[0]}, totals  # the total never jumped
    counts = job_counts(output)
    assert totals[0] == sum(counts.values())  # every job that ran was counted up front


@pytest.mark.slow
def test_files_failing_every_attempt_fail_the_run_and_a_rerun_fetches_them(tmp_path, weights):
    with running_standin() as standin:
        config = remote_config(tmp_path, standin.url, weights)
        out = tmp_path / "out"
        bad = pd.Timestamp("2014-01-01T00:36:00").to_pydatetime()
        standin.cut[bad] = 10**6
        code, output = run_workflow(tmp_path, config)
        assert code == 1, output[-3000:]
        assert "acquisition incomplete" in output and "1 failed" in output
        cube = TimeCube(out / "cubes" / SERIES / "20140101.h5")
        assert len(cube.times()) == 5  # the verified frames went on
        gaps = pd.read_csv(out / "raw" / SERIES / f"{SERIES}.gaps.csv", dtype=str)
        assert list(gaps[gaps["t_rec"] == "2014.01.01_00:36:00_TAI"]["status"]) == ["failed"]
        status = json.loads((out / "status.json").read_text())
        assert status["success"] is False and status["failed_rules"] == {"acquisition_complete": 2}
        assert status["acquisition"][SERIES]["failures"][0]["t_rec"] == "2014.01.01_00:36:00_TAI"

        standin.cut.clear()
        code, output = run_workflow(tmp_path, config)
        assert code == 0, output[-3000:]
        assert job_counts(output).get("acquire") == 1  # the failure was not frozen
        assert len(cube.times()) == 6
        assert job_counts(output).get("enhance_batch") == 1  # only the batch that gained it
        totals = step_totals(output)
        assert set(totals) == {totals[0]}, totals

        code, output = run_workflow(tmp_path, config)
        assert code == 0 and "Nothing to be done" in output, output[-3000:]
