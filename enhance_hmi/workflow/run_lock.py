"""Who holds a working directory's Snakemake lock: a live run, or a run that was killed.

Snakemake locks a working directory by writing ``.snakemake/locks/*.lock``
and removes them when it exits; a run killed by SIGKILL, a reboot or a
scheduler's time limit leaves them behind, and every later run stops with
"Directory cannot be locked" until ``snakemake --unlock``. Unlocking is safe
only when no live run owns the lock, and the lock files do not say who wrote
them. :func:`lock_owner` answers from the process table (Linux ``/proc``): the
owner is a live Snakemake run in that working directory that started before
the newest lock file was written.

The rule, for each process in ``/proc``:

- its command line is a Snakemake run (``snakemake ...`` or
  ``python -m snakemake ...``) that takes the lock: not ``--unlock``,
  ``-n``/``--dry-run``, ``--nolock``, a listing or graph option, or a job
  that Snakemake spawned itself (``--mode subprocess``/``remote``);
- its working directory, or its ``-d``/``--directory`` argument, is the
  working directory asked about (compared by device and inode, so symbolic
  links and bind mounts do not matter);
- it started (``/proc/<pid>/stat`` field 22, clock ticks after boot) no later
  than :data:`START_MARGIN_S` after the newest lock file's mtime: a process
  started after the lock was written (a reused pid, a job of the killed run
  that outlived it) cannot own it.

Where the answer cannot be had, :func:`lock_owner` raises
:class:`UnknownLockOwnerError` rather than guess "killed": no ``/proc`` (not
Linux, or not mounted), or a Snakemake run of the lock files' user whose
working directory this process may not read (another user's run, seen by a
non-root caller). Runs this host cannot see are out of reach: a Snakemake on
another host or in another PID namespace (a container) that shares the
directory, or another user's run hidden by ``/proc``'s ``hidepid``.

``python -m enhance_hmi.workflow.run_lock WORKDIR`` prints one line and exits
with :data:`EXIT_NO_LOCK`, :data:`EXIT_LIVE`, :data:`EXIT_UNKNOWN` or
:data:`EXIT_STALE`; ``profiles/update.sh`` runs it before it unlocks.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

from enhance_hmi.errors import EnhanceError
from enhance_hmi.time import utc_timestamp

logger = logging.getLogger(__name__)

PROC = Path("/proc")

START_MARGIN_S = 1.0
"""Seconds after the newest lock file's mtime up to which a process still counts as its owner.

Covers the clock-tick resolution of a process's start time and small clock
adjustments; the margin errs towards "live", the side that touches nothing.
"""

EXIT_NO_LOCK = 0
"""Exit status of the command line: no Snakemake lock in the working directory."""
EXIT_LIVE = 3
"""Exit status of the command line: a live Snakemake run holds the lock; leave it alone."""
EXIT_UNKNOWN = 4
"""Exit status of the command line: there is a lock and its owner cannot be told; leave it alone."""
EXIT_STALE = 5
"""Exit status of the command line: a killed run left the lock; ``snakemake --unlock`` is safe.

Not 1, the status of a Python that fails (a traceback, a missing module), so
that a failing check is never read as "safe to unlock".
"""

# Options after which Snakemake takes no lock, or which mark a job Snakemake spawned.
_NO_LOCK_OPTIONS = frozenset(
    {
        "--unlock",
        "-n",
        "--dry-run",
        "--dryrun",
        "--nolock",
        "--lint",
        "--version",
        "-v",
        "-h",
        "--help",
        "-l",
        "--list",
        "--list-rules",
        "--list-target-rules",
        "--lt",
        "--dag",
        "--rulegraph",
        "--filegraph",
        "--d3dag",
        "-S",
        "--summary",
        "-D",
        "--detailed-summary",
        "--cleanup-metadata",
        "--cm",
    }
)
# Snakemake's short options that take no value, so may be bundled (``-np``).
_SHORT_FLAGS = frozenset("ntkfFlSDpah")
# Python options that take a value before ``-m snakemake``.
_PYTHON_OPTIONS_WITH_VALUE = frozenset({"-W", "-X", "--check-hash-based-pycs"})


class UnknownLockOwnerError(EnhanceError):
    """Whether a live Snakemake run owns a working directory's lock cannot be told."""


@dataclass(frozen=True)
class LockOwner:
    """A live Snakemake run that holds a working directory's lock.

    Attributes
    ----------
    pid : int
        Its process id.
    started : str
        When it started, UTC, ISO 8601 to the second (``2024-05-01T10:00:00Z``).
    command : str
        Its command line, shell-quoted.
    """

    pid: int
    started: str
    command: str

    def __str__(self) -> str:
        return f"pid {self.pid}, started {self.started}, command: {self.command}"


