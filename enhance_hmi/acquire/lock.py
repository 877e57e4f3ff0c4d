"""An exclusive lock on an acquisition's output directory.

Two acquisitions writing one directory would race on its manifest, its gap
report and its files. :func:`out_dir_lock` takes an exclusive
:func:`fcntl.flock` on ``<out>/.enhance-fetch.lock`` for the duration of one
acquisition; a second one fails at once with :class:`OutDirLockedError`,
naming the process that holds the lock (a cron job should simply try again at
its next slot rather than queue behind a long run). The kernel releases the
lock when the holder exits, however it exits (``kill -9`` included), so a
stale lock file never blocks a later run; the file itself is left in place.
On NFS, Linux maps ``flock`` onto byte-range locks, which the NFS lock
manager shares between clients.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
from collections.abc import Iterator
from pathlib import Path

from enhance_hmi.errors import OutputError
from enhance_hmi.time import utc_timestamp

__all__ = ["LOCK_NAME", "OutDirLockedError", "out_dir_lock"]

#: Name of the lock file inside the output directory.
LOCK_NAME = ".enhance-fetch.lock"


class OutDirLockedError(OutputError):
    """Another acquisition holds the output directory's lock."""


def _holder(fd: int) -> str:
    with contextlib.suppress(OSError):
        text = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
        if text:
            return text
    return "holder unknown"


@contextlib.contextmanager
def out_dir_lock(directory: str | os.PathLike[str]) -> Iterator[Path]:
    """Hold the exclusive acquisition lock of ``directory`` inside the ``with`` block.

    The lock file records who holds it (pid, host, UTC start) for the message
    a second acquisition gets.

    Raises
    ------
    OutDirLockedError
        If another process (or another acquisition in this process) holds it.
    OutputError
        If the lock file cannot be created.
    """
    path = Path(directory) / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise OutputError(f"cannot create the lock file {path}: {exc.strerror}") from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise OutDirLockedError(
                f"{Path(directory)} is in use by another acquisition ({_holder(fd)}); "
                "wait for it to finish or use another output directory"
            ) from exc
        now = utc_timestamp()
        with contextlib.suppress(OSError):  # the note is informative; the lock is what counts
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()} since {now}\n".encode(), 0)
        yield path
    finally:
        os.close(fd)  # releases the lock
