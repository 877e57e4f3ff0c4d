"""CPU speed of ``enhance predict`` with and without freed memory kept in the process.

:func:`enhance_hmi.heap.keep_freed_memory` is a process-wide malloc setting, so
the library never makes it: the entry points do. This benchmark checks that
the speed it buys reaches users through the command line. It cuts a centred
crop of a real JSOC full-disk magnetogram (header adjusted, so the crop is a
valid level-1.5 file), then runs ``python -m enhance_hmi predict`` on it with the
shipped weights on the CPU, alternating ``ENHANCE_KEEP_FREED_MEMORY=1`` and
``=0`` in fresh processes (the setting cannot be undone within one), and
reports the wall time of each run (``time.perf_counter`` around the
subprocess, Python start-up included) and the ratio of the medians,
all measured in this one run.

Run from the repository root::

    python bench/heap_cli.py --size 1024 --pairs 3 --json heap_cli.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from astropy.io import fits

from enhance_hmi.atomic import atomic_path
from enhance_hmi.provenance import provenance_record

ROOT = Path(__file__).resolve().parents[1]
FULLDISK = ROOT.parent / "shared" / "data" / "hmi" / "fulldisk"


def write_crop(source: Path, size: int, path: Path) -> Path:
    """A centred ``size`` x ``size`` crop of ``source`` (HDU 1), CRPIX shifted to match."""
    with fits.open(source) as hdus:
        hdu = hdus[1] if len(hdus) > 1 else hdus[0]
        data = np.asarray(hdu.data, dtype=np.float32)
        header = hdu.header.copy()
    ny, nx = data.shape
    y0, x0 = (ny - size) // 2, (nx - size) // 2
    header["CRPIX1"] = float(header["CRPIX1"]) - x0
    header["CRPIX2"] = float(header["CRPIX2"]) - y0
    for key in ("ZNAXIS1", "ZNAXIS2", "ZTILE1", "ZTILE2", "CHECKSUM", "DATASUM"):
        header.remove(key, ignore_missing=True)
    crop = np.ascontiguousarray(data[y0 : y0 + size, x0 : x0 + size])
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(crop, header=header)]).writeto(path)
    return path


def predict_seconds(crop: Path, output: Path, keep: bool, tile: int) -> float:
    """Wall seconds of one ``enhance predict`` process on ``crop``."""
    env = dict(os.environ, ENHANCE_KEEP_FREED_MEMORY="1" if keep else "0")
    output.unlink(missing_ok=True)
    command = [sys.executable, "-m", "enhance_hmi", "predict", str(crop), "-o", str(output)]
    command += ["--device", "cpu", "--tile", str(tile), "--compression", "none"]
    start = time.perf_counter()
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"enhance predict failed ({result.returncode}): {result.stderr.strip()}")
    return seconds


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", type=Path, default=None, help="JSOC full-disk FITS file")
    parser.add_argument("--size", type=int, default=1024, help="centred crop side in pixels")
    parser.add_argument("--tile", type=int, default=256, help="inference tile (as enhance)")
    parser.add_argument("--pairs", type=int, default=3, help="runs with and without, each")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = parser.parse_args(argv)
    source = args.input or next(iter(sorted(FULLDISK.glob("hmi.M_720s.*.fits"))), None)
    if source is None:
        sys.exit(f"no input FITS file (looked in {FULLDISK}); pass --input")
    times: dict[str, list[float]] = {"kept": [], "returned": []}
    with tempfile.TemporaryDirectory(prefix="enhance-heap-cli-") as work:
        crop = write_crop(source, args.size, Path(work) / "crop.fits")
        output = Path(work) / "crop.enhanced.fits"
        predict_seconds(crop, output, True, args.tile)  # warm the file cache and imports
        for _ in range(args.pairs):
            for keep in (True, False):
                seconds = predict_seconds(crop, output, keep, args.tile)
                times["kept" if keep else "returned"].append(seconds)
                print(f"freed memory {'kept    ' if keep else 'returned'} {seconds:7.2f} s")
    kept, returned = statistics.median(times["kept"]), statistics.median(times["returned"])
    result = {
        "benchmark": "heap_cli",
        "input": source.name,
        "size": args.size,
        "tile": args.tile,
        "seconds": times,
        "median_kept_s": kept,
        "median_returned_s": returned,
        "speedup_kept_over_returned": returned / kept,
        "provenance": provenance_record(),
    }
    print(
        f"enhance predict, {args.size}x{args.size} crop of {source.name}, CPU: median "
        f"{kept:.2f} s kept vs {returned:.2f} s returned -> {returned / kept:.3f}x"
    )
    if args.json:
        with atomic_path(args.json) as tmp:
            tmp.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")
    return result


if __name__ == "__main__":
    main()
