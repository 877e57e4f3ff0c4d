"""The workflow on a real single-node SLURM (started and stopped by the test).

Runs ``snakemake --profile profiles/slurm`` against a throwaway SLURM on
loopback (tests/slurm_cluster.py): the enhancement batch and the cube are
SLURM jobs, the enhancement job asks for a GPU (a fake gres device), and the
outputs are checked. Needs root and the Debian packages slurm-wlm
slurm-client munge slurmdbd mariadb-server (skipped otherwise, required in CI).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml
from conftest import require
from slurm_cluster import SlurmCluster, missing_prerequisites
from test_workflow import REPO, SNAKEFILE, make_archive, weights  # noqa: F401 (fixture)

from enhance.cube import TimeCube

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


@pytest.fixture(scope="module")
def cluster():
    reason = missing_prerequisites()
    require(reason is None, reason or "")
    with SlurmCluster() as running:
        yield running


def test_workflow_on_slurm(tmp_path, weights, cluster):  # noqa: F811
    archive = make_archive(tmp_path / "archive", [0, 1, 2])
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "source": str(archive),
                "series": ["hmi.M_720s"],
                "weights": weights,
                "enhance": {"device": "cpu", "tile": 64, "frames_per_job": 1},
                "resources": {"gpu": 1, "mem_mb": 1000, "runtime": 10, "threads": 1},
                "output": "out",
            }
        )
    )
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "-s",
        str(SNAKEFILE),
        "--profile",
        str(REPO / "profiles" / "slurm"),
        "--directory",
        str(tmp_path),
        "--configfile",
        str(config),
        "--slurm-init-seconds-before-status-checks",
        "2",
        "--seconds-between-status-checks",
        "2",
        "--default-resources",
        "slurm_account=root",
        "slurm_partition=debug",
        "mem_mb=1000",
        "runtime=10",
        "cpus_per_task=1",
    ]
    proc = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]
    assert "Submitted job" in output or "submitted" in output.lower()
    sacct = subprocess.run(
        ["sacct", "-a", "-n", "-X", "-o", "JobName%60,State,AllocTRES%60"],
        capture_output=True,
        text=True,
    ).stdout
    jobs = [line for line in sacct.splitlines() if "COMPLETED" in line]
    assert len(jobs) >= 2, sacct  # enhance_batch and cube ran as SLURM jobs
    # scaling out: three one-frame batches ran as three SLURM jobs that split the
    # range without overlap and together cover every frame
    enhance_jobs = [line for line in jobs if "gres/gpu=1" in line]  # only they ask for a GPU
    assert len(enhance_jobs) == 3, sacct
    batches = sorted((tmp_path / "out" / "enhanced" / "hmi.M_720s" / "batches").glob("*.json"))
    assigned = [f["t_rec"] for b in batches for f in json.loads(b.read_text())["frames"]]
    assert len(batches) == 3 and len(assigned) == 3 == len(set(assigned)), assigned
    assert any("gres/gpu=1" in line for line in jobs), sacct
    cube = TimeCube(tmp_path / "out" / "cubes" / "hmi.M_720s" / "20160707.h5")
    assert len(cube.times()) == 3
    assert cube.read_maps()[0].data.shape == (192, 192)
    log = next((tmp_path / "out" / "logs" / "enhance" / "hmi.M_720s").glob("*.log")).read_text()
    assert "SLURM_JOB_GPUS=" in log and "SLURM_JOB_GPUS= " not in log  # a GPU was allocated
