"""Seconds per full-disk HMI frame on the CPU: read + tiled Enhance network.

Reads a real JSOC full-disk magnetogram with :func:`enhance_hmi.io.read_hmi`
(north up, gauss, off-disk NaN), optionally keeps a centred ``--size`` crop,
and enhances it with :func:`enhance_hmi.inference.enhance_array` using the
paper's architecture (5 residual blocks x 64 filters, Díaz Baso & Asensio
Ramos 2018, A&A 614, A5) with random weights: speed does not depend on the
weight values. Windows with no finite pixel (off disk) are skipped by
``enhance_array``; the FLOP count uses only the windows actually computed.

Reports seconds per frame (read, enhance), the computed tiles, achieved
GFLOP/s at 1.1 MFLOP per input pixel (../shared/docs/method.md; the exact
count of this architecture is printed too), peak RSS, tile size and threads;
writes the same as JSON with ``--json``.

Run from the repository root::

    python bench/fulldisk_cpu.py --size 1024 --json out.json   # a crop, quick
    python bench/fulldisk_cpu.py --json fulldisk_cpu.json      # the 4096x4096 frame
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

from enhance_hmi.atomic import atomic_path
from enhance_hmi.inference import enhance_array
from enhance_hmi.io import read_hmi
from enhance_hmi.model import FLOP_PER_INPUT_PIXEL, EnhanceNet
from enhance_hmi.provenance import provenance_record, sha256_file

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_INPUT = (
    ROOT.parent / "shared/data/hmi/fulldisk/hmi.M_720s.20111217_060000_TAI.magnetogram.fits"
)


def exact_flop_per_pixel(model: EnhanceNet) -> float:
    """2 x multiply-adds per input pixel of the convolutions (bias, BN, ReLU ignored)."""
    convs, _ = model.keras_layer_order()
    up = model.upscale**2
    macs = 0
    for conv in convs:
        k = conv.kernel_size[0] * conv.kernel_size[1]
        at_output = conv is model.up_conv or conv is model.tail
        macs += k * conv.in_channels * conv.out_channels * (up if at_output else 1)
    return 2.0 * macs


def centre_crop(data: np.ndarray, size: int) -> np.ndarray:
    if size >= min(data.shape):
        return data
    y0 = (data.shape[0] - size) // 2
    x0 = (data.shape[1] - size) // 2
    return np.ascontiguousarray(data[y0 : y0 + size, x0 : x0 + size])


def peak_rss_mib() -> float:
    """Peak resident set size of this process (Linux reports kB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", type=Path, default=DEFAULT_INPUT, help="HMI FITS file")
    parser.add_argument("--size", type=int, default=4096, help="centred crop side (4096: all)")
    parser.add_argument("--tile", type=int, default=256, help="window side in input pixels")
    parser.add_argument("--batch-size", type=int, default=1, help="windows per forward pass")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    parser.add_argument("--seed", type=int, default=0, help="random weights seed")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    t0 = time.perf_counter()
    frame = read_hmi(args.input)
    read_s = time.perf_counter() - t0
    data = centre_crop(frame.data, args.size)
    scale = 1000.0 if frame.observable == "magnetogram" else 1.0  # network in kG (paper Sect. 3)

    torch.manual_seed(args.seed)
    model = EnhanceNet().eval()
    tiles = {"count": 0, "pixels": 0}
    forward = model.forward

    def counting(x: torch.Tensor) -> torch.Tensor:
        tiles["count"] += x.shape[0]
        tiles["pixels"] += x.shape[0] * x.shape[2] * x.shape[3]
        return forward(x)

    model.forward = counting
    t1 = time.perf_counter()
    out = enhance_array(
        data, model, device="cpu", tile=args.tile, batch_size=args.batch_size, input_scale=scale
    )
    enhance_s = time.perf_counter() - t1
    flop = FLOP_PER_INPUT_PIXEL * tiles["pixels"]
    finite = np.isfinite(data)
    result = {
        "benchmark": "fulldisk_cpu",
        "input_file": args.input.name,
        "input_sha256": sha256_file(args.input),
        "observable": frame.observable,
        "shape": list(data.shape),
        "output_shape": list(out.shape),
        "off_disk_fraction": float(1.0 - finite.mean()),
        "tile": args.tile,
        "batch_size": args.batch_size,
        "threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
        "tiles_computed": tiles["count"],
        "tile_pixels_computed": tiles["pixels"],
        "overlap_overhead": tiles["pixels"] / max(int(finite.sum()), 1),
        "read_s": read_s,
        "enhance_s": enhance_s,
        "seconds_per_frame": read_s + enhance_s,
        "flop_per_pixel_method_md": FLOP_PER_INPUT_PIXEL,
        "flop_per_pixel_exact": exact_flop_per_pixel(model),
        "achieved_gflops": flop / enhance_s / 1e9,
        "peak_rss_mib": peak_rss_mib(),
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "python": sys.version.split()[0],
        "provenance": provenance_record(),
    }
    rows = [
        ("frame", f"{data.shape[1]}x{data.shape[0]} {frame.observable}"),
        ("off-disk fraction", f"{result['off_disk_fraction']:.3f}"),
        ("tile / batch / threads", f"{args.tile} / {args.batch_size} / {result['threads']}"),
        ("tiles computed", f"{tiles['count']} (x{result['overlap_overhead']:.2f} pixels)"),
        ("read", f"{read_s:.2f} s"),
        ("enhance", f"{enhance_s:.2f} s"),
        ("seconds per frame", f"{result['seconds_per_frame']:.2f} s"),
        ("achieved", f"{result['achieved_gflops']:.1f} GFLOP/s (1.1 MFLOP/px)"),
        ("peak RSS", f"{result['peak_rss_mib']:.0f} MiB"),
    ]
    for name, value in rows:
        print(f"{name:24s} {value}")
    if args.json:
        with atomic_path(args.json) as tmp:
            tmp.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")
    return result


if __name__ == "__main__":
    main()
