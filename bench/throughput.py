"""End-to-end throughput of the enhance pipeline against the hardware limit.

N frames go through the whole chain, staged as a batch job stages them
(:func:`enhance_hmi.batch.run_stages`): read a JSOC FITS file
(:func:`enhance_hmi.io.read_hmi`: decompress, north up, normalise) -> tiled
network (:func:`enhance_hmi.inference.enhance_frame`) -> enhanced FITS
(:func:`enhance_hmi.io.write_enhanced`) -> HDF5 time cube
(:meth:`enhance_hmi.cube.TimeCube.append`, one append of a frame generator, as
the cube rule does). The network has the paper's architecture (5 residual
blocks x 64 filters; Díaz Baso & Asensio Ramos 2018, A&A 614, A5) with
random weights saved as an ordinary weights file: speed does not depend on
the values.

Reported, in one run:

* frames/s end to end, and the wall time per frame;
* time per stage: read, h2d (the one host -> device copy of a frame),
  compute (the forward passes), d2h (the one copy of the 2x frame back),
  tile/blend (NaN fill, window cutting and blending, on the device), write
  FITS, write cube; with ``--pipeline threaded`` (the default on a GPU)
  reading and writing run in their own threads, so the stages overlap and do
  not add up to the wall time; on the CPU the default is serial, because
  there the threads share the cores of the convolutions (no consistent gain
  measured on 2 cores, see :mod:`enhance_hmi.batch`);
* achieved TFLOP/s at 1.1 MFLOP per input pixel of every computed tile
  (../shared/docs/method.md; overlap included, skipped off-disk windows
  excluded), for the compute stage and end to end, as a fraction of
  ``--peak-tflops`` when given;
* peak host RSS and peak device memory;
* the ratio of pipeline throughput to a bare forward pass (mean and best
  of ``--bare-repeats``) of the same
  network (the same folded, channels-last copy) on the same windows
  (already on the device, same batches, same precision): 1.0 would mean
  reading, copying, tiling and writing cost nothing;
* with ``--compile``, the one-off compilation time, apart.

The copies and forward passes are timed through the public
``timings=`` hook of :func:`enhance_hmi.inference.enhance_frame`
(:class:`enhance_hmi.inference.InferenceTimings`); the bare forward runs on the
windows the network saw in the first frame, captured by a forward pre-hook
on the cached inference copy (:func:`enhance_hmi.inference.prepare_model`). The
stage split synchronises the device after each timed step, which costs a
little overlap on a GPU; compare frames/s with ``--no-split``.

As a batch job does, the benchmark keeps freed memory in the process
(:func:`enhance_hmi.heap.keep_freed_memory`); ``ENHANCE_KEEP_FREED_MEMORY=0``
measures without it.

Frames beyond the number of input files reuse them in turn with a new
``T_REC`` (12 min apart), so the cube holds N distinct frames.

Run from the repository root::

    python bench/throughput.py --device cpu --size 512 --frames 3 --json cpu.json
    python bench/throughput.py --device cuda --precision bf16 --frames 8 \\
        --tile 1024 --batch-size 4 --peak-tflops 989 --json gpu.json
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import platform
import queue
import resource
import shutil
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from enhance_hmi.atomic import atomic_path
from enhance_hmi.batch import run_stages
from enhance_hmi.cube import Codec, TimeCube, format_t_rec, parse_t_rec
from enhance_hmi.frame import Frame
from enhance_hmi.heap import keep_freed_memory
from enhance_hmi.inference import (
    InferenceTimings,
    autocast_dtype,
    cudnn_settings,
    enhance_frame,
    prepare_model,
    resolve_device,
)
from enhance_hmi.io import read_hmi, write_enhanced
from enhance_hmi.model import FLOP_PER_INPUT_PIXEL, EnhanceNet, load_weights_cached, save_weights
from enhance_hmi.provenance import provenance_record

ROOT = Path(__file__).resolve().parents[1]
FULLDISK = ROOT.parent / "shared" / "data" / "hmi" / "fulldisk"
STAGES = ("read", "h2d", "compute", "d2h", "tile/blend", "write FITS", "write cube")
CADENCE = dt.timedelta(minutes=12)  # hmi.M_720s


class Timers:
    """Seconds per stage, summed over frames and threads."""

    def __init__(self, *, split: bool) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self._lock = threading.Lock()
        #: the copies and forward passes, timed inside enhance_frame
        self.inference = InferenceTimings(synchronise=split)
        # the first frame's window batches, on the device, for the bare forward
        self.capture: list[torch.Tensor] | None = None
        self.capture_done: list[torch.Tensor] = []

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - start
            with self._lock:  # several reader/writer threads add to the same stage
                self.seconds[name] += elapsed


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def forward(net: torch.nn.Module, batch: torch.Tensor, dtype: torch.dtype | None) -> torch.Tensor:
    """The network on a ``(N, 1, H, W)`` channels-last device batch, under autocast if asked."""
    if dtype is None:
        return net(batch)
    with torch.autocast(device_type=batch.device.type, dtype=dtype):
        return net(batch)


def capture_windows(timers: Timers, net: torch.nn.Module) -> torch.utils.hooks.RemovableHandle:
    """Keep a copy of every batch ``net`` receives while ``timers.capture`` is a list."""

    def keep(_module: torch.nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        if timers.capture is not None:
            timers.capture.append(inputs[0].clone())

    return net.register_forward_pre_hook(keep)


def read_frame(path: Path, index: int, size: int, base: dt.datetime) -> Frame:
    """Read ``path`` as frame ``index``: centred ``size`` crop, its own T_REC."""
    frame = read_hmi(path)
    data, header = frame.data, frame.header.copy()
    ny, nx = data.shape
    if size < min(ny, nx):
        y0, x0 = (ny - size) // 2, (nx - size) // 2
        data = np.ascontiguousarray(data[y0 : y0 + size, x0 : x0 + size])
        for axis, shift in ((1, x0), (2, y0)):
            if f"CRPIX{axis}" in header:
                header[f"CRPIX{axis}"] = float(header[f"CRPIX{axis}"]) - shift
        header["NAXIS1"], header["NAXIS2"] = size, size
    t_rec = format_t_rec(base + index * CADENCE)
    header["T_REC"] = t_rec
    meta = dict(frame.meta, t_rec=t_rec)
    return Frame(data=data, header=header, observable=frame.observable, meta=meta)


def random_weights(directory: Path, observable: str, seed: int) -> Path:
    torch.manual_seed(seed)
    scale = 1000.0 if observable == "magnetogram" else 1.0  # network in kG (paper Sect. 3)
    units = "G" if observable == "magnetogram" else "I/I_quiet-Sun"
    metadata = {
        "observable": observable,
        "input_normalisation": {"quantity": observable, "units": units, "scale": scale},
        "psf_model": "wachter",
        "training_data": "none: random weights for benchmarking",
    }
    return save_weights(EnhanceNet(), directory / f"{observable}.safetensors", metadata=metadata)


def run_pipeline(args: argparse.Namespace, work: Path, weights: Path, timers: Timers) -> dict:
    """N frames through :func:`enhance_hmi.batch.run_stages`, as a batch job runs them."""
    inputs = args.input
    base = parse_t_rec("2011.12.17_06:00:00_TAI")
    device = resolve_device(args.device)
    first = read_frame(inputs[0], 0, args.size, base)
    cube = TimeCube(work / f"{first.observable}.h5", codec=Codec(args.cube_compression))
    out_dir = work / "frames"
    out_dir.mkdir()
    per_frame: list[dict] = []

    def read(k: int) -> tuple[int, Frame]:
        with timers.stage("read"):
            return k, read_frame(inputs[k % len(inputs)], k, args.size, base)

    def enhance(job: tuple[int, Frame]) -> tuple[int, Frame]:
        k, frame = job
        inference = timers.inference
        before = inference.h2d_s + inference.compute_s + inference.d2h_s
        tiles = inference.windows
        start = time.perf_counter()
        out = enhance_frame(
            frame,
            weights=weights,
            device=str(device),
            precision=args.precision,
            tile=args.tile,
            batch_size=args.batch_size,
            compile=args.compile,
            uncertainty=False,
            timings=inference,
        )
        total = time.perf_counter() - start
        inner = inference.h2d_s + inference.compute_s + inference.d2h_s - before
        timers.seconds["tile/blend"] += total - inner
        per_frame.append({"enhance_s": total, "tiles": inference.windows - tiles})
        if timers.capture is not None and len(per_frame) == 1:
            timers.capture_done = list(timers.capture)
            timers.capture = None
        return k, out

    # The cube gets one append of a frame generator, as the cube rule does (an
    # append per frame would copy the cube each time): the writer hands each
    # frame, once its FITS file is written, to a cube thread.
    to_cube: queue.Queue = queue.Queue(maxsize=2)
    end = object()
    appended: dict[str, object] = {}

    def cube_frames() -> Iterator[Frame]:
        while (frame := to_cube.get()) is not end:
            yield frame

    def cube_writer() -> None:
        inside = 0.0
        frames = cube_frames()

        def timed() -> Iterator[Frame]:
            nonlocal inside
            while True:
                start = time.perf_counter()
                item = next(frames, None)
                inside += time.perf_counter() - start
                if item is None:
                    return
                yield item

        start = time.perf_counter()
        try:
            appended["added"] = cube.append(timed())
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            appended["error"] = exc
            while to_cube.get() is not end:  # keep the writer from blocking
                pass
        timers.seconds["write cube"] += time.perf_counter() - start - inside

    def write(job: tuple[int, Frame]) -> int:
        k, frame = job
        with timers.stage("write FITS"):
            write_enhanced(
                out_dir / f"enhanced_{k:04d}.fits",
                frame,
                provenance={"weights_file": weights.name, "benchmark": "bench/throughput.py"},
                compression=args.compression,
            )
        to_cube.put(frame)
        return k

    cube_thread = threading.Thread(target=cube_writer, name="cube", daemon=True)
    cube_thread.start()
    timers.capture = []
    t0 = time.perf_counter()
    try:
        done = run_stages(
            range(args.frames),
            read,
            enhance,
            write,
            threaded=args.pipeline == "threaded",
            prefetch=args.prefetch,
            readers=args.readers,
            writers=args.writers,
        )
    finally:
        to_cube.put(end)
        cube_thread.join()
    wall = time.perf_counter() - t0
    if "error" in appended:
        raise appended["error"]  # type: ignore[misc]
    if done != list(range(args.frames)) or appended.get("added") != args.frames:
        raise RuntimeError(f"cube received {appended.get('added')} frames, expected {args.frames}")
    return {
        "inputs": [p.name for p in inputs],
        "observable": first.observable,
        "shape": list(first.data.shape),
        "wall_s": wall,
        "per_frame": per_frame,
        "cube_bytes": cube.path.stat().st_size,
        "fits_bytes": sum(p.stat().st_size for p in out_dir.glob("*.fits")),
        "device": str(device),
    }


def bare_forward(
    batches: list[torch.Tensor], args: argparse.Namespace, weights: Path
) -> tuple[float, float]:
    """Seconds for the forward passes alone on ``batches``: (mean, best) of ``--bare-repeats``.

    On a shared machine single passes vary by ~10 %; the ratio is reported
    against both the mean pass (like for like with the pipeline's one pass)
    and the best one (the stricter reference).

    The same inference copy of the same network (batch norms folded,
    channels-last, compiled when the pipeline was) on the same device-resident
    windows, with the same cuDNN settings: nothing but the network.
    """
    device = resolve_device(args.device)
    dtype = autocast_dtype(args.precision)
    model, _ = load_weights_cached(weights)  # as enhance_frame: CPU net, device copy
    net = prepare_model(model, device, compile=args.compile)
    times: list[float] = []
    with (
        cudnn_settings(benchmark=True, allow_tf32=args.precision != "fp32"),
        torch.inference_mode(),
    ):
        forward(net, batches[0], dtype)  # warm (cudnn autotuning, oneDNN primitives)
        _sync(device)
        for _ in range(args.bare_repeats):
            start = time.perf_counter()
            for batch in batches:
                forward(net, batch, dtype)
            _sync(device)
            times.append(time.perf_counter() - start)
    return sum(times) / len(times), min(times)


def warm_up(args: argparse.Namespace, weights: Path) -> float:
    """Forward passes of a full batch of full windows, so no measurement pays the first call.

    With ``--compile`` this is where the compilation happens; its seconds are
    returned and reported apart.
    """
    device = resolve_device(args.device)
    side = min(args.tile, args.size)
    model, _ = load_weights_cached(weights)  # as enhance_frame: CPU net, device copy
    start = time.perf_counter()
    net = prepare_model(model, device, compile=args.compile)
    with (
        cudnn_settings(benchmark=True, allow_tf32=args.precision != "fp32"),
        torch.inference_mode(),
    ):
        # Every batch size a frame can end with: with --compile the graph for
        # other sizes than the first is compiled here, not in a timed frame.
        for size in [args.batch_size, *range(1, args.batch_size)]:
            batch = torch.zeros(size, 1, side, side, device=device)
            batch = batch.contiguous(memory_format=torch.channels_last)
            forward(net, batch, autocast_dtype(args.precision))
    _sync(device)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--input",
        type=Path,
        action="append",
        help="HMI FITS file (repeatable); default: "
        "the three full-disk magnetograms in ../shared/data/hmi/fulldisk",
    )
    parser.add_argument("--frames", type=int, default=3, help="frames to process (N)")
    parser.add_argument("--size", type=int, default=4096, help="centred crop side (4096: all)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--precision", default="fp32", help="fp32, bf16 or fp16")
    parser.add_argument("--tile", type=int, default=256, help="window side in input pixels")
    parser.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="windows per forward pass (default as enhance: 1 on a CPU, 4 on a GPU)",
    )
    parser.add_argument(
        "--compile", action="store_true", help="torch.compile the network (time reported apart)"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument(
        "--pipeline",
        default="auto",
        help="threaded (reader/writer threads), serial, or auto: threaded on a GPU, serial on "
        "the CPU (the threads take cores from the convolutions there)",
    )
    parser.add_argument("--prefetch", type=int, default=2, help="queue depth when threaded")
    parser.add_argument("--readers", type=int, default=1, help="reading threads when threaded")
    parser.add_argument("--writers", type=int, default=1, help="FITS-writing threads when threaded")
    parser.add_argument("--compression", default="gzip", help="FITS: gzip, rice or none")
    parser.add_argument(
        "--cube-compression",
        default="blosc2-zstd",
        help="cube codec: blosc2-zstd (the default of the workflow), zstd, gzip or none",
    )
    parser.add_argument("--no-split", action="store_true", help="no device syncs per stage")
    parser.add_argument("--bare-repeats", type=int, default=2)
    parser.add_argument("--peak-tflops", type=float, default=None, help="device peak, TFLOP/s")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, default=None, help="keep outputs here")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = parser.parse_args(argv)
    if args.pipeline not in ("auto", "threaded", "serial"):
        parser.error("--pipeline must be auto, threaded or serial")
    args.compression = None if args.compression == "none" else args.compression
    heap_kept = keep_freed_memory()  # as the batch jobs do (ENHANCE_KEEP_FREED_MEMORY=0: off)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    if args.pipeline == "auto":
        args.pipeline = "threaded" if device.type == "cuda" else "serial"
    if args.batch_size is None:
        args.batch_size = 4 if device.type == "cuda" else 1
    args.input = args.input or sorted(FULLDISK.glob("hmi.M_720s.*.fits"))
    if not args.input:
        sys.exit(f"no input FITS files (looked in {FULLDISK}); pass --input")
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    timers = Timers(split=not args.no_split)
    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=False)
        work, cleanup = args.workdir, False
    else:
        work, cleanup = Path(tempfile.mkdtemp(prefix="enhance-throughput-")), True
    try:
        observable = read_hmi(args.input[0]).observable
        weights = random_weights(work, observable, args.seed)
        warm_s = warm_up(args, weights)
        model, _ = load_weights_cached(weights)
        hook = capture_windows(timers, prepare_model(model, device, compile=args.compile))
        try:
            run = run_pipeline(args, work, weights, timers)
        finally:
            hook.remove()
        bare_s = bare_forward(timers.capture_done, args, weights)
    finally:
        if cleanup:
            shutil.rmtree(work, ignore_errors=True)

    n = args.frames
    wall = run["wall_s"]
    inference = timers.inference
    timers.seconds.update(h2d=inference.h2d_s, compute=inference.compute_s, d2h=inference.d2h_s)
    flop = FLOP_PER_INPUT_PIXEL * inference.window_pixels
    compute_s = inference.compute_s
    tiles_first = run["per_frame"][0]["tiles"]
    mean_tiles = inference.windows / n
    bare_per_frame = bare_s[0] / tiles_first * mean_tiles
    bare_best_per_frame = bare_s[1] / tiles_first * mean_tiles
    fps = n / wall
    result = {
        "benchmark": "throughput",
        "frames": n,
        "pipeline": args.pipeline,
        "device": run["device"],
        "device_name": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else (platform.processor() or platform.machine()),
        "precision": args.precision,
        "tile": args.tile,
        "batch_size": args.batch_size,
        "threads": torch.get_num_threads(),
        "freed_memory_kept": heap_kept,
        "shape": run["shape"],
        "observable": run["observable"],
        "inputs": run["inputs"],
        "frames_per_s": fps,
        "wall_s_per_frame": wall / n,
        "stage_s_per_frame": {s: timers.seconds.get(s, 0.0) / n for s in STAGES},
        "warm_up_s": warm_s,
        "compiled": args.compile,
        "readers": args.readers,
        "writers": args.writers,
        "fits_compression": args.compression or "none",
        "tiles_per_frame": mean_tiles,
        "tile_pixels_per_frame": inference.window_pixels / n,
        "flop_per_frame": flop / n,
        "compute_tflops": flop / compute_s / 1e12 if compute_s else None,
        "end_to_end_tflops": flop / wall / 1e12,
        "peak_tflops": args.peak_tflops,
        "compute_fraction_of_peak": (flop / compute_s / 1e12 / args.peak_tflops)
        if args.peak_tflops and compute_s
        else None,
        "end_to_end_fraction_of_peak": (flop / wall / 1e12 / args.peak_tflops)
        if args.peak_tflops
        else None,
        "bare_forward_s_per_frame": bare_per_frame,
        "bare_frames_per_s": 1.0 / bare_per_frame,
        "pipeline_to_bare_ratio": fps * bare_per_frame,
        "bare_repeats": args.bare_repeats,
        "bare_best_forward_s_per_frame": bare_best_per_frame,
        "pipeline_to_best_bare_ratio": fps * bare_best_per_frame,
        "peak_host_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "peak_device_mib": torch.cuda.max_memory_allocated(device) / 2**20
        if device.type == "cuda"
        else None,
        "cube_compression": args.cube_compression,
        "cube_bytes_per_frame": run["cube_bytes"] / n,
        "fits_bytes_per_frame": run["fits_bytes"] / n,
        "stage_split_synchronised": not args.no_split,
        "torch": torch.__version__,
        "provenance": provenance_record(),
    }
    print_table(result)
    if args.json:
        with atomic_path(args.json) as tmp:
            tmp.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")
    return result


def print_table(r: dict) -> None:
    ny, nx = r["shape"]
    print(
        f"{r['frames']} frames {nx}x{ny} {r['observable']} on {r['device']} ({r['device_name']}), "
        f"{r['precision']}, tile {r['tile']}, batch {r['batch_size']}, {r['threads']} threads, "
        f"{r['pipeline']} pipeline"
        + (
            f" ({r['readers']} readers, {r['writers']} writers)"
            if r["pipeline"] == "threaded"
            else ""
        )
        + (", compiled" if r["compiled"] else "")
        + f", FITS {r['fits_compression']}, cube {r['cube_compression']}"
        + f", freed memory {'kept' if r['freed_memory_kept'] else 'returned'}"
    )
    print(f"warm-up (once{', compilation' if r['compiled'] else ''}) {r['warm_up_s']:.1f} s")
    print(f"{'stage':14s} {'s/frame':>10s}")
    for stage, seconds in r["stage_s_per_frame"].items():
        print(f"{stage:14s} {seconds:10.3f}")
    print(f"{'wall':14s} {r['wall_s_per_frame']:10.3f}")
    print(f"frames/s               {r['frames_per_s']:.4f}")
    print(f"bare forward frames/s  {r['bare_frames_per_s']:.4f}")
    print(f"pipeline / bare        {r['pipeline_to_bare_ratio']:.3f} (mean of {r['bare_repeats']})")
    print(f"pipeline / best bare   {r['pipeline_to_best_bare_ratio']:.3f}")
    peak = r["peak_tflops"]
    for key, label in (("compute_tflops", "compute"), ("end_to_end_tflops", "end to end")):
        value = r[key]
        frac = f" ({value / peak:.1%} of {peak} peak)" if peak and value else ""
        print(f"TFLOP/s {label:14s} {value:.4f}{frac}")
    print(f"tiles/frame            {r['tiles_per_frame']:.1f}")
    print(f"peak host RSS          {r['peak_host_rss_mib']:.0f} MiB")
    if r["peak_device_mib"] is not None:
        print(f"peak device memory     {r['peak_device_mib']:.0f} MiB")
    print(f"cube bytes/frame       {r['cube_bytes_per_frame'] / 2**20:.2f} MiB")


if __name__ == "__main__":
    main()
