"""Real Hinode validation target: co-align an enhanced HMI frame with Hinode SOT.

Steps (Díaz Baso & Asensio Ramos 2018, Sect. 4 [1]_):

1. read the Hinode SOT file (:func:`enhance.validation.hinode.read_hinode`);
2. degrade it to a 28 cm aperture at its own wavelength and resample it to
   0.252"/px (:func:`enhance.physics.degrade`; the 0.504"/px HMI-PSF version
   of the same call is kept for calibration); the degraded grid gets a WCS
   nested in the Hinode one (same origin, rotation and pointing);
3. pick the enhanced HMI frame nearest in time to the Hinode observation;
4. reproject it through WCS (sunpy + reproject, with solar differential
   rotation between the two times) onto the degraded Hinode grid, and the
   HMI input frame onto the 0.504"/px grid nested in it;
5. refine the alignment by sub-pixel cross-correlation
   (:func:`enhance.validation.coalign.refine_shift`) and reproject again with
   the shift folded into the WCS (one interpolation only); the shift applied
   is reported, with the residual shift measured afterwards;
6. crop to the largest rectangle where every image has data and hand the
   three images to :mod:`enhance.validation.report`.

Hinode is in low Earth orbit: its observer is taken to be Earth's centre at
the observation time (a parallax of up to ~1" that the cross-correlation
absorbs, as it absorbs the few-arcsec SOT pointing uncertainty).

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

from enhance.errors import InputError, ReportError, TimeFormatError
from enhance.physics import ENHANCED_PIXEL_SCALE
from enhance.provenance import provenance_record, sha256_file
from enhance.time import parse_time
from enhance.validation.coalign import refine_shift
from enhance.validation.hinode import HinodeImage, read_hinode
from enhance.validation.report import ValidationCase, write_report

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
#: Smallest usable overlap, in enhanced pixels per side.
MIN_OVERLAP = 32


@dataclass(frozen=True)
class FrameInfo:
    """An enhanced (or HMI input) frame file and its observation time."""

    path: Path
    time: Time
    header: fits.Header


def _image_hdu(hdul: fits.HDUList, path: Path) -> int:
    for index, hdu in enumerate(hdul):
        if hdu.is_image and int(hdu.header.get("NAXIS", 0)) == 2:
            return index
    raise InputError(f"{path} holds no 2-D image HDU; give an enhanced FITS frame")


def frame_time(header: fits.Header) -> Time:
    """Observation time of a frame (TAI): ``T_OBS``, else ``T_REC``, else ``DATE-OBS``.

    ``T_OBS`` and ``T_REC`` are JSOC times, TAI unless they name a scale;
    ``DATE-OBS`` (or ``DATE_OBS``) is in the header's ``TIMESYS``, UTC by
    default as the FITS standard has it. A card that is not a time is
    skipped. Read by :func:`enhance.time.parse_time`.

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


def _hinode_time(image: HinodeImage) -> Time | None:
    """The Hinode observation time (``DATE_OBS``, UTC as SOT writes it) in TAI; None if absent."""
    if not image.date_obs:
        return None
    try:
        return parse_time(str(image.date_obs), scale="utc")
    except TimeFormatError as exc:
        raise InputError(f"the Hinode DATE_OBS {image.date_obs!r} is not a time: {exc}") from exc


def _read_header(path: Path) -> fits.Header:
    try:
        with fits.open(path) as hdul:
            header = hdul[_image_hdu(hdul, path)].header.copy()
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


def _observer_header(image: HinodeImage, when: Time) -> fits.Header:
    """Hinode header with an explicit Earth observer (Hinode is in low Earth orbit)."""
    from sunpy.coordinates import get_earth
    from sunpy.sun import constants as sun_constants

    header = image.header.copy()
    earth = get_earth(when)
    header["HGLN_OBS"] = float(earth.lon.to_value(u.deg))
    header["HGLT_OBS"] = float(earth.lat.to_value(u.deg))
    header["DSUN_OBS"] = float(earth.radius.to_value(u.m))
    header.setdefault("RSUN_REF", float(sun_constants.radius.to_value(u.m)))
    return header


