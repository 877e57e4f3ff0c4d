"""Which window side and batch give the most pixels per second, and which fit.

Issue 8 asks for "the largest tile and batch that fit" on a GPU. This bench
runs the inference copy of the paper's network (5 residual blocks x 64
filters, Díaz Baso & Asensio Ramos 2018, A&A 614, A5; random weights: speed
does not depend on their values; batch norms folded, channels-last, as
:func:`enhance_hmi.inference.array.prepare_model` makes it) on batches of random
windows, for every (tile, batch) pair asked for, and reports:

* input megapixels per second of the forward pass (median of ``--repeats``
  timed passes after one warm-up pass, which also runs cuDNN's autotuning);
* achieved TFLOP/s at 1.1 MFLOP per input pixel (../shared/docs/method.md)
  and the fraction of ``--peak-tflops`` when given;
* peak device memory (CUDA) or the process's peak RSS (CPU);
* "out of memory" for pairs that do not fit; larger batches of that tile are
  then skipped.

The speed column is also given relative to the fastest pair of the same
run, so the figures can be compared without trusting absolute timings on a
shared machine. A full-disk frame's windows are not needed: the sweep
measures the network alone; ``bench/throughput.py`` measures the pipeline.

Run from the repository root::

    python bench/tile_sweep.py --device cuda --precision bf16 \
        --tiles 512 1024 1536 2048 --batches 1 2 4 8 --peak-tflops 989 --json sweep.json
    python bench/tile_sweep.py --device cpu --tiles 128 256 --batches 1 2   # a quick dry run
"""

from __future__ import annotations

import argparse
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

from enhance_hmi.atomic import write_json
from enhance_hmi.heap import keep_freed_memory
from enhance_hmi.inference import resolve_device
from enhance_hmi.inference.array import _forward, autocast_dtype, prepare_model
from enhance_hmi.model import FLOP_PER_INPUT_PIXEL, EnhanceNet
from enhance_hmi.provenance import provenance_record


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_memory_gib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def measure(
    net: torch.nn.Module,
    device: torch.device,
    dtype: torch.dtype | None,
    tile: int,
    batch: int,
    repeats: int,
) -> dict:
    """Time ``repeats`` forward passes of ``batch`` random ``tile`` x ``tile`` windows."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    generator = torch.Generator(device="cpu").manual_seed(tile * 1000 + batch)
    windows = (1 + 0.05 * torch.randn(batch, tile, tile, generator=generator)).to(device)
    times = []
    with torch.inference_mode():
        _forward(net, windows, dtype)  # warm-up: cuDNN autotuning, oneDNN primitives
        _sync(device)
        for _ in range(repeats):
            start = time.perf_counter()
            _forward(net, windows, dtype)
            _sync(device)
            times.append(time.perf_counter() - start)
    seconds = float(np.median(times))
    pixels = batch * tile * tile
    return {
        "tile": tile,
        "batch": batch,
        "seconds_per_pass": seconds,
        "mpix_per_s": pixels / seconds / 1e6,
        "tflops": FLOP_PER_INPUT_PIXEL * pixels / seconds / 1e12,
        "peak_memory_gib": _peak_memory_gib(device),
        "fits": True,
    }


def _is_out_of_memory(exc: BaseException) -> bool:
    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()


def sweep(args: argparse.Namespace) -> dict:
    device = resolve_device(args.device)
    if device.type == "cpu":
        keep_freed_memory()  # as enhance_array does on a CPU
    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = autocast_dtype(args.precision)
    torch.manual_seed(args.seed)
    model = EnhanceNet().eval()
    net = prepare_model(model, device, compile=args.compile)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cudnn.allow_tf32 = args.precision != "fp32"
    rows: list[dict] = []
    for tile in args.tiles:
        for batch in args.batches:
            try:
                row = measure(net, device, dtype, tile, batch, args.repeats)
            except (RuntimeError, MemoryError) as exc:
                if not _is_out_of_memory(exc):
                    raise
                rows.append({"tile": tile, "batch": batch, "fits": False})
                if device.type == "cuda":
                    torch.cuda.empty_cache()
                break  # larger batches of this tile do not fit either
            rows.append(row)
            print(
                f"tile {tile:5d} batch {batch:2d}: {row['mpix_per_s']:8.2f} Mpx/s, "
                f"{row['peak_memory_gib']:6.2f} GiB",
                file=sys.stderr,
                flush=True,
            )
    fitted = [r for r in rows if r["fits"]]
    best = max(fitted, key=lambda r: r["mpix_per_s"]) if fitted else None
    for row in fitted:
        row["relative_speed"] = row["mpix_per_s"] / best["mpix_per_s"]
        if args.peak_tflops:
            row["fraction_of_peak"] = row["tflops"] / args.peak_tflops
    return {
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "precision": args.precision,
        "compiled": args.compile,
        "torch": torch.__version__,
        "host": platform.node(),
        "peak_tflops": args.peak_tflops,
        "rows": rows,
        "best": best,
        # per 4096 x 4096 input pixels; a real full-disk frame computes
        # bench/throughput.py's "tile pixels" (off-disk windows skipped)
        "best_frames_per_s_4096sq": best["mpix_per_s"] * 1e6 / 4096**2 if best else None,
        "provenance": provenance_record(),
    }


def print_table(result: dict) -> None:
    peak = result["peak_tflops"]
    print(f"# {result['device_name'] or result['device']}, {result['precision']}")
    header = "| tile | batch | Mpx/s | relative | TFLOP/s | peak mem (GiB) |"
    print(header + (" of peak |" if peak else ""))
    print("|---" * (6 + bool(peak)) + "|")
    for r in result["rows"]:
        if not r["fits"]:
            print(f"| {r['tile']} | {r['batch']} | out of memory | | | |" + (" |" if peak else ""))
            continue
        line = (
            f"| {r['tile']} | {r['batch']} | {r['mpix_per_s']:.2f} | {r['relative_speed']:.3f} "
            f"| {r['tflops']:.3f} | {r['peak_memory_gib']:.2f} |"
        )
        print(line + (f" {r['fraction_of_peak']:.3f} |" if peak else ""))
    if result["best"]:
        b = result["best"]
        print(
            f"fastest: tile {b['tile']}, batch {b['batch']}: "
            f"{result['best_frames_per_s_4096sq']:.3f} frames/s of 4096x4096 pixels, network alone"
        )


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--precision", default="fp32", help="fp32, bf16 or fp16")
    parser.add_argument("--tiles", type=int, nargs="+", default=[256, 512, 1024, 2048])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--repeats", type=int, default=3, help="timed passes per pair")
    parser.add_argument("--compile", action="store_true", help="torch.compile the network")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--peak-tflops", type=float, default=None, help="device peak, TFLOP/s")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = parser.parse_args(argv)
    result = sweep(args)
    print_table(result)
    if args.json:
        write_json(args.json, result, indent=2)
    return result


if __name__ == "__main__":
    main()
