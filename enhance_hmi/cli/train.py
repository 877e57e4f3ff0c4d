"""``enhance train``: train a network on high-resolution truth scenes.

Argument parsing only; the work is :func:`enhance_hmi.training.train`.
"""

from __future__ import annotations

import argparse
import logging
import sys

from enhance_hmi.errors import ConfigError
from enhance_hmi.physics.psf import DEFAULT_PSF_MODEL

__all__ = ["register", "run"]

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``train`` subcommand."""
    parser = subparsers.add_parser(
        "train",
        help="train a network on high-resolution scenes (degraded with enhance_hmi.physics)",
        description=(
            "Train the Enhance network (Diaz Baso & Asensio Ramos 2018, A&A 614, A5) on "
            "high-resolution truth scenes: each scene is split into a training region and "
            "a held-out region; the training region is augmented (any rotation, sub-pixel "
            "phases, flips, noise) and degraded to HMI input / 28 cm target pairs. "
            "Rerunning with the same --out resumes from its checkpoint."
        ),
    )
    parser.add_argument("--observable", required=True, choices=("continuum", "magnetogram"))
    parser.add_argument(
        "--scene",
        action="append",
        required=True,
        metavar="PATH[:ARCSEC]",
        help=(
            "truth scene (repeat). Continuum: high-resolution FITS image, pixel scale from "
            "CDELT1 or :ARCSEC. Magnetogram: an HMI full-disk magnetogram used self-similarly"
        ),
    )
    parser.add_argument(
        "--scene-weight",
        action="append",
        type=float,
        default=None,
        metavar="W",
        help="one per --scene, in order: patches are drawn in proportion to each scene's "
        "training area times W (default 1 each)",
    )
    parser.add_argument("--out", required=True, metavar="DIR", help="run directory")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--patch", type=int, default=40, help="input patch side (paper 50)")
    parser.add_argument("--lr", type=float, default=1e-4, help="Adam learning rate (paper 1e-4)")
    parser.add_argument("--lr-final", type=float, default=None, help="cosine decay to this rate")
    parser.add_argument("--n-blocks", type=int, default=5)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--variants", type=int, default=16, help="augmented degradations/scene")
    parser.add_argument("--holdout", type=float, default=0.35, help="held-out column fraction")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--val-every", type=int, default=100)
    parser.add_argument("--max-minutes", type=float, default=None)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument(
        "--psf",
        default=DEFAULT_PSF_MODEL,
        help=f"HMI PSF model of the degradation (default {DEFAULT_PSF_MODEL}, paper eq. 1)",
    )
    parser.add_argument(
        "--noise",
        type=float,
        default=None,
        help="input noise sigma in network units (default: paper, 1e-3 continuum, 1e-2 kG Blos)",
    )
    parser.add_argument(
        "--noise-range",
        type=float,
        nargs=2,
        metavar=("LOW", "HIGH"),
        default=None,
        help="per-patch input noise, log-uniform in [LOW, HIGH] (network units)",
    )
    parser.add_argument(
        "--contrast-range",
        type=float,
        nargs=2,
        metavar=("LOW", "HIGH"),
        default=None,
        help="continuum: per-patch granulation rms contrast in [LOW, HIGH] (e.g. 0.03 0.09)",
    )
    parser.add_argument(
        "--linear-skip",
        type=int,
        default=0,
        metavar="K",
        help="add a learned KxK linear polyphase 2x filter of the input to the output (0: off)",
    )
    parser.add_argument(
        "--bn-recalibration",
        type=int,
        default=200,
        help="batches for the final batch-norm statistics (0: keep the running ones)",
    )
    parser.add_argument(
        "--init",
        metavar="WEIGHTS",
        default=None,
        help="start from this weights file (same width and linear skip; a larger "
        "--n-blocks adds blocks that start as the identity); the new sidecar keeps its "
        "inference settings and extends its training history",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``enhance train``; return the exit code."""
    from enhance_hmi.heap import keep_freed_memory

    keep_freed_memory()  # the CPU network reuses freed activations (enhance_hmi.heap)
    from enhance_hmi.training import TrainConfig, build_pairs, load_scenes, train

    config = TrainConfig(
        observable=args.observable,
        steps=args.steps,
        batch=args.batch,
        patch=args.patch,
        lr=args.lr,
        lr_final=args.lr_final,
        n_blocks=args.n_blocks,
        width=args.width,
        seed=args.seed,
        val_every=args.val_every,
        checkpoint_every=args.val_every,
        max_minutes=args.max_minutes,
        threads=args.threads,
        psf_model=args.psf,
        bn_recalibration=args.bn_recalibration,
        noise_sigma=args.noise,
        noise_range=tuple(args.noise_range) if args.noise_range else None,
        contrast_range=tuple(args.contrast_range) if args.contrast_range else None,
        linear_skip=args.linear_skip,
        init_weights=args.init,
    )
    if args.scene_weight is not None and len(args.scene_weight) != len(args.scene):
        raise ConfigError(
            f"give one --scene-weight per --scene ({len(args.scene)} scenes); "
            f"got {len(args.scene_weight)}"
        )
    scenes = load_scenes(args.scene, args.observable)
    train_pairs, held_pairs = build_pairs(
        scenes,
        variants=args.variants,
        holdout=args.holdout,
        seed=args.seed,
        psf_model=args.psf,
        weights=args.scene_weight,
    )
    weight_notes = [
        f"{s.name}: patches drawn in proportion to its training area x {w:g}"
        for s, w in zip(scenes, args.scene_weight or [], strict=args.scene_weight is not None)
    ]
    sources = (
        [s.source for s in scenes]
        + weight_notes
        + [
            f"held out: right {args.holdout:.0%} of the columns of each scene",
            f"{args.variants} augmented degradations of each training region",
        ]
    )
    weights = train(
        config,
        train_pairs,
        held_pairs,
        args.out,
        training_data=sources,
        progress=sys.stderr.isatty(),
    )
    log.info("wrote %s", weights)
    print(weights)
    return 0
