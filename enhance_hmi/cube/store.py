"""HDF5 time cubes of enhanced frames: :class:`TimeCube`.

One cube holds the frames of one observable for one period (see
:mod:`enhance_hmi.cube.layout`). It is a root file ``name.h5`` next to a folder
of segments ``name.h5.segments/`` (see :mod:`enhance_hmi.cube.segments`); the
root reads as one HDF5 file::

    /data            (time, y, x) float32, NaN off disk, chunked per frame
                     (or per tile), compressed with a standard HDF5 filter
    /header          (time,) str   the frame's whole FITS header (2x WCS)
    /t_rec           (time,) str   T_REC, TAI, the key of each frame
    /quality         (time,) uint32  HMI QUALITY bits of the input record
    /input_file      (time,) str   input file name
    /input_sha256    (time,) str   sha256 of the input file
    /weights_sha256  (time,) str   sha256 of the weights that made the frame
    /input_noise     (time,) float64  input noise sigma of the projection onto the
                     input (ENHNOISE, the data's units; NaN without one)
    /input_noise_source  (time,) str  given, histogram or spectral (ENHNSRC)
    /sigma_forward_model  (time,) str  what the sigma allows for about the HMI
                     forward model (ENHSGFWD; "" without sigma)
    /wcs/<KEY>       (time,)       WCS and observer keywords, one per key
    /segment, /segment_row, /segment_files, /segment_frames
                     where each listed frame is stored (the tail's frames
                     are the files <tail>/0.h5, 1.h5, ... after them)

Every per-frame dataset is a virtual dataset over the segment files. File
attributes record the provenance (package version, weights sha256, PSF
model, configuration hash, method reference) and how the data are stored
(filter, quantisation step and units). The time axis is sorted by ``T_REC``.
:class:`TimeCube` reads frames from the segment files themselves and fails
on a missing one; HDF5 returns the fill value (NaN, "", 0) for the parts of
a virtual dataset whose file it cannot open, and keeps every file a read
touched open until the dataset is closed, so plain h5py users should read
``/data`` a few frames at a time and keep ``ulimit -n`` above the frames
one read spans.

An append costs the new frames, not the cube: appending frames later than
every stored one writes one file per new frame and nothing else; a killed
or failed append leaves the cube as it was, and what it left on disk is
removed by the next append (see :mod:`enhance_hmi.cube.append`). A backfilled
gap also writes a new root that lists every frame (about 1 KB per frame).
Frames already in the cube (same ``T_REC``) are skipped, so an append can
be repeated safely. Cubes of layout versions 1 (one file) and 2 (an index
listing segments) are read as they are and become listed segments of
their first append's root, without a copy.

References
----------
.. [1] Díaz Baso, C. J. & Asensio Ramos, A. (2018), "Enhancing SDO/HMI images
   using deep learning", A&A 614, A5.
.. [2] The HDF Group, "HDF5 chunking and compression"
   (docs.hdfgroup.org/hdf5/develop/_l_b_dset_layout.html).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from astropy.io import fits

from enhance_hmi import __version__
from enhance_hmi.atomic import check_writable_dir
from enhance_hmi.cube.append import FORMAT, FORMAT_VERSION, CubeAppender
from enhance_hmi.cube.codec import Codec
from enhance_hmi.cube.segments import WCS_NUMERIC, WCS_TEXT
from enhance_hmi.cube.stored import SEGMENTS_SUFFIX, StoredCube, plain, text
from enhance_hmi.errors import CubeError
from enhance_hmi.frame import Frame
from enhance_hmi.time import tai_datetime

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "READABLE_VERSIONS",
    "SEGMENTS_SUFFIX",
    "TimeCube",
    "WCS_NUMERIC",
    "WCS_TEXT",
]

log = logging.getLogger(__name__)

#: Layout versions this code reads (and appends to).
READABLE_VERSIONS = (1, 2, 3)


class TimeCube:
    """An HDF5 time cube of enhanced frames of one observable.

    Parameters
    ----------
    path : path-like
        The ``.h5`` root file (created by the first :meth:`append`, with
        the segment folder ``path.segments`` beside it).
    codec : Codec, optional
        Compression and quantisation of new cubes (an existing cube keeps
        its own). Default: Blosc2-zstd level 1, no quantisation.
    tile : int, optional
        Chunk the frames in ``tile`` x ``tile`` pixel tiles instead of whole
        frames (better for reading small regions of full-disk cubes).
    provenance : mapping, optional
        Extra file attributes for a new cube, e.g. ``config_sha256``.

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
    ) -> None:
        self.path = Path(path)
        self.codec = codec or Codec()
        if tile is not None and tile < 1:
            raise CubeError(f"chunk tile must be a positive number of pixels, got {tile}")
        self.tile = tile
        self.provenance = {k: str(v) for k, v in (provenance or {}).items() if v is not None}

    @property
    def segments_dir(self) -> Path:
        """The folder of segment files next to the root (as the root names it)."""
        default = self.path.name + SEGMENTS_SUFFIX
        if not self.exists:
            return self.path.parent / default
        with self._open(resolve=False) as handle:
            return self.path.parent / text(handle.attrs.get("segments_folder", default))

    # ------------------------------------------------------------- reading
    @contextlib.contextmanager
    def _open(self, *, resolve: bool = True) -> Iterator[Any]:
        """The open cube (a :class:`StoredCube`; with ``resolve=False`` the bare file)."""
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
            if not resolve:
                yield handle
                return
            cube = StoredCube(handle, self.path, version)
            try:
                yield cube
            finally:
                cube.close()

    @property
    def exists(self) -> bool:
        """True once the cube file exists."""
        return self.path.is_file()

    def times(self) -> list[str]:
        """``T_REC`` of every frame, in storage (time) order; empty if no file."""
        if not self.exists:
            return []
        with self._open() as cube:
            return [str(v) for v in cube.column("t_rec")]

    def __len__(self) -> int:
        if not self.exists:
            return 0
        with self._open() as cube:
            return len(cube)

    def attributes(self) -> dict[str, Any]:
        """The file attributes (provenance and storage description)."""
        with self._open(resolve=False) as handle:
            return {k: plain(v) for k, v in handle.attrs.items()}

    def table(self) -> list[dict[str, object]]:
        """One record per frame: t_rec, quality, input file and sha256, weights sha256, noise.

        ``input_noise`` is the input noise sigma of the projection onto the
        input (``ENHNOISE``, the data's units) and ``input_noise_source`` where it
        came from (``ENHNSRC``: given, histogram or spectral); NaN and "" for
        frames made without the projection or stored before the columns existed.
        ``sigma_forward_model`` is what the frame's sigma allows for about the
        HMI forward model (``ENHSGFWD``: the member told, or the family's
        spread); "" without sigma or for frames stored before the column.
        """
        names = ("t_rec", "quality", "input_file", "input_sha256", "weights_sha256")
        with self._open() as cube:
            cols = {name: cube.column(name) for name in names}
            count = len(cols["t_rec"])
            for name, missing in (
                ("input_noise", float("nan")),
                ("input_noise_source", ""),
                ("sigma_forward_model", ""),
            ):
                try:
                    cols[name] = cube.column(name)
                except KeyError:  # a cube of a layout before the column existed
                    cols[name] = [missing] * count
        return [
            {
                "t_rec": str(cols["t_rec"][i]),
                "quality": int(cols["quality"][i]),
                "input_file": str(cols["input_file"][i]),
                "input_sha256": str(cols["input_sha256"][i]),
                "weights_sha256": str(cols["weights_sha256"][i]),
                "input_noise": float(cols["input_noise"][i]),
                "input_noise_source": str(cols["input_noise_source"][i]),
                "sigma_forward_model": str(cols["sigma_forward_model"][i]),
            }
            for i in range(count)
        ]

    def quality_table(self) -> list[dict[str, object]]:
        """One record per frame: ``t_rec``, ``quality`` and the per-frame quality figures.

        The figures (:data:`enhance_hmi.io.frame_quality.QUALITY_COLUMNS`) were
        measured while each frame was enhanced, and ``flags``, the names of
        the figures out of tolerance (``ENHQFLAG``; "" when none); frames
        stored before they existed read as NaN (and ``flags`` as "").
        """
        from enhance_hmi.io.frame_quality import QUALITY_COLUMNS

        with self._open() as cube:
            count = len(cube)
            cols: dict[str, list[str | int | float]] = {
                name: cube.column(name) for name in ("t_rec", "quality")
            }
            for name in QUALITY_COLUMNS:
                try:
                    cols[name] = cube.column(f"frame_quality/{name}")
                except KeyError:  # a cube of a layout before the column existed
                    cols[name] = ["" if name == "flags" else float("nan")] * count
        return [
            {
                "t_rec": str(cols["t_rec"][i]),
                "quality": int(cols["quality"][i]),
                **{name: cols[name][i] for name in QUALITY_COLUMNS if name != "flags"},
                "flags": str(cols["flags"][i]),
            }
            for i in range(count)
        ]

    def read_frame(self, index: int) -> tuple[np.ndarray, fits.Header]:
        """Data (float32, NaN off disk) and FITS header of frame ``index``."""
        with self._open() as cube:
            count = len(cube)
            if not -count <= index < count:
                raise CubeError(f"cube {self.path.name} has {count} frames; no index {index}")
            data, header = cube.frame(index % count)
        return data, fits.Header.fromstring(header)

    def read_maps(
        self, *, start: str | None = None, end: str | None = None, dataset: str = "data"
    ) -> list:
        """The frames as :class:`sunpy.map.GenericMap` objects, in time order.

        Parameters
        ----------
        start, end : str, optional
            Keep frames with ``start <= T_REC <= end`` (TAI, any form
            :func:`enhance_hmi.time.tai_datetime` reads, a date included).
        dataset : {"data", "sigma"}
            The enhanced frames, or their per-pixel uncertainty (same WCS
            and units; NaN for frames stored without one).

        Returns
        -------
        list of sunpy.map.GenericMap
            Each with the frame's 2x WCS header, data in gauss (magnetogram)
            or quiet-Sun units (continuum).
        """
        import sunpy.map

        if dataset not in ("data", "sigma"):
            raise CubeError(f"unknown cube dataset {dataset!r}; use data or sigma")
        lo = tai_datetime(start) if start else None
        hi = tai_datetime(end) if end else None
        maps = []
        with self._open() as cube:
            keys = [tai_datetime(str(v)) for v in cube.column("t_rec")]
            for index in np.argsort(np.array(keys, dtype="datetime64[us]"), kind="stable"):
                when = keys[index]
                if (lo is not None and when < lo) or (hi is not None and when > hi):
                    continue
                data, header = cube.frame(int(index))
                if dataset == "sigma":
                    data = cube.sigma(int(index))
                maps.append(sunpy.map.Map(data, fits.Header.fromstring(header)))
        return maps

    # ------------------------------------------------------------ writing
    @contextlib.contextmanager
    def _lock(self, appender: CubeAppender) -> Iterator[None]:
        lock = self.path.with_name(self.path.name + ".lock")
        try:
            fh = open(lock, "a+")  # noqa: SIM115  (held for the whole append)
        except OSError as exc:
            raise appender.write_error(exc, None) from exc
        with fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    def append(self, frames: Iterable[Frame]) -> int:
        """Append the frames not yet in the cube, atomically; return how many.

        ``frames`` may be a generator (frames are read and written one at a
        time, so an append holds one frame in memory). Frames whose
        ``T_REC`` is already in the cube are skipped (with a warning when
        their input file differs). Frames end up in time order even when a
        gap is backfilled. Appending frames later than every stored one
        writes one segment file per new frame and nothing else.

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
        appender = CubeAppender(
            self.path, codec=self.codec, tile=self.tile, provenance=self.provenance
        )
        with self._lock(appender):
            if not self.exists:
                return appender.append(None, iter(frames))
            with self._open() as cube:
                return appender.append(cube, iter(frames))
