"""Segments of a time cube and the root file that stitches them together.

A cube is a root file (``name.h5``) and a folder of segments
(``name.h5.segments/``). Segment files are never modified once written.
The root holds the cube's attributes and, for ``/data``, ``/header`` and
every per-frame column (:data:`COLUMNS`), an HDF5 virtual dataset [1]_ that
maps each frame to its segment, so plain h5py reads the cube as one file.
Each virtual dataset has two parts:

- the *listed* frames, positions ``0 .. n_listed - 1``: one mapping per run
  of consecutive rows of a segment, fixed when the root is written;
- the *tail*, positions from ``n_listed`` on: one printf-style mapping of
  block ``b`` to the one-frame file ``<tail>/<b>.h5`` [1]_, so the root
  never changes as the tail grows. HDF5 takes the tail's extent from the
  files ``0.h5, 1.h5, ...`` present before the first missing one.

An append of frames later than every stored one writes only the new
one-frame files: each is written in full (``.part``, fsync, rename to a
staging name), then they are renamed into the tail from the last to the
first. Until the rename of the first new file the tail ends at a gap, so
readers see the previous cube; that one rename commits the whole append.
An append that backfills a gap writes its frames and a new root that lists
every frame in time order (with a new, empty tail), replaced atomically.

Every HDF5 file here is built in memory and written to disk by Python in
one sequential write, fsync and :func:`os.replace`: the HDF5 library never
writes to disk itself, so a full disk or a size limit is an ordinary
``OSError`` (HDF5 itself crashes with SIGSEGV when the filesystem refuses
its writes), and a killed process leaves at most unreferenced files, which
the next append removes.

To store another per-frame value, add its dataset path and HDF5 type to
:data:`COLUMNS` and its value to the mapping :func:`frame_image` receives:
every new segment then holds it and every new root maps it (frames of
older segments read as the fill value: NaN, 0 or "").

References
----------
.. [1] The HDF Group, "Virtual Dataset (VDS)", HDF5 User's Guide
   (docs.hdfgroup.org/hdf5/develop/_v_d_s.html): mappings, unlimited
   selections and printf-style source file names (``%b``, the block number).
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from h5py import h5d, h5p, h5s, h5t

from enhance_hmi.atomic import atomic_path
from enhance_hmi.io.frame_quality import QUALITY_KEYWORDS

__all__ = [
    "COLUMNS",
    "SEGMENT_FORMAT",
    "TEXT",
    "WCS_NUMERIC",
    "WCS_TEXT",
    "Listed",
    "committed_tail",
    "frame_image",
    "fsync_dir",
    "remove_quietly",
    "root_image",
    "tail_file",
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
#: The small per-frame columns (dataset path -> HDF5 type), in every segment, mapped by the root.
COLUMNS: dict[str, np.dtype[Any]] = {
    "t_rec": TEXT,
    "quality": np.dtype("uint32"),
    "input_file": TEXT,
    "input_sha256": TEXT,
    "weights_sha256": TEXT,
    # the input noise sigma of the projection onto the input (ENHNOISE, the
    # data's units) and where it came from (ENHNSRC); NaN / "" without a projection
    "input_noise": np.dtype("float64"),
    "input_noise_source": TEXT,
    # what the frame's sigma allows for about the HMI forward model (ENHSGFWD of
    # its SIGMA HDU); "" without sigma or with a head calibrated without the family
    "sigma_forward_model": TEXT,
    **{f"wcs/{key}": np.dtype("float64") for key in WCS_NUMERIC},
    **{f"wcs/{key}": TEXT for key in WCS_TEXT},
    # per-frame quality figures (enhance_hmi.io.frame_quality), NaN / "" when not measured
    **{f"frame_quality/{name}": np.dtype("float64") for name in QUALITY_KEYWORDS},
    "frame_quality/flags": TEXT,
}
_WRITE_BLOCK = 64 << 20
#: A committed tail file's name: its block number (position after the listed frames).
_TAIL_NAME = re.compile(r"^(0|[1-9][0-9]*)\.h5$")


def _column_array(name: str, values: Sequence[object]) -> np.ndarray:
    kind = COLUMNS[name]
    if kind is TEXT:
        return np.array([str(v) for v in values], dtype=TEXT)
    return np.asarray(values, dtype=kind)


def frame_image(
    data: np.ndarray,
    header: str,
    columns: Mapping[str, object],
    *,
    dataset_options: Mapping[str, object],
    attrs: Mapping[str, object],
    sigma: np.ndarray | None = None,
) -> io.BytesIO:
    """A one-frame segment file, built in memory.

    Parameters
    ----------
    data : numpy.ndarray
        The frame, ``(ny, nx)`` float32.
    header : str
        Its whole FITS header as text.
    columns : mapping
        A value for every :data:`COLUMNS` entry.
    dataset_options : mapping
        ``h5py.Group.create_dataset`` options of ``/data`` (chunks, filter,
        fill value), the same for every segment of a cube.
    attrs : mapping
        File attributes of the segment (observable, units, provenance).
    sigma : numpy.ndarray, optional
        The frame's per-pixel uncertainty (same shape and units), stored as
        ``/sigma`` with the options of ``/data`` (without one, ``/sigma``
        reads as its fill value).

    Returns
    -------
    io.BytesIO
        The HDF5 image, to be written with :func:`write_image`.
    """
    image = io.BytesIO()
    with h5py.File(image, "w") as handle:
        for key, value in attrs.items():
            handle.attrs[key] = value
        handle.attrs["format"] = SEGMENT_FORMAT
        handle.attrs["n_frames"] = 1
        ny, nx = np.shape(data)
        handle.create_dataset("data", shape=(1, ny, nx), dtype="float32", **dataset_options)
        handle["data"][0] = data
        # always present (no chunk written without a sigma: the fill value, NaN),
        # so the virtual dataset's tail never stops at a frame without one
        handle.create_dataset("sigma", shape=(1, ny, nx), dtype="float32", **dataset_options)
        if sigma is not None:
            handle["sigma"][0] = sigma
        handle.create_dataset("header", data=np.array([header], dtype=TEXT))
        for name in COLUMNS:
            handle.create_dataset(name, data=_column_array(name, [columns[name]]))
    return image


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


def tail_file(tail_dir: Path, block: int) -> Path:
    """The one-frame file of tail position ``block``."""
    return tail_dir / f"{block}.h5"


def committed_tail(tail_dir: Path) -> tuple[int, list[str]]:
    """Frames in the tail (files ``0.h5 ..`` before the first gap) and every other entry.

    Returns
    -------
    count : int
        The tail's length, as HDF5 reads it.
    others : list of str
        Names in ``tail_dir`` that are not committed tail files: what an
        append that did not complete left (files past the gap, ``.part``).
    """
    try:
        names = os.listdir(tail_dir)
    except FileNotFoundError:
        return 0, []
    blocks = {int(name[:-3]) for name in names if _TAIL_NAME.match(name)}
    count = 0
    while count in blocks:
        count += 1
    committed = {f"{b}.h5" for b in range(count)}
    return count, sorted(name for name in names if name not in committed)


def fsync_dir(directory: Path) -> None:
    """Make the renames in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Listed:
    """The frames a root lists: for each, in cube order, its segment file and row.

    Parameters
    ----------
    files : sequence of str
        Segment file names, relative to the segment folder.
    counts : sequence of int
        Frames in each segment file.
    segment, row : array-like
        For each listed frame in cube order, its file (index into
        ``files``) and row there.
    """

    def __init__(
        self,
        files: Sequence[str] = (),
        counts: Sequence[int] = (),
        segment: Sequence[int] | np.ndarray = (),
        row: Sequence[int] | np.ndarray = (),
    ) -> None:
        self.files = list(files)
        self.counts = [int(n) for n in counts]
        self.segment = np.asarray(segment, dtype=np.int64)
        self.row = np.asarray(row, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.segment)

    def runs(self) -> list[tuple[int, int, int, int]]:
        """``(position, segment, first row, length)`` of each run of consecutive rows."""
        runs: list[tuple[int, int, int, int]] = []
        segment, row = self.segment, self.row
        start = 0
        for i in range(1, len(segment) + 1):
            if i == len(segment) or segment[i] != segment[i - 1] or row[i] != row[i - 1] + 1:
                runs.append((start, int(segment[start]), int(row[start]), i - start))
                start = i
        return runs


