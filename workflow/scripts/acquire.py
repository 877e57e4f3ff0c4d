"""Checkpoint ``acquire``: bring the raw archive up to date and plan the batches."""

import datetime as dt
import json
import logging
from pathlib import Path

from enhance.acquire import acquire, get_series, manifest_path, parse_time
from enhance.atomic import atomic_path
from enhance.cube import CubeLayout, plan_batches, read_manifest, write_plan
from enhance.errors import JsocError

snakemake = globals()["snakemake"]
logging.basicConfig(
    filename=snakemake.log[0], level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s"
)
p = snakemake.params
series = snakemake.wildcards.series
error = None
try:
    acquire(
        series=series,
        start=p.start,
        end=p.end,
        cadence=p.cadence,
        out_dir=p.raw_dir,
        server=p.source,
        quality_policy=p.quality_policy,
    )
except JsocError as exc:  # frames that failed every retry stay "failed": retried next run
    if not manifest_path(p.raw_dir, series).is_file():
        raise
    error = str(exc)
    logging.error("acquisition incomplete: %s", exc)
rows = read_manifest(manifest_path(p.raw_dir, series))
layout = CubeLayout(
    period=p.layout["period"],
    frames=p.layout["frames"],
    step=dt.timedelta(seconds=p.layout["step_seconds"]),
)
plan = plan_batches(
    rows,
    base_dir=p.raw_dir,
    layout=layout,
    frames_per_job=p.frames_per_job,
    start=parse_time(p.start) if p.start else None,
    end=parse_time(p.end) if p.end else None,
)
periods = write_plan(plan, p.plan_dir)
states = {}
for row in rows:
    states[row["state"]] = states.get(row["state"], 0) + 1
summary = {
    "series": series,
    "observable": get_series(series).observable,
    "source": p.source,
    "start": p.start,
    "end": p.end,
    "cadence": p.cadence,
    "frames": sum(len(b) for batches in plan.values() for b in batches),
    "periods": periods,
    "manifest_states": states,
    "acquire_error": error,
}
out = Path(snakemake.output[0])
for older in out.parent.glob("*.json"):  # earlier ranges: superseded by this one
    if older != out:
        older.unlink()
with atomic_path(out) as tmp:
    tmp.write_text(json.dumps(summary, indent=1) + "\n")
logging.info("%d frames to enhance in %d cube(s)", summary["frames"], len(periods))
