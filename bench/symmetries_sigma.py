"""Held-out sigma coverage of a shipped network with its head, averaged over 1, 2, ... symmetries.

With ``enhance predict --symmetries N`` the sigma is the mean of the head's
over the N passes (:func:`enhance_hmi.inference.enhance_array_with_sigma`);
the head was calibrated on one pass. This scores both on the held-out
regions the head's coverage is reported on (docs/model_card.md): each
region degraded with the network's forward model, the held-out noise of
``enhance fit-uncertainty`` (one draw, ``--seed``), the network and its
calibrated head run as ``enhance predict`` runs them (projection on), and
the fraction of target pixels within 1 and 2 sigma (8-pixel border left
out). The same draws for every count. One run, figures printed, nothing
asserted.

Usage::

    python bench/symmetries_sigma.py --observable magnetogram [--counts 1 2] [--seed 11]
"""

from __future__ import annotations

import argparse
import functools
from pathlib import Path

import numpy as np

from enhance_hmi.inference import enhance_array_with_sigma, symmetry_group
from enhance_hmi.inference.consistency import project_as_recipe
from enhance_hmi.inference.uncertainty import with_uncertainty
from enhance_hmi.model import default_weights, load_weights
from enhance_hmi.training import load_scenes
from enhance_hmi.training.sigma_head import SigmaHeadConfig
from enhance_hmi.training.uncertainty import prepare_fit
from enhance_hmi.training.uncertainty_calibration import held_out_coverage

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
SCENES = {
    "magnetogram": ["hinode/FGMG4_20110214_030443.7.cols0-879.fits"],
    "continuum": [
        "highres/muram_quiet_ic_0.0662.fits",
        "highres/sst_crisp_wb8542_qs_20190801.fits",
        "highres/sst_crisp_wb8542_spot_20200727.fits",
    ],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--observable", choices=sorted(SCENES), default="magnetogram")
    parser.add_argument("--counts", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--shared", type=Path, default=SHARED)
    args = parser.parse_args()
    path = default_weights(args.observable)
    scenes = load_scenes([str(args.shared / s) for s in SCENES[args.observable]], args.observable)
    inputs = prepare_fit(path, scenes, SigmaHeadConfig(), projected=True)
    model, meta = load_weights(path)
    combined, _ = with_uncertainty(path, model, meta)

    def predict(count: int, data: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        out, sigma = enhance_array_with_sigma(
            data,
            combined,
            device="cpu",
            input_scale=inputs.input_scale,
            symmetries=symmetry_group(count, args.observable),
        )
        return project_as_recipe(out, data, meta)[0], sigma

    print(f"{args.observable}: held-out noise {inputs.held_out_noise:g}, seed {args.seed}")
    for count in args.counts:
        rows, _ = held_out_coverage(
            functools.partial(predict, count),
            inputs.held,
            noise=inputs.held_out_noise,
            seed=args.seed,
            border=8,
        )
        for row in rows:
            print(
                f"symmetries {count} | {row['region']} | "
                f"within 1 sigma {100 * row['within_1sigma']:.1f} % | "
                f"within 2 sigma {100 * row['within_2sigma']:.1f} % | "
                f"rmse {row['rmse']:.4g} | median sigma {row['median_sigma']:.4g}",
                flush=True,
            )


if __name__ == "__main__":
    main()