def degraded_grid_header(image: HinodeImage, shape: tuple[int, int], scale: u.Quantity):
    """WCS header of ``image`` resampled to ``scale`` by :func:`enhance.physics.degrade`.

    The degraded grid starts at the outer corner of Hinode pixel (0, 0) and
    keeps its rotation and pointing: 0-based pixel ``j`` has its centre at
    Hinode pixel coordinate ``-0.5 + (j + 0.5) * s`` with ``s = scale /
    hinode_scale``. Returns a sunpy ``MetaDict`` (observer: Earth).
    """
    import sunpy.map

    when = _hinode_time(image)
    if when is None:
        raise InputError("the Hinode file has no DATE_OBS; its time is needed to co-align")
    smap = sunpy.map.Map(image.data, _observer_header(image, when))
    ratio = float((scale / image.pixel_scale).decompose())
    ref = smap.reference_pixel
    ref_pix = [(float(p.to_value(u.pix)) + 0.5) / ratio - 0.5 for p in (ref.x, ref.y)]
    return sunpy.map.make_fitswcs_header(
        np.empty(shape, dtype=np.float32),
        smap.reference_coordinate,
        reference_pixel=ref_pix * u.pix,
        scale=[scale.to_value(u.arcsec)] * 2 * u.arcsec / u.pix,
        rotation_matrix=smap.rotation_matrix,
        telescope="Hinode",
        instrument=str(image.header.get("INSTRUME", "SOT")),
        wavelength=image.wavelength,
    )


def coarse_header(header, factor: int = 2):
    """Header of the grid ``factor`` times coarser nested in ``header``'s grid.

    Inverse of :func:`enhance.io.upsample_header`: ``CRPIX' = (CRPIX +
    (factor - 1) / 2) / factor``, ``CDELT' = factor * CDELT``.
    """
    out = header.copy()
    for axis in (1, 2):
        out[f"crpix{axis}"] = (float(header[f"crpix{axis}"]) + (factor - 1) / 2.0) / factor
        out[f"cdelt{axis}"] = float(header[f"cdelt{axis}"]) * factor
        out[f"naxis{axis}"] = int(header[f"naxis{axis}"]) // factor
    return out


def _shifted(header, shift: tuple[float, float], factor: float = 1.0):
    """Header whose reprojection moves the image by ``shift`` (dy, dx) pixels / factor."""
    out = header.copy()
    out["crpix1"] = float(header["crpix1"]) + shift[1] / factor
    out["crpix2"] = float(header["crpix2"]) + shift[0] / factor
    return out


def _target_wcs(header):
    import sunpy.map

    shape = (int(header["naxis2"]), int(header["naxis1"]))
    return sunpy.map.Map(np.zeros(shape, dtype=np.float32), header).wcs


def _reproject(smap, header) -> np.ndarray:
    """Reproject ``smap`` onto ``header``'s grid (bicubic), following solar rotation."""
    from sunpy.coordinates import propagate_with_solar_surface

    wcs = _target_wcs(header)
    shape = (int(header["naxis2"]), int(header["naxis1"]))
    with propagate_with_solar_surface():
        out = smap.reproject_to(wcs, algorithm="interpolation", order="bicubic")
    data = np.asarray(out.data, dtype=np.float64)
    if data.shape != shape:
        raise ReportError(f"reprojection gave shape {data.shape}, expected {shape}")
    return data


def _load_map(path: Path):
    """sunpy Map of the first 2-D image of a FITS file."""
    import sunpy.map

    with fits.open(path) as hdul:
        index = _image_hdu(hdul, path)
        header = hdul[index].header.copy()
        data = np.asarray(hdul[index].data, dtype=np.float64)
    return sunpy.map.Map(data, header)


def _crop_map(smap, header, margin: int = 24):
    """The part of ``smap`` that covers ``header``'s grid, plus ``margin`` pixels."""
    import sunpy.map
    from sunpy.coordinates import propagate_with_solar_surface

    ny, nx = int(header["naxis2"]), int(header["naxis1"])
    target = sunpy.map.Map(np.zeros((ny, nx), dtype=np.float32), header)
    corners = target.pixel_to_world(
        [-0.5, nx - 0.5, -0.5, nx - 0.5] * u.pix, [-0.5, -0.5, ny - 0.5, ny - 0.5] * u.pix
    )
    with propagate_with_solar_surface():
        px, py = smap.world_to_pixel(corners)
    px, py = np.asarray(px.to_value(u.pix)), np.asarray(py.to_value(u.pix))
    if not (np.isfinite(px).all() and np.isfinite(py).all()):
        raise ReportError("the Hinode field of view is not on the solar disk of the HMI frame")
    x0 = max(0, int(np.floor(px.min())) - margin)
    y0 = max(0, int(np.floor(py.min())) - margin)
    x1 = min(smap.data.shape[1] - 1, int(np.ceil(px.max())) + margin)
    y1 = min(smap.data.shape[0] - 1, int(np.ceil(py.max())) + margin)
    if x1 - x0 < 4 or y1 - y0 < 4:
        raise ReportError("the HMI frame does not overlap the Hinode field of view")
    return smap.submap([x0, y0] * u.pix, top_right=[x1, y1] * u.pix)


