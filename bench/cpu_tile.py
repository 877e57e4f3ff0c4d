"""Which inference tile is fastest for a real full disk on the CPU, and what memory it takes.

For each tile side asked for, a fresh process enhances one real 4096x4096
magnetogram of ``../shared/data/hmi/fulldisk`` with the shipped weights
(sigma head on, the projection off: the network's windows only, the stage
the tile changes) and reports the wall time of the forward passes, the
windows computed and the process's peak RSS. Larger tiles waste less on the
overlap (the network's receptive radius at every cut edge) and cost more
memory per window. The ratios are measured in one run, against the
fastest tile of that run.

Run from the repository root (about 2 minutes a tile on 2 cores)::

    python bench/cpu_tile.py --tiles 256 512 768 --json bench/out/cpu_tile.json
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from pathlib import Path

from enhance_hmi.atomic import write_json

ROOT = Path(__file__).resolve().parents[1]
FULLDISK = ROOT.parent / "shared" / "data" / "hmi" / "fulldisk"
FRAME = FULLDISK / "hmi.M_720s.20160707_010000_TAI.magnetogram.fits"


def one_tile(path: Path, tile: int) -> dict:
    """Enhance ``path`` with ``tile`` in this process: seconds, windows, peak RSS."""
    from enhance_hmi.heap import keep_freed_memory
    from enhance_hmi.inference import InferenceTimings, enhance_frame
    from enhance_hmi.io import read_hmi

    keep_freed_memory()  # as the command line and the batch jobs run
    frame = read_hmi(path)
    timings = InferenceTimings()
    enhance_frame(
        frame, device="cpu", tile=tile, consistency=False, uncertainty=False, timings=timings
    )
    return {
        "tile": tile,
        "network_s": timings.h2d_s + timings.compute_s + timings.d2h_s,
        "windows": timings.windows,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiles", type=int, nargs="+", default=[256, 512, 768])
    parser.add_argument("--frame", type=Path, default=FRAME)
    parser.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, default=None, help="write the records here")
    args = parser.parse_args(argv)
    if args.one is not None:  # the child process of one tile
        print(json.dumps(one_tile(args.frame, args.one)))
        return []
    records = []
    for tile in args.tiles:
        child = [sys.executable, __file__, "--frame", str(args.frame), "--one", str(tile)]
        done = subprocess.run(child, capture_output=True, text=True, check=True)
        records.append(json.loads(done.stdout.strip().splitlines()[-1]))
    fastest = min(r["network_s"] for r in records)
    for r in records:
        r["slower_than_fastest"] = r["network_s"] / fastest
        print(
            f"tile {r['tile']}: network {r['network_s']:.1f} s ({r['slower_than_fastest']:.2f}x "
            f"the fastest), {r['windows']} windows, peak RSS {r['peak_rss_mib']:.0f} MiB",
            flush=True,
        )
    if args.json:
        write_json(args.json, records, indent=1)
    return records


if __name__ == "__main__":
    main()
