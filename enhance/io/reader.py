"""Reading HMI frames from FITS into :class:`enhance.frame.Frame`.

Accepts level-1.5 files exactly as JSOC serves them (empty primary HDU, RICE
tile-compressed image in HDU 1: ``hmi.Ic_45s``, ``hmi.Ic_720s``,
``hmi.Ic_noLimbDark_720s``, ``hmi.M_45s``, ``hmi.M_720s``) and bare 2-D
arrays without WCS (cut-outs) in any HDU. The frame comes out solar north up
(see :func:`enhance.io.wcs.rotate_north_up`), float32, off-disk NaN kept,
continuum in quiet-Sun units (:mod:`enhance.io.normalise`) and Blos in gauss.

References
----------
.. [1] Díaz Baso, C. J. & Asensio Ramos, A. (2018), A&A 614, A5: inputs of
   the network (continuum / quiet Sun, Blos).
.. [2] Schou, J. et al. (2012), "Design and ground calibration of the HMI
   instrument on SDO", Sol. Phys. 275, 229: HMI observables and series.
.. [3] Pence, W. D. et al. (2010), "Definition of the Flexible Image Transport
   System (FITS), version 3.0", A&A 524, A42: tile-compressed images, BLANK.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.io.fits.verify import VerifyWarning

from enhance.errors import ConfigError, InputError
from enhance.frame import OBSERVABLES, Frame
from enhance.io.cards import set_card
from enhance.io.normalise import normalise_continuum
from enhance.io.wcs import rotate_north_up
from enhance.provenance import sha256_file

__all__ = ["NORMALIZE_CHOICES", "infer_observable", "read_hmi", "HEADER_UNITS"]

log = logging.getLogger(__name__)

#: Accepted values of ``normalize``.
NORMALIZE_CHOICES: tuple[str, ...] = ("auto", "quiet-sun", "none")

#: ``BUNIT`` written for each observable once normalised. Continuum in
#: quiet-Sun units is dimensionless: an empty ``BUNIT`` (read by astropy and
#: sunpy as dimensionless); ``ENHUNIT`` spells out what the unit is.
HEADER_UNITS = {"continuum": "", "magnetogram": "G"}
#: Human-readable units recorded in ``frame.meta["units"]`` / ``ENHUNIT``.
UNIT_NAMES = {"continuum": "I/I_quiet-Sun", "magnetogram": "G"}

# Cards describing the on-disk layout of the input HDU, not the image.
STRUCTURAL_CARDS = (
    "SIMPLE",
    "XTENSION",
    "BITPIX",
    "EXTEND",
    "PCOUNT",
    "GCOUNT",
    "BLANK",
    "BSCALE",
    "BZERO",
    "CHECKSUM",
    "DATASUM",
    "EXTNAME",
    "EXTVER",
    "ZQUANTIZ",
    "ZDITHER0",
)

_SERIES_PATTERN = re.compile(r"hmi\.(ic|m|v|lw|ld|b|s)_(nolimbdark_)?\d+s", re.IGNORECASE)
_SERIES_OBSERVABLE = {"ic": "continuum", "m": "magnetogram"}
_UNSUPPORTED_SERIES = {
    "v": "Dopplergram",
    "lw": "line width",
    "ld": "line depth",
    "b": "vector field",
    "s": "Stokes",
}
_CONTENT_OBSERVABLE = (
    ("MAGNETOGRAM", "magnetogram"),
    ("CONTINUUM", "continuum"),
    ("INTENSITY", "continuum"),
)
_UNSUPPORTED_CONTENT = ("DOPPLER", "VELOCITY", "LINEWIDTH", "LINE WIDTH", "LINEDEPTH", "LINE DEPTH")
_MAGNETIC_UNITS = {"G", "GAUSS", "MX/CM2", "MX/CM^2", "MX CM-2", "T"}
_INTENSITY_UNITS = {"DN/S", "DN", "DN S-1", "COUNTS/S"}


class _UnknownObservableError(InputError):
    """Nothing in the header or file name identifies the observable."""


def _series_names(header: fits.Header, path: Path) -> list[str]:
    """Every place a JSOC series name can hide: header cards and file name."""
    names = [str(header.get(key, "")) for key in ("DRMS_ID", "SERIES", "TELESCOP", "INSTRUME")]
    names.append(path.name)
    return names


def _is_no_limb_dark(header: fits.Header, path: Path) -> bool:
    """True for ``hmi.Ic_noLimbDark_720s`` (limb darkening already removed)."""
    text = " ".join([*_series_names(header, path), str(header.get("CONTENT", ""))])
    return "nolimbdark" in text.replace(" ", "").replace("_", "").lower()


def infer_observable(header: fits.Header, path: str | os.PathLike[str] = "") -> tuple[str, str]:
    """Infer what an HMI image shows from its header and file name.

    Looks, in order, at ``CONTENT`` (JSOC writes ``CONTINUUM INTENSITY`` or
    ``MAGNETOGRAM``), at a JSOC series name (``hmi.Ic_*``, ``hmi.M_*``) in
    ``DRMS_ID``/``SERIES``/``TELESCOP``/``INSTRUME`` or the file name, and at
    ``BUNIT`` (gauss -> magnetogram, DN/s -> continuum).

    Returns
    -------
    observable, evidence
        ``"continuum"`` or ``"magnetogram"``, and which card decided it.

    Raises
    ------
    InputError
        If the header names an observable the network does not exist for
        (Dopplergram, ...) or nothing identifies it.
    """
    path = Path(path)
    content = str(header.get("CONTENT", "")).strip().upper()
    if content:
        for word in _UNSUPPORTED_CONTENT:
            if word in content:
                raise InputError(
                    f"{path.name or 'input'} holds {content!r} (CONTENT); enhance only "
                    f"supports {' and '.join(OBSERVABLES)} images"
                )
        for word, observable in _CONTENT_OBSERVABLE:
            if word in content:
                return observable, f"CONTENT = {content!r}"
    for name in _series_names(header, path):
        match = _SERIES_PATTERN.search(name)
        if match:
            kind = match.group(1).lower()
            if kind in _UNSUPPORTED_SERIES:
                raise InputError(
                    f"{path.name or 'input'} is a {_UNSUPPORTED_SERIES[kind]} "
                    f"({match.group(0)}); enhance only supports {' and '.join(OBSERVABLES)} images"
                )
            return _SERIES_OBSERVABLE[kind], f"series {match.group(0)}"
    bunit = str(header.get("BUNIT", "")).strip().upper()
    if bunit in _MAGNETIC_UNITS:
        return "magnetogram", f"BUNIT = {bunit!r}"
    if bunit in _INTENSITY_UNITS:
        return "continuum", f"BUNIT = {bunit!r}"
    raise _UnknownObservableError(
        f"cannot tell whether {path.name or 'the input'} is a continuum image or a "
        "magnetogram (no CONTENT, series name or BUNIT says); pass --observable"
    )


def _ignore_float_blank() -> None:
    """Ignore astropy's note that BLANK is meaningless for float data.

    JSOC and sunpy float images often keep a ``BLANK`` card; astropy warns that
    it ignores it for float data, which is right (NaN marks blank pixels).
    Call inside ``warnings.catch_warnings()``.
    """
    warnings.filterwarnings("ignore", message=r".*'BLANK' keyword", category=VerifyWarning)


_DAMAGE_WORDS = ("truncated", "corrupt", "not multiple of 2880")


@contextlib.contextmanager
def _astropy_damage_check(path: Path) -> Iterator[None]:
    """Turn astropy's warnings about a damaged file into one InputError.

    astropy warns ("File may have been truncated", "Header size is not
    multiple of 2880 ... corrupted") and then fails or returns nothing; the
    user should get one sentence naming the file instead. Other warnings are
    passed on unchanged; the float-BLANK note is ignored (see
    :func:`_ignore_float_blank`).
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _ignore_float_blank()
        failure: BaseException | None = None
        try:
            yield
        except (InputError, OSError, ValueError) as exc:
            failure = exc
    damage = [w for w in caught if any(word in str(w.message) for word in _DAMAGE_WORDS)]
    if damage:
        first = " ".join(str(damage[0].message).split())
        raise InputError(f"input file {path} is truncated or corrupt ({first})") from failure
    for item in caught:
        warnings.warn_explicit(item.message, item.category, item.filename, item.lineno)
    if failure is not None:
        raise failure


def _open_checked(path: Path) -> fits.HDUList:
    if not path.exists():
        raise InputError(f"input file {path} does not exist")
    if path.is_dir():
        raise InputError(f"input {path} is a directory, not a FITS file")
    if not os.access(path, os.R_OK):
        raise InputError(f"input file {path} is not readable (check its permissions)")
    try:
        hdul = fits.open(path, memmap=False, lazy_load_hdus=False)
    except (OSError, ValueError, TypeError, IndexError, KeyError) as exc:
        raise InputError(f"input file {path} is not a readable FITS file ({exc})") from exc
    if len(hdul) == 0:
        hdul.close()
        raise InputError(f"input file {path} is not a readable FITS file (no HDUs)")
    return hdul


def _image_hdu(hdul: fits.HDUList, path: Path) -> tuple[int, fits.hdu.base.ExtensionHDU]:
    """Return the first HDU holding a non-empty 2-D image."""
    shapes = []
    for index, hdu in enumerate(hdul):
        if not isinstance(hdu, (fits.PrimaryHDU, fits.ImageHDU, fits.CompImageHDU)):
            continue
        naxis = int(hdu.header.get("NAXIS", 0))
        dims = tuple(int(hdu.header.get(f"NAXIS{i}", 0)) for i in range(naxis, 0, -1))
        if naxis == 0 or 0 in dims:
            continue
        if naxis == 2:
            return index, hdu
        shapes.append(dims)
    if shapes:
        found = ", ".join("x".join(map(str, s)) for s in shapes)
        raise InputError(
            f"{path.name} holds no 2-D image (found {found}); "
            "enhance works on single 2-D frames: extract one frame first"
        )
    raise InputError(f"{path.name} holds no image data (no HDU with a 2-D array)")


def _load_data(hdu: fits.hdu.base.ExtensionHDU, path: Path) -> np.ndarray:
    try:
        raw = hdu.data
    except (OSError, ValueError, TypeError, IndexError) as exc:
        raise InputError(f"cannot read the image in {path.name} ({exc})") from exc
    if raw is None:
        raise InputError(f"{path.name} holds no image data")
    data = np.asarray(raw).astype(np.float32)
    blank = hdu.header.get("BLANK")
    if np.issubdtype(np.asarray(raw).dtype, np.integer) and blank is not None:
        data[np.asarray(raw) == int(blank)] = np.nan
    return data


def _clean_header(header: fits.Header, shape: tuple[int, int]) -> fits.Header:
    """Copy of ``header`` without the cards that describe the input HDU layout."""
    out = fits.Header([("NAXIS", 2), ("NAXIS1", int(shape[1])), ("NAXIS2", int(shape[0]))])
    for card in header.cards:
        if card.keyword in STRUCTURAL_CARDS or card.keyword.startswith("NAXIS"):
            continue
        out.append(card, end=True)
    return out


def _normalisation_cards(header: fits.Header, info: dict[str, Any], observable: str) -> None:
    """Record the normalisation in header cards (they travel to the output)."""
    set_card(header, "ENHNORM", info["method"], "enhance input normalisation method")
    set_card(header, "ENHNFAC", float(info["factor"]), "input divided by this (input units)")
    set_card(header, "ENHUNIT", UNIT_NAMES[observable], "enhance: units of the data")
    for k, coefficient in enumerate(info.get("coefficients", [])):
        set_card(header, f"ENHLDC{k}", coefficient, f"limb-darkening coefficient of mu^{k}")
    if info["method"] == "limb-darkening-fit":
        header.add_history(
            "enhance: continuum divided by a fitted limb-darkening law "
            "I(mu)=sum_k ENHLDCk mu^k (Neckel & Labs 1994 form); quiet-Sun units"
        )
    elif info["method"] == "quiet-sun-median":
        header.add_history(
            "enhance: continuum divided by the quiet-Sun level ENHNFAC "
            "(median of non-dark pixels); quiet-Sun units"
        )


def read_hmi(
    path: str | os.PathLike[str],
    *,
    observable: str | None = None,
    normalize: str = "auto",
) -> Frame:
    """Read an HMI continuum image or magnetogram into a north-up, normalised Frame.

    Parameters
    ----------
    path : path-like
        FITS file: a JSOC level-1.5 file (compressed image in HDU 1) or any
        file whose first 2-D image HDU holds the frame (cut-outs without WCS
        are fine).
    observable : {"continuum", "magnetogram"}, optional
        What the image shows; inferred with :func:`infer_observable` when
        None. When given and the header says otherwise, an error is raised.
    normalize : {"auto", "quiet-sun", "none"}
        Continuum normalisation (see
        :func:`enhance.io.normalise.normalise_continuum`); magnetograms stay
        in gauss and accept only ``"auto"`` or ``"none"``.

    Returns
    -------
    Frame
        ``data`` float32 north up (rotated 180 deg when ``CROTA2`` ~ 180) with
        off-disk NaN kept; ``header`` consistent with it (structural cards
        dropped, ``BUNIT`` updated, ``ENHNORM``/``ENHNFAC``/``ENHUNIT``/
        ``ENHLDCk`` cards recording the normalisation); ``meta`` with
        ``input_file``, ``input_sha256``, ``t_rec``, ``quality``,
        ``hdu_index``, ``units``, ``input_units``, ``rotation`` (degrees
        applied), ``observable_evidence`` and ``normalisation`` (method,
        factor, fit details).

    Raises
    ------
    InputError
        File missing, not FITS, no 2-D image, all NaN, unknown observable.
    ConfigError
        Invalid ``observable`` or ``normalize`` value.

    References
    ----------
    .. [1] Díaz Baso & Asensio Ramos (2018), A&A 614, A5, Sect. 3.
    .. [2] Neckel & Labs (1994), Sol. Phys. 153, 91.
    """
    if observable is not None and observable not in OBSERVABLES:
        raise ConfigError(f"unknown observable {observable!r}; use one of {', '.join(OBSERVABLES)}")
    if normalize not in NORMALIZE_CHOICES:
        raise ConfigError(
            f"unknown normalisation {normalize!r}; use one of {', '.join(NORMALIZE_CHOICES)}"
        )
    path = Path(path)
    with contextlib.ExitStack() as stack:
        with _astropy_damage_check(path):
            hdul = stack.enter_context(_open_checked(path))
            index, hdu = _image_hdu(hdul, path)
            data = _load_data(hdu, path)
        header = _clean_header(hdu.header, data.shape)
        # the JSOC primary header carries nothing the image header lacks; a
        # bare cut-out may keep its cards in the primary HDU though
        if index > 0:
            skip = {*STRUCTURAL_CARDS, "COMMENT", "HISTORY", ""}
            for card in hdul[0].header.cards:
                keyword = card.keyword
                if keyword in skip or keyword.startswith("NAXIS") or keyword in header:
                    continue
                header.append(card, end=True)
    if not np.isfinite(data).any():
        raise InputError(f"{path.name} holds no finite pixel (all NaN or blank)")

    try:
        inferred, evidence = infer_observable(header, path)
    except _UnknownObservableError:
        if observable is None:
            raise
        inferred, evidence = observable, "given by the caller"
    if observable is not None and inferred != observable:
        raise InputError(
            f"{path.name} looks like a {inferred} image ({evidence}) but observable "
            f"{observable!r} was requested; drop the option or pick the right file"
        )
    observable = inferred if observable is None else observable
    if observable == "magnetogram" and normalize == "quiet-sun":
        raise ConfigError(
            "--normalize quiet-sun applies to continuum images; magnetograms are "
            "used in gauss (use auto or none)"
        )

    data, header, rotation = rotate_north_up(data, header)
    input_units = str(header.get("BUNIT", "")).strip()
    if observable == "continuum":
        data, info = normalise_continuum(
            data, header, method=normalize, limb_darkened=not _is_no_limb_dark(header, path)
        )
        if not np.isfinite(data).any():
            raise InputError(f"{path.name} has no finite pixel left after normalisation")
    else:
        info = {"method": "none", "factor": 1.0}
        if input_units.upper() not in ("", "G", "GAUSS"):
            log.warning("magnetogram BUNIT is %r, expected gauss; data used as is", input_units)
    info["input_units"] = input_units
    if "BUNIT" in header or observable == "continuum":
        header["BUNIT"] = HEADER_UNITS[observable]
    _normalisation_cards(header, info, observable)

    meta: dict[str, Any] = {
        "input_file": str(path),
        "input_sha256": sha256_file(path),
        "t_rec": header.get("T_REC"),
        "quality": header.get("QUALITY"),
        "hdu_index": index,
        "units": UNIT_NAMES[observable],
        "input_units": input_units,
        "rotation": rotation.applied,
        "observable_evidence": evidence,
        "normalisation": info,
    }
    log.info(
        "read %s: %s (%s), %dx%d, rotated %g deg, normalisation %s",
        path.name,
        observable,
        evidence,
        data.shape[1],
        data.shape[0],
        rotation.applied,
        info["method"],
    )
    return Frame(data=data, header=header, observable=observable, meta=meta)
