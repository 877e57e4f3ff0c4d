"""Overlap tiling with a blending window, exact to float rounding.

An image is cut into equal windows of at most ``tile`` pixels per side that
overlap by at least ``2 * margin + blend`` pixels (as few windows as that
allows, shrunk to the smallest size that covers the image, spread evenly).
Each window's output is weighted by a separable trapezoid: zero over the
``margin`` pixels next to a cut edge (where the network saw reflection padding
instead of the true neighbours), rising linearly over ``blend`` pixels, one
inside. At the image borders the weight stays one (the whole-image pass pads
there by reflection too). When ``margin`` is at least the receptive radius of
the network every window is exact wherever its weight is non-zero, so the
blended image equals the whole-image result to float rounding; the ramp hides
any residual seam if a caller chooses a smaller margin.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from enhance_hmi.errors import ConfigError

#: Default window side in input pixels: the fastest on a CPU for a real
#: 4096x4096 full disk (bench/cpu_tile.py, docs/performance.md: 512 took
#: 0.90x the time of 256 and 0.99x that of 768, whose windows need twice the
#: memory); larger windows waste less on the overlap at their cut edges.
DEFAULT_TILE = 512

__all__ = ["DEFAULT_TILE", "Window", "axis_plan", "axis_weight", "plan_windows"]


def axis_plan(length: int, tile: int, overlap: int) -> tuple[int, list[int]]:
    """Window size and starts covering ``[0, length)`` with the fewest, smallest windows.

    ``n = ceil((length - overlap) / (tile - overlap))`` windows are needed;
    they are then shrunk to the smallest equal size that still covers the
    axis with ``overlap`` pixels shared by neighbours, ``ceil((length + (n -
    1) overlap) / n) <= tile``, and spread evenly. Fixed ``tile``-sized
    windows at a fixed step would instead end with a window almost entirely
    inside the previous one: for a 4096-pixel HMI axis in 1024-pixel windows
    they compute 5 x 1024 = 5120 pixels per axis (1.56x the frame's pixels),
    the shrunk windows 5 x 847 = 4235 (1.07x).

    Returns
    -------
    (window, starts)
        ``window == length`` and ``starts == [0]`` when ``tile >= length``.
    """
    if tile >= length:
        return length, [0]
    n = math.ceil((length - overlap) / (tile - overlap))
    window = math.ceil((length + (n - 1) * overlap) / n)
    # floor spacing: neighbours share at least `overlap` pixels (spacing <=
    # ceil((length - window) / (n - 1)) <= window - overlap by the choice of n)
    starts = [(i * (length - window)) // (n - 1) for i in range(n)]
    return window, starts


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
    ConfigError
        ``tile`` too small for the overlap (``tile <= 2 * margin + blend``).
    """
    height, width = shape
    overlap = 2 * margin + blend
    if tile <= overlap:
        raise ConfigError(
            f"tile {tile} must exceed twice the margin plus the blend ({overlap} pixels)"
        )
    wh, starts_y = axis_plan(height, tile, overlap)
    ww, starts_x = axis_plan(width, tile, overlap)
    weights_x = {x0: axis_weight(x0, ww, width, margin, blend, factor) for x0 in starts_x}
    windows: list[Window] = []
    for y0 in starts_y:
        wy = axis_weight(y0, wh, height, margin, blend, factor)
        windows.extend(Window(y0, x0, wy, weights_x[x0]) for x0 in starts_x)
    return (wh, ww), windows
