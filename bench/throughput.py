"""End-to-end throughput of the enhance pipeline against the hardware limit (issue 8).

N frames go through the whole chain: read a JSOC FITS file
(:func:`enhance.io.read_hmi`: decompress, north up, normalise) -> tiled
network (:func:`enhance.inference.enhance_frame`) -> enhanced FITS
(:func:`enhance.io.write_enhanced`) -> HDF5 time cube
(:meth:`enhance.cube.TimeCube.append`, one append of a frame generator, as a
batch job does). The network has the paper's architecture (5 residual blocks
x 64 filters; Díaz Baso & Asensio Ramos 2018, A&A 614, A5) with random
weights saved as an ordinary weights file: speed does not depend on the
values.

Reported, in one run:

* frames/s end to end, and the wall time per frame;
* time per stage: read, h2d (host -> device copy of the tiles), compute
  (the forward passes), d2h (device -> host), tile/blend (host-side cutting,
  NaN filling and blending inside ``enhance_array``), write FITS, write cube;
  with ``--pipeline threaded`` (the default on a GPU) reading and writing run
  in their own threads, so the stages overlap and do not add up to the wall
  time; on the CPU the default is serial, because there the threads take
  cores from the convolutions (measured on 2 cores: ratio 0.75 threaded vs
  0.95 serial at ``--size 512``);
* achieved TFLOP/s at 1.1 MFLOP per input pixel of every computed tile
  (../shared/docs/method.md; overlap included, skipped off-disk windows
  excluded), for the compute stage and end to end, as a fraction of
  ``--peak-tflops`` when given;
* peak host RSS and peak device memory;
* the ratio of pipeline throughput to a bare forward pass of the same net on
  the same tiles (already on the device, same batches, same precision):
  1.0 would mean reading, copying, tiling and writing cost nothing.

The stage split synchronises the device around each forward pass (a replica
of ``enhance.inference.array._forward`` with timers is patched in), which
costs a little overlap on a GPU; compare frames/s with ``--no-split``.

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
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch

import enhance.inference.array as inference_array
from enhance.atomic import atomic_path
from enhance.cube import Codec, TimeCube
from enhance.cube.layout import format_t_rec, parse_t_rec
from enhance.frame import Frame
from enhance.inference import enhance_frame, resolve_device
from enhance.inference.array import autocast_dtype
from enhance.io import read_hmi, write_enhanced
from enhance.model import EnhanceNet, save_weights
from enhance.provenance import provenance_record

ROOT = Path(__file__).resolve().parents[1]
FULLDISK = ROOT.parent / "shared" / "data" / "hmi" / "fulldisk"
#: Network cost per input pixel quoted in ../shared/docs/method.md (paper architecture).
FLOP_PER_PIXEL = 1.1e6
STAGES = ("read", "h2d", "compute", "d2h", "tile/blend", "write FITS", "write cube")
CADENCE = dt.timedelta(minutes=12)  # hmi.M_720s


class Timers:
    """Seconds per stage, summed over frames (threads write disjoint stages)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.tiles = 0
        self.tile_pixels = 0
        self.capture: list[np.ndarray] | None = None
        self.capture_done: list[np.ndarray] = []

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - start


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_forward(timers: Timers, split: bool) -> Callable:
    """``enhance.inference.array._forward`` with timers (and device syncs when ``split``)."""
    original = inference_array._forward

    def forward(
        model: EnhanceNet, batch: np.ndarray, device: torch.device, dtype: torch.dtype | None
    ) -> np.ndarray:
        timers.tiles += batch.shape[0]
        timers.tile_pixels += batch.size
        if timers.capture is not None:
            timers.capture.append(batch.copy())
        if not split:
            with timers.stage("compute"):
                return original(model, batch, device, dtype)
        with timers.stage("h2d"):
            tensor = torch.from_numpy(batch[:, None]).to(device, non_blocking=True)
            if device.type == "cuda":
                tensor = tensor.contiguous(memory_format=torch.channels_last)
            _sync(device)
        context = (
            torch.autocast(device_type=device.type, dtype=dtype)
            if dtype is not None
            else contextlib.nullcontext()
        )
        with timers.stage("compute"), torch.inference_mode(), context:
            out = model(tensor)
            _sync(device)
        with timers.stage("d2h"):
            return out.float()[:, 0].cpu().numpy()

    return forward


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


def _put(q: queue.Queue, item: object, watch: list) -> None:
    """Put without deadlocking when the consumer thread died."""
    while True:
        try:
            q.put(item, timeout=0.5)
            return
        except queue.Full:
            for future in watch:
                if future.done():
                    future.result()
                    raise RuntimeError("pipeline thread ended early") from None


