"""Unattended runs through ``profiles/update.sh`` (the cron and scrontab entry point).

Real Snakemake runs of the workflow, killed with SIGKILL as a scheduler or a
reboot would: the Snakemake lock they leave blocks a plain rerun, the update
script removes it and completes the range; while an update runs, a second one
exits 75 and touches nothing; a failed run's exit status passes through.
"""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from test_workflow import REPO, SNAKEFILE, make_archive, weights  # noqa: F401 (fixture)

from enhance.cube import TimeCube

UPDATE = REPO / "profiles" / "update.sh"
SNAKEMAKE = f"{sys.executable} -m snakemake"


def update_args(workdir: Path, config: Path) -> list[str]:
    return [
        "-s",
        str(SNAKEFILE),
        "--directory",
        str(workdir),
        "--configfile",
        str(config),
        "--profile",
        str(REPO / "profiles" / "local"),
        "--cores",
        "1",
    ]


def environment() -> dict[str, str]:
    return {**os.environ, "SNAKEMAKE": SNAKEMAKE, "OMP_NUM_THREADS": "1"}


def run_update(args: list[str], timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["sh", str(UPDATE), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        env=environment(),
    )


def snakemake_locks(workdir: Path) -> list[str]:
    locks = workdir / ".snakemake" / "locks"
    return sorted(p.name for p in locks.iterdir()) if locks.is_dir() else []


@pytest.fixture
def workflow_dir(tmp_path, weights):  # noqa: F811
    archive = make_archive(tmp_path / "archive", [0, 1, 2])
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "source": str(archive),
                "series": ["hmi.M_720s"],
                "weights": weights,
                "enhance": {"device": "cpu", "tile": 64, "frames_per_job": 1},
                "output": "out",
            }
        )
    )
    return tmp_path, config


@pytest.mark.slow
def test_killed_run_is_recovered_and_concurrent_update_skipped(workflow_dir):
    workdir, config = workflow_dir
    args = update_args(workdir, config)
    first = subprocess.Popen(
        ["sh", str(UPDATE), *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=REPO,
        env=environment(),
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not snakemake_locks(workdir):
            assert first.poll() is None, "the update finished before it could be interrupted"
            assert time.monotonic() < deadline, "snakemake never took its lock"
            time.sleep(0.1)
        # an update that starts now finds the first one running
        second = run_update(args, timeout=60)
        assert first.poll() is None, "the first update ended before the second started"
        assert second.returncode == 75, second.stderr
        assert "another update" in second.stderr and len(second.stderr.splitlines()) == 1
    finally:
        os.killpg(first.pid, signal.SIGKILL)  # as a time limit or a reboot would
        first.wait(timeout=60)

    # the killed run left Snakemake's lock: a plain rerun refuses to start
    assert snakemake_locks(workdir)
    plain = subprocess.run(
        [sys.executable, "-m", "snakemake", *args],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=REPO,
    )
    assert plain.returncode != 0
    assert "cannot be locked" in plain.stdout + plain.stderr

    recovered = run_update(args)
    assert recovered.returncode == 0, recovered.stderr[-4000:]
    assert "removing the Snakemake lock left by a run that was killed" in recovered.stderr
    assert snakemake_locks(workdir) == []
    cube = TimeCube(workdir / "out" / "cubes" / "hmi.M_720s" / "20160707.h5")
    assert len(cube.times()) == 3


def test_update_held_elsewhere_exits_75_and_touches_nothing(workflow_dir):
    workdir, config = workflow_dir
    (workdir / ".snakemake").mkdir()
    with open(workdir / ".snakemake" / "enhance-update.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # what a running update holds
        proc = run_update(update_args(workdir, config), timeout=60)
    assert proc.returncode == 75
    assert proc.stderr.startswith("enhance update: another update of")
    assert not (workdir / "out").exists() and snakemake_locks(workdir) == []


def test_failed_run_exit_status_passes_through(workflow_dir):
    workdir, config = workflow_dir
    config.write_text("bogus: 1\n")
    proc = run_update(update_args(workdir, config), timeout=120)
    assert proc.returncode == 1
    assert "'bogus' was unexpected" in proc.stdout + proc.stderr
    # the lock is free again: the next update is not skipped
    with open(workdir / ".snakemake" / "enhance-update.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
