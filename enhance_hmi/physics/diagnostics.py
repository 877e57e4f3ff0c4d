"""The science diagnostics of an enhanced image: quiet Sun, field regions, forward residual.

One definition each, in numpy and scipy, for every layer that measures an
image: the per-frame quality figures (:mod:`enhance_hmi.io.frame_quality`),
the validation scores (:mod:`enhance_hmi.validation.metrics`) and the noise
estimates (:mod:`enhance_hmi.physics.noise`). The torch mirrors that compute
the same figures on a GPU (:mod:`enhance_hmi.inference.device_quality`,
:mod:`enhance_hmi.inference.device_noise`) follow these definitions and are
tested against them.

* :func:`quiet_sun_mask`: the quiet Sun of a continuum image (smoothed
  intensity within a band around the median, grown away from spots and
  faculae) or of a magnetogram (smoothed ``|B|`` below a threshold, grown
  away from field);
* :func:`field_mask`: the field regions of a magnetogram, ``|B|`` above a
  multiple of the noise;
* :func:`forward_residual_stats`: HMI's view of the enhanced image
  (:func:`enhance_hmi.physics.transfer.reobserve_target`, the forward
  operator) minus the input, rms over regions, in data units, in units of
  the input noise and relative to the input's spread [1]_.

References
----------
.. [1] Díaz Baso, C. J. & Asensio Ramos, A. (2018), "Enhancing SDO/HMI images
   using deep learning", A&A 614, A5, Sect. 4 (granulation contrast, field
   amplification, forward consistency).
"""

from __future__ import annotations

import logging

import numpy as np
from scipy import ndimage

from enhance_hmi.errors import InputError
from enhance_hmi.physics.psf import DEFAULT_PSF_MODEL
from enhance_hmi.physics.transfer import reobserve_target

__all__ = [
    "FIELD_SNR",
    "QUIET_SUN_FIELD_G",
    "QUIET_SUN_MIN_FRACTION",
    "QUIET_SUN_RANGE",
    "field_mask",
    "forward_residual",
    "forward_residual_stats",
    "quiet_sun_mask",
    "usable_pixels",
]

log = logging.getLogger(__name__)

#: Quiet-Sun continuum: smoothed intensity within these fractions of the
#: median. Below lie penumbrae and umbrae, above bright faculae and flares;
#: the 28 cm granulation (rms contrast ~7 % [1]_) stays inside once smoothed.
QUIET_SUN_RANGE = (0.85, 1.1)
#: Quiet-Sun magnetogram: ``|B|`` (G) above which a pixel is network, plage or spot.
QUIET_SUN_FIELD_G = 50.0
#: A quiet-Sun mask keeping fewer than this fraction of the usable pixels
#: falls back (:func:`quiet_sun_mask`).
QUIET_SUN_MIN_FRACTION = 0.05
#: Field regions of a magnetogram: smoothed ``|B|`` above this many noise sigmas.
FIELD_SNR = 5.0


def _image(image: object, name: str, *, keep_float: bool = False) -> np.ndarray:
    """``image`` as a 2-D float array with a finite pixel (float32 kept if ``keep_float``)."""
    data = np.asarray(image)
    if not (keep_float and data.dtype.kind == "f"):
        data = np.asarray(data, dtype=np.float64)
    if data.ndim != 2:
        raise InputError(f"{name} must be a 2-D array; got shape {data.shape}")
    if not np.isfinite(data).any():
        raise InputError(f"{name} has no finite pixel; pass an image with valid data")
    return data


def usable_pixels(data: np.ndarray, region: np.ndarray | None) -> np.ndarray:
    """Finite pixels of ``data`` inside ``region`` (every finite pixel without one).

    Raises
    ------
    InputError
        ``region`` is not of ``data``'s shape.
    """
    finite: np.ndarray = np.isfinite(data)
    if region is None:
        return finite
    inside = np.asarray(region, dtype=bool)
    if inside.shape != data.shape:
        raise InputError(f"region {inside.shape} does not match the image {data.shape}")
    usable: np.ndarray = finite & inside
    return usable