def _printf_escaped(name: str) -> str:
    # '%' would start a printf-style source name in HDF5's VDS mapping
    return name.replace("%", "%%")


def _virtual_dataset(
    handle: h5py.File,
    name: str,
    kind: np.dtype[Any],
    frame_shape: tuple[int, ...],
    listed: Listed,
    folder: str,
    tail_pattern: str,
) -> None:
    """Create ``name``: the listed runs, then the printf-mapped tail (see the module notes)."""
    rank = len(frame_shape)
    zeros, ones = (0,) * rank, (1,) * rank
    count = len(listed)
    vspace = h5s.create_simple((count, *frame_shape), (h5s.UNLIMITED, *frame_shape))
    dcpl = h5p.create(h5p.DATASET_CREATE)
    for position, seg, first, length in listed.runs():
        vspace.select_hyperslab((position, *zeros), (1, *ones), block=(length, *frame_shape))
        source = h5s.create_simple((listed.counts[seg], *frame_shape))
        source.select_hyperslab((first, *zeros), (1, *ones), block=(length, *frame_shape))
        path = _printf_escaped(f"{folder}/{listed.files[seg]}")
        dcpl.set_virtual(vspace, path.encode(), name.encode(), source)
    vspace.select_hyperslab(
        (count, *zeros), (h5s.UNLIMITED, *ones), stride=(1, *ones), block=(1, *frame_shape)
    )
    source = h5s.create_simple((1, *frame_shape))
    source.select_all()
    dcpl.set_virtual(vspace, tail_pattern.encode(), name.encode(), source)
    dtype = np.dtype(kind)
    if dtype.kind == "f":
        dcpl.set_fill_value(np.array(np.nan, dtype=dtype))
    h5d.create(handle.id, name.encode(), h5t.py_create(dtype, logical=True), vspace, dcpl=dcpl)