def _largest_box(ok: np.ndarray) -> tuple[slice, slice]:
    """Largest rectangle of True found by trimming the worst edge, even-aligned."""
    y0, y1, x0, x1 = 0, ok.shape[0], 0, ok.shape[1]
    while y1 - y0 >= MIN_OVERLAP and x1 - x0 >= MIN_OVERLAP:
        box = ok[y0:y1, x0:x1]
        if box.all():
            break
        bad = {
            "top": 1 - box[-1].mean(),
            "bottom": 1 - box[0].mean(),
            "left": 1 - box[:, 0].mean(),
            "right": 1 - box[:, -1].mean(),
        }
        worst = max(bad, key=bad.get)
        if worst == "bottom":
            y0 += 1
        elif worst == "top":
            y1 -= 1
        elif worst == "left":
            x0 += 1
        else:
            x1 -= 1
    y0, x0 = y0 + y0 % 2, x0 + x0 % 2
    y1, x1 = y1 - y1 % 2, x1 - x1 % 2
    if y1 - y0 < MIN_OVERLAP or x1 - x0 < MIN_OVERLAP or not ok[y0:y1, x0:x1].all():
        raise ReportError(
            f"the enhanced frame and the degraded Hinode image overlap in less than "
            f"{MIN_OVERLAP}x{MIN_OVERLAP} pixels; give a frame that covers the Hinode field"
        )
    return slice(y0, y1), slice(x0, x1)


