"""``enhance predict``: enhance one HMI FITS file.

Argument parsing only: the options whose destination is a field of
:class:`enhance_hmi.settings.EnhanceSettings` become the run's settings
(:func:`settings_from_arguments`); the work is
:func:`enhance_hmi.pipeline.enhance_file`.
As an entry point it makes the process-wide choice the library leaves to
its callers: freed memory stays in the process
(:func:`enhance_hmi.heap.keep_freed_memory`; ``ENHANCE_KEEP_FREED_MEMORY=0``
turns it off).
Option values are taken as plain strings and validated there, so a bad
value gives one line on standard error (argparse ``choices`` would print the
usage as well).
"""

from __future__ import annotations

import argparse
import logging
import sys

from enhance_hmi.settings import EnhanceSettings

__all__ = ["register", "run", "settings_from_arguments"]

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``predict`` subcommand.

    Long: one ``add_argument`` per option, each with its help text.
    """
    parser = subparsers.add_parser(
        "predict",
        help="deconvolve and 2x super-resolve one HMI FITS file",
        description=(
            "Deconvolve and 2x super-resolve one HMI continuum image or magnetogram "
            "(Diaz Baso & Asensio Ramos 2018, A&A 614, A5). The output FITS file has "
            "a 2x WCS and provenance keywords; continuum is written in quiet-Sun "
            "units, magnetograms in gauss."
        ),
    )
    parser.add_argument("input", metavar="INPUT.fits", help="HMI FITS file (JSOC level 1.5)")
    parser.add_argument(
        "-o", "--output", required=True, metavar="OUTPUT.fits", help="enhanced FITS file to write"
    )
    parser.add_argument(
        "--observable",
        metavar="{continuum,magnetogram}",
        help="what the input shows (default: read from the file header or name)",
    )
    parser.add_argument("--device", metavar="{auto,cpu,cuda}", help="default: auto")
    parser.add_argument("--precision", metavar="{fp32,bf16,fp16}", help="default: fp32")
    parser.add_argument(
        "--tile",
        metavar="N",
        help="inference tile size in pixels (default 512, the fastest on a CPU)",
    )
    parser.add_argument(
        "--normalize",
        metavar="{auto,quiet-sun,none}",
        help=(
            "continuum normalisation: auto (limb-darkening fit on full disk, quiet-Sun "
            "level otherwise), quiet-sun, or none (input already in quiet-Sun units)"
        ),
    )
    parser.add_argument(
        "--weights",
        metavar="PATH",
        help="network weights (.safetensors + .json sidecar); default: shipped weights",
    )
    parser.add_argument(
        "--compression",
        metavar="{gzip,rice,none}",
        help="output: lossless gzip (default), lossy rice (noise/16 quantisation), or none",
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="compile the network with torch.compile (~20 s once, then ~10%% faster on a CPU; "
        "worth it for full-disk frames)",
    )
    parser.add_argument(
        "--no-scale-check",
        dest="check_scale",
        action="store_false",
        help="enhance even if the header's pixel scale is not the one the network was "
        "trained for (HMI's 0.504\"/px unless the weights' sidecar says otherwise), or "
        "is missing",
    )
    parser.add_argument(
        "--no-range-check",
        dest="check_range",
        action="store_false",
        help="use the values as they are, even if they do not fit the observable "
        "(e.g. |Blos| > 10 kG or negative intensities); infinite pixels and fill "
        "values are masked regardless",
    )
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar over the network's windows on standard error "
        "(default: shown when standard error is a terminal)",
    )
    parser.add_argument(
        "--uncertainty",
        action=argparse.BooleanOptionalAction,
        help="write the per-pixel sigma as a SIGMA HDU (same WCS and units), from the "
        "network's uncertainty head (default: when one is installed for the weights, as "
        "for the shipped networks; --uncertainty makes a missing head an error)",
    )
    parser.add_argument(
        "--consistency",
        action=argparse.BooleanOptionalAction,
        help="project the network output onto the images that give back the input within "
        "its noise when observed again by HMI (default: on)",
    )
    parser.add_argument(
        "--symmetries",
        metavar="N",
        help="average the network over N symmetries of the forward model, one pass each: "
        "1 (default, as trained), 2, 4 or 8 (turns and mirror images; for magnetograms "
        "first the sign of the field); 2 costs twice the network's time",
    )
    parser.add_argument(
        "--input-noise",
        metavar="VALUE",
        help="input noise (1 sigma) the projection stops at, instead of the estimate from the "
        "input: a field for a magnetogram (e.g. 10G), quiet-Sun units for continuum "
        "(e.g. 0.002); worth giving for active-region cut-outs, where the magnetogram "
        "estimate falls back to the spectral level, low for correlated 720 s noise",
    )
    parser.add_argument(
        "--psf-model",
        metavar="{wachter,wachter2012,yeo,airy14}",
        help="HMI PSF the data were made with; another than the network's tells it: its "
        "input is harmonised to its own, and the projection and the quality figures use "
        "this one (default: the one the network was trained for, wachter2012 for the "
        "shipped networks). Naming any, the network's own included, gives the sigma for that "
        "forward model; naming none, sigma allows for every plausible one",
    )
    parser.add_argument(
        "--pixel-integration",
        action=argparse.BooleanOptionalAction,
        help="whether that forward model integrates over the CCD pixel (default: as the "
        "network was trained, yes for the shipped networks); --no-pixel-integration: the "
        "measured PSF already includes the pixel",
    )
    for action in parser._actions:  # an option left out keeps the settings' default
        if action.dest in EnhanceSettings.option_names():
            action.default = argparse.SUPPRESS
    parser.set_defaults(func=run)


def settings_from_arguments(args: argparse.Namespace) -> EnhanceSettings:
    """The :class:`~enhance_hmi.settings.EnhanceSettings` the given options describe.

    Every option whose destination is a settings field, as typed; those left
    out keep the settings' defaults. A bad value is refused naming the
    option (``--tile must be a positive integer, got '-3'``).
    """
    given = {
        name: value for name, value in vars(args).items() if name in EnhanceSettings.option_names()
    }
    return EnhanceSettings.from_mapping(given, label=_option_label)


def _option_label(name: str) -> str:
    return "--" + name.replace("_", "-")


def run(args: argparse.Namespace) -> int:
    """Run ``enhance predict``; return the exit code."""
    from enhance_hmi.io.header_limits import check_input_file

    # the input's headers first: a file claiming 100000 x 100000 pixels is
    # refused before torch and the network are loaded (hundreds of MB)
    check_input_file(args.input)
    settings = settings_from_arguments(args)
    from enhance_hmi.heap import keep_freed_memory
    from enhance_hmi.pipeline import enhance_file  # heavy imports only when the command runs

    keep_freed_memory()  # the CPU network reuses freed activations (enhance_hmi.heap)
    output = enhance_file(
        args.input,
        args.output,
        settings,
        progress=sys.stderr.isatty() if args.progress is None else args.progress,
    )
    log.info("wrote %s", output)
    print(output)
    return 0
