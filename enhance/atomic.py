"""Atomic file writes: write ``name.part``, fsync, then ``os.replace``.

A reader never sees a half-written output, and a crash leaves either the old
file or nothing, plus at most a ``.part`` file that the next run overwrites.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from enhance.errors import OutputError

__all__ = ["atomic_path", "check_writable_dir", "part_path"]


def part_path(path: str | os.PathLike[str]) -> Path:
    """Return the temporary name used while ``path`` is being written."""
    path = Path(path)
    return path.with_name(path.name + ".part")


def check_writable_dir(directory: str | os.PathLike[str]) -> Path:
    """Raise :class:`OutputError` unless ``directory`` exists and is writable."""
    directory = Path(directory)
    if not directory.is_dir():
        raise OutputError(f"output directory {directory} does not exist; create it first")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise OutputError(f"output directory {directory} is not writable")
    return directory


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):  # not every filesystem allows it
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path to write to; move it onto ``path`` on success.

    The caller writes the whole file to the yielded path (any library that
    takes a file name works). On normal exit the file is fsynced and renamed
    over ``path`` with :func:`os.replace`; on an exception it is removed and
    ``path`` is left untouched.

    Raises
    ------
    OutputError
        If the destination directory does not exist or is not writable.
    """
    path = Path(path)
    check_writable_dir(path.parent if str(path.parent) else Path("."))
    tmp = part_path(path)
    try:
        yield tmp
        if not tmp.exists():
            raise OutputError(f"nothing was written for {path}")
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