def quiet_sun_mask(
    image: object,
    *,
    kind: str = "continuum",
    region: np.ndarray | None = None,
    dark_fraction: float = QUIET_SUN_RANGE[0],
    bright_fraction: float = QUIET_SUN_RANGE[1],
    field_threshold: float = QUIET_SUN_FIELD_G,
    field_zero: float = 0.0,
    smooth: float | None = None,
    margin: int = 5,
    min_fraction: float = QUIET_SUN_MIN_FRACTION,
    fallback: bool = True,
) -> np.ndarray:
    """The quiet Sun of an image (True = quiet Sun): the one definition.

    Continuum (``kind="continuum"``): pixels whose intensity, smoothed by a
    Gaussian of ``smooth`` pixels (default 2; scipy's "mirror" edges,
    unusable pixels filled with the median), lies below ``dark_fraction``
    (umbra, penumbra) or above ``bright_fraction`` (bright faculae,
    flares) times the median of the usable pixels are active. The
    smoothing keeps the dark intergranular lanes (the 28 cm granulation
    contrast is ~7 % [1]_) from being taken for penumbra.

    Magnetogram (``kind="blos"``): pixels whose ``|B - field_zero|``,
    smoothed by ``smooth`` pixels (default 0: not smoothed; scipy's
    "reflect" edges, unusable pixels counted as ``field_zero``), exceeds
    ``field_threshold`` are active: network, plage and spots at the default
    50 G; with a threshold of a few noise sigmas and the image's median as
    ``field_zero``, every pixel with a signal above the noise
    (:func:`enhance_hmi.physics.noise.quiet_sun_fraction`).

    The active pixels are then grown by ``margin`` pixels (binary dilation
    with a 3x3 square, a Chebyshev margin) so that penumbral edges, moats
    and the fringes of field do not leak into quiet-Sun statistics. NaN
    pixels and pixels outside ``region`` are never quiet.

    Parameters
    ----------
    image : array_like
        2-D image; a float32 image is measured in float32 (the enhanced
        images are), anything else in float64.
    kind : {"continuum", "blos"}
    region : numpy.ndarray of bool, optional
        The pixels that count (e.g. the disk,
        :func:`enhance_hmi.physics.disk.constraint_region`); default every
        finite pixel.
    dark_fraction, bright_fraction : float
        Continuum band, in units of the median (:data:`QUIET_SUN_RANGE`).
    field_threshold : float
        Magnetogram threshold in the image's units (gauss;
        :data:`QUIET_SUN_FIELD_G`).
    field_zero : float
        The field value of no field (magnetograms).
    smooth : float, optional
        Gaussian sigma in pixels; default 2 for continuum, 0 for magnetograms.
    margin : int
        Pixels the active regions are grown by.
    min_fraction : float
        When fewer than this fraction of the usable pixels are quiet, the
        mask falls back: to every usable pixel (``fallback=True``, with a
        log message), or to no pixel (``fallback=False``, for figures that
        mean quiet Sun only). 0 never falls back.
    fallback : bool

    Returns
    -------
    numpy.ndarray of bool
        ``image``'s shape.

    Raises
    ------
    InputError
        Not 2-D, no finite pixel, a ``region`` of another shape, or an
        unknown ``kind``.

    References
    ----------
    .. [1] Díaz Baso & Asensio Ramos (2018), A&A 614, A5, Sect. 4 (quiet-Sun
       contrast of granulation).
    """
    data = _image(image, "image", keep_float=True)
    usable = usable_pixels(data, region)
    if not usable.any():
        raise InputError("the quiet-Sun mask needs finite pixels inside the region")
    if kind == "continuum":
        median = float(np.median(data[usable]))
        filled = np.where(usable, data, median)
        sigma = 2.0 if smooth is None else smooth
        if sigma > 0:
            filled = ndimage.gaussian_filter(filled, sigma, mode="mirror")
        active = (filled < dark_fraction * median) | (filled > bright_fraction * median)
    elif kind == "blos":
        deviation = np.where(usable, data - field_zero, 0.0)
        if smooth:
            deviation = ndimage.gaussian_filter(deviation, smooth)
        active = np.abs(deviation) > field_threshold
    else:
        raise InputError(f"quiet_sun_mask kind must be 'continuum' or 'blos'; got {kind!r}")
    if margin > 0 and active.any():
        active = ndimage.binary_dilation(
            active, structure=np.ones((3, 3), bool), iterations=int(margin)
        )
    mask: np.ndarray = usable & ~active
    if mask.sum() < min_fraction * usable.sum():
        if not fallback:
            return np.zeros_like(usable)
        log.info(
            "quiet-Sun mask keeps < %g%% of pixels; using all finite pixels", 100 * min_fraction
        )
        mask = usable
    return mask


