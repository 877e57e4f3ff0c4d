"""The workflow on a real single-node SLURM (started and stopped by the test), as users type it.

The SLURM profile is installed with ``enhance profile install --account ...
--partition ...`` into a temporary ``XDG_CONFIG_HOME`` and the workflow runs
as ``snakemake --profile slurm`` from the repository root: no resource on the
command line, so whatever reaches SLURM came through the profile and the
workflow's configuration. ``sacct`` then shows what each ``sbatch`` asked for:
the account and partition (neither is the cluster's default for root), CPUs
(one per job thread), memory, time limit and the GPU (gres) of the enhancement
jobs. Needs root and the Debian packages slurm-wlm slurm-client munge slurmdbd
mariadb-server (skipped otherwise, required in CI).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys

import pytest
import yaml
from conftest import require
from slurm_cluster import ACCOUNT, PARTITION, SlurmCluster, missing_prerequisites
from test_workflow import REPO, SNAKEFILE, make_archive, weights  # noqa: F401 (fixture)

from enhance_hmi.cube import TimeCube

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

SACCT_FIELDS = ("Comment", "Account", "Partition", "ReqCPUS", "ReqMem", "Timelimit", "ReqTRES")
SACCT_ALL = (*SACCT_FIELDS, "State")


@pytest.fixture(scope="module")
def cluster():
    reason = missing_prerequisites()
    require(reason is None, reason or "")
    with SlurmCluster() as running:
        yield running


def run_until_done(cmd: list[str], *, env: dict[str, str], timeout: float) -> tuple[int, str]:
    """Run ``cmd``; on timeout stop it with SIGINT (Snakemake ignores SIGTERM) and fail."""
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO, env=env
    )
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=60)
        pytest.fail(f"snakemake did not finish within {timeout:.0f} s:\n{output[-4000:]}")
    return proc.returncode, output


def submitted_jobs(run_id: str) -> list[dict[str, str]]:
    """What each sbatch of one Snakemake run asked SLURM for, from the accounting database."""
    sacct = subprocess.run(
        ["sacct", "-a", "-X", "-P", "-n", "-S", "now-1days", "--name", run_id]
        + ["-o", ",".join(SACCT_ALL)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    jobs = [dict(zip(SACCT_ALL, line.split("|"), strict=True)) for line in sacct.splitlines()]
    assert jobs and all(job["State"] == "COMPLETED" for job in jobs), sacct
    return jobs


def test_workflow_on_slurm_through_the_installed_profile(tmp_path, weights, cluster):  # noqa: F811
    archive = make_archive(tmp_path / "archive", [0, 1, 2])
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "source": str(archive),
                "series": ["hmi.M_720s"],
                "weights": weights,
                "enhance": {"device": "cpu", "tile": 64, "frames_per_job": 1},
                "resources": {"gpu": 1, "mem_mb": 1000, "runtime": 10, "threads": 2},
                "output": "out",
            }
        )
    )
    (tmp_path / "xdg").mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    install = subprocess.run(
        [sys.executable, "-m", "enhance_hmi", "profile", "install"]
        + ["--account", ACCOUNT, "--partition", PARTITION],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert install.returncode == 0, install.stderr
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "--profile",
        "slurm",
        "-s",
        str(SNAKEFILE),
        "--directory",
        str(tmp_path),
        "--configfile",
        str(config),
        # polling only (the plugin's defaults wait 40 s before the first check)
        "--slurm-init-seconds-before-status-checks",
        "2",
        "--seconds-between-status-checks",
        "2",
    ]
    code, output = run_until_done(cmd, env=env, timeout=420)
    assert code == 0, output[-4000:]
    assert "Using profile slurm for setting default command line arguments." in output
    run_id = re.search(r"SLURM run ID: (\S+)", output).group(1)

    jobs = submitted_jobs(run_id)
    for job in jobs:  # the plugin's comment: rule_<rule>[_wildcards_<values>]
        job["rule"] = re.fullmatch(r"rule_(\w+?)(?:_wildcards_.*)?", job["Comment"]).group(1)
    rules = sorted(job["rule"] for job in jobs)
    assert rules.count("enhance_batch") == 3 and "cube" in rules, jobs
    for job in jobs:
        # from the installed profile: neither is the cluster's default for root
        assert (job["Account"], job["Partition"]) == (ACCOUNT, PARTITION), job
        if job["rule"] == "enhance_batch":
            # from config resources: threads 2 -> 2 CPUs, mem_mb, runtime (min), gpu -> gres
            assert job["ReqCPUS"] == "2", job
            assert job["ReqMem"] == "1000M" and job["Timelimit"] == "00:10:00", job
            assert "gres/gpu=1" in job["ReqTRES"].split(","), job
        else:  # the rule's own resources, one thread: one CPU, no GPU
            assert job["ReqCPUS"] == "1" and "gres/gpu" not in job["ReqTRES"], job
    cube_job = next(job for job in jobs if job["rule"] == "cube")
    assert cube_job["ReqMem"] == "4000M" and cube_job["Timelimit"] == "01:00:00", cube_job

    # scaling out: three one-frame batches ran as three SLURM jobs that split the
    # range without overlap and together cover every frame
    batches = sorted((tmp_path / "out" / "enhanced" / "hmi.M_720s" / "batches").glob("*.json"))
    assigned = [f["t_rec"] for b in batches for f in json.loads(b.read_text())["frames"]]
    assert len(batches) == 3 and len(assigned) == 3 == len(set(assigned)), assigned
    cube = TimeCube(tmp_path / "out" / "cubes" / "hmi.M_720s" / "20160707.h5")
    assert len(cube.times()) == 3
    assert cube.read_maps()[0].data.shape == (192, 192)
    log = next((tmp_path / "out" / "logs" / "enhance" / "hmi.M_720s").glob("*.log")).read_text()
    assert "SLURM_JOB_GPUS=" in log and "SLURM_JOB_GPUS= " not in log  # a GPU was allocated
