"""Synthetic twin: validate Enhance on a high-resolution scene degraded by our physics.

A real high-resolution image (a MURaM simulation snapshot, or an SST/CRISP
MOMFBD-restored frame) stands in for the Hinode "truth". From it
:func:`enhance_hmi.physics.degrade` makes both the HMI-like input (HMI PSF,
0.504"/px, noise) and the 28 cm truth (Airy PSF of a 28 cm aperture,
0.252"/px); the network enhances the input with
:func:`enhance_hmi.inference.enhance_array`, and the same report as for a real
Hinode target is written (:mod:`enhance_hmi.validation.report`). The twin runs
offline and proves the whole machinery; real Hinode files are used when a
user has them (:mod:`enhance_hmi.validation.target`).

Continuum scenes are put in quiet-Sun units first, exactly as ``enhance
train`` puts its training scenes and :func:`enhance_hmi.io.read_hmi` a real HMI
frame: divided by the quiet-Sun level of the whole scene seen at HMI
resolution (:func:`enhance_hmi.scenes.scene_quiet_sun_level`). The
estimator is tuned for HMI's ~3.7 % contrast; applied to a raw MURaM scene
(~15 % contrast) it would land on the granules and put the input 16 % below
the quiet-Sun units the network expects [1]_.

References
----------
.. [1] Díaz Baso, C. J. & Asensio Ramos, A. (2018), "Enhancing SDO/HMI images
   using deep learning", A&A 614, A5, Sects. 2-4.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import astropy.units as u
import numpy as np
from astropy.io import fits

from enhance_hmi.errors import ConfigError, InputError
from enhance_hmi.frame import OBSERVABLES
from enhance_hmi.physics import HMI_WAVELENGTH
from enhance_hmi.physics.psf import DEFAULT_PSF_MODEL
from enhance_hmi.provenance import provenance_record, sha256_file
from enhance_hmi.scenes import (
    held_out_columns,
    read_scene_image,
    scene_pixel_scale,
    scene_quiet_sun_level,
)
from enhance_hmi.settings import check_symmetries
from enhance_hmi.validation.report import ValidationCase, write_report

if TYPE_CHECKING:
    from enhance_hmi.model import EnhanceNet
    from enhance_hmi.model.uncertainty import EnhanceWithUncertainty

__all__ = ["TwinScene", "read_scene", "twin_case", "run_twin", "PAPER_NOISE"]

log = logging.getLogger(__name__)

#: Input noise of the paper's training pairs (Sect. 3): 1e-3 in quiet-Sun
#: units for continuum, 1e-2 kG = 10 G for Blos [1]_.
PAPER_NOISE = {"continuum": 1e-3, "magnetogram": 10.0}


@dataclass
class TwinScene:
    """A high-resolution scene read from FITS."""

    data: np.ndarray
    pixel_scale: u.Quantity
    path: Path
    header: fits.Header
    normalisation: dict[str, Any]


def read_scene(
    path: str | os.PathLike[str],
    *,
    pixel_scale: u.Quantity | float | None = None,
    observable: str = "continuum",
    crop: int | None = None,
    holdout: float | None = None,
) -> TwinScene:
    """Read a high-resolution scene, crop it and put it in network units.

    Parameters
    ----------
    path : path-like
        FITS file; the first 2-D image HDU is used.
    pixel_scale : Quantity or float (arcsec), optional
        Pixel scale of the scene; default the header's ``CDELT1`` (arcsec).
    observable : {"continuum", "magnetogram"}
        Continuum is divided by the quiet-Sun level of the whole scene at HMI
        resolution, as ``enhance train`` divides it (of the region used when
        the scene has non-finite pixels); magnetograms must be in gauss and
        are used as they are.
    crop : int, optional
        Keep the central ``crop`` x ``crop`` pixels (default: whole scene).
    holdout : float, optional
        Keep only the held-out columns of ``enhance train``'s split (the right
        ``holdout`` fraction beyond the guard band, see
        :func:`enhance_hmi.scenes.held_out_columns`), so the twin scores
        the shipped networks on pixels they never saw. Applied before ``crop``.

    Raises
    ------
    InputError
        Unreadable file, no image, non-finite pixels, crop too large.
    ConfigError
        Unknown observable or no usable pixel scale.
    """
    path = Path(path)
    if observable not in OBSERVABLES:
        raise ConfigError(f"unknown observable {observable!r}; use one of {', '.join(OBSERVABLES)}")
    data, header = read_scene_image(path)
    if pixel_scale is None:
        try:
            pixel_scale = scene_pixel_scale(header, path)
        except InputError as exc:
            raise ConfigError(str(exc)) from exc
    scale = u.Quantity(pixel_scale, u.arcsec)
    # Continuum is put in quiet-Sun units over the whole scene when it is
    # complete, exactly as enhance train puts its scenes (so a held-out twin
    # scores the pixels and units of enhance evaluate); a scene with holes is
    # normalised over the region used.
    whole_level = (
        scene_quiet_sun_level(data, scale)
        if observable == "continuum" and np.isfinite(data).all()
        else None
    )
    x_offset = 0
    if holdout is not None:
        x_offset = held_out_columns(data.shape[1], scale, float(holdout))[1]
        data = data[:, x_offset:]
    data, region = _central_crop(data, crop, x_offset=x_offset, name=path.name)
    if not np.isfinite(data).all():
        raise InputError(f"scene {path.name} has non-finite pixels in the region used")
    norm: dict[str, Any]
    if observable == "continuum":
        level = whole_level if whole_level is not None else scene_quiet_sun_level(data, scale)
        data = data / level
        norm = {
            "method": "quiet-Sun level at HMI resolution (as enhance train and read_hmi), of the "
            + ("whole scene" if whole_level is not None else "region used"),
            "factor": level,
        }
    else:
        norm = {"method": "none (gauss)", "factor": 1.0}
    return TwinScene(
        data=data,
        pixel_scale=scale,
        path=path,
        header=header,
        normalisation={**norm, "region_yx": region},
    )


def _central_crop(
    data: np.ndarray, crop: int | None, *, x_offset: int, name: str
) -> tuple[np.ndarray, list[int]]:
    """The central ``crop`` square of ``data`` (all of it for None) and its region in the scene.

    The region is ``[y0, y1, x0, x1]`` in the pixels of the scene, whose
    first ``x_offset`` columns were cut off before ``data``.
    """
    if crop is None:
        return data, [0, data.shape[0], x_offset, x_offset + data.shape[1]]
    crop = int(crop)
    ny, nx = data.shape
    if crop < 16 or crop > min(ny, nx):
        raise InputError(
            f"crop {crop} does not fit the {ny}x{nx} scene {name}; use 16..{min(ny, nx)}"
        )
    y0, x0 = (ny - crop) // 2, (nx - crop) // 2
    region = [y0, y0 + crop, x_offset + x0, x_offset + x0 + crop]
    return data[y0 : y0 + crop, x0 : x0 + crop], region


def twin_case(
    scene: TwinScene,
    model: Any,
    *,
    observable: str = "continuum",
    input_scale: float = 1.0,
    psf_model: str = DEFAULT_PSF_MODEL,
    noise_sigma: float | None = None,
    seed: int = 0,
    wavelength: u.Quantity = HMI_WAVELENGTH,
    device: str = "auto",
    tile: int = 256,
    name: str | None = None,
    weights_info: dict[str, Any] | None = None,
    symmetries: int = 1,
) -> ValidationCase:
    """Degrade ``scene``, enhance the HMI-like input with ``model``, build the case.

    Long for its documentation of thirteen options; the body is one degradation, one
    enhancement and the case record.

    Parameters
    ----------
    scene : TwinScene
        From :func:`read_scene` (quiet-Sun units or gauss).
    model : enhance_hmi.model.EnhanceNet
        The network.
    observable : {"continuum", "magnetogram"}
    input_scale : float
        Network units = physical / ``input_scale`` (weights sidecar
        ``input_normalisation.scale``).
    psf_model : str
        HMI PSF of the degradation (and of the baselines); should be the one
        the network was trained for.
    noise_sigma : float, optional
        Input noise; default :data:`PAPER_NOISE` of the observable.
    seed : int
        Noise seed (the report is reproducible).
    wavelength : Quantity
        Wavelength of the 28 cm Airy PSF of the truth (6173 Å: the twin
        pretends the scene is seen in the HMI line).
    device, tile
        Inference options (:func:`enhance_hmi.inference.enhance_array`).
    name : str, optional
        Target name; default the scene's file stem.
    weights_info : dict, optional
        Weights provenance (file, sha256) for the report.
    symmetries : int
        Average the network over this many symmetries of the forward model
        (:func:`enhance_hmi.inference.symmetry.symmetry_group`), as ``enhance
        predict --symmetries`` does; recorded in the report's context and
        provenance.
    """
    from enhance_hmi.inference import enhance_array, enhance_array_with_sigma, symmetry_group
    from enhance_hmi.model.uncertainty import EnhanceWithUncertainty
    from enhance_hmi.physics import degrade

    sigma = PAPER_NOISE[observable] if noise_sigma is None else float(noise_sigma)
    pair = degrade(
        scene.data,
        scene.pixel_scale,
        wavelength=wavelength,
        psf_model=psf_model,
        noise_sigma=sigma,
        rng=seed,
    )
    group = symmetry_group(symmetries, observable)
    predicted_sigma = None
    if isinstance(model, EnhanceWithUncertainty):  # the network with its head: output and sigma
        enhanced, predicted_sigma = enhance_array_with_sigma(
            pair.input, model, device=device, tile=tile, input_scale=input_scale, symmetries=group
        )
    else:
        enhanced = enhance_array(
            pair.input, model, device=device, tile=tile, input_scale=input_scale, symmetries=group
        )
    return ValidationCase(
        name=name or scene.path.stem,
        observable=observable,
        hmi=pair.input,
        truth=pair.target,
        enhanced=enhanced,
        sigma=predicted_sigma,
        truth_label="scene degraded to 28 cm",
        kind="twin",
        psf_model=psf_model,
        provenance=provenance_record(
            kind="synthetic twin",
            scene_file=scene.path.name,
            scene_sha256=sha256_file(scene.path),
            psf_model=psf_model,
            symmetries=symmetries,
            **(weights_info or {}),
        ),
        notes=_twin_notes(scene.header),
        context={
            "scene": scene.path.name,
            "scene_pixel_scale_arcsec": float(scene.pixel_scale.to_value(u.arcsec)),
            "scene_region_yx": scene.normalisation.get("region_yx"),
            "normalisation": scene.normalisation.get("method"),
            "normalisation_factor": float(scene.normalisation.get("factor", 1.0)),
            "input_noise_sigma": sigma,
            "noise_seed": int(seed),
            "truth_aperture_m": float(pair.target_aperture.to_value(u.m)),
            "truth_wavelength_AA": float(u.Quantity(wavelength).to_value(u.AA)),
            "input_scale": float(input_scale),
            "symmetries": symmetries,
        },
    )


def _twin_notes(header: fits.Header) -> list[str]:
    """The report's notes on a twin: what it proves, and a scene seen in another line."""
    notes = [
        "Synthetic twin: the HMI-like input and the 28 cm truth are both made from the "
        "scene by enhance_hmi.physics.degrade; this proves the machinery, real Hinode "
        "targets test the physics.",
    ]
    header_wave = header.get("WAVELNTH")
    if header_wave and abs(float(header_wave) - HMI_WAVELENGTH.to_value(u.AA)) > 100:
        notes.append(
            f"The scene was observed at {float(header_wave):.0f} Å, not 6173 Å: its "
            "granulation contrast differs from the HMI line's (e.g. lower at 8542 Å)."
        )
    return notes