def field_mask(
    blos: object,
    noise: float,
    *,
    snr: float = FIELD_SNR,
    grow: int = 2,
    region: np.ndarray | None = None,
) -> np.ndarray:
    """Pixels with magnetic signal: ``|B|`` smoothed by 1 px above ``snr`` x noise, grown.

    Unsigned flux summed over every pixel of a magnetogram is dominated in
    quiet areas by the noise (mean ``|noise|`` = 0.8 sigma per pixel), which
    a network that denoises removes. Flux conservation and the forward
    residual of field regions are therefore measured over the field
    regions found in the input: a Gaussian of 1 px (unusable pixels counted
    as 0 G), a ``snr`` threshold, ``grow`` pixels of dilation (scipy's
    cross), on the same footprint in input and output.

    Parameters
    ----------
    blos : array_like
        2-D magnetogram (any units; ``noise`` in the same).
    noise : float
        Its noise sigma.
    snr : float
        Threshold in noise sigmas (:data:`FIELD_SNR`).
    grow : int
        Dilation iterations.
    region : numpy.ndarray of bool, optional
        The pixels that count; default every finite pixel.

    Returns
    -------
    numpy.ndarray of bool
        Usable pixels in field regions.
    """
    data = _image(blos, "blos")
    usable = usable_pixels(data, region)
    smooth = np.abs(ndimage.gaussian_filter(np.where(usable, data, 0.0), 1.0))
    grown = ndimage.binary_dilation(smooth > snr * noise, iterations=grow)
    field: np.ndarray = grown & usable
    return field


def inside(valid: np.ndarray, *, border: int, region: np.ndarray | None = None) -> np.ndarray:
    """``valid`` without ``border`` pixels at each edge and outside ``region``.

    The pixels a comparison with the input may use: at the edges the
    forward operator sees the image's mirror image, not the Sun, and
    ``region`` (:func:`enhance_hmi.physics.disk.constraint_region`) keeps
    the disk.

    Raises
    ------
    InputError
        A border that leaves nothing of the image.
    """
    if border < 0 or 2 * border >= min(valid.shape):
        raise InputError(f"border {border} leaves nothing of the {valid.shape} input")
    valid = np.array(valid, dtype=bool)
    if border:
        inner = np.zeros_like(valid)
        inner[border:-border, border:-border] = True
        valid &= inner
    if region is not None:
        valid &= np.asarray(region, dtype=bool)
    return valid


