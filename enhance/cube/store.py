"""HDF5 time cubes of enhanced frames: :class:`TimeCube`.

One cube holds the frames of one observable for one period (see
:mod:`enhance.cube.layout`). It is an index file ``name.h5`` next to a
folder of segments ``name.h5.segments/`` (see :mod:`enhance.cube.segments`);
the index reads as one HDF5 file::

    /data            (time, y, x) float32, NaN off disk, chunked per frame
                     (or per tile), compressed with a standard HDF5 filter;
                     a virtual dataset over the segments
    /header          (time,) str   the frame's whole FITS header (2x WCS),
                     virtual like /data
    /t_rec           (time,) str   T_REC, TAI, the key of each frame
    /quality         (time,) uint32  HMI QUALITY bits of the input record
    /input_file      (time,) str   input file name
    /input_sha256    (time,) str   sha256 of the input file
    /weights_sha256  (time,) str   sha256 of the weights that made the frame
    /wcs/<KEY>       (time,)       WCS and observer keywords, one per key
    /segment, /segment_row, /segment_files, /segment_frames
                     where each frame is stored

File attributes record the provenance (package version, weights sha256, PSF
model, configuration hash, method reference) and how the data are stored
(filter, quantisation step and units). The time axis is sorted by
``T_REC``. :class:`TimeCube` reads frames from the segment files themselves
and fails on a missing one; HDF5 returns the fill value (NaN, "") for the
parts of a virtual dataset it cannot open, so plain h5py users should read
``/data`` and ``/header`` a few frames at a time (one read opens every
segment it spans at once, up to the process's open-file limit).

An append costs the new frames, not the cube: they go into new segment
files, written completely (in memory, then one write, fsync and rename)
before a new index that lists them replaces the old one with
:func:`os.replace`. Until that rename readers see the previous cube; a
killed or failed append leaves it untouched, and its unreferenced segments
are removed by the next append. Segments are never modified, so a backfilled
gap only reorders the index. Frames already in the cube (same ``T_REC``) are
skipped, so an append can be repeated safely. Version 1 cubes (one file
holding every frame) are read as they are and become the first segment of
their first append (a hard link, no copy).

References
----------
.. [1] Díaz Baso, C. J. & Asensio Ramos, A. (2018), "Enhancing SDO/HMI images
   using deep learning", A&A 614, A5.
.. [2] The HDF Group, "HDF5 chunking and compression"
   (docs.hdfgroup.org/hdf5/develop/_l_b_dset_layout.html).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import errno
import fcntl
import logging
import os
import secrets
import shutil
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from astropy.io import fits

from enhance import __version__
from enhance.atomic import NO_ROOM_ERRNOS, check_writable_dir, no_room_error, part_path
from enhance.cube.codec import Codec, quantize
from enhance.cube.layout import format_t_rec, parse_t_rec
from enhance.cube.segments import (
    COLUMNS,
    WCS_NUMERIC,
    WCS_TEXT,
    SegmentWriter,
    index_image,
    remove_quietly,
    write_image,
)
from enhance.errors import CubeError, EnhanceError, OutputError
from enhance.frame import OBSERVABLES, Frame
from enhance.provenance import REFERENCE

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "SEGMENT_BYTES",
    "SEGMENTS_SUFFIX",
    "TimeCube",
    "WCS_NUMERIC",
    "WCS_TEXT",
]

log = logging.getLogger(__name__)

#: ``format`` attribute of every cube file.
FORMAT = "enhance.TimeCube"
#: Layout version written: 2, an index over segment files (1: one file).
FORMAT_VERSION = 2
#: Layout versions this code reads (and appends to).
READABLE_VERSIONS = (1, 2)
#: Suffix of the segment folder next to the index file.
SEGMENTS_SUFFIX = ".segments"
#: A segment is closed (and a new one begun) once its compressed size passes
#: this; each segment is built in memory, so an append holds at most about
#: this plus one compressed frame (a full-disk frame is its own segment).
SEGMENT_BYTES = 64 << 20
#: Attributes that describe the whole cube, not one segment.
_CUBE_ONLY = ("n_frames", "updated", "time_axis", "segments", "segments_folder")


def _frame_key(frame: Frame) -> str:
    value = frame.meta.get("t_rec") or frame.header.get("T_REC")
    if not value:
        raise CubeError(
            f"frame {frame.meta.get('input_file', '?')} has no T_REC; cubes index frames by "
            "T_REC: enhance JSOC files or set meta['t_rec']"
        )
    return format_t_rec(parse_t_rec(str(value)))


def _quality(frame: Frame) -> int:
    value = frame.meta.get("quality", frame.header.get("QUALITY", 0))
    if value in (None, ""):
        return 0
    if isinstance(value, str):
        value = int(value, 16) if value.lower().startswith("0x") else int(value)
    return int(value) & 0xFFFFFFFF


def _meta(frame: Frame, key: str, card: str) -> str:
    value = frame.meta.get(key)
    if value in (None, ""):
        value = frame.header.get(card, "")
    return str(value)


def _frame_columns(frame: Frame, key: str) -> dict[str, object]:
    """The per-frame column values (:data:`~enhance.cube.segments.COLUMNS`) of ``frame``."""
    header = frame.header
    columns: dict[str, object] = {
        "t_rec": key,
        "quality": _quality(frame),
        "input_file": Path(_meta(frame, "input_file", "ENHINPUT")).name,
        "input_sha256": _meta(frame, "input_sha256", "ENHINSHA"),
        "weights_sha256": _meta(frame, "weights_sha256", "ENHWSHA"),
    }
    for name in WCS_NUMERIC:
        try:
            columns[f"wcs/{name}"] = float(header.get(name, np.nan))
        except (TypeError, ValueError):
            columns[f"wcs/{name}"] = np.nan
    for name in WCS_TEXT:
        columns[f"wcs/{name}"] = str(header.get(name, ""))
    return columns


class _OpenCube:
    """An open cube: its index (or version 1 file) and the segments its frames are in."""

    def __init__(self, handle: h5py.File, path: Path, version: int) -> None:
        self.handle = handle
        self.path = path
        self.version = version
        self._segment: tuple[int, h5py.File] | None = None
        default = path.name + SEGMENTS_SUFFIX
        self.folder = path.parent / _text(handle.attrs.get("segments_folder", default))
        if version == 1:
            count = handle["data"].shape[0]
            self.files = [path]
            self.segment = np.zeros(count, dtype=np.int64)
            self.row = np.arange(count)
            return
        folder = self.folder
        self.files = [folder / _text(name) for name in handle["segment_files"][:]]
        missing = [p for p in self.files if not p.is_file()]
        if missing:
            raise CubeError(
                f"cube {path} is missing {len(missing)} of its {len(self.files)} segment files "
                f"(first {missing[0].name}); the folder {folder.name}/ must stay next to "
                f"{path.name}: copy or move both together"
            )
        self.segment = handle["segment"][:].astype(np.int64)
        self.row = handle["segment_row"][:].astype(np.int64)

    def __len__(self) -> int:
        return len(self.segment)

    def _segment_file(self, index: int) -> h5py.File:
        if self._segment is not None and self._segment[0] == index:
            return self._segment[1]
        self.close_segment()
        try:
            handle = h5py.File(self.files[index], "r")
        except OSError as exc:
            raise CubeError(
                f"segment {self.files[index].name} of cube {self.path.name} is unreadable ({exc})"
            ) from exc
        self._segment = (index, handle)
        return handle

    def frame(self, index: int) -> tuple[np.ndarray, str]:
        """Data and header text of frame ``index`` (0-based, in time order)."""
        if self.version == 1:
            return self.handle["data"][index], _text(self.handle["header"][index])
        segment = self._segment_file(int(self.segment[index]))
        row = int(self.row[index])
        if row >= segment["data"].shape[0]:
            raise CubeError(
                f"segment {self.files[self.segment[index]].name} of cube {self.path.name} has "
                f"no row {row}; the segment folder does not belong to this index"
            )
        return segment["data"][row], _text(segment["header"][row])

    def close_segment(self) -> None:
        if self._segment is not None:
            self._segment[1].close()
            self._segment = None


@dataclasses.dataclass
class _CubeState:
    """What an append needs to know about the cube on disk."""

    version: int
    attrs: dict[str, Any]
    shape: tuple[int, int]
    dataset_options: dict[str, Any]
    folder: Path
    files: list[str]
    counts: list[int]
    columns: dict[str, list[object]]
    segment: np.ndarray
    row: np.ndarray


class TimeCube:
    """An HDF5 time cube of enhanced frames of one observable.

    Parameters
    ----------
    path : path-like
        The ``.h5`` index file (created by the first :meth:`append`, with
        the segment folder ``path.segments`` beside it).
    codec : Codec, optional
        Compression and quantisation of new cubes (an existing cube keeps
        its own). Default: Blosc2-zstd level 1, no quantisation.
    tile : int, optional
        Chunk the frames in ``tile`` x ``tile`` pixel tiles instead of whole
        frames (better for reading small regions of full-disk cubes).
    provenance : mapping, optional
        Extra file attributes for a new cube, e.g. ``config_sha256``.
    segment_bytes : int, optional
        Close a segment and begin another once it holds this many bytes
        (segments are built in memory: this bounds an append's memory).

    Examples
    --------
    >>> cube = TimeCube("magnetogram/20140101.h5")  # doctest: +SKIP
    >>> cube.append(frames)                           # doctest: +SKIP
    >>> maps = cube.read_maps()                       # doctest: +SKIP
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        codec: Codec | None = None,
        tile: int | None = None,
        provenance: Mapping[str, object] | None = None,
        segment_bytes: int = SEGMENT_BYTES,
    ) -> None:
        self.path = Path(path)
        self.codec = codec or Codec()
        if tile is not None and tile < 1:
            raise CubeError(f"chunk tile must be a positive number of pixels, got {tile}")
        if segment_bytes < 1:
            raise CubeError(f"segment_bytes must be positive, got {segment_bytes}")
        self.tile = tile
        self.segment_bytes = int(segment_bytes)
        self.provenance = {k: str(v) for k, v in (provenance or {}).items() if v is not None}

    @property
    def segments_dir(self) -> Path:
        """The folder of segment files next to the index (as the index names it)."""
        return self.path.parent / self._segments_folder()

    def _segments_folder(self) -> str:
        """Name of the segment folder: recorded in the index, so the index may be renamed."""
        default = self.path.name + SEGMENTS_SUFFIX
        if not self.exists:
            return default
        with self._open() as cube:
            return _text(cube.handle.attrs.get("segments_folder", default))

    # ------------------------------------------------------------- reading
    @contextlib.contextmanager
    def _open(self) -> Iterator[_OpenCube]:
        if not self.path.is_file():
            raise CubeError(f"cube {self.path} does not exist; append frames to create it")
        import hdf5plugin  # noqa: F401  (registers Blosc2/zstd for reading)

        try:
            handle = h5py.File(self.path, "r")
        except OSError as exc:
            raise CubeError(f"cube {self.path} is not a readable HDF5 file ({exc})") from exc
        with handle:
            if handle.attrs.get("format") != FORMAT:
                raise CubeError(f"{self.path} is not an enhance time cube (no format attribute)")
            version = int(handle.attrs.get("format_version", 1))
            if version not in READABLE_VERSIONS:
                raise CubeError(
                    f"cube {self.path} has layout version {version}; this enhance "
                    f"{__version__} reads versions {READABLE_VERSIONS}: upgrade enhance"
                )
            cube = _OpenCube(handle, self.path, version)
            try:
                yield cube
            finally:
                cube.close_segment()

    @property
    def exists(self) -> bool:
        """True once the cube file exists."""
        return self.path.is_file()

    def times(self) -> list[str]:
        """``T_REC`` of every frame, in storage (time) order; empty if no file."""
        if not self.exists:
            return []
        with self._open() as cube:
            return [_text(v) for v in cube.handle["t_rec"][:]]

    def __len__(self) -> int:
        return len(self.times())

    def attributes(self) -> dict[str, Any]:
        """The file attributes (provenance and storage description)."""
        with self._open() as cube:
            return {k: _plain(v) for k, v in cube.handle.attrs.items()}

    def table(self) -> list[dict[str, object]]:
        """One record per frame: t_rec, quality, input file and sha256, weights sha256."""
        with self._open() as cube:
            cols = {
                name: cube.handle[name][:]
                for name in ("t_rec", "quality", "input_file", "input_sha256", "weights_sha256")
            }
        return [
            {
                "t_rec": _text(cols["t_rec"][i]),
                "quality": int(cols["quality"][i]),
                "input_file": _text(cols["input_file"][i]),
                "input_sha256": _text(cols["input_sha256"][i]),
                "weights_sha256": _text(cols["weights_sha256"][i]),
            }
            for i in range(len(cols["t_rec"]))
        ]

    def read_frame(self, index: int) -> tuple[np.ndarray, fits.Header]:
        """Data (float32, NaN off disk) and FITS header of frame ``index``."""
        with self._open() as cube:
            count = len(cube)
            if not -count <= index < count:
                raise CubeError(f"cube {self.path.name} has {count} frames; no index {index}")
            data, header = cube.frame(index % count)
        return data, fits.Header.fromstring(header)

    def read_maps(self, *, start: str | None = None, end: str | None = None) -> list:
        """The frames as :class:`sunpy.map.GenericMap` objects, in time order.

        Parameters
        ----------
        start, end : str, optional
            Keep frames with ``start <= T_REC <= end`` (TAI, any form
            :func:`enhance.cube.layout.parse_t_rec` reads).

        Returns
        -------
        list of sunpy.map.GenericMap
            Each with the frame's 2x WCS header, data in gauss (magnetogram)
            or quiet-Sun units (continuum).
        """
        import sunpy.map

        lo = parse_t_rec(start) if start else None
        hi = parse_t_rec(end) if end else None
        maps = []
        with self._open() as cube:
            keys = [parse_t_rec(_text(v)) for v in cube.handle["t_rec"][:]]
            for index in np.argsort(np.array(keys, dtype="datetime64[s]"), kind="stable"):
                when = keys[index]
                if (lo is not None and when < lo) or (hi is not None and when > hi):
                    continue
                data, header = cube.frame(int(index))
                maps.append(sunpy.map.Map(data, fits.Header.fromstring(header)))
        return maps

    # ------------------------------------------------------------ writing
    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        lock = self.path.with_name(self.path.name + ".lock")
        try:
            fh = open(lock, "a+")  # noqa: SIM115  (held for the whole append)
        except OSError as exc:
            raise self._write_error(exc, None) from exc
        with fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    def append(self, frames: Iterable[Frame]) -> int:
        """Append the frames not yet in the cube, atomically; return how many.

        ``frames`` may be a generator (frames are read one at a time, so a
        day of full-disk frames never sits in memory). Frames whose ``T_REC``
        is already in the cube are skipped (with a warning when their input
        file differs). Frames end up in time order even when a gap is
        backfilled. The bytes written are those of the new frames and of
        the index (its small per-frame columns), never the stored frames.

        Raises
        ------
        CubeError
            A frame of another observable, shape or weights than the cube, a
            frame without ``T_REC``, an unreadable existing cube, or a full
            disk (or file size limit). The cube on disk is left as it was.
        OutputError
            The directory is missing or not writable.
        """
        check_writable_dir(self.path.parent if str(self.path.parent) else Path("."))
        with self._lock():
            state = self._load()
            self._remove_uncommitted(state)
            known: dict[str, str] = {}
            if state is not None:
                known = dict(
                    zip(state.columns["t_rec"], state.columns["input_sha256"], strict=True)
                )
            iterator = iter(frames)
            first = None
            for frame in iterator:
                key = _frame_key(frame)
                if key in known:
                    self._warn_duplicate(key, frame, known)
                    continue
                first = frame
                break
            if first is None:
                log.info("%s: nothing new to append (%d frames)", self.path.name, len(known))
                return 0
            if state is None:
                state = self._new_state(first)
            written: list[Path] = []
            try:
                added = self._write(state, _chain(first, iterator), known, written)
            except BaseException as exc:
                for path in written:
                    remove_quietly(path)
                if isinstance(exc, OSError) and exc.errno in NO_ROOM_ERRNOS:
                    raise self._write_error(exc, state) from exc
                raise
            log.info("%s: appended %d frame(s), %d in all", self.path.name, added, len(known))
            return added

    def _write_error(self, exc: OSError, state: _CubeState | None) -> EnhanceError:
        """The one-line error of a write refused with ``exc``: a CubeError for lack of room."""
        if exc.errno not in NO_ROOM_ERRNOS:
            return OutputError(f"cannot write cube {self.path}: {exc}")
        detail = exc if isinstance(exc, OutputError) else no_room_error(self.path, exc)
        held = "" if state is None else f", still {len(state.segment)} frame(s)"
        return CubeError(f"cube {self.path.name} not extended (unchanged{held}): {detail}")

    def _write(
        self,
        state: _CubeState,
        frames: Iterator[Frame],
        known: dict[str, str],
        written: list[Path],
    ) -> int:
        """Write the new frames into segments, then the index; return how many were added."""
        try:
            state.folder.mkdir(exist_ok=True)
        except OSError as exc:
            raise self._write_error(exc, state) from exc
        step = float(state.attrs.get("quantization_step", 0.0) or 0.0)
        segment_attrs = {k: v for k, v in state.attrs.items() if k not in _CUBE_ONLY}
        new_files: list[str] = []
        new_counts: list[int] = []
        new_columns: dict[str, list[object]] = {name: [] for name in COLUMNS}
        new_segment: list[int] = []
        new_row: list[int] = []
        writer: SegmentWriter | None = None

        def finish(writer: SegmentWriter) -> None:
            name = f"{len(state.files) + len(new_files):06d}-{secrets.token_hex(4)}.h5"
            dest = state.folder / name
            written.append(dest)
            writer.finish(dest)
            new_files.append(name)
            new_counts.append(writer.count)

        try:
            for frame in frames:
                key = _frame_key(frame)
                if key in known:
                    self._warn_duplicate(key, frame, known)
                    continue
                self._check(state, frame, key)
                if writer is None:
                    segment_attrs["created"] = _now()
                    writer = SegmentWriter(
                        state.shape, dataset_options=state.dataset_options, attrs=segment_attrs
                    )
                columns = _frame_columns(frame, key)
                row = writer.add(quantize(frame.data, step), frame.header.tostring(), columns)
                for name in COLUMNS:
                    new_columns[name].append(columns[name])
                new_segment.append(len(state.files) + len(new_files))
                new_row.append(row)
                known[key] = str(columns["input_sha256"])
                if writer.nbytes >= self.segment_bytes:
                    finish(writer)
                    writer = None
            if writer is not None:
                finish(writer)
                writer = None
        finally:
            if writer is not None:
                writer.discard()
        if state.version == 1:
            state = self._adopt_single_file(state, written)
        self._commit(state, new_files, new_counts, new_columns, new_segment, new_row)
        return len(new_segment)

    def _adopt_single_file(self, state: _CubeState, written: list[Path]) -> _CubeState:
        """Make a version 1 cube file the first segment of its index (a hard link, no copy)."""
        name = f"{0:06d}-v1-{secrets.token_hex(4)}.h5"
        dest = state.folder / name
        written.append(dest)
        try:
            os.link(self.path, dest)
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
                raise
            log.warning(
                "%s: this filesystem has no hard links; copying the version 1 cube once "
                "into its segment folder",
                self.path.name,
            )
            shutil.copyfile(self.path, dest)
        log.info("%s: version 1 cube kept as segment %s", self.path.name, name)
        return dataclasses.replace(state, version=2, files=[name, *state.files[1:]])

    def _commit(
        self,
        state: _CubeState,
        new_files: list[str],
        new_counts: list[int],
        new_columns: dict[str, list[object]],
        new_segment: list[int],
        new_row: list[int],
    ) -> None:
        """Replace the index by one that lists the old and new frames in time order."""
        columns = {name: state.columns[name] + new_columns[name] for name in COLUMNS}
        segment = np.concatenate([state.segment, np.asarray(new_segment, dtype=np.int64)])
        row = np.concatenate([state.row, np.asarray(new_row, dtype=np.int64)])
        order = np.argsort(
            np.array([parse_t_rec(t) for t in columns["t_rec"]], dtype="datetime64[s]"),
            kind="stable",
        )
        columns = {name: [values[i] for i in order] for name, values in columns.items()}
        attrs = dict(state.attrs)
        attrs.update(
            format_version=FORMAT_VERSION,
            n_frames=len(order),
            updated=_now(),
            time_axis="axis 0 of /data, sorted by t_rec (TAI)",
            segments_folder=state.folder.name,
            segments=f"frames stored in {state.folder.name}/ (never modified); "
            "/data and /header are virtual datasets over them",
        )
        image = index_image(
            attrs=attrs,
            columns=columns,
            folder=state.folder.name,
            files=[*state.files, *new_files],
            counts=[*state.counts, *new_counts],
            segment=segment[order],
            row=row[order],
            shape=state.shape,
        )
        write_image(self.path, image)

    def _load(self) -> _CubeState | None:
        """The cube on disk, as an append needs it (None when there is none yet)."""
        if not self.exists:
            return None
        with self._open() as cube:
            handle = cube.handle
            attrs = {k: _plain(v) for k, v in handle.attrs.items()}
            columns: dict[str, list[object]] = {}
            for name, kind in COLUMNS.items():
                values = handle[name][:]
                columns[name] = (
                    [_text(v) for v in values] if kind == COLUMNS["t_rec"] else values.tolist()
                )
            if cube.version == 1:
                files, counts = [self.path.name], [len(cube)]
                source = handle["data"]
                options = self._options_like(source)
            else:
                files = [p.name for p in cube.files]
                counts = [int(n) for n in handle["segment_frames"][:]]
                with h5py.File(cube.files[-1], "r") as newest:
                    options = self._options_like(newest["data"])
            shape = tuple(int(n) for n in handle["data"].shape[1:])
            return _CubeState(
                version=cube.version,
                attrs=attrs,
                shape=(shape[0], shape[1]),
                dataset_options=options,
                folder=cube.folder,
                files=files,
                counts=counts,
                columns=columns,
                segment=cube.segment.copy(),
                row=cube.row.copy(),
            )

    @staticmethod
    def _options_like(data: h5py.Dataset) -> dict[str, Any]:
        """``create_dataset`` options giving the chunks, filters and fill value of ``data``."""
        return {"dcpl": data.id.get_create_plist(), "chunks": data.chunks}

    def _new_state(self, frame: Frame) -> _CubeState:
        if frame.observable not in OBSERVABLES:
            raise CubeError(f"unknown observable {frame.observable!r}")
        if self.codec.compression != "gzip":
            import hdf5plugin  # noqa: F401  (registers Blosc2/zstd for writing)
        ny, nx = np.shape(frame.data)
        chunk = (1, ny, nx) if self.tile is None else (1, min(self.tile, ny), min(self.tile, nx))
        units = "G" if frame.observable == "magnetogram" else "I/I_quiet-Sun"
        attrs = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "observable": frame.observable,
            "units": units,
            "software": f"enhance {__version__}",
            "package_version": __version__,
            "reference": REFERENCE,
            "weights_sha256": _meta(frame, "weights_sha256", "ENHWSHA"),
            "weights_file": _meta(frame, "weights_file", "ENHWTS"),
            "psf_model": _meta(frame, "psf_model", "ENHPSF"),
            "created": _now(),
            "compression": self.codec.describe(),
            "quantization_step": self.codec.step,
            "quantization_units": units,
            "quantization_note": (
                "values rounded to a multiple of quantization_step (rms error step/sqrt(12))"
                if self.codec.step
                else "values stored exactly (float32)"
            ),
            "chunking": "per frame" if self.tile is None else f"tiles of {self.tile} px",
            "off_disk": "NaN",
        }
        attrs.update(self.provenance)
        options = {"chunks": chunk, "fillvalue": np.float32(np.nan), **self.codec.dataset_options()}
        return _CubeState(
            version=FORMAT_VERSION,
            attrs=attrs,
            shape=(int(ny), int(nx)),
            dataset_options=options,
            folder=self.path.parent / (self.path.name + SEGMENTS_SUFFIX),
            files=[],
            counts=[],
            columns={name: [] for name in COLUMNS},
            segment=np.zeros(0, dtype=np.int64),
            row=np.zeros(0, dtype=np.int64),
        )

    def _remove_uncommitted(self, state: _CubeState | None) -> None:
        """Remove what a killed or failed append left: its segments and ``.part`` files."""
        remove_quietly(part_path(self.path))
        folder = state.folder if state is not None else self.segments_dir
        if not folder.is_dir():
            return
        keep = set(state.files) if state is not None and state.version == 2 else set()
        removed = [
            entry.name
            for entry in sorted(folder.iterdir())
            if entry.name not in keep and entry.is_file() and remove_quietly(entry)
        ]
        if removed:
            log.warning(
                "%s: removed %d file(s) of an append that did not complete: %s",
                self.path.name,
                len(removed),
                ", ".join(removed),
            )

    @staticmethod
    def _warn_duplicate(key: str, frame: Frame, known: dict[str, str]) -> None:
        sha = _meta(frame, "input_sha256", "ENHINSHA")
        if sha and known[key] and sha != known[key]:
            log.warning(
                "%s is already in the cube from another input file (sha256 %s..., now %s...); "
                "kept the stored frame: delete the cube to rebuild it",
                key,
                known[key][:12],
                sha[:12],
            )

    def _check(self, state: _CubeState, frame: Frame, key: str) -> None:
        attrs = state.attrs
        if frame.observable != attrs["observable"]:
            raise CubeError(
                f"frame {key} is a {frame.observable} image but cube {self.path.name} holds "
                f"{attrs['observable']} frames; cubes hold one observable"
            )
        if tuple(np.shape(frame.data)) != state.shape:
            raise CubeError(
                f"frame {key} has shape {np.shape(frame.data)} but cube {self.path.name} holds "
                f"{state.shape} frames; use one cube per field of view"
            )
        sha = _meta(frame, "weights_sha256", "ENHWSHA")
        if attrs["weights_sha256"] and sha and sha != attrs["weights_sha256"]:
            raise CubeError(
                f"frame {key} was enhanced with weights {sha[:12]}... but cube "
                f"{self.path.name} with {str(attrs['weights_sha256'])[:12]}...; write products "
                "of other weights to another output directory"
            )


def _chain(first: Frame, rest: Iterator[Frame]) -> Iterator[Frame]:
    yield first
    yield from rest


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _plain(value: object) -> object:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
