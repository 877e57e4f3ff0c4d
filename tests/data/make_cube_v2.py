"""Regenerate ``cube_v2.h5`` and ``cube_v2.h5.segments/``: a layout-version-2 time cube.

Version 2 cubes were written by enhance up to commit ``f924e34``: an index
file, rewritten by every append, listing segment files (one per append) in
the folder beside it. This script exports that commit's ``enhance`` package
with ``git archive`` into a temporary folder and runs its
:class:`TimeCube`, in two appends, on two frames made from the committed
crop128 magnetogram (``T_REC`` 2011-12-17 06:00 and 06:24 TAI, the second
one offset by +2 G), with Blosc2-zstd and a 0.1 G quantisation step.

Run from the repository root: ``python tests/data/make_cube_v2.py``.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
COMMIT = "f924e34"
BUILD = """
import sys
import numpy as np
from enhance.cube import Codec, TimeCube
from enhance.frame import Frame
from enhance.io import read_hmi

base = read_hmi(sys.argv[1])
codec = Codec(compression="blosc2-zstd", level=1, step=0.1)
for k, t_rec in ((0, "2011.12.17_06:00:00_TAI"), (2, "2011.12.17_06:24:00_TAI")):
    header = base.header.copy()
    header["T_REC"] = t_rec
    meta = {"t_rec": t_rec, "input_file": f"in{k}.fits", "input_sha256": str(k) * 64,
            "weights_sha256": "a" * 64, "psf_model": "wachter"}
    data = (base.data + k).astype(np.float32)
    frame = Frame(data=data, header=header, observable="magnetogram", meta=meta)
    TimeCube(sys.argv[2], codec=codec).append([frame])
"""


def main() -> None:
    out = HERE / "cube_v2.h5"
    out.unlink(missing_ok=True)
    shutil.rmtree(out.with_name(out.name + ".segments"), ignore_errors=True)
    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp) / "old.tar"
        subprocess.run(["git", "archive", "-o", str(archive), COMMIT, "enhance"], check=True)
        with tarfile.open(archive) as tar:
            tar.extractall(tmp, filter="data")
        fixture = HERE / "hmi.M_720s.20111217_060000_TAI.crop128.magnetogram.fits"
        subprocess.run(
            [sys.executable, "-c", BUILD, str(fixture), str(out)],
            check=True,
            cwd=tmp,
            env={"PYTHONPATH": tmp, "PATH": "/usr/bin:/bin"},
        )
    out.with_name(out.name + ".lock").unlink(missing_ok=True)


if __name__ == "__main__":
    main()
