"""``enhance import-keras``: convert the 2018 Keras weights to a weights file.

Argument parsing only; the work is
:func:`enhance_hmi.model.keras_import.keras_to_safetensors`. Option values are
taken as plain strings and validated here or there, so a bad value gives one
line on standard error.
"""

from __future__ import annotations

import argparse
import logging

from enhance_hmi.errors import ConfigError
from enhance_hmi.physics.psf import DEFAULT_PSF_MODEL

__all__ = ["register", "run"]

log = logging.getLogger(__name__)

_OBSERVABLES = ("continuum", "magnetogram")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``import-keras`` subcommand."""
    parser = subparsers.add_parser(
        "import-keras",
        help="convert the original Keras *_weights.hdf5 to .safetensors + .json",
        description=(
            "Convert a Keras weights file of the original Enhance code (Diaz Baso & "
            "Asensio Ramos 2018, A&A 614, A5; network/intensity_weights.hdf5 or "
            "network/blos_weights.hdf5) into a .safetensors weights file with its JSON "
            "sidecar (architecture, observable, input normalisation, sha256)."
        ),
    )
    parser.add_argument("input", metavar="FILE.hdf5", help="Keras 2 weights file (HDF5)")
    parser.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="WEIGHTS.safetensors",
        help="weights file to write; the sidecar goes beside it with suffix .json",
    )
    parser.add_argument(
        "--observable",
        required=True,
        metavar="{continuum,magnetogram}",
        help="what the network was trained on (intensity -> continuum, blos -> magnetogram)",
    )
    parser.add_argument(
        "--psf-model",
        default=DEFAULT_PSF_MODEL,
        metavar="NAME",
        help="PSF the training inputs were degraded with (default: wachter, paper eq. 1)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``enhance import-keras``; return the exit code."""
    if args.observable not in _OBSERVABLES:
        raise ConfigError(
            f"unknown --observable {args.observable!r}; use {' or '.join(_OBSERVABLES)}"
        )
    if not str(args.output).endswith(".safetensors"):
        raise ConfigError(f"--output {args.output} must end in .safetensors")
    from enhance_hmi.model.keras_import import keras_to_safetensors  # torch only when run

    output = keras_to_safetensors(
        args.input, args.output, observable=args.observable, psf_model=args.psf_model
    )
    log.info("wrote %s", output)
    print(output)
    return 0
