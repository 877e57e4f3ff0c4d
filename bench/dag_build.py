"""Dry-run DAG build time of the workflow for a one-year range, no network.

For hmi.M_720s at 12 min (~43 800 frames) and hmi.Ic_45s at 45 s (~700 000
frames), a synthetic acquisition manifest (every slot verified) is planned
exactly as the ``acquire`` checkpoint does (batches of ``frames_per_job``,
one cube per day), the checkpoint's summary is put in place, and
``snakemake -n`` is timed building the whole DAG (all batches, cubes and
report jobs). Prints the figures; asserts nothing.

Run from the repository root::

    python bench/dag_build.py [--frames-per-job 50] [--series hmi.M_720s hmi.Ic_45s]
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from enhance_hmi.acquire import COLUMNS
from enhance_hmi.cube import CubeLayout, plan_batches, write_plan

REPO = Path(__file__).resolve().parents[1]
CADENCE = {"hmi.M_720s": "12m", "hmi.Ic_45s": "45s"}


def snakemake_dry(workdir: Path, config: Path, *, quiet: bool = True) -> tuple[float, str]:
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "workflow" / "Snakefile")]
    cmd += ["-d", str(workdir), "--configfile", str(config), "-n", "--cores", "2"]
    cmd += ["--quiet", "rules"] if quiet else []
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(proc.stdout[-3000:] + proc.stderr[-3000:])
    return elapsed, proc.stdout + proc.stderr


def bench(series: str, frames_per_job: int, root: Path) -> None:
    work = root / series
    archive = work / "archive"
    archive.mkdir(parents=True)
    start, end = dt.datetime(2014, 1, 1), dt.datetime(2014, 12, 31, 23, 59, 59)
    config = work / "config.yaml"
    cfg = {
        "source": str(archive),
        "series": [series],
        "start": start.isoformat(),
        "end": end.isoformat(),
        "cadence": CADENCE[series],
        "enhance": {"frames_per_job": frames_per_job},
        "output": "out",
    }
    config.write_text(yaml.safe_dump(cfg))
    # 1. the checkpoint's output path (its key) from a first dry run
    _, text = snakemake_dry(work, config, quiet=False)
    key_path = re.search(r"out/acquire/\S+\.json", text)
    if key_path is None:
        raise SystemExit(f"no acquire job in the dry run:\n{text[-2000:]}")
    # 2. a synthetic manifest, planned as the checkpoint does
    step = dt.timedelta(seconds=720 if series == "hmi.M_720s" else 45)
    raw = work / "out" / "raw" / series
    raw.mkdir(parents=True)
    t0 = time.perf_counter()
    rows, when = [], start
    while when <= end:
        name = f"{series}.{when:%Y%m%d_%H%M%S}_TAI.fits"
        rows.append({"t_rec": when.strftime("%Y.%m.%d_%H:%M:%S_TAI"), "series": series})
        rows[-1].update(state="verified", file=name, sha256="0" * 64, quality="0x00000000")
        when += step
    with open(raw / f"{series}.manifest.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS, restval="")
        writer.writeheader()
        writer.writerows(rows)
    layout = CubeLayout(period="day", step=step)
    plan = plan_batches(rows, base_dir=raw, layout=layout, frames_per_job=frames_per_job)
    periods = write_plan(plan, work / "out" / "plan" / series)
    plan_s = time.perf_counter() - t0
    summary = {"series": series, "start": cfg["start"], "end": cfg["end"], "periods": periods}
    summary_path = work / key_path.group(0)
    summary_path.parent.mkdir(parents=True, exist_ok=True)
    summary_path.write_text(json.dumps(summary))
    # 3. the full DAG
    elapsed, text = snakemake_dry(work, config)
    jobs = re.search(r"^total\s+(\d+)", text, re.MULTILINE)
    batches = sum(len(b) for b in periods.values())
    print(
        f"{series}: {len(rows)} frames, {batches} batches of <= {frames_per_job}, "
        f"{len(periods)} cubes -> {jobs.group(1) if jobs else '?'} jobs; "
        f"planning {plan_s:.1f} s, dry-run DAG build {elapsed:.1f} s (incl. snakemake start-up)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames-per-job", type=int, default=50)
    parser.add_argument("--series", nargs="+", default=list(CADENCE))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        empty = Path(tmp) / "empty"
        empty.mkdir()
        cfg = Path(tmp) / "c.yaml"
        cfg.write_text(yaml.safe_dump({"source": str(empty), "output": "o"}))
        baseline, _ = snakemake_dry(empty, cfg)
        print(f"snakemake start-up + trivial dry run: {baseline:.1f} s")
        for series in args.series:
            bench(series, args.frames_per_job, Path(tmp))


if __name__ == "__main__":
    main()
