"""Spectral power of an image in a band of spatial frequencies, measured locally.

A pattern that an image operation leaves at a few pixels' period (ringing,
the ripples of a deconvolution that fits noise) shows as excess power in a
band of frequencies. Measured on tiles that lie wholly inside a region, it
stays local: the sharp edge of the solar limb or a NaN border does not leak
into it.

References
----------
.. [1] Harris, F. J. (1978), "On the use of windows for harmonic analysis
   with the discrete Fourier transform", Proc. IEEE 66, 51 (the Hann window).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["band_power", "band_tiles", "band_weights"]


def _tile_origins(length: int, tile: int) -> list[int]:
    """Origins of non-overlapping tiles along an axis, centred on it."""
    count = length // tile
    start = (length - count * tile) // 2
    return [start + k * tile for k in range(count)]


def band_power(
    image: object,
    band: tuple[float, float],
    *,
    region: np.ndarray | None = None,
    tile: int = 256,
) -> float:
    """Mean spectral power of an image between two spatial frequencies, over tiles of a region.

    The image is cut into ``tile``-pixel squares; each square that lies
    wholly inside ``region`` (True pixels) and holds no NaN is
    Hann-windowed, its mean removed, and its power summed over the radial
    frequencies ``band[0] <= f < band[1]`` (cycles per pixel). Tiles keep
    the figure local: a ripple pattern of a few tens of pixels is measured
    where it is, not mixed with the limb's edge.

    Parameters
    ----------
    image : array_like
        2-D image.
    band : (float, float)
        Lower and upper radial frequency, cycles per pixel of ``image``.
    region : numpy.ndarray of bool, optional
        Pixels that may enter (e.g. :meth:`SolarDisk.inside`); default all.
    tile : int
        Tile side in pixels; an image smaller than one tile is measured as
        one tile of its smaller side.

    Returns
    -------
    float
        The power per tile, averaged over the tiles used (image units
        squared times pixels); NaN when no tile qualifies.
    """
    data, origins, weight, window = band_tiles(image, band, region=region, tile=tile)
    side = window.shape[0]
    total = 0.0
    for y0, x0 in origins:
        cut = data[y0 : y0 + side, x0 : x0 + side]
        spectrum = np.fft.rfft2((cut - cut.mean()) * window)
        total += float(np.sum(weight * np.abs(spectrum) ** 2))
    return total / len(origins) if origins else math.nan


def band_tiles(
    image: object, band: tuple[float, float], *, region: np.ndarray | None, tile: int
) -> tuple[np.ndarray, list[tuple[int, int]], np.ndarray, np.ndarray]:
    """What :func:`band_power` measures: the image, its tiles and the band's weights.

    Returns
    -------
    (numpy.ndarray, list of (int, int), numpy.ndarray, numpy.ndarray)
        The image as float32; the origins of its squares wholly inside
        ``region`` and without NaN; the float64 rfft2 weights of ``band``
        and the float32 2-D Hann window (:func:`band_weights`), whose side
        is the squares' (``tile``, at most the image's smaller side).
    """
    data = np.asarray(image, dtype=np.float32)
    tile = min(tile, *data.shape)
    usable = np.isfinite(data) if region is None else (region & np.isfinite(data))
    ny, nx = data.shape
    origins = [
        (y0, x0)
        for y0 in _tile_origins(ny, tile)
        for x0 in _tile_origins(nx, tile)
        if usable[y0 : y0 + tile, x0 : x0 + tile].all()
    ]
    return (data, origins, *band_weights(tile, band))


def band_weights(tile: int, band: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """What :func:`band_power` sums with: rfft2 weights of the band and the 2-D Hann window.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        float64 weights of shape ``(tile, tile // 2 + 1)`` (2 inside
        ``band[0] <= f < band[1]``, 1 on the columns that stand for one
        frequency only, 0 outside) and the float32 ``(tile, tile)`` window.
    """
    freq_y = np.fft.fftfreq(tile)[:, None]
    freq_x = np.fft.rfftfreq(tile)[None, :]
    radial = np.hypot(freq_y, freq_x)
    in_band = (radial >= band[0]) & (radial < band[1])
    # rfft halves the spectrum: count the columns that stand for two frequencies twice
    weight = np.where(in_band, 2.0, 0.0)
    weight[:, 0] /= 2.0
    if tile % 2 == 0:
        weight[:, -1] /= 2.0
    hann = np.hanning(tile).astype(np.float32)
    return weight, hann[:, None] * hann[None, :]
