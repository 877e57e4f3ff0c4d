"""Plausibility checks on an input frame, run before any compute is spent on it.

The network was trained for one observable, in one unit, on one pixel grid;
an image outside those is enhanced into something that looks like a product
and is not. The checks here turn such inputs into one-line
:class:`~enhance_hmi.errors.InputError` messages that name the file and say what
to do, and keep unusable pixels out of the product:

* pixel values: non-finite pixels and float fill values (|x| >= 1e30, e.g.
  3.4e38) are masked (NaN) and counted, never passed on (:func:`mask_unusable`);
* units: a magnetogram's ``BUNIT`` is converted to gauss (kG, T, Mx/cm^2) or
  refused (:func:`gauss_per_unit`);
* data range: a magnetogram with more than :data:`MAX_IMPLAUSIBLE_FRACTION`
  of its pixels beyond :data:`MAX_PLAUSIBLE_BLOS`, or a continuum image with
  that many negative pixels or pixels above :data:`MAX_PLAUSIBLE_CONTINUUM`
  quiet-Sun units, is refused; fewer such pixels are masked and counted
  (:func:`check_value_range`);
* pixel scale: the frame's header scale must be within
  :data:`PIXEL_SCALE_TOLERANCE` of the scale the network was trained for
  (:func:`check_pixel_scale`).

Each check has an explicit way out for a user who knows better (``--no-range-check``,
``--no-scale-check`` on ``enhance predict``; keyword options in the API).

References
----------
.. [1] Díaz Baso, C. J. & Asensio Ramos, A. (2018), A&A 614, A5: the networks
   work on HMI's 0.504"/px grid, continuum in quiet-Sun units, Blos in kG.
.. [2] Livingston, W., Harvey, J. W., Malanushenko, O. V. & Webster, L. (2006),
   "Sunspots with the strongest magnetic fields", Sol. Phys. 239, 41: the
   strongest sunspot fields measured in a century are ~6.1 kG.
.. [3] Pence, W. D. et al. (2010), A&A 524, A42: FITS ``CDELTi``, ``CUNITi``
   (degrees by default for celestial axes), ``PCi_j``, ``CDi_j``.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits

from enhance_hmi.errors import InputError

__all__ = [
    "FILL_VALUE_LIMIT",
    "MAX_IMPLAUSIBLE_FRACTION",
    "MAX_PLAUSIBLE_BLOS",
    "MAX_PLAUSIBLE_CONTINUUM",
    "PIXEL_SCALE_TOLERANCE",
    "check_pixel_scale",
    "check_value_range",
    "gauss_per_unit",
    "mask_unusable",
    "pixel_scale_arcsec",
]

#: Pixels with ``|value| >= FILL_VALUE_LIMIT`` are fill values (float32
#: maximum 3.4e38, IDL/JSOC missing-data conventions), not measurements in
#: any unit an HMI image is stored in.
FILL_VALUE_LIMIT = 1e30
#: Largest plausible |Blos| in gauss: well above the strongest sunspot fields
#: ever measured (~6.1 kG, Livingston et al. 2006 [2]_), so a value beyond it
#: is a wrong unit, a wrong observable or a damaged pixel.
MAX_PLAUSIBLE_BLOS = 10_000.0
#: Largest plausible continuum intensity in quiet-Sun units: faculae reach
#: ~1.1-1.3 and white-light flares add a few percent, so 10 is damage.
MAX_PLAUSIBLE_CONTINUUM = 10.0
#: More implausible pixels than this fraction of the finite ones and the
#: whole image is refused (wrong observable or unit); fewer are masked.
MAX_IMPLAUSIBLE_FRACTION = 0.01
#: Relative difference allowed between the frame's pixel scale and the
#: network's training scale (HMI's own CDELT varies by ~0.1 %).
PIXEL_SCALE_TOLERANCE = 0.05

# BUNIT spellings (upper case) of magnetic flux density, in gauss. Upper-case
# 'KG' is read as kilogauss here: no magnetogram is in kilograms.
_GAUSS_PER_UNIT = {
    "": 1.0,
    "G": 1.0,
    "GAUSS": 1.0,
    "MX/CM2": 1.0,
    "MX/CM^2": 1.0,
    "MX CM-2": 1.0,
    "MX.CM-2": 1.0,
    "KG": 1000.0,
    "KGAUSS": 1000.0,
    "KILOGAUSS": 1000.0,
    "T": 1e4,
    "TESLA": 1e4,
}
_ARCSEC_PER_UNIT = {"ARCSEC": 1.0, "ASEC": 1.0, "ARCMIN": 60.0, "DEG": 3600.0, "RAD": 206264.806}


def _name(path: str | os.PathLike[str] | None) -> str:
    return Path(path).name if path else "the input"


def mask_unusable(data: np.ndarray) -> tuple[np.ndarray, dict[str, int]]:
    """Set infinite pixels and fill values to NaN; count what was there.

    Parameters
    ----------
    data : numpy.ndarray
        float32 image; changed in place and returned.

    Returns
    -------
    data, counts
        ``counts`` has ``nan`` (pixels NaN in the input: off-disk, BLANK),
        ``infinite`` and ``fill`` (``|value| >= FILL_VALUE_LIMIT``) pixels;
        the last two are now NaN as well.
    """
    nan = np.isnan(data)
    infinite = np.isinf(data)
    with np.errstate(invalid="ignore"):
        fill = np.isfinite(data) & (np.abs(data) >= FILL_VALUE_LIMIT)
    data[infinite | fill] = np.nan
    counts = {
        "nan": int(nan.sum()),
        "infinite": int(infinite.sum()),
        "fill": int(fill.sum()),
    }
    return data, counts


def gauss_per_unit(bunit: str, *, path: str | os.PathLike[str] | None = None) -> float:
    """Gauss per unit of a magnetogram's ``BUNIT`` (1 for G, 1000 for kG, 1e4 for T).

    An empty ``BUNIT`` is taken as gauss (the HMI unit). Spellings outside
    the usual table go through :mod:`astropy.units`.

    Raises
    ------
    InputError
        ``BUNIT`` is not a unit of magnetic flux density.
    """
    key = " ".join(str(bunit).split()).upper()
    if key in _GAUSS_PER_UNIT:
        return _GAUSS_PER_UNIT[key]
    import astropy.units as u

    try:
        unit = u.Unit(str(bunit).strip(), parse_strict="raise")
        if unit.is_equivalent(u.G):
            return float((1 * unit).to_value(u.G))
    except ValueError:
        pass
    raise InputError(
        f"{_name(path)} is a magnetogram but BUNIT = {bunit!r} is not a magnetic field "
        "unit (G, kG, T, Mx/cm^2); fix BUNIT if the values are Blos, or pick the right file"
    )


def check_value_range(
    data: np.ndarray,
    observable: str,
    *,
    path: str | os.PathLike[str] | None = None,
    stage: str = "normalised",
) -> tuple[np.ndarray, int]:
    """Refuse an image whose values do not fit ``observable``; mask a few outliers.

    Limits: magnetogram ``|Blos| <= MAX_PLAUSIBLE_BLOS`` gauss; continuum
    ``>= 0`` when ``stage == "raw"`` (any intensity unit) and ``<=
    MAX_PLAUSIBLE_CONTINUUM`` when ``stage == "normalised"`` (quiet-Sun
    units). More than :data:`MAX_IMPLAUSIBLE_FRACTION` of the finite pixels
    outside the limit and the image is refused; fewer become NaN.

    Returns
    -------
    data, masked
        ``data`` (changed in place) and the number of pixels masked.

    Raises
    ------
    InputError
        One sentence naming the file, the values found and the way out.
    """
    finite = np.isfinite(data)
    n_finite = int(finite.sum())
    if n_finite == 0:
        return data, 0
    with np.errstate(invalid="ignore"):
        if observable == "magnetogram":
            bad = finite & (np.abs(data) > MAX_PLAUSIBLE_BLOS)
            limit = f"|Blos| > {MAX_PLAUSIBLE_BLOS:g} G"
            hint = (
                "a continuum image or data in other units? Pass the right file or fix "
                "BUNIT (kG and T are converted)"
            )
        elif stage == "raw":
            bad = finite & (data < 0.0)
            limit = "negative intensity"
            hint = "a magnetogram or Dopplergram? Pass the right file or --observable"
        else:
            bad = finite & (data > MAX_PLAUSIBLE_CONTINUUM)
            limit = f"intensity > {MAX_PLAUSIBLE_CONTINUUM:g} quiet-Sun units"
            hint = "not a continuum image, or --normalize none on data not in quiet-Sun units?"
    n_bad = int(bad.sum())
    if n_bad > MAX_IMPLAUSIBLE_FRACTION * n_finite:
        values = data[finite]
        low, median, high = (float(v) for v in np.percentile(values, [1, 50, 99]))
        raise InputError(
            f"{_name(path)} does not look like a {observable}: {n_bad} of {n_finite} pixels "
            f"({100 * n_bad / n_finite:.0f} %) have {limit} (1/50/99th percentiles "
            f"{low:.4g}/{median:.4g}/{high:.4g}); {hint}; --no-range-check to enhance it anyway"
        )
    data[bad] = np.nan
    return data, n_bad


def _axis_arcsec_per_unit(header: fits.Header, axis: int) -> float:
    """Arcsec per unit of axis ``axis`` (``CUNITi``; FITS defaults otherwise)."""
    unit = str(header.get(f"CUNIT{axis}", "")).strip().upper()
    if not unit:
        # FITS: celestial axes are in degrees unless CUNIT says otherwise [3];
        # a bare cut-out's CDELT (no CTYPE) is taken as HMI's arcsec
        celestial = bool(str(header.get(f"CTYPE{axis}", "")).strip())
        return 3600.0 if celestial else 1.0
    if unit not in _ARCSEC_PER_UNIT:
        raise InputError(f"CUNIT{axis} = {unit!r} is not an angle unit (arcsec, deg, ...)")
    return _ARCSEC_PER_UNIT[unit]


def pixel_scale_arcsec(header: fits.Header) -> tuple[float, float] | None:
    """Pixel size along the two image axes in arcsec, from the header; None if unknown.

    Read from ``CDi_j``, or ``CDELTi`` times the length of column ``i`` of
    ``PCi_j`` (1 for a pure rotation, ``CROTA2`` or none), in the units of
    ``CUNITi`` [3]_.

    Raises
    ------
    InputError
        ``CUNITi`` is not an angle unit.
    """
    factors = []
    for axis in (1, 2):
        per_unit = _axis_arcsec_per_unit(header, axis)
        cd = [header.get(f"CD{row}_{axis}") for row in (1, 2)]
        if any(v is not None for v in cd):
            size = math.hypot(*(float(v or 0.0) for v in cd))
        elif f"CDELT{axis}" in header:
            pc = [header.get(f"PC{row}_{axis}", 1.0 if row == axis else 0.0) for row in (1, 2)]
            size = abs(float(header[f"CDELT{axis}"])) * math.hypot(*(float(v) for v in pc))
        else:
            return None
        factors.append(size * per_unit)
    return factors[0], factors[1]


def check_pixel_scale(
    header: fits.Header,
    expected: float,
    *,
    path: str | os.PathLike[str] | None = None,
    tolerance: float = PIXEL_SCALE_TOLERANCE,
) -> tuple[float, float]:
    """Raise unless the header's pixel scale is ``expected`` arcsec within ``tolerance``.

    Parameters
    ----------
    header : astropy.io.fits.Header
        The frame's header (:func:`pixel_scale_arcsec` reads it).
    expected : float
        Pixel scale the network was trained for, arcsec per pixel
        (:func:`enhance_hmi.model.trained_pixel_scale`).
    path : path-like, optional
        The input file, for the message.
    tolerance : float
        Allowed relative difference on each axis.

    Returns
    -------
    (float, float)
        The scale along the two axes, arcsec per pixel.

    Raises
    ------
    InputError
        No pixel scale in the header, or one off by more than ``tolerance``:
        one sentence naming the file, both scales and the way out.
    """
    try:
        scales = pixel_scale_arcsec(header)
    except InputError as exc:
        raise InputError(f"{_name(path)}: {exc}; fix the header") from exc
    if scales is None:
        raise InputError(
            f"{_name(path)} has no pixel scale in its header (CDELT1/2 or CD1_1.., in "
            f'CUNIT1/2); the network was trained at {expected:.4g}"/px: add the header '
            "cards, or pass --no-scale-check if the image is on that grid"
        )
    for scale in scales:
        if not abs(scale - expected) <= tolerance * expected:
            raise InputError(
                f'{_name(path)} has {scales[0]:.4g}x{scales[1]:.4g}"/px pixels but the '
                f'network was trained at {expected:.4g}"/px (tolerance '
                f"{100 * tolerance:g} %): give it a frame at its native HMI resolution, "
                "or pass --no-scale-check to enhance it anyway"
            )
    return scales


def describe_masked(counts: dict[str, Any]) -> str:
    """One phrase for a log line: what :func:`mask_unusable` and the range check masked."""
    parts = [f"{counts.get(key, 0)} {key}" for key in ("infinite", "fill", "implausible")]
    return ", ".join(parts) + " pixels masked"
