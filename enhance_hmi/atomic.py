"""Atomic file writes: write ``name.part``, fsync, then ``os.replace``.

A reader never sees a half-written output, and a crash leaves either the old
file or nothing, plus at most a ``.part`` file that the next run overwrites.
A write that fails because the filesystem is full (or read-only, or the file
is over the process's size limit) raises :class:`~enhance_hmi.errors.OutputError`
with one line saying where and how much room is left, and removes its
``.part`` file.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

from enhance_hmi.errors import OutputError

__all__ = [
    "atomic_path",
    "write_json",
    "check_writable_dir",
    "part_path",
    "unique_part_path",
    "free_bytes",
    "no_room_error",
    "NO_ROOM_ERRNOS",
]

#: ``errno`` values of a write refused for lack of room (or a read-only or
#: size-limited target): nothing more can be written there until a user acts.
NO_ROOM_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS})


def part_path(path: str | os.PathLike[str]) -> Path:
    """Return the temporary name used while ``path`` is being written."""
    path = Path(path)
    return path.with_name(path.name + ".part")


def unique_part_path(path: str | os.PathLike[str]) -> Path:
    """A temporary name for ``path`` that no other writer uses: ``name.<pid>-<random>.part``.

    Two processes (or threads) writing the same destination each get their
    own temporary file, so neither can rename the other's half-written bytes.
    """
    path = Path(path)
    return path.with_name(f"{path.name}.{os.getpid()}-{secrets.token_hex(4)}.part")


def free_bytes(directory: str | os.PathLike[str]) -> int | None:
    """Bytes available to this user on the filesystem of ``directory`` (None if unknown)."""
    try:
        return shutil.disk_usage(directory).free
    except OSError:
        return None


def _size_text(count: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if count >= size:
            return f"{count / size:.1f} {unit}"
    return f"{count} B"


def no_room_error(path: str | os.PathLike[str], exc: OSError) -> OutputError:
    """The one-line :class:`OutputError` for a write of ``path`` refused with ``exc``.

    The message names the file, the reason and, for a full filesystem, the
    room left; its ``errno`` is the original one.
    """
    path = Path(path)
    reason = os.strerror(exc.errno) if exc.errno else str(exc)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        free = free_bytes(path.parent)
        room = f" ({_size_text(free)} free)" if free is not None else ""
        hint = f"{path.parent} is full{room}; free some space and rerun"
    elif exc.errno == errno.EFBIG:
        hint = "the file is over the size limit of this filesystem or process (ulimit -f)"
    elif exc.errno == errno.EROFS:
        hint = f"{path.parent} is on a read-only filesystem"
    else:
        hint = "check the output directory"
    error = OutputError(f"cannot write {path}: {reason}: {hint}")
    error.errno = exc.errno
    return error


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
def atomic_path(path: str | os.PathLike[str], *, unique: bool = False) -> Iterator[Path]:
    """Yield a temporary path to write to; move it onto ``path`` on success.

    The caller writes the whole file to the yielded path (any library that
    takes a file name works). On normal exit the file is fsynced and renamed
    over ``path`` with :func:`os.replace`; on an exception it is removed and
    ``path`` is left untouched.

    With ``unique=True`` the temporary name is :func:`unique_part_path`
    (``name.<pid>-<random>.part``) instead of ``name.part``, for writers that
    may run concurrently on one destination.

    Raises
    ------
    OutputError
        If the destination directory does not exist or is not writable, or
        the write fails for lack of room (:data:`NO_ROOM_ERRNOS`; the
        original error is chained).
    """
    path = Path(path)
    check_writable_dir(path.parent if str(path.parent) else Path("."))
    tmp = unique_part_path(path) if unique else part_path(path)
    try:
        yield tmp
        if not tmp.exists():
            raise OutputError(f"nothing was written for {path}")
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        if (
            isinstance(exc, OSError)
            and not isinstance(exc, OutputError)
            and exc.errno in NO_ROOM_ERRNOS
        ):
            raise no_room_error(path, exc) from exc
        raise


def write_json(path: str | os.PathLike[str], value: object, *, indent: int = 1) -> Path:
    """Write ``value`` as JSON to ``path`` atomically (:func:`atomic_path`), parents created.

    Returns the path written.
    """
    import json

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(value, indent=indent) + "\n")
    return path
