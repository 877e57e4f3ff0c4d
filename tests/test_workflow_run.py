"""The workflow's state as plain Python, without Snakemake.

:mod:`enhance_hmi.workflow.run_config` (the config checks beyond the schema),
:mod:`enhance_hmi.workflow.run_state` (acquisition keys and their retries,
``end: now``, the range's plan, open batches, the run status) and
:func:`enhance_hmi.acquire.acquire_options`, each on real files in a
temporary output directory. The whole module runs in a few seconds.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from snakemake.utils import validate

from enhance_hmi.acquire import AcquireOptions, acquire_options
from enhance_hmi.errors import ConfigError
from enhance_hmi.workflow.quarantine import QuarantineEntry, write_batch_quarantine
from enhance_hmi.workflow.run_config import RunConfig, check_enhance_settings, times_as_text
from enhance_hmi.workflow.run_state import WorkflowRun, attempt_number
from enhance_hmi.workflow.run_status import (
    clear_job_failure,
    record_job_failure,
    write_run_status,
)

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"
SERIES = "hmi.M_720s"


def config_of(tmp_path: Path, **values: Any) -> dict[str, Any]:
    """A config as ``common.smk`` sees it: the values given, then the schema's defaults."""
    config: dict[str, Any] = {"output": str(tmp_path / "out"), "series": [SERIES], **values}
    times_as_text(config)
    validate(config, schema=str(SCHEMA), set_default=True)
    return config


def remote(tmp_path: Path, **values: Any) -> dict[str, Any]:
    """A JSOC range of one day at 12 min, 10 frames per job."""
    base = {
        "source": "jsoc",
        "start": "2014-01-01T00:00:00",
        "end": "2014-01-01T23:48:00",
        "cadence": "12m",
        "enhance": {"frames_per_job": 10},
    }
    return config_of(tmp_path, **{**base, **values})


