"""Grids of the Hinode validation target: nested WCS headers, reprojection, overlap.

The degraded Hinode image gets a WCS nested in the Hinode one
(:func:`degraded_grid_header`), the HMI input grid is the one twice as
coarse nested in it (:func:`coarse_header`), and enhanced and HMI frames are
reprojected onto them through sunpy, following solar differential rotation
between the observation times. Used by :mod:`enhance_hmi.validation.target`.

Hinode is in low Earth orbit: its observer is taken to be Earth's centre at
the observation time (a parallax of up to ~1" that the cross-correlation of
the target absorbs).
"""

from __future__ import annotations

from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.io import fits
from astropy.time import Time

from enhance_hmi.errors import InputError, ReportError, TimeFormatError
from enhance_hmi.time import parse_time
from enhance_hmi.validation.hinode import HinodeImage

__all__ = [
    "MIN_OVERLAP",
    "degraded_grid_header",
    "coarse_header",
    "shifted",
    "reproject",
    "load_map",
    "crop_map",
    "largest_box",
    "image_hdu",
    "hinode_time",
    "observer_header",
]

#: Smallest usable overlap, in enhanced pixels per side.
MIN_OVERLAP = 32


def image_hdu(hdul: fits.HDUList, path: Path) -> int:
    """Index of the first 2-D image HDU of ``hdul``; :class:`InputError` if there is none."""
    for index, hdu in enumerate(hdul):
        if hdu.is_image and int(hdu.header.get("NAXIS", 0)) == 2:
            return index
    raise InputError(f"{path} holds no 2-D image HDU; give an enhanced FITS frame")


def hinode_time(image: HinodeImage) -> Time | None:
    """The Hinode observation time (``DATE_OBS``, UTC as SOT writes it) in TAI; None if absent."""
    if not image.date_obs:
        return None
    try:
        return parse_time(str(image.date_obs), scale="utc")
    except TimeFormatError as exc:
        raise InputError(f"the Hinode DATE_OBS {image.date_obs!r} is not a time: {exc}") from exc


def observer_header(image: HinodeImage, when: Time) -> fits.Header:
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
    """WCS header of ``image`` resampled to ``scale`` by :func:`enhance_hmi.physics.degrade`.

    The degraded grid starts at the outer corner of Hinode pixel (0, 0) and
    keeps its rotation and pointing: 0-based pixel ``j`` has its centre at
    Hinode pixel coordinate ``-0.5 + (j + 0.5) * s`` with ``s = scale /
    hinode_scale``. Returns a sunpy ``MetaDict`` (observer: Earth).
    """
    import sunpy.map

    when = hinode_time(image)
    if when is None:
        raise InputError("the Hinode file has no DATE_OBS; its time is needed to co-align")
    smap = sunpy.map.Map(image.data, observer_header(image, when))
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

    Inverse of :func:`enhance_hmi.io.upsample_header`: ``CRPIX' = (CRPIX +
    (factor - 1) / 2) / factor``, ``CDELT' = factor * CDELT``.
    """
    out = header.copy()
    for axis in (1, 2):
        out[f"crpix{axis}"] = (float(header[f"crpix{axis}"]) + (factor - 1) / 2.0) / factor
        out[f"cdelt{axis}"] = float(header[f"cdelt{axis}"]) * factor
        out[f"naxis{axis}"] = int(header[f"naxis{axis}"]) // factor
    return out


def shifted(header, shift: tuple[float, float], factor: float = 1.0):
    """Header whose reprojection moves the image by ``shift`` (dy, dx) pixels / factor."""
    out = header.copy()
    out["crpix1"] = float(header["crpix1"]) + shift[1] / factor
    out["crpix2"] = float(header["crpix2"]) + shift[0] / factor
    return out


def target_wcs(header):
    import sunpy.map

    shape = (int(header["naxis2"]), int(header["naxis1"]))
    return sunpy.map.Map(np.zeros(shape, dtype=np.float32), header).wcs


def reproject(smap, header) -> np.ndarray:
    """Reproject ``smap`` onto ``header``'s grid (bicubic), following solar rotation."""
    from sunpy.coordinates import propagate_with_solar_surface

    wcs = target_wcs(header)
    shape = (int(header["naxis2"]), int(header["naxis1"]))
    with propagate_with_solar_surface():
        out = smap.reproject_to(wcs, algorithm="interpolation", order="bicubic")
    data = np.asarray(out.data, dtype=np.float64)
    if data.shape != shape:
        raise ReportError(f"reprojection gave shape {data.shape}, expected {shape}")
    return data


def load_map(path: Path):
    """sunpy Map of the first 2-D image of a FITS file."""
    import sunpy.map

    with fits.open(path) as hdul:
        index = image_hdu(hdul, path)
        header = hdul[index].header.copy()
        data = np.asarray(hdul[index].data, dtype=np.float64)
    return sunpy.map.Map(data, header)


def crop_map(smap, header, margin: int = 24):
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


def largest_box(ok: np.ndarray) -> tuple[slice, slice]:
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
        worst = max(bad, key=bad.__getitem__)
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