def root_image(
    *,
    attrs: Mapping[str, object],
    folder: str,
    tail: str,
    listed: Listed,
    shape: tuple[int, int],
) -> io.BytesIO:
    """Build the root file of a cube in memory.

    Parameters
    ----------
    attrs : mapping
        File attributes (format, provenance, storage description).
    folder : str
        Name of the segment folder, relative to the root file.
    tail : str
        Name of the tail folder inside ``folder``.
    listed : Listed
        The frames the root lists, in cube order, before the tail's.
    shape : tuple of int
        ``(ny, nx)`` of the frames.

    Returns
    -------
    io.BytesIO
        The HDF5 image, to be written with :func:`write_image`.
    """
    image = io.BytesIO()
    pattern = _printf_escaped(f"{folder}/{tail}") + "/%b.h5"
    with h5py.File(image, "w") as handle:
        for key, value in attrs.items():
            handle.attrs[key] = value
        for name in COLUMNS:
            if "/" in name:
                handle.require_group(name.rsplit("/", 1)[0])
        _virtual_dataset(handle, "data", np.dtype("float32"), shape, listed, folder, pattern)
        # NaN for frames stored without their uncertainty
        _virtual_dataset(handle, "sigma", np.dtype("float32"), shape, listed, folder, pattern)
        _virtual_dataset(handle, "header", TEXT, (), listed, folder, pattern)
        for name, kind in COLUMNS.items():
            _virtual_dataset(handle, name, kind, (), listed, folder, pattern)
        handle.create_dataset("segment_files", data=np.array(listed.files, dtype=TEXT))
        handle.create_dataset("segment_frames", data=np.asarray(listed.counts, dtype="uint32"))
        handle.create_dataset("segment", data=listed.segment.astype("uint32"))
        handle.create_dataset("segment_row", data=listed.row.astype("uint32"))
    return image


def remove_quietly(path: Path) -> bool:
    """Remove ``path`` if it exists; return whether it did."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True