def snakemake_locks(workdir: str | os.PathLike[str]) -> list[Path]:
    """The Snakemake lock files of a working directory (``.snakemake/locks/*.lock``), sorted."""
    return sorted(Path(workdir, ".snakemake", "locks").glob("*.lock"))


def snakemake_arguments(argv: Sequence[str]) -> list[str] | None:
    """The arguments given to Snakemake by a command line, or None if it does not run Snakemake.

    Recognises ``snakemake ARGS``, ``/path/bin/snakemake ARGS`` run by its
    interpreter (``python /path/bin/snakemake ARGS``, which is how a console
    script shows in ``/proc``) and ``python [OPTIONS] -m snakemake ARGS``.
    """
    skip_value = False
    for i, token in enumerate(argv):
        if skip_value:
            skip_value = False
            continue
        if token == "-m":
            return list(argv[i + 2 :]) if list(argv[i + 1 : i + 2]) == ["snakemake"] else None
        if os.path.basename(token) in {"snakemake", "snakemake.exe"}:
            return list(argv[i + 1 :])
        if i == 0:
            continue  # the program: an interpreter, perhaps
        if token in _PYTHON_OPTIONS_WITH_VALUE:
            skip_value = True
        elif not token.startswith("-"):
            return None  # the interpreter runs some other script
    return None


def takes_lock(args: Sequence[str]) -> bool:
    """Whether Snakemake, given these arguments, runs the workflow under its lock.

    False for ``--unlock``, a dry run (``-n``, also bundled as ``-np``),
    ``--nolock``, listings, graphs, summaries and ``--mode subprocess``/``remote``
    (a job that a run spawned). Anything else counts as taking the lock, the
    side that leaves a lock alone.
    """
    previous = ""
    for token in args:
        if token == "--":
            break
        option = token.split("=", 1)[0]
        if option in _NO_LOCK_OPTIONS:
            return False
        if previous == "--mode" and token != "default":
            return False
        if option == "--mode" and "=" in token and token.split("=", 1)[1] != "default":
            return False
        if token.startswith("-") and not token.startswith("--") and len(token) > 2:
            for flag in token[1:]:
                if flag == "n":
                    return False
                if flag not in _SHORT_FLAGS:
                    break  # the rest is this option's value (``-j4``)
        previous = token
    return True


def directory_argument(args: Sequence[str]) -> str | None:
    """The ``-d``/``--directory`` argument given to Snakemake, or None."""
    found = None
    for i, token in enumerate(args):
        if token in {"-d", "--directory"} and i + 1 < len(args):
            found = args[i + 1]
        elif token.startswith("--directory="):
            found = token.split("=", 1)[1]
    return found


def boot_time() -> float:
    """When this system booted, in seconds since the epoch (the zero of ``/proc`` start times)."""
    return time.time() - time.clock_gettime(time.CLOCK_BOOTTIME)


def process_start(stat: str, *, booted: float, ticks: int) -> float:
    """A process's start time (seconds since the epoch) from the text of ``/proc/<pid>/stat``.

    Parameters
    ----------
    stat : str
        The text of ``/proc/<pid>/stat``.
    booted : float
        The boot time, seconds since the epoch (:func:`boot_time`).
    ticks : int
        Clock ticks per second (``os.sysconf("SC_CLK_TCK")``).

    References
    ----------
    proc_pid_stat(5): field 22, ``starttime``, in clock ticks after boot. The
    command name (field 2) may hold spaces and parentheses, so the fields are
    counted from the last ``)``.
    """
    fields = stat[stat.rindex(")") + 2 :].split()
    return booted + int(fields[22 - 3]) / ticks


def _lock_stats(workdir: str | os.PathLike[str]) -> list[os.stat_result]:
    found = []
    for lock in snakemake_locks(workdir):
        try:
            found.append(lock.stat())
        except FileNotFoundError:
            continue  # its run ended and removed it meanwhile
    return found


def _same_directory(path: str | os.PathLike[str], target: os.stat_result) -> bool:
    try:
        found = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return False
    return (found.st_dev, found.st_ino) == (target.st_dev, target.st_ino)


def _iso(seconds: float) -> str:
    return utc_timestamp(seconds)


