"""Overlap tiling with a blending window, exact to float rounding.

An image is cut into equal windows of at most ``tile`` pixels per side that
overlap by ``2 * margin + blend`` pixels. Each window's output is weighted by
a separable trapezoid: zero over the ``margin`` pixels next to a cut edge
(where the network saw reflection padding instead of the true neighbours),
rising linearly over ``blend`` pixels, one inside. At the image borders the
weight stays one (the whole-image pass pads there by reflection too). When
``margin`` is at least the receptive radius of the network every window is
exact wherever its weight is non-zero, so the blended image equals the
whole-image result to float rounding; the ramp hides any residual seam if a
caller chooses a smaller margin.
"""

from __future__ import annotations

import dataclasses

import numpy as np

__all__ = ["Window", "axis_starts", "axis_weight", "plan_windows"]


def axis_starts(length: int, window: int, step: int) -> list[int]:
    """Start indices of windows of size ``window`` covering ``[0, length)``."""
    if window >= length:
        return [0]
    starts = list(range(0, length - window, step))
    starts.append(length - window)
    return sorted(set(starts))


def axis_weight(
    start: int, window: int, length: int, margin: int, blend: int, factor: int
) -> np.ndarray:
    """1-D blending weight of one window, sampled on the ``factor``-times output grid."""
    n_out = window * factor
    pos = (np.arange(n_out) + 0.5) / factor  # output pixel centres in input pixels
    weight = np.ones(n_out, dtype=np.float64)
    ramp = max(blend, 1)
    if start > 0:
        weight = np.minimum(weight, np.clip((pos - margin) / ramp, 0.0, 1.0))
    if start + window < length:
        weight = np.minimum(weight, np.clip((window - margin - pos) / ramp, 0.0, 1.0))
    return weight


@dataclasses.dataclass(frozen=True)
class Window:
    """One tile: input slice and its output weights."""

    y0: int
    x0: int
    wy: np.ndarray
    wx: np.ndarray


def plan_windows(
    shape: tuple[int, int], *, tile: int, margin: int, blend: int, factor: int = 2
) -> tuple[tuple[int, int], list[Window]]:
    """Windows covering ``shape`` and the common window size.

    Returns
    -------
    ((wh, ww), windows)
        All windows have the same size (so they batch), at most ``tile``.

    Raises
    ------
    ValueError
        ``tile`` too small for the overlap (``tile <= 2 * margin + blend``).
    """
    height, width = shape
    overlap = 2 * margin + blend
    if tile <= overlap:
        raise ValueError(
            f"tile {tile} must exceed twice the margin plus the blend ({overlap} pixels)"
        )
    wh, ww = min(tile, height), min(tile, width)
    step = tile - overlap
    windows = []
    for y0 in axis_starts(height, wh, step):
        wy = axis_weight(y0, wh, height, margin, blend, factor)
        for x0 in axis_starts(width, ww, step):
            wx = axis_weight(x0, ww, width, margin, blend, factor)
            windows.append(Window(y0, x0, wy, wx))
    return (wh, ww), windows
