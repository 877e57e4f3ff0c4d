"""High-resolution truth scenes, shared by training and validation.

The scene readers sit below both :mod:`enhance_hmi.training` (which degrades
scenes into training pairs) and :mod:`enhance_hmi.validation` (synthetic twins,
held-out evaluation), so neither imports the other for them.

A :class:`Scene` is a 2-D truth image with its pixel scale, in network-ready
physical units: continuum divided by the scene's quiet-Sun level measured at
HMI resolution, as on a real HMI frame (:func:`scene_quiet_sun_level`; the
paper's corrected normalisation, Sect. 3: the original code divided by the
image maximum), Blos in gauss.

Held-out data are disjoint regions: :func:`split_scene` cuts a scene into a
training part and a validation part separated by a guard band, so no
training patch ever overlaps a validation pixel (not even through the PSF
wings).

References
----------
.. [1] Díaz Baso, C. J. & Asensio Ramos, A. (2018), "Enhancing SDO/HMI images
   using deep learning", A&A 614, A5.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.io import fits

from enhance_hmi.errors import InputError
from enhance_hmi.physics import HINODE_NFI_NA_D1_WAVELENGTH, HMI_PIXEL_SCALE, HMI_WAVELENGTH

__all__ = [
    "SELF_SIMILAR_FACTOR",
    "Scene",
    "load_continuum_scene",
    "load_magnetogram_scene",
    "load_nfi_magnetogram_scene",
    "is_nfi_magnetogram",
    "NFI_VI_GAUSS_PER_DN",
    "parse_scene_spec",
    "read_scene_image",
    "scene_pixel_scale",
    "scene_quiet_sun_level",
    "held_out_columns",
    "held_out_part",
    "split_scene",
]

log = logging.getLogger(__name__)

#: Scale factor of the self-similar Blos training: an HMI magnetogram at
#: 0.504"/px is treated as a truth at 0.504"/4 = 0.126"/px. Its own blur
#: (HMI, 14 cm) then corresponds to a 56 cm telescope, finer than the 28 cm
#: target, so :func:`enhance_hmi.physics.degrade` applies the paper's physics to it.
SELF_SIMILAR_FACTOR = 4

#: Weak-field calibration range of the Hinode SOT/NFI Na I D1 (5896 Å) FG MG4
#: V/I product in ``../shared/data/hinode`` (level 0, V/I stored as int16
#: data numbers): Blos = k V/I with k in [1.5, 3] G per data number. No
#: literature value exists for this level-0 product. The range is a stated
#: bracket: k = 1.5 G/DN makes its plage (90th percentile of ``|V/I|`` over
#: field pixels at HMI resolution, 309 DN) ~460 G, k = 3 makes its
#: penumbrae and spots (99.9th percentile, 503 DN) ~1.5 kG, the field
#: strengths HMI shows at its resolution in plage and in spots of
#: strong active regions. Na I D1 saturates in umbrae (V/I stops growing
#: with B) and forms higher in the atmosphere than HMI's Fe I 6173 Å, so the
#: truth under-represents umbral fields and is smoother than the photosphere
#: HMI sees. Training draws k uniformly in the range for every patch.
NFI_VI_GAUSS_PER_DN: tuple[float, float] = (1.5, 3.0)


@dataclasses.dataclass
class Scene:
    """A truth image ready for :func:`enhance_hmi.physics.degrade`.

    Attributes
    ----------
    name : str
    data : numpy.ndarray
        float64, continuum in quiet-Sun units or Blos in gauss.
    pixel_scale : astropy.units.Quantity
        Arcsec per pixel (the degradation's physical scale).
    observable : {"continuum", "magnetogram"}
    wavelength : astropy.units.Quantity or None
        Wavelength the scene was observed at (SST wideband: 8542 Å).
    source : str
        File name and what was done to it (for the model card).
    gain : (float, float)
        Range of the factor from ``data`` to physical units: ``(1, 1)`` for
        a calibrated truth; for an uncalibrated one (Hinode NFI V/I) the
        uncertainty of its calibration, drawn per training patch.
    held_out : bool
        The file is itself a held-out region (a ``HOLDOUT`` card in its
        header, as the shipped truth crop carries): scored whole
        (:func:`held_out_part`), never trained on.
    """

    name: str
    data: np.ndarray
    pixel_scale: u.Quantity
    observable: str
    wavelength: u.Quantity | None
    source: str
    gain: tuple[float, float] = (1.0, 1.0)
    held_out: bool = False


def scene_quiet_sun_level(data: np.ndarray, pixel_scale: u.Quantity) -> float:
    """Quiet-Sun level of a high-resolution continuum scene, measured as on HMI.

    The scene is seen at HMI resolution (HMI PSF, 0.504"/px, no noise:
    :func:`enhance_hmi.physics.degrade`) and the level is
    :func:`enhance_hmi.io.normalise.quiet_sun_level` of that view, the estimator
    :func:`enhance_hmi.io.read_hmi` applies to real HMI frames. Training scenes,
    synthetic twins and real HMI input are therefore put in the same
    quiet-Sun units. The estimator is tuned for HMI's ~3.7 % granulation
    contrast; on a raw scene (MURaM: ~15 %) it would land on the granules.

    Parameters
    ----------
    data : numpy.ndarray
        Finite 2-D continuum image in any intensity unit.
    pixel_scale : astropy.units.Quantity
        Its pixel scale (finer than 0.252"/px).

    Raises
    ------
    InputError
        Non-finite pixels, or a level that is not positive.

    References
    ----------
    .. [1] Díaz Baso & Asensio Ramos (2018), A&A 614, A5, Sect. 3: inputs in
       units of the quiet-Sun intensity.
    """
    from enhance_hmi.io.normalise import quiet_sun_level
    from enhance_hmi.physics import degrade

    if not np.isfinite(data).all():
        raise InputError("a scene's quiet-Sun level needs every pixel finite")
    return quiet_sun_level(degrade(np.asarray(data, dtype=np.float64), pixel_scale).input)


def read_scene_image(path: str | os.PathLike[str]) -> tuple[np.ndarray, fits.Header]:
    """The first image HDU of a scene FITS file with two or more axes, as float64.

    Leading axes beyond two are reduced to their first plane.

    Raises
    ------
    InputError
        The file does not exist, is not FITS or holds no 2-D image.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"scene {path} does not exist")
    try:
        with fits.open(path) as hdul:
            for hdu in hdul:
                if hdu.is_image and hdu.data is not None and np.ndim(hdu.data) >= 2:
                    data = np.asarray(hdu.data, dtype=np.float64)
                    while data.ndim > 2:
                        data = data[0]
                    return data, hdu.header.copy()
    except OSError as exc:
        raise InputError(f"cannot read scene {path}: {exc}; give a FITS image") from exc
    raise InputError(f"scene {path} holds no 2-D image")


def parse_scene_spec(spec: str) -> tuple[Path, u.Quantity | None]:
    """``PATH`` or ``PATH:ARCSEC`` -> (path, pixel scale or None)."""
    path, _, scale = spec.rpartition(":") if ":" in spec else (spec, "", "")
    if not path:
        path, scale = spec, ""
    try:
        pixel = float(scale) * u.arcsec if scale else None
    except ValueError as exc:
        raise InputError(f"bad scene {spec!r}: write PATH or PATH:ARCSEC_PER_PIXEL") from exc
    return Path(path), pixel


def scene_pixel_scale(header: fits.Header, path: str | os.PathLike[str]) -> u.Quantity:
    """``CDELT1`` (or ``CDELT2``) in ``CUNIT1`` (arcsec when absent), as arcsec.

    Raises
    ------
    InputError
        Neither is present and non-zero.
    """
    for key in ("CDELT1", "CDELT2"):
        if float(header.get(key, 0.0) or 0.0) != 0.0:
            value = abs(float(header[key]))
            unit = u.Unit(str(header.get("CUNIT1", "arcsec")).strip() or "arcsec")
            return (value * unit).to(u.arcsec)
    raise InputError(
        f"{Path(path).name} has no CDELT1; give its pixel scale (PATH:ARCSEC, --pixel-scale)"
    )


def load_continuum_scene(
    path: str | os.PathLike[str], pixel_scale: u.Quantity | None = None
) -> Scene:
    """Read a high-resolution continuum FITS image and normalise it to the quiet Sun.

    The whole scene is divided by :func:`scene_quiet_sun_level`, its
    quiet-Sun level seen at HMI resolution (the units of a real HMI frame
    read by :func:`enhance_hmi.io.read_hmi`).

    Parameters
    ----------
    path : path-like
        FITS image: the first image HDU with two or more axes
        (:func:`read_scene_image`).
    pixel_scale : Quantity, optional
        Default: ``CDELT1`` (``CUNIT1``, arcsec when absent).

    Raises
    ------
    InputError
        Unreadable file, no image, non-finite pixels, no pixel scale.
    """
    path = Path(path)
    data, header = read_scene_image(path)
    if not np.isfinite(data).all():
        raise InputError(f"{path.name} has non-finite pixels; a truth scene must be complete")
    scale = pixel_scale if pixel_scale is not None else scene_pixel_scale(header, path)
    scale = u.Quantity(scale, u.arcsec)
    level = scene_quiet_sun_level(data, scale)
    wave = header.get("WAVELNTH")
    wavelength = float(wave) * u.AA if wave else None
    log.info('scene %s: %s, %.4f"/px, quiet Sun %.4g', path.name, data.shape, scale.value, level)
    return Scene(
        name=path.stem,
        data=data / level,
        pixel_scale=scale,
        observable="continuum",
        wavelength=wavelength,
        source=f"{path.name} divided by its quiet-Sun level at HMI resolution {level:.6g}",
        held_out="HOLDOUT" in header,
    )


def load_magnetogram_scene(
    path: str | os.PathLike[str], *, crop: int = 1600, factor: int = SELF_SIMILAR_FACTOR
) -> Scene:
    """A central crop of a real HMI magnetogram as a self-similar Blos truth.

    The frame is read with :func:`enhance_hmi.io.read_hmi` (north up, gauss) and
    the central ``crop`` x ``crop`` pixels (mu > ~0.8 for a 4096 frame) are
    kept. Its pixel scale is declared ``0.504"/factor``: structures are
    assumed self-similar over that factor (see :data:`SELF_SIMILAR_FACTOR`).
    Off-disk pixels must not fall in the crop.
    """
    from enhance_hmi.io import read_hmi

    frame = read_hmi(path, observable="magnetogram")
    ny, nx = frame.data.shape
    size = min(crop, ny, nx)
    y0, x0 = (ny - size) // 2, (nx - size) // 2
    data = np.asarray(frame.data[y0 : y0 + size, x0 : x0 + size], dtype=np.float64)
    bad = ~np.isfinite(data)
    if bad.mean() > 0.001:
        raise InputError(f"{Path(path).name}: the central {size}x{size} crop is not all on disk")
    data[bad] = 0.0
    scale = (HMI_PIXEL_SCALE / factor).to(u.arcsec)
    return Scene(
        name=Path(path).stem,
        data=data,
        pixel_scale=scale,
        observable="magnetogram",
        wavelength=HMI_WAVELENGTH,
        source=(
            f"{Path(path).name}: central {size}x{size} HMI pixels (Blos, G) declared at "
            f'{scale.value:.3f}"/px (self-similar factor {factor})'
        ),
    )


def is_nfi_magnetogram(header: fits.Header) -> bool:
    """True for a Hinode SOT narrow-band filtergraph Stokes V/I image."""
    instrument = str(header.get("INSTRUME", "")).upper()
    kind = str(header.get("OBS_TYPE", "")).upper()
    return instrument.startswith("SOT/NB") and "V/I" in kind


def load_nfi_magnetogram_scene(
    path: str | os.PathLike[str],
    *,
    gain: tuple[float, float] = NFI_VI_GAUSS_PER_DN,
    pixel_scale: u.Quantity | None = None,
) -> Scene:
    """A Hinode SOT/NFI V/I magnetogram as a Blos truth known up to a factor.

    The image keeps its data numbers (V/I as stored) and the scene carries
    ``gain``, the range of the weak-field factor k (Blos = k V/I, gauss per
    data number; :data:`NFI_VI_GAUSS_PER_DN`). Training draws one k per
    patch; evaluation picks values in the range
    (:func:`enhance_hmi.training.held_out_pairs`). The pixel scale is CDELT1
    (0.16"/px for NFI) unless given. The degradation treats it as seen at
    6173 Å (HMI's line), which it was not: see
    :data:`NFI_VI_GAUSS_PER_DN` for the caveats.

    Raises
    ------
    InputError
        Not an NFI V/I image, non-finite pixels, or a bad gain range.
    """
    path = Path(path)
    data, header = read_scene_image(path)
    if not is_nfi_magnetogram(header):
        raise InputError(
            f"{path.name} is not a Hinode SOT/NFI V/I image (INSTRUME "
            f"{header.get('INSTRUME')!r}, OBS_TYPE {header.get('OBS_TYPE')!r})"
        )
    if not np.isfinite(data).all():
        raise InputError(f"{path.name} has non-finite pixels; a truth scene must be complete")
    low, high = (float(g) for g in gain)
    if not 0 < low <= high:
        raise InputError(f"the calibration range must be 0 < low <= high; got {gain}")
    scale = pixel_scale if pixel_scale is not None else scene_pixel_scale(header, path)
    scale = u.Quantity(scale, u.arcsec)
    return Scene(
        name=path.stem,
        data=data - float(np.median(data)),
        pixel_scale=scale,
        observable="magnetogram",
        wavelength=HINODE_NFI_NA_D1_WAVELENGTH,
        source=(
            f"{path.name}: Hinode SOT/NFI Na I 5896 V/I ({header.get('DATE_OBS', '?')}), "
            f'{scale.value:.3f}"/px, Blos = k V/I with k in [{low}, {high}] G/DN '
            "drawn per patch (median V/I subtracted)"
        ),
        gain=(low, high),
    )


def held_out_columns(nx: int, pixel_scale: u.Quantity, holdout: float = 0.35) -> tuple[int, int]:
    """``(cut, start)``: training columns are ``[0, cut)``, held-out ``[start, nx)``.

    The right ``holdout`` fraction is held out; the guard band ``[cut, start)``
    is 4 HMI pixels wide (beyond the HMI PSF core), so the degradation of the
    held-out part never sees a training pixel. Training
    (:func:`split_scene`) and validation twins use this one definition.
    """
    if not 0 < holdout < 1:
        raise InputError(f"holdout must be a fraction between 0 and 1, got {holdout}")
    guard = int(np.ceil(4 * (HMI_PIXEL_SCALE / pixel_scale).decompose().value))
    cut = int(round(nx * (1 - holdout)))
    return cut, cut + guard


def held_out_part(scene: Scene, *, holdout: float = 0.35) -> Scene:
    """The part of ``scene`` that is scored: all of a held-out scene, else :func:`split_scene`'s."""
    if scene.held_out:
        return dataclasses.replace(scene, name=f"{scene.name}[held-out]")
    return split_scene(scene, holdout=holdout)[1]


def split_scene(scene: Scene, *, holdout: float = 0.35) -> tuple:
    """Split ``scene`` by columns into (train, held-out) scenes.

    See :func:`held_out_columns` for the columns and the guard band.

    Raises
    ------
    InputError
        The scene is itself a held-out region (``scene.held_out``), or its
        held-out part would be too small.
    """
    if scene.held_out:
        raise InputError(
            f"{scene.name} is itself a held-out region (HOLDOUT in its header): it is "
            "scored whole, never split or trained on"
        )
    ny, nx = scene.data.shape
    cut, start = held_out_columns(nx, scene.pixel_scale, holdout)
    train = dataclasses.replace(scene, name=f"{scene.name}[train]", data=scene.data[:, :cut])
    held = dataclasses.replace(scene, name=f"{scene.name}[held-out]", data=scene.data[:, start:])
    if min(held.data.shape) * scene.pixel_scale < 8 * HMI_PIXEL_SCALE:
        raise InputError(f"held-out part of {scene.name} is too small ({held.data.shape})")
    return train, held
