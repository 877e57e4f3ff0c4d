"""Image-quality metrics for validating enhanced HMI images.

Every metric takes plain 2-D numpy arrays on the same grid; the comparison
metrics take the image under test first and the reference ("truth", e.g.
Hinode degraded to a 28 cm aperture) second.

The science diagnostics the scores share with the per-frame quality figures
are defined once, in :mod:`enhance_hmi.physics.diagnostics` and
:mod:`enhance_hmi.physics.noise`, and offered here under their names:
:func:`quiet_sun_mask`, :func:`field_mask`, :func:`forward_residual`,
:func:`forward_residual_stats` and :func:`noise_level`
(:func:`enhance_hmi.physics.noise.mad_sigma`).

References
----------
.. [1] Díaz Baso, C. J. & Asensio Ramos, A. (2018), "Enhancing SDO/HMI images
   using deep learning", A&A 614, A5 (Sect. 4: contrast, power spectra,
   1 kG amplification, forward consistency).
.. [2] Wang, Z. et al. (2004), IEEE Trans. Image Process. 13, 600 (SSIM).
"""

from __future__ import annotations

import logging

import astropy.units as u
import numpy as np
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from enhance_hmi.errors import InputError
from enhance_hmi.physics.constants import ENHANCED_PIXEL_SCALE
from enhance_hmi.physics.diagnostics import (
    field_mask,
    forward_residual,
    forward_residual_stats,
    quiet_sun_mask,
)
from enhance_hmi.physics.noise import mad_sigma as noise_level
from enhance_hmi.physics.spectrum import radial_power_spectrum

__all__ = [
    "psnr",
    "ssim",
    "rms_contrast",
    "quiet_sun_mask",
    "power_spectrum",
    "spectrum_band",
    "spectrum_distance",
    "pearson",
    "solar_pixel_area",
    "unsigned_flux",
    "noise_level",
    "forward_residual",
    "forward_residual_stats",
    "FIELD_PIXEL_G",
    "field_mask",
    "field_pixel_mask",
    "field_amplification",
    "umbral_intensity",
]

log = logging.getLogger(__name__)

#: Spatial-frequency band (px^-1 of the enhanced 0.252"/px grid) where the
#: paper compares power spectra [1]_; in arcsec^-1: :func:`spectrum_band`.
SPECTRUM_BAND = (0.05, 0.25)


def _image(image: object, name: str = "image") -> np.ndarray:
    data = np.asarray(image, dtype=np.float64)
    if data.ndim != 2:
        raise InputError(f"{name} must be a 2-D array; got shape {data.shape}")
    if not np.isfinite(data).any():
        raise InputError(f"{name} has no finite pixel; pass an image with valid data")
    return data


def _pair(image: object, truth: object) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    a = _image(image, "image")
    b = _image(truth, "truth")
    if a.shape != b.shape:
        raise InputError(
            f"image {a.shape} and truth {b.shape} differ in shape; resample to one grid first"
        )
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 2:
        raise InputError("image and truth share fewer than 2 finite pixels")
    return a, b, ok


def _range(truth: np.ndarray, ok: np.ndarray, data_range: float | None) -> float:
    if data_range is not None:
        return float(data_range)
    vals = truth[ok]
    return float(vals.max() - vals.min()) or 1.0


def psnr(image: object, truth: object, *, data_range: float | None = None) -> float:
    """Peak signal-to-noise ratio (dB) of ``image`` against ``truth``.

    ``data_range`` defaults to the peak-to-peak range of ``truth``. Pixels that
    are NaN in either image are left out.
    """
    a, b, ok = _pair(image, truth)
    rng = _range(b, ok, data_range)
    if np.all(ok):
        return float(peak_signal_noise_ratio(b, a, data_range=rng))
    mse = float(np.mean((a[ok] - b[ok]) ** 2))
    return float("inf") if mse == 0 else float(10 * np.log10(rng**2 / mse))


def ssim(image: object, truth: object, *, data_range: float | None = None) -> float:
    """Structural similarity [2]_ of ``image`` against ``truth`` (scikit-image).

    NaN pixels are replaced by the median of ``truth`` in both images.
    """
    a, b, ok = _pair(image, truth)
    rng = _range(b, ok, data_range)
    fill = float(np.median(b[ok]))
    a = np.where(ok, a, fill)
    b = np.where(ok, b, fill)
    win = min(7, *(s if s % 2 else s - 1 for s in a.shape))
    if win < 3:
        raise InputError(f"images of shape {a.shape} are too small for SSIM (need >= 3x3)")
    return float(structural_similarity(b, a, data_range=rng, win_size=win))


