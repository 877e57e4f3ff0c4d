"""Storage per enhanced full-disk frame in an HDF5 time cube, from real products.

Reads enhanced FITS frames (``enhance predict`` output, e.g. of a real JSOC
4096x4096 magnetogram: 8192x8192 float32, 256 MiB raw, off-disk NaN) with
:func:`enhance_hmi.cube.source.read_enhanced`, appends them to a
:class:`enhance_hmi.cube.TimeCube` with each codec, and prints MiB per frame and
the ratio to raw float32. Use it for the planning table of the README
(storage for a date range = frames x MiB/frame). Asserts nothing.

Run from the repository root::

    python bench/cube_storage.py out1.fits [out2.fits ...] [--json storage.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from enhance_hmi.cube import Codec, TimeCube
from enhance_hmi.cube.source import read_enhanced

CODECS = {
    "blosc2-zstd-1 (default)": Codec(compression="blosc2-zstd", level=1),
    "gzip-1 (plain h5py)": Codec(compression="gzip", level=1),
    "blosc2-zstd-1 + 0.1 G quantisation": Codec(compression="blosc2-zstd", level=1, step=0.1),
    "none": Codec(compression="none"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("frames", nargs="+", type=Path, help="enhanced FITS frames")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    frames = [read_enhanced(p) for p in args.frames]
    raw = sum(f.data.nbytes for f in frames)
    magnetogram = all(f.observable == "magnetogram" for f in frames)
    rows = {}
    print(
        f"{len(frames)} frame(s) of {frames[0].data.shape}, raw {raw / len(frames) / 2**20:.0f} MiB"
    )
    with tempfile.TemporaryDirectory(dir=".") as tmp:
        for name, codec in CODECS.items():
            if codec.step and not magnetogram:
                continue
            path = Path(tmp) / f"{len(rows)}.h5"
            t0 = time.perf_counter()
            TimeCube(path, codec=codec).append(frames)
            seconds = time.perf_counter() - t0
            size = path.stat().st_size
            rows[name] = {
                "mib_per_frame": size / len(frames) / 2**20,
                "ratio": raw / size,
                "mb_per_s": raw / 1e6 / seconds,
            }
            r = rows[name]
            print(
                f"{name:36s} {r['mib_per_frame']:8.1f} MiB/frame  ratio {r['ratio']:5.2f}  "
                f"{r['mb_per_s']:6.0f} MB/s"
            )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
