"""Continuum normalisation to quiet-Sun units, with limb darkening removed.

The network works on continuum intensity in units of the quiet-Sun intensity
(Díaz Baso & Asensio Ramos 2018, Sect. 3: divide by the quiet-Sun mean; the
original code divided by the image maximum, which is wrong for images with
plage or limb). Two estimators:

* full-disk images with a helioprojective WCS: a limb-darkening law
  ``I(mu) = sum_k c_k mu^k`` (5th-order polynomial in ``mu = cos(theta)``, the
  functional form of Neckel & Labs 1994) is fitted to the on-disk pixels with
  iterative robust clipping, so sunspots, pores and faculae do not bias it;
  the image is divided by ``I(mu)`` pixel by pixel. The fit is done on each
  frame rather than taken from tabulated coefficients, which absorbs the
  instrument's own calibration and the exact wavelength (HMI: 6173 Å).
* cut-outs and images without WCS: divide by the quiet-Sun level, the median
  of the finite pixels after iteratively excluding dark (sunspot, pore)
  pixels below :data:`DARK_FRACTION` of the current level
  (:func:`quiet_sun_level`).

References
----------
.. [1] Díaz Baso, C. J. & Asensio Ramos, A. (2018), A&A 614, A5, Sect. 3.
.. [2] Neckel, H. & Labs, D. (1994), "Solar limb darkening 1986-1990
   (λλ 303 to 1099 nm)", Sol. Phys. 153, 91: 5th-order polynomial in mu.
.. [3] Rousseeuw, P. J. & Croux, C. (1993), J. Am. Stat. Assoc. 88, 1273:
   1.4826 MAD as a robust standard deviation.
"""

from __future__ import annotations

import logging
import math
import warnings
from typing import Any

import numpy as np
from astropy.io import fits
from numpy.polynomial import polynomial as npoly

from enhance_hmi.errors import InputError, NotQuietSunUnitsWarning
from enhance_hmi.io.wcs import has_celestial_wcs
from enhance_hmi.physics.noise import MAD_TO_SIGMA

__all__ = [
    "DARK_FRACTION",
    "START_PERCENTILE",
    "LIMB_DEGREE",
    "MU_MIN",
    "CLIP_SIGMA",
    "FULL_DISK_FRACTION",
    "disk_mu",
    "fit_limb_darkening",
    "quiet_sun_level",
    "normalise_continuum",
]

log = logging.getLogger(__name__)

#: Pixels darker than this fraction of the current quiet-Sun level are
#: treated as sunspot/pore and excluded from the quiet-Sun median. HMI
#: quiet-Sun rms contrast is ~3.7-3.8 % (Díaz Baso & Asensio Ramos 2018,
#: Sect. 4), so 0.9 is ~2.7 sigma below the mean: granulation stays in,
#: umbrae (~0.1-0.3) and penumbrae (~0.6-0.8) are cut.
DARK_FRACTION = 0.9
#: Percentile of the finite pixels the quiet-Sun iteration starts from.
START_PERCENTILE = 95.0
#: Degree of the limb-darkening polynomial in mu (Neckel & Labs 1994).
LIMB_DEGREE = 5
#: Pixels closer to the limb than this mu are left out of the fit: the last
#: few pixels mix on- and off-disk light and the law is steepest there.
MU_MIN = 0.1
#: Clipping threshold, in robust standard deviations of the fit residual.
CLIP_SIGMA = 3.0
#: A frame is "full disk" when at least this fraction of the solar disk area
#: falls inside the image (and on finite pixels).
FULL_DISK_FRACTION = 0.9
#: At most this many on-disk pixels (a regular subsample) enter the fit.
MAX_FIT_SAMPLES = 400_000
#: Fewer usable on-disk pixels than this and no limb fit is attempted.
MIN_FIT_SAMPLES = 500