def _get(q: queue.Queue, watch: list) -> object:
    while True:
        try:
            return q.get(timeout=0.5)
        except queue.Empty:
            for future in watch:
                if future.done():
                    future.result()


class _Future:
    """Result holder of a thread (exceptions re-raised in the caller)."""

    def __init__(self, target: Callable[[], object]) -> None:
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(target,), daemon=True)
        self._thread.start()

    def _run(self, target: Callable[[], object]) -> None:
        try:
            target()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller
            self._error = exc

    def done(self) -> bool:
        return not self._thread.is_alive()

    def result(self) -> None:
        self._thread.join()
        if self._error is not None:
            raise self._error


def run_pipeline(args: argparse.Namespace, work: Path, timers: Timers) -> dict:
    inputs = args.input or sorted(FULLDISK.glob("hmi.M_720s.*.fits"))
    if not inputs:
        sys.exit(f"no input FITS files (looked in {FULLDISK}); pass --input")
    base = parse_t_rec("2011.12.17_06:00:00_TAI")
    device = resolve_device(args.device)
    first = read_frame(inputs[0], 0, args.size, base)
    weights = random_weights(work, first.observable, args.seed)
    cube = TimeCube(work / f"{first.observable}.h5", codec=Codec())
    out_dir = work / "frames"
    out_dir.mkdir()
    per_frame: list[dict] = []

    def read(k: int) -> Frame:
        with timers.stage("read"):
            return read_frame(inputs[k % len(inputs)], k, args.size, base)

    def enhance(frame: Frame) -> Frame:
        before = {s: timers.seconds[s] for s in ("h2d", "compute", "d2h")}
        tiles = timers.tiles
        start = time.perf_counter()
        out = enhance_frame(
            frame,
            weights=weights,
            device=str(device),
            precision=args.precision,
            tile=args.tile,
            batch_size=args.batch_size,
        )
        total = time.perf_counter() - start
        inner = sum(timers.seconds[s] - before[s] for s in before)
        timers.seconds["tile/blend"] += total - inner
        per_frame.append({"enhance_s": total, "tiles": timers.tiles - tiles})
        if timers.capture is not None and len(per_frame) == 1:
            timers.capture_done = list(timers.capture)
            timers.capture = None
        return out

    def write_fits(k: int, frame: Frame) -> Frame:
        with timers.stage("write FITS"):
            write_enhanced(
                out_dir / f"enhanced_{k:04d}.fits",
                frame,
                provenance={"weights_file": weights.name, "benchmark": "bench/throughput.py"},
                compression=args.compression,
            )
        return frame

    def appended(frames: Iterator[Frame]) -> int:
        """``cube.append`` of a generator; cube time = append time minus generator time."""
        inside = 0.0

        def timed() -> Iterator[Frame]:
            nonlocal inside
            while True:
                start = time.perf_counter()
                try:
                    item = next(frames)
                except StopIteration:
                    inside += time.perf_counter() - start
                    return
                inside += time.perf_counter() - start
                yield item

        start = time.perf_counter()
        added = cube.append(timed())
        timers.seconds["write cube"] += time.perf_counter() - start - inside
        return added

    timers.capture = []
    t0 = time.perf_counter()
    if args.pipeline == "serial":

        def serial() -> Iterator[Frame]:
            for k in range(args.frames):
                yield write_fits(k, enhance(read(k)))

        added = appended(serial())
        wait_read = 0.0
    else:
        q_in: queue.Queue = queue.Queue(maxsize=args.prefetch)
        q_out: queue.Queue = queue.Queue(maxsize=args.prefetch)
        done = object()
        result: dict[str, int] = {}

        def reader() -> None:
            for k in range(args.frames):
                q_in.put((k, read(k)))
            q_in.put(done)

        def writer() -> None:
            def frames() -> Iterator[Frame]:
                while (item := q_out.get()) is not done:
                    k, frame = item
                    yield write_fits(k, frame)

            result["added"] = appended(frames())

        reading = _Future(reader)
        writing = _Future(writer)
        wait_read = 0.0
        while True:
            start = time.perf_counter()
            item = _get(q_in, [reading, writing])
            wait_read += time.perf_counter() - start
            if item is done:
                break
            k, frame = item
            _put(q_out, (k, enhance(frame)), [writing])
        _put(q_out, done, [writing])
        reading.result()
        writing.result()
        added = result["added"]
    wall = time.perf_counter() - t0
    if added != args.frames:
        raise RuntimeError(f"cube received {added} frames, expected {args.frames}")
    return {
        "inputs": [p.name for p in inputs],
        "observable": first.observable,
        "shape": list(first.data.shape),
        "wall_s": wall,
        "wait_for_read_s": wait_read,
        "per_frame": per_frame,
        "cube_bytes": cube.path.stat().st_size,
        "fits_bytes": sum(p.stat().st_size for p in out_dir.glob("*.fits")),
        "device": str(device),
    }


