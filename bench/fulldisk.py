"""The real full disks end to end through the product's own stages, stage by stage.

For each 4096x4096 JSOC magnetogram in ``../shared/data/hmi/fulldisk`` this
runs the stages of :func:`enhance_hmi.pipeline.enhance_file` with the shipped
weights and the defaults (sigma head, projection onto the input, gzip FITS)
and then appends the written frame to a time cube with the workflow's
default codec, timing each stage in wall seconds and in CPU seconds of the
whole process (all threads):

* ``read``: :func:`enhance_hmi.pipeline.load_frame` (decompress, rotate, checks);
* ``network``: the tiled network's forward passes (with the sigma head);
* ``projection``: the projection onto the input with its noise estimate;
* ``quality``: :func:`enhance_hmi.pipeline.measure_quality` (the quality
  figures; the first frame of a process also tabulates the re-observation's
  transfer function);
* ``write``: :func:`enhance_hmi.pipeline.write_result` of those figures (the
  atomic FITS write);
* ``cube``: :meth:`enhance_hmi.cube.TimeCube.append` of the written file.

It prints the projection's iterations and residuals, the science figures of
the output inside 0.9 R_sun (mean |B| against the input's and the network's,
the ripple figure), the end-to-end time over the network's, the peak RSS,
and the CPU seconds a GPU node's host would spend per frame (what no GPU
removes: the per-core ceiling of an archive run):

* ``io``: read, the FITS write of every default product and the cube append;
* ``host science``: what of the quality figures still runs on the host when
  the network, the projection with its noise estimate and the quality
  figures' array work run on a GPU
  (:class:`enhance_hmi.inference.device_quality.TorchQualityKernels`,
  :func:`enhance_hmi.inference.device_noise.input_noise_on`): timed as
  :func:`enhance_hmi.io.frame_quality.frame_quality` with kernels that hand
  back the figures the CPU path computed.

The FITS frames are written as the workflow writes them (``--compression``,
default ``none``: lossless, the cube compresses; ``enhance predict`` writes
gzip).

Run from the repository root (about 4 minutes a frame on 2 cores)::

    python bench/fulldisk.py --json bench/out/fulldisk.json
    python bench/fulldisk.py --frames 20160707_010000_TAI --device cuda
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from enhance_hmi.atomic import write_json
from enhance_hmi.cube import Codec, TimeCube, read_enhanced
from enhance_hmi.heap import keep_freed_memory
from enhance_hmi.inference import InferenceTimings
from enhance_hmi.io.frame_quality import RIPPLE_BAND, RIPPLE_RADIUS, RIPPLE_TILE, QualityKernels
from enhance_hmi.physics.disk import SolarDisk
from enhance_hmi.physics.spectrum import band_power
from enhance_hmi.pipeline import (
    EnhanceSettings,
    load_frame,
    measure_quality,
    run_network,
    write_result,
)

ROOT = Path(__file__).resolve().parents[1]
FULLDISK = ROOT.parent / "shared" / "data" / "hmi" / "fulldisk"
FRAMES = ("20111217_060000_TAI", "20160707_010000_TAI", "20190621_060000_TAI")


@contextmanager
def stage(record: dict, name: str):
    """Add the wall and process-CPU seconds of the block to ``record[name]``."""
    wall, cpu = time.perf_counter(), time.process_time()
    yield
    record[f"{name}_s"] = time.perf_counter() - wall
    record[f"{name}_cpu_s"] = time.process_time() - cpu


def inside_figures(frame, enhanced) -> dict:
    """Mean |B| (input, network, output) and the ripple figure inside 0.9 R_sun."""
    disk = SolarDisk.from_header(frame.header)
    inside_in = disk.inside(frame.data.shape, RIPPLE_RADIUS)
    inside_out = disk.scaled(2).inside(enhanced.data.shape, RIPPLE_RADIUS)
    network = enhanced.meta.get("network_output", enhanced.data)
    network_power = band_power(network, RIPPLE_BAND, region=inside_out, tile=RIPPLE_TILE)
    return {
        "mean_abs_input": float(np.nanmean(np.abs(frame.data[inside_in]))),
        "mean_abs_network": float(np.nanmean(np.abs(network[inside_out]))),
        "mean_abs_output": float(np.nanmean(np.abs(enhanced.data[inside_out]))),
        "ripple": float(
            band_power(enhanced.data, RIPPLE_BAND, region=inside_out, tile=RIPPLE_TILE)
            / network_power
        ),
    }


class Replayed(QualityKernels):
    """Kernels that hand back figures computed beforehand: the host's share beside a GPU.

    The first pass through :func:`enhance_hmi.io.frame_quality.frame_quality`
    computes with numpy and records each result; every later pass replays
    them in the same order.
    """

    def __init__(self) -> None:
        self.numpy, self.recorded, self.replaying = QualityKernels(), [], None

    def _result(self, name, *args):
        if self.replaying is None:
            self.recorded.append(getattr(self.numpy, name)(*args))
            return self.recorded[-1]
        return next(self.replaying)

    def replay(self) -> None:
        """Replay the recorded results from the first on."""
        self.replaying = iter(self.recorded)

    def reobserve(self, enhanced, psf_model):
        return self._result("reobserve", enhanced, psf_model)

    def flux_ratio(self, data, enhanced, noise, region):
        return self._result("flux_ratio", data, enhanced, noise, region)

    def quiet_contrast(self, image, smooth):
        return self._result("quiet_contrast", image, smooth)

    def band_power(self, image, band, region, tile):
        return self._result("band_power", image, band, region, tile)


def one_frame(path: Path, settings: EnhanceSettings, workdir: Path, codec: Codec) -> dict:
    record: dict = {"input": path.name}
    output = workdir / f"{path.stem}.enhanced.fits"
    timings = InferenceTimings()
    with stage(record, "read"):
        loaded = load_frame(path, output, settings)
    with stage(record, "network_and_projection"):
        enhanced = run_network(loaded, settings, timings=timings)
    record["network_s"] = timings.h2d_s + timings.compute_s + timings.d2h_s
    record["projection_s"] = timings.projection_s
    record["windows"] = timings.windows
    with stage(record, "quality"):
        quality = measure_quality(loaded, enhanced, settings)
    with stage(record, "write"):
        write_result(loaded, enhanced, settings, quality=quality)
    replayed = Replayed()
    measure_quality(loaded, enhanced, settings, kernels=replayed)  # records what it replays
    replayed.replay()
    with stage(record, "quality_host"):
        measure_quality(loaded, enhanced, settings, kernels=replayed)
    with stage(record, "cube"):
        cube = TimeCube(workdir / f"{path.stem}.h5", codec=codec)
        cube.append([read_enhanced(output, sigma=True)])
    projection = enhanced.meta["consistency"]
    record.update(
        iterations=projection.iterations,
        residual_before=projection.residual_before,
        residual_after=projection.residual_after,
        goal=projection.discrepancy * projection.noise,
        noise=projection.noise,
        noise_source=projection.noise_source,
        converged=projection.converged,
        stalled=projection.stalled,
        flags=",".join(quality.flags),
        quality=quality.as_dict(),
        **inside_figures(loaded.frame, enhanced),
    )
    total = sum(
        record[f"{name}_s"]
        for name in ("read", "network_and_projection", "quality", "write", "cube")
    )
    cpu_total = sum(
        record[f"{name}_cpu_s"]
        for name in ("read", "network_and_projection", "quality", "write", "cube")
    )
    record["end_to_end_s"] = total
    record["end_to_end_over_network"] = total / record["network_s"]
    # CPU seconds left when the network and the projection run on a device
    network_share = (record["network_s"] + record["projection_s"]) / record[
        "network_and_projection_s"
    ]
    record["cpu_s_without_device_stages"] = (
        cpu_total - network_share * record["network_and_projection_cpu_s"]
    )
    record["cpu_s_io"] = record["read_cpu_s"] + record["write_cpu_s"] + record["cube_cpu_s"]
    record["cpu_s_host_science"] = record["quality_host_cpu_s"]
    record["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return record


def summary(name: str, r: dict) -> str:
    """Two lines of figures for one frame."""
    return (
        f"{name}: end to end {r['end_to_end_s']:.1f} s = "
        f"{r['end_to_end_over_network']:.2f} x the network ({r['network_s']:.1f} s); "
        f"read {r['read_s']:.1f}, projection {r['projection_s']:.1f}, "
        f"quality {r['quality_s']:.1f}, write {r['write_s']:.1f}, cube {r['cube_s']:.1f} s; "
        f"CPU-s without network and projection {r['cpu_s_without_device_stages']:.1f}; "
        f"host CPU-s beside a GPU: io {r['cpu_s_io']:.2f} + science "
        f"{r['cpu_s_host_science']:.2f}\n"
        f"    projection: {r['iterations']} iterations, residual "
        f"{r['residual_before']:.2f} -> {r['residual_after']:.2f} G (goal {r['goal']:.2f} G, "
        f"noise {r['noise']:.2f} G {r['noise_source']}); inside 0.9 R: mean |B| in "
        f"{r['mean_abs_input']:.2f}, network {r['mean_abs_network']:.2f}, "
        f"out {r['mean_abs_output']:.2f} G; ripple {r['ripple']:.3f}; "
        f"flags '{r['flags']}'; peak RSS {r['peak_rss_mib']:.0f} MiB"
    )


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--frames", nargs="+", default=list(FRAMES), help="T_REC parts of the names"
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--data", type=Path, default=FULLDISK, help="folder of the full disks")
    parser.add_argument(
        "--cube-compression",
        default="blosc2-zstd",
        help="the cube's codec (the workflow's default; 'none' where hdf5plugin is missing)",
    )
    parser.add_argument(
        "--compression",
        default="none",
        choices=("none", "gzip", "rice"),
        help="the FITS frames' (the workflow's default: none)",
    )
    parser.add_argument("--json", type=Path, default=None, help="write the records here")
    args = parser.parse_args(argv)
    keep_freed_memory()
    compression = None if args.compression == "none" else args.compression
    settings = EnhanceSettings(device=args.device, compression=compression)
    records = []
    with tempfile.TemporaryDirectory(prefix="fulldisk-") as tmp:
        for name in args.frames:
            path = args.data / f"hmi.M_720s.{name}.magnetogram.fits"
            codec = Codec.from_options(compression=args.cube_compression)
            record = one_frame(path, settings, Path(tmp), codec)
            records.append(record)
            print(summary(name, record), flush=True)
    if args.json:
        write_json(args.json, records, indent=1)
    return records


if __name__ == "__main__":
    main()
