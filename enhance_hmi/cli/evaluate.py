"""``enhance evaluate``: score weights on held-out regions against classical methods.

Argument parsing only; the work is :mod:`enhance_hmi.validation.heldout`.
"""

from __future__ import annotations

import argparse
import logging

__all__ = ["register", "run"]

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``evaluate`` subcommand."""
    parser = subparsers.add_parser(
        "evaluate",
        help="compare a network with bicubic, unsharp mask, Richardson-Lucy and Tikhonov "
        "deconvolution on held-out data",
        description=(
            "Degrade the held-out region of each scene (same split as enhance train) and "
            "score the network, bicubic, an unsharp mask, Richardson-Lucy and a Tikhonov "
            "(Wiener-type) deconvolution with the known PSFs against the 28 cm truth, with "
            "the least-squares linear 2x filter fitted on the truth beside them as an upper "
            "bound for linear methods (not a competitor): PSNR, SSIM, quiet-Sun contrast, "
            "power-spectrum distance at 0.05-0.25 px^-1, forward residual (also the "
            "truth's own). Optionally real HMI checks. Writes evaluation.json, "
            "evaluation.md and evaluation.png. With --forward-models, also degrades each "
            "held-out region with every named HMI forward model (PSF x pixel integration) and "
            "scores the network (as shipped, and told the model: its input harmonised to the "
            "model it was trained for), Tikhonov told that model, Tikhonov with the default, "
            "bicubic and the linear bound: forward_grid.csv/.md/.json/.png."
        ),
    )
    parser.add_argument(
        "--weights", required=True, metavar="PATH", help="network weights (.safetensors + .json)"
    )
    parser.add_argument(
        "--scene",
        action="append",
        default=[],
        metavar="PATH[:ARCSEC]",
        help="truth scene (repeat), as for enhance train; its held-out region is scored",
    )
    parser.add_argument(
        "--holdout", type=float, default=0.35, help="held-out column fraction (as trained)"
    )
    parser.add_argument(
        "--hmi",
        action="append",
        default=[],
        metavar="FITS",
        help="a real HMI file to check (repeat): for magnetograms flux, quiet-Sun noise and "
        "forward residual on the central --crop pixels; for continuum quiet-Sun contrast",
    )
    parser.add_argument("--crop", type=int, default=1024, help="magnetogram crop (HMI px)")
    parser.add_argument(
        "--consistency",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="project the network output onto the input within its noise, as enhance predict "
        "does (default: on)",
    )
    parser.add_argument(
        "--symmetries",
        type=_positive_int,
        default=1,
        metavar="N",
        help="average the network over N symmetries of the forward model, as enhance predict "
        "--symmetries does (default: 1, one pass)",
    )
    parser.add_argument(
        "--noise",
        type=float,
        default=None,
        help="input noise in network units (default: the noise the weights were trained with)",
    )
    parser.add_argument(
        "--draws",
        type=_positive_int,
        default=1,
        help="noise realisations (seeds 1..N) of the held-out inputs; the table shows the "
        "mean of each score and the PSNR range (default: 1)",
    )
    parser.add_argument(
        "--forward-models",
        action="append",
        default=[],
        metavar="NAME[,NAME...]",
        help="forward models to degrade the held-out regions with (repeat or comma-separate; "
        "'all' for the whole family): <psf>+pixel or <psf>+point, psf one of wachter, "
        "wachter2012, yeo, airy14 (enhance_hmi.physics.forward_family)",
    )
    parser.add_argument(
        "--grid-noise",
        default=None,
        metavar="LEVEL[,LEVEL...]",
        help="input noise levels of the forward-model grid, each its own rows: numbers in "
        "network units, or the cadences 720s and 45s (enhance_hmi.physics.noise.CADENCE_NOISE; "
        "'cadences' for both); default --noise",
    )
    parser.add_argument("-o", "--out", required=True, metavar="DIR", help="output directory")
    parser.set_defaults(func=run)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from exc
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def grid_noise_levels(text: str | None, observable: str) -> list[float]:
    """The ``--grid-noise`` levels in network units (empty: none given).

    Raises
    ------
    ConfigError
        A word that is neither a number nor a cadence.
    """
    from enhance_hmi.errors import ConfigError
    from enhance_hmi.physics.noise import CADENCE_NOISE

    cadences = CADENCE_NOISE[observable]
    levels: list[float] = []
    for word in (w.strip() for w in (text or "").split(",") if w.strip()):
        if word == "cadences":
            levels += list(cadences.values())
        elif word in cadences:
            levels.append(cadences[word])
        else:
            try:
                value = float(word)
            except ValueError:
                value = -1.0
            if not value > 0:
                raise ConfigError(
                    f"--grid-noise takes positive numbers or {', '.join(cadences)} or "
                    f"'cadences'; got {word!r}"
                )
            levels.append(value)
    return list(dict.fromkeys(levels))


def run(args: argparse.Namespace) -> int:
    """Run ``enhance evaluate``; return the exit code."""
    from enhance_hmi.heap import keep_freed_memory

    keep_freed_memory()  # the CPU network reuses freed activations (enhance_hmi.heap)
    from enhance_hmi.errors import ConfigError
    from enhance_hmi.inference.symmetry import symmetry_group
    from enhance_hmi.model import psf_model_of, read_sidecar
    from enhance_hmi.training import held_out_pairs, load_scenes
    from enhance_hmi.validation.heldout import (
        evaluate_hmi_continuum,
        evaluate_hmi_magnetograms,
        evaluate_over_draws,
        format_table,
        write_evaluation,
    )

    if not args.scene:
        raise ConfigError("give at least one --scene to evaluate on")
    from enhance_hmi.physics.forward_family import parse_forward_models

    members = parse_forward_models(args.forward_models) if args.forward_models else ()
    sidecar = read_sidecar(args.weights)
    observable = sidecar["observable"]
    symmetry_group(args.symmetries, observable)  # a count without a group: refused before work
    scenes = load_scenes(args.scene, observable)
    pairs = held_out_pairs(scenes, holdout=args.holdout, psf_model=psf_model_of(sidecar))
    rows, per_draw, images = evaluate_over_draws(
        args.weights,
        pairs,
        draws=args.draws,
        noise_sigma=args.noise,
        consistency=args.consistency,
        symmetries=args.symmetries,
    )
    hmi = None
    if args.hmi:
        if observable == "continuum":
            hmi = [
                evaluate_hmi_continuum(
                    args.weights, p, consistency=args.consistency, symmetries=args.symmetries
                )
                for p in args.hmi
            ]
        else:
            hmi = evaluate_hmi_magnetograms(
                args.weights,
                args.hmi,
                crop=args.crop,
                consistency=args.consistency,
                symmetries=args.symmetries,
            )
    paths = write_evaluation(
        args.out,
        weights=args.weights,
        rows=rows,
        images=images,
        hmi=hmi,
        per_draw=per_draw,
        symmetries=args.symmetries,
    )
    print(format_table(rows))
    if hmi:
        import json

        print(json.dumps(hmi, indent=1))
    log.info("wrote %s", ", ".join(str(p) for p in paths.values()))
    if members:
        from enhance_hmi.validation.forward_grid import (
            evaluate_forward_grid,
            format_grid_table,
            write_forward_grid,
        )

        grid = evaluate_forward_grid(
            args.weights,
            scenes,
            members,
            holdout=args.holdout,
            noise_sigma=grid_noise_levels(args.grid_noise, observable) or args.noise,
            consistency=args.consistency,
            symmetries=args.symmetries,
        )
        grid_paths = write_forward_grid(
            args.out, weights=args.weights, rows=grid, symmetries=args.symmetries
        )
        print(format_grid_table(grid))
        log.info("wrote %s", ", ".join(str(p) for p in grid_paths.values()))
    return 0