def bare_forward(batches: list[np.ndarray], args: argparse.Namespace, seed: int) -> float:
    """Seconds for the forward passes alone on ``batches`` (best of ``--bare-repeats``)."""
    device = resolve_device(args.device)
    dtype = autocast_dtype(args.precision)
    torch.manual_seed(seed)
    model = EnhanceNet().to(device).eval()
    tensors = [torch.from_numpy(b[:, None]).to(device) for b in batches]
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
        tensors = [t.contiguous(memory_format=torch.channels_last) for t in tensors]
    context = (
        torch.autocast(device_type=device.type, dtype=dtype)
        if dtype is not None
        else contextlib.nullcontext()
    )
    best = float("inf")
    with torch.inference_mode(), context:
        model(tensors[0])  # warm-up (cudnn autotuning, oneDNN primitives)
        _sync(device)
        for _ in range(args.bare_repeats):
            start = time.perf_counter()
            for tensor in tensors:
                model(tensor)
            _sync(device)
            best = min(best, time.perf_counter() - start)
    return best


def warm_up(args: argparse.Namespace) -> None:
    """One forward pass of a full batch, so neither measurement pays the first-call cost."""
    device = resolve_device(args.device)
    side = min(args.tile, args.size)
    x = torch.zeros(args.batch_size, 1, side, side, device=device)
    model = EnhanceNet().to(device).eval()
    dtype = autocast_dtype(args.precision)
    context = (
        torch.autocast(device_type=device.type, dtype=dtype)
        if dtype is not None
        else contextlib.nullcontext()
    )
    with torch.inference_mode(), context:
        model(x)
    _sync(device)


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
    parser.add_argument("--batch-size", type=int, default=4, help="windows per forward pass")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument(
        "--pipeline",
        default="auto",
        help="threaded (reader/writer threads), serial, or auto: threaded on a GPU, serial on "
        "the CPU (the threads take cores from the convolutions there)",
    )
    parser.add_argument("--prefetch", type=int, default=2, help="queue depth when threaded")
    parser.add_argument("--compression", default="gzip", help="FITS: gzip, rice or none")
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
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    if args.pipeline == "auto":
        args.pipeline = "threaded" if device.type == "cuda" else "serial"
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    timers = Timers()
    inference_array._forward = timed_forward(timers, split=not args.no_split)
    warm_up(args)
    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=False)
        work, cleanup = args.workdir, False
    else:
        work, cleanup = Path(tempfile.mkdtemp(prefix="enhance-throughput-")), True
    try:
        run = run_pipeline(args, work, timers)
    finally:
        if cleanup:
            shutil.rmtree(work, ignore_errors=True)

    n = args.frames
    wall = run["wall_s"]
    flop = FLOP_PER_PIXEL * timers.tile_pixels
    compute_s = timers.seconds["compute"]
    tiles_first = run["per_frame"][0]["tiles"]
    mean_tiles = timers.tiles / n
    bare_s = bare_forward(timers.capture_done, args, args.seed)
    bare_per_frame = bare_s / tiles_first * mean_tiles
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
        "shape": run["shape"],
        "observable": run["observable"],
        "inputs": run["inputs"],
        "frames_per_s": fps,
        "wall_s_per_frame": wall / n,
        "stage_s_per_frame": {s: timers.seconds.get(s, 0.0) / n for s in STAGES},
        "wait_for_read_s_per_frame": run["wait_for_read_s"] / n,
        "tiles_per_frame": mean_tiles,
        "tile_pixels_per_frame": timers.tile_pixels / n,
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
        "peak_host_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "peak_device_mib": torch.cuda.max_memory_allocated(device) / 2**20
        if device.type == "cuda"
        else None,
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
    )
    print(f"{'stage':14s} {'s/frame':>10s}")
    for stage, seconds in r["stage_s_per_frame"].items():
        print(f"{stage:14s} {seconds:10.3f}")
    print(f"{'(wait read)':14s} {r['wait_for_read_s_per_frame']:10.3f}")
    print(f"{'wall':14s} {r['wall_s_per_frame']:10.3f}")
    print(f"frames/s               {r['frames_per_s']:.4f}")
    print(f"bare forward frames/s  {r['bare_frames_per_s']:.4f}")
    print(f"pipeline / bare        {r['pipeline_to_bare_ratio']:.3f}")
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