def forward_residual_stats(
    enhanced: object,
    observed: object,
    *,
    noise: float | None = None,
    field: np.ndarray | None = None,
    quiet: np.ndarray | None = None,
    field_pixels: np.ndarray | None = None,
    region: np.ndarray | None = None,
    psf_model: str = DEFAULT_PSF_MODEL,
    border: int = 0,
    min_pixels: int = 4,
    reobserved: np.ndarray | None = None,
) -> dict[str, float | None]:
    """The forward residual, in data units, in noise units and relative: the one definition.

    ``R(enhanced) - observed``, where ``R`` is HMI's view of the enhanced
    28 cm image (:func:`enhance_hmi.physics.transfer.reobserve_target`: the
    kernel with HMI's transfer function over the 28 cm one, then 2x2
    binning). A 28 cm image that is right meets the input within its noise
    [1]_; the full HMI PSF would blur it by the 28 cm aperture a second
    time.

    Parameters
    ----------
    enhanced : array_like
        Enhanced image at 0.252"/px.
    observed : array_like
        The input at 0.504"/px.
    noise : float, optional
        Input noise (same units) for the ``*_in_noise`` figures.
    field, quiet, field_pixels : numpy.ndarray of bool, optional
        Region masks on the input grid (e.g. :func:`field_mask` and
        :func:`quiet_sun_mask`).
    region : numpy.ndarray of bool, optional
        The input pixels that count at all (e.g. the disk within
        :data:`enhance_hmi.physics.disk.CONSTRAINED_RADIUS`); default all.
    psf_model : str
        HMI PSF model of ``R``.
    border : int
        Input pixels left out at each edge (the re-observation still uses
        the whole field, mirrored beyond its edges).
    min_pixels : int
        Fewest pixels a region needs for its figure.
    reobserved : numpy.ndarray, optional
        ``R(enhanced)`` when the caller has computed it (e.g. on a GPU,
        :func:`enhance_hmi.inference.forward_model.reobserve_target_on`);
        ``enhanced`` is then not re-observed again.

    Returns
    -------
    dict
        ``rms`` (every pixel that counts, data units), ``rms_field``,
        ``rms_quiet``, ``rms_field_pixels``, the same divided by ``noise``
        as ``rms_in_noise``, ``rms_field_in_noise``, ``rms_quiet_in_noise``,
        ``rms_field_pixels_in_noise``, ``relative`` (``rms`` over the
        standard deviation of ``observed`` there; NaN when not measurable)
        and ``noise``. A region with fewer than ``min_pixels`` finite
        pixels, or a missing mask or noise (or a noise that is not
        positive), gives None. ``relative`` divides by the spread of the
        input, not by its rms including the mean, which for continuum
        images (mean 1, contrast a few per cent) would hide a ~25x larger
        residual; the paper finds 2-4 % with its own normalisation [1]_.

    Raises
    ------
    InputError
        Not 2-D images with a finite pixel, shapes that do not match 2:1,
        or a ``border`` that leaves nothing.

    References
    ----------
    .. [1] Díaz Baso & Asensio Ramos (2018), A&A 614, A5, Sect. 4.
    """
    obs = _image(observed, "observed")
    if reobserved is None:
        back = reobserve_target(_image(enhanced, "enhanced"), psf_model=psf_model)
    else:
        back = np.asarray(reobserved, dtype=np.float64)
    if back.shape != obs.shape:
        raise InputError(
            f"re-observed enhanced image {back.shape} does not match the observed {obs.shape}"
        )
    ok = inside(np.isfinite(back) & np.isfinite(obs), border=border, region=region)
    diff = back - obs

    def rms(mask: np.ndarray | None) -> float | None:
        if mask is None:
            return None
        sel = ok & np.asarray(mask, bool)
        return float(np.sqrt(np.mean(diff[sel] ** 2))) if sel.sum() >= min_pixels else None

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
    spread = float(np.std(obs[ok])) if ok.sum() >= min_pixels else 0.0
    whole = out["rms"]
    out["relative"] = whole / spread if whole is not None and spread > 0 else float("nan")
    return out


def forward_residual(
    enhanced: object, observed: object, *, psf_model: str = DEFAULT_PSF_MODEL
) -> float:
    """Relative forward residual over the whole field: ``rms(R x - y) / std(y)``.

    The ``relative`` figure of :func:`forward_residual_stats`, which gives
    the same residual in the data's units and in units of the input noise,
    per region.
    """
    relative = forward_residual_stats(enhanced, observed, psf_model=psf_model)["relative"]
    return float("nan") if relative is None else relative
