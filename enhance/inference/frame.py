"""Enhance a :class:`~enhance.frame.Frame`: weights, network units, 2x header."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from enhance.frame import Frame
from enhance.inference.array import enhance_array, resolve_device
from enhance.io.wcs import upsample_header
from enhance.model.weights import check_trained_for, default_weights, load_weights_cached

__all__ = ["enhance_frame"]

log = logging.getLogger(__name__)


def enhance_frame(
    frame: Frame,
    *,
    weights: str | os.PathLike[str] | None = None,
    device: str = "auto",
    precision: str = "fp32",
    tile: int = 256,
    batch_size: int | None = None,
    progress: bool = False,
    compile: bool = False,
) -> Frame:
    """Return the enhanced frame (2x grid, same units, header with the 2x WCS).

    The network is loaded once per process and weights file
    (:func:`enhance.model.load_weights_cached`), so a job enhancing many frames
    pays the load and checksum once.

    Parameters
    ----------
    frame : Frame
        Continuum in quiet-Sun units or Blos in gauss (:func:`enhance.io.read_hmi`).
    weights : path-like, optional
        Default: the shipped weights for ``frame.observable``.
    device, precision, tile, batch_size, progress, compile
        See :func:`enhance.inference.enhance_array`.

    Raises
    ------
    WeightsError
        No weights, a bad weights file, or weights trained for another observable.
    """
    path = Path(weights) if weights is not None else default_weights(frame.observable)
    dev = resolve_device(device)
    # The checked CPU network: enhance_array's inference copy (batch norms
    # folded, cached per device) is the one that goes to the device.
    model, meta = load_weights_cached(path)
    check_trained_for(meta, frame.observable, path, "the image")
    scale = float(meta["input_normalisation"].get("scale", 1.0))
    data = enhance_array(
        frame.data,
        model,
        device=dev,
        precision=precision,
        tile=tile,
        batch_size=batch_size,
        input_scale=scale,
        progress=progress,
        compile=compile,
    )
    header = upsample_header(frame.header, factor=model.upscale)
    meta_out = dict(frame.meta)
    meta_out.update(
        weights_file=path.name,
        weights_sha256=meta["sha256"],
        psf_model=meta.get("psf_model"),
        device=str(dev),
        precision=precision,
        tile=tile,
    )
    return Frame(data=data, header=header, observable=frame.observable, meta=meta_out)