def write_summary(run: WorkflowRun, key: str, *, complete: bool, **extra: Any) -> Path:
    """An acquisition summary as ``workflow/scripts/acquire.py`` writes it, newest of all."""
    path = Path(run.output, "acquire", SERIES, f"{key}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"series": SERIES, "complete": complete, **extra}))
    newest = max([p.stat().st_mtime for p in path.parent.glob("*.json")], default=0)
    os.utime(path, (newest + 1, newest + 1))  # mtimes order the summaries
    return path


def quarantine(run: WorkflowRun, batch: str) -> None:
    entry = QuarantineEntry(
        t_rec="2014.01.01_00:12:00_TAI",
        batch=batch,
        input="raw/x.fits",
        input_sha256="0" * 64,
        manifest_sha256="0" * 64,
        stage="network",
        cause="no finite pixel",
        settings_sha256="1" * 64,
        weights_sha256="2" * 64,
        quarantined="2014-01-02T00:00:00Z",
    )
    write_batch_quarantine(run.output, SERIES, batch, [entry])


# ------------------------------------------------------------------ config checks
def test_a_good_config_gives_its_values(tmp_path):
    checked = RunConfig.from_config(remote(tmp_path))
    assert checked.source == "jsoc" and checked.is_remote
    assert checked.start == dt.datetime(2014, 1, 1)
    assert checked.end == dt.datetime(2014, 1, 1, 23, 48)
    assert checked.cadence == dt.timedelta(minutes=12)
    assert checked.slot_step(SERIES) == dt.timedelta(minutes=12)
    assert checked.layout_params(SERIES) == {"period": "day", "frames": 100, "step_seconds": 720}
    assert checked.out_of_tolerance == "keep"
    assert checked.weights_for(SERIES) is None and checked.input_noise_for(SERIES) is None
    assert len(checked.sha256) == 64


def test_sample_is_a_local_archive_whose_step_is_the_series_step(tmp_path):
    checked = RunConfig.from_config(config_of(tmp_path, source="sample", series=["hmi.Ic_45s"]))
    assert Path(checked.source).is_dir() and not checked.is_remote
    assert checked.cadence is None and checked.slot_step("hmi.Ic_45s") == dt.timedelta(seconds=45)


def test_yaml_dates_become_the_text_the_schema_asks_for(tmp_path):
    config = config_of(tmp_path, source="sample", start=dt.date(2014, 1, 2), end=None)
    assert config["start"] == "2014-01-02"
    assert RunConfig.from_config(config).start == dt.datetime(2014, 1, 2)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"source": "/no/such/dir"},
            "config source '/no/such/dir' is not sample, jsoc, kis, an http(s) URL or an "
            "existing directory of HMI FITS files; fix `source:` in the config",
        ),
        (
            {"source": "jsoc", "cadence": "12m"},
            "config source 'jsoc' needs start, end (a time or now) and cadence; only a local "
            "archive may leave them null",
        ),
        (
            {"source": "jsoc", "start": "2014-01-01", "end": "now"},
            "config source 'jsoc' needs start, end (a time or now) and cadence",
        ),
        (
            {"source": "sample", "start": "2014-01-02", "end": "2014-01-01"},
            "config end 2014-01-01 is before start 2014-01-02",
        ),
        (
            {"source": "sample", "series": ["hmi.M_45s"], "cadence": "100s"},
            "config cadence 100s is not a multiple of the 45 s step of hmi.M_45s",
        ),
        (
            {"source": "sample", "weights": {"magnetogram": "/no/such.safetensors"}},
            "config weights for magnetogram: /no/such.safetensors does not exist",
        ),
        ({"source": "sample", "quality_policy": "NOSUCHBIT"}, "NOSUCHBIT"),
        (
            {"source": "sample", "cube": {"out_of_tolerance": "exclude", "flagged": "keep"}},
            "its older name cube.flagged is 'keep'",
        ),
    ],
)
def test_config_errors_say_what_to_fix_in_one_line(tmp_path, values, message):
    with pytest.raises(ConfigError) as caught:
        RunConfig.from_config(config_of(tmp_path, **values))
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_end_now_with_start_and_cadence_is_a_remote_range(tmp_path):
    checked = RunConfig.from_config(remote(tmp_path, end="now"))
    assert checked.end_is_now and checked.end is None


def test_input_noise_is_checked_against_its_observable(tmp_path):
    good = config_of(tmp_path, source="sample", enhance={"input_noise": {"magnetogram": "10 G"}})
    check_enhance_settings(good)  # a magnetogram's noise in gauss: fine
    bad = config_of(tmp_path, source="sample", enhance={"input_noise": {"continuum": "10 G"}})
    with pytest.raises(ConfigError, match=r"^config enhance\.input_noise\.continuum: input noise"):
        RunConfig.from_config(bad)


