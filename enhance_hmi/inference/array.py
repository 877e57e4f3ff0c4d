"""Enhance a 2-D array of any size with tiling, NaN handling and a device choice.

The work of one frame stays on the compute device from the first copy to the
last: the image goes over once, the non-finite (off-disk) pixels are filled
there, windows are cut, run through the network (batch norms folded into the
convolutions, :func:`enhance_hmi.model.fuse.fold_batchnorm`) and blended into the
2x image there, and the finished image comes back once. On a GPU the host
therefore only launches work, and a frame costs two transfers (64 MiB in,
256 MiB out for a 4096x4096 HMI frame) instead of two per window. Averaged
over N symmetries (``symmetries=``) a frame makes N such round trips, and
the turning back and averaging run on the host.

References
----------
.. [1] Díaz Baso, C. J. & Asensio Ramos, A. (2018), "Enhancing SDO/HMI images
   using deep learning", A&A 614, A5.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
import weakref
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from enhance_hmi.errors import ConfigError, InputError
from enhance_hmi.inference.symmetry import Symmetry
from enhance_hmi.inference.tiling import DEFAULT_TILE, plan_windows
from enhance_hmi.model.fuse import fold_batchnorm
from enhance_hmi.model.network import EnhanceNet
from enhance_hmi.model.uncertainty import EnhanceWithUncertainty, fold_for_inference

__all__ = [
    "PRECISIONS",
    "InferenceTimings",
    "autocast_dtype",
    "cudnn_settings",
    "device_name",
    "enhance_array",
    "enhance_array_with_sigma",
    "prepare_model",
    "resolve_device",
]

log = logging.getLogger(__name__)

PRECISIONS: dict[str, torch.dtype | None] = {
    "fp32": None,
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
}


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> the first CUDA GPU when there is one, else the CPU."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} requested but no CUDA GPU is available; use cpu")
    return dev


def device_name(device: torch.device) -> str:
    """The device as provenance records it: ``"cpu"``, ``"cuda:0"`` (the index always given)."""
    if device.type == "cuda" and device.index is None:
        return f"cuda:{torch.cuda.current_device()}"
    return str(device)


def autocast_dtype(precision: str) -> torch.dtype | None:
    """Autocast dtype for ``precision`` (None: plain fp32)."""
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
    return PRECISIONS[precision]


@contextlib.contextmanager
def cudnn_settings(*, benchmark: bool, allow_tf32: bool) -> Iterator[None]:
    """Set cuDNN's autotuner and TF32 flags inside the ``with`` block, then restore them.

    ``torch.backends.cudnn.benchmark`` lets cuDNN time its convolution
    algorithms on the first batch of each shape and keep the fastest;
    ``allow_tf32`` lets it round fp32 convolution inputs to TF32 (10-bit
    mantissa). Both flags belong to the whole process, so the previous values
    come back when the block ends, also on an exception. Other threads see
    the values set here while the block runs. On a CPU neither flag has an
    effect.

    Parameters
    ----------
    benchmark : bool
        Value of ``torch.backends.cudnn.benchmark`` inside the block.
    allow_tf32 : bool
        Value of ``torch.backends.cudnn.allow_tf32`` inside the block.
    """
    backend = torch.backends.cudnn
    saved = (backend.benchmark, backend.allow_tf32)
    backend.benchmark, backend.allow_tf32 = benchmark, allow_tf32
    try:
        yield
    finally:
        backend.benchmark, backend.allow_tf32 = saved


@dataclasses.dataclass
class InferenceTimings:
    """Where the time of :func:`enhance_array` calls goes, summed over the calls it is given to.

    Pass one instance as ``timings=`` to measure; without it nothing is
    timed and the device is never waited for between stages.

    Attributes
    ----------
    synchronise : bool
        Wait for the device at the end of each timed stage, so a stage's
        seconds are its own and not the next one's (costs a little overlap
        on a GPU).
    h2d_s : float
        The one host -> device copy of each image.
    compute_s : float
        The forward passes of the network.
    d2h_s : float
        The one device -> host copy of each 2x image.
    projection_s : float
        The projection onto the input, its noise estimate included
        (:func:`enhance_hmi.inference.enhance_frame`).
    windows : int
        Windows that went through the network (windows without a finite
        pixel are not computed).
    window_pixels : int
        Input pixels of those windows, overlaps included.
    """

    synchronise: bool = True
    h2d_s: float = 0.0
    compute_s: float = 0.0
    d2h_s: float = 0.0
    projection_s: float = 0.0
    windows: int = 0
    window_pixels: int = 0

    @contextlib.contextmanager
    def stage(self, name: str, device: torch.device) -> Iterator[None]:
        """Add the seconds of the ``with`` block to the attribute ``{name}_s``."""
        start = time.perf_counter()
        try:
            yield
        finally:
            if self.synchronise and device.type == "cuda":
                torch.cuda.synchronize(device)
            attribute = f"{name}_s"
            setattr(self, attribute, getattr(self, attribute) + time.perf_counter() - start)


def timed_stage(timings: InferenceTimings | None, name: str, device: torch.device) -> Any:
    """``timings.stage(name, device)``, or a context that times nothing without ``timings``."""
    return contextlib.nullcontext() if timings is None else timings.stage(name, device)


def _to_device(image: np.ndarray, device: torch.device) -> torch.Tensor:
    """One float32 host image -> the device (one copy per frame).

    On a GPU the copy goes through page-locked memory (PyTorch's caching host
    allocator reuses the block from frame to frame) and does not block.
    """
    tensor = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))
    if device.type == "cuda":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor


def _to_host(tensor: torch.Tensor) -> np.ndarray:
    """The finished output -> a host float32 array (one copy per frame)."""
    if tensor.device.type == "cuda":
        host = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=True)
        host.copy_(tensor)
        return host.numpy()
    return tensor.numpy()


def _forward(model: nn.Module, batch: torch.Tensor, dtype: torch.dtype | None) -> torch.Tensor:
    """Network on a ``(N, H, W)`` device batch -> ``(N, C, fH, fW)`` float32 on the device."""
    tensor = batch[:, None].contiguous(memory_format=torch.channels_last)
    context = (
        torch.autocast(device_type=tensor.device.type, dtype=dtype)
        if dtype is not None
        else contextlib.nullcontext()
    )
    with context:
        out = model(tensor)
    return out.float()


def _progress_bar(total: int, label: str | None) -> Any:
    """A tqdm bar on standard error counting ``total`` windows.

    The label is cut to :data:`_LABEL_WIDTH` characters (a JSOC file name
    keeps its series and T_REC), so the bar fits an 80-column terminal.
    """
    from tqdm import tqdm

    text = label or "enhance"
    if len(text) > _LABEL_WIDTH:
        text = text[: _LABEL_WIDTH - 1] + "…"
    return tqdm(total=total, desc=text, unit="window", leave=True, dynamic_ncols=True)


#: Longest progress-bar label, in characters.
_LABEL_WIDTH = 32


_PREPARED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _state_fingerprint(model: nn.Module) -> tuple:
    return tuple((t.data_ptr(), t._version) for t in model.state_dict().values())


def prepare_model(
    model: EnhanceNet | EnhanceWithUncertainty, device: torch.device, *, compile: bool = False
) -> nn.Module:
    """The inference copy of ``model`` on ``device``: batch norms folded, eval mode.

    ``model`` itself is not changed (not even put in eval mode). The copy is
    cached per model and device and rebuilt when any of the model's
    parameters or statistics changed in place (e.g. by training between two
    evaluations). The copy uses the channels-last layout, the one cuDNN's
    fastest convolution kernels expect and the faster one for oneDNN on a
    CPU too (measured figures: docs/performance.md).

    With ``compile`` the copy is wrapped by :func:`torch.compile` (TorchInductor
    fuses the bias, ReLU and skip additions into the convolutions' epilogues):
    faster forward passes at a one-off compilation per process (and again
    for the first batch of another size), so it pays only for jobs of many
    full-disk frames.
    """
    key, fingerprint = (str(device), bool(compile)), _state_fingerprint(model)
    cached = _PREPARED.get(model, {}).get(key)
    if cached is not None and cached[0] == fingerprint:
        return cached[1]
    folded = (
        fold_for_inference(model)
        if isinstance(model, EnhanceWithUncertainty)
        else fold_batchnorm(model)
    )
    # Module.to(memory_format=...) exists at run time; torch's stubs do not list it
    prepared = folded.to(device).to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    if compile:
        prepared = torch.compile(prepared)
    _PREPARED.setdefault(model, {})[key] = (fingerprint, prepared)
    return prepared


def enhance_array(
    data: np.ndarray,
    model: EnhanceNet | EnhanceWithUncertainty,
    *,
    device: str | torch.device = "auto",
    precision: str = "fp32",
    tile: int = DEFAULT_TILE,
    batch_size: int | None = None,
    input_scale: float = 1.0,
    margin: int | None = None,
    blend: int = 8,
    progress: bool = False,
    progress_label: str | None = None,
    compile: bool = False,
    timings: InferenceTimings | None = None,
    wanted: np.ndarray | None = None,
    symmetries: Sequence[Symmetry] = (),
) -> np.ndarray:
    """Deconvolve and super-resolve a 2-D image with ``model``.

    Parameters
    ----------
    data : array_like, shape (H, W)
        Physical units: continuum in quiet-Sun intensity, Blos in gauss.
        Non-finite pixels (off-disk) are allowed.
    model : EnhanceNet or EnhanceWithUncertainty
        Not modified: the forward passes use its inference copy
        (:func:`prepare_model`, batch norms folded, always evaluation mode).
        Of a network with its uncertainty head
        (:class:`enhance_hmi.model.uncertainty.EnhanceWithUncertainty`) only
        the network runs; :func:`enhance_array_with_sigma` gives the sigma
        too.
    device : {"auto", "cpu", "cuda", "cuda:N"} or torch.device
        Where the network runs. During the call cuDNN's autotuner is on and
        TF32 is allowed only for bf16/fp16 (:func:`cudnn_settings`; the
        process's flags are restored afterwards). Process-wide allocator
        settings are the caller's choice
        (:func:`enhance_hmi.heap.keep_freed_memory`, which the command line and
        the batch jobs turn on).
    precision : {"fp32", "bf16", "fp16"}
        Autocast precision (fp32: none). bf16/fp16 are meant for GPUs; on a
        CPU they run through CPU autocast (slow, used to test the path).
    tile : int
        Window size in input pixels; larger than ``2*margin + blend``.
        Images no larger than ``tile`` go through in one piece.
    batch_size : int, optional
        Windows per forward pass. Default: 1 on a CPU (larger batches were
        slower there, see docs/performance.md), 4 on a GPU.
    input_scale : float
        Network units = physical / ``input_scale`` (1 for continuum, 1000 G
        for Blos: the network works in kG, paper Sect. 3).
    margin : int, optional
        Pixels discarded at cut window edges; default the network's receptive
        radius, which makes tiling exact.
    blend : int
        Width of the linear blending ramp after the margin.
    progress : bool
        Show a tqdm progress bar on standard error, counting windows (the
        caller decides: the CLI shows it when standard error is a terminal).
        On a GPU each batch is then waited for, so the bar shows finished
        work rather than queued launches.
    progress_label : str, optional
        Text before the bar (e.g. the input file name, cut to 32 characters);
        default "enhance".
    compile : bool
        Run the network through :func:`torch.compile` (see
        :func:`prepare_model`). A smaller last batch costs one more
        compilation, of a graph for any batch size, on the first frame.
        Where compiling fails (TorchInductor needs a C++ compiler on a
        CPU) the network runs eagerly, with a logged warning.
    timings : InferenceTimings, optional
        Accumulates the seconds of the copies and of the forward passes and
        the windows computed (for benchmarks); None: nothing is timed.
    wanted : numpy.ndarray of bool, shape (H, W), optional
        Input pixels whose output the caller keeps (for a full disk, those
        on the disk: :meth:`enhance_hmi.physics.disk.SolarDisk.inside`). Windows
        without a finite wanted pixel are not computed, and the output
        pixels of unwanted input pixels are NaN; default every pixel.
    symmetries : sequence of Symmetry
        Average the network over these symmetries of the forward model
        (:func:`enhance_hmi.inference.symmetry.symmetry_group`): one pass
        per symmetry, each turned back; default one pass, as trained.

    Returns
    -------
    numpy.ndarray, float32, shape (2H, 2W)
        Physical units; NaN where the input was not finite (or is not
        ``wanted``). Windows with no finite wanted pixel are not computed.

    Raises
    ------
    InputError
        ``data`` is not 2-D or has no finite pixel, or ``wanted`` is not of
        its shape.
    ConfigError
        Bad device, precision, tile or batch size.
    """
    if isinstance(model, EnhanceWithUncertainty):
        model = model.backbone  # its output channel is the network's own, bit for bit
    channels: np.ndarray = _averaged_channels(
        data,
        model,
        symmetries,
        device=device,
        precision=precision,
        tile=tile,
        batch_size=batch_size,
        input_scale=input_scale,
        margin=margin,
        blend=blend,
        progress=progress,
        progress_label=progress_label,
        compile=compile,
        timings=timings,
        wanted=wanted,
    )
    return channels[0]


def enhance_array_with_sigma(
    data: np.ndarray, model: EnhanceWithUncertainty, **options: Any
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`enhance_array` and the sigma of the network's uncertainty head, in one pass.

    Parameters
    ----------
    data : array_like, shape (H, W)
        As for :func:`enhance_array`.
    model : EnhanceWithUncertainty
        The network with its head (:mod:`enhance_hmi.model.uncertainty`).
    **options
        The keyword options of :func:`enhance_array`. With ``symmetries``
        the sigma is the mean of the head's over the passes too; the head
        was calibrated on one pass (its coverage when averaged:
        docs/model_card.md, "Averaging over symmetries").

    Returns
    -------
    output, sigma : numpy.ndarray, float32, shape (2H, 2W)
        Both in physical units, NaN where :func:`enhance_array`'s output is.
    """
    if not isinstance(model, EnhanceWithUncertainty):
        raise TypeError(f"expected a network with its uncertainty head, got {type(model).__name__}")
    symmetries = options.pop("symmetries", ())
    both = _averaged_channels(data, model, symmetries, **options)
    return both[0], both[1]


def _averaged_channels(
    data: np.ndarray,
    model: EnhanceNet | EnhanceWithUncertainty,
    symmetries: Sequence[Symmetry],
    **options: Any,
) -> np.ndarray:
    """:func:`_enhance_channels`, averaged over ``symmetries`` (one pass when none).

    Channel 0 (the field or intensity) changes sign with a symmetry that
    negates the input; the others (sigma) do not.
    """
    if not isinstance(symmetries, Sequence) or not all(isinstance(s, Symmetry) for s in symmetries):
        raise TypeError(
            "symmetries must be Symmetry objects (enhance_hmi.inference.symmetry_group), "
            f"got {symmetries!r}"
        )
    if len(symmetries) <= 1 and all(s == Symmetry() for s in symmetries):
        return _enhance_channels(data, model, **options)
    image = np.asarray(data)
    if image.ndim != 2:
        raise InputError(f"expected a 2-D image, got shape {image.shape}")
    wanted = options.pop("wanted", None)
    label = options.pop("progress_label", None) or "enhance"

    def one_pass(k: int) -> np.ndarray:
        symmetry = symmetries[k]
        turned = Symmetry(symmetry.turns, symmetry.mirror)  # the mask has no sign
        channels = _enhance_channels(
            symmetry.apply(image),
            model,
            wanted=None if wanted is None else turned.apply(wanted),
            progress_label=f"{label} {k + 1}/{len(symmetries)}",
            **options,
        )
        return np.stack([symmetry.undo(c, signed=i == 0) for i, c in enumerate(channels)])

    total = one_pass(0).astype(np.float32, copy=False)
    for k in range(1, len(symmetries)):
        total += one_pass(k)
    total /= np.float32(len(symmetries))
    return total


def _enhance_channels(
    data: np.ndarray,
    model: EnhanceNet | EnhanceWithUncertainty,
    *,
    device: str | torch.device = "auto",
    precision: str = "fp32",
    tile: int = DEFAULT_TILE,
    batch_size: int | None = None,
    input_scale: float = 1.0,
    margin: int | None = None,
    blend: int = 8,
    progress: bool = False,
    progress_label: str | None = None,
    compile: bool = False,
    timings: InferenceTimings | None = None,
    wanted: np.ndarray | None = None,
) -> np.ndarray:
    """The tiled pass of :func:`enhance_array`: every output channel, shape (C, 2H, 2W).

    Long (~110 lines): one ``inference_mode`` block that keeps every
    intermediate on the device; its loop over the windows is :func:`_run_windows`.
    """
    image = np.asarray(data)
    if image.ndim != 2:
        raise InputError(f"expected a 2-D image, got shape {image.shape}")
    if min(image.shape) < 2:
        raise InputError(f"image of shape {image.shape} is too small to enhance")
    dtype = autocast_dtype(precision)
    dev = resolve_device(device)
    if batch_size is None:
        batch_size = 4 if dev.type == "cuda" else 1
    if isinstance(batch_size, bool) or int(batch_size) < 1:
        raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
    factor = model.upscale
    margin = model.receptive_radius if margin is None else int(margin)
    (wh, ww), windows = plan_windows(
        image.shape, tile=int(tile), margin=margin, blend=int(blend), factor=factor
    )
    net = prepare_model(model, dev, compile=compile)
    height, width = image.shape
    # fp32 means IEEE fp32: PyTorch lets cuDNN round convolution inputs to
    # TF32 (10-bit mantissa) by default, which would break the 1e-5 tiling
    # exactness; the reduced-precision modes are bf16 and fp16.
    with (
        cudnn_settings(benchmark=True, allow_tf32=precision != "fp32"),
        torch.inference_mode(),
    ):
        # Everything from here to the final copy stays on the device: the
        # image goes over once, the blended 2x image comes back once.
        with timed_stage(timings, "h2d", dev):
            src = _to_device(image, dev)
        finite = torch.isfinite(src)
        has_nan = not bool(finite.all())
        computed = finite
        if wanted is not None:
            if np.shape(wanted) != image.shape:
                raise InputError(
                    f"the mask of wanted pixels {np.shape(wanted)} does not match the image "
                    f"{image.shape}"
                )
            computed = finite & torch.from_numpy(np.asarray(wanted, dtype=bool)).to(dev)
        if has_nan:
            if not bool(finite.any()):
                raise InputError("the image has no finite pixels (all NaN or infinite)")
            # Off-disk fill: the (lower) median finite value, the quiet-Sun
            # level for continuum and ~0 G for Blos; only output pixels within
            # the receptive radius of the limb feel it.
            src = torch.where(finite, src, src[finite].median())
        if input_scale != 1.0:
            src = src / float(input_scale)
        # The windows form a grid, so the sum of their weights is the outer
        # product of per-axis sums. Windows without a finite (wanted) pixel
        # are skipped: every output pixel they cover ends up NaN (or is not
        # wanted), so the normalisation of the others is unaffected.
        norm_y = np.zeros(factor * height)
        norm_x = np.zeros(factor * width)
        for y0, wy in {w.y0: w.wy for w in windows}.items():
            norm_y[factor * y0 : factor * (y0 + wh)] += wy
        for x0, wx in {w.x0: w.wx for w in windows}.items():
            norm_x[factor * x0 : factor * (x0 + ww)] += wx
        if has_nan or wanted is not None:
            keep = torch.stack(
                [computed[w.y0 : w.y0 + wh, w.x0 : w.x0 + ww].any() for w in windows]
            ).cpu()
            windows = [w for w, k in zip(windows, keep.tolist(), strict=True) if k]
        weights_y = {w.y0: torch.from_numpy(w.wy.astype(np.float32)).to(dev) for w in windows}
        weights_x = {w.x0: torch.from_numpy(w.wx.astype(np.float32)).to(dev) for w in windows}
        batches = [
            windows[i : i + int(batch_size)] for i in range(0, len(windows), int(batch_size))
        ]
        bar = _progress_bar(len(windows), progress_label) if progress else None
        log.debug("%d windows of %dx%d on %s (%s)", len(windows), wh, ww, dev, precision)
        channels = 2 if isinstance(model, EnhanceWithUncertainty) else 1  # output, sigma
        out = torch.zeros(
            (channels, factor * height, factor * width), dtype=torch.float32, device=dev
        )
        net = _run_windows(
            net,
            model,
            src,
            out,
            batches,
            (wh, ww),
            factor,
            dtype,
            dev,
            weights=(weights_y, weights_x),
            compile=compile,
            timings=timings,
            bar=bar,
        )
        norm = torch.from_numpy(norm_y.astype(np.float32)).to(dev)
        out /= norm[None, :, None]
        norm = torch.from_numpy(norm_x.astype(np.float32)).to(dev)
        out /= norm[None, None, :]
        if input_scale != 1.0:
            out *= float(input_scale)
        if has_nan or wanted is not None:
            blocks = out.view(channels, height, factor, width, factor)
            blocks.masked_fill_(~computed[None, :, None, :, None], float("nan"))
        with timed_stage(timings, "d2h", dev):
            host = _to_host(out)
        return host


def _run_windows(
    net: nn.Module,
    model: EnhanceNet | EnhanceWithUncertainty,
    src: torch.Tensor,
    out: torch.Tensor,
    batches: list[list[Any]],
    shape: tuple[int, int],
    factor: int,
    dtype: torch.dtype | None,
    dev: torch.device,
    *,
    weights: tuple[dict[int, torch.Tensor], dict[int, torch.Tensor]],
    compile: bool,
    timings: InferenceTimings | None,
    bar: Any,
) -> nn.Module:
    """Run the network over every batch of windows and add each, weighted, into ``out``.

    Returns the network that ran: the eager one when compiling failed
    (TorchInductor needs a C++ compiler on a CPU; same output, the compile's
    speed-up lost, with a logged warning).
    """
    (wh, ww), (weights_y, weights_x) = shape, weights
    try:
        for batch in batches:
            stack = torch.stack([src[w.y0 : w.y0 + wh, w.x0 : w.x0 + ww] for w in batch])
            with timed_stage(timings, "compute", dev):
                try:
                    result = _forward(net, stack, dtype)
                except Exception as exc:  # noqa: BLE001 - any failure of the compiler
                    if not compile:
                        raise
                    log.warning("torch.compile failed (%s); running the network eagerly", exc)
                    compile = False
                    net = prepare_model(model, dev, compile=False)
                    result = _forward(net, stack, dtype)
            if timings is not None:
                timings.windows += len(batch)
                timings.window_pixels += stack.numel()
            for w, tile_out in zip(batch, result, strict=True):
                ys = slice(factor * w.y0, factor * (w.y0 + wh))
                xs = slice(factor * w.x0, factor * (w.x0 + ww))
                out[:, ys, xs].addcmul_(tile_out, torch.outer(weights_y[w.y0], weights_x[w.x0]))
            if bar is not None:
                if dev.type == "cuda":
                    torch.cuda.synchronize(dev)
                bar.update(len(batch))
    finally:
        if bar is not None:
            bar.close()
    return net
