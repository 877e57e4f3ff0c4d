"""Records per second through query + export + download against the JSOC stand-in.

Starts the stand-in of ``tests/jsoc_standin.py`` on 127.0.0.1 (real HTTP,
real drms client, real FITS files: 32 x 32 crops with full real HMI headers,
~23 kB each), acquires N frames of hmi.M_720s at 12 min cadence into a
temporary directory, and prints the phase timings, records per second and the
manifest size. A second run over the same range shows the cost of a no-op
rerun (query + manifest only). One run, figures printed, nothing asserted.

    python bench/acquire_throughput.py [--frames 2000] [--per-request 500]
        [--concurrency 2] [--crop 32]
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from jsoc_standin import running_standin  # noqa: E402

from enhance_hmi.acquire import AcquireOptions, JsocOptions, acquire, manifest_path  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=2000)
    parser.add_argument("--per-request", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--crop", type=int, default=32)
    args = parser.parse_args()
    start = dt.datetime(2014, 1, 1)
    end = start + dt.timedelta(minutes=12 * (args.frames - 1))
    options = AcquireOptions(
        max_per_request=args.per_request,
        max_concurrent=args.concurrency,
        jsoc=JsocOptions(poll_interval=0.05, poll_max_interval=0.5, retry_wait=0.05),
    )
    with running_standin(crop=args.crop) as standin, tempfile.TemporaryDirectory() as tmp:
        standin.pending_polls = 1  # each export is pending once, as JSOC's usually are
        kwargs = dict(
            series="hmi.M_720s",
            start=start,
            end=end,
            cadence="12m",
            out_dir=tmp,
            server=standin.url,
            email="bench@example.org",
            options=options,
        )
        t0 = time.perf_counter()
        manifest = acquire(**kwargs)
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        acquire(**kwargs)
        second = time.perf_counter() - t0
        path = manifest_path(tmp, "hmi.M_720s")
        files = manifest.files()
        data_bytes = sum(p.stat().st_size for p in files)
        print(f"frames: {args.frames} (hmi.M_720s @ 12m), verified: {len(files)}")
        print(
            f"export requests: {standin.calls['exp_request']} of <= {args.per_request} "
            f"records, exp_status polls: {standin.calls['exp_status']}, "
            f"downloads: {sum(standin.downloads.values())}, concurrency {args.concurrency}"
        )
        print(
            f"first run: {first:.2f} s -> {args.frames / first:.0f} records/s "
            f"({data_bytes / first / 1e6:.1f} MB/s of FITS, {data_bytes / 1e6:.1f} MB)"
        )
        print(
            f"rerun over the same range (nothing to download): {second:.2f} s "
            f"-> {args.frames / second:.0f} records/s"
        )
        size = path.stat().st_size
        print(
            f"manifest: {size} bytes ({size / 1024:.0f} KiB), {size / args.frames:.0f} "
            f"bytes per frame, {len(manifest.frame.columns)} columns"
        )


if __name__ == "__main__":
    main()
