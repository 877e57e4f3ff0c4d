"""The SLURM profile as users type it: installed by ``enhance profile install``, used by name.

``snakemake --profile slurm`` (installed into a temporary ``XDG_CONFIG_HOME``)
and ``snakemake --profile profiles/slurm`` from the repository root must give
every job the profile's account, partition and CPUs: no workflow profile may
override them key by key. Dry runs of the real workflow, real files.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from test_workflow import REPO, SNAKEFILE, make_archive, weights  # noqa: F401 (fixture)

import enhance_hmi.snakemake_profile as snakemake_profile
from enhance_hmi.cli import main
from enhance_hmi.errors import OutputError
from enhance_hmi.snakemake_profile import PROFILE_FILE, install_slurm_profile

SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def enhance_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "enhance_hmi", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def xdg_env(config_home: Path) -> dict[str, str]:
    config_home.mkdir(parents=True, exist_ok=True)
    return {**os.environ, "XDG_CONFIG_HOME": str(config_home)}


@pytest.fixture(scope="module")
def acquired(tmp_path_factory, weights):  # noqa: F811
    """A workflow directory whose acquisition checkpoint has run (so every job is planned)."""
    workdir = tmp_path_factory.mktemp("acquired")
    archive = make_archive(workdir / "archive", [0, 1, 2])
    config = workdir / "config.yaml"
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
    proc = subprocess.run(
        [*SNAKEMAKE, "-s", str(SNAKEFILE), "-d", str(workdir), "--configfile", str(config)]
        + ["--profile", str(REPO / "profiles" / "local"), "--until", "acquire"],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return workdir, config


def dry_run_jobs(workdir: Path, config: Path, *args: str, env=None) -> tuple[str, list[dict]]:
    """``snakemake -n`` from the repository root; the rule, threads and resources of each job."""
    proc = subprocess.run(
        [*SNAKEMAKE, "-s", str(SNAKEFILE), "-d", str(workdir), "--configfile", str(config)]
        + ["-n", *args],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=REPO,  # where users type it: Snakemake would find a profiles/default here
        env=env,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    jobs = []
    for block in re.split(r"\n(?=(?:local)?(?:rule|checkpoint) \w+:\n)", output):
        name = re.match(r"(?:local)?(?:rule|checkpoint) (\w+):\n", block)
        resources = re.search(r"^\s+resources: (.*)$", block, re.MULTILINE)
        if name is None or resources is None:
            continue
        threads = re.search(r"^\s+threads: (\d+)$", block, re.MULTILINE)
        jobs.append(
            {
                "rule": name.group(1),
                "threads": int(threads.group(1)) if threads else 1,
                "resources": dict(item.split("=", 1) for item in resources.group(1).split(", ")),
            }
        )
    return output, jobs


def assert_cluster_settings(jobs: list[dict], *, account: str, partition: str) -> None:
    rules = {job["rule"] for job in jobs}
    assert {"enhance_batch", "cube", "all"} <= rules, rules
    assert sum(job["rule"] == "enhance_batch" for job in jobs) == 3
    for job in jobs:
        resources = job["resources"]
        assert resources.get("slurm_account") == account, job
        assert resources.get("slurm_partition") == partition, job
        assert resources.get("cpus_per_task") == str(job["threads"]), job  # one CPU per thread
    batch = next(job for job in jobs if job["rule"] == "enhance_batch")
    assert batch["resources"]["gpu"] == "1"
    assert batch["resources"]["mem_mb"] == "1000" and batch["resources"]["runtime"] == "10"


def test_installed_profile_is_used_as_typed(tmp_path, acquired):
    workdir, config = acquired
    env = xdg_env(tmp_path / "xdg")
    proc = enhance_cli(
        "profile", "install", "--account", "solar", "--partition", "archive", env=env
    )
    assert proc.returncode == 0, proc.stderr
    assert "snakemake --profile slurm" in proc.stdout
    profile_dir = tmp_path / "xdg" / "snakemake" / "slurm"
    assert sorted(p.name for p in profile_dir.iterdir()) == [PROFILE_FILE]
    assert sorted(p.name for p in profile_dir.parent.iterdir()) == ["slurm"]  # no .part left

    output, jobs = dry_run_jobs(workdir, config, "--profile", "slurm", env=env)
    assert "Using profile slurm for setting default command line arguments." in output
    assert "workflow specific profile" not in output
    assert_cluster_settings(jobs, account="solar", partition="archive")
    # a dry run plans with one core; with more, the batches' two threads are two CPUs
    _, jobs = dry_run_jobs(workdir, config, "--profile", "slurm", "--cores", "4", env=env)
    assert_cluster_settings(jobs, account="solar", partition="archive")
    batches = [job for job in jobs if job["rule"] == "enhance_batch"]
    assert {job["resources"]["cpus_per_task"] for job in batches} == {"2"}
    # the rest of the profile is the template's, not a local profile's
    settings = yaml.safe_load((profile_dir / PROFILE_FILE).read_text())
    assert settings["executor"] == "slurm" and settings["retries"] == 2
    assert settings["latency-wait"] == 60


def test_repository_profile_is_used_as_typed(acquired):
    workdir, config = acquired
    template = yaml.safe_load((REPO / "profiles" / "slurm" / PROFILE_FILE).read_text())
    output, jobs = dry_run_jobs(workdir, config, "--profile", "profiles/slurm")
    assert "workflow specific profile" not in output
    assert_cluster_settings(
        jobs,
        account=template["default-resources"]["slurm_account"],
        partition=template["default-resources"]["slurm_partition"],
    )


def test_readme_command_runs_without_any_profile(tmp_path):
    # `snakemake --cores 2` from the repository root, the README's main command
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"output": "out"}))
    output, jobs = dry_run_jobs(tmp_path, config, "--cores", "2")
    assert "profile" not in output.lower()
    assert jobs and all("slurm_account" not in job["resources"] for job in jobs)


def test_reinstall_with_same_settings_changes_nothing(tmp_path):
    env = xdg_env(tmp_path / "xdg")
    args = ("profile", "install", "--account", "solar", "--partition", "archive,debug")
    assert enhance_cli(*args, env=env).returncode == 0
    path = tmp_path / "xdg" / "snakemake" / "slurm" / PROFILE_FILE
    before = path.stat().st_mtime_ns, path.read_text()
    again = enhance_cli(*args, env=env)
    assert again.returncode == 0 and "already has these settings" in again.stdout
    assert (path.stat().st_mtime_ns, path.read_text()) == before
    assert yaml.safe_load(before[1])["default-resources"]["slurm_partition"] == "'archive,debug'"


def test_different_profile_needs_force_and_is_kept(tmp_path, capsys):
    dest = tmp_path / "profiles" / "slurm"
    install = ["profile", "install", "--partition", "p1", "--dest", str(dest)]
    assert main([*install, "--account", "a1"]) == 0
    first = (dest / PROFILE_FILE).read_text()
    capsys.readouterr()
    code = main([*install, "--account", "a2"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "already holds a different profile" in err and "--force" in err
    assert (dest / PROFILE_FILE).read_text() == first

    result = install_slurm_profile(account="a2", partition="p1", dest=dest, force=True)
    assert result.action == "replaced"
    assert (
        yaml.safe_load((dest / PROFILE_FILE).read_text())["default-resources"]["slurm_account"]
        == "'a2'"
    )
    assert (result.backup / PROFILE_FILE).read_text() == first  # nothing lost


def test_shadowing_profile_file_counts_as_different(tmp_path):
    dest = tmp_path / "slurm"
    install_slurm_profile(account="a1", partition="p1", dest=dest)
    # Snakemake prefers the file with the highest minimum version
    (dest / "config.v9+.yaml").write_text("executor: local\n")
    with pytest.raises(snakemake_profile.ConfigError, match="config.v8\\+.yaml, config.v9"):
        install_slurm_profile(account="a1", partition="p1", dest=dest)
    result = install_slurm_profile(account="a1", partition="p1", dest=dest, force=True)
    assert sorted(p.name for p in dest.iterdir()) == [PROFILE_FILE]
    assert (result.backup / "config.v9+.yaml").exists()


def test_linked_profile_is_replaced_not_written_through(tmp_path):
    # the old instructions: ln -s "$PWD/profiles/slurm" ~/.config/snakemake/slurm
    repo_profile = tmp_path / "clone" / "profiles" / "slurm"
    repo_profile.mkdir(parents=True)
    original = (REPO / "profiles" / "slurm" / PROFILE_FILE).read_text()
    (repo_profile / PROFILE_FILE).write_text(original)
    link = tmp_path / "xdg" / "snakemake" / "slurm"
    link.parent.mkdir(parents=True)
    link.symlink_to(repo_profile)
    with pytest.raises(snakemake_profile.ConfigError, match="a link to"):
        install_slurm_profile(account="solar", partition="archive", dest=link)
    result = install_slurm_profile(account="solar", partition="archive", dest=link, force=True)
    assert not link.is_symlink() and (link / PROFILE_FILE).is_file()
    assert result.backup.is_symlink() and result.backup.resolve() == repo_profile.resolve()
    assert (repo_profile / PROFILE_FILE).read_text() == original


@pytest.mark.parametrize(
    ("account", "partition", "message"),
    [
        ("a b", "debug", "is not a SLURM account name"),
        ("acct", "debug;rm", "is not a SLURM partition name"),
        ("", "debug", "is not a SLURM account name"),
    ],
)
def test_bad_names_are_one_line_errors_and_write_nothing(tmp_path, account, partition, message):
    dest = tmp_path / "slurm"
    proc = enhance_cli(
        "profile", "install", "--account", account, "--partition", partition, "--dest", str(dest)
    )
    assert proc.returncode == 2
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not dest.exists() and list(tmp_path.iterdir()) == []


def test_account_named_like_a_python_name_reaches_snakemake_as_typed(tmp_path, acquired):
    # Snakemake evaluates resource values as Python first: `threads` is a number there
    workdir, config = acquired
    dest = tmp_path / "slurm"
    install_slurm_profile(account="threads", partition="1e3", dest=dest)
    _, jobs = dry_run_jobs(workdir, config, "--profile", str(dest))
    assert_cluster_settings(jobs, account="threads", partition="1e3")


def test_failed_write_leaves_previous_profile_and_no_debris(tmp_path, monkeypatch):
    dest = tmp_path / "slurm"
    install_slurm_profile(account="a1", partition="p1", dest=dest)
    before = (dest / PROFILE_FILE).read_text()

    def disk_full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(snakemake_profile.os, "fsync", disk_full)
    with pytest.raises(OutputError, match="No space left on device"):
        install_slurm_profile(account="a2", partition="p1", dest=dest, force=True)
    assert (dest / PROFILE_FILE).read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["slurm"]
