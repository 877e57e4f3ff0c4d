"""Image-quality metrics for validating enhanced HMI images.

Every metric takes plain 2-D numpy arrays on the same grid; the comparison
metrics take the image under test first and the reference ("truth", e.g.
Hinode degraded to a 28 cm aperture) second.

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
from scipy import ndimage
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from enhance_hmi.errors import InputError
from enhance_hmi.physics.constants import ENHANCED_PIXEL_SCALE
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


def quiet_sun_mask(
    image: object,
    *,
    kind: str = "continuum",
    dark_fraction: float = 0.85,
    bright_fraction: float = 1.1,
    field_threshold: float = 50.0,
    margin: int = 5,
    smooth: float = 2.0,
    fallback: bool = True,
) -> np.ndarray:
    """Automatic quiet-Sun mask (True = quiet Sun).

    For continuum images, pixels darker than ``dark_fraction`` x median
    (umbra and penumbra) or brighter than ``bright_fraction`` x median (flares,
    bright faculae) are excluded, then the excluded regions are grown by
    ``margin`` pixels (binary dilation with a 3x3 square, i.e. a Chebyshev
    margin) so that the penumbral edge and the moat do not leak into the
    quiet-Sun statistics. The thresholds are applied to the image smoothed by
    a Gaussian of ``smooth`` pixels, so that dark intergranular lanes (the
    28 cm granulation contrast is ~7 % [1]_) are not mistaken for penumbra. For magnetograms
    (``kind="blos"``) pixels with ``|B| > field_threshold`` G (network, plage,
    spots) are excluded and grown by ``margin``. NaN pixels are never quiet.
    The mask falls back to all finite pixels (with a log message) when it
    would keep fewer than 5 % of them; with ``fallback=False`` it is then
    all False instead (no quiet Sun), for figures that mean quiet Sun only.

    References
    ----------
    .. [1] Díaz Baso & Asensio Ramos (2018), A&A 614, A5, Sect. 4 (quiet-Sun
       contrast of granulation).
    """
    data = _image(image)
    finite = np.isfinite(data)
    if kind == "continuum":
        med = float(np.median(data[finite]))
        filled = np.where(finite, data, med)
        if smooth > 0:
            filled = ndimage.gaussian_filter(filled, smooth, mode="mirror")
        active = (filled < dark_fraction * med) | (filled > bright_fraction * med)
    elif kind == "blos":
        with np.errstate(invalid="ignore"):
            active = np.abs(data) > field_threshold
    else:
        raise InputError(f"quiet_sun_mask kind must be 'continuum' or 'blos'; got {kind!r}")
    if margin > 0 and active.any():
        active = ndimage.binary_dilation(
            active, structure=np.ones((3, 3), bool), iterations=int(margin)
        )
    mask = finite & ~active
    if mask.sum() < 0.05 * finite.sum():
        if not fallback:
            return np.zeros_like(finite)
        log.info("quiet-Sun mask keeps < 5%% of pixels; using all finite pixels")
        mask = finite
    return mask


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


def noise_level(blos: object, mask: np.ndarray | None = None) -> float:
    """Robust standard deviation 1.4826 x MAD over ``mask`` (quiet areas)."""
    data = _image(blos, "blos")
    sel = np.isfinite(data) if mask is None else (np.asarray(mask, bool) & np.isfinite(data))
    if sel.sum() < 2:
        raise InputError("noise_level needs at least 2 finite pixels inside the mask")
    vals = data[sel]
    return float(1.4826 * np.median(np.abs(vals - np.median(vals))))


def forward_residual(enhanced: object, observed: object, *, psf_model: str = "wachter") -> float:
    """Relative forward-consistency residual over the whole field.

    ``rms(R(enhanced) - observed) / std(observed)``, where ``R`` is HMI's
    view of the enhanced 28 cm image (:func:`enhance_hmi.physics.transfer.reobserve_target`:
    the kernel with HMI's transfer function over the 28 cm one, then 2x2
    binning), compared with the input. A 28 cm image that is right meets
    the input within its noise; the full HMI PSF would blur it by the 28 cm
    aperture a second time. The
    denominator is the rms of the input's deviation from its mean, not the
    rms including the mean, which for continuum images (mean 1, contrast a
    few per cent) would hide a ~25x larger residual. The paper finds 2-4 %
    with its own normalisation [1]_. :func:`forward_residual_stats` gives
    the same residual in the data's units and in units of the input noise,
    per region.

    References
    ----------
    .. [1] Díaz Baso & Asensio Ramos (2018), A&A 614, A5, Sect. 4.
    """
    return forward_residual_stats(enhanced, observed, psf_model=psf_model)["relative"]


def forward_residual_stats(
    enhanced: object,
    observed: object,
    *,
    noise: float | None = None,
    field: np.ndarray | None = None,
    quiet: np.ndarray | None = None,
    field_pixels: np.ndarray | None = None,
    psf_model: str = "wachter",
    border: int = 0,
) -> dict[str, float | None]:
    """The one forward-consistency residual, in data units, noise units and relative.

    Parameters
    ----------
    enhanced : array_like
        Enhanced image at 0.252"/px.
    observed : array_like
        The input at 0.504"/px.
    noise : float, optional
        Input noise (same units) for the ``*_in_noise`` figures.
    field, quiet, field_pixels : numpy.ndarray of bool, optional
        Region masks on the input grid (e.g. :func:`field_mask`,
        :func:`quiet_sun_mask` and :func:`field_pixel_mask`).
    psf_model : str
    border : int
        Input pixels left out at each edge of the rms (the re-observation
        still uses the whole field); the scores of the validation reports
        drop ``border // 2`` input pixels, the same area as their ``border``
        enhanced pixels.

    Returns
    -------
    dict
        ``rms`` (whole field, data units), ``rms_field``, ``rms_quiet``,
        ``rms_field_pixels``, the same divided by ``noise`` as
        ``rms_in_noise``, ``rms_field_in_noise``, ``rms_quiet_in_noise``,
        ``rms_field_pixels_in_noise``, ``relative``
        (``rms / std(observed)``) and ``noise``. A region with fewer than
        4 finite pixels, or a missing mask or noise, gives None.
    """
    from enhance_hmi.physics.transfer import reobserve_target

    obs = _image(observed, "observed")
    back = reobserve_target(_image(enhanced, "enhanced"), psf_model=psf_model)
    if back.shape != obs.shape:
        raise InputError(
            f"re-observed enhanced image {back.shape} does not match the observed {obs.shape}"
        )
    ok = np.isfinite(back) & np.isfinite(obs)
    if border < 0 or 2 * border >= min(obs.shape):
        raise InputError(f"border {border} leaves nothing of the {obs.shape} input")
    if border:
        inner = np.zeros_like(ok)
        inner[border:-border, border:-border] = True
        ok &= inner
    diff = back - obs

    def rms(mask: np.ndarray | None) -> float | None:
        if mask is None:
            return None
        sel = ok & np.asarray(mask, bool)
        return float(np.sqrt(np.mean(diff[sel] ** 2))) if sel.sum() >= 4 else None

    out: dict[str, float | None] = {
        "rms": rms(ok),
        "rms_field": rms(field),
        "rms_quiet": rms(quiet),
        "rms_field_pixels": rms(field_pixels),
        "noise": None if noise is None else float(noise),
    }
    for key in ("rms", "rms_field", "rms_quiet", "rms_field_pixels"):
        value = out[key]
        out[f"{key}_in_noise"] = (
            value / float(noise) if value is not None and noise and noise > 0 else None
        )
    spread = float(np.std(obs[ok])) if ok.sum() >= 4 else 0.0
    out["relative"] = out["rms"] / spread if out["rms"] is not None and spread > 0 else None
    if out["relative"] is None:
        out["relative"] = float("nan")
    return out


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
    return np.isfinite(data) & (np.abs(np.nan_to_num(data)) > threshold_g)


def field_mask(blos: object, noise: float, *, snr: float = 5.0, grow: int = 2) -> np.ndarray:
    """Pixels with magnetic signal: ``|B|`` smoothed by 1 px above ``snr`` x noise, grown.

    Unsigned flux summed over every pixel of a magnetogram is dominated in
    quiet areas by the noise (mean ``|noise|`` = 0.8 sigma per pixel), which a
    network that denoises removes. Flux conservation and the forward
    residual of field regions are therefore measured over the field regions
    found in the input (a Gaussian of 1 px, a ``snr`` threshold, ``grow``
    pixels of dilation), on the same footprint in input and output.
    """
    data = _image(blos, "blos")
    smooth = np.abs(ndimage.gaussian_filter(np.nan_to_num(data), 1.0))
    return ndimage.binary_dilation(smooth > snr * noise, iterations=grow) & np.isfinite(data)


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
