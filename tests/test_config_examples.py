"""The example configurations of ``config/examples``: each valid, each a plan a user can run.

Every example is checked as the workflow checks a configuration
(``snakemake.utils.validate`` against ``workflow/schemas/config.schema.yaml``,
defaults filled in, as ``workflow/rules/common.smk`` does) and by a real
``snakemake -n`` of ``workflow/Snakefile`` with it, typed as its header
comment says (the local profile, the installed SLURM profile, or through
``profiles/update.sh``), from the repository root.

The examples keep ``source: jsoc``: with ``start``, ``end`` and ``cadence``
given, the workflow plans every batch and cube before the acquisition
checkpoint has run, from the configuration alone, and a dry run queries no
server. ``test_dry_run_of_a_remote_source_asks_the_server_nothing`` shows it
against the JSOC stand-in on 127.0.0.1 (``tests/jsoc_standin.py``, which
counts every request); the dry runs of the examples also run with the HTTP
proxies pointed at a closed local port and without ``ENHANCE_JSOC_EMAIL``, so
a query, or a check of the address, would fail them.
"""

from __future__ import annotations

import copy
import datetime as dt
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from jsoc_standin import running_standin
from snakemake.utils import update_config, validate
from test_profile import REPO, SNAKEFILE, SNAKEMAKE, dry_run_jobs, enhance_cli, xdg_env

from enhance_hmi.time import grid_floor, tai_datetime

EXAMPLES = REPO / "config" / "examples"
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"
HINODE_FILE = "hinode/FGMG4_20110214_030443.7.cols0-879.fits"
#: Each example and the test that dry-runs it.
EXAMPLE_TESTS = {
    "jsoc_range.yaml": "test_jsoc_range_plans_the_week_without_a_server",
    "slurm_cluster.yaml": "test_slurm_cluster_jobs_ask_slurm_for_the_example_resources",
    "scheduled_update.yaml": "test_scheduled_update_through_the_update_script_ends_now",
    "hinode_validation.yaml": "test_hinode_validation_plans_a_report_per_hinode_file",
}


def workdir(tmp_path: Path) -> Path:
    """A working directory that holds ``config/config.yaml``, as the repository root does.

    The Snakefile's ``configfile: "config/config.yaml"`` is read relative to
    the working directory: from the repository root an example is laid over
    it (Snakemake: "Config file config/config.yaml is extended by additional
    config specified via the command line"); in a directory without it the
    example alone would run, which is not what a user gets.
    """
    (tmp_path / "config").mkdir()
    shutil.copy(REPO / "config" / "config.yaml", tmp_path / "config" / "config.yaml")
    return tmp_path


def load_example(name: str) -> dict:
    return yaml.safe_load((EXAMPLES / name).read_text())


def offline_env(**extra: str) -> dict[str, str]:
    """The environment of a dry run that must reach no server and needs no JSOC address."""
    env = {key: value for key, value in os.environ.items() if key != "ENHANCE_JSOC_EMAIL"}
    closed = "http://127.0.0.1:9"  # the discard port: nothing listens there
    for key in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        env[key] = closed
    env.pop("no_proxy", None)
    env.pop("NO_PROXY", None)
    return {**env, **extra}


