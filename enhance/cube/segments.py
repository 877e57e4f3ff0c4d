"""Segments of a time cube and the index that stitches them together.

A cube is an index file (``name.h5``) and a folder of segments
(``name.h5.segments/``). Each append writes the new frames into one or more
segment files that are never modified afterwards, then replaces the index
atomically. The index holds the small per-frame columns (``t_rec``,
``quality``, input and weights sha256, WCS keywords), which frame lives in
which segment row, and two HDF5 virtual datasets, ``/data`` and
``/header``, that map every frame to its segment so plain h5py reads the
cube as one file [1]_.

Every HDF5 file here (segment or index) is built in memory and written to
disk by Python in one sequential write, fsync and :func:`os.replace`: the
HDF5 library never writes to disk itself, so a full disk or a size limit is
an ordinary ``OSError`` (HDF5 itself crashes with SIGSEGV when the
filesystem refuses its writes), and a killed process leaves at most an
unreferenced segment or a ``.part`` file, which the next append removes.

References
----------
.. [1] The HDF Group, "Virtual Dataset (VDS)", HDF5 User's Guide
   (docs.hdfgroup.org/hdf5/develop/_v_d_s.html).
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import h5py
import numpy as np

from enhance.atomic import atomic_path

__all__ = [
    "COLUMNS",
    "SEGMENT_FORMAT",
    "SegmentWriter",
    "TEXT",
    "WCS_NUMERIC",
    "WCS_TEXT",
    "index_image",
    "remove_quietly",
    "write_image",
]

#: ``format`` attribute of a segment file.
SEGMENT_FORMAT = "enhance.TimeCube.segment"
#: Numeric WCS / observer keywords stored per frame (NaN when absent).
WCS_NUMERIC = (
    "CRPIX1",
    "CRPIX2",
    "CRVAL1",
    "CRVAL2",
    "CDELT1",
    "CDELT2",
    "CROTA2",
    "PC1_1",
    "PC1_2",
    "PC2_1",
    "PC2_2",
    "RSUN_OBS",
    "RSUN_REF",
    "DSUN_OBS",
    "CRLN_OBS",
    "CRLT_OBS",
    "HGLN_OBS",
    "HGLT_OBS",
)
#: Text WCS keywords stored per frame ("" when absent).
WCS_TEXT = ("CTYPE1", "CTYPE2", "CUNIT1", "CUNIT2", "DATE-OBS", "T_OBS")
#: Variable-length UTF-8 string type of the text columns.
TEXT = h5py.string_dtype()
#: The small per-frame columns (dataset path -> HDF5 type), in the index and every segment.
COLUMNS: dict[str, object] = {
    "t_rec": TEXT,
    "quality": np.dtype("uint32"),
    "input_file": TEXT,
    "input_sha256": TEXT,
    "weights_sha256": TEXT,
    **{f"wcs/{key}": np.dtype("float64") for key in WCS_NUMERIC},
    **{f"wcs/{key}": TEXT for key in WCS_TEXT},
}
_WRITE_BLOCK = 64 << 20


def _column_array(name: str, values: Sequence[object]) -> np.ndarray:
    kind = COLUMNS[name]
    if kind is TEXT:
        return np.array([str(v) for v in values], dtype=TEXT)
    return np.asarray(values, dtype=kind)


class SegmentWriter:
    """Frames of one append, collected in an in-memory HDF5 segment file.

    Parameters
    ----------
    shape : tuple of int
        ``(ny, nx)`` of every frame.
    dataset_options : mapping
        ``h5py.Group.create_dataset`` options of ``/data`` (chunks, filter,
        fill value), the same for every segment of a cube.
    attrs : mapping
        File attributes of the segment (observable, units, provenance).
    """

    def __init__(
        self,
        shape: tuple[int, int],
        *,
        dataset_options: Mapping[str, object],
        attrs: Mapping[str, object],
    ) -> None:
        self._buffer = io.BytesIO()
        self._file = h5py.File(self._buffer, "w")
        self._headers: list[str] = []
        self._columns: dict[str, list[object]] = {name: [] for name in COLUMNS}
        ny, nx = shape
        self._file.create_dataset(
            "data",
            shape=(0, ny, nx),
            maxshape=(None, ny, nx),
            dtype="float32",
            **dataset_options,
        )
        for key, value in attrs.items():
            self._file.attrs[key] = value
        self._file.attrs["format"] = SEGMENT_FORMAT

    @property
    def count(self) -> int:
        """Frames written so far."""
        return len(self._headers)

    def add(self, data: np.ndarray, header: str, columns: Mapping[str, object]) -> int:
        """Write one frame (float32 data, header text, column values); return its row.

        The data go into the in-memory file at once; the header and columns
        are written by :meth:`finish`, as unchunked datasets of the final size.
        """
        row = self.count
        self._file["data"].resize(row + 1, axis=0)
        self._file["data"][row] = data
        self._headers.append(header)
        for name in COLUMNS:
            self._columns[name].append(columns[name])
        return row

    @property
    def nbytes(self) -> int:
        """Current size of the in-memory file."""
        self._file.flush()
        with self._buffer.getbuffer() as view:
            return view.nbytes

    def finish(self, dest: Path) -> None:
        """Close the file and write it to ``dest`` (atomically, fsynced)."""
        self._file.create_dataset("header", data=np.array(self._headers, dtype=TEXT))
        for name, values in self._columns.items():
            self._file.create_dataset(name, data=_column_array(name, values))
        self._file.attrs["n_frames"] = self.count
        self._file.close()
        write_image(dest, self._buffer)
        self._buffer = io.BytesIO()

    def discard(self) -> None:
        """Drop the in-memory file without writing anything."""
        if self._file.id.valid:
            self._file.close()
        self._buffer = io.BytesIO()


def write_image(dest: Path, image: io.BytesIO) -> None:
    """Write the in-memory file ``image`` to ``dest``: ``dest.part``, fsync, rename.

    Raises
    ------
    OutputError
        The directory is missing or not writable, or the disk is full (or
        the file over the size limit); ``dest`` is then left as it was.
    """
    with atomic_path(dest) as tmp, open(tmp, "wb") as fh, image.getbuffer() as view:
        for start in range(0, view.nbytes, _WRITE_BLOCK):
            fh.write(view[start : start + _WRITE_BLOCK])


def _runs(segment: np.ndarray, row: np.ndarray) -> list[tuple[int, int, int, int]]:
    """``(position, segment, first row, length)`` of each run of consecutive rows of a segment."""
    runs: list[tuple[int, int, int, int]] = []
    start = 0
    for i in range(1, len(segment) + 1):
        if i == len(segment) or segment[i] != segment[i - 1] or row[i] != row[i - 1] + 1:
            runs.append((start, int(segment[start]), int(row[start]), i - start))
            start = i
    return runs


def index_image(
    *,
    attrs: Mapping[str, object],
    columns: Mapping[str, Sequence[object]],
    folder: str,
    files: Sequence[str],
    counts: Sequence[int],
    segment: np.ndarray,
    row: np.ndarray,
    shape: tuple[int, int],
) -> io.BytesIO:
    """Build the index file of a cube in memory.

    Parameters
    ----------
    attrs : mapping
        File attributes (format, provenance, storage description).
    columns : mapping
        Values of every :data:`COLUMNS` entry, one per frame, in cube order.
    folder : str
        Name of the segment folder, relative to the index file.
    files, counts : sequence
        Segment file names (inside ``folder``) and their frame counts.
    segment, row : numpy.ndarray
        For each frame in cube order, its segment (index into ``files``)
        and row there.
    shape : tuple of int
        ``(ny, nx)`` of the frames.

    Returns
    -------
    io.BytesIO
        The HDF5 image, to be written with :func:`write_image`.
    """
    count = len(segment)
    image = io.BytesIO()
    with h5py.File(image, "w") as handle:
        for key, value in attrs.items():
            handle.attrs[key] = value
        for name in COLUMNS:
            handle.create_dataset(name, data=_column_array(name, columns[name]))
        handle.create_dataset("segment_files", data=np.array(list(files), dtype=TEXT))
        handle.create_dataset("segment_frames", data=np.asarray(counts, dtype="uint32"))
        handle.create_dataset("segment", data=np.asarray(segment, dtype="uint32"))
        handle.create_dataset("segment_row", data=np.asarray(row, dtype="uint32"))
        ny, nx = shape
        data = h5py.VirtualLayout(shape=(count, ny, nx), dtype="float32")
        header = h5py.VirtualLayout(shape=(count,), dtype=TEXT)
        for position, seg, first, length in _runs(segment, row):
            # '%' would start a printf-style source name in HDF5's VDS mapping
            source = f"{folder}/{files[seg]}".replace("%", "%%")
            stop = position + length
            rows = slice(first, first + length)
            data[position:stop] = h5py.VirtualSource(
                source, "data", shape=(counts[seg], ny, nx), dtype="float32"
            )[rows]
            header[position:stop] = h5py.VirtualSource(
                source, "header", shape=(counts[seg],), dtype=TEXT
            )[rows]
        handle.create_virtual_dataset("data", data, fillvalue=np.float32(np.nan))
        handle.create_virtual_dataset("header", header)
    return image


def remove_quietly(path: Path) -> bool:
    """Remove ``path`` if it exists; return whether it did."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True