def lock_owner(
    workdir: str | os.PathLike[str],
    *,
    proc: str | os.PathLike[str] = PROC,
    booted: float | None = None,
    exclude: Collection[int] = (),
) -> LockOwner | None:
    """The live Snakemake run that holds a working directory's lock, or None.

    None when the directory has no Snakemake lock, or when no live run owns
    the lock it has (a killed run left it: ``snakemake --unlock`` is safe).
    The rule is the module's (:mod:`enhance_hmi.workflow.run_lock`); with several
    owners, the one that started first.

    Parameters
    ----------
    workdir : path
        Snakemake's working directory (the one holding ``.snakemake``).
    proc : path, optional
        Where the process table is mounted (another path in tests).
    booted : float, optional
        The boot time, seconds since the epoch; :func:`boot_time` by default.
    exclude : collection of int, optional
        Process ids never taken for the owner (the caller and its parent).

    Returns
    -------
    LockOwner or None

    Raises
    ------
    UnknownLockOwnerError
        There is a lock and the process table cannot tell whether a live run
        owns it (no ``/proc``; a run of the lock files' user whose working
        directory cannot be read).
    """
    lock_stats = _lock_stats(workdir)
    if not lock_stats:
        return None
    newest = max(st.st_mtime for st in lock_stats)
    lock_users = {st.st_uid for st in lock_stats}
    target = os.stat(workdir)
    proc = Path(proc)
    try:
        pids = sorted(int(entry.name) for entry in os.scandir(proc) if entry.name.isdigit())
    except OSError as err:
        raise UnknownLockOwnerError(f"cannot read the process table {proc}: {err}") from err
    if not pids:
        raise UnknownLockOwnerError(f"the process table {proc} lists no processes")
    if booted is None:
        booted = boot_time()
    ticks = os.sysconf("SC_CLK_TCK")

    owners: list[tuple[float, LockOwner]] = []
    for pid in pids:
        if pid in exclude:
            continue
        here = proc / str(pid)
        user = None
        try:
            user = here.stat().st_uid  # the process's user, readable even under hidepid=1
            argv = (here / "cmdline").read_bytes().decode(errors="replace").split("\0")[:-1]
            started = process_start((here / "stat").read_text(), booted=booted, ticks=ticks)
            args = snakemake_arguments(argv)
            if args is None or not takes_lock(args) or started > newest + START_MARGIN_S:
                continue
            command = shlex.join(argv)
            directory = directory_argument(args)
            if directory is not None and os.path.isabs(directory):
                mine = _same_directory(directory, target)
            else:
                # through the /proc link: right across mount namespaces too
                mine = _same_directory(here / "cwd", target) or (
                    directory is not None and _same_directory(here / "cwd" / directory, target)
                )
        except FileNotFoundError:
            continue  # ended meanwhile
        except PermissionError as err:
            if user is not None and user not in lock_users:
                continue  # another user's process, which did not write these locks
            raise UnknownLockOwnerError(
                f"process {pid} of the lock's user may be a Snakemake run in {workdir}, "
                f"and this process may not read its details ({err})"
            ) from err
        if mine:
            logger.debug("process %d (%s) holds the Snakemake lock of %s", pid, command, workdir)
            owners.append((started, LockOwner(pid, _iso(started), command)))
    if not owners:
        logger.debug("no live Snakemake run owns the locks of %s (newest %s)", workdir, newest)
        return None
    return min(owners, key=lambda owner: owner[0])[1]


def main(argv: Sequence[str] | None = None) -> int:
    """Say in one line who holds a working directory's Snakemake lock; the exit status says it too.

    0 no lock, 3 a live run holds it (its pid, start time and command line),
    4 there is a lock and its owner cannot be told, 5 a killed run left it
    (``snakemake --unlock`` is safe). The calling process and its parent are
    never taken for the owner.
    """
    parser = argparse.ArgumentParser(
        prog="python -m enhance_hmi.workflow.run_lock",
        description="Whether a live Snakemake run holds the lock of a working directory.",
        epilog="Exit status: 0 no lock, 3 live owner, 4 cannot tell, 5 stale (safe to unlock).",
    )
    parser.add_argument("workdir", type=Path, help="Snakemake's working directory")
    workdir = parser.parse_args(argv).workdir
    where = workdir / ".snakemake" / "locks"
    if not snakemake_locks(workdir):
        print(f"no Snakemake lock in {where}")
        return EXIT_NO_LOCK
    try:
        owner = lock_owner(workdir, exclude={os.getpid(), os.getppid()})
    except UnknownLockOwnerError as err:
        print(f"cannot tell whether a live Snakemake run holds the lock in {where}: {err}")
        return EXIT_UNKNOWN
    if owner is None:
        written = [_iso(st.st_mtime) for st in _lock_stats(workdir)]
        if not written:  # its run ended and removed it meanwhile
            print(f"no Snakemake lock in {where}")
            return EXIT_NO_LOCK
        print(f"stale Snakemake lock in {where} (written {max(written)}): no live run owns it")
        return EXIT_STALE
    print(f"a live Snakemake run holds the lock in {where}: {owner}")
    return EXIT_LIVE


if __name__ == "__main__":
    sys.exit(main())
