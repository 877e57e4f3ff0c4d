"""What the per-pixel uncertainty costs: inference with and without sigma, in one run.

Three ways of enhancing the same image with the shipped networks (Díaz Baso &
Asensio Ramos 2018, A&A 614, A5) are timed, interleaved, ``--repeats`` times
each after one warm-up, and reported as the median wall time and the ratio to
the plain network:

* ``plain``: :func:`enhance_hmi.inference.enhance_array`, the network alone;
* ``sigma head``: the same call with the network and its uncertainty head
  (:class:`enhance_hmi.model.uncertainty.EnhanceWithUncertainty`; one pass gives
  output and sigma), calibrated by the map of its sidecar (the head's sigma
  and the output's local spread and level, two box filters on the output, and
  the input's local spread, a 3x3 box on the input);
* ``dihedral x8``: the alternative, test-time averaging over the 8 rotations
  and flips (8 tiled passes), sigma their spread.

Only ratios measured in the same run are meant to be compared (the machine is
shared). Run from the repository root::

    python bench/uncertainty_cost.py --size 512 --repeats 3 --threads 1
    python bench/uncertainty_cost.py --device cuda --size 2048 --repeats 5
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time

import numpy as np
import torch

from enhance_hmi.inference import enhance_array, enhance_array_with_sigma, resolve_device
from enhance_hmi.model import default_weights, load_weights
from enhance_hmi.model.uncertainty import load_uncertainty
from enhance_hmi.provenance import provenance_record


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _dihedral(image, net, **options) -> tuple[np.ndarray, np.ndarray]:
    outs = []
    for flip in (False, True):
        for turns in range(4):
            x = np.rot90(image, turns)
            x = x[:, ::-1] if flip else x
            y = enhance_array(np.ascontiguousarray(x), net, **options)
            y = y[:, ::-1] if flip else y
            outs.append(np.rot90(y, -turns))
    stack = np.stack(outs)
    return stack.mean(axis=0), stack.std(axis=0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--observable", default="continuum", choices=("continuum", "magnetogram"))
    parser.add_argument("--size", type=int, default=512, help="input side in pixels")
    parser.add_argument("--tile", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--no-dihedral", action="store_true", help="skip the 8x alternative")
    parser.add_argument("--json", default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    weights = default_weights(args.observable)
    net, meta = load_weights(weights)
    combined, head_meta = load_uncertainty(weights, net, meta)
    scale = float(meta["input_normalisation"]["scale"])
    rng = np.random.default_rng(0)
    level = 1.0 if args.observable == "continuum" else 0.0
    spread = 0.04 if args.observable == "continuum" else 50.0
    image = (level + spread * rng.standard_normal((args.size, args.size))).astype(np.float32)
    options = {"device": device, "tile": args.tile, "input_scale": scale}
    cases = {
        "plain": lambda: enhance_array(image, net, **options),
        "sigma head": lambda: enhance_array_with_sigma(image, combined, **options),
    }
    if not args.no_dihedral:
        cases["dihedral x8"] = lambda: _dihedral(image, net, **options)
    times: dict[str, list[float]] = {name: [] for name in cases}
    for run in cases.values():  # warm-up (allocator, cuDNN autotuning)
        run()
    for _ in range(args.repeats):
        for name, run in cases.items():
            _sync(device)
            start = time.perf_counter()
            run()
            _sync(device)
            times[name].append(time.perf_counter() - start)
    base = statistics.median(times["plain"])
    print(
        f"{args.observable}, {args.size}x{args.size} input, tile {args.tile}, {device}, "
        f"{torch.get_num_threads()} threads, {args.repeats} repeats ({platform.machine()})"
    )
    print("| method | median s | ratio to plain |")
    print("|---|---|---|")
    record = {}
    for name, values in times.items():
        median = statistics.median(values)
        record[name] = {"median_s": median, "ratio": median / base, "all_s": values}
        print(f"| {name} | {median:.3f} | {median / base:.3f} |")
    if args.json:
        doc = {
            "provenance": provenance_record(weights_sha256=meta["sha256"]),
            "head_sha256": head_meta["sha256"],
            "size": args.size,
            "tile": args.tile,
            "device": str(device),
            "threads": torch.get_num_threads(),
            "results": record,
        }
        with open(args.json, "w") as handle:
            json.dump(doc, handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
