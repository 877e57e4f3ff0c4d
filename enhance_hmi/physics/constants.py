"""Instrument constants of the Enhance forward model.

Every number carries the reference it comes from. Quantities carry astropy
units; the plain-float versions used inside the physics modules are derived
from them in one place (:func:`to_arcsec`, :func:`to_metre`).

References
----------
.. [1] Díaz Baso, C. J. & Asensio Ramos, A. (2018), "Enhancing SDO/HMI images
   using deep learning", A&A 614, A5 (arXiv:1706.02933), Sect. 2.
.. [2] Schou, J. et al. (2012), "Design and ground calibration of the
   Helioseismic and Magnetic Imager (HMI) instrument on the Solar Dynamics
   Observatory (SDO)", Sol. Phys. 275, 229.
.. [3] IAU 2012 Resolution B2: the astronomical unit, 149 597 870.7 km
   (1 arcsec at 1 au is 725.27 km; 725 km is the conventional round value).
.. [4] Tsuneta, S. et al. (2008), "The Solar Optical Telescope for the Hinode
   Mission: An Overview", Sol. Phys. 249, 167: the NFI Na I D1 5896 Å and the
   SP Fe I 6302 Å lines.
"""

from __future__ import annotations

import astropy.units as u

from enhance_hmi.errors import ConfigError

__all__ = [
    "HMI_PIXEL_SCALE",
    "ENHANCED_PIXEL_SCALE",
    "HMI_APERTURE",
    "TARGET_APERTURE",
    "HMI_WAVELENGTH",
    "HINODE_BFI_RED_WAVELENGTH",
    "SOLAR_KM_PER_ARCSEC",
    "HINODE_NFI_NA_D1_WAVELENGTH",
    "HINODE_SP_WAVELENGTH",
]

#: HMI plate scale, 0.504 arcsec per pixel ([1]_, [2]_).
HMI_PIXEL_SCALE = 0.504 * u.arcsec
#: Output (and training-target) plate scale of Enhance: half the HMI pixel ([1]_).
ENHANCED_PIXEL_SCALE = 0.252 * u.arcsec
#: HMI entrance aperture, 14 cm ([1]_ eq. 1; [2]_).
HMI_APERTURE = 0.14 * u.m
#: Aperture of the diffraction-limited telescope Enhance emulates, 28 cm ([1]_).
TARGET_APERTURE = 0.28 * u.m
#: HMI observing wavelength, Fe I 6173 Å ([1]_; [2]_).
HMI_WAVELENGTH = 6173.0 * u.AA
#: Hinode SOT/BFI red continuum used for validation, 6684 Å ([1]_ Sect. 4).
HINODE_BFI_RED_WAVELENGTH = 6684.0 * u.AA
#: Length on the Sun seen under one arcsecond from 1 au, for pixel areas and
#: fluxes: 725 km ([3]_).
SOLAR_KM_PER_ARCSEC = 725.0 * u.km / u.arcsec
#: Hinode SOT/NFI Na I D1 line of the FG MG4 V/I magnetograms, 5896 Å ([4]_).
HINODE_NFI_NA_D1_WAVELENGTH = 5896.0 * u.AA
#: Hinode SOT/SP Fe I 6301.5/6302.5 Å pair, 6302 Å ([4]_).
HINODE_SP_WAVELENGTH = 6302.0 * u.AA


def _to(value: object, unit: u.UnitBase, name: str) -> float:
    """Convert a Quantity to a positive float in ``unit``; raise ConfigError otherwise."""
    if not isinstance(value, u.Quantity):
        raise ConfigError(
            f"{name} must be an astropy Quantity with units (e.g. 0.504 * u.arcsec for a scale, "
            f"6173 * u.AA for a wavelength, 0.14 * u.m for an aperture); got {value!r}"
        )
    try:
        number = float(value.to_value(unit))
    except (u.UnitConversionError, TypeError) as exc:
        raise ConfigError(f"{name} must be convertible to {unit}; got {value!r}") from exc
    if not number > 0 or number == float("inf"):
        raise ConfigError(f"{name} must be positive and finite; got {value!r}")
    return number


def to_arcsec(value: object, name: str) -> float:
    """Return an angular Quantity as a positive float in arcsec."""
    return _to(value, u.arcsec, name)


def to_metre(value: object, name: str) -> float:
    """Return a length Quantity (aperture or wavelength) as a positive float in metres."""
    return _to(value, u.m, name)
