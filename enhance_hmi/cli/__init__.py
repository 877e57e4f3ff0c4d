"""The ``enhance`` command line (also ``python -m enhance_hmi``).

Each subcommand lives in its own module of this package and exposes
``register(subparsers)``, which adds an :mod:`argparse` parser whose
``func`` default is called with the parsed namespace and returns an exit
code. Modules are discovered automatically, so adding a subcommand means
adding a file. Argument parsing only: the work is done by the library.

Every :class:`enhance_hmi.errors.EnhanceError` becomes one line on standard error
and exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys
import warnings
from collections.abc import Sequence

from enhance_hmi import __version__
from enhance_hmi.errors import EnhanceError

__all__ = ["main", "build_parser"]

log = logging.getLogger(__name__)

#: Namespace attribute of ``-v`` given after the subcommand.
_VERBOSE_AFTER = "verbose_after_command"


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """Build the top-level parser with every discovered subcommand.

    Parameters
    ----------
    command : str, optional
        Register only this subcommand (its module is ``command`` with ``-``
        as ``_``), so ``enhance predict`` does not import what ``enhance
        fetch`` needs; every subcommand when None or not one of them.
    """
    parser = argparse.ArgumentParser(
        prog="enhance",
        description=(
            "Deconvolve and 2x super-resolve SDO/HMI images "
            "(Diaz Baso & Asensio Ramos 2018, A&A 614, A5)."
        ),
    )
    parser.add_argument("--version", action="version", version=f"enhance {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)"
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    names = sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))
    wanted = command.replace("-", "_") if command else None
    for name in [wanted] if wanted in names else names:
        module = importlib.import_module(f"{__name__}.{name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(subparsers)
    _accept_verbosity_after_subcommand(subparsers)
    return parser


def _command_word(argv: Sequence[str]) -> str | None:
    """The first word of ``argv`` that is not an option (the subcommand, if any)."""
    return next((word for word in argv if not word.startswith("-")), None)


def _accept_verbosity_after_subcommand(subparsers: argparse._SubParsersAction) -> None:
    """Let ``-v`` follow the subcommand too (``enhance predict -v ...``).

    Each subcommand parser gets the option under its own destination, with no
    default (a subparser's default would overwrite the top-level count);
    :func:`main` adds both counts.
    """
    seen: set[int] = set()
    for sub in subparsers.choices.values():
        if id(sub) in seen or "-v" in sub._option_string_actions:
            continue
        seen.add(id(sub))
        sub.add_argument(
            "-v",
            "--verbose",
            dest=_VERBOSE_AFTER,
            action="count",
            default=argparse.SUPPRESS,
            help="more log output (-vv for debug); also accepted before the subcommand",
        )


def _configure_logging(verbosity: int) -> None:
    level = logging.WARNING if verbosity == 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the process exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(_command_word(argv))
    args = parser.parse_args(argv)
    _configure_logging(args.verbose + getattr(args, _VERBOSE_AFTER, 0))

    def one_line(message, category, filename, lineno, line=None) -> str:
        """A warning shown as one line (no source line or file position)."""
        text = " ".join(str(message).split())
        return f"enhance {args.command}: warning: {text}\n"

    # how warnings are shown, not whether: a caller that records them still does
    shown_as = warnings.formatwarning
    warnings.formatwarning = one_line
    try:
        return int(args.func(args) or 0)
    except EnhanceError as exc:
        message = " ".join(str(exc).split())  # one line, whatever the message holds
        print(f"enhance {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"enhance {args.command}: interrupted", file=sys.stderr)
        return 130
    finally:
        warnings.formatwarning = shown_as
