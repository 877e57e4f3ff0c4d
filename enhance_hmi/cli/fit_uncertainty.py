"""``enhance fit-uncertainty``: fit and calibrate the per-pixel sigma of a trained network.

Argument parsing only; the work is :func:`enhance_hmi.training.uncertainty.fit_uncertainty`.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from enhance_hmi.training.family_calibration import FamilyFit
    from enhance_hmi.training.uncertainty import UncertaintyFit

__all__ = ["register", "run"]

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``fit-uncertainty`` subcommand."""
    parser = subparsers.add_parser(
        "fit-uncertainty",
        help="fit the per-pixel uncertainty head of a network and calibrate it on held-out data",
        description=(
            "Train a small sigma head on the frozen network's last feature maps and the local "
            "input noise with a Gaussian negative log-likelihood on the training regions of "
            "the scenes (the split of enhance train), calibrate it on the held-out regions "
            "against the output enhance predict ships (projected onto the input by default) "
            "with one log-linear map of the head's sigma, the local spread and level of the "
            "network output and the local spread of its input, measure the coverage per "
            "held-out region (and leaving each region out of the fit) and write "
            "NAME.uncertainty.safetensors + .json beside the network (and a calibration PNG)."
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
    parser.add_argument(
        "--forward-family",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also fit how sigma follows the HMI forward model a run is told: a weight per "
        "member told, the family's spread when told nothing (default: on)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``enhance fit-uncertainty``; return the exit code."""
    import torch

    from enhance_hmi.errors import ConfigError
    from enhance_hmi.model import read_sidecar
    from enhance_hmi.training import load_scenes
    from enhance_hmi.training.uncertainty import SigmaHeadConfig, fit_uncertainty

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
        forward_family=args.forward_family,
    )
    print_summary(result)
    log.info("wrote %s and %s", result.path, result.figure)
    return 0


def print_summary(result: UncertaintyFit) -> None:
    """The fitted map and the coverage tables of ``fit_uncertainty``'s result, on stdout.

    Each table's title gives the input noise and noise seed it was measured
    with; the held-out table has the leave-one-region-out coverage beside
    the coverage of the map fitted on all regions.
    """
    a, b, c, e = result.calibration.map.exponents
    print(
        f"calibration map: factor {result.calibration_scale:.4f} at the reference, "
        f"exponents head sigma {a:.3f}, output local std {b:.3f}, output local level {c:.3f}, "
        f"input local std {e:.3f}"
    )
    coverage = result.coverage
    noise, units, seeds = result.held_out_noise, result.units, coverage.seeds
    nominal = f"input noise {noise:.4g} {units}, noise seed {seeds[1.0]}".replace(" ,", ",")
    _table(
        f"held-out coverage ({nominal}): fitted on all regions, and with the region left out "
        "of the fit",
        coverage.rows,
        left_out=coverage.leave_one_region_out,
    )
    for factor in (f for f in coverage.noise_factors if f != 1.0):
        _table(
            f"{factor:g}x the input noise ({factor * noise:.4g} {units}, noise seed "
            f"{seeds[factor]})".replace(" ,", ","),
            [r for r in coverage.noisier if r.get("noise_factor") == factor],
        )
    if coverage.unprojected:
        _table(
            f"the same sigma against the un-projected output ({nominal})",
            coverage.unprojected,
        )
    for alt in result.comparison.alternatives:
        _table(
            f"{alt.name} ({alt.forward_passes} passes, scale {alt.calibration_scale:.4f})",
            alt.coverage,
        )
    if result.family is not None:
        _family_table(result.family)
    print(result.path)


def _family_table(family: FamilyFit) -> None:
    """The forward-family calibration and its coverage, scene left out, on stdout.

    Told: bold outside 68 +- 5 / 95 +- 3 %; told nothing: bold below 60 / 90 %.
    """
    fit = family.sigma
    factors = ", ".join(f"{k} kappa {v:g}" for k, v in fit.told_kappas.items())
    print(
        f"\nforward family: trained for {fit.trained}; told a member: {factors}; "
        f"told nothing: family spread with kappa {fit.untold_kappa:g}"
    )
    print(
        f"coverage with each scene left out of the family fit (fit draw set {family.seeds[0]}, "
        f"measured on draw set {family.seeds[1]}):"
    )
    print("| held-out region | member | noise | told: 1 / 2 sigma | told nothing: 1 / 2 sigma |")
    print("|---|---|---|---|---|")
    for row in family.leave_one_scene_out:
        told = (
            f"{_mark(100 * row['told_within_1sigma'], 68.0, 5)} / "
            f"{_mark(100 * row['told_within_2sigma'], 95.0, 3)} %"
        )
        one, two = 100 * row["untold_within_1sigma"], 100 * row["untold_within_2sigma"]
        untold = (
            f"{one:.1f}" if one >= 60 else f"**{one:.1f}**",
            f"{two:.1f}" if two >= 90 else f"**{two:.1f}**",
        )
        print(
            f"| {row['region']} | {row['member']} | x{row['noise_factor']:g} | {told} | "
            f"{untold[0]} / {untold[1]} % |"
        )


def _table(
    title: str, rows: list[dict[str, Any]], *, left_out: list[dict[str, Any]] | None = None
) -> None:
    """One coverage table as Markdown on stdout (bold: outside 68 +- 5 / 95 +- 3 %).

    With ``left_out`` (leave-one-region-out rows), their 1- and 2-sigma
    coverage is printed beside each region's.
    """
    by_region = {row["region"]: row for row in left_out or ()}
    print(f"\n{title}:")
    header = "| held-out region | within 1 sigma | within 2 sigma |"
    if left_out is not None:
        header += " region left out: 1 sigma | region left out: 2 sigma |"
    header += " median sigma | rmse |"
    print(header)
    print("|---" * (header.count("|") - 1) + "|")
    for row in rows:
        one, two = 100 * row["within_1sigma"], 100 * row["within_2sigma"]
        noise = row.get("noise_factor", 1.0)
        label = row["region"] + (f" (noise x{noise:g})" if noise != 1.0 else "")
        line = f"| {label} | {_mark(one, 68.0, 5)} % | {_mark(two, 95.0, 3)} % |"
        if left_out is not None:
            out = by_region.get(row["region"])
            if out is None:
                line += " - | - |"
            else:
                line += (
                    f" {_mark(100 * out['within_1sigma'], 68.0, 5)} % |"
                    f" {_mark(100 * out['within_2sigma'], 95.0, 3)} % |"
                )
        print(f"{line} {row['median_sigma']:.4g} | {row['rmse']:.4g} |")


def _mark(value: float, goal: float, tolerance: float) -> str:
    text = f"{value:.1f}"
    return text if abs(value - goal) <= tolerance else f"**{text}**"
