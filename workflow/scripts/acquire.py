"""Checkpoint ``acquire``: bring the raw archive up to date and plan the batches.

A query that did not cover the whole range fails the job (no summary, so the
next run tries again). Files that failed every attempt or exports still
pending are recorded in a summary marked incomplete: the verified frames are
planned and processed, and ``acquisition_complete`` fails the run.

Quarantined frames (enhance_hmi.workflow.quarantine) are fetched again; the marker
of a batch whose quarantined frame now has other bytes is removed, so the
batch runs again and tries it.
"""

import datetime as dt
import json
import logging
import sys
from pathlib import Path

from enhance_hmi.acquire import (
    Manifest,
    acquire,
    acquire_options,
    get_series,
    manifest_path,
    read_status,
)
from enhance_hmi.acquire.manifest import NEEDS_EXPORT
from enhance_hmi.acquire.status import status_path
from enhance_hmi.atomic import atomic_path
from enhance_hmi.cube import CubeLayout
from enhance_hmi.cube.plan import batch_of, write_plan_streamed
from enhance_hmi.errors import EnhanceError
from enhance_hmi.time import tai_datetime
from enhance_hmi.workflow.quarantine import (
    drop_unplanned,
    read_quarantine,
    rerun_batches,
    retry_batches,
)
from enhance_hmi.workflow.run_status import clear_job_failure, record_job_failure

snakemake = globals()["snakemake"]
logging.basicConfig(
    filename=snakemake.log[0], level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s"
)
p = snakemake.params
series = snakemake.wildcards.series
error = None
status_path(p.raw_dir, series).unlink(missing_ok=True)  # only this run's status counts
quarantined = [entry.t_rec for entry in read_quarantine(p.out_dir, series)]
try:
    acquire(
        series=series,
        start=p.start,
        end=p.end,
        cadence=p.cadence,
        out_dir=p.raw_dir,
        server=p.source,
        quality_policy=p.quality_policy,
        options=acquire_options(p.jsoc),
        refetch=quarantined,
    )
except EnhanceError as exc:
    error = " ".join(str(exc).split())
    logging.error("acquisition failed: %s", error)
    status = status_path(p.raw_dir, series)
    queried = status.is_file() and read_status(status).counts["not_queried"] == 0
    if not queried or not manifest_path(p.raw_dir, series).is_file():
        # the range is not known: plan nothing, write no summary (a rerun retries)
        record_job_failure(p.out_dir, "acquire", series, error)
        print(f"enhance: {series}: acquisition failed: {error}", file=sys.stderr)
        sys.exit(1)
status = read_status(status_path(p.raw_dir, series))
manifest = Manifest.load(manifest_path(p.raw_dir, series), series)
layout = CubeLayout(
    period=p.layout["period"],
    frames=p.layout["frames"],
    step=dt.timedelta(seconds=p.layout["step_seconds"]),
)
start = tai_datetime(p.start) if p.start else None
end = tai_datetime(p.end) if p.end else None
periods = write_plan_streamed(
    iter(manifest),  # streamed in time order: one period in memory at a time
    base_dir=p.raw_dir,
    layout=layout,
    frames_per_job=p.frames_per_job,
    plan_dir=p.plan_dir,
    start=start,
    end=end,
    batches=p.batches,
)
planned = {batch for batches in periods.values() for batch in batches}
for entry in drop_unplanned(p.out_dir, series, planned):  # a new range or layout
    logging.info("%s: its batch is no longer planned; taken out of the quarantine", entry.t_rec)
now_sha256 = {}
for t_rec in quarantined:  # what the acquisition now holds for each quarantined frame
    row = manifest.get(t_rec)
    if row is not None and row["state"] == "verified":
        now_sha256[t_rec] = row["sha256"]
retried = rerun_batches(p.out_dir, series, retry_batches(p.out_dir, series, now_sha256))
for plan in retried:
    logging.info("batch %s holds a quarantined frame whose input changed: it runs again", plan.stem)
frames = 0
filled = set()
open_batches = set()
for row in manifest:
    when = tai_datetime(row["t_rec"])
    if (start is not None and when < start) or (end is not None and when > end):
        continue
    if row["state"] == "verified" and row["file"]:
        frames += 1
        filled.add(layout.period_of(when))
    elif row["state"] in NEEDS_EXPORT:  # its batch changes when a rerun fetches it
        open_batches.add(batch_of(layout, when, p.frames_per_job)[1])
summary = {
    "series": series,
    "observable": get_series(series).observable,
    "source": p.source,
    "start": p.start,
    "end": p.end,
    "cadence": p.cadence,
    "frames": frames,
    "periods": periods,
    "filled_periods": sorted(filled),
    "open_batches": sorted(open_batches),
    "manifest_states": {k: v for k, v in manifest.counts().items() if v},
    "complete": error is None and status.complete,
    "acquire_error": error,
    "status_line": status.summary_line(),
}
out = Path(snakemake.output[0])
for older in [*out.parent.glob("*.json"), *out.parent.glob("*.complete")]:
    if older != out:  # earlier ranges and attempts: superseded by this one
        older.unlink()
with atomic_path(out) as tmp:
    tmp.write_text(json.dumps(summary, indent=1) + "\n")
clear_job_failure(p.out_dir, "acquire", series)
logging.info("%d frames to enhance in %d cube(s)", summary["frames"], len(periods))
