"""``enhance fetch``: bring a directory up to date with a range of HMI frames.

Argument parsing only; the work is :func:`enhance_hmi.acquire.acquire`.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from enhance_hmi.acquire import EMAIL_ENV, SERIES, acquire, acquire_options
from enhance_hmi.acquire.download import DEFAULT_DEADLINE
from enhance_hmi.errors import ConfigError

__all__ = ["register"]

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``fetch`` subcommand.

    Long: one ``add_argument`` per option, each with its help text.
    """
    parser = subparsers.add_parser(
        "fetch",
        help="download HMI frames from JSOC (drms) or a local archive, verified, with a "
        "manifest and a gap report",
        description=(
            "Query, export, download and verify HMI frames into OUT, writing "
            "<series>.manifest.csv, <series>.gaps.{csv,json} and <series>.status.json. "
            "Reruns resume export requests, download nothing already verified, retry what "
            "failed and backfill gaps. Exit status 0: the range is complete; 2: something "
            "failed (server unreachable, query or export failed, files failed every attempt), "
            "with one line on standard error; a rerun retries it."
        ),
    )
    parser.add_argument("--series", required=True, help=f"one of {', '.join(SERIES)}")
    parser.add_argument("--start", help="first slot, TAI (2014-01-01T00:00:00 or JSOC form)")
    parser.add_argument("--end", help="last slot, TAI, included")
    parser.add_argument("--cadence", help="slot spacing, e.g. 45s, 12m, 1h")
    parser.add_argument("--out", required=True, help="output directory (created if needed)")
    parser.add_argument(
        "--server",
        default="jsoc",
        help="jsoc (default), kis (queries only), a base URL speaking the JSOC protocol, "
        "or a local directory of HMI FITS files",
    )
    parser.add_argument(
        "--email",
        help=f"registered JSOC export e-mail; prefer ${EMAIL_ENV} (the default) or "
        "--email-file: other users see command lines in ps. Never logged",
    )
    parser.add_argument(
        "--email-file",
        type=Path,
        help="file whose first line is the registered JSOC export e-mail",
    )
    parser.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="HOST",
        help="also download from HOST (host, host:port or http(s)://host[:port]); by default "
        "files come only from the server's own scheme, host and port. Repeatable",
    )
    parser.add_argument(
        "--download-deadline",
        type=float,
        default=DEFAULT_DEADLINE,
        help=f"seconds one file download may take before it is retried ({DEFAULT_DEADLINE:.0f})",
    )
    parser.add_argument(
        "--max-per-request", type=int, default=500, help="slots per export request (500)"
    )
    parser.add_argument(
        "--max-concurrent", type=int, default=2, help="parallel downloads (2; JSOC blocks bulk)"
    )
    parser.add_argument(
        "--quality-policy",
        default="nodata",
        help="QUALITY bits that skip a frame: nodata (default), conservative, strict, bit "
        "names (ECLIPSE, ISSTARGET, ...) or hex masks, joined by commas",
    )
    parser.add_argument(
        "--export-timeout", type=float, default=6 * 3600.0, help="seconds to wait per export"
    )
    parser.add_argument(
        "--retries",
        type=int,
        default=5,
        help="attempts of every server call before the run fails (5)",
    )
    parser.add_argument(
        "--retry-wait",
        type=float,
        default=2.0,
        help="seconds before the first retry; doubles up to 60 (2)",
    )
    parser.add_argument(
        "--query-only", action="store_true", help="write the manifest and gap report only"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def _email(args: argparse.Namespace) -> str | None:
    """The address from --email-file or --email (None: acquire reads the environment)."""
    if args.email and args.email_file:
        raise ConfigError("give --email or --email-file, not both")
    if args.email_file is not None:
        try:
            lines: list[str] = args.email_file.read_text(encoding="utf-8").split()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read the e-mail file {args.email_file}: {exc}") from exc
        if not lines:
            raise ConfigError(f"the e-mail file {args.email_file} is empty")
        return lines[0]
    if args.email:
        log.warning(
            "--email is visible to every user of this machine (ps, /proc) and in shell "
            "history; set %s or use --email-file instead",
            EMAIL_ENV,
        )
    email: str | None = args.email
    return email


def run(args: argparse.Namespace) -> int:
    """Run ``enhance fetch``; return the exit code."""
    options = acquire_options(
        {
            "max_per_request": args.max_per_request,
            "max_concurrent": args.max_concurrent,
            "download_deadline": args.download_deadline,
            "allow_hosts": args.allow_host,
            "export_timeout": args.export_timeout,
            "retries": args.retries,
            "retry_wait": args.retry_wait,
        }
    )
    manifest = acquire(
        series=args.series,
        start=args.start,
        end=args.end,
        cadence=args.cadence,
        out_dir=args.out,
        server=args.server,
        email=_email(args),
        quality_policy=args.quality_policy,
        download=not args.query_only,
        progress=not args.no_progress and sys.stderr.isatty(),
        options=options,
    )
    report = getattr(manifest, "report", None)
    if report is not None:
        print(report.summary_line())
    print(f"manifest: {manifest.path}")
    return 0
