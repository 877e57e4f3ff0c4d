"""What sigma over the forward-model family costs on a real full disk, in one run.

``enhance_frame`` is run on one real full-disk HMI frame with sigma, told the
network's own forward model (the head's sigma alone) and told nothing (the
family's error variance of the 8192x8192 output added:
:func:`enhance_hmi.physics.forward_family.family_error_variance`, five members),
interleaved, and the medians and their ratio are printed with the time of the
family term alone on the same output. Only ratios from one run compare (the
machine is shared). From the repository root::

    python bench/family_sigma_cost.py \\
        ../shared/data/hmi/fulldisk/hmi.M_720s.20160707_010000_TAI.magnetogram.fits
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import numpy as np

from enhance_hmi.inference import enhance_frame
from enhance_hmi.io import read_hmi
from enhance_hmi.physics.forward_family import ForwardModelSpec, family_error_variance
from enhance_hmi.provenance import provenance_record


def main(argv: list[str] | None = None) -> int:
    """Time the two runs and the family term; print JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("frame", help="a real full-disk HMI FITS file")
    parser.add_argument("--observable", default="magnetogram")
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args(argv)
    frame = read_hmi(args.frame, observable=args.observable)
    times: dict[str, list[float]] = {"told its own": [], "told nothing": []}
    last = None
    runs = (("told its own", {"psf_model": "wachter2012"}), ("told nothing", {}))
    for _ in range(args.repeats):
        for label, options in runs:
            start = time.perf_counter()
            last = enhance_frame(frame, device="cpu", uncertainty=True, **options)
            times[label].append(time.perf_counter() - start)
    assert last is not None
    start = time.perf_counter()
    family_error_variance(last.data, trained=ForwardModelSpec("wachter2012", True))
    term = time.perf_counter() - start
    median = {k: statistics.median(v) for k, v in times.items()}
    sigma = last.meta["sigma"].data
    print(
        json.dumps(
            {
                "frame": args.frame.rsplit("/", 1)[-1],
                "output_shape": list(last.data.shape),
                "median_seconds": median,
                "ratio_told_nothing": median["told nothing"] / median["told its own"],
                "family_term_seconds": term,
                "sigma_median_told_nothing": float(np.nanmedian(sigma)),
                "provenance": provenance_record(),
            },
            indent=1,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