def _hmi_input(info: FrameInfo, hmi_paths: Sequence[str | os.PathLike[str]], observable: str):
    """The HMI input frame of the enhanced frame: by ENHINPUT name, else nearest in time."""
    from enhance.io import read_hmi

    paths = [Path(p) for p in hmi_paths]
    name = str(info.header.get("ENHINPUT", "")).strip()
    chosen = next((p for p in paths if name and p.name == name), None)
    if chosen is None:
        chosen, _ = nearest_frame(paths, info.time, max_difference=1 * u.min, what="HMI input")
        chosen = chosen.path
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
        (:func:`enhance.physics.reobserve`), which is noted on the report.
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
    import sunpy.map

    from enhance.physics import degrade, reobserve

    hinode_path = Path(hinode_path)
    image = read_hinode(hinode_path)
    if image.wavelength is None:
        raise ReportError(f"{hinode_path.name}: wavelength unknown, cannot degrade to 28 cm")
    hin_obs = "magnetogram" if image.product in ("nfi-v/i", "sp-level2") else "continuum"
    when = _hinode_time(image)
    if when is None:
        raise InputError(f"{hinode_path.name} has no DATE_OBS; its time is needed to co-align")
    info, dt = nearest_frame(enhanced_paths, when, max_difference=max_time_difference)
    enh_obs = str(info.header.get("ENHOBS", hin_obs)).strip() or hin_obs
    if enh_obs != hin_obs:
        raise ReportError(
            f"the Hinode file is a {image.product} ({hin_obs}) but {info.path.name} is an "
            f"enhanced {enh_obs}; compare like with like"
        )
    notes = list(image.notes)
    data = image.data
    bad = ~np.isfinite(data)
    if bad.any():
        notes.append(f"{100 * bad.mean():.2f} % of the Hinode pixels were missing and filled")
        data = np.where(bad, np.median(data[~bad]), data)
    pair = degrade(data, image.pixel_scale, wavelength=image.wavelength)
    fine = degraded_grid_header(image, pair.target.shape, ENHANCED_PIXEL_SCALE)
    coarse = coarse_header(fine)
    emap = _crop_map(_load_map(info.path), fine)
    hmi_frame = None
    if hmi_paths:
        hmi_frame, hmi_path = _hmi_input(info, hmi_paths, enh_obs)
        hmap = _crop_map(
            sunpy.map.Map(np.asarray(hmi_frame.data, np.float64), hmi_frame.header), coarse, 12
        )
    psf = psf_model or str(info.header.get("ENHPSF", "") or "wachter")

    truth = pair.target
    total = np.zeros(2)
    history = []
    for _ in range(4):
        enh = _reproject(emap, _shifted(fine, tuple(total)))
        ok = np.isfinite(enh) & np.isfinite(truth)
        box = _largest_box(ok)
        found = refine_shift(truth[box], enh[box])
        history.append([round(found.shift[0], 4), round(found.shift[1], 4)])
        if max(abs(found.shift[0]), abs(found.shift[1])) < SHIFT_TOLERANCE:
            break
        total += np.asarray(found.shift)
    else:
        enh = _reproject(emap, _shifted(fine, tuple(total)))
        found = refine_shift(truth[box], enh[box])
        history.append([round(found.shift[0], 4), round(found.shift[1], 4)])
    if hmi_frame is not None:
        hmi = _reproject(hmap, _shifted(coarse, tuple(total), factor=2.0))
        hmi_source = hmi_path.name
    else:
        filled = np.where(np.isfinite(enh), enh, np.nanmedian(enh))
        hmi = reobserve(filled, psf_model=psf)
        hmi[~np.isfinite(enh[::2, ::2])] = np.nan
        hmi_source = "enhanced frame re-observed with the HMI PSF (no HMI input given)"
        notes.append(
            "No HMI input frame was given: the baselines start from the enhanced frame "
            "re-observed with the HMI PSF, and the forward residual is not meaningful."
        )
    ok = np.isfinite(enh) & np.isfinite(truth) & np.kron(np.isfinite(hmi), np.ones((2, 2), bool))
    box = _largest_box(ok)
    cbox = (slice(box[0].start // 2, box[0].stop // 2), slice(box[1].start // 2, box[1].stop // 2))
    truth, enh, hmi = truth[box], enh[box], hmi[cbox]
    calibration: dict[str, Any]
    if hin_obs == "continuum":
        from enhance.io.normalise import quiet_sun_level

        # The level of the same field seen at HMI resolution, as enhance train
        # and read_hmi measure it (the estimator is tuned for HMI's contrast).
        level = quiet_sun_level(pair.input[cbox])
        truth = truth / level
        calibration = {
            "method": "divided by the quiet-Sun level of the field at HMI resolution",
            "factor": level,
        }
    elif image.product == "nfi-v/i":
        low = pair.input[cbox]
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
    if abs(dt) > 5 * u.min:
        notes.append(
            f"HMI and Hinode are {abs(dt).to(u.min):.1f} apart: granulation evolves in "
            "~5-10 min, expect lower correlations."
        )
    scale = ENHANCED_PIXEL_SCALE.to_value(u.arcsec)
    alignment = {
        "enhanced_file": info.path.name,
        "hmi_input": hmi_source,
        "hinode_time": when.utc.isot,
        "enhanced_time": info.time.utc.isot,
        "time_difference_s": float(dt.to_value(u.s)),
        "shift_applied_px": [round(float(v), 4) for v in total],
        "shift_applied_arcsec": [round(float(v) * scale, 4) for v in total],
        "shift_axes": '(dy, dx) along the Hinode image axes, enhanced pixels (0.252")',
        "residual_shift_px": history[-1],
        "refinement_history_px": history,
        "overlap_box_yx": [box[0].start, box[0].stop, box[1].start, box[1].stop],
        "calibration": calibration,
    }
    log.info("co-aligned %s with %s: shift %s px", info.path.name, hinode_path.name, total)
    prov = provenance_record(
        kind="Hinode target",
        hinode_file=hinode_path.name,
        hinode_sha256=sha256_file(hinode_path),
        enhanced_file=info.path.name,
        enhanced_sha256=sha256_file(info.path),
        weights_sha256=info.header.get("ENHWSHA"),
        enhanced_by=info.header.get("ENHVERS"),
        psf_model=psf,
    )
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
        provenance=prov,
        notes=notes,
        alignment=alignment,
        context=context,
    )


def run_target(
    hinode_path: str | os.PathLike[str],
    enhanced_paths: Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    **options: Any,
) -> Path:
    """:func:`target_case` then :func:`enhance.validation.report.write_report`."""
    return write_report(target_case(hinode_path, enhanced_paths, **options), out_dir)
