"""An open time cube on disk: where each frame is stored, and reading it.

:class:`StoredCube` resolves every layout version this package wrote to one
list of source files and, per frame in time order, its file and row:

- version 1: one file holding every frame and column;
- version 2: an index file listing segment files (columns in the index);
- version 3: a root file listing segment files, then a tail of one-frame
  files (see :mod:`enhance_hmi.cube.segments`).

Frames are read from the source files themselves, never through the root's
virtual datasets: HDF5 returns the fill value, silently, for a source file
it cannot open (a missing file, or the process's open-file limit reached),
where this reader raises :class:`~enhance_hmi.errors.CubeError`.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from enhance_hmi.cube.segments import TEXT, committed_tail, tail_file
from enhance_hmi.errors import CubeError

__all__ = ["SEGMENTS_SUFFIX", "StoredCube", "plain", "text"]

#: Suffix of the segment folder next to the root file.
SEGMENTS_SUFFIX = ".segments"


def text(value: object) -> str:
    """``value`` as ``str`` (HDF5 strings come back as bytes)."""
    return value.decode() if isinstance(value, bytes) else str(value)


def plain(value: object) -> object:
    """An HDF5 attribute value as a plain Python value."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        return value.item()
    return value


class StoredCube:
    """The frames of an open cube file (root, index or version 1 file).

    Parameters
    ----------
    handle : h5py.File
        The open root (or index, or version 1) file.
    path : Path
        Its path.
    version : int
        Its ``format_version``.

    Attributes
    ----------
    folder : Path
        The segment folder (as the file records it).
    files : list of Path
        Source files: the listed segments, then (version 3) the tail files.
    listed : int
        How many of ``files`` are listed segments (the rest are tail files).
    segment, row : numpy.ndarray
        For each frame in time order, its source (index into ``files``) and row.
    tail : str or None
        Name of the tail folder (version 3).
    """

    def __init__(self, handle: h5py.File, path: Path, version: int) -> None:
        self.handle = handle
        self.path = path
        self.version = version
        self._open: tuple[int, h5py.File] | None = None
        default = path.name + SEGMENTS_SUFFIX
        self.folder = path.parent / text(handle.attrs.get("segments_folder", default))
        self.tail: str | None = None
        if version == 1:
            count = handle["data"].shape[0]
            self.files = [path]
            self.counts = [count]
            self.listed = 1
            self.segment = np.zeros(count, dtype=np.int64)
            self.row = np.arange(count, dtype=np.int64)
            return
        names = [text(name) for name in handle["segment_files"][:]]
        self.files = [self.folder / name for name in names]
        self.counts = [int(n) for n in handle["segment_frames"][:]]
        self.listed = len(self.files)
        segment = handle["segment"][:].astype(np.int64)
        row = handle["segment_row"][:].astype(np.int64)
        missing = [p for p in self.files if not p.is_file()]
        if version >= 3:
            self.tail = text(handle.attrs["tail"])
            tail_dir = self.folder / self.tail
            if not tail_dir.is_dir():
                missing.insert(0, tail_dir)
            count, _ = committed_tail(tail_dir)
            self.files += [tail_file(tail_dir, b) for b in range(count)]
            self.counts += [1] * count
            segment = np.concatenate([segment, self.listed + np.arange(count, dtype=np.int64)])
            row = np.concatenate([row, np.zeros(count, dtype=np.int64)])
        if missing:
            raise CubeError(
                f"cube {path} is missing {len(missing)} of its segment files or folders "
                f"(first {missing[0].name}); the folder {self.folder.name}/ must stay next to "
                f"{path.name}: copy or move both together"
            )
        self.segment = segment
        self.row = row

    def __len__(self) -> int:
        return len(self.segment)

    def _source(self, index: int) -> h5py.File:
        if self._open is not None and self._open[0] == index:
            return self._open[1]
        self.close()
        if self.version == 1:
            return self.handle
        try:
            handle = h5py.File(self.files[index], "r")
        except OSError as exc:
            raise CubeError(
                f"segment {self.files[index].name} of cube {self.path.name} is unreadable ({exc})"
            ) from exc
        self._open = (index, handle)
        return handle

    def frame(self, index: int) -> tuple[np.ndarray, str]:
        """Data and header text of frame ``index`` (0-based, in time order)."""
        source = int(self.segment[index])
        handle = self._source(source)
        row = int(self.row[index])
        if row >= handle["data"].shape[0]:
            raise CubeError(
                f"segment {self.files[source].name} of cube {self.path.name} has "
                f"no row {row}; the segment folder does not belong to this cube"
            )
        return handle["data"][row], text(handle["header"][row])

    def sigma(self, index: int) -> np.ndarray:
        """The per-pixel uncertainty of frame ``index``; NaN when stored without one."""
        source = int(self.segment[index])
        handle = self._source(source)
        if "sigma" not in handle:
            return np.full(handle["data"].shape[1:], np.nan, dtype=np.float32)
        return handle["sigma"][int(self.row[index])]

    def column(self, name: str) -> list[str | int | float]:
        """The values of per-frame column ``name``, in time order (text as ``str``).

        Frames of segments written before the column existed get ``""`` or
        NaN.
        """
        if self.version < 3:
            values = self.handle[name][:]
        else:
            kind = np.dtype(self.handle[name].dtype)
            values = np.empty(len(self), dtype=object if kind.kind == "O" else kind)
            order = np.argsort(self.segment, kind="stable")
            bounds = np.flatnonzero(np.diff(self.segment[order])) + 1
            for group in np.split(order, bounds) if len(order) else []:
                handle = self._source(int(self.segment[group[0]]))
                if name in handle:
                    values[group] = handle[name][:][self.row[group]]
                else:
                    values[group] = "" if kind.kind == "O" else np.nan
            self.close()
        if np.dtype(values.dtype).kind in "OSU" or self.handle[name].dtype == TEXT:
            return [text(v) for v in values]
        numbers: list[str | int | float] = values.tolist()
        return numbers

    def data_options_source(self) -> h5py.Dataset:
        """The ``/data`` dataset of the newest source (its chunks and filters are reused)."""
        return self._source(len(self.files) - 1)["data"]

    def close(self) -> None:
        """Close the source file held open (not the root)."""
        if self._open is not None:
            self._open[1].close()
            self._open = None
