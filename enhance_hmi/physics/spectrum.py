"""Spectral power of an image: per unit solar area, radially averaged, or in a band.

Two measures of where an image's variance sits in spatial frequency:

* :func:`radial_power_spectrum`: the azimuthally averaged power spectral
  density, normalised per unit solar area (frequency in arcsec^-1, power in
  data units squared times arcsec^2), so images of one scene sampled at
  different pixel scales (an HMI input at 0.504"/px, its 2x enhancement at
  0.252"/px) lie on one scale. Every power-spectrum figure of the package
  draws this.
* :func:`band_power`: the power between two frequencies measured on tiles
  that lie wholly inside a region. A pattern that an image operation leaves
  at a few pixels' period (ringing, the ripples of a deconvolution that fits
  noise) shows as excess power in a band of frequencies; measured on tiles
  it stays local: the sharp edge of the solar limb or a NaN border does not
  leak into it.

References
----------
.. [1] Harris, F. J. (1978), "On the use of windows for harmonic analysis
   with the discrete Fourier transform", Proc. IEEE 66, 51 (the Hann window).
.. [2] Welch, P. D. (1967), "The use of fast Fourier transform for the
   estimation of power spectra", IEEE Trans. Audio Electroacoust. 15, 70
   (the windowed periodogram normalised by the window's energy).
.. [3] Press, W. H. et al. (2007), Numerical Recipes, 3rd ed., Sect. 13.4
   (periodogram normalisation and Parseval's theorem).
"""

from __future__ import annotations

import math

import astropy.units as u
import numpy as np

from enhance_hmi.errors import ConfigError, InputError
from enhance_hmi.physics.constants import to_arcsec

__all__ = ["band_power", "band_tiles", "band_weights", "radial_power_spectrum"]


def radial_power_spectrum(
    image: object,
    pixel_scale: u.Quantity,
    *,
    window: bool = True,
    pad: int = 1,
) -> tuple[u.Quantity, u.Quantity]:
    """Azimuthally averaged power spectral density of an image, per unit solar area.

    Convention. Let ``f[m, n]`` be the image with its mean over the finite
    pixels removed, sampled every ``p`` arcsec, ``w[m, n]`` the window (a 2-D
    Hann window [1]_, or 1; 0 on non-finite pixels) and ``F`` the discrete
    Fourier transform of ``w f`` (zero-padded to ``pad`` times the image's
    size). The density is the windowed periodogram [2]_::

        P(k) = p**2 * |F(k)|**2 / sum(w**2)

    at the spatial frequency ``k`` in arcsec^-1 (``|k| <= 1 / (2 p)``), then
    averaged over annuli one frequency step wide. It is a density in the
    frequency plane: power per arcsec^-2 of frequency, in data units squared
    times arcsec^2. Three properties follow:

    * White noise of variance ``s^2`` per pixel has ``E |F|^2 = s^2 sum w^2``,
      so ``P = s^2 p^2``, flat. The same noise variance density (variance
      times pixel area, ``s^2 p^2``) sampled at any pixel size gives the same
      ``P``: sampled at ``p / 2`` its per-pixel variance is ``4 s^2``.
    * Parseval [3]_: without window and padding, the sum of ``P`` times the
      frequency cell ``1 / (N p^2)`` over the ``N`` frequencies is the
      image's variance, so the integral of ``P`` over the frequency plane is
      the variance whatever the sampling.
    * A scene resolved at both samplings (an HMI input and its 2x
      enhancement, a truth at 0.252"/px) has one ``P`` at the frequencies
      they share; the per-pixel periodogram ``|F|^2 / N`` would put the image
      with pixels half the size 4x higher.

    Long for its documentation of the normalisation and its units; the body is one
    windowed FFT and one radial average.

    Parameters
    ----------
    image : array_like
        2-D image; non-finite pixels are left out (weight 0).
    pixel_scale : astropy.units.Quantity
        Angular size of a pixel (e.g. ``0.504 * u.arcsec``); square pixels.
        An image that is a Quantity gives power in its unit squared times
        arcsec^2.
    window : bool
        Apply a 2-D Hann window (default): it keeps the leakage of the
        image's edges (a non-periodic field) from filling the weak
        high-frequency end. False weights every finite pixel equally.
    pad : int
        Zero-pad to ``pad`` times the image's size: ``pad`` times finer
        annuli, same density.

    Returns
    -------
    frequency : astropy.units.Quantity
        Centres of the annuli with data, arcsec^-1, from one step (the zero
        frequency is left out) to the Nyquist frequency ``1 / (2 p)``.
    power : astropy.units.Quantity
        Mean density in each annulus, arcsec^2 (times the image's unit
        squared).

    Raises
    ------
    enhance_hmi.errors.InputError
        ``image`` is not 2-D or has fewer than 16 finite pixels.
    enhance_hmi.errors.ConfigError
        ``pixel_scale`` is not a positive angle, or ``pad`` not a positive
        integer.
    """
    scale = to_arcsec(pixel_scale, "pixel_scale")
    unit = image.unit if isinstance(image, u.Quantity) else u.dimensionless_unscaled
    data = np.asarray(image.value if isinstance(image, u.Quantity) else image, dtype=np.float64)
    if data.ndim != 2:
        raise InputError(f"a power spectrum needs a 2-D image; got shape {data.shape}")
    if not (isinstance(pad, int) and pad >= 1):
        raise ConfigError(f"pad must be a positive integer (1 for none); got {pad!r}")
    finite = np.isfinite(data)
    if finite.sum() < 16:
        raise InputError(
            f"a power spectrum needs at least 16 finite pixels; the image has {int(finite.sum())}"
        )
    ny, nx = data.shape
    weight = finite.astype(np.float64)
    if window:
        weight *= np.outer(np.hanning(ny), np.hanning(nx))
    energy = float(np.sum(weight**2))
    if not energy > 0:
        raise InputError(
            "the finite pixels of the image lie only on its edges, where the window is 0; "
            "pass window=False"
        )
    centred = np.where(finite, data - data[finite].mean(), 0.0)
    transform = np.fft.fft2(centred * weight, s=(pad * ny, pad * nx))
    density = scale**2 * np.abs(transform) ** 2 / energy
    # radial frequency in cycles per pixel, annuli one (padded) step wide
    step = 1.0 / (pad * max(ny, nx))
    radius = np.hypot(np.fft.fftfreq(pad * ny)[:, None], np.fft.fftfreq(pad * nx)[None, :])
    index = np.rint(radius / step).astype(np.int64).ravel()
    nbin = int(math.floor(0.5 / step + 1e-9)) + 1
    keep = index < nbin
    sums = np.bincount(index[keep], weights=density.ravel()[keep], minlength=nbin)
    counts = np.bincount(index[keep], minlength=nbin)
    good = counts > 0
    good[0] = False
    frequency = np.arange(nbin)[good] * step / scale
    return frequency / u.arcsec, (sums[good] / counts[good]) * unit**2 * u.arcsec**2


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