def pearson(a: object, b: object) -> float:
    """Pearson correlation coefficient over pixels finite in both images."""
    x, y, ok = _pair(a, b)
    x, y = x[ok] - x[ok].mean(), y[ok] - y[ok].mean()
    den = np.sqrt(np.sum(x * x) * np.sum(y * y))
    return float(np.sum(x * y) / den) if den > 0 else float("nan")


def rms_contrast(image: object, mask: np.ndarray | None = None) -> float:
    """RMS contrast std/mean over ``mask`` (all finite pixels by default).

    Returned as a fraction (multiply by 100 for per cent).
    """
    data = _image(image)
    sel = np.isfinite(data) if mask is None else (np.asarray(mask, bool) & np.isfinite(data))
    if sel.sum() < 2:
        raise InputError("rms_contrast needs at least 2 finite pixels inside the mask")
    vals = data[sel]
    return float(vals.std() / vals.mean())


def power_spectrum(
    image: object,
    *,
    pixel_scale: u.Quantity = ENHANCED_PIXEL_SCALE,
    pad: int = 3,
    standardise: bool = True,
) -> tuple[u.Quantity, u.Quantity]:
    """Azimuthally averaged power spectrum as the paper compares them [1]_.

    The image is standardised ((img - median) / std, NaN left out) unless
    ``standardise`` is False, zero-padded to ``pad`` times its size without
    a window, and turned into a power spectral density per unit solar area
    by :func:`enhance_hmi.physics.spectrum.radial_power_spectrum` (its docstring
    derives the convention): frequency in arcsec^-1, power per arcsec^-2 of
    frequency, so images of one field at different pixel scales lie on one
    scale.

    Parameters
    ----------
    image : array_like
        2-D image.
    pixel_scale : astropy.units.Quantity
        Its pixel size; the validation images are on the enhanced
        0.252"/px grid (:data:`enhance_hmi.physics.ENHANCED_PIXEL_SCALE`).
    pad : int
        Zero padding factor (finer annuli).
    standardise : bool
        Divide by the image's standard deviation first: the spectral shape
        :func:`spectrum_distance` compares, in arcsec^2. False: in the
        image's units squared times arcsec^2.

    Returns
    -------
    freq : astropy.units.Quantity
        Spatial frequency, arcsec^-1 (one step to the Nyquist frequency).
    power : astropy.units.Quantity
        Mean density in each annulus, arcsec^2 (times the image's units
        squared unless standardised).

    References
    ----------
    .. [1] Díaz Baso & Asensio Ramos (2018), A&A 614, A5, Sect. 4.
    """
    data = _image(image)
    if standardise:
        ok = np.isfinite(data)
        std = float(data[ok].std())
        data = (data - float(np.median(data[ok]))) / (std if std > 0 else 1.0)
    return radial_power_spectrum(data, pixel_scale, window=False, pad=pad)


def spectrum_band(pixel_scale: u.Quantity = ENHANCED_PIXEL_SCALE) -> u.Quantity:
    """:data:`SPECTRUM_BAND` (px^-1) in arcsec^-1 for pixels of ``pixel_scale``.

    At the enhanced 0.252"/px, 0.05-0.25 px^-1 is 0.198-0.992 arcsec^-1:
    granules (about 1-2") down to the 28 cm diffraction limit.
    """
    return np.asarray(SPECTRUM_BAND) / u.Quantity(pixel_scale).to(u.arcsec)


