"""``enhance validate``: a validation report (HTML + JSON + figures) for one target.

Two kinds of target:

* ``--twin SCENE.fits``: a high-resolution scene degraded by the package's
  physics into an HMI-like input and a 28 cm truth (offline synthetic twin,
  :func:`enhance_hmi.validation.twin.run_twin`);
* ``--hinode FILE --enhanced FRAMES...``: a real Hinode SOT file degraded to
  28 cm and co-aligned with the nearest enhanced HMI frame
  (:func:`enhance_hmi.validation.target.run_target`).

Argument parsing only; values are checked by the library so that a bad value
gives one line on standard error.
"""

from __future__ import annotations

import argparse
import logging

from enhance_hmi.errors import ConfigError

__all__ = ["register", "run"]

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``validate`` subcommand.

    Long: one ``add_argument`` per option, each with its help text.
    """
    parser = subparsers.add_parser(
        "validate",
        help="validation report: Enhance vs a 28 cm truth (synthetic twin or Hinode)",
        description=(
            "Compare HMI (bicubic), Enhance, Richardson-Lucy and unsharp masking with "
            "what a diffraction-limited 28 cm telescope would see (Diaz Baso & Asensio "
            "Ramos 2018, A&A 614, A5, Sect. 4). Writes report.html, metrics.json and "
            "the figures into the output directory."
        ),
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--twin", metavar="SCENE.fits", help="high-resolution scene used as the truth (twin)"
    )
    source.add_argument("--hinode", metavar="FILE", help="Hinode SOT FITS file (real target)")
    parser.add_argument(
        "-o", "--output", required=True, metavar="DIR", help="report directory (created)"
    )
    parser.add_argument("--name", default=None, help="target name (default: the file name)")
    twin = parser.add_argument_group("synthetic twin")
    twin.add_argument(
        "--pixel-scale",
        default=None,
        metavar="ARCSEC",
        help="pixel scale of the scene in arcsec (default: its CDELT1)",
    )
    twin.add_argument(
        "--weights",
        default=None,
        metavar="PATH",
        help="network weights (.safetensors + .json sidecar); default: shipped weights",
    )
    twin.add_argument(
        "--observable",
        default=None,
        metavar="{continuum,magnetogram}",
        help="what the scene shows (default: the weights' observable)",
    )
    twin.add_argument(
        "--crop", default=None, metavar="N", help="use the central N x N scene pixels"
    )
    twin.add_argument(
        "--held-out",
        default=None,
        metavar="FRACTION",
        help=(
            "use only the held-out columns of enhance train's split (e.g. 0.35, the "
            "default split): pixels the shipped networks never saw"
        ),
    )
    twin.add_argument(
        "--noise",
        default=None,
        metavar="SIGMA",
        help="input noise (default: the paper's, 1e-3 continuum, 10 G magnetograms)",
    )
    twin.add_argument("--seed", default="0", metavar="N", help="noise seed (default 0)")
    twin.add_argument("--device", default="auto", metavar="{auto,cpu,cuda}", help="default: auto")
    twin.add_argument("--tile", default="256", metavar="N", help="inference tile (default 256)")
    twin.add_argument(
        "--symmetries",
        default="1",
        metavar="N",
        help="average the network over N symmetries of the forward model, as enhance predict "
        "--symmetries does: 1 (default, one pass), 2, 4 or 8",
    )
    real = parser.add_argument_group("Hinode target")
    real.add_argument(
        "--enhanced",
        nargs="+",
        default=None,
        metavar="FRAME",
        help="enhanced HMI FITS frames; the one nearest in time to the Hinode file is used",
    )
    real.add_argument(
        "--hmi",
        nargs="+",
        default=(),
        metavar="FRAME",
        help="HMI input frames of the enhanced ones (for the bicubic/RL baselines)",
    )
    real.add_argument(
        "--max-dt",
        default="30",
        metavar="MINUTES",
        help="largest accepted time between Hinode and the HMI frame (default 30)",
    )
    parser.set_defaults(func=run)


def _number(value: str | None, option: str, kind: type = float, minimum: float | None = None):
    if value is None:
        return None
    try:
        number = kind(value)
    except ValueError as exc:
        raise ConfigError(f"{option} must be a number, got {value!r}") from exc
    if minimum is not None and number < minimum:
        raise ConfigError(f"{option} must be >= {minimum}, got {value!r}")
    return number


def run(args: argparse.Namespace) -> int:
    """Run ``enhance validate``; return the exit code."""
    from enhance_hmi.heap import keep_freed_memory

    keep_freed_memory()  # the CPU network reuses freed activations (enhance_hmi.heap)
    import astropy.units as u

    if args.twin:
        if args.enhanced or args.hmi:
            raise ConfigError("--enhanced and --hmi go with --hinode, not with --twin")
        pixel_scale = _number(args.pixel_scale, "--pixel-scale", minimum=1e-6)
        crop = _number(args.crop, "--crop", int, 16)
        holdout = _number(args.held_out, "--held-out", float, 0.0)
        noise = _number(args.noise, "--noise", minimum=0.0)
        seed = _number(args.seed, "--seed", int, 0)
        tile = _number(args.tile, "--tile", int, 16)
        from enhance_hmi.settings import check_symmetries
        from enhance_hmi.validation.twin import run_twin

        text = str(args.symmetries).strip()
        check_symmetries(int(text) if text.isdigit() else text, name="--symmetries")
        symmetries = int(text)

        html = run_twin(
            args.twin,
            args.output,
            weights=args.weights,
            observable=args.observable,
            pixel_scale=pixel_scale,
            crop=crop,
            holdout=holdout,
            noise_sigma=noise,
            seed=seed,
            device=args.device,
            tile=tile,
            name=args.name,
            symmetries=symmetries,
        )
    else:
        if str(args.symmetries).strip() != "1":
            raise ConfigError(
                "--symmetries goes with --twin; with --hinode the enhanced frames say how they "
                "were made (ENHSYMM)"
            )
        if not args.enhanced:
            raise ConfigError("--hinode needs --enhanced FRAME... (enhanced HMI FITS files)")
        max_dt = _number(args.max_dt, "--max-dt", minimum=0.0)
        from enhance_hmi.validation.target import run_target

        html = run_target(
            args.hinode,
            args.enhanced,
            args.output,
            hmi_paths=args.hmi,
            max_time_difference=max_dt * u.min,
            name=args.name,
        )
    log.info("wrote %s", html)
    print(html)
    return 0
