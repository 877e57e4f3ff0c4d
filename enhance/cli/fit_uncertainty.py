"""``enhance fit-uncertainty``: fit and calibrate the per-pixel sigma of a trained network.

Argument parsing only; the work is :func:`enhance.training.uncertainty.fit_uncertainty`.
"""

from __future__ import annotations

import argparse
import logging
import sys

__all__ = ["register", "run"]

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``fit-uncertainty`` subcommand."""
    parser = subparsers.add_parser(
        "fit-uncertainty",
        help="fit the per-pixel uncertainty head of a network and calibrate it on held-out data",
        description=(
            "Train a small sigma head on the frozen network's last feature maps and the local "
            "input noise with a Gaussian negative log-likelihood on the training regions of "
            "the scenes (the split of enhance train), calibrate it on the held-out regions "
            "against the output enhance predict ships (projected onto the input by default) "
            "with one log-linear map of the head's sigma and the local spread and level of the "
            "network output, measure the coverage per held-out region (and leaving each region "
            "out of the fit) and write NAME.uncertainty.safetensors + .json beside the network "
            "(and a calibration PNG)."
        ),
    )
    parser.add_argument("--weights", required=True, metavar="PATH", help="network weights")
    parser.add_argument(
        "--scene",
        action="append",
        required=True,
        metavar="PATH[:ARCSEC]",
        help="truth scene (repeat; as for enhance train; a Hinode NFI V/I file is recognised)",
    )
    parser.add_argument("--out", default=None, metavar="PATH", help="head weights file")
    parser.add_argument("--figure", default=None, metavar="PNG", help="calibration figure")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--variants", type=int, default=6, help="augmented degradations/scene")
    parser.add_argument("--holdout", type=float, default=0.35, help="held-out column fraction")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument(
        "--compare-dihedral",
        action="store_true",
        help="also calibrate and score test-time averaging over the 8 dihedral symmetries",
    )
    parser.add_argument(
        "--consistency",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="calibrate against the output projected onto the input, as enhance predict ships "
        "it by default (default: on; --no-consistency: against the network output)",
    )
    parser.add_argument(
        "--calibrate-only",
        default=None,
        metavar="HEAD.safetensors",
        help="do not train: refit the calibration map of this head (fitted for --weights) and "
        "measure its coverage again",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``enhance fit-uncertainty``; return the exit code."""
    import torch

    from enhance.errors import ConfigError
    from enhance.model import read_sidecar
    from enhance.training import load_scenes
    from enhance.training.uncertainty import SigmaHeadConfig, fit_uncertainty

    if args.threads < 1:
        raise ConfigError(f"--threads must be a positive integer, got {args.threads}")
    torch.set_num_threads(args.threads)
    observable = read_sidecar(args.weights)["observable"]
    config = SigmaHeadConfig(
        steps=args.steps,
        batch=args.batch,
        variants=args.variants,
        holdout=args.holdout,
        seed=args.seed,
    )
    result = fit_uncertainty(
        args.weights,
        load_scenes(args.scene, observable),
        config=config,
        out=args.out,
        figure=args.figure,
        compare_dihedral=args.compare_dihedral,
        calibrate_only=args.calibrate_only,
        consistency=args.consistency,
        progress=sys.stderr.isatty(),
    )
    calibration = result["calibration"]
    a, b, c = calibration.exponents
    print(
        f"calibration map: factor {result['calibration_scale']:.4f} at the reference, "
        f"exponents head sigma {a:.3f}, output local std {b:.3f}, output local level {c:.3f}"
    )
    _table("held-out coverage (noise seed 2)", result["coverage"])
    _table("3x the input noise", result["coverage_noisier"])
    if result["coverage_unprojected"]:
        _table("the same sigma against the un-projected output", result["coverage_unprojected"])
    _table("leave one region out (map fitted without the region)", result["leave_one_region_out"])
    for name, alt in result["alternatives"].items():
        _table(
            f"{name} ({alt['forward_passes']} passes, scale {alt['calibration_scale']:.4f})",
            alt["coverage"],
        )
    print(result["path"])
    log.info("wrote %s and %s", result["path"], result["figure"])
    return 0


def _table(title: str, rows: list[dict]) -> None:
    """One coverage table as Markdown on stdout (bold: outside 68 +- 5 / 95 +- 3 %)."""
    print(f"\n{title}:")
    print("| held-out region | within 1 sigma | within 2 sigma | median sigma | rmse |")
    print("|---|---|---|---|---|")
    for row in rows:
        one, two = 100 * row["within_1sigma"], 100 * row["within_2sigma"]
        noise = row.get("noise_factor", 1.0)
        label = row["region"] + (f" (noise x{noise:g})" if noise != 1.0 else "")
        print(
            f"| {label} | {_mark(one, 68.0, 5)} % | {_mark(two, 95.0, 3)} % | "
            f"{row['median_sigma']:.4g} | {row['rmse']:.4g} |"
        )


def _mark(value: float, goal: float, tolerance: float) -> str:
    text = f"{value:.1f}"
    return text if abs(value - goal) <= tolerance else f"**{text}**"