def spectrum_distance(
    image: object,
    truth: object,
    *,
    pixel_scale: u.Quantity = ENHANCED_PIXEL_SCALE,
    band: tuple[float, float] = SPECTRUM_BAND,
) -> float:
    """Mean ``|log10 P_image - log10 P_truth|`` over ``band`` (px^-1 of ``pixel_scale``).

    Both spectra are standardised (:func:`power_spectrum`): the distance
    compares spectral shapes. 0 means identical spectral shape in the band;
    0.3 is a factor 2 in power.
    """
    f, p = power_spectrum(image, pixel_scale=pixel_scale)
    f2, q = power_spectrum(truth, pixel_scale=pixel_scale)
    if f.shape != f2.shape:
        raise InputError("spectrum_distance needs images of the same shape")
    lo, hi = (np.asarray(band) / u.Quantity(pixel_scale).to(u.arcsec)).to_value(1 / u.arcsec)
    freq, p, q = f.to_value(1 / u.arcsec), p.value, q.value
    sel = (freq >= lo * (1 - 1e-12)) & (freq <= hi * (1 + 1e-12)) & (p > 0) & (q > 0)
    if not sel.any():
        raise InputError(f"no frequency of the spectrum falls in the band {band} px^-1")
    return float(np.mean(np.abs(np.log10(p[sel]) - np.log10(q[sel]))))


def solar_pixel_area(scale: u.Quantity) -> u.Quantity:
    """Area on the Sun of one pixel of angular size ``scale`` seen from 1 AU, in km^2.

    Uses :data:`enhance_hmi.physics.SOLAR_KM_PER_ARCSEC`; the area
    :func:`unsigned_flux` takes for an HMI pixel is ``solar_pixel_area(HMI_PIXEL_SCALE)``.
    """
    from enhance_hmi.physics import SOLAR_KM_PER_ARCSEC

    return (u.Quantity(scale).to(u.arcsec) * SOLAR_KM_PER_ARCSEC).to(u.km) ** 2


def unsigned_flux(blos: object, pixel_area: u.Quantity) -> u.Quantity:
    """Total unsigned flux ``sum(|B|)`` x pixel area, in Mx.

    ``blos`` is in G (or a Quantity convertible to G); ``pixel_area`` is an
    area Quantity (e.g. ``(0.252 * 725 * u.km) ** 2``). NaN pixels are skipped.
    """
    b = blos.to_value(u.G) if isinstance(blos, u.Quantity) else blos
    data = _image(b, "blos")
    area = u.Quantity(pixel_area).to(u.cm**2)
    return (np.nansum(np.abs(data)) * u.G * area).to(u.Mx)


#: Input ``|B|`` (G) above which a pixel counts as a field pixel for the forward
#: residual: a threshold that needs no noise estimate, so it also applies
#: where the field of view holds no quiet Sun (unlike :func:`field_mask`).
FIELD_PIXEL_G = 100.0


def field_pixel_mask(blos: object, *, threshold_g: float = FIELD_PIXEL_G) -> np.ndarray:
    """Pixels of a magnetogram above a field strength.

    Parameters
    ----------
    blos : array_like
        Blos in gauss (2-D).
    threshold_g : float
        Field strength in gauss.

    Returns
    -------
    numpy.ndarray of bool
        Finite pixels with ``|B| > threshold_g``.
    """
    data = _image(blos, "blos")
    mask: np.ndarray = np.isfinite(data) & (np.abs(np.nan_to_num(data)) > threshold_g)
    return mask


def field_amplification(
    enhanced: object,
    reference: object,
    *,
    around: u.Quantity = 1000 * u.G,
    width: float = 0.2,
) -> float:
    """Amplification of fields near ``around``: mean ``|B_enh|`` / mean ``|B_ref|``.

    Pixels where ``|B_ref|`` lies within ``around`` x (1 +/- ``width``) are used;
    the paper finds x1.3-1.4 near 1 kG [1]_. ``enhanced`` and ``reference``
    must be on the same grid. Returns NaN when no pixel is selected.

    References
    ----------
    .. [1] Díaz Baso & Asensio Ramos (2018), A&A 614, A5, Sect. 4.
    """
    a, b, ok = _pair(enhanced, reference)
    level = u.Quantity(around).to_value(u.G)
    sel = ok & (np.abs(np.abs(b) - level) <= width * level)
    if not sel.any():
        return float("nan")
    return float(np.mean(np.abs(a[sel])) / np.mean(np.abs(b[sel])))


def umbral_intensity(image: object, *, threshold: float = 0.5) -> float:
    """Mean intensity of umbral pixels (< ``threshold`` x quiet-Sun median).

    Returned relative to the quiet-Sun median; NaN when there is no umbra.
    """
    data = _image(image)
    med = float(np.median(data[quiet_sun_mask(data)]))
    with np.errstate(invalid="ignore"):
        sel = data < threshold * med
    return float(np.mean(data[sel]) / med) if sel.any() else float("nan")
