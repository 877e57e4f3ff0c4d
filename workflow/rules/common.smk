# Configuration (the schema with its defaults, then the checks of
# enhance_hmi.workflow.run_config) and the input functions. The run's state
# (acquisition keys, the range's plan, open batches, status.json) is plain
# Python in enhance_hmi.workflow.run_state, computed once per run.

import json
import sys
from pathlib import Path

from snakemake.utils import validate

import enhance_hmi.acquire as acquisition
from enhance_hmi.errors import ConfigError
from enhance_hmi.workflow.run_config import RunConfig, times_as_text
from enhance_hmi.workflow.run_state import WorkflowRun
from enhance_hmi.workflow.run_status import write_run_status

times_as_text(config)  # YAML reads an unquoted 2014-01-01 as a date
validate(config, schema="../schemas/config.schema.yaml")
RUN_CONFIG = RunConfig.from_config(config)  # ConfigError: one line on what to fix
# a job started for a scheduler takes the acquisition key the scheduler chose
RUN = WorkflowRun(RUN_CONFIG, job=workflow.remote_exec or workflow.subprocess_exec)

OUT = RUN_CONFIG.output
SERIES = RUN_CONFIG.series
SOURCE = RUN_CONFIG.source
CUBE_OUT_OF_TOLERANCE = RUN_CONFIG.out_of_tolerance
CONFIG_SHA256 = RUN_CONFIG.sha256


wildcard_constraints:
    series=r"hmi\.[A-Za-z_]+_[0-9]+s",
    key=r"[0-9a-f]{12}(-r[0-9]+)?",
    batch=r"[0-9_]+-[0-9]{4}",
    period=r"[0-9_]+",


resolved_end = RUN.resolved_end
range_plan = RUN.range_plan
acquire_key = RUN.acquire_key
layout_params = RUN_CONFIG.layout_params
input_noise_for = RUN_CONFIG.input_noise_for
weights_for = RUN_CONFIG.weights_for


def acquire_output(series):
    """The checkpoint's summary file of ``series`` (after it has run)."""
    return checkpoints.acquire.get(series=series, key=acquire_key(series)).output[0]


def acquire_summary(series):
    return json.loads(Path(acquire_output(series)).read_text())


def series_periods(series):
    """Every period (cube) of ``series`` with its batch ids."""
    planned = range_plan(series)
    return planned if planned is not None else acquire_summary(series)["periods"]


def batch_plan(wildcards):
    """The plan file of one batch, waiting for the checkpoint whenever it may change."""
    if not RUN.batch_settled(wildcards.series, wildcards.batch):
        acquire_output(wildcards.series)  # IncompleteCheckpointException until it ran
    return str(RUN.plan_file(wildcards.series, wildcards.batch))


def cube_batches(wildcards):
    """Batch markers of the frames of one cube."""
    return [
        f"{OUT}/enhanced/{wildcards.series}/batches/{batch}.json"
        for batch in series_periods(wildcards.series)[wildcards.period]
    ]


def series_cubes(series):
    return [f"{OUT}/cubes/{series}/{period}.json" for period in series_periods(series)]


def report_inputs(wildcards):
    """Acquisition summary and the cubes that hold frames (read after the checkpoint)."""
    summary = acquire_summary(wildcards.series)
    return {
        "summary": acquire_output(wildcards.series),
        "cubes": [
            f"{OUT}/cubes/{wildcards.series}/{period}.json"
            for period in summary["filled_periods"]
        ],
    }


def acquisition_check(series):
    """The marker of a complete acquisition (its rule fails while one is incomplete)."""
    return f"{OUT}/acquire/{series}/{acquire_key(series)}.complete"


def all_targets(wildcards):
    targets = []
    for series in SERIES:
        targets.append(acquisition_check(series))
        targets += series_cubes(series)
        targets.append(f"{OUT}/report/{series}/frames.csv")
        targets.append(f"{OUT}/report/{series}/validation.json")
    return targets + TWIN_TARGETS  # twins added to a finished run are still built


def finish_run(success, log):
    """Write ``<output>/status.json``, print its one-line summary, end with its exit status.

    A run that finished every job but holds quarantined frames exits with
    ``QUARANTINE_EXIT_STATUS`` (3) instead of 0, so cron sees it.
    """
    status = RUN.status(success=success, logs=log)
    print(write_run_status(status, OUT), file=sys.stderr)
    if success and status["exit_status"]:
        sys.exit(status["exit_status"])