def quiet_sun_level(data: np.ndarray, *, dark_fraction: float = DARK_FRACTION) -> float:
    """Return the quiet-Sun level of an image: median of the non-dark pixels.

    The quiet Sun is the brightest extended population of a continuum image
    (faculae are few and only a few percent brighter). The estimate starts
    from the :data:`START_PERCENTILE` percentile of the finite pixels, which
    lies in the quiet Sun whenever a tenth or more of the field is quiet, then
    repeatedly takes the median of the pixels brighter than ``dark_fraction``
    times the current level until it stops changing (at most 20 iterations).
    The fixed point is the median of the quiet Sun, with umbrae and penumbrae
    excluded even when they cover most of a cut-out (a plain median then
    lands in the penumbra).

    This is the level that defines the quiet-Sun unit of the raw image, in
    any intensity unit; the quiet-Sun *pixels* of an image already in those
    units (for contrasts and noise) are
    :func:`enhance_hmi.physics.diagnostics.quiet_sun_mask`'s.

    Raises
    ------
    InputError
        If the image has no finite pixels or its level is not positive.

    References
    ----------
    .. [1] Díaz Baso & Asensio Ramos (2018), A&A 614, A5, Sect. 3: continuum
       normalised to the quiet-Sun intensity.
    """
    values = np.asarray(data, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        raise InputError("the image has no finite pixels to estimate the quiet-Sun level from")
    level = float(np.percentile(values, START_PERCENTILE))
    if not level > 0.0:
        raise InputError(
            f"the image's bright pixels are at {level:g}, not a positive intensity; "
            "is it a continuum image (use --normalize none for pre-normalised data)?"
        )
    for _ in range(20):
        kept = values[values > dark_fraction * level]
        new_level = float(np.median(kept))
        if math.isclose(new_level, level, rel_tol=1e-7):
            break
        level = new_level
    return level


def disk_mu(header: fits.Header, shape: tuple[int, int]) -> tuple[np.ndarray, dict[str, float]]:
    """Return ``mu = cos(theta)`` for every pixel (NaN off the disk).

    The disk centre pixel comes from the header's WCS (sunpy map of the
    helioprojective frame, world point (0", 0")), the angular radius from
    ``RSUN_OBS`` (or sunpy's equivalent from ``RSUN_REF``/``DSUN_OBS``). For a
    pixel at angular distance rho from disk centre the emission angle obeys
    ``sin(theta) = sin(rho) / sin(rho_limb)``; with rho below 0.3 deg the
    small-angle form ``rho / rho_limb`` used here is exact to 1e-5.

    Returns
    -------
    mu : numpy.ndarray
        float32, ``shape``; NaN where the pixel centre is off the disk.
    geometry : dict
        ``x0``, ``y0`` (0-based disk-centre pixel), ``radius_px``,
        ``rsun_arcsec``.
    """
    import astropy.units as u
    import sunpy.map
    from astropy.coordinates import SkyCoord
    from sunpy.util.exceptions import SunpyMetadataWarning

    placeholder = np.broadcast_to(np.float32(0.0), shape)  # no memory: only the WCS is used
    with warnings.catch_warnings(record=True) as caught:
        # headers without observer keywords: sunpy assumes an Earth observer and
        # says so; the disk radius is all we need, so log instead of warning
        warnings.simplefilter("always", SunpyMetadataWarning)
        smap = sunpy.map.Map(placeholder, _header_for_shape(header, shape))
    for item in caught:
        if issubclass(item.category, SunpyMetadataWarning):
            log.info("sunpy: %s", item.message)
        else:
            warnings.warn_explicit(item.message, item.category, item.filename, item.lineno)
    centre = SkyCoord(0 * u.arcsec, 0 * u.arcsec, frame=smap.coordinate_frame)
    x0, y0 = (float(v) for v in smap.wcs.world_to_pixel(centre))
    scale_x = abs(float(smap.scale.axis1.to_value(u.arcsec / u.pix)))
    scale_y = abs(float(smap.scale.axis2.to_value(u.arcsec / u.pix)))
    rsun = float(smap.rsun_obs.to_value(u.arcsec))
    ny, nx = shape
    dx = ((np.arange(nx, dtype=np.float32) - np.float32(x0)) * np.float32(scale_x / rsun))[None, :]
    dy = ((np.arange(ny, dtype=np.float32) - np.float32(y0)) * np.float32(scale_y / rsun))[:, None]
    r2 = dx * dx + dy * dy
    with np.errstate(invalid="ignore"):
        mu = np.sqrt(1.0 - r2, dtype=np.float32)
    mu[r2 >= 1.0] = np.nan
    geometry = {"x0": x0, "y0": y0, "radius_px": rsun / scale_x, "rsun_arcsec": rsun}
    return mu, geometry


def _header_for_shape(header: fits.Header, shape: tuple[int, int]) -> fits.Header:
    """A header copy with NAXIS cards matching ``shape`` (for sunpy)."""
    out = header.copy()
    out["NAXIS"] = 2
    out["NAXIS1"] = int(shape[1])
    out["NAXIS2"] = int(shape[0])
    return out


def fit_limb_darkening(
    data: np.ndarray,
    mu: np.ndarray,
    *,
    degree: int = LIMB_DEGREE,
    mu_min: float = MU_MIN,
    clip_sigma: float = CLIP_SIGMA,
    max_iter: int = 10,
) -> dict[str, Any]:
    """Fit ``I(mu) = sum_k c_k mu^k`` to the on-disk pixels with robust clipping.

    Pixels with finite data and ``mu >= mu_min`` enter (a regular subsample of
    at most :data:`MAX_FIT_SAMPLES`). Each iteration fits the polynomial by
    least squares to the kept pixels, computes the relative residual
    ``data / I(mu) - 1``, estimates its spread as 1.4826 MAD [3]_ and keeps
    pixels within ``clip_sigma`` of the median residual; it stops when the
    kept set no longer changes or after ``max_iter`` iterations.

    Returns
    -------
    dict
        ``coefficients`` (c_0..c_degree, increasing powers, input units),
        ``i_centre`` (``I(mu=1)``), ``n_fit`` (pixels in the final fit),
        ``clipped_fraction``, ``residual_sigma`` (relative), ``iterations``.

    Raises
    ------
    InputError
        With fewer than :data:`MIN_FIT_SAMPLES` usable pixels, or when the
        fitted law is not positive over ``mu`` in [mu_min, 1].

    References
    ----------
    .. [1] Neckel & Labs (1994), Sol. Phys. 153, 91: polynomial form.
    .. [2] Díaz Baso & Asensio Ramos (2018), A&A 614, A5: quiet-Sun units.
    .. [3] Rousseeuw & Croux (1993), J. Am. Stat. Assoc. 88, 1273.
    """
    usable = np.isfinite(data) & np.isfinite(mu) & (mu >= mu_min)
    index = np.flatnonzero(usable)
    if index.size < MIN_FIT_SAMPLES:
        raise InputError(
            f"only {index.size} on-disk pixels to fit limb darkening to "
            f"(need {MIN_FIT_SAMPLES}); use --normalize quiet-sun"
        )
    step = max(1, index.size // MAX_FIT_SAMPLES)
    index = index[::step]
    x = mu.ravel()[index].astype(np.float64)
    y = data.ravel()[index].astype(np.float64)
    keep = np.ones(x.size, dtype=bool)
    coefficients: np.ndarray = np.zeros(degree + 1)
    sigma = float("nan")
    iterations = 0
    while iterations < max_iter:
        iterations += 1
        coefficients = npoly.polyfit(x[keep], y[keep], degree)
        model = npoly.polyval(x, coefficients)
        with np.errstate(divide="ignore", invalid="ignore"):
            residual = y / model - 1.0
        centre = float(np.median(residual[keep]))
        sigma = MAD_TO_SIGMA * float(np.median(np.abs(residual[keep] - centre)))
        new_keep = np.isfinite(residual) & (np.abs(residual - centre) <= clip_sigma * sigma)
        if np.array_equal(new_keep, keep) or new_keep.sum() < MIN_FIT_SAMPLES:
            break
        keep = new_keep
    grid = np.linspace(mu_min, 1.0, 91)
    if not np.all(npoly.polyval(grid, coefficients) > 0.0):
        raise InputError(
            "the fitted limb-darkening law is not positive on the disk: the image "
            "does not look like a continuum full-disk frame; use --normalize quiet-sun"
        )
    return {
        "coefficients": [float(c) for c in coefficients],
        "i_centre": float(npoly.polyval(1.0, coefficients)),
        "n_fit": int(keep.sum()),
        "clipped_fraction": float(1.0 - keep.sum() / keep.size),
        "residual_sigma": sigma,
        "iterations": iterations,
    }


def _disk_coverage(mu: np.ndarray, data: np.ndarray, radius_px: float) -> float:
    """Fraction of the disk area that lies on finite pixels of the image."""
    on_disk = np.isfinite(mu) & np.isfinite(data)
    return float(on_disk.sum()) / (math.pi * radius_px**2)


def normalise_continuum(
    data: np.ndarray,
    header: fits.Header,
    *,
    method: str = "auto",
    limb_darkened: bool = True,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Return the continuum image in quiet-Sun units and what was done.

    Parameters
    ----------
    data : numpy.ndarray
        2-D continuum intensity (any units; off-disk NaN).
    header : astropy.io.fits.Header
        Its header, north up or not (used for the disk geometry).
    method : {"auto", "quiet-sun", "none"}
        ``"auto"``: limb-darkening fit on full-disk frames with WCS (at least
        :data:`FULL_DISK_FRACTION` of the disk in the image) that still carry
        limb darkening, quiet-Sun level otherwise. ``"quiet-sun"``: always the
        quiet-Sun level (limb darkening, if any, stays). ``"none"``: data are
        already in quiet-Sun units; returned unchanged.
    limb_darkened : bool
        False for products with limb darkening already removed
        (``hmi.Ic_noLimbDark_720s``): ``"auto"`` then uses the quiet-Sun level.

    Returns
    -------
    normalised : numpy.ndarray
        float32, same shape; pixels off the fitted disk become NaN with the
        limb-darkening method.
    info : dict
        ``method`` ("limb-darkening-fit", "quiet-sun-median" or "none"),
        ``factor`` (the quiet-Sun intensity at disk centre, or the quiet-Sun
        level, in input units; 1 for "none"), and the fit details.

    References
    ----------
    .. [1] Díaz Baso & Asensio Ramos (2018), A&A 614, A5, Sect. 3.
    .. [2] Neckel & Labs (1994), Sol. Phys. 153, 91.
    """
    if method not in ("auto", "quiet-sun", "none"):
        raise InputError(f"unknown normalisation {method!r}; use auto, quiet-sun or none")
    data = np.asarray(data, dtype=np.float32)
    if method == "none":
        finite = data[np.isfinite(data)]
        median = float(np.median(finite)) if finite.size else float("nan")
        if not 0.5 <= median <= 2.0:
            warnings.warn(
                f"normalisation 'none' takes the image as quiet-Sun units but its median is "
                f"{median:.4g}, far from 1; use 'auto' or 'quiet-sun' unless that is intended",
                NotQuietSunUnitsWarning,
                stacklevel=2,
            )
        return data, {"method": "none", "factor": 1.0}

    if method == "auto" and limb_darkened and has_celestial_wcs(header):
        mu, geometry = disk_mu(header, data.shape)
        coverage = _disk_coverage(mu, data, geometry["radius_px"])
        if coverage >= FULL_DISK_FRACTION:
            fit = fit_limb_darkening(data, mu)
            model = npoly.polyval(np.nan_to_num(mu, nan=0.0), np.asarray(fit["coefficients"]))
            model = model.astype(np.float32)
            model[~np.isfinite(mu)] = np.nan
            with np.errstate(divide="ignore", invalid="ignore"):
                normalised = data / model
            dropped = int(np.count_nonzero(np.isfinite(data) & ~np.isfinite(mu)))
            if dropped:
                log.info("%d finite pixels beyond the limb set to NaN", dropped)
            info = {
                "method": "limb-darkening-fit",
                "law": "I(mu) = sum_k c_k mu^k (Neckel & Labs 1994 form)",
                "factor": fit["i_centre"],
                "degree": LIMB_DEGREE,
                "mu_min": MU_MIN,
                "clip_sigma": CLIP_SIGMA,
                "disk_coverage": coverage,
                **fit,
                **geometry,
            }
            log.info(
                "limb darkening fitted: I(mu=1) = %.6g, residual sigma %.4f, %.1f %% clipped",
                fit["i_centre"],
                fit["residual_sigma"],
                100 * fit["clipped_fraction"],
            )
            return normalised.astype(np.float32, copy=False), info
        log.info(
            "only %.0f %% of the disk in the image: cut-out, quiet-Sun level used",
            100 * coverage,
        )

    level = quiet_sun_level(data)
    info = {"method": "quiet-sun-median", "factor": level, "dark_fraction": DARK_FRACTION}
    log.info("quiet-Sun level %.6g (median of pixels above %.2f of it)", level, DARK_FRACTION)
    return (data / np.float32(level)).astype(np.float32, copy=False), info
