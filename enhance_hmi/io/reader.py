"""Reading HMI frames from FITS into :class:`enhance_hmi.frame.Frame`.

Accepts level-1.5 files exactly as JSOC serves them (empty primary HDU, RICE
tile-compressed image in HDU 1: ``hmi.Ic_45s``, ``hmi.Ic_720s``,
``hmi.Ic_noLimbDark_720s``, ``hmi.M_45s``, ``hmi.M_720s``) and bare 2-D
arrays without WCS (cut-outs) in any HDU. The frame comes out solar north up
(see :func:`enhance_hmi.io.wcs.rotate_north_up`), float32, off-disk NaN kept,
continuum in quiet-Sun units (:mod:`enhance_hmi.io.normalise`) and Blos in gauss.

The module is longer than most (~550 lines) because reading one frame is one
sequence of checks on one header: which observable its cards show, damage in
the file, the image HDU, the units and the normalisation; the observable
inference (:func:`infer_observable`) is the part that could stand alone.

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

from enhance_hmi.errors import ConfigError, InputError, UnexpectedUnitWarning
from enhance_hmi.frame import OBSERVABLES, Frame
from enhance_hmi.io.cards import set_card
from enhance_hmi.io.header_limits import check_input_file
from enhance_hmi.io.normalise import normalise_continuum
from enhance_hmi.io.plausibility import (
    FILL_VALUE_LIMIT,
    check_value_range,
    describe_masked,
    gauss_per_unit,
    mask_unusable,
    pixel_scale_arcsec,
)
from enhance_hmi.io.tile_integrity import check_tiles
from enhance_hmi.io.wcs import rotate_north_up
from enhance_hmi.provenance import sha256_file

__all__ = [
    "NORMALIZE_CHOICES",
    "check_input_file",
    "infer_observable",
    "observable_evidence",
    "read_hmi",
    "HEADER_UNITS",
]

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
_INTENSITY_UNITS = {"DN/S", "DN", "DN S-1", "COUNTS/S"}
#: ``BUNIT`` values (upper case) of a continuum already in quiet-Sun units:
#: dimensionless, as :func:`enhance_hmi.io.write_enhanced` writes it.
_QUIET_SUN_UNITS = {"", "1", "I/I_QUIET-SUN"}


class _UnknownObservableError(InputError):
    """Nothing in the header or file name identifies the observable."""


class _ObservableConflictError(InputError):
    """The header and file name name different observables."""


def _series_names(header: fits.Header, path: Path) -> list[str]:
    """Every place a JSOC series name can hide: header cards and file name."""
    names = [str(header.get(key, "")) for key in ("DRMS_ID", "SERIES", "TELESCOP", "INSTRUME")]
    names.append(path.name)
    return names


def _is_no_limb_dark(header: fits.Header, path: Path) -> bool:
    """True for ``hmi.Ic_noLimbDark_720s`` (limb darkening already removed)."""
    text = " ".join([*_series_names(header, path), str(header.get("CONTENT", ""))])
    return "nolimbdark" in text.replace(" ", "").replace("_", "").lower()


def _magnetic_unit(bunit: str) -> bool:
    try:
        gauss_per_unit(bunit)
    except InputError:
        return False
    return bool(bunit.strip())


def observable_evidence(
    header: fits.Header, path: str | os.PathLike[str] = ""
) -> list[tuple[str, str]]:
    """Every statement the header and file name make about the observable.

    Looks at ``CONTENT`` (JSOC writes ``CONTINUUM INTENSITY`` or
    ``MAGNETOGRAM``), at each JSOC series name (``hmi.Ic_*``, ``hmi.M_*``) in
    ``DRMS_ID``/``SERIES``/``TELESCOP``/``INSTRUME`` and the file name, and at
    ``BUNIT`` (a magnetic unit -> magnetogram, DN/s -> continuum).

    Returns
    -------
    list of (observable, evidence)
        In that order; empty when nothing identifies the observable.

    Raises
    ------
    InputError
        Something names an observable no network exists for (Dopplergram, ...).
    """
    path = Path(path)
    found: list[tuple[str, str]] = []
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
                found.append((observable, f"CONTENT = {content!r}"))
                break
    for name in _series_names(header, path):
        match = _SERIES_PATTERN.search(name)
        if match:
            kind = match.group(1).lower()
            if kind in _UNSUPPORTED_SERIES:
                raise InputError(
                    f"{path.name or 'input'} is a {_UNSUPPORTED_SERIES[kind]} "
                    f"({match.group(0)}); enhance only supports {' and '.join(OBSERVABLES)} images"
                )
            found.append((_SERIES_OBSERVABLE[kind], f"series {match.group(0)}"))
    bunit = str(header.get("BUNIT", "")).strip()
    if _magnetic_unit(bunit):
        found.append(("magnetogram", f"BUNIT = {bunit!r}"))
    elif bunit.upper() in _INTENSITY_UNITS:
        found.append(("continuum", f"BUNIT = {bunit!r}"))
    return found


def _conflict_message(name: str, found: list[tuple[str, str]]) -> str:
    said: dict[str, str] = {}
    for observable, evidence in found:
        said.setdefault(observable, evidence)
    parts = [f"{evidence} says {observable}" for observable, evidence in said.items()]
    return f"{name} has a contradictory header: {' but '.join(parts)}"


def infer_observable(header: fits.Header, path: str | os.PathLike[str] = "") -> tuple[str, str]:
    """Infer what an HMI image shows from its header and file name.

    Every card and name that says something (:func:`observable_evidence`) must
    agree: a header whose ``CONTENT`` says continuum while ``BUNIT`` is gauss
    (or the series name says ``hmi.M_*``) is refused rather than guessed.

    Returns
    -------
    observable, evidence
        ``"continuum"`` or ``"magnetogram"``, and the first card that says so.

    Raises
    ------
    InputError
        If the header names an observable the network does not exist for
        (Dopplergram, ...), the statements contradict each other, or nothing
        identifies it.
    """
    path = Path(path)
    found = observable_evidence(header, path)
    if not found:
        raise _UnknownObservableError(
            f"cannot tell whether {path.name or 'the input'} is a continuum image or a "
            "magnetogram (no CONTENT, series name or BUNIT says); pass --observable"
        )
    if len({observable for observable, _ in found}) > 1:
        raise _ObservableConflictError(
            _conflict_message(path.name or "the input", found)
            + "; fix the header, or pass --observable to say which it is"
        )
    return found[0]


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


def _decide_observable(header: fits.Header, path: Path, requested: str | None) -> tuple[str, str]:
    """The observable of the image: the header's, or the caller's if the header allows it."""
    if requested is None:
        return infer_observable(header, path)
    found = observable_evidence(header, path)
    if not found:
        return requested, "given by the caller"
    agreeing = [evidence for observable, evidence in found if observable == requested]
    if not agreeing:
        inferred, evidence = found[0]
        raise InputError(
            f"{path.name} looks like a {inferred} image ({evidence}) but observable "
            f"{requested!r} was requested; drop the option or pick the right file"
        )
    if len(agreeing) < len(found):
        log.info(
            "%s: %s; %s chosen by the caller",
            path.name,
            _conflict_message(path.name, found),
            requested,
        )
    return requested, f"{agreeing[0]}, chosen by the caller"


def _pixel_scale_or_none(header: fits.Header) -> tuple[float, float] | None:
    try:
        return pixel_scale_arcsec(header)
    except InputError:
        return None


def read_hmi(
    path: str | os.PathLike[str],
    *,
    observable: str | None = None,
    normalize: str = "auto",
    check_range: bool = True,
) -> Frame:
    """Read an HMI continuum image or magnetogram into a north-up, normalised Frame.

    Long for its documentation of every meta key, error and warning; the
    body is a short sequence of named steps.

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
        :func:`enhance_hmi.io.normalise.normalise_continuum`); magnetograms stay
        in gauss and accept only ``"auto"`` or ``"none"``.
    check_range : bool
        Refuse an image whose values do not fit the observable (a continuum
        image read as a magnetogram: 5e4 G) and mask the few pixels outside
        the plausible range (:func:`enhance_hmi.io.plausibility.check_value_range`).
        False: values are used as they are (infinite pixels and float fill
        values are masked whatever this says).

    Returns
    -------
    Frame
        ``data`` float32 north up (rotated 180 deg when ``CROTA2`` ~ 180) with
        off-disk NaN kept; ``header`` consistent with it (structural cards
        dropped, ``BUNIT`` updated, ``ENHNORM``/``ENHNFAC``/``ENHUNIT``/
        ``ENHLDCk`` cards recording the normalisation); ``meta`` with
        ``input_file``, ``input_sha256``, ``t_rec``, ``quality``,
        ``hdu_index``, ``units``, ``input_units``, ``rotation`` (degrees
        applied), ``observable_evidence``, ``normalisation`` (method,
        factor, fit details, unit conversion), ``masked`` (pixel counts:
        ``nan`` in the input, ``infinite``, ``fill`` and ``implausible``
        ones masked here), ``range_checked`` and ``pixel_scale`` (arcsec
        per pixel along the two axes, None when the header has none).

    Magnetograms in kG, T or Mx/cm^2 (``BUNIT``) are converted to gauss;
    any other ``BUNIT`` is refused. Infinite pixels and fill values
    (``|x| >= 1e30``) become NaN and are counted, never enhanced.

    Raises
    ------
    InputError
        File missing, not FITS, no 2-D image, all NaN, unknown observable,
        header cards naming different observables, a magnetogram ``BUNIT``
        that is not a field unit, values implausible for the observable.
    HeaderLimitError
        A header claims more than ``enhance`` reads (100000 x 100000
        pixels, an unknown compression, ...), found before any data is read
        (:mod:`enhance_hmi.io.header_limits`).
    CorruptDataError
        A tile-compressed image without ``DATASUM`` whose tiles do not decode
        to what they claim (:mod:`enhance_hmi.io.tile_integrity`).
    ConfigError
        Invalid ``observable`` or ``normalize`` value.

    Warns
    -----
    NotNorthUpWarning
        The image is rotated by neither ~0 nor ~180 degrees (an SDO roll):
        kept unrotated.
    UnexpectedUnitWarning
        ``normalize="none"`` on a continuum whose ``BUNIT`` is not
        dimensionless (e.g. raw DN/s).
    NotQuietSunUnitsWarning
        ``normalize="none"`` on a continuum whose median is far from 1.

    References
    ----------
    .. [1] Díaz Baso & Asensio Ramos (2018), A&A 614, A5, Sect. 3.
    .. [2] Neckel & Labs (1994), Sol. Phys. 153, 91.
    """
    _check_read_options(observable, normalize)
    path = Path(path)
    check_input_file(path)  # before astropy reads or allocates anything
    check_tiles(path)  # compressed data without DATASUM: decoded and checked tile by tile
    index, data, header = _read_image(path)
    data, masked = mask_unusable(data)
    if not np.isfinite(data).any():
        raise InputError(f"{path.name} holds no finite pixel (all NaN, infinite or blank)")
    observable, evidence = _decide_observable(header, path, observable)
    if observable == "magnetogram" and normalize == "quiet-sun":
        raise ConfigError(
            "--normalize quiet-sun applies to continuum images; magnetograms are "
            "used in gauss (use auto or none)"
        )

    data, header, rotation = rotate_north_up(data, header)
    input_units = str(header.get("BUNIT", "")).strip()
    if observable == "continuum":
        data, info, implausible = _continuum_values(
            data, header, path, input_units, normalize=normalize, check_range=check_range
        )
    else:
        data, info, implausible = _magnetogram_values(
            data, header, path, input_units, check_range=check_range
        )
    masked["implausible"] = implausible
    _record_masked(header, masked, path)
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
        "masked": masked,
        "range_checked": bool(check_range),
        "pixel_scale": _pixel_scale_or_none(header),
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


def _check_read_options(observable: str | None, normalize: str) -> None:
    """Refuse an unknown ``observable`` or ``normalize`` of :func:`read_hmi`."""
    if observable is not None and observable not in OBSERVABLES:
        raise ConfigError(f"unknown observable {observable!r}; use one of {', '.join(OBSERVABLES)}")
    if normalize not in NORMALIZE_CHOICES:
        raise ConfigError(
            f"unknown normalisation {normalize!r}; use one of {', '.join(NORMALIZE_CHOICES)}"
        )


def _read_image(path: Path) -> tuple[int, np.ndarray, fits.Header]:
    """HDU index, data and cleaned header of the image of ``path``.

    The header gains the primary header's cards it lacks when the image is
    in an extension (a bare cut-out may keep its cards in the primary HDU;
    the JSOC primary header carries nothing the image header lacks).
    """
    with contextlib.ExitStack() as stack:
        with _astropy_damage_check(path):
            hdul = stack.enter_context(_open_checked(path))
            index, hdu = _image_hdu(hdul, path)
            data = _load_data(hdu, path)
        header = _clean_header(hdu.header, data.shape)
        if index > 0:
            skip = {*STRUCTURAL_CARDS, "COMMENT", "HISTORY", ""}
            for card in hdul[0].header.cards:
                keyword = card.keyword
                if keyword in skip or keyword.startswith("NAXIS") or keyword in header:
                    continue
                header.append(card, end=True)
    return index, data, header


def _continuum_values(
    data: np.ndarray,
    header: fits.Header,
    path: Path,
    input_units: str,
    *,
    normalize: str,
    check_range: bool,
) -> tuple[np.ndarray, dict[str, Any], int]:
    """Normalised, range-checked continuum; its normalisation info and implausible count.

    Warns with :class:`UnexpectedUnitWarning` (attributed to the caller of
    :func:`read_hmi`) when ``normalize="none"`` meets a dimensional ``BUNIT``.
    """
    implausible = 0
    if normalize == "none" and input_units.upper() not in _QUIET_SUN_UNITS:
        warnings.warn(
            f"{path.name}: BUNIT = {input_units!r}, but normalisation 'none' takes the "
            "values as quiet-Sun units (dimensionless); use 'auto' or 'quiet-sun' to "
            "normalise them",
            UnexpectedUnitWarning,
            stacklevel=3,
        )
    if check_range:
        data, implausible = check_value_range(data, "continuum", path=path, stage="raw")
    data, info = normalise_continuum(
        data, header, method=normalize, limb_darkened=not _is_no_limb_dark(header, path)
    )
    if check_range:
        data, beyond = check_value_range(data, "continuum", path=path, stage="normalised")
        implausible += beyond
    if not np.isfinite(data).any():
        raise InputError(f"{path.name} has no finite pixel left after normalisation")
    return data, info, implausible


def _magnetogram_values(
    data: np.ndarray, header: fits.Header, path: Path, input_units: str, *, check_range: bool
) -> tuple[np.ndarray, dict[str, Any], int]:
    """Magnetogram in gauss, range-checked; its unit-conversion info and implausible count."""
    implausible = 0
    info: dict[str, Any] = {"method": "none", "factor": 1.0}
    gauss = gauss_per_unit(input_units, path=path)
    if gauss != 1.0:
        data *= np.float32(gauss)
        info["unit_conversion"] = f"{input_units} -> G (x{gauss:g})"
        header.add_history(f"enhance: Blos converted from {input_units!r} to G (x{gauss:g})")
        log.info("%s: Blos converted from %s to G (x%g)", path.name, input_units, gauss)
    if check_range:
        data, implausible = check_value_range(data, "magnetogram", path=path)
    return data, info, implausible


def _record_masked(header: fits.Header, masked: dict[str, int], path: Path) -> None:
    """Log and record in HISTORY the pixels masked as infinite, fill or implausible."""
    if masked["infinite"] or masked["fill"] or masked["implausible"]:
        log.info("%s: %s", path.name, describe_masked(masked))
        header.add_history(
            f"enhance: input pixels masked (NaN): {masked['infinite']} infinite, "
            f"{masked['fill']} fill values (|x| >= {FILL_VALUE_LIMIT:g}), "
            f"{masked['implausible']} outside the plausible range"
        )
