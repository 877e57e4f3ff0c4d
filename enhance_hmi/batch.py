"""Many HMI files in one process, with reading and writing overlapped: :func:`enhance_files`.

A batch job (one SLURM job, one GPU) enhances tens of frames. Each frame has
three stages: read (decompress, rotate north up, normalise; a limb-darkening
fit for continuum), the network, and write (compress, atomic rename). With
``overlap="threaded"`` the reading of frame k+1 and the writing of frame k-1
run in their own threads while the network works on frame k, so a GPU does
not wait for the disk; the network itself runs in the calling thread, one
frame at a time. The queues between the stages hold at most ``prefetch``
frames, which bounds the host memory (a 4096x4096 frame is 64 MiB in and
256 MiB out).

``overlap="auto"`` is threaded on a GPU and serial on the CPU, where the
threads only move work between the same cores as the convolutions and gave
no consistent gain (docs/performance.md, ``bench/throughput.py``).

A frame that fails with an :class:`enhance_hmi.errors.EnhanceError` (a corrupt
file, an unwritable output) is reported in its :class:`FrameOutcome` and the
others go on; any other exception stops the batch after the threads have
ended, and is raised.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import queue
import threading
import time
import warnings
from collections.abc import Callable, Collection, Iterable, Sequence
from pathlib import Path
from typing import Any

from astropy.io import fits
from astropy.io.fits.verify import VerifyWarning

from enhance_hmi.errors import ConfigError, EnhanceError
from enhance_hmi.pipeline import (
    EnhanceSettings,
    load_frame,
    resolve_compile,
    run_network,
    write_result,
)

__all__ = [
    "OVERLAP_CHOICES",
    "FrameOutcome",
    "enhance_files",
    "enhanced_frame_path",
    "input_pixels",
    "is_already_enhanced",
    "run_stages",
]

log = logging.getLogger(__name__)

#: Accepted ``overlap`` values of :func:`enhance_files`.
OVERLAP_CHOICES: tuple[str, ...] = ("auto", "threaded", "serial")

_POLL_S = 0.2  # how often a blocked thread looks whether the others stopped


@dataclasses.dataclass(frozen=True)
class StageFailure:
    """A frame whose read, network or write stage raised an :class:`EnhanceError`."""

    stage: str
    error: BaseException


@dataclasses.dataclass(frozen=True)
class FrameOutcome:
    """What became of one input file.

    Attributes
    ----------
    input, output : pathlib.Path
    status : {"enhanced", "failed"}
    error : str or None
        The one-sentence message of a failed frame, prefixed by its stage.
    seconds : float
        Wall time from the start of its read to the end of its write.
    stage : {"read", "network", "write"} or None
        The stage a failed frame failed at.
    input_sha256 : str or None
        sha256 of the input as it was read (what the output's ``ENHINSHA``
        records); None when the read failed.
    """

    input: Path
    output: Path
    status: str
    error: str | None
    seconds: float
    stage: str | None = None
    input_sha256: str | None = None


class _StoppedError(Exception):
    """Raised inside a stage thread when another thread has stopped the run."""


def _put(q: queue.Queue, item: object, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            q.put(item, timeout=_POLL_S)
            return
        except queue.Full:
            continue
    raise _StoppedError


def _get(q: queue.Queue, stop: threading.Event) -> Any:
    while not stop.is_set():
        try:
            return q.get(timeout=_POLL_S)
        except queue.Empty:
            continue
    raise _StoppedError


def _positive(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    return value


def run_stages(
    items: Iterable[Any],
    read: Callable[[Any], Any],
    compute: Callable[[Any], Any],
    write: Callable[[Any], Any],
    *,
    threaded: bool,
    prefetch: int = 2,
    readers: int = 1,
    writers: int = 1,
) -> list[Any]:
    """``write(compute(read(item)))`` for every item; read and write overlapped.

    Parameters
    ----------
    items : iterable
        Consumed lazily by the readers.
    read, compute, write : callable
        One argument each. ``compute`` always runs in the calling thread
        (where the CUDA context and the cached network live), one item at a
        time; with ``threaded``, ``read`` runs in ``readers`` threads and
        ``write`` in ``writers`` threads, so both must be thread-safe.
    threaded : bool
        Overlap the stages (True) or run them one after the other.
    prefetch : int
        Items waiting between two stages, at most (``threaded`` only).
    readers, writers : int
        Threads per stage (``threaded`` only). FITS decompression and
        compression run largely outside Python's lock, so two threads read
        and write frames faster than one (docs/performance.md). Use more
        writers than readers: writing a 2x frame moves 4x the pixels.

    Returns
    -------
    list
        ``write``'s return value per item, in the order of ``items`` (with
        one reader the items also reach ``compute`` in that order).

    Notes
    -----
    An exception in any stage stops the run: the other threads stop at their
    next queue operation, and the exception is raised once they have ended.
    Per-item failures that should not stop the run are for the stage
    functions to catch and pass on (as :func:`enhance_files` does).
    """
    if not threaded:
        return [write(compute(read(item))) for item in items]
    prefetch = _positive("prefetch", prefetch)
    readers = _positive("readers", readers)
    writers = _positive("writers", writers)
    to_compute: queue.Queue = queue.Queue(maxsize=prefetch)
    to_write: queue.Queue = queue.Queue(maxsize=prefetch)
    stop = threading.Event()
    end = object()
    numbered = iter(enumerate(items))
    take = threading.Lock()
    readers_left = [readers]
    results: dict[int, Any] = {}
    errors: list[BaseException] = []

    def failed(exc: BaseException) -> None:
        errors.append(exc)
        stop.set()

    def reader() -> None:
        try:
            while True:
                with take:
                    job = next(numbered, None)
                if job is None:
                    break
                index, item = job
                _put(to_compute, (index, read(item)), stop)
            with take:
                readers_left[0] -= 1
                last = readers_left[0] == 0
            if last:
                _put(to_compute, end, stop)
        except _StoppedError:
            pass
        except BaseException as exc:  # noqa: BLE001 - raised again by the caller
            failed(exc)

    def writer() -> None:
        try:
            while (job := _get(to_write, stop)) is not end:
                index, value = job
                results[index] = write(value)
        except _StoppedError:
            pass
        except BaseException as exc:  # noqa: BLE001 - raised again by the caller
            failed(exc)

    threads = [
        threading.Thread(target=reader, name=f"enhance-reader-{k}", daemon=True)
        for k in range(readers)
    ] + [
        threading.Thread(target=writer, name=f"enhance-writer-{k}", daemon=True)
        for k in range(writers)
    ]
    for thread in threads:
        thread.start()
    try:
        while (job := _get(to_compute, stop)) is not end:
            index, value = job
            _put(to_write, (index, compute(value)), stop)
        for _ in range(writers):
            _put(to_write, end, stop)
    except _StoppedError:
        pass
    except BaseException as exc:
        failed(exc)
    finally:
        for thread in threads:
            thread.join()
    if errors:
        raise errors[0]
    return [results[index] for index in sorted(results)]


def is_already_enhanced(
    output: str | os.PathLike[str],
    input_sha256: str,
    weights_sha256: str,
    *,
    settings_sha256: str | Collection[str],
) -> bool:
    """True when ``output`` exists and was made from this input, by these weights, so set.

    Compares the ``ENHINSHA``, ``ENHWSHA`` and ``ENHSETSH`` provenance
    keywords written by :func:`enhance_hmi.pipeline.write_result` with the
    checksums of the input, the weights and the settings that change the
    output (:func:`enhance_hmi.pipeline.settings_sha256`: normalisation, range
    check, precision, lossy compression, uncertainty HDU, the projection
    and its input noise; several digests are accepted, as
    :func:`enhance_hmi.pipeline.accepted_settings_sha256` gives them). An
    archive update re-runs a frame when any of the three changed. A file
    without ``ENHSETSH`` (written before it was recorded) does not say how
    it was made, so it counts as not enhanced, and so does an unreadable
    one: both are written again.
    """
    from astropy.io import fits

    path = Path(output)
    if not path.is_file():
        return False
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", fits.verify.VerifyWarning)
            with fits.open(path) as hdus:
                header = next(h.header for h in hdus if h.header.get("NAXIS") == 2)
        damaged = [w for w in caught if issubclass(w.category, fits.verify.VerifyWarning)]
        if damaged:
            raise OSError(str(damaged[0].message).splitlines()[-1])
    except (OSError, ValueError, StopIteration) as exc:
        log.warning("%s is unreadable (%s); it will be written again", path, exc)
        return False
    if header.get("ENHINSHA") != input_sha256 or header.get("ENHWSHA") != weights_sha256:
        return False
    accepted = {settings_sha256} if isinstance(settings_sha256, str) else set(settings_sha256)
    if header.get("ENHSETSH") not in accepted:
        log.info(
            "%s was made with other settings (ENHSETSH %s); it will be enhanced again",
            path,
            header.get("ENHSETSH", "absent"),
        )
        return False
    return True


def enhanced_frame_path(
    frames_dir: str | os.PathLike[str], t_rec: object, input_file: str | os.PathLike[str]
) -> Path:
    """Where the archive keeps the enhanced frame of ``input_file``, observed at ``t_rec``.

    ``<frames_dir>/<YYYY>/<MMDD>/<input name without .fits>.enhanced.fits``,
    the year and day of ``t_rec`` in TAI (anything
    :func:`enhance_hmi.time.tai_datetime` reads, e.g. a JSOC ``T_REC``): a day's
    frames share one folder, and the name says which input it came from.
    """
    from enhance_hmi.time import tai_datetime

    when = tai_datetime(t_rec)
    name = Path(input_file).name.removesuffix(".fits") + ".enhanced.fits"
    return Path(frames_dir, f"{when:%Y}", f"{when:%m%d}", name)


def input_pixels(path: str | os.PathLike[str]) -> int:
    """Pixels of the image in an HMI FITS file, from its header (0 if it cannot be read)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", VerifyWarning)  # float BLANK cards of JSOC files
            with fits.open(path) as hdul:
                for hdu in hdul:
                    if hdu.header.get("NAXIS") == 2:
                        return int(hdu.header["NAXIS1"]) * int(hdu.header["NAXIS2"])
    except (OSError, ValueError, KeyError, TypeError):
        pass  # the read stage reports the file
    return 0


