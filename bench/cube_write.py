"""HDF5 time-cube write throughput vs raw float32 numpy writes, same machine, same run.

An enhanced-like full-disk frame (2x HMI: off-disk NaN outside the solar
disk, a smooth field plus noise inside; magnetogram-like values in gauss)
is appended N times to a :class:`enhance_hmi.cube.TimeCube` with each codec, and
the same frames are written with ``numpy.ndarray.tofile`` + fsync as the raw
baseline. Prints MB/s (of raw float32 data) and the compressed size ratio
(raw bytes / file bytes); asserts nothing.

Run from the repository root::

    python bench/cube_write.py [--size 4096] [--frames 4]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from astropy.io import fits

from enhance_hmi.cube import Codec, TimeCube
from enhance_hmi.frame import Frame


def synthetic_frames(size: int, count: int, seed: int = 0) -> list[Frame]:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:size, :size]
    r = np.hypot(x - size / 2, y - size / 2) / (0.47 * size)
    base = (200 * np.sin(6 * x / size) * np.cos(5 * y / size)).astype(np.float32)
    frames = []
    for k in range(count):
        data = base + rng.normal(0, 10, (size, size)).astype(np.float32)  # ~10 G noise
        data[r > 1] = np.nan
        header = fits.Header()
        when = dt.datetime(2014, 1, 1) + dt.timedelta(minutes=12 * k)
        header["T_REC"] = when.strftime("%Y.%m.%d_%H:%M:%S_TAI")
        header["CDELT1"] = header["CDELT2"] = 0.252
        meta = {"input_sha256": f"{k:064d}", "weights_sha256": "0" * 64}
        frames.append(Frame(data=data, header=header, observable="magnetogram", meta=meta))
    return frames


def raw_write(frames: list[Frame], path: Path) -> float:
    t0 = time.perf_counter()
    with open(path, "wb") as fh:
        for frame in frames:
            frame.data.tofile(fh)
        fh.flush()
        os.fsync(fh.fileno())
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4096, help="frame side (px)")
    parser.add_argument("--frames", type=int, default=4)
    args = parser.parse_args()
    frames = synthetic_frames(args.size, args.frames)
    nbytes = sum(f.data.nbytes for f in frames)
    codecs = {
        "blosc2-zstd-1": Codec(compression="blosc2-zstd", level=1),
        "zstd-3": Codec(compression="zstd", level=3),
        "gzip-1": Codec(compression="gzip", level=1),
        "none": Codec(compression="none"),
        "blosc2-zstd-1 + 0.1 G quantisation": Codec(compression="blosc2-zstd", level=1, step=0.1),
        "zstd-3 + 0.1 G quantisation": Codec(compression="zstd", level=3, step=0.1),
    }
    print(f"{args.frames} frames of {args.size}^2 float32 = {nbytes / 1e6:.0f} MB per run")
    with tempfile.TemporaryDirectory(dir=".") as tmp:
        seconds = raw_write(frames, Path(tmp) / "raw.f32")
        print(f"{'raw numpy tofile + fsync':36s} {nbytes / 1e6 / seconds:8.0f} MB/s  ratio 1.00")
        for name, codec in codecs.items():
            path = Path(tmp) / f"{name.split()[0]}-{codec.step}.h5"
            t0 = time.perf_counter()
            # one append per frame, as a scheduled update extends a cube (a segment each time)
            for frame in frames:
                TimeCube(path, codec=codec).append([frame])
            seconds = time.perf_counter() - t0
            t1 = time.perf_counter()
            TimeCube(path.with_name("one-" + path.name), codec=codec).append(frames)
            one = time.perf_counter() - t1
            ratio = nbytes / path.stat().st_size
            print(
                f"{name:36s} {nbytes / 1e6 / one:8.0f} MB/s  ratio {ratio:.2f}  "
                f"(one append; {nbytes / 1e6 / seconds:.0f} MB/s appending frame by frame)"
            )


if __name__ == "__main__":
    main()
