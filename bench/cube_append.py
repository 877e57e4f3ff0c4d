"""Bytes written to append one frame to an HDF5 time cube, as the cube grows.

Appends enhanced-like frames one at a time to a :class:`enhance_hmi.cube.TimeCube`
(the workflow's worst case: one new frame per scheduled update) and, at the
chosen cube lengths, reports what the append wrote:

- ``wchar``: bytes this process passed to write()/sendfile/copy_file_range
  (``/proc/self/io``), so a copy of the cube counts in full;
- ``write_bytes``: bytes this process sent to the storage layer (page cache
  accounting, same file);
- the size of the new segment file(s) and of the root (index) file, and
  whether any stored segment file changed (inode, size or mtime): nothing
  stored may be rewritten or copied.

After the last checkpoint it reads every frame back, through
:meth:`TimeCube.read_frame` (one call per frame) and through plain h5py
(``/data``, 16 frames a read), and prints the seconds.

Prints one row per checkpoint and the ratio of the bytes to append one frame
at the last checkpoint to those at the first (acceptance: <= 1.5 from 10 to
200 frames). Asserts nothing. The frames are synthetic (off-disk NaN, smooth
field plus ~10 G noise, as in ``bench/cube_write.py``); their compressed size
sets the per-frame cost.

Run from the repository root (needs ``size``^2 x 4 x frames bytes of disk)::

    python bench/cube_append.py [--size 2048] [--at 10 200] [--json out.json]

It uses only ``TimeCube(path).append``, so the same script measures another
version of the package (``PYTHONPATH=<old checkout>``).

Measured on the 2-core reference machine (load average ~5-16 from other
work, so the read times are noisy), before = commit ``f924e34`` (an index
rewritten by every append), after = the root with a printf-mapped tail:

=====  ======  =====================  ==========  ==========  ===============
size   code    wchar at 10 / at 200   ratio       index/root  full read (TimeCube, h5py)
=====  ======  =====================  ==========  ==========  ===============
256    before  195 780 / 377 699      1.929       27-209 KB   19.0 s, 3.2 s
256    after   172 180 / 172 131      1.000       27 KB       18.1 s, 3.5 s
2048   before  9 018 312 / 9 200 349  1.020       27-209 KB   72.0 s, 143.0 s
2048   after   8 994 944 / 8 995 013  1.000       27 KB       64.1 s, 37.1 s
=====  ======  =====================  ==========  ==========  ===============

No stored file changed in any append, before or after.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from astropy.io import fits

from enhance_hmi.cube import TimeCube
from enhance_hmi.frame import Frame


def io_counters() -> dict[str, int]:
    text = Path("/proc/self/io").read_text()
    return {k: int(v) for k, v in (line.split(": ") for line in text.splitlines())}


def frame(size: int, k: int, base: np.ndarray, disk: np.ndarray) -> Frame:
    rng = np.random.default_rng(k)
    data = base + rng.normal(0, 10, (size, size)).astype(np.float32)  # ~10 G noise
    data[~disk] = np.nan
    when = dt.datetime(2014, 1, 1) + dt.timedelta(seconds=45 * k)
    header = fits.Header()
    header["T_REC"] = when.strftime("%Y.%m.%d_%H:%M:%S_TAI")
    header["CDELT1"] = header["CDELT2"] = 0.252
    meta = {"input_sha256": f"{k:064d}", "weights_sha256": "0" * 64, "input_file": f"f{k}.fits"}
    return Frame(data=data, header=header, observable="magnetogram", meta=meta)


def stored(folder: Path) -> dict[str, tuple[int, int, int]]:
    """Inode, size and mtime of every file under ``folder`` (any layout version)."""
    if not folder.is_dir():
        return {}
    return {
        str(p.relative_to(folder)): (p.stat().st_ino, p.stat().st_size, p.stat().st_mtime_ns)
        for p in folder.rglob("*")
        if p.is_file()
    }


def full_read(path: Path) -> dict[str, float]:
    """Seconds to read every frame back: through TimeCube, and through plain h5py."""
    import h5py

    cube = TimeCube(path)
    t0 = time.perf_counter()
    count = len(cube.times())
    for index in range(count):
        cube.read_frame(index)
    t1 = time.perf_counter()
    with h5py.File(path, "r") as handle:
        data = handle["data"]
        for start in range(0, data.shape[0], 16):  # a few frames per read (open-file limit)
            data[start : start + 16]
    t2 = time.perf_counter()
    return {"frames": count, "timecube_s": round(t1 - t0, 2), "h5py_s": round(t2 - t1, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=2048, help="frame side (px)")
    parser.add_argument("--at", type=int, nargs="+", default=[10, 200], help="cube lengths")
    parser.add_argument("--dir", type=Path, default=Path("."), help="where to build the cube")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    at = sorted(set(args.at))
    y, x = np.mgrid[: args.size, : args.size]
    disk = np.hypot(x - args.size / 2, y - args.size / 2) <= 0.47 * args.size
    base = (200 * np.sin(6 * x / args.size) * np.cos(5 * y / args.size)).astype(np.float32)
    raw = args.size**2 * 4 / 2**20
    print(f"frames of {args.size}^2 float32 ({raw:.1f} MiB raw), one per append")
    print(
        f"{'frames':>6} {'wchar':>12} {'write_bytes':>12} {'segment':>12} {'index':>10} "
        f"{'stored files changed':>21}"
    )
    rows = []
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        cube = TimeCube(Path(tmp) / "day.h5")
        folder = cube.path.with_name(cube.path.name + ".segments")
        for k in range(at[-1]):
            new = frame(args.size, k, base, disk)
            before, old = io_counters(), stored(folder)
            cube.append([new])
            after, now = io_counters(), stored(folder)
            if k + 1 not in at:
                continue
            changed = sum(now.get(name) != state for name, state in old.items())
            added = [folder / name for name in set(now) - set(old)]
            row = {
                "frames": k + 1,
                "wchar": after["wchar"] - before["wchar"],
                "write_bytes": after["write_bytes"] - before["write_bytes"],
                "segment_bytes": sum(p.stat().st_size for p in added),
                "index_bytes": cube.path.stat().st_size,
                "stored_files_changed": changed,
            }
            rows.append(row)
            print(
                f"{row['frames']:6d} {row['wchar']:12,d} {row['write_bytes']:12,d} "
                f"{row['segment_bytes']:12,d} {row['index_bytes']:10,d} {changed:21d}"
            )
        reads = full_read(cube.path)
    print(
        f"full read of {reads['frames']} frames: TimeCube.read_frame {reads['timecube_s']} s, "
        f"h5py /data 16 frames a read {reads['h5py_s']} s"
    )
    ratio = rows[-1]["wchar"] / rows[0]["wchar"]
    print(
        f"bytes to append one frame at {rows[-1]['frames']} frames / at {rows[0]['frames']}: "
        f"{ratio:.3f} (wchar)"
    )
    if args.json:
        summary = {"size": args.size, "rows": rows, "ratio_wchar": ratio, "read": reads}
        args.json.write_text(json.dumps(summary, indent=1) + "\n")


if __name__ == "__main__":
    main()