def enhance_files(
    pairs: Sequence[tuple[str | os.PathLike[str], str | os.PathLike[str]]],
    settings: EnhanceSettings | None = None,
    *,
    overlap: str = "auto",
    prefetch: int = 2,
    readers: int = 1,
    writers: int = 1,
    progress: bool = False,
) -> list[FrameOutcome]:
    """Enhance ``(input, output)`` file pairs with one network load, stages overlapped.

    Each frame goes through the stages of :func:`enhance_hmi.pipeline.enhance_file`
    (:func:`~enhance_hmi.pipeline.load_frame`, :func:`~enhance_hmi.pipeline.run_network`,
    :func:`~enhance_hmi.pipeline.write_result`) with the same checks, messages and
    atomic writes.

    Parameters
    ----------
    pairs : sequence of (path-like, path-like)
        Input HMI FITS file and the enhanced file to write.
    settings : EnhanceSettings, optional
        Shared by every frame; checked once, before any file is read.
    overlap : {"auto", "threaded", "serial"}
        See the module notes; "auto" is threaded on a GPU.
    prefetch : int
        Frames read ahead (and waiting to be written), at most.
    readers, writers : int
        Reading and writing threads when threaded (see :func:`run_stages`).
        A lossless gzip FITS write of a 2x full-disk frame takes seconds of
        one core (docs/performance.md), so a GPU that enhances several
        frames a second needs many writers, or ``compression=None``.
    progress : bool
        A progress bar over frames.

    Returns
    -------
    list of FrameOutcome
        One per pair, in order.

    Raises
    ------
    ConfigError
        Bad settings, ``overlap`` or ``prefetch``; nothing is read.
    """
    settings = settings or EnhanceSettings()
    settings.check()
    if overlap not in OVERLAP_CHOICES:
        raise ConfigError(f"unknown overlap {overlap!r}; use one of {', '.join(OVERLAP_CHOICES)}")
    if overlap == "auto":
        from enhance_hmi.inference import resolve_device

        overlap = "threaded" if resolve_device(settings.device).type == "cuda" else "serial"
    paths = [(Path(i), Path(o)) for i, o in pairs]
    if settings.compile == "auto":  # decided once for the whole job
        pixels = sum(input_pixels(source) for source, _ in paths)
        compile = resolve_compile("auto", settings.device, pixels)
        log.info("compile auto: %s for %d frames of %d input pixels", compile, len(paths), pixels)
        settings = dataclasses.replace(settings, compile=compile)
    started: dict[int, float] = {}
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(paths), desc="frames", unit="frame")

    def read(index: int) -> tuple[int, Any]:
        started[index] = time.perf_counter()
        try:
            return index, load_frame(*paths[index], settings)
        except EnhanceError as exc:
            return index, StageFailure("read", exc)

    def compute(job: tuple[int, Any]) -> tuple[int, Any, Any]:
        index, loaded = job
        if isinstance(loaded, StageFailure):
            return index, loaded, None
        try:
            return index, loaded, run_network(loaded, settings)
        except EnhanceError as exc:
            return index, StageFailure("network", exc), None

    def write(job: tuple[int, Any, Any]) -> FrameOutcome:
        index, loaded, enhanced = job
        source, target = paths[index]
        failure = loaded if isinstance(loaded, StageFailure) else None
        read_sha = None if failure is not None else loaded.frame.meta.get("input_sha256")
        if failure is None:
            try:
                write_result(loaded, enhanced, settings)
            except EnhanceError as exc:
                failure = StageFailure("write", exc)
        seconds = time.perf_counter() - started[index]
        if bar is not None:
            bar.update(1)
        if failure is not None:
            log.error("%s failed at %s: %s", source.name, failure.stage, failure.error)
            return FrameOutcome(
                source,
                target,
                "failed",
                f"{failure.stage}: {failure.error}",
                seconds,
                failure.stage,
                read_sha,
            )
        log.info("%s -> %s (%.1f s)", source.name, target, seconds)
        return FrameOutcome(source, target, "enhanced", None, seconds, None, read_sha)

    try:
        return run_stages(
            range(len(paths)),
            read,
            compute,
            write,
            threaded=overlap == "threaded",
            prefetch=prefetch,
            readers=readers,
            writers=writers,
        )
    finally:
        if bar is not None:
            bar.close()
