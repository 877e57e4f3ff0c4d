"""Enhance a :class:`~enhance_hmi.frame.Frame`: weights, network units, 2x header."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import numpy as np

from enhance_hmi.errors import ConfigError
from enhance_hmi.frame import Frame
from enhance_hmi.inference.array import (
    InferenceTimings,
    device_name,
    enhance_array,
    enhance_array_with_sigma,
    resolve_device,
    timed_stage,
)
from enhance_hmi.inference.symmetry import symmetry_group
from enhance_hmi.inference.uncertainty import resolve_uncertainty
from enhance_hmi.io.plausibility import check_pixel_scale
from enhance_hmi.io.wcs import upsample_header
from enhance_hmi.model.uncertainty import EnhanceWithUncertainty
from enhance_hmi.model.weights import (
    check_trained_for,
    default_weights,
    load_weights_cached,
    trained_pixel_scale,
)
from enhance_hmi.physics import psf_model_of
from enhance_hmi.physics.disk import SolarDisk, constraint_region
from enhance_hmi.physics.forward_family import forward_model_of
from enhance_hmi.physics.harmonise import harmonise, signal_fraction
from enhance_hmi.physics.noise import input_noise
from enhance_hmi.physics.projection import recipe_noise_estimate
from enhance_hmi.settings import EnhanceSettings

__all__ = ["COMPILE_AUTO_MIN_PIXELS", "enhance_frame", "resolve_compile"]

log = logging.getLogger(__name__)


def enhance_frame(
    frame: Frame,
    settings: EnhanceSettings | None = None,
    *,
    batch_size: int | None = None,
    progress: bool = False,
    timings: InferenceTimings | None = None,
    **options: Any,
) -> Frame:
    """Return the enhanced frame (2x grid, same units, header with the 2x WCS).

    The network is loaded once per process and weights file
    (:func:`enhance_hmi.model.load_weights_cached`), so a job enhancing many frames
    pays the load and checksum once.

    Parameters
    ----------
    frame : Frame
        Continuum in quiet-Sun units or Blos in gauss (:func:`enhance_hmi.io.read_hmi`).
    settings : EnhanceSettings, optional
        The run's options (:class:`enhance_hmi.settings.EnhanceSettings`); the
        ones used here:

        - ``weights``: default, the shipped weights for ``frame.observable``;
        - ``device``, ``precision``, ``tile``, ``compile``: see
          :func:`enhance_hmi.inference.enhance_array` (``compile="auto"``:
          :func:`resolve_compile`);
        - ``check_scale``: refuse a frame whose header pixel scale is not the
          one the network was trained for
          (:func:`enhance_hmi.model.trained_pixel_scale`, within
          :data:`enhance_hmi.io.plausibility.PIXEL_SCALE_TOLERANCE`), before
          any compute;
        - ``uncertainty``: also compute the per-pixel uncertainty in the same
          tiled pass, with the network's uncertainty head
          (``NAME.uncertainty.safetensors`` beside the weights, fitted for
          exactly that network; :mod:`enhance_hmi.model.uncertainty`); None:
          when one is installed
          (:func:`enhance_hmi.inference.uncertainty.resolve_uncertainty`). It
          is returned as ``meta["sigma"]``, a
          :class:`enhance_hmi.io.sigma.SigmaMap` in the output's units, which
          :func:`enhance_hmi.io.write_enhanced` stores as the ``SIGMA`` HDU;
        - ``consistency``: project the network output onto the images
          consistent with the input within its noise
          (:func:`enhance_hmi.inference.consistency.project_to_observation`,
          stopping threshold ``inference.consistency_discrepancy`` and noise
          estimate ``inference.consistency_noise_estimate`` of the weights
          sidecar; defaults 1 and the observable's,
          :func:`enhance_hmi.physics.noise.noise_estimate_for`). The held-out
          scores of the shipped networks are measured with it. When the
          recipe estimates a magnetogram's noise (histogram core, or "auto")
          and too little of the field is quiet Sun for the histogram core, an
          :class:`enhance_hmi.errors.FieldDominatedNoiseWarning` says so
          (:func:`enhance_hmi.inference.consistency.warn_if_field_dominated`);
        - ``input_noise``: the input noise (one standard deviation) the
          projection stops at, instead of the recipe's estimate: gauss (or
          any magnetic flux density unit) for a magnetogram, dimensionless
          quiet-Sun units for a continuum image. Checked before any compute.
    batch_size, progress, timings
        See :func:`enhance_hmi.inference.enhance_array`; the progress bar is
        labelled with the input file name.
    **options
        Options that change ``settings``, by field name
        (``enhance_frame(frame, device="cpu", tile=256)``).

    Returns
    -------
    Frame
        NaN beyond the limb (the output pixels of every input pixel whose centre lies farther than
        one solar radius from the disk centre of the header,
        :class:`enhance_hmi.physics.disk.SolarDisk`), in the image and its sigma: the networks and
        the forward model describe the disk, and hmi.M_720s's off-limb values are noise the network
        turns into artefacts. The network's windows wholly beyond the limb are not computed, and the
        projection onto the input sees the pixels beyond the limb as missing. ``meta`` is the
        input's plus ``weights_file``, ``weights_sha256``, ``psf_model``, ``device`` (the device
        used, e.g. ``"cpu"`` or ``"cuda:0"``, never ``"auto"``), ``precision``, ``tile``,
        ``symmetries`` (the network's passes averaged) and ``scale_checked`` (and ``sigma`` with
        ``uncertainty``); with ``consistency``,
        ``consistency`` (a :class:`enhance_hmi.inference.consistency.Projection`, whose ``noise``
        and ``noise_source`` say which input noise was used and whether it was given or estimated),
        and, when the projection changed the image, ``network_output``, the network's output before
        it (the per-frame ripple figure compares the two,
        :func:`enhance_hmi.io.frame_quality.frame_quality`).

    Raises
    ------
    WeightsError
        No weights, a bad weights file, or weights trained for another observable;
        with ``uncertainty``, no head fitted for these weights.
    InputError
        The frame's pixel scale is missing or not the network's (``check_scale``).
    ConfigError
        ``input_noise`` in a unit that does not fit the observable, not
        positive, or given with ``consistency`` off.
    """
    settings = EnhanceSettings.from_mapping(options, base=settings) if options else settings
    settings = settings or EnhanceSettings()
    path = (
        Path(settings.weights)
        if settings.weights is not None
        else default_weights(frame.observable)
    )
    dev = resolve_device(settings.device)
    # The checked CPU network: enhance_array's inference copy (batch norms
    # folded, cached per device) is the one that goes to the device.
    model, meta = load_weights_cached(path)
    input_name = Path(str(frame.meta.get("input_file") or "")).name
    check_trained_for(meta, frame.observable, path, "the image")
    if settings.check_scale:
        check_pixel_scale(frame.header, trained_pixel_scale(meta), path=input_name or None)
    disk = SolarDisk.from_header(frame.header)
    recipe = settings.recipe(meta)  # the weights' recipe, as this run's options amend it
    plan = _projection_plan(frame, settings, recipe, disk)
    network_input, fraction = _told_input(frame, meta, recipe, plan, disk)
    combined: EnhanceWithUncertainty | None = None  # the network with its sigma head
    if resolve_uncertainty(settings.uncertainty, path):
        from enhance_hmi.inference.uncertainty import with_uncertainty

        combined, head_meta = with_uncertainty(path, model, meta)
    # the disk's pixels only: windows wholly beyond the limb are not computed
    on_disk = (
        disk.inside(frame.data.shape)
        if disk is not None and disk.holds_limb(frame.data.shape)
        else None
    )
    options = dict(
        device=dev,
        precision=settings.precision,
        tile=settings.tile,
        batch_size=batch_size,
        input_scale=float(meta["input_normalisation"].get("scale", 1.0)),
        progress=progress,
        progress_label=input_name or None,
        compile=resolve_compile(settings.compile, settings.device, frame.data.size),
        timings=timings,
        wanted=on_disk,
        symmetries=symmetry_group(settings.symmetries, frame.observable),
    )
    meta_out = dict(frame.meta)
    if combined is None:
        data = enhance_array(network_input, model, **options)
    else:
        from enhance_hmi.inference.uncertainty import sigma_map

        data, sigma = enhance_array_with_sigma(network_input, combined, **options)
        meta_out["sigma"] = sigma_map(sigma, head_meta, projected=plan is not None)
    if plan is not None:
        network_output = data
        with timed_stage(timings, "projection", dev):
            data, meta_out["consistency"] = _project(frame, data, recipe, plan, disk, dev)
        if meta_out["consistency"].iterations:
            meta_out["network_output"] = network_output
    if "sigma" in meta_out:
        from enhance_hmi.inference.uncertainty import allow_for_forward_model

        told = forward_model_of(recipe).name if settings.tells_forward_model else None
        meta_out["sigma"] = allow_for_forward_model(
            meta_out["sigma"], data, head_meta, told, fraction
        )
    if on_disk is not None:
        # input pixels beyond the limb, each as its block of output pixels
        beyond = np.kron(~on_disk, np.ones((model.upscale,) * 2, bool))
        data = np.where(beyond, np.float32(np.nan), data)
        if "sigma" in meta_out:
            meta_out["sigma"].data[beyond] = np.nan
    meta_out.update(
        weights_file=path.name,
        weights_sha256=meta["sha256"],
        psf_model=psf_model_of(meta),
        device=device_name(dev),
        precision=settings.precision,
        tile=settings.tile,
        symmetries=settings.symmetries,
        scale_checked=bool(settings.check_scale),
    )
    header = upsample_header(frame.header, factor=model.upscale)
    return Frame(data=data, header=header, observable=frame.observable, meta=meta_out)


def _told_input(
    frame: Frame,
    meta: dict[str, Any],
    recipe: dict[str, Any],
    plan: _ProjectionPlan | None,
    disk: SolarDisk | None,
) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray] | None]:
    """The network's input: the frame's data, harmonised when the run tells another forward model.

    The told member is the recipe's (:meth:`EnhanceSettings.recipe`: the
    ``psf_model`` and ``pixel_integration`` options over the sidecar's); the
    trained one the sidecar's. When they differ, the data are filtered to
    look as made under the trained member
    (:func:`enhance_hmi.physics.harmonise.harmonise`) with the input noise
    the projection uses (given, or estimated over the constrained disk).
    Returned with the harmonisation's weight against frequency
    (:func:`enhance_hmi.physics.harmonise.signal_fraction`; None when not
    harmonised), which the sigma of a told run reads.
    """
    told, trained = forward_model_of(recipe), forward_model_of(meta)
    if told == trained:
        return frame.data, None
    if plan is not None and plan.noise is not None:
        noise = plan.noise
    elif plan is not None:  # the projection's own recipe and region, settled already
        noise, _ = input_noise(frame.data, plan.estimate, region=plan.region)
    else:
        region = constraint_region(frame.data.shape, disk)
        noise, _ = input_noise(frame.data, recipe_noise_estimate(recipe), region=region)
    log.info("told forward model %s (network trained for %s): input harmonised", told, trained)
    fraction = signal_fraction(frame.data, noise=noise)
    harmonised: np.ndarray = harmonise(
        frame.data, told=told, trained=trained, noise=noise, fraction=fraction
    )
    return harmonised.astype(np.float32), fraction


@dataclasses.dataclass(frozen=True)
class _ProjectionPlan:
    """What the projection onto the input needs, settled before any compute."""

    estimate: str
    region: np.ndarray | None
    noise: float | None


def _projection_plan(
    frame: Frame, settings: EnhanceSettings, meta: dict[str, Any], disk: SolarDisk | None
) -> _ProjectionPlan | None:
    """The projection's noise recipe and region (None with ``consistency`` off).

    A given input noise is converted to the data's units and compared with
    the data's own estimate here, so a wrong unit fails before the network
    runs.
    """
    if settings.input_noise is not None and not settings.consistency:
        raise ConfigError(
            "an input noise is used only by the projection onto the input, which is "
            "off (--no-consistency, consistency=False); drop one of the two"
        )
    if not settings.consistency:
        return None
    from enhance_hmi.inference import consistency as projection

    estimate = projection.recipe_noise_estimate(meta)
    region = projection.constraint_region(frame.data.shape, disk)
    noise = None
    if settings.input_noise is not None:
        noise = projection.input_noise_in_data_units(settings.input_noise, frame.observable)
        projection.warn_if_given_noise_implausible(
            frame.data,
            noise,
            estimate=estimate,
            region=region,
            unit=" G" if frame.observable == "magnetogram" else "",
            stacklevel=3,  # it adds one of its own: the warning names enhance_frame's caller
        )
    return _ProjectionPlan(estimate=estimate, region=region, noise=noise)


def _project(
    frame: Frame,
    data: np.ndarray,
    meta: dict[str, Any],
    plan: _ProjectionPlan,
    disk: SolarDisk | None,
    dev: Any,
) -> tuple[np.ndarray, Any]:
    """The network output projected onto the input.

    See :func:`enhance_hmi.inference.consistency.project_as_recipe`.
    """
    from enhance_hmi.inference import consistency as projection

    estimate = plan.estimate
    if plan.noise is None and frame.observable == "magnetogram" and estimate != "spectral":
        fraction = None
        if dev.type == "cuda":
            from enhance_hmi.inference.device_noise import quiet_sun_fraction_on

            fraction = quiet_sun_fraction_on(frame.data, region=plan.region, device=dev)
        fraction = projection.warn_if_field_dominated(
            frame.data,
            estimate=estimate,
            region=plan.region,
            stacklevel=4,
            quiet_fraction=fraction,
        )
        estimate = projection.resolve_noise_estimate(frame.data, estimate, quiet_fraction=fraction)
    result: tuple[np.ndarray, Any] = projection.project_as_recipe(
        data,
        frame.data,
        meta,
        noise=plan.noise,
        noise_estimate=estimate,
        disk=disk,
        backend="torch" if dev.type == "cuda" else "numpy",
        device=dev,
    )
    return result


#: ``compile="auto"`` compiles the network on a CPU for a job of at least this
#: many input pixels (two 4096^2 full disks): compiling costs ~21 s once per
#: process and makes the CPU forward passes 1.10x faster (docs/performance.md),
#: ~12 s of a full disk's ~125 s. On a GPU "auto" does not compile until
#: ``bench/gpu_check.sh`` has measured what it gains there.
COMPILE_AUTO_MIN_PIXELS = 2 * 4096 * 4096


def resolve_compile(compile: bool | str, device: str, pixels: int) -> bool:
    """Whether to compile the network for a job of ``pixels`` input pixels on ``device``.

    ``compile`` itself unless it is "auto"; "auto" compiles on a CPU when
    the job holds at least :data:`COMPILE_AUTO_MIN_PIXELS`.
    """
    if compile != "auto":
        return bool(compile)
    return resolve_device(device).type == "cpu" and pixels >= COMPILE_AUTO_MIN_PIXELS
