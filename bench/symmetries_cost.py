"""Seconds per full-disk frame on the CPU with the network averaged over 1, 2, ... symmetries.

``enhance predict --symmetries N`` runs the network N times per frame (each
pass on the turned, mirrored or negated frame, turned back and averaged,
:mod:`enhance_hmi.inference.symmetry`); the projection onto the input runs
once. This enhances one real JSOC full-disk frame with the shipped weights
and the shipped recipe (:func:`enhance_hmi.inference.enhance_frame`, CPU,
projection on, no sigma) for each count, in one process, and prints the
seconds and their ratio to one pass. One run on a shared machine: compare
the ratios, not the seconds with other runs.

Usage::

    python bench/symmetries_cost.py [--input FRAME.fits] [--counts 1 2]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from enhance_hmi.inference import enhance_frame
from enhance_hmi.io import read_hmi
from enhance_hmi.settings import EnhanceSettings

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_INPUT = (
    ROOT.parent / "shared/data/hmi/fulldisk/hmi.M_720s.20160707_010000_TAI.magnetogram.fits"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", type=Path, default=DEFAULT_INPUT)
    parser.add_argument("--counts", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    frame = read_hmi(args.input)
    seconds = {}
    for count in args.counts:
        settings = EnhanceSettings(device="cpu", uncertainty=False, symmetries=count)
        start = time.perf_counter()
        enhance_frame(frame, settings)
        seconds[count] = time.perf_counter() - start
        print(f"symmetries {count}: {seconds[count]:.1f} s per frame", flush=True)
    base = seconds[args.counts[0]]
    for count, value in seconds.items():
        print(f"symmetries {count}: {value / base:.2f}x the time of {args.counts[0]}")


if __name__ == "__main__":
    main()
