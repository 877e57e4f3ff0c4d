"""Peak memory of planning a long range: query (manifest, gap report) and batch plan.

Against the JSOC stand-in (tests/jsoc_standin.py, run in its own process so
its memory is not counted), for ``--years`` of one series at its native
cadence (16 years of hmi.Ic_45s is ~11.2 million slots):

1. ``query``: ``acquire(download=False)`` over the whole range, exactly as
   the workflow's checkpoint and ``enhance fetch --query-only`` run it: the
   query window by window, the manifest, the gap report and the status file;
2. ``plan``: every row then marked verified (in SQL, so the setup costs no
   Python memory) and planned as the checkpoint plans it: the range's
   batches from the grid (``range_batches``) and one plan file per batch
   (``write_plan_streamed``).

Each step runs in a fresh process; its peak resident memory
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``) and wall time are printed.
``--package DIR`` runs the query step with another checkout's ``enhance``
(e.g. an older commit extracted with ``git archive``) for comparison.

Run from the repository root::

    python bench/plan_memory.py --years 16 --work /tmp/plan-bench

Measured on the 2-core reference machine (shared with other work), hmi.Ic_45s
from 2010.05.01, every slot a record:

======================  ==========  =============  ========
code                    slots       peak RSS       time
======================  ==========  =============  ========
before (CSV manifest)   70 128      293.8 MiB      36 s
before (CSV manifest)   140 256     500.3 MiB      68 s
streamed (SQLite)       70 128      114.2 MiB      12 s
streamed (SQLite)       11 220 480  115.7 MiB      1933 s
======================  ==========  =============  ========

Before: about 3.0 KB per extra slot (16 years: ~33 GB). Streamed: flat; the
16-year query left a 3.5 GB SQLite manifest, a 3.0 GB CSV copy and a 0.6 GB
gap CSV. The plan step of that range stayed at 127-130 MiB resident while
it wrote the first 167 711 of its 228 000 batch files in 38 minutes (one
atomic, fsynced file each) and was stopped there, out of time.

Remeasured with the plan files fsynced together at the end and each row
parsed once (load average 5-16 from other work, so times are upper bounds):

==========================================  ==========  =========  ==========
step                                        slots       peak RSS   time
==========================================  ==========  =========  ==========
query, hmi.M_720s, 100 years                4 383 000   116.7 MiB  3943 s
plan, hmi.Ic_45s, 16 years (227 916 files)  11 220 480  180.6 MiB  1797 s
==========================================  ==========  =========  ==========

The 16-year plan ran with ``--plan-only`` on a manifest of 11 220 480
verified rows in the acquisition's SQLite schema, built by SQL, because
the 16-year query (118.6 MB resident after 10.1 million slots) had to be
stopped to leave the CPU to the plan. The plan's memory grows with its
batch list only: about 250 bytes per batch (126 MiB for 143 batches).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

_STANDIN = """
import sys, threading
sys.path.insert(0, {tests!r})
from jsoc_standin import JsocStandin
JsocStandin(port={port}).start()
print("ready", flush=True)
threading.Event().wait()
"""

_QUERY = """
import datetime as dt, json, resource, sys, time
from enhance_hmi.acquire import AcquireOptions, JsocOptions, acquire
t0 = time.perf_counter()
manifest = acquire(
    series={series!r}, start={start!r}, end={end!r}, cadence={cadence!r},
    out_dir={out!r}, server={url!r}, download=False,
    options=AcquireOptions(jsoc=JsocOptions(retries=3, retry_wait=0.1)),
)
report = manifest.report
counts = getattr(report, "counts", None) or {{"missing": len(report.missing)}}
print(json.dumps({{
    "step": "query", "slots": report.expected, "present": report.present,
    "missing": counts["missing"], "seconds": round(time.perf_counter() - t0, 1),
    "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
}}))
"""

_PLAN = """
import datetime as dt, json, os, resource, sqlite3, time
from enhance_hmi.acquire import Manifest, get_series
from enhance_hmi.acquire.timespec import snap_up
from enhance_hmi.cube import CubeLayout
from enhance_hmi.cube.plan import range_batches, write_plan_streamed
from enhance_hmi.time import tai_datetime
db = sqlite3.connect({db!r})
db.execute(
    "UPDATE rows SET state = 'verified', file = t_rec || '.fits' "
    "WHERE state NOT IN ('missing', 'verified')"
)
db.commit()
db.close()
t0 = time.perf_counter()
series = get_series({series!r})
layout = CubeLayout(period="day", step=dt.timedelta(seconds={step}))
start, end = tai_datetime({start!r}), tai_datetime({end!r})
batches = range_batches(layout, snap_up(start, series), end, {per_job})
manifest = Manifest.load({csv!r}, {series!r})
index = write_plan_streamed(
    iter(manifest), base_dir={out!r}, layout=layout, frames_per_job={per_job},
    plan_dir={plan!r}, start=start, end=end, batches=batches,
)
print(json.dumps({{
    "step": "plan", "periods": len(index), "batches": sum(len(v) for v in index.values()),
    "files": len(os.listdir({plan!r})), "seconds": round(time.perf_counter() - t0, 1),
    "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
}}))
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def child(code: str, package: Path | None = None) -> dict:
    env = dict(os.environ)
    if package is not None:
        env["PYTHONPATH"] = str(package)
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd="/"
    )
    if proc.returncode:
        raise SystemExit(proc.stdout[-3000:] + proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--years", type=float, default=16.0)
    parser.add_argument("--series", default="hmi.Ic_45s")
    parser.add_argument("--frames-per-job", type=int, default=50)
    parser.add_argument("--work", type=Path, default=Path("/tmp/plan-bench"))
    parser.add_argument("--package", type=Path, help="run the query with this enhance checkout")
    parser.add_argument("--skip-plan", action="store_true")
    parser.add_argument(
        "--plan-only",
        action="store_true",
        help="plan (twice: a first plan, then a rerun) the manifest an earlier run left in --work",
    )
    args = parser.parse_args()

    sys.path.insert(0, str(REPO))
    from enhance_hmi.acquire import get_series

    series = get_series(args.series)
    step = int(series.step.total_seconds())
    start = "2010.05.01_00:00:00_TAI"
    slots = int(args.years * 365.25 * 86400 / step)
    import datetime as dt

    end_time = dt.datetime(2010, 5, 1) + dt.timedelta(seconds=step * (slots - 1))
    end = end_time.strftime("%Y.%m.%d_%H:%M:%S_TAI")
    out = args.work / "raw"
    t0 = time.perf_counter()
    if not args.plan_only:
        shutil.rmtree(args.work, ignore_errors=True)
        out.mkdir(parents=True)
        query_step(args, start, end, step, slots, out)
    if args.skip_plan or args.package is not None:
        return
    csv_path = out / f"{args.series}.manifest.csv"
    if args.plan_only:
        shutil.rmtree(args.work / "plan", ignore_errors=True)
    for step_name in ("plan", "replan"):
        plan = child(
            _PLAN.format(
                db=str(csv_path.with_suffix(".sqlite")),
                csv=str(csv_path),
                series=args.series,
                step=step,
                start=start,
                end=end,
                per_job=args.frames_per_job,
                out=str(out),
                plan=str(args.work / "plan"),
            )
        )
        plan["step"] = step_name
        print(json.dumps(plan), flush=True)
    sizes = {p.name: p.stat().st_size for p in out.iterdir()}
    print(json.dumps({"files_mib": {k: round(v / 2**20, 1) for k, v in sizes.items()}}))
    print(f"total {time.perf_counter() - t0:.0f} s")


def query_step(args: argparse.Namespace, start: str, end: str, step: int, slots: int, out: Path):
    """Run the query step against a stand-in in its own process; print its figures."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-c", _STANDIN.format(tests=str(REPO / "tests"), port=port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout.readline().strip() == "ready"
        print(f"{args.series} {start} .. {end}: {slots} slots at {step} s", flush=True)
        query = child(
            _QUERY.format(
                series=args.series,
                start=start,
                end=end,
                cadence=f"{step}s",
                out=str(out),
                url=f"http://127.0.0.1:{port}/",
            ),
            args.package,
        )
        query["per_slot_bytes"] = round(query["peak_rss_mib"] * 2**20 / max(1, query["slots"]))
        print(json.dumps(query), flush=True)
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
