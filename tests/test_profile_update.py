"""Unattended runs through ``profiles/update.sh`` (the cron and scrontab entry point).

Real Snakemake runs of the workflow, killed with SIGKILL as a scheduler or a
reboot would: the Snakemake lock they leave blocks a plain rerun, the update
script removes it and completes the range; while an update runs, a second one
exits 75 and touches nothing; a failed run's exit status passes through. A
``snakemake`` started by hand in the same directory keeps its lock (the update
names it and exits 75) until it is killed; then the update removes the lock
itself. :mod:`enhance_hmi.workflow.run_lock` tells the two apart: unit tests on a
fabricated ``/proc``.
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

from enhance_hmi.cube import TimeCube
from enhance_hmi.workflow import run_lock

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


# A workflow of one job that sleeps as long as --config pause=SECONDS says.
PAUSE_SNAKEFILE = """\
rule done:
    output:
        "done.txt",
    params:
        pause=config.get("pause", 0),
    shell:
        "sleep {params.pause} && touch {output}"
"""


@pytest.fixture
def live_snakemake(tmp_path):
    """A ``snakemake`` started by hand (not by the update script), holding its lock."""
    workdir = tmp_path / "work"
    workdir.mkdir()
    snakefile = tmp_path / "Snakefile"
    snakefile.write_text(PAUSE_SNAKEFILE)
    live = subprocess.Popen(
        [sys.executable, "-m", "snakemake", "-s", str(snakefile), "--cores", "1"]
        + ["--config", "pause=60"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=workdir,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not snakemake_locks(workdir):
            assert live.poll() is None, "snakemake ended before it took its lock"
            assert time.monotonic() < deadline, "snakemake never took its lock"
            time.sleep(0.1)
        args = ["-s", str(snakefile), "--directory", str(workdir), "--cores", "1"]
        yield workdir, live, [*args, "--config", "pause=0"]
    finally:
        if live.poll() is None:
            os.killpg(live.pid, signal.SIGKILL)
        live.wait(timeout=30)


def test_live_snakemake_started_by_hand_keeps_its_lock(live_snakemake):
    workdir, live, args = live_snakemake
    locks = snakemake_locks(workdir)
    proc = run_update(args, timeout=60)
    assert proc.returncode == 75, proc.stderr
    assert len(proc.stderr.splitlines()) == 1, proc.stderr
    assert proc.stderr.startswith("enhance update: a live Snakemake run holds the lock")
    assert f"pid {live.pid}, started " in proc.stderr and "pause=60" in proc.stderr
    # the live run goes on, its lock untouched, and the update did nothing
    assert live.poll() is None
    assert snakemake_locks(workdir) == locks
    assert not (workdir / "done.txt").exists()


def test_killed_snakemake_lock_is_removed_by_the_update(live_snakemake):
    workdir, live, args = live_snakemake
    os.killpg(live.pid, signal.SIGKILL)  # snakemake and its job, as a reboot would
    live.wait(timeout=30)
    assert snakemake_locks(workdir)
    proc = run_update(args, timeout=60)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "removing the Snakemake lock left by a run that was killed" in proc.stderr
    assert snakemake_locks(workdir) == []
    assert (workdir / "done.txt").exists()


def test_update_without_a_python_that_checks_touches_nothing(tmp_path):
    workdir = tmp_path / "work"
    (workdir / ".snakemake" / "locks").mkdir(parents=True)
    (workdir / ".snakemake" / "locks" / "0.output.lock").write_text("done.txt\n")
    env = {**environment(), "PYTHON": str(tmp_path / "no-such-python")}
    proc = subprocess.run(
        ["sh", str(UPDATE), "--directory", str(workdir), "--cores", "1"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        env=env,
    )
    assert proc.returncode == 1
    assert "could not check who holds the Snakemake lock" in proc.stderr
    assert snakemake_locks(workdir) == ["0.output.lock"]


# run_lock on a fabricated process table

LOCK_WRITTEN = 1_700_000_000.0  # the lock files' mtime
BOOTED = LOCK_WRITTEN - 86_400.0
TICKS = os.sysconf("SC_CLK_TCK")


def fake_process(proc: Path, pid: int, argv: list[str], cwd: Path, started: float) -> None:
    """``/proc/<pid>`` as Linux shows it: cmdline, stat (field 22: start, in ticks), cwd link."""
    here = proc / str(pid)
    here.mkdir(parents=True)
    here.joinpath("cmdline").write_bytes(b"".join(a.encode() + b"\0" for a in argv))
    fields = ["S", *["0"] * 18, str(round((started - BOOTED) * TICKS)), *["0"] * 30]
    here.joinpath("stat").write_text(f"{pid} (python3 (a) b) {' '.join(fields)}\n")
    here.joinpath("cwd").symlink_to(cwd)


@pytest.fixture
def locked_workdir(tmp_path):
    workdir = tmp_path / "work"
    locks = workdir / ".snakemake" / "locks"
    locks.mkdir(parents=True)
    for name, written in (("0.input.lock", LOCK_WRITTEN - 5), ("0.output.lock", LOCK_WRITTEN)):
        locks.joinpath(name).write_text("done.txt\n")
        os.utime(locks / name, (written, written))
    (tmp_path / "elsewhere").mkdir()
    return workdir


SM = ["/venv/bin/python3", "/venv/bin/snakemake"]


@pytest.mark.parametrize(
    ("argv", "cwd", "after_lock", "owns"),
    [
        (SM + ["--cores", "1"], "work", -60, True),
        (["/usr/bin/python3", "-m", "snakemake", "-c1"], "work", -60, True),
        (SM + ["-d", "work"], ".", -60, True),
        (SM + ["--directory=../work"], "elsewhere", -60, True),
        (SM + ["--directory", "{tmp}/work"], "elsewhere", -60, True),
        (SM + ["-c1"], "work", -5.5, True),  # started just before the older lock file
        (SM + ["-c1"], "work", 0.5, True),  # within the margin of the start-time resolution
        (SM + ["-c1"], "work", 30, False),  # a reused pid, or a job that outlived its run
        (SM + ["-c1"], "elsewhere", -60, False),
        (SM + ["-d", "elsewhere"], ".", -60, False),
        (SM + ["--unlock"], "work", -60, False),
        (SM + ["-n"], "work", -60, False),
        (SM + ["-np", "--cores", "1"], "work", -60, False),
        (SM + ["--dry-run"], "work", -60, False),
        (SM + ["--nolock"], "work", -60, False),
        (SM + ["--mode", "subprocess"], "work", -60, False),
        (["sh", "profiles/update.sh", "--cores", "1"], "work", -60, False),
        (["vim", "Snakefile"], "work", -60, False),
    ],
)
def test_lock_owner_rule(locked_workdir, argv, cwd, after_lock, owns):
    tmp = locked_workdir.parent
    proc = tmp / "proc"
    argv = [a.replace("{tmp}", str(tmp)) for a in argv]
    fake_process(proc, 1, ["/sbin/init"], Path("/"), BOOTED + 1)
    fake_process(proc, 4242, argv, tmp / cwd, LOCK_WRITTEN + after_lock)
    owner = run_lock.lock_owner(locked_workdir, proc=proc, booted=BOOTED)
    if owns:
        assert owner == run_lock.LockOwner(
            pid=4242,
            started=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(LOCK_WRITTEN + after_lock)),
            command=" ".join(argv),
        )
    else:
        assert owner is None


def test_lock_owner_skips_excluded_pids_and_picks_the_first_started(locked_workdir):
    proc = locked_workdir.parent / "proc"
    run = SM + ["--cores", "1"]
    fake_process(proc, 10, run, locked_workdir, LOCK_WRITTEN - 100)
    fake_process(proc, 11, run, locked_workdir, LOCK_WRITTEN - 200)
    owner = run_lock.lock_owner(locked_workdir, proc=proc, booted=BOOTED)
    assert owner is not None and owner.pid == 11
    owner = run_lock.lock_owner(locked_workdir, proc=proc, booted=BOOTED, exclude={11})
    assert owner is not None and owner.pid == 10
    assert run_lock.lock_owner(locked_workdir, proc=proc, booted=BOOTED, exclude={10, 11}) is None


def test_no_lock_has_no_owner(tmp_path):
    proc = tmp_path / "proc"
    fake_process(proc, 10, SM + ["--cores", "1"], tmp_path, BOOTED + 5)
    assert run_lock.lock_owner(tmp_path, proc=proc, booted=BOOTED) is None


def test_without_a_process_table_the_owner_is_unknown(locked_workdir):
    with pytest.raises(run_lock.UnknownLockOwnerError, match="cannot read the process table"):
        run_lock.lock_owner(locked_workdir, proc=locked_workdir.parent / "no-proc")
    (locked_workdir.parent / "empty-proc").mkdir()
    with pytest.raises(run_lock.UnknownLockOwnerError, match="lists no processes"):
        run_lock.lock_owner(locked_workdir, proc=locked_workdir.parent / "empty-proc")


def test_command_line_says_no_lock_or_stale(locked_workdir, capsys):
    # the real /proc: no snakemake runs in a fresh temporary directory
    assert run_lock.main([str(locked_workdir)]) == run_lock.EXIT_STALE
    line = capsys.readouterr().out
    assert line.startswith("stale Snakemake lock in ") and "2023-11-14T22:13:20Z" in line
    for lock in run_lock.snakemake_locks(locked_workdir):
        lock.unlink()
    assert run_lock.main([str(locked_workdir)]) == run_lock.EXIT_NO_LOCK
    assert capsys.readouterr().out.startswith("no Snakemake lock in ")