def job_counts(jobs: list[dict]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for job in jobs:
        counts[job["rule"]] = counts.get(job["rule"], 0) + 1
    return counts


def cube_periods(output: str, series: str) -> list[str]:
    return sorted(set(re.findall(rf"cubes/{re.escape(series)}/([0-9_]+)\.json", output)))


def test_every_example_is_tested_and_in_the_readme():
    found = sorted(path.name for path in EXAMPLES.glob("*.yaml"))
    assert found == sorted(EXAMPLE_TESTS)
    module = Path(__file__).read_text()
    readme = (REPO / "README.md").read_text()
    for name, test in EXAMPLE_TESTS.items():
        assert f"def {test}(" in module, name
        assert f"config/examples/{name}" in readme, f"README.md does not reference {name}"


@pytest.mark.parametrize("name", sorted(EXAMPLE_TESTS))
def test_example_passes_the_schema(name):
    example = load_example(name)
    config = copy.deepcopy(example)
    validate(config, schema=str(SCHEMA), set_default=True)  # raises on any bad key or value
    # and laid over config/config.yaml, as a run from the repository root reads it
    merged = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    update_config(merged, copy.deepcopy(example))
    validate(merged, schema=str(SCHEMA), set_default=True)
    # times are quoted, so YAML keeps them as the text the schema asks for
    assert all(isinstance(example.get(key), (str, type(None))) for key in ("start", "end"))
    # a remote source needs the three keys (common.smk refuses it otherwise)
    assert example["source"] == "jsoc"
    assert config["start"] and config["end"] and config["cadence"], name
    assert "ENHANCE_JSOC_EMAIL" in (EXAMPLES / name).read_text()


def test_jsoc_range_plans_the_week_without_a_server(tmp_path):
    output, jobs = dry_run_jobs(
        workdir(tmp_path),
        EXAMPLES / "jsoc_range.yaml",
        "--profile",
        "profiles/local",  # as the example's header types it
        env=offline_env(),
    )
    counts = job_counts(jobs)
    # 7 days x 120 slots of 12 min, 50 frames per job: 3 jobs a day, per series
    assert counts["acquire"] == 2 and counts["enhance_batch"] == 2 * 7 * 3
    assert counts["cube"] == 2 * 7 and counts["validation_twin"] == 1
    for series in ("hmi.M_720s", "hmi.Ic_720s"):
        assert cube_periods(output, series) == [f"201401{day:02d}" for day in range(1, 8)]
    assert "results/jsoc_range/" in output
    assert "config/config.yaml is extended" in output  # laid over the default, as from the root


def test_remote_source_without_cadence_is_refused(tmp_path):
    # the example's comment says cadence is required for a remote source: it is
    example = load_example("jsoc_range.yaml")
    example["cadence"] = None
    config = tmp_path / "no_cadence.yaml"
    config.write_text(yaml.safe_dump(example))
    proc = subprocess.run(
        [
            *SNAKEMAKE,
            "-s",
            str(SNAKEFILE),
            "-d",
            str(workdir(tmp_path)),
            "--configfile",
            str(config),
            "-n",
        ],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=REPO,
        env=offline_env(),
    )
    assert proc.returncode == 1
    assert "config source 'jsoc' needs start, end (a time or now) and cadence" in (
        proc.stdout + proc.stderr
    )


def test_dry_run_of_a_remote_source_asks_the_server_nothing(tmp_path):
    example = load_example("jsoc_range.yaml")
    with running_standin() as standin:
        example["source"] = standin.url
        config = tmp_path / "standin.yaml"
        config.write_text(yaml.safe_dump(example))
        _, jobs = dry_run_jobs(workdir(tmp_path), config, env=offline_env(no_proxy="127.0.0.1"))
        assert job_counts(jobs)["enhance_batch"] == 2 * 7 * 3  # the whole range is planned
        assert sum(standin.calls.values()) == 0, dict(standin.calls)
    assert not (tmp_path / "results").exists()  # and a dry run writes nothing


def test_slurm_cluster_jobs_ask_slurm_for_the_example_resources(tmp_path):
    env = offline_env(XDG_CONFIG_HOME=xdg_env(tmp_path / "xdg")["XDG_CONFIG_HOME"])
    install = enhance_cli("profile", "install", "--account", "solar", "--partition", "gpu", env=env)
    assert install.returncode == 0, install.stderr
    example = load_example("slurm_cluster.yaml")
    output, jobs = dry_run_jobs(
        workdir(tmp_path),
        EXAMPLES / "slurm_cluster.yaml",
        "--profile",
        "slurm",
        "--cores",
        "64",  # a dry run plans with one core otherwise (threads shown capped at 1)
        env=env,
    )
    assert "Using profile slurm" in output
    counts = job_counts(jobs)
    assert counts["enhance_batch"] == 2 * 31  # 120 frames a job: one job per series and day
    assert counts["cube"] == 2 * 31 and counts["validation_twin"] == 1
    resources = example["resources"]
    for job in jobs:
        assert job["resources"]["slurm_account"] == "solar", job
        assert job["resources"]["slurm_partition"] == "gpu", job
        if job["rule"] == "enhance_batch":
            assert job["threads"] == resources["threads"]
            assert job["resources"]["cpus_per_task"] == str(resources["threads"])
            assert job["resources"]["gpu"] == str(resources["gpu"])
            assert job["resources"]["mem_mb"] == str(resources["mem_mb"])
            assert job["resources"]["runtime"] == str(resources["runtime"])
    enhance = example["enhance"]
    assert enhance["readers"] + enhance["writers"] <= resources["threads"]  # as its comment says


def test_scheduled_update_through_the_update_script_ends_now(tmp_path):
    env = offline_env(XDG_CONFIG_HOME=xdg_env(tmp_path / "xdg")["XDG_CONFIG_HOME"])
    install = enhance_cli("profile", "install", "--account", "solar", "--partition", "gpu", env=env)
    assert install.returncode == 0, install.stderr
    before = tai_datetime(dt.datetime.now(dt.timezone.utc))
    proc = subprocess.run(
        [str(REPO / "profiles" / "update.sh"), "-s", str(SNAKEFILE), "-d", str(workdir(tmp_path))]
        + ["--configfile", str(EXAMPLES / "scheduled_update.yaml"), "--profile", "slurm", "-n"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
        env={**env, "SNAKEMAKE": f"{sys.executable} -m snakemake"},
    )
    after = tai_datetime(dt.datetime.now(dt.timezone.utc))
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]  # exit status 0: a dry run has nothing to fail
    assert (tmp_path / ".snakemake" / "enhance-update.lock").is_file()  # the script's lock
    example = load_example("scheduled_update.yaml")
    assert example["end"] == "now"
    # the range runs from `start` to the last 12 min slot before now (TAI)
    periods = cube_periods(output, "hmi.M_720s")
    step = dt.timedelta(minutes=12)
    last = {f"{grid_floor(t, step):%Y%m%d}" for t in (before, after)}
    assert periods[0] == f"{tai_datetime(example['start']):%Y%m%d}"
    assert periods[-1] in last, (periods[-1], last)
    assert "slurm_account=solar" in output


def test_hinode_validation_plans_a_report_per_hinode_file(tmp_path, shared_data):
    # the example names hinode/*.fits in the working directory
    (tmp_path / "hinode").mkdir()
    hinode = shutil.copy(shared_data / HINODE_FILE, tmp_path / "hinode")
    target = Path(hinode).name.split(".fits")[0]
    output, jobs = dry_run_jobs(
        workdir(tmp_path),
        EXAMPLES / "hinode_validation.yaml",
        "--profile",
        "profiles/local",
        env=offline_env(),
    )
    counts = job_counts(jobs)
    assert counts["validation_hinode"] == 1 and "validation_twin" not in counts
    assert f"results/hinode/validation/hinode/{target}/report.html" in output
    # the run's own range: the ten minutes around the observation, hmi.M_45s
    assert counts["acquire"] == 1 and counts["cube"] == 1
    assert cube_periods(output, "hmi.M_45s") == ["20110214"]
