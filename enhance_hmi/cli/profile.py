"""``enhance profile install``: put the SLURM profile where ``snakemake --profile slurm`` looks.

Argument parsing only; the work is :func:`enhance_hmi.snakemake_profile.install_slurm_profile`.
"""

from __future__ import annotations

import argparse

from enhance_hmi.snakemake_profile import install_slurm_profile

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``profile`` subcommand (with its ``install`` action)."""
    parser = subparsers.add_parser(
        "profile",
        help="install the workflow's SLURM profile with your account and partition",
        description="Snakemake profiles for the workflow.",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    install = actions.add_parser(
        "install",
        help="write the SLURM profile for `snakemake --profile slurm`",
        description=(
            "Render profiles/slurm/config.v8+.yaml with your SLURM account and partition "
            "and write it, in one rename, to DEST (default: slurm in Snakemake's user "
            "profile directory, ~/.config/snakemake/slurm unless XDG_CONFIG_HOME is set), "
            "where `snakemake --profile slurm` finds it. A different profile already at "
            "DEST is an error unless --force, which moves it aside as a backup."
        ),
    )
    install.add_argument("--account", required=True, help="SLURM account (sbatch --account)")
    install.add_argument(
        "--partition", required=True, help="SLURM partition, or a comma-separated list"
    )
    install.add_argument(
        "--dest", help="profile directory (default: ~/.config/snakemake/slurm or XDG equivalent)"
    )
    install.add_argument(
        "--template",
        help="profile file or directory to render (default: profiles/slurm of this clone, "
        "or the installed package's copy)",
    )
    install.add_argument(
        "--force", action="store_true", help="replace a different profile at DEST (kept aside)"
    )
    install.set_defaults(func=run_install)


def run_install(args: argparse.Namespace) -> int:
    """Run ``enhance profile install``; return the exit code."""
    result = install_slurm_profile(
        account=args.account,
        partition=args.partition,
        dest=args.dest,
        template=args.template,
        force=args.force,
    )
    settings = f"(account {args.account}, partition {args.partition})"
    if result.action == "unchanged":
        print(f"the SLURM profile {result.profile_dir} already has these settings {settings}")
    else:
        print(f"installed the SLURM profile {result.profile_dir} {settings}")
    if result.backup is not None:
        print(f"the profile that was there is now {result.backup}")
    print(f"run the workflow with: snakemake --profile {result.profile_argument}")
    return 0
