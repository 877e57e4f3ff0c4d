"""Appending frames to a time cube: :class:`CubeAppender`.

An append stages every new frame as a one-frame segment file (written in
full: ``.part``, fsync, rename) and then commits them in one step (see
:mod:`enhance_hmi.cube.segments`):

- frames later than every stored one go into the tail: the staged files are
  renamed to the next block numbers from the last to the first, so the
  rename of the first commits them all; the root is not rewritten (a new
  cube's root is written last, as its commit);
- any other append (a backfilled gap, or a cube of layout version 1 or 2)
  writes a new root listing every frame in time order, with a new empty
  tail, and replaces the old root atomically. Stored files are never
  modified or copied (a version 1 file becomes a segment by a hard link).

What a killed or failed append leaves (staged files, files past the tail's
gap, ``.part`` files) is never read and is removed by the next append.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import errno
import logging
import os
import secrets
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from enhance_hmi import __version__
from enhance_hmi.atomic import NO_ROOM_ERRNOS, no_room_error, part_path
from enhance_hmi.cube.codec import Codec, quantize
from enhance_hmi.cube.segments import (
    WCS_NUMERIC,
    WCS_TEXT,
    Listed,
    frame_image,
    fsync_dir,
    remove_quietly,
    root_image,
    tail_file,
    write_image,
)
from enhance_hmi.cube.stored import SEGMENTS_SUFFIX, StoredCube, plain
from enhance_hmi.errors import CubeError, EnhanceError, OutputError
from enhance_hmi.frame import OBSERVABLES, Frame
from enhance_hmi.io.frame_quality import quality_from_header
from enhance_hmi.provenance import REFERENCE
from enhance_hmi.time import format_t_rec, tai_datetime, utc_timestamp

__all__ = ["FORMAT", "FORMAT_VERSION", "CubeAppender", "frame_key", "meta_value"]

log = logging.getLogger(__name__)

#: ``format`` attribute of every cube file.
FORMAT = "enhance.TimeCube"
#: Layout version written: 3, a root over listed segments and a tail of one-frame files.
FORMAT_VERSION = 3
#: Attributes of the root that describe the whole cube, not one segment.
_CUBE_ONLY = ("n_frames", "updated", "time_axis", "segments", "segments_folder", "tail")


def frame_key(frame: Frame) -> str:
    """The ``T_REC`` a frame is stored under.

    Raises
    ------
    CubeError
        The frame has no ``T_REC`` (in ``meta`` or its header).
    """
    value = frame.meta.get("t_rec") or frame.header.get("T_REC")
    if not value:
        raise CubeError(
            f"frame {frame.meta.get('input_file', '?')} has no T_REC; cubes index frames by "
            "T_REC: enhance JSOC files or set meta['t_rec']"
        )
    return format_t_rec(tai_datetime(str(value)))


def meta_value(frame: Frame, key: str, card: str) -> str:
    """``frame.meta[key]``, else the header card ``card``, else ""."""
    value = frame.meta.get(key)
    if value in (None, ""):
        value = frame.header.get(card, "")
    return str(value)


def _quality(frame: Frame) -> int:
    value = frame.meta.get("quality", frame.header.get("QUALITY", 0))
    if value in (None, ""):
        return 0
    if isinstance(value, str):
        value = int(value, 16) if value.lower().startswith("0x") else int(value)
    return int(value) & 0xFFFFFFFF


def _float_or_nan(value: str) -> float:
    """``value`` as a float; NaN when it is empty or not a number."""
    try:
        return float(value)
    except ValueError:
        return float("nan")


def _sigma_forward_model(frame: Frame) -> str:
    """``ENHSGFWD`` of the frame's sigma ("" without sigma)."""
    sigma = frame.meta.get("sigma")
    return str(getattr(sigma, "forward_model", "") or "")