def run_twin(
    scene_path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    weights: str | os.PathLike[str] | None = None,
    observable: str | None = None,
    pixel_scale: u.Quantity | float | None = None,
    crop: int | None = None,
    holdout: float | None = None,
    noise_sigma: float | None = None,
    seed: int = 0,
    device: str = "auto",
    tile: int = 256,
    name: str | None = None,
    symmetries: int = 1,
) -> Path:
    """Read a scene, load weights, build the twin and write its report.

    ``observable`` defaults to the weights' observable; the HMI PSF model and
    the input scale come from the weights sidecar; ``symmetries`` as for
    :func:`twin_case` (the workflow passes ``enhance.symmetries``). Returns
    the ``report.html`` path.

    Raises
    ------
    WeightsError
        The weights are missing or corrupt (no trained weights installed and
        ``weights`` not given).
    ConfigError
        The weights are for another observable than ``observable``, or
        ``symmetries`` is not one of 1, 2, 4, 8.
    """
    from enhance_hmi.model import load_weights, psf_model_of
    from enhance_hmi.pipeline import resolve_weights

    check_symmetries(symmetries)  # before any weights or scene are read

    path = resolve_weights(weights, observable or "continuum")
    network, meta = load_weights(path)
    from enhance_hmi.inference.uncertainty import resolve_uncertainty, with_uncertainty

    model: EnhanceNet | EnhanceWithUncertainty = network
    if resolve_uncertainty(None, path):  # the report then shows sigma and its calibration
        model, _ = with_uncertainty(path, network, meta)
    obs = observable or str(meta.get("observable", "continuum"))
    if meta.get("observable") not in (None, obs):
        raise ConfigError(
            f"weights {path.name} are for {meta.get('observable')}, not {obs}; "
            "give weights for the scene's observable"
        )
    scale = float((meta.get("input_normalisation") or {}).get("scale", 1.0))
    scene = read_scene(
        scene_path, pixel_scale=pixel_scale, observable=obs, crop=crop, holdout=holdout
    )
    case = twin_case(
        scene,
        model,
        observable=obs,
        input_scale=scale,
        psf_model=psf_model_of(meta),
        noise_sigma=noise_sigma,
        seed=seed,
        device=device,
        tile=tile,
        name=name,
        symmetries=symmetries,
        weights_info={
            "weights_file": path.name,
            "weights_sha256": meta.get("sha256"),
            "training_data": meta.get("training_data"),
        },
    )
    return write_report(case, out_dir)
