"""World coordinates of HMI frames: north-up rotation and the 2x output grid.

Two header operations live here, both exact (no interpolation):

* :func:`rotate_north_up` turns a level-1.5 HMI frame, which arrives with
  ``CROTA2`` close to 180 degrees, solar north up by a 180-degree array
  rotation and keeps the WCS consistent (``CRPIX``, ``CROTA2``/``PC``/``CD``).
* :func:`upsample_header` describes the grid of an image enhanced by an
  integer factor: same field of view, ``factor`` times more pixels per axis.

References
----------
.. [1] Díaz Baso, C. J. & Asensio Ramos, A. (2018), "Enhancing SDO/HMI images
   using deep learning", A&A 614, A5: the 2x output grid (0.504" -> 0.252").
.. [2] Greisen, E. W. & Calabretta, M. R. (2002), "Representations of world
   coordinates in FITS", A&A 395, 1061: pixel centres at integer 1-based
   coordinates, ``CRPIX``/``CDELT``/``PC``/``CROTA2`` conventions.
.. [3] Thompson, W. T. (2006), "Coordinate systems for solar image data",
   A&A 449, 791: helioprojective ``HPLN``/``HPLT`` axes.
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass

import numpy as np
from astropy.io import fits

from enhance_hmi.errors import ConfigError, InputError, NotNorthUpWarning

__all__ = [
    "NORTH_UP_TOLERANCE_DEG",
    "Rotation",
    "has_celestial_wcs",
    "image_rotation_deg",
    "rotate_north_up",
    "upsample_header",
]

log = logging.getLogger(__name__)

#: Largest departure (degrees) of the image rotation from 180 deg (or 0 deg)
#: for which the frame is treated as "upside down" (or "already north up").
#: HMI level-1.5 frames have CROTA2 = 180 deg to within ~0.1 deg in normal
#: operations; during the twice-yearly SDO roll calibrations the angle takes
#: other values, and such frames are kept unrotated (the WCS carries the
#: angle). The residual angle after a 180 deg flip stays in the WCS, exactly.
NORTH_UP_TOLERANCE_DEG = 5.0

_LINEAR_KEYS = ("PC1_1", "PC1_2", "PC2_1", "PC2_2")
_CD_KEYS = ("CD1_1", "CD1_2", "CD2_1", "CD2_2")


@dataclass(frozen=True)
class Rotation:
    """What :func:`rotate_north_up` did.

    Attributes
    ----------
    angle_in : float or None
        Image rotation (degrees) found in the input header; None without WCS.
    applied : float
        Array rotation applied (degrees, counter-clockwise): 180 or 0.
    angle_out : float or None
        Rotation left in the output header (degrees).
    """

    angle_in: float | None
    applied: float
    angle_out: float | None


def _wrap_deg(angle: float) -> float:
    """Wrap an angle to (-180, 180] degrees."""
    wrapped = math.fmod(angle, 360.0)
    if wrapped <= -180.0:
        wrapped += 360.0
    elif wrapped > 180.0:
        wrapped -= 360.0
    return wrapped


def has_celestial_wcs(header: fits.Header) -> bool:
    """Return True when ``header`` holds a 2-D celestial WCS.

    Helioprojective or other: ``CTYPE1``/``CTYPE2`` and a pixel scale.
    """
    ctypes = (str(header.get("CTYPE1", "")).strip(), str(header.get("CTYPE2", "")).strip())
    if not all(ctypes):
        return False
    has_scale = ("CDELT1" in header and "CDELT2" in header) or all(k in header for k in _CD_KEYS)
    return has_scale


def image_rotation_deg(header: fits.Header) -> float | None:
    """Return the rotation of the image axes with respect to world axes.

    Read from ``CROTA2`` when present, else from the ``PCi_j`` (or ``CDi_j``)
    matrix as ``atan2(M21, M11)`` (positive pixel scales assumed). Returns
    None for headers without a celestial WCS.
    """
    if not has_celestial_wcs(header):
        return None
    if "CROTA2" in header:
        return float(header["CROTA2"])
    for keys in (_LINEAR_KEYS, _CD_KEYS):
        if any(k in header for k in keys):
            m11 = float(header.get(keys[0], 1.0 if keys is _LINEAR_KEYS else 0.0))
            m21 = float(header.get(keys[2], 0.0))
            return math.degrees(math.atan2(m21, m11))
    return 0.0


def rotate_north_up(
    data: np.ndarray,
    header: fits.Header,
    *,
    tolerance_deg: float = NORTH_UP_TOLERANCE_DEG,
) -> tuple[np.ndarray, fits.Header, Rotation]:
    """Rotate an image by 180 degrees when its header says it is upside down.

    When the image rotation (``CROTA2``, or the ``PC``/``CD`` matrix) is within
    ``tolerance_deg`` of 180 degrees the array is turned by 180 degrees
    (``np.rot90(data, 2)``, exact, no interpolation) and the header updated so
    that every pixel keeps its world coordinate:
    ``CRPIXi' = NAXISi + 1 - CRPIXi``, ``CROTA2' = CROTA2 - 180``, and
    ``PC' = -PC`` / ``CD' = -CD`` when those are present. The residual angle
    (about 0.01-0.1 degrees for HMI) stays in the header, so the WCS remains
    exact. Images already within ``tolerance_deg`` of north up, images at
    other angles (SDO roll manoeuvres) and images without WCS are returned
    unchanged: the first with a :class:`~enhance_hmi.errors.NotNorthUpWarning`,
    the second with a log line (no WCS, no orientation to speak of).

    Long for its documentation of the WCS cards it rewrites; the body is one rotation
    and its header update.

    Parameters
    ----------
    data : numpy.ndarray
        2-D image.
    header : astropy.io.fits.Header
        Its header (not modified; a copy is returned).
    tolerance_deg : float
        See :data:`NORTH_UP_TOLERANCE_DEG`.

    Returns
    -------
    data, header, rotation
        The (possibly rotated, contiguous) array, a consistent header copy and
        a :class:`Rotation` record.

    Warns
    -----
    NotNorthUpWarning
        The rotation is neither ~0 nor ~180 degrees: the data stay as they are.

    References
    ----------
    .. [1] Greisen & Calabretta (2002), A&A 395, 1061 (``CROTA2``, ``PC``).
    """
    if data.ndim != 2:
        raise InputError(f"expected a 2-D image, got an array of shape {data.shape}")
    header = header.copy()
    angle = image_rotation_deg(header)
    if angle is None:
        log.info("no celestial WCS in the header: orientation unknown, image kept as is")
        return data, header, Rotation(None, 0.0, None)
    off_180 = _wrap_deg(angle - 180.0)
    if abs(off_180) > tolerance_deg:
        if abs(_wrap_deg(angle)) > tolerance_deg:
            warnings.warn(
                f"image rotation {angle:.3f} deg is neither ~0 nor ~180 deg (SDO roll?): "
                "the data were kept unrotated, so they are not north up; the WCS carries "
                "the angle",
                NotNorthUpWarning,
                stacklevel=2,
            )
        return data, header, Rotation(angle, 0.0, angle)

    ny, nx = data.shape
    rotated = np.ascontiguousarray(np.rot90(data, 2))
    header["CRPIX1"] = nx + 1 - float(header.get("CRPIX1", 0.0))
    header["CRPIX2"] = ny + 1 - float(header.get("CRPIX2", 0.0))
    new_angle = off_180
    if "CROTA2" in header:
        header["CROTA2"] = new_angle
    if "CROTA1" in header:
        header["CROTA1"] = _wrap_deg(float(header["CROTA1"]) - 180.0)
    for keys in (_LINEAR_KEYS, _CD_KEYS):
        present = [k for k in keys if k in header]
        if present:
            defaults = {keys[0]: 1.0, keys[3]: 1.0} if keys is _LINEAR_KEYS else {}
            for key in keys:
                value = float(header.get(key, defaults.get(key, 0.0)))
                header[key] = -value if value != 0.0 else 0.0
    header.add_history(
        f"enhance: array rotated 180 deg to solar north up (CROTA2 {angle:.6f} -> {new_angle:.6f})"
    )
    log.debug("rotated 180 deg: CROTA2 %.6f -> %.6f", angle, new_angle)
    return rotated, header, Rotation(angle, 180.0, new_angle)


def upsample_header(header: fits.Header, factor: int = 2) -> fits.Header:
    """Return the header of the same field of view sampled ``factor`` times finer.

    For each image axis i: ``CDELTi' = CDELTi / factor``,
    ``CRPIXi' = factor * CRPIXi - (factor - 1) / 2`` and
    ``NAXISi' = factor * NAXISi``; ``CDi_j' = CDi_j / factor``. ``PCi_j`` and
    ``CROTA2`` are kept; every other card is copied. With FITS pixel centres at
    integer (1-based) coordinates, the image edge is at coordinate 0.5 on
    both grids and distances from it scale by ``factor``: input coordinate x
    lies at output coordinate X with ``X - 0.5 = factor (x - 0.5)``, which is
    the ``CRPIX`` rule above; for ``factor = 2``, ``X = 2 x - 0.5``.
    ``CRPIX`` is only written when the header has a
    WCS for that axis (``CTYPEi`` or ``CRPIXi``), so bare cut-out headers do
    not gain a spurious coordinate system.

    Parameters
    ----------
    header : astropy.io.fits.Header
        Input header (not modified).
    factor : int
        Integer upsampling factor (>= 1); the network of [1]_ uses 2.

    Returns
    -------
    astropy.io.fits.Header

    References
    ----------
    .. [1] Díaz Baso & Asensio Ramos (2018), A&A 614, A5, Sect. 2: output
       sampled at 0.252"/px from 0.504"/px input.
    .. [2] Greisen & Calabretta (2002), A&A 395, 1061: pixel-centre convention.
    """
    if isinstance(factor, bool) or not isinstance(factor, (int, np.integer)) or factor < 1:
        raise ConfigError(f"factor must be a positive integer, got {factor!r}")
    factor = int(factor)
    out = header.copy()
    naxis = int(header.get("NAXIS", 2)) or 2
    for axis in range(1, min(naxis, 2) + 1):
        if f"NAXIS{axis}" in out:
            out[f"NAXIS{axis}"] = int(out[f"NAXIS{axis}"]) * factor
        if f"CDELT{axis}" in out:
            out[f"CDELT{axis}"] = float(out[f"CDELT{axis}"]) / factor
        if f"CRPIX{axis}" in out or f"CTYPE{axis}" in out:
            crpix = float(out.get(f"CRPIX{axis}", 0.0))
            out[f"CRPIX{axis}"] = factor * crpix - (factor - 1) / 2.0
    for key in _CD_KEYS:
        if key in out:
            out[key] = float(out[key]) / factor
    return out
