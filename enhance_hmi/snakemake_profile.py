"""Install the workflow's SLURM profile where ``snakemake --profile NAME`` finds it.

Snakemake looks a bare profile name up in its user and site configuration
directories (``$XDG_CONFIG_HOME/snakemake/NAME``, by default
``~/.config/snakemake/NAME``, then ``/etc/xdg/snakemake/NAME``), not in the
working directory. :func:`install_slurm_profile` renders the repository's
template ``profiles/slurm/config.v8+.yaml`` (a checkout's, or the copy an
installed wheel carries) with a user's SLURM account and partition and
writes it there as a complete directory in one rename, so Snakemake never
sees a half-written profile. An existing profile that differs
is replaced only on request, and then kept beside the new one as a backup.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import functools
import os
import re
import shutil
import tempfile
import uuid
from pathlib import Path

import yaml

from enhance_hmi import __version__
from enhance_hmi.errors import ConfigError, OutputError
from enhance_hmi.repository_files import repository_path

__all__ = [
    "PROFILE_FILE",
    "ProfileInstall",
    "default_template",
    "install_slurm_profile",
    "render_slurm_profile",
    "snakemake_profile_dirs",
]

PROFILE_FILE = "config.v8+.yaml"
"""The profile file name Snakemake 8 and later read first."""

# Snakemake's own pattern for profile files in a profile directory: the one
# with the highest minimum version wins, so a stray config.v9+.yaml would
# shadow the file written here.
_PROFILE_FILE_PATTERN = re.compile(r"(?:profile|config)(?:\.v\d+\+)?\.yaml")
_ACCOUNT = re.compile(r"[A-Za-z0-9_.-]+")
_PARTITION = re.compile(r"[A-Za-z0-9_.-]+(?:,[A-Za-z0-9_.-]+)*")  # sbatch takes a list


@dataclasses.dataclass(frozen=True)
class ProfileInstall:
    """What :func:`install_slurm_profile` did.

    Attributes
    ----------
    profile_dir : Path
        The installed profile directory.
    action : str
        ``"written"`` (there was none), ``"unchanged"`` (the same profile was
        already there) or ``"replaced"`` (a different one was moved aside).
    backup : Path or None
        Where the replaced profile was moved, when ``action == "replaced"``.
    profile_argument : str
        What to pass to ``snakemake --profile`` to use it: the bare name when
        the directory is in one of Snakemake's profile directories, else the
        path.
    """

    profile_dir: Path
    action: str
    backup: Path | None
    profile_argument: str


def default_template() -> Path:
    """The SLURM profile template: the checkout's ``profiles/slurm``, or a wheel's copy of it."""
    return repository_path("profiles/slurm") / PROFILE_FILE


def snakemake_profile_dirs() -> tuple[Path, Path]:
    """Snakemake's user and site profile directories, as Snakemake itself computes them.

    Raises
    ------
    ConfigError
        If Snakemake is not installed (the ``workflow`` extra).
    """
    try:
        from snakemake.common import get_appdirs
    except ImportError as exc:
        raise ConfigError(
            "Snakemake is not installed, so there is no profile directory to install into; "
            'install the workflow extra (pip install -e ".[workflow]") or pass --dest'
        ) from exc
    dirs = get_appdirs()
    return Path(dirs.user_config_dir), Path(dirs.site_config_dir)


def _indented(match: re.Match[str], line: str) -> str:
    """``line`` behind the indentation of the matched template line."""
    return f"{match['indent']}{line}"


def render_slurm_profile(template_text: str, *, account: str, partition: str) -> str:
    """Return the profile text with ``slurm_account`` and ``slurm_partition`` set.

    The template keeps its comments and every other setting. The two values
    are written as quoted Python string literals inside YAML strings
    (``"'acct'"``), because Snakemake evaluates resource values as Python
    expressions first: an unquoted account named like a Python name that
    Snakemake provides (``threads``, ``input``) or like a number would
    otherwise not reach ``sbatch`` as typed.

    Parameters
    ----------
    template_text : str
        A Snakemake profile with ``executor: slurm`` and a ``default-resources``
        mapping holding one ``slurm_account`` and one ``slurm_partition`` line.
    account, partition : str
        SLURM account name; partition name or comma-separated list of names.

    Raises
    ------
    ConfigError
        If a value is not a SLURM name, or the template is not such a profile.
    """
    if not _ACCOUNT.fullmatch(account):
        raise ConfigError(
            f"{account!r} is not a SLURM account name (letters, digits, '_', '-', '.'); "
            "see `sacctmgr show associations user=$USER format=account`"
        )
    if not _PARTITION.fullmatch(partition):
        raise ConfigError(
            f"{partition!r} is not a SLURM partition name or comma-separated list of names; "
            "see `sinfo -s`"
        )
    try:
        template = yaml.safe_load(template_text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"the SLURM profile template is not valid YAML: {exc}") from exc
    resources = template.get("default-resources") if isinstance(template, dict) else None
    if not isinstance(template, dict) or template.get("executor") != "slurm":
        raise ConfigError("the SLURM profile template does not set `executor: slurm`")
    if not isinstance(resources, dict):
        raise ConfigError("the SLURM profile template has no default-resources mapping")
    text = template_text
    for key, value in (("slurm_account", account), ("slurm_partition", partition)):
        line = re.compile(rf"^(?P<indent>[ \t]+){key}:.*$", re.MULTILINE)
        if key not in resources or len(line.findall(text)) != 1:
            raise ConfigError(
                f"the SLURM profile template must have exactly one `{key}:` line under "
                "default-resources"
            )
        text = line.sub(functools.partial(_indented, line=f"{key}: \"'{value}'\""), text)
    rendered = yaml.safe_load(text)["default-resources"]
    expected = {"slurm_account": f"'{account}'", "slurm_partition": f"'{partition}'"}
    if any(rendered.get(key) != value for key, value in expected.items()):
        raise ConfigError(
            "the SLURM profile template's slurm_account and slurm_partition lines are not "
            "plain keys of default-resources"
        )
    return text


def _profile_files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if _PROFILE_FILE_PATTERN.fullmatch(p.name))


def _fsync(path: Path) -> None:
    with contextlib.suppress(OSError):  # not every filesystem syncs directories
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _existing_matches(dest: Path, text: str) -> bool:
    """Whether ``dest`` is a real directory whose only profile file is ``text``."""
    if dest.is_symlink() or not dest.is_dir():
        return False
    if _profile_files(dest) != [PROFILE_FILE]:
        return False
    return (dest / PROFILE_FILE).read_text() == text


def _describe(dest: Path) -> str:
    if dest.is_symlink():
        return f"a link to {os.readlink(dest)}"
    if not dest.is_dir():
        return "a file, not a profile directory"
    files = _profile_files(dest)
    return f"profile files {', '.join(files)}" if files else "no profile file"


def _profile_argument(dest: Path) -> str:
    with contextlib.suppress(ConfigError):
        if dest.parent.resolve() in {d.resolve() for d in snakemake_profile_dirs()}:
            return dest.name
    return str(dest)


def install_slurm_profile(
    *,
    account: str,
    partition: str,
    dest: str | os.PathLike[str] | None = None,
    template: str | os.PathLike[str] | None = None,
    force: bool = False,
) -> ProfileInstall:
    """Write the SLURM profile with ``account`` and ``partition`` into ``dest``.

    The profile is written into a temporary directory beside ``dest``,
    fsynced and renamed onto ``dest``, so ``dest`` is at every moment either
    absent, the previous profile or the complete new one. A ``dest`` that is a
    link is replaced as a link: the directory it points to (for example the
    repository's ``profiles/slurm``) is never written through.

    Parameters
    ----------
    account, partition : str
        The user's SLURM account and partition (see :func:`render_slurm_profile`).
    dest : path-like, optional
        Profile directory; default ``slurm`` in Snakemake's user profile
        directory (``~/.config/snakemake/slurm`` unless ``XDG_CONFIG_HOME``
        says otherwise), found by ``snakemake --profile slurm``.
    template : path-like, optional
        Profile file or directory to render; default :func:`default_template`.
    force : bool
        Replace a different existing profile (moved to
        ``<dest>.replaced-<UTC time>``). Without it that is an error.

    Returns
    -------
    ProfileInstall

    Raises
    ------
    ConfigError
        Bad account or partition, unusable template, or a different profile
        already at ``dest`` without ``force``.
    OutputError
        ``dest`` cannot be written.
    """
    text = _installed_text(template, account=account, partition=partition)
    dest = Path(dest).expanduser() if dest is not None else snakemake_profile_dirs()[0] / "slurm"
    dest = dest.absolute()
    exists = dest.is_symlink() or dest.exists()
    if exists and _existing_matches(dest, text):
        return ProfileInstall(dest, "unchanged", None, _profile_argument(dest))
    if exists and not force:
        raise ConfigError(
            f"{dest} already holds a different profile ({_describe(dest)}); pass --force to "
            "replace it (the old one is kept as a backup beside it)"
        )
    backup = _write_profile(dest, text, replace=exists)
    return ProfileInstall(
        dest, "replaced" if backup else "written", backup, _profile_argument(dest)
    )


def _installed_text(
    template: str | os.PathLike[str] | None, *, account: str, partition: str
) -> str:
    """The profile rendered from ``template`` (default: the shipped one) with its header."""
    template_path = Path(template).expanduser() if template is not None else default_template()
    if template_path.is_dir():
        template_path = template_path / PROFILE_FILE
    try:
        template_text = template_path.read_text()
    except OSError as exc:
        raise ConfigError(
            f"cannot read the SLURM profile template {template_path} ({exc.strerror}); "
            "reinstall enhance-hmi (its wheel carries profiles/slurm), run from a clone of "
            "the repository, or pass --template"
        ) from exc
    text = render_slurm_profile(template_text, account=account, partition=partition)
    return (
        f"# Installed by `enhance profile install` (enhance {__version__}) from\n"
        f"# {template_path.resolve()}\n"
        f"# Run it again with --force to change the account or partition.\n{text}"
    )


def _write_profile(dest: Path, text: str, *, replace: bool) -> Path | None:
    """Write the profile directory ``dest`` atomically; the backup of the one it replaced.

    The new directory is staged beside ``dest`` and renamed into place; with
    ``replace`` the old one is first renamed to a time-stamped backup (put
    back if the rename fails).
    """
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent))
    except OSError as exc:
        raise OutputError(f"cannot create the profile directory in {dest.parent}: {exc}") from exc
    backup = None
    try:
        with open(staging / PROFILE_FILE, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        staging.chmod(0o755)
        _fsync(staging)
        if replace:
            stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
            backup = dest.with_name(f"{dest.name}.replaced-{stamp}-{uuid.uuid4().hex[:6]}")
            os.rename(dest, backup)  # moves a link as a link
        try:
            os.rename(staging, dest)
        except OSError:
            if backup is not None:
                os.rename(backup, dest)
            raise
        _fsync(dest.parent)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise OutputError(f"cannot write the profile {dest}: {exc}") from exc
    return backup