def _frame_columns(frame: Frame, key: str) -> dict[str, object]:
    """The per-frame column values (:data:`~enhance_hmi.cube.segments.COLUMNS`) of ``frame``."""
    header = frame.header
    columns: dict[str, object] = {
        "t_rec": key,
        "quality": _quality(frame),
        "input_file": Path(meta_value(frame, "input_file", "ENHINPUT")).name,
        "input_sha256": meta_value(frame, "input_sha256", "ENHINSHA"),
        "weights_sha256": meta_value(frame, "weights_sha256", "ENHWSHA"),
        "input_noise": _float_or_nan(meta_value(frame, "input_noise", "ENHNOISE")),
        "input_noise_source": meta_value(frame, "input_noise_source", "ENHNSRC"),
        "sigma_forward_model": _sigma_forward_model(frame),
    }
    for name in WCS_NUMERIC:
        try:
            columns[f"wcs/{name}"] = float(header.get(name, np.nan))
        except (TypeError, ValueError):
            columns[f"wcs/{name}"] = np.nan
    for name in WCS_TEXT:
        columns[f"wcs/{name}"] = str(header.get(name, ""))
    for name, value in quality_from_header(header).items():  # the ENHQ* keywords
        columns[f"frame_quality/{name}"] = value
    return columns


@dataclasses.dataclass
class _CubeState:
    """What an append needs to know about the cube on disk (``version`` 0: none yet)."""

    version: int
    attrs: dict[str, Any]
    shape: tuple[int, int]
    dataset_options: dict[str, Any]
    folder: Path
    tail: str
    listed: Listed
    tail_count: int
    t_rec: list[str]
    input_sha256: list[str]


@dataclasses.dataclass(frozen=True)
class _Staged:
    when: dt.datetime
    path: Path