def test_the_workflow_state_loads_no_torch(tmp_path):
    """A Snakefile parse of a config without an input noise never imports torch."""
    config = config_of(tmp_path, source="sample")
    code = (
        "import json, sys\n"
        "from enhance_hmi.workflow.run_config import RunConfig\n"
        "from enhance_hmi.workflow.run_state import WorkflowRun\n"
        f"run = WorkflowRun(RunConfig.from_config(json.loads({json.dumps(config)!r})))\n"
        "run.acquire_key('hmi.M_720s'); run.range_plan('hmi.M_720s')\n"
        "print('torch' in sys.modules)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"


# ------------------------------------------------------------------------ now
def test_end_now_is_the_last_slot_before_the_current_tai_time(tmp_path):
    # 00:11:30 UTC is 00:12:07 TAI (TAI - UTC = 35 s in 2014): the 00:12 slot, not 00:00
    clock = iter([dt.datetime(2014, 1, 1, 0, 11, 30, tzinfo=dt.timezone.utc)])
    run = WorkflowRun(RunConfig.from_config(remote(tmp_path, end="now")), clock=lambda: next(clock))
    assert run.resolved_end(SERIES) == "2014.01.01_00:12:00_TAI"


def test_end_now_is_read_once_per_run(tmp_path):
    times = iter(
        [
            dt.datetime(2014, 1, 1, 10, 0, tzinfo=dt.timezone.utc),
            dt.datetime(2014, 1, 1, 11, 0, tzinfo=dt.timezone.utc),
        ]
    )
    run = WorkflowRun(RunConfig.from_config(remote(tmp_path, end="now")), clock=lambda: next(times))
    key = run.acquire_key(SERIES)
    plan = run.range_plan(SERIES)
    assert run.resolved_end(SERIES) == "2014.01.01_10:00:00_TAI"
    # the clock moved on, the key and the plan of this run did not
    assert run.acquire_key(SERIES) == key and run.range_plan(SERIES) == plan
    later = WorkflowRun(run.config, clock=lambda: dt.datetime(2014, 1, 1, 13, tzinfo=dt.UTC))
    assert later.acquire_key(SERIES) != key  # a later run asks for a longer range
    assert sum(map(len, later.range_plan(SERIES).values())) > sum(map(len, plan.values()))


# ------------------------------------------------------------- acquisition keys
def test_attempt_numbers_are_numbers():
    assert attempt_number("0123456789ab.json") == 0
    assert attempt_number("0123456789ab-r9.json") == 9
    names = ["k-r9.json", "k-r10.json", "k.json", "k-r2.json"]
    assert sorted(names, key=attempt_number) == ["k.json", "k-r2.json", "k-r9.json", "k-r10.json"]


def test_the_key_is_the_request_hash_until_an_acquisition_is_incomplete(tmp_path):
    config = RunConfig.from_config(remote(tmp_path))
    first = WorkflowRun(config)
    base = first.acquire_key(SERIES)
    assert len(base) == 12 and base == first.request_hash(SERIES)
    write_summary(first, base, complete=True)
    assert WorkflowRun(config).acquire_key(SERIES) == base  # done: nothing to retry

    write_summary(first, base, complete=False)
    assert WorkflowRun(config).acquire_key(SERIES) == f"{base}-r1"
    write_summary(first, f"{base}-r1", complete=False)
    assert WorkflowRun(config).acquire_key(SERIES) == f"{base}-r2"
    for attempt in range(2, 10):
        write_summary(first, f"{base}-r{attempt}", complete=False)
    assert WorkflowRun(config).acquire_key(SERIES) == f"{base}-r10"
    write_summary(first, f"{base}-r10", complete=False)
    assert WorkflowRun(config).acquire_key(SERIES) == f"{base}-r11"  # r9 < r10, as numbers
    write_summary(first, f"{base}-r11", complete=True)
    assert WorkflowRun(config).acquire_key(SERIES) == f"{base}-r11"  # settled on the retry


def test_quarantined_frames_make_a_complete_acquisition_run_again(tmp_path):
    config = RunConfig.from_config(remote(tmp_path))
    run = WorkflowRun(config)
    base = run.acquire_key(SERIES)
    write_summary(run, base, complete=True)
    quarantine(run, "20140101-0000")
    assert WorkflowRun(config).acquire_key(SERIES) == f"{base}-r1"


def test_the_request_hash_changes_with_what_decides_the_plan(tmp_path):
    base = WorkflowRun(RunConfig.from_config(remote(tmp_path))).request_hash(SERIES)
    assert WorkflowRun(RunConfig.from_config(remote(tmp_path))).request_hash(SERIES) == base
    for change in (
        {"cadence": "24m"},
        {"end": "2014-01-01T12:00:00"},
        {"quality_policy": "strict"},
        {"enhance": {"frames_per_job": 11}},
        {"cube": {"period": "frames", "frames": 30}},
    ):
        other = WorkflowRun(RunConfig.from_config(remote(tmp_path, **change)))
        assert other.request_hash(SERIES) != base, change
    # what only changes the enhancement does not make a new acquisition
    same = WorkflowRun(
        RunConfig.from_config(remote(tmp_path, enhance={"frames_per_job": 10, "tile": 256}))
    )
    assert same.request_hash(SERIES) == base


def test_a_job_takes_the_key_its_scheduler_chose(tmp_path):
    config = RunConfig.from_config(remote(tmp_path, end="now"))
    scheduler = WorkflowRun(config, clock=lambda: dt.datetime(2014, 1, 1, 6, tzinfo=dt.UTC))
    key = scheduler.acquire_key(SERIES)
    write_summary(scheduler, key, complete=True)
    later = dt.datetime(2014, 1, 1, 7, tzinfo=dt.UTC)  # the job starts an hour later
    assert WorkflowRun(config, job=True, clock=lambda: later).acquire_key(SERIES) == key
    assert WorkflowRun(config, job=False, clock=lambda: later).acquire_key(SERIES) != key


# -------------------------------------------------------------------- planning
def test_range_plan_lists_every_batch_of_the_range(tmp_path):
    run = WorkflowRun(RunConfig.from_config(remote(tmp_path)))
    # 120 slots of 12 min in the day, 10 per job
    assert run.range_plan(SERIES) == {"20140101": [f"20140101-{i:04d}" for i in range(12)]}
    two_days = remote(tmp_path, end="2014-01-02T00:00:00")
    plan = WorkflowRun(RunConfig.from_config(two_days)).range_plan(SERIES)
    assert plan == {
        "20140101": [f"20140101-{i:04d}" for i in range(12)],
        "20140102": ["20140102-0000"],
    }


def test_range_plan_starts_on_the_series_grid(tmp_path):
    # 00:05 snaps up to the 00:12 slot: the first batch still starts the day
    config = remote(tmp_path, start="2014-01-01T00:05:00", end="2014-01-01T01:00:00")
    assert WorkflowRun(RunConfig.from_config(config)).range_plan(SERIES) == {
        "20140101": ["20140101-0000"]
    }
    empty = remote(tmp_path, start="2014-01-01T00:05:00", end="2014-01-01T00:06:00")
    assert WorkflowRun(RunConfig.from_config(empty)).range_plan(SERIES) == {}


def test_a_local_archive_without_a_range_is_planned_by_the_checkpoint(tmp_path):
    run = WorkflowRun(RunConfig.from_config(config_of(tmp_path, source="sample")))
    assert run.resolved_end(SERIES) is None and run.range_plan(SERIES) is None


def test_settled_and_open_batches(tmp_path):
    config = RunConfig.from_config(remote(tmp_path))
    run = WorkflowRun(config)
    batches = ["20140101-0000", "20140101-0001", "20140101-0002", "20140101-0003"]
    for batch in batches:
        run.plan_file(SERIES, batch).parent.mkdir(parents=True, exist_ok=True)
        run.plan_file(SERIES, batch).write_text("t_rec\n")
        marker = Path(run.output, "enhanced", SERIES, "batches", f"{batch}.json")
        marker.parent.mkdir(parents=True, exist_ok=True)
        if batch != "20140101-0003":  # its job never finished
            marker.write_text("{}")
    write_summary(run, "older", complete=False, open_batches=["20140101-0000"])
    write_summary(run, "newest", complete=False, open_batches=["20140101-0001"])
    quarantine(run, "20140101-0002")
    fresh = WorkflowRun(config)
    assert fresh.open_batches(SERIES) == {"20140101-0001", "20140101-0002"}  # newest summary
    assert [fresh.batch_settled(SERIES, b) for b in batches] == [True, False, False, False]
    assert not fresh.batch_settled(SERIES, "20140101-0009")  # never planned


# ---------------------------------------------------------------------- status
def test_status_counts_the_attempts_the_jobs_recorded_not_the_log(tmp_path):
    run = WorkflowRun(RunConfig.from_config(remote(tmp_path)), started="2000-01-01T00:00:00Z")
    log = tmp_path / "snakemake.log"
    log.write_text("Error in rule cube:\nError in rule cube:\nError in rule cube:\n")
    record_job_failure(run.output, "acquire", SERIES, "the server may be down")
    record_job_failure(run.output, "acquire", SERIES, "the server may be down (again)")
    record_job_failure(run.output, "cube", f"{SERIES}/20140101", "no space left")
    clear_job_failure(run.output, "cube", f"{SERIES}/20140101")  # its retry succeeded
    status = run.status(success=False, logs=str(log))
    assert status["failed_rules"] == {"acquire": 2}
    assert status["reason"] == f"failed jobs: acquire {SERIES}: the server may be down (again)"
    assert status["log"] == [str(log)] and status["exit_status"] == 1
    assert status["config_sha256"] == run.config.sha256
    assert "FAILED" in write_run_status(status, run.output)
    assert json.loads(Path(run.output, "status.json").read_text())["failed_rules"] == {"acquire": 2}
    later = WorkflowRun(run.config, started="2999-01-01T00:00:00Z")  # not its attempts
    assert later.status(success=False)["failed_rules"] == {}


def test_status_of_a_finished_run_with_quarantined_frames_exits_3(tmp_path):
    run = WorkflowRun(RunConfig.from_config(remote(tmp_path)))
    assert run.status(success=True)["exit_status"] == 0
    quarantine(run, "20140101-0000")
    status = run.status(success=True)
    assert status["exit_status"] == 3 and "1 frame(s) quarantined" in status["reason"]


def test_status_reads_each_series_acquisition_status(tmp_path):
    run = WorkflowRun(RunConfig.from_config(remote(tmp_path)))
    path = Path(run.output, "raw", SERIES, f"{SERIES}.status.json")
    path.parent.mkdir(parents=True)
    counts = {"expected": 120, "verified": 119, "missing": 0, "not_queried": 0}
    counts |= {"failed": 1, "pending": 0}
    doc = {
        "series": SERIES,
        "server": "jsoc",
        "start": None,
        "end": None,
        "cadence": "12m",
        "started": "x",
        "finished": "y",
        "complete": False,
        "error": None,
        "counts": counts,
        "failures": [],
        "gap_report": "g",
    }
    path.write_text(json.dumps(doc))
    status = run.status(success=False)
    assert status["acquisition"] == {SERIES: doc}
    assert status["reason"].startswith(f"{SERIES}: acquisition INCOMPLETE: 119/120 verified")


# ---------------------------------------------------------- acquisition options
def test_acquire_options_from_the_config_section_and_the_cli_names():
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    validate(config, schema=str(SCHEMA), set_default=True)
    options = acquire_options(config["jsoc"])
    assert options.jsoc.retries == 5 and options.jsoc.export_timeout == 21600
    assert options.max_per_request == AcquireOptions().max_per_request
    cli = acquire_options(
        {"retries": 2, "retry_wait": 0.5, "max_per_request": 7, "allow_hosts": ["a.org"]}
    )
    assert (cli.jsoc.retries, cli.jsoc.retry_wait) == (2, 0.5)
    assert cli.max_per_request == 7 and cli.allow_hosts == ("a.org",)
    assert acquire_options({"retries": None}) == AcquireOptions()  # None: the default
    with pytest.raises(ConfigError, match="unknown acquisition option.*retry_count"):
        acquire_options({"retry_count": 3})


def test_config_is_not_changed_by_the_checks(tmp_path):
    config = remote(tmp_path)
    before = copy.deepcopy(config)
    run = WorkflowRun(RunConfig.from_config(config))
    run.acquire_key(SERIES)
    run.range_plan(SERIES)
    assert config == before
