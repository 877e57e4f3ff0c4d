"""HDF5 time cubes of enhanced frames: :class:`TimeCube`.

One file holds the frames of one observable for one period (see
:mod:`enhance.cube.layout`)::

    /data            (time, y, x) float32, NaN off disk, chunked per frame
                     (or per tile), compressed with a standard HDF5 filter
    /t_rec           (time,) str   T_REC, TAI, the key of each frame
    /quality         (time,) uint32  HMI QUALITY bits of the input record
    /input_file      (time,) str   input file name
    /input_sha256    (time,) str   sha256 of the input file
    /weights_sha256  (time,) str   sha256 of the weights that made the frame
    /header          (time,) str   the frame's whole FITS header (2x WCS)
    /wcs/<KEY>       (time,)       WCS and observer keywords, one per key

File attributes record the provenance (package version, weights sha256, PSF
model, configuration hash, method reference) and how the data are stored
(filter, quantisation step and units).

Appending is copy-on-write: the current file is copied to ``name.h5.part``,
the new frames are written there, and the copy replaces the file with
:func:`os.replace` only once complete and fsynced. A crash at any moment
leaves the previous cube untouched and readable. Frames already in the cube
(same ``T_REC``) are skipped, so an append can be repeated safely.

References
----------
.. [1] Díaz Baso, C. J. & Asensio Ramos, A. (2018), "Enhancing SDO/HMI images
   using deep learning", A&A 614, A5.
.. [2] The HDF Group, "HDF5 chunking and compression"
   (docs.hdfgroup.org/hdf5/develop/_l_b_dset_layout.html).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import logging
import os
import shutil
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from astropy.io import fits

from enhance import __version__
from enhance.atomic import atomic_path
from enhance.cube.codec import Codec
from enhance.cube.layout import format_t_rec, parse_t_rec
from enhance.errors import CubeError
from enhance.frame import OBSERVABLES, Frame
from enhance.provenance import REFERENCE

__all__ = ["TimeCube", "FORMAT", "FORMAT_VERSION", "WCS_NUMERIC", "WCS_TEXT"]

log = logging.getLogger(__name__)

#: ``format`` attribute of every cube file.
FORMAT = "enhance.TimeCube"
#: Layout version; bumped on incompatible changes.
FORMAT_VERSION = 1
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
_TEXT = h5py.string_dtype()
_PER_FRAME_TEXT = ("t_rec", "input_file", "input_sha256", "weights_sha256", "header")


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


class TimeCube:
    """An HDF5 time cube of enhanced frames of one observable.

    Parameters
    ----------
    path : path-like
        The ``.h5`` file (created by the first :meth:`append`).
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

    # ------------------------------------------------------------- reading
    @contextlib.contextmanager
    def _open(self) -> Iterator[h5py.File]:
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
            yield handle

    @property
    def exists(self) -> bool:
        """True once the cube file exists."""
        return self.path.is_file()

    def times(self) -> list[str]:
        """``T_REC`` of every frame, in storage (time) order; empty if no file."""
        if not self.exists:
            return []
        with self._open() as handle:
            return [_text(v) for v in handle["t_rec"][:]]

    def __len__(self) -> int:
        return len(self.times())

    def attributes(self) -> dict[str, Any]:
        """The file attributes (provenance and storage description)."""
        with self._open() as handle:
            return {k: _plain(v) for k, v in handle.attrs.items()}

    def table(self) -> list[dict[str, object]]:
        """One record per frame: t_rec, quality, input file and sha256, weights sha256."""
        with self._open() as handle:
            cols = {
                name: handle[name][:]
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
        with self._open() as handle:
            count = handle["data"].shape[0]
            if not -count <= index < count:
                raise CubeError(f"cube {self.path.name} has {count} frames; no index {index}")
            data = handle["data"][index]
            header = fits.Header.fromstring(_text(handle["header"][index]))
        return data, header

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
        with self._open() as handle:
            keys = [parse_t_rec(_text(v)) for v in handle["t_rec"][:]]
            for index in np.argsort(np.array(keys, dtype="datetime64[s]"), kind="stable"):
                when = keys[index]
                if (lo is not None and when < lo) or (hi is not None and when > hi):
                    continue
                header = fits.Header.fromstring(_text(handle["header"][index]))
                maps.append(sunpy.map.Map(handle["data"][index], header))
        return maps

    # ------------------------------------------------------------ writing
    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        lock = self.path.with_name(self.path.name + ".lock")
        with open(lock, "a+") as fh:
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
        backfilled.

        Raises
        ------
        CubeError
            A frame of another observable, shape or weights than the cube, a
            frame without ``T_REC``, or an unreadable existing cube. The cube
            on disk is left as it was.
        OutputError
            The directory is missing or not writable.
        """
        with self._lock():
            known: dict[str, str] = {}
            if self.exists:
                for row in self.table():
                    known[row["t_rec"]] = row["input_sha256"]
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
            added = 0
            with atomic_path(self.path) as tmp:
                if self.exists:
                    shutil.copyfile(self.path, tmp)
                    mode = "r+"
                else:
                    mode = "w"
                if mode == "r+" or self.codec.compression != "gzip":
                    # Registers Blosc2/zstd, which an existing cube may use
                    # whatever this codec is; gzip is built into HDF5.
                    import hdf5plugin  # noqa: F401

                with h5py.File(tmp, mode) as handle:
                    if mode == "w":
                        self._create(handle, first)
                    for frame in _chain(first, iterator):
                        key = _frame_key(frame)
                        if key in known:
                            self._warn_duplicate(key, frame, known)
                            continue
                        self._write_frame(handle, frame, key)
                        known[key] = _meta(frame, "input_sha256", "ENHINSHA")
                        added += 1
                    handle.attrs["updated"] = _now()
                    handle.attrs["n_frames"] = handle["data"].shape[0]
                    ordered = _is_sorted(handle)
                if not ordered:
                    self._sort(tmp)
            log.info("%s: appended %d frame(s), %d in all", self.path.name, added, len(known))
            return added

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

    def _create(self, handle: h5py.File, frame: Frame) -> None:
        if frame.observable not in OBSERVABLES:
            raise CubeError(f"unknown observable {frame.observable!r}")
        ny, nx = np.shape(frame.data)
        chunk = (1, ny, nx) if self.tile is None else (1, min(self.tile, ny), min(self.tile, nx))
        handle.create_dataset(
            "data",
            shape=(0, ny, nx),
            maxshape=(None, ny, nx),
            dtype="float32",
            chunks=chunk,
            fillvalue=np.float32(np.nan),
            **self.codec.dataset_options(),
        )
        for name in _PER_FRAME_TEXT:
            handle.create_dataset(name, shape=(0,), maxshape=(None,), dtype=_TEXT, chunks=(256,))
        handle.create_dataset(
            "quality", shape=(0,), maxshape=(None,), dtype="uint32", chunks=(256,)
        )
        wcs = handle.create_group("wcs")
        for key in WCS_NUMERIC:
            wcs.create_dataset(key, shape=(0,), maxshape=(None,), dtype="float64", chunks=(256,))
        for key in WCS_TEXT:
            wcs.create_dataset(key, shape=(0,), maxshape=(None,), dtype=_TEXT, chunks=(256,))
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
            "time_axis": "axis 0 of /data, sorted by t_rec (TAI)",
            "off_disk": "NaN",
        }
        attrs.update(self.provenance)
        for key, value in attrs.items():
            handle.attrs[key] = value

    def _check(self, handle: h5py.File, frame: Frame, key: str) -> None:
        attrs = handle.attrs
        if frame.observable != attrs["observable"]:
            raise CubeError(
                f"frame {key} is a {frame.observable} image but cube {self.path.name} holds "
                f"{attrs['observable']} frames; cubes hold one observable"
            )
        shape = tuple(handle["data"].shape[1:])
        if tuple(np.shape(frame.data)) != shape:
            raise CubeError(
                f"frame {key} has shape {np.shape(frame.data)} but cube {self.path.name} holds "
                f"{shape} frames; use one cube per field of view"
            )
        sha = _meta(frame, "weights_sha256", "ENHWSHA")
        if attrs["weights_sha256"] and sha and sha != attrs["weights_sha256"]:
            raise CubeError(
                f"frame {key} was enhanced with weights {sha[:12]}... but cube "
                f"{self.path.name} with {str(attrs['weights_sha256'])[:12]}...; write products "
                "of other weights to another output directory"
            )

    def _write_frame(self, handle: h5py.File, frame: Frame, key: str) -> None:
        self._check(handle, frame, key)
        n = handle["data"].shape[0]
        for name in ("data", *_PER_FRAME_TEXT, "quality"):
            handle[name].resize(n + 1, axis=0)
        for name in (*WCS_NUMERIC, *WCS_TEXT):
            handle["wcs"][name].resize(n + 1, axis=0)
        handle["data"][n] = self.codec.encode(frame.data)
        header = frame.header
        handle["t_rec"][n] = key
        handle["quality"][n] = _quality(frame)
        handle["input_file"][n] = Path(_meta(frame, "input_file", "ENHINPUT")).name
        handle["input_sha256"][n] = _meta(frame, "input_sha256", "ENHINSHA")
        handle["weights_sha256"][n] = _meta(frame, "weights_sha256", "ENHWSHA")
        handle["header"][n] = header.tostring()
        for name in WCS_NUMERIC:
            try:
                value = float(header.get(name, np.nan))
            except (TypeError, ValueError):
                value = np.nan
            handle["wcs"][name][n] = value
        for name in WCS_TEXT:
            handle["wcs"][name][n] = str(header.get(name, ""))

    def _sort(self, unsorted: Path) -> None:
        """Rewrite ``unsorted`` in time order (after a backfill), one frame at a time."""
        staging = unsorted.with_name(unsorted.name + ".sort")
        with h5py.File(unsorted, "r") as src, h5py.File(staging, "w") as dst:
            order = np.argsort(
                np.array([parse_t_rec(_text(v)) for v in src["t_rec"][:]], dtype="datetime64[s]"),
                kind="stable",
            )
            for key, value in src.attrs.items():
                dst.attrs[key] = value

            def copy(name: str, obj: h5py.HLObject) -> None:
                if isinstance(obj, h5py.Group):
                    dst.require_group(name)
                    return
                out = dst.create_dataset(
                    name,
                    shape=obj.shape,
                    dtype=obj.dtype,
                    maxshape=obj.maxshape,
                    dcpl=obj.id.get_create_plist(),  # same chunks, filters and fill value
                )
                if obj.ndim == 3:
                    for i, j in enumerate(order):
                        out[i] = obj[j]
                else:
                    out[:] = obj[:][order]

            src.visititems(copy)
        os.replace(staging, unsorted)
        log.info("%s: frames reordered by T_REC after a backfill", self.path.name)


def _chain(first: Frame, rest: Iterator[Frame]) -> Iterator[Frame]:
    yield first
    yield from rest


def _is_sorted(handle: h5py.File) -> bool:
    keys = [parse_t_rec(_text(v)) for v in handle["t_rec"][:]]
    return all(a < b for a, b in zip(keys, keys[1:], strict=False))


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