class CubeAppender:
    """The append of :class:`enhance_hmi.cube.TimeCube`, for one cube root ``path``.

    Parameters
    ----------
    path : Path
        The root file.
    codec : Codec
        Compression and quantisation of a new cube.
    tile : int or None
        Chunk tile of a new cube (None: whole frames).
    provenance : mapping
        Extra attributes of a new cube.
    """

    def __init__(
        self, path: Path, *, codec: Codec, tile: int | None, provenance: Mapping[str, str]
    ) -> None:
        self.path = path
        self.codec = codec
        self.tile = tile
        self.provenance = dict(provenance)

    # ----------------------------------------------------------- entry point
    def append(self, stored: StoredCube | None, frames: Iterator[Frame]) -> int:
        """Stage and commit the frames not yet in the cube; return how many.

        ``stored`` is the open cube (None when there is none); the caller
        holds the cube's lock.
        """
        state = self._load(stored)
        self.remove_uncommitted(state)
        known = dict(zip(state.t_rec, state.input_sha256, strict=True)) if state else {}
        staged: list[_Staged] = []
        try:
            for frame in frames:
                key = frame_key(frame)
                if key in known:
                    _warn_duplicate(key, frame, known)
                    continue
                if state is None:
                    state = self._new_state(frame)
                self._check(state, frame, key)
                staged.append(self._stage(state, frame, key))
                known[key] = meta_value(frame, "input_sha256", "ENHINSHA")
            if not staged:
                log.info("%s: nothing new to append (%d frames)", self.path.name, len(known))
                return 0
            assert state is not None
            self._commit(state, staged)
        except BaseException as exc:
            for item in staged:
                remove_quietly(item.path)
            if state is not None and state.version == 0:
                self._remove_empty_folders(state)
            if isinstance(exc, OSError) and exc.errno in NO_ROOM_ERRNOS:
                raise self.write_error(exc, state) from exc
            raise
        log.info("%s: appended %d frame(s), %d in all", self.path.name, len(staged), len(known))
        return len(staged)

    def write_error(self, exc: OSError, state: _CubeState | None) -> EnhanceError:
        """The one-line error of a write refused with ``exc``: a CubeError for lack of room."""
        if exc.errno not in NO_ROOM_ERRNOS:
            return OutputError(f"cannot write cube {self.path}: {exc}")
        detail = exc if isinstance(exc, OutputError) else no_room_error(self.path, exc)
        held = "" if state is None else f", still {len(state.t_rec)} frame(s)"
        return CubeError(f"cube {self.path.name} not extended (unchanged{held}): {detail}")

    # --------------------------------------------------------------- staging
    def _stage(self, state: _CubeState, frame: Frame, key: str) -> _Staged:
        """Write one frame as a complete one-frame segment under a name no reader uses."""
        tail_dir = state.folder / state.tail
        try:
            tail_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise self.write_error(exc, state) from exc
        step = float(state.attrs.get("quantization_step", 0.0) or 0.0)
        attrs = {k: v for k, v in state.attrs.items() if k not in _CUBE_ONLY}
        attrs["created"] = utc_timestamp()
        sigma = frame.meta.get("sigma")  # enhance_hmi.io.sigma.SigmaMap, when read with it
        image = frame_image(
            quantize(frame.data, step),
            frame.header.tostring(),
            _frame_columns(frame, key),
            dataset_options=state.dataset_options,
            attrs=attrs,
            sigma=None if sigma is None else quantize(np.asarray(sigma.data, np.float32), step),
        )
        dest = tail_dir / f"staged-{secrets.token_hex(6)}.h5"
        write_image(dest, image)
        return _Staged(tai_datetime(key), dest)

    # ------------------------------------------------------------- committing
    def _commit(self, state: _CubeState, staged: list[_Staged]) -> None:
        staged.sort(key=lambda item: item.when)
        last = max((tai_datetime(t) for t in state.t_rec), default=None)
        if state.version in (0, FORMAT_VERSION) and (last is None or staged[0].when > last):
            self._commit_to_tail(state, staged)
        else:
            self._commit_new_root(state, staged)

    def _commit_to_tail(self, state: _CubeState, staged: list[_Staged]) -> None:
        """Rename the staged files into the tail, last first: the first rename commits."""
        tail_dir = state.folder / state.tail
        for offset in range(len(staged) - 1, -1, -1):
            os.replace(staged[offset].path, tail_file(tail_dir, state.tail_count + offset))
        fsync_dir(tail_dir)
        if state.version == 0:  # a new cube: its root, written last, commits it
            write_image(self.path, self._root(state, Listed()))

    def _commit_new_root(self, state: _CubeState, staged: list[_Staged]) -> None:
        """Write a root listing every frame in time order, with a new empty tail."""
        listed = state.listed
        if state.version == 1:
            listed = self._adopt_single_file(state)
        files = list(listed.files)
        counts = list(listed.counts)
        entries = [(int(s), int(r)) for s, r in zip(listed.segment, listed.row, strict=True)]
        for block in range(state.tail_count):
            files.append(f"{state.tail}/{block}.h5")
            counts.append(1)
            entries.append((len(files) - 1, 0))
        times = [tai_datetime(t) for t in state.t_rec]
        for item in staged:
            files.append(f"{state.tail}/{item.path.name}")
            counts.append(1)
            entries.append((len(files) - 1, 0))
            times.append(item.when)
        order = np.argsort(np.array(times, dtype="datetime64[us]"), kind="stable")
        segment = np.array([entries[i][0] for i in order], dtype=np.int64)
        row = np.array([entries[i][1] for i in order], dtype=np.int64)
        new_state = dataclasses.replace(state, tail=f"tail-{secrets.token_hex(4)}")
        new_tail = state.folder / new_state.tail
        new_tail.mkdir()
        fsync_dir(state.folder / state.tail)
        write_image(self.path, self._root(new_state, Listed(files, counts, segment, row)))

    def _root(self, state: _CubeState, listed: Listed) -> Any:
        attrs = dict(state.attrs)
        attrs.update(
            format_version=FORMAT_VERSION,
            time_axis="axis 0 of /data, sorted by t_rec (TAI)",
            segments_folder=state.folder.name,
            tail=state.tail,
            segments=f"frames stored in {state.folder.name}/ (never modified): the "
            f"{len(listed)} listed in /segment_files, then one file per frame in "
            f"{state.tail}/ (0.h5, 1.h5, ...); /data, /header and the per-frame columns "
            "are virtual datasets over them",
        )
        for key in ("n_frames", "updated"):
            attrs.pop(key, None)
        return root_image(
            attrs=attrs, folder=state.folder.name, tail=state.tail, listed=listed, shape=state.shape
        )

    def _adopt_single_file(self, state: _CubeState) -> Listed:
        """Make a version 1 cube file a listed segment of the new root (a hard link, no copy)."""
        name = f"v1-{secrets.token_hex(4)}.h5"
        dest = state.folder / name
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
        listed = state.listed
        return Listed([name], listed.counts, listed.segment, listed.row)

    # ------------------------------------------------------------ cube state
    def _load(self, stored: StoredCube | None) -> _CubeState | None:
        if stored is None:
            return None
        handle = stored.handle
        listed_files = stored.files[: stored.listed]
        listed_frames = int(np.count_nonzero(stored.segment < stored.listed))
        newest = stored.data_options_source()
        options = {"dcpl": newest.id.get_create_plist(), "chunks": newest.chunks}
        stored.close()
        shape = tuple(int(n) for n in handle["data"].shape[1:])
        return _CubeState(
            version=stored.version,
            attrs={k: plain(v) for k, v in handle.attrs.items()},
            shape=(shape[0], shape[1]),
            dataset_options=options,
            folder=stored.folder,
            tail=stored.tail or f"tail-{secrets.token_hex(4)}",
            listed=Listed(
                [str(p.relative_to(stored.folder)) for p in listed_files]
                if stored.version > 1
                else [p.name for p in listed_files],
                stored.counts[: stored.listed],
                stored.segment[:listed_frames],
                stored.row[:listed_frames],
            ),
            tail_count=len(stored.files) - stored.listed if stored.version >= 3 else 0,
            t_rec=[str(v) for v in stored.column("t_rec")],
            input_sha256=[str(v) for v in stored.column("input_sha256")],
        )

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
            "weights_sha256": meta_value(frame, "weights_sha256", "ENHWSHA"),
            "weights_file": meta_value(frame, "weights_file", "ENHWTS"),
            "psf_model": meta_value(frame, "psf_model", "ENHPSF"),
            "created": utc_timestamp(),
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
            version=0,
            attrs=attrs,
            shape=(int(ny), int(nx)),
            dataset_options=options,
            folder=self.path.parent / (self.path.name + SEGMENTS_SUFFIX),
            tail=f"tail-{secrets.token_hex(4)}",
            listed=Listed(),
            tail_count=0,
            t_rec=[],
            input_sha256=[],
        )

    # -------------------------------------------------------------- clean-up
    def remove_uncommitted(self, state: _CubeState | None) -> None:
        """Remove what a killed or failed append left: staged, uncommitted and ``.part`` files."""
        remove_quietly(part_path(self.path))
        folder = (
            state.folder
            if state is not None
            else self.path.parent / (self.path.name + SEGMENTS_SUFFIX)
        )
        if not folder.is_dir():
            return
        keep: set[str] = set()
        if state is not None and state.version >= 2:
            keep = set(state.listed.files)
        if state is not None and state.version >= 3:
            keep |= {f"{state.tail}/{b}.h5" for b in range(state.tail_count)}
        removed = []
        for top, dirs, names in os.walk(folder, topdown=False):
            here = Path(top)
            for name in names:
                relative = str((here / name).relative_to(folder))
                if relative not in keep and remove_quietly(here / name):
                    removed.append(relative)
            for name in dirs:
                if state is not None and name == state.tail and here == folder:
                    continue
                with contextlib.suppress(OSError):  # it still holds listed segments
                    (here / name).rmdir()
        if removed:
            log.warning(
                "%s: removed %d file(s) of an append that did not complete: %s",
                self.path.name,
                len(removed),
                ", ".join(sorted(removed)[:10]),
            )

    @staticmethod
    def _remove_empty_folders(state: _CubeState) -> None:
        for directory in (state.folder / state.tail, state.folder):
            with contextlib.suppress(OSError):
                directory.rmdir()

    # ---------------------------------------------------------------- checks
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
        sha = meta_value(frame, "weights_sha256", "ENHWSHA")
        if attrs["weights_sha256"] and sha and sha != attrs["weights_sha256"]:
            raise CubeError(
                f"frame {key} was enhanced with weights {sha[:12]}... but cube "
                f"{self.path.name} with {str(attrs['weights_sha256'])[:12]}...; write products "
                "of other weights to another output directory"
            )


def _warn_duplicate(key: str, frame: Frame, known: dict[str, str]) -> None:
    sha = meta_value(frame, "input_sha256", "ENHINSHA")
    if sha and known[key] and sha != known[key]:
        log.warning(
            "%s is already in the cube from another input file (sha256 %s..., now %s...); "
            "kept the stored frame: delete the cube to rebuild it",
            key,
            known[key][:12],
            sha[:12],
        )
