"""``enhance verify``: re-check a workflow output tree by content (raw, enhanced, cubes).

Exit status 0 when everything matches the acquisition manifest, 1 when
something drifted (each drift on its own line), 2 on bad input.
"""

from __future__ import annotations

import argparse
import sys

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``verify`` subcommand."""
    parser = subparsers.add_parser(
        "verify",
        help="re-check an archive: raw files, enhanced frames and cubes against the manifest",
        description=(
            "Hash every verified raw file of a workflow output directory and compare it "
            "with the acquisition manifest; check every enhanced frame's FITS checksums "
            "and the input sha256 it records (ENHINSHA), and every cube frame's recorded "
            "input sha256. Changes nothing. Exit status: 0 all match, 1 something "
            "drifted, 2 bad input."
        ),
    )
    parser.add_argument("output", metavar="OUTPUT", help="the workflow's output directory")
    parser.add_argument(
        "--series", action="append", default=None, help="only this series (repeatable)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``enhance verify``; return the exit code."""
    from enhance_hmi.workflow.archive_check import check_archive

    report = check_archive(
        args.output,
        series=args.series,
        progress=not args.no_progress and sys.stderr.isatty(),
    )
    for drift in report.drifts:
        print(drift.line())
    print(report.summary_line())
    return 0 if report.clean else 1
