"""``enhance quarantine``: list the frames a workflow run could not enhance, or release them.

A quarantined frame is tried again by the next run when its input or the
settings change; ``--release`` asks for it now (the next ``snakemake`` run
enhances it again, keeping the frames already done).
"""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``quarantine`` subcommand."""
    parser = subparsers.add_parser(
        "quarantine",
        help="list the quarantined frames of a workflow output, or release them",
        description=(
            "List the frames the workflow could not enhance (slot, stage, cause), or "
            "release them so that the next snakemake run tries them again."
        ),
    )
    parser.add_argument("output", metavar="OUTPUT", help="the workflow's output directory")
    parser.add_argument(
        "--series", action="append", default=None, help="only this series (repeatable)"
    )
    parser.add_argument(
        "--release",
        nargs="*",
        metavar="T_REC",
        default=None,
        help="release these frames (no T_REC: every quarantined frame)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``enhance quarantine``; return the exit code."""
    from enhance_hmi.errors import InputError
    from enhance_hmi.workflow.quarantine import read_quarantine, release

    root = Path(args.output)
    if not root.is_dir():
        raise InputError(f"{root} is not a directory (give the workflow's output directory)")
    if args.release is not None:
        released = release(root, args.series, args.release or None)
        for entry in released:
            print(f"released {entry.summary_line()}")
        print(f"{len(released)} frame(s) released: the next snakemake run tries them again")
        return 0
    names = args.series or sorted(p.name for p in (root / "quarantine").glob("*/"))
    count = 0
    for name in names:
        for entry in read_quarantine(root, name):
            count += 1
            print(f"{name} {entry.t_rec} [{entry.stage}] {entry.cause} (since {entry.quarantined})")
    print(f"{count} frame(s) quarantined")
    return 0
