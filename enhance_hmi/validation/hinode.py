"""Readers for Hinode SOT files used as validation truth (local files only).

Products recognised from ``INSTRUME``/``OBS_TYPE``/``WAVE``: SOT/WB (BFI)
filtergrams such as red continuum 6684 Å (0.109"/px), SOT/NB (NFI)
filtergrams and V/I magnetograms (``FG MG4 V/I``: circular-polarisation
ratio, *not* calibrated Blos), and SOT/SP level-2 maps.

References
----------
.. [1] Tsuneta, S. et al. (2008), Sol. Phys. 249, 167 (Hinode SOT).
.. [2] Díaz Baso, C. J. & Asensio Ramos, A. (2018), A&A 614, A5, Sect. 4.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.io import fits

from enhance_hmi.errors import InputError
from enhance_hmi.physics import HINODE_SP_WAVELENGTH

__all__ = ["HinodeImage", "read_hinode", "read_header_text", "classify"]

log = logging.getLogger(__name__)


@dataclass
class HinodeImage:
    """A Hinode SOT image with what the validation needs to degrade it."""

    data: np.ndarray
    header: fits.Header
    product: str
    pixel_scale: u.Quantity
    wavelength: u.Quantity | None
    date_obs: str | None
    notes: list[str] = field(default_factory=list)


def read_header_text(path: str | Path) -> fits.Header:
    """Parse a FITS header saved as text (one 80-column card per line)."""
    text = Path(path).read_text(errors="replace")
    return fits.Header.fromstring(text, sep="\n")


def classify(header: fits.Header) -> tuple[str, u.Quantity | None, list[str]]:
    """Product name, wavelength and caveats from a SOT header."""
    inst = str(header.get("INSTRUME", "")).strip()
    obs = str(header.get("OBS_TYPE", "")).strip()
    wave = str(header.get("WAVE", "")).strip()
    notes: list[str] = []
    match = re.search(r"(\d{4})", wave)
    wl = float(match.group(1)) * u.AA if match else None
    if inst.startswith("SOT/SP"):
        return "sp-level2", wl or HINODE_SP_WAVELENGTH, notes
    if inst == "SOT/WB":
        return "bfi", wl, notes
    if inst == "SOT/NB":
        if "V/I" in obs:
            notes.append(
                "NFI V/I magnetogram: Stokes V/I ratio, not calibrated Blos in G; "
                "compare morphology and correlation only"
            )
            return "nfi-v/i", wl, notes
        return "nfi", wl, notes
    raise InputError(f"not a Hinode SOT header (INSTRUME={inst!r}); pass SOT/BFI, NFI or SP files")


def read_hinode(path: str | Path, *, hdu: int = 0) -> HinodeImage:
    """Read a local Hinode SOT FITS file (first 2-D image of ``hdu``)."""
    path = Path(path)
    try:
        with fits.open(path) as hdul:
            header = hdul[hdu].header.copy()
            data = np.asarray(hdul[hdu].data, dtype=np.float64)
    except (OSError, IndexError) as exc:
        raise InputError(f"cannot read Hinode FITS {path}: {exc}; check the file") from exc
    while data.ndim > 2:
        data = data[0]
    if data.ndim != 2:
        raise InputError(f"{path} holds no 2-D image in HDU {hdu}")
    product, wl, notes = classify(header)
    scale = float(header.get("CDELT1", 0.0))
    if scale <= 0:
        raise InputError(f"{path} has no positive CDELT1 pixel scale")
    if wl is None:
        notes.append("wavelength not found in WAVE; pass it explicitly")
    return HinodeImage(
        data=data,
        header=header,
        product=product,
        pixel_scale=scale * u.arcsec,
        wavelength=wl,
        date_obs=header.get("DATE_OBS") or header.get("DATE-OBS"),
        notes=notes,
    )
