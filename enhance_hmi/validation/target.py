"""Real Hinode validation target: co-align an enhanced HMI frame with Hinode SOT.

Steps (Díaz Baso & Asensio Ramos 2018, Sect. 4 [1]_):

1. read the Hinode SOT file (:func:`enhance_hmi.validation.hinode.read_hinode`);
2. degrade it to a 28 cm aperture at its own wavelength and resample it to
   0.252"/px (:func:`enhance_hmi.physics.degrade`; the 0.504"/px HMI-PSF version
   of the same call is kept for calibration); the degraded grid gets a WCS
   nested in the Hinode one (same origin, rotation and pointing);
3. pick the enhanced HMI frame nearest in time to the Hinode observation;
4. reproject it through WCS (sunpy + reproject, with solar differential
   rotation between the two times) onto the degraded Hinode grid, and the
   HMI input frame onto the 0.504"/px grid nested in it;
5. refine the alignment by sub-pixel cross-correlation
   (:func:`enhance_hmi.validation.coalign.refine_shift`) and reproject again with
   the shift folded into the WCS (one interpolation only); the shift applied
   is reported, with the residual shift measured afterwards;
6. crop to the largest rectangle where every image has data and hand the
   three images to :mod:`enhance_hmi.validation.report`.

Hinode is in low Earth orbit: its observer is taken to be Earth's centre at
the observation time (a parallax of up to ~1" that the cross-correlation
absorbs, as it absorbs the few-arcsec SOT pointing uncertainty).

The grids and reprojections are :mod:`enhance_hmi.validation.target_grid`'s.

Units of the truth: continuum (SOT/BFI, NFI intensity) is divided by the
quiet-Sun level of the degraded image; NFI V/I magnetograms are not
calibrated Blos, so they are mapped to gauss by a linear fit of the Hinode
image observed through the HMI PSF at 0.504"/px against the HMI input (both
instruments see the same scales there, so the fit favours none of the
methods compared at 0.252"/px); SOT/SP Blos maps are used in gauss as they
are.

References
----------
.. [1] Díaz Baso, C. J. & Asensio Ramos, A. (2018), "Enhancing SDO/HMI images
   using deep learning", A&A 614, A5, Sect. 4.
.. [2] Tsuneta, S. et al. (2008), Sol. Phys. 249, 167 (Hinode SOT).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import astropy.units as u
import numpy as np
from astropy.io import fits
from astropy.time import Time

from enhance_hmi.errors import InputError, ReportError, TimeFormatError
from enhance_hmi.frame import Frame
from enhance_hmi.physics import DEFAULT_PSF_MODEL, ENHANCED_PIXEL_SCALE
from enhance_hmi.provenance import provenance_record, sha256_file
from enhance_hmi.time import parse_time
from enhance_hmi.validation.coalign import refine_shift
from enhance_hmi.validation.hinode import HinodeImage, read_hinode
from enhance_hmi.validation.report import ValidationCase, write_report
from enhance_hmi.validation.target_grid import (
    coarse_header,
    crop_map,
    degraded_grid_header,
    hinode_time,
    image_hdu,
    largest_box,
    load_map,
    reproject,
    shifted,
)

__all__ = [
    "FrameInfo",
    "frame_time",
    "nearest_frame",
    "degraded_grid_header",
    "coarse_header",
    "target_case",
    "run_target",
    "MAX_TIME_DIFFERENCE",
]

log = logging.getLogger(__name__)

#: Largest accepted time between the Hinode observation and the nearest HMI
#: frame. Granules live ~5-10 min, so a comparison beyond this is meaningless.
MAX_TIME_DIFFERENCE = 30 * u.min
#: Residual shift (enhanced pixels) below which the refinement stops.
SHIFT_TOLERANCE = 0.02


@dataclass(frozen=True)
class FrameInfo:
    """An enhanced (or HMI input) frame file and its observation time."""

    path: Path
    time: Time
    header: fits.Header


def frame_time(header: fits.Header) -> Time:
    """Observation time of a frame (TAI): ``T_OBS``, else ``T_REC``, else ``DATE-OBS``.

    ``T_OBS`` and ``T_REC`` are JSOC times, TAI unless they name a scale;
    ``DATE-OBS`` (or ``DATE_OBS``) is in the header's ``TIMESYS``, UTC by
    default as the FITS standard has it. A card that is not a time is
    skipped. Read by :func:`enhance_hmi.time.parse_time`.

    Raises
    ------
    InputError
        No usable time card.
    """
    for key in ("T_OBS", "T_REC"):
        try:
            return parse_time(str(header.get(key, "")))
        except TimeFormatError:
            continue
    timesys = str(header.get("TIMESYS", "UTC")).strip().lower()
    scale = timesys if timesys in ("tai", "utc") else "utc"
    for key in ("DATE-OBS", "DATE_OBS"):
        try:
            return parse_time(str(header.get(key, "")), scale=scale)
        except TimeFormatError:
            continue
    raise InputError("the frame header has no T_OBS, T_REC or DATE-OBS time card")


def _read_header(path: Path) -> fits.Header:
    try:
        with fits.open(path) as hdul:
            header = hdul[image_hdu(hdul, path)].header.copy()
            if "DATE-OBS" not in header and "DATE-OBS" in hdul[0].header:
                header["DATE-OBS"] = hdul[0].header["DATE-OBS"]
            return header
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc}; give a FITS file") from exc


def nearest_frame(
    paths: Sequence[str | os.PathLike[str]],
    when: Time,
    *,
    max_difference: u.Quantity = MAX_TIME_DIFFERENCE,
    what: str = "enhanced",
) -> tuple[FrameInfo, u.Quantity]:
    """The frame of ``paths`` observed nearest to ``when`` and the time between them.

    Raises
    ------
    ReportError
        No path given, or the nearest frame is more than ``max_difference``
        away.
    """
    if not paths:
        raise ReportError(f"no {what} frames given; pass the {what} FITS files to compare")
    infos = []
    for path in paths:
        header = _read_header(Path(path))
        try:
            infos.append(FrameInfo(Path(path), frame_time(header), header))
        except InputError as exc:
            raise InputError(f"{Path(path).name}: {exc}") from exc
    diffs = [abs((info.time - when).to(u.s)) for info in infos]
    best = int(np.argmin([d.value for d in diffs]))
    if diffs[best] > max_difference:
        raise ReportError(
            f"the nearest {what} frame {infos[best].path.name} is "
            f"{diffs[best].to(u.min):.1f} from the observation at {when.utc.isot}; "
            f"give frames within {max_difference.to(u.min):.0f}"
        )
    return infos[best], (infos[best].time - when).to(u.s)


def _hmi_input(
    info: FrameInfo, hmi_paths: Sequence[str | os.PathLike[str]], observable: str
) -> tuple[Frame, Path]:
    """The HMI input frame of the enhanced frame: by ENHINPUT name, else nearest in time."""
    from enhance_hmi.io import read_hmi

    paths = [Path(p) for p in hmi_paths]
    name = str(info.header.get("ENHINPUT", "")).strip()
    chosen = next((p for p in paths if name and p.name == name), None)
    if chosen is None:
        nearest, _ = nearest_frame(paths, info.time, max_difference=1 * u.min, what="HMI input")
        chosen = nearest.path
    frame = read_hmi(chosen, observable=observable)
    return frame, chosen


def target_case(
    hinode_path: str | os.PathLike[str],
    enhanced_paths: Sequence[str | os.PathLike[str]],
    *,
    hmi_paths: Sequence[str | os.PathLike[str]] = (),
    max_time_difference: u.Quantity = MAX_TIME_DIFFERENCE,
    psf_model: str | None = None,
    name: str | None = None,
) -> ValidationCase:
    """Build the validation case of a real Hinode file against enhanced HMI frames.

    Long because it chains the co-alignment's named steps and records each in the case;
    a further split would only pass a dozen intermediates along.

    Parameters
    ----------
    hinode_path : path-like
        Hinode SOT FITS file (BFI, NFI, SP level 2).
    enhanced_paths : sequence of path-like
        Enhanced frames (``enhance predict`` / workflow output); the one
        nearest in time is used.
    hmi_paths : sequence of path-like
        HMI input frames (level 1.5); the input of the chosen enhanced frame
        is found by its ``ENHINPUT`` name or time. Without them the baselines
        start from the enhanced frame re-observed with the HMI PSF
        (:func:`enhance_hmi.physics.reobserve`), which is noted on the report.
    max_time_difference : Quantity
        Largest accepted time between Hinode and the chosen frame.
    psf_model : str, optional
        HMI PSF model; default the enhanced frame's ``ENHPSF`` or "wachter".
    name : str, optional
        Target name; default the Hinode file stem.

    Returns
    -------
    ValidationCase
        With ``alignment`` holding the chosen frame, the time offset, the
        shift applied (enhanced pixels and arcsec) and the residual shift.

    Raises
    ------
    ReportError
        No frame close enough in time, no overlap, observable mismatch.
    """
    from enhance_hmi.physics import degrade

    hinode_path = Path(hinode_path)
    image = read_hinode(hinode_path)
    if image.wavelength is None:
        raise ReportError(f"{hinode_path.name}: wavelength unknown, cannot degrade to 28 cm")
    hin_obs, when, info, dt = _matched_frame(
        image, hinode_path, enhanced_paths, max_time_difference
    )
    notes = list(image.notes)
    psf = psf_model or str(info.header.get("ENHPSF", "") or DEFAULT_PSF_MODEL)
    pair = degrade(
        _filled(image.data, notes), image.pixel_scale, wavelength=image.wavelength, psf_model=psf
    )
    fine = degraded_grid_header(image, pair.target.shape, ENHANCED_PIXEL_SCALE)
    coarse = coarse_header(fine)
    emap = crop_map(load_map(info.path), fine)
    hmi_input = _hmi_map(info, hmi_paths, hin_obs, coarse) if hmi_paths else None
    enh, total, history = _coalign(emap, fine, pair.target)
    if hmi_input is not None:
        hmi = reproject(hmi_input[0], shifted(coarse, _pair(total), factor=2.0))
        hmi_source = hmi_input[1]
    else:
        hmi = _reobserved_enhanced(enh, psf, notes)
        hmi_source = "enhanced frame re-observed with the HMI PSF (no HMI input given)"
    box, cbox = _overlap(enh, pair.target, hmi)
    enh, hmi = enh[box], hmi[cbox]
    truth, calibration = _calibrated_truth(
        pair.target[box], pair.input[cbox], hmi, image.product, hin_obs, notes
    )
    if abs(dt) > 5 * u.min:
        notes.append(
            f"HMI and Hinode are {abs(dt).to(u.min):.1f} apart: granulation evolves in "
            "~5-10 min, expect lower correlations."
        )
    alignment = {
        "enhanced_file": info.path.name,
        "hmi_input": hmi_source,
        "hinode_time": when.utc.isot,
        "enhanced_time": info.time.utc.isot,
        "time_difference_s": float(dt.to_value(u.s)),
        **_shift_record(total, history, box),
        "calibration": calibration,
    }
    log.info("co-aligned %s with %s: shift %s px", info.path.name, hinode_path.name, total)
    context = {
        "hinode_product": image.product,
        "hinode_pixel_scale_arcsec": float(image.pixel_scale.to_value(u.arcsec)),
        "hinode_wavelength_AA": float(image.wavelength.to_value(u.AA)),
        "truth_aperture_m": float(pair.target_aperture.to_value(u.m)),
    }
    return ValidationCase(
        name=name or hinode_path.stem,
        observable=hin_obs,
        hmi=hmi,
        truth=truth,
        enhanced=enh,
        truth_label=f"Hinode {image.product} degraded to 28 cm",
        kind="hinode",
        psf_model=psf,
        provenance=_target_provenance(hinode_path, info, psf),
        notes=notes,
        alignment=alignment,
        context=context,
    )


def _matched_frame(
    image: HinodeImage,
    hinode_path: Path,
    enhanced_paths: Sequence[str | os.PathLike[str]],
    max_time_difference: u.Quantity,
) -> tuple[str, Time, FrameInfo, u.Quantity]:
    """Observable and time of the Hinode image, the enhanced frame nearest it and the offset."""
    hin_obs = "magnetogram" if image.product in ("nfi-v/i", "sp-level2") else "continuum"
    when = hinode_time(image)
    if when is None:
        raise InputError(f"{hinode_path.name} has no DATE_OBS; its time is needed to co-align")
    info, dt = nearest_frame(enhanced_paths, when, max_difference=max_time_difference)
    enh_obs = str(info.header.get("ENHOBS", hin_obs)).strip() or hin_obs
    if enh_obs != hin_obs:
        raise ReportError(
            f"the Hinode file is a {image.product} ({hin_obs}) but {info.path.name} is an "
            f"enhanced {enh_obs}; compare like with like"
        )
    return hin_obs, when, info, dt


def _shift_record(
    total: np.ndarray, history: list[list[float]], box: tuple[slice, slice]
) -> dict[str, Any]:
    """The co-alignment's entries of the case's ``alignment``: shifts and the overlap box."""
    scale = ENHANCED_PIXEL_SCALE.to_value(u.arcsec)
    return {
        "shift_applied_px": [round(float(v), 4) for v in total],
        "shift_applied_arcsec": [round(float(v) * scale, 4) for v in total],
        "shift_axes": '(dy, dx) along the Hinode image axes, enhanced pixels (0.252")',
        "residual_shift_px": history[-1],
        "refinement_history_px": history,
        "overlap_box_yx": [box[0].start, box[0].stop, box[1].start, box[1].stop],
    }


def _hmi_map(
    info: FrameInfo, hmi_paths: Sequence[str | os.PathLike[str]], observable: str, grid: fits.Header
) -> tuple[Any, str]:
    """The HMI input of the enhanced frame as a map cropped to ``grid``, and its file name."""
    import sunpy.map

    frame, path = _hmi_input(info, hmi_paths, observable)
    data = np.asarray(frame.data, np.float64)
    return crop_map(sunpy.map.Map(data, frame.header), grid, 12), path.name


def _overlap(
    enh: np.ndarray, truth: np.ndarray, hmi: np.ndarray
) -> tuple[tuple[slice, slice], tuple[slice, slice]]:
    """The largest box where all three images are finite, on the 0.252" and 0.504" grids."""
    ok = np.isfinite(enh) & np.isfinite(truth) & np.kron(np.isfinite(hmi), np.ones((2, 2), bool))
    box = largest_box(ok)
    cbox = (slice(box[0].start // 2, box[0].stop // 2), slice(box[1].start // 2, box[1].stop // 2))
    return box, cbox


def _target_provenance(hinode_path: Path, info: FrameInfo, psf: str) -> dict[str, str]:
    """Provenance of a Hinode case: both files with their sha256, the weights, the PSF.

    Also the network's symmetry count (``ENHSYMM`` of the enhanced file, when written).
    """
    return provenance_record(
        kind="Hinode target",
        hinode_file=hinode_path.name,
        hinode_sha256=sha256_file(hinode_path),
        enhanced_file=info.path.name,
        enhanced_sha256=sha256_file(info.path),
        weights_sha256=info.header.get("ENHWSHA"),
        enhanced_by=info.header.get("ENHVERS"),
        psf_model=psf,
        symmetries=info.header.get("ENHSYMM"),
    )


def _pair(shift: np.ndarray) -> tuple[float, float]:
    """A (dy, dx) shift array as the pair of floats the grid headers take."""
    return float(shift[0]), float(shift[1])


def _filled(data: np.ndarray, notes: list[str]) -> np.ndarray:
    """``data`` with missing (non-finite) pixels set to the median, noted in ``notes``."""
    bad = ~np.isfinite(data)
    if bad.any():
        notes.append(f"{100 * bad.mean():.2f} % of the Hinode pixels were missing and filled")
        data = np.where(bad, np.median(data[~bad]), data)
    return data


def _coalign(
    emap: Any, fine: fits.Header, truth: np.ndarray
) -> tuple[np.ndarray, np.ndarray, list[list[float]]]:
    """The enhanced map on the truth's grid after up to four shift refinements.

    Returns the reprojected enhanced image, the total (dy, dx) shift applied
    in enhanced pixels and the shift found at each step (the last one is the
    residual shift).
    """
    total = np.zeros(2)
    history = []
    for _ in range(4):
        enh = reproject(emap, shifted(fine, _pair(total)))
        ok = np.isfinite(enh) & np.isfinite(truth)
        box = largest_box(ok)
        found = refine_shift(truth[box], enh[box])
        history.append([round(found.shift[0], 4), round(found.shift[1], 4)])
        if max(abs(found.shift[0]), abs(found.shift[1])) < SHIFT_TOLERANCE:
            break
        total += np.asarray(found.shift)
    else:
        enh = reproject(emap, shifted(fine, _pair(total)))
        found = refine_shift(truth[box], enh[box])
        history.append([round(found.shift[0], 4), round(found.shift[1], 4)])
    return enh, total, history


def _reobserved_enhanced(enh: np.ndarray, psf: str, notes: list[str]) -> np.ndarray:
    """The enhanced image seen by HMI: the stand-in input when no HMI frame is given."""
    from enhance_hmi.physics import reobserve

    filled = np.where(np.isfinite(enh), enh, np.nanmedian(enh))
    hmi = reobserve(filled, psf_model=psf)
    hmi[~np.isfinite(enh[::2, ::2])] = np.nan
    notes.append(
        "No HMI input frame was given: the baselines start from the enhanced frame "
        "re-observed with the HMI PSF, and the forward residual is not meaningful."
    )
    return hmi


def _calibrated_truth(
    truth: np.ndarray,
    low: np.ndarray,
    hmi: np.ndarray,
    product: str,
    observable: str,
    notes: list[str],
) -> tuple[np.ndarray, dict[str, Any]]:
    """The truth in the units of the enhanced frame, and how it was calibrated.

    ``low`` is the Hinode field through the HMI PSF at 0.504"/px and ``hmi``
    the HMI input over the same box.
    """
    calibration: dict[str, Any]
    if observable == "continuum":
        from enhance_hmi.io.normalise import quiet_sun_level

        # The level of the same field seen at HMI resolution, as enhance train
        # and read_hmi measure it (the estimator is tuned for HMI's contrast).
        level = quiet_sun_level(low)
        truth = truth / level
        calibration = {
            "method": "divided by the quiet-Sun level of the field at HMI resolution",
            "factor": level,
        }
    elif product == "nfi-v/i":
        gain, offset = np.polyfit(low.ravel(), hmi.ravel(), 1)
        truth = gain * truth + offset
        calibration = {
            "method": 'linear fit of Hinode through the HMI PSF (0.504"/px) to the HMI input',
            "gain_G": float(gain),
            "offset_G": float(offset),
        }
        notes.append(f"NFI V/I mapped to gauss by a linear fit: {gain:.4g} G per unit V/I.")
    else:
        calibration = {"method": "none (SOT/SP Blos in gauss)"}
    return truth, calibration


def run_target(
    hinode_path: str | os.PathLike[str],
    enhanced_paths: Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    **options: Any,
) -> Path:
    """:func:`target_case` then :func:`enhance_hmi.validation.report.write_report`."""
    return write_report(target_case(hinode_path, enhanced_paths, **options), out_dir)
