"""One HMI FITS file in, one enhanced FITS file out: :func:`enhance_file`.

Everything that can be checked cheaply is checked before the network runs
(options, output directory, input file, weights and their checksum), so a
bad call fails in seconds with one clear message; the output is written
atomically, so no failure leaves a half-written file behind.

References
----------
.. [1] Díaz Baso, C. J. & Asensio Ramos, A. (2018), "Enhancing SDO/HMI images
   using deep learning", A&A 614, A5.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

from enhance_hmi.atomic import check_writable_dir
from enhance_hmi.errors import InputError, OutputError, WeightsError
from enhance_hmi.frame import Frame
from enhance_hmi.inference.frame import COMPILE_AUTO_MIN_PIXELS, resolve_compile
from enhance_hmi.io import read_hmi, write_enhanced
from enhance_hmi.io.frame_quality import (
    FrameQuality,
    QualityKernels,
    frame_quality,
)
from enhance_hmi.physics import psf_model_of
from enhance_hmi.physics.noise import input_noise_in_data_units
from enhance_hmi.settings import DEVICE_PATTERN, EnhanceSettings, validate_options

__all__ = [
    "DEVICE_PATTERN",
    "COMPILE_AUTO_MIN_PIXELS",
    "EnhanceSettings",
    "LoadedFrame",
    "accepted_settings_sha256",
    "enhance_file",
    "load_frame",
    "measure_quality",
    "resolve_compile",
    "resolve_weights",
    "run_network",
    "settings_sha256",
    "validate_options",
    "write_result",
]

log = logging.getLogger(__name__)


def resolve_weights(weights: str | os.PathLike[str] | None, observable: str) -> Path:
    """Return the weights file to use: ``weights`` or the shipped one.

    Raises
    ------
    WeightsError
        ``weights`` does not exist, or none was given and no trained weights
        are installed for ``observable``.
    """
    from enhance_hmi.model import default_weights

    if weights is not None:
        path = Path(weights)
        if not path.is_file():
            raise WeightsError(f"weights file {path} does not exist")
        return path
    try:
        return Path(default_weights(observable))
    except WeightsError as exc:
        raise WeightsError(
            f"no trained weights are installed for {observable}; pass --weights PATH "
            "(a .safetensors file with its .json sidecar, e.g. written by enhance "
            "training) or point ENHANCE_WEIGHTS_DIR to a directory holding "
            f"{observable}.safetensors"
        ) from exc


def _check_output(input_path: Path, output_path: Path) -> None:
    directory = output_path.parent if str(output_path.parent) else Path(".")
    if directory.exists() and not directory.is_dir():
        raise OutputError(f"cannot write {output_path}: {directory} is a file, not a directory")
    check_writable_dir(directory)
    if output_path.is_dir():
        raise OutputError(f"output {output_path} is a directory; give a file name")
    if input_path.exists() and output_path.exists() and output_path.samefile(input_path):
        raise OutputError(f"output {output_path} would overwrite the input; choose another name")


@dataclasses.dataclass
class LoadedFrame:
    """A frame read and checked, with the weights that will enhance it."""

    input_path: Path
    output_path: Path
    frame: Frame
    weights_path: Path
    weights_metadata: dict[str, Any]
    uncertainty: bool = False


def load_frame(
    input_path: str | os.PathLike[str],
    output_path: str | os.PathLike[str],
    settings: EnhanceSettings,
) -> LoadedFrame:
    """Check the output place, read the input and pick matching weights.

    The first stage of :func:`enhance_file`; cheap next to the network, so a
    bad frame fails here before any compute is spent on it.

    Raises
    ------
    InputError, OutputError, WeightsError
        One clear sentence naming the file.
    """
    input_path, output_path = Path(input_path), Path(output_path)
    _check_output(input_path, output_path)
    frame = read_hmi(
        input_path,
        observable=settings.observable,
        normalize=settings.normalize,
        check_range=settings.check_range,
    )
    weights_path = resolve_weights(settings.weights, frame.observable)

    from enhance_hmi.io.plausibility import check_pixel_scale
    from enhance_hmi.model import check_trained_for, load_weights_cached
    from enhance_hmi.model.weights import trained_pixel_scale

    _, metadata = load_weights_cached(weights_path, device="cpu")
    check_trained_for(metadata, frame.observable, weights_path, input_path.name)
    if settings.check_scale:
        check_pixel_scale(frame.header, trained_pixel_scale(metadata), path=input_path)
    from enhance_hmi.inference.uncertainty import resolve_uncertainty

    with_sigma = resolve_uncertainty(settings.uncertainty, weights_path)
    return LoadedFrame(input_path, output_path, frame, weights_path, metadata, with_sigma)


def run_network(
    loaded: LoadedFrame,
    settings: EnhanceSettings,
    *,
    progress: bool = False,
    timings: Any = None,
) -> Frame:
    """The second stage of :func:`enhance_file`: the tiled network on one frame.

    ``timings`` (:class:`enhance_hmi.inference.InferenceTimings`) collects where
    the time goes (network, projection).
    """
    from enhance_hmi.inference import enhance_frame

    frame = loaded.frame
    log.info(
        "enhancing %s with %s on %s (%s)",
        loaded.input_path.name,
        loaded.weights_path.name,
        settings.device,
        settings.precision,
    )
    enhanced = enhance_frame(
        frame,
        dataclasses.replace(settings, weights=loaded.weights_path, uncertainty=loaded.uncertainty),
        progress=progress,
        timings=timings,
    )
    expected = (2 * frame.data.shape[0], 2 * frame.data.shape[1])
    if enhanced.data.shape != expected:
        raise InputError(
            f"the network returned shape {enhanced.data.shape} for input {frame.data.shape}; "
            f"expected {expected}"
        )
    return enhanced


def measure_quality(
    loaded: LoadedFrame,
    enhanced: Frame,
    settings: EnhanceSettings,
    *,
    kernels: QualityKernels | None = None,
):
    """The per-frame quality figures of ``enhanced`` against its input (no truth needed).

    See :func:`enhance_hmi.io.frame_quality.frame_quality`; the HMI PSF of the
    re-observation is the one the weights were trained for, the input noise
    the projection's (when it ran), and the ripple figure compares the
    output with the network's own (``meta["network_output"]`` of
    :func:`enhance_hmi.inference.enhance_frame`). The figures' array work for
    a frame enhanced on a GPU (``meta["device"]``) is done there
    (:class:`enhance_hmi.inference.device_quality.TorchQualityKernels`);
    ``kernels`` chooses otherwise. Without a projection the input noise is
    estimated on the host.
    """
    frame = loaded.frame
    device = str(enhanced.meta.get("device", "cpu"))
    if kernels is None and device.startswith("cuda"):
        from enhance_hmi.inference.device_quality import TorchQualityKernels

        kernels = TorchQualityKernels(device)
    return frame_quality(
        frame.data,
        enhanced.data,
        observable=frame.observable,
        header=frame.header,
        quality=_quality_bits(frame),
        psf_model=psf_model_of(settings.recipe(loaded.weights_metadata)),
        tolerances=settings.quality,
        projection=enhanced.meta.get("consistency"),
        network_output=enhanced.meta.get("network_output"),
        kernels=kernels,
    )


def _quality_bits(frame: Frame) -> int:
    value = frame.meta.get("quality", frame.header.get("QUALITY", 0))
    try:
        if isinstance(value, str):
            return int(value, 16) if value.lower().startswith("0x") else int(value)
        return int(value or 0) & 0xFFFFFFFF
    except (TypeError, ValueError):
        return 0


def settings_sha256(
    settings: EnhanceSettings,
    *,
    observable: str,
    uncertainty: bool,
    sigma_calibration: str | None = None,
) -> str:
    """sha256 of the settings that change what an enhanced file holds, beside input and weights.

    Covers the normalisation, the range check (it masks pixels), the
    precision, whether the output compression is lossy (``"rice"``; gzip
    and none are the same pixels), whether a
    ``SIGMA`` HDU is written (``uncertainty``, as resolved for the weights by
    :func:`enhance_hmi.inference.uncertainty.resolve_uncertainty`), the
    projection onto the input and the input noise it stops at (in the data
    units of ``observable``, 6 significant digits, so ``10 G`` and ``1 mT``
    agree). Left out: how the same computation is scheduled (device, tile,
    compile, threads), the pixel-scale check (it refuses frames, it does not
    change them) and the quality tolerances (they judge frames, they do not
    change pixels). With a ``SIGMA`` HDU, ``sigma_calibration`` (the head's
    :func:`~enhance_hmi.model.uncertainty.calibration_digest`, ``ENHSGCSH``)
    is covered too: a refitted calibration changes the sigma of every frame.
    :func:`write_result` records it as ``ENHSETSH``;
    :func:`enhance_hmi.batch.is_already_enhanced` compares it.

    Raises
    ------
    ConfigError
        An input noise whose unit does not fit ``observable``.
    """
    lossy = settings.compression == "rice"
    # the lossless modes hold the same pixels, so they share one record
    # (gzip's), and a frame written with either is kept by a run with the other
    return _settings_digest(
        settings, observable, uncertainty, "rice" if lossy else "gzip", sigma_calibration
    )


def accepted_settings_sha256(
    settings: EnhanceSettings,
    *,
    observable: str,
    uncertainty: bool,
    sigma_calibration: str | None = None,
) -> frozenset[str]:
    """Every ``ENHSETSH`` of a frame that holds what ``settings`` would write.

    :func:`settings_sha256`, and for lossless output also the digest of a
    plain (uncompressed) frame written while plain and gzip frames had
    records of their own, so such frames are kept rather than redone.
    """
    digests = {
        settings_sha256(
            settings,
            observable=observable,
            uncertainty=uncertainty,
            sigma_calibration=sigma_calibration,
        )
    }
    if settings.compression != "rice":
        digests.add(_settings_digest(settings, observable, uncertainty, None, sigma_calibration))
    return frozenset(digests)


def _settings_digest(
    settings: EnhanceSettings,
    observable: str,
    uncertainty: bool,
    compression: str | None,
    sigma_calibration: str | None = None,
) -> str:
    noise = None
    if settings.input_noise is not None:
        noise = float(f"{input_noise_in_data_units(settings.input_noise, observable):.6g}")
    record = {
        "normalize": settings.normalize,
        "check_range": bool(settings.check_range),
        "precision": settings.precision,
        "compression": compression,
        "uncertainty": bool(uncertainty),
        "consistency": bool(settings.consistency),
        "input_noise": noise,
        **settings.output_record(),  # options added since, only where not at their default
    }
    if uncertainty and sigma_calibration:  # added since: frames without sigma keep theirs
        record["sigma_calibration"] = sigma_calibration
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()


def _consistency_record(projection: Any, unit: str) -> str:
    """One provenance line for the projection onto the input (or "off")."""
    if projection is None:
        return "off (by request)"
    source = projection.noise_source
    how = "given" if source == "given" else f"{source} estimate"
    return (
        f"CGLS projection onto the input, {projection.iterations} iterations, "
        f"residual {projection.residual_before:.4g} -> {projection.residual_after:.4g} "
        f"(input noise {projection.noise:.4g}{unit} {how}, stop at "
        f"{projection.discrepancy:g} x noise)"
    )


def write_result(
    loaded: LoadedFrame,
    enhanced: Frame,
    settings: EnhanceSettings,
    *,
    quality: FrameQuality | None = None,
) -> Path:
    """The last stage of :func:`enhance_file`: quality figures, then the atomic FITS write.

    The quality figures (:func:`measure_quality`, unless given as
    ``quality``) go into the header of the written frame (``ENHQ*``
    keywords); a frame out of tolerance is written all the same, the names
    of its figures out of tolerance in ``ENHQFLAG``.
    """
    frame, metadata = loaded.frame, loaded.weights_metadata
    if quality is None:
        quality = measure_quality(loaded, enhanced, settings)
    enhanced.meta["frame_quality"] = quality
    provenance: dict[str, Any] = {
        "observable": frame.observable,
        "weights_file": loaded.weights_path.name,
        "weights_sha256": metadata["sha256"],  # checked against the file on loading
        "psf_model": psf_model_of(metadata),
        "training_data": metadata.get("training_data"),
        "input_file": loaded.input_path.name,
        "input_sha256": frame.meta.get("input_sha256"),
        "normalisation": frame.meta["normalisation"]["method"],
        "device": enhanced.meta.get("device", settings.device),  # the one used, not "auto"
        "precision": settings.precision,
        "tile": settings.tile,
        "symmetries": settings.symmetries,
        "compiled": resolve_compile(settings.compile, settings.device, frame.data.size),
        "scale_check": "on" if settings.check_scale else "off (by request)",
        "range_check": "on" if settings.check_range else "off (by request)",
        "uncertainty": "SIGMA HDU" if "sigma" in enhanced.meta else "none",
        "consistency": _consistency_record(
            enhanced.meta.get("consistency"), " G" if frame.observable == "magnetogram" else ""
        ),
        "settings_sha256": settings_sha256(
            settings.for_weights(metadata, sigma=bool(loaded.uncertainty)),
            observable=frame.observable,
            uncertainty=loaded.uncertainty,
            sigma_calibration=(
                enhanced.meta["sigma"].calibration_sha256 if "sigma" in enhanced.meta else None
            ),
        ),
    }
    for name, value in settings.provenance().items():  # every option, as HISTORY
        provenance[f"setting {name}"] = value
    projection = enhanced.meta.get("consistency")
    if projection is not None:
        provenance["input_noise"] = float(f"{projection.noise:.5g}")
        provenance["input_noise_source"] = projection.noise_source
    return write_enhanced(
        loaded.output_path, enhanced, provenance=provenance, compression=settings.compression
    )


def enhance_file(
    input_path: str | os.PathLike[str],
    output_path: str | os.PathLike[str],
    settings: EnhanceSettings | None = None,
    *,
    progress: bool = False,
    **options: Any,
) -> Path:
    """Enhance one HMI FITS file and write the 2x result.

    Steps: validate the options; check the output directory is writable;
    read the input (:func:`enhance_hmi.io.read_hmi`: north up, normalised);
    resolve and load the weights (checksum verified, trained for the same
    observable); run :func:`enhance_hmi.inference.enhance_frame`; write with
    :func:`enhance_hmi.io.write_enhanced` (atomic, provenance in the header).
    Many files in one process: :func:`enhance_hmi.batch.enhance_files`, which
    runs the same three stages with reading and writing overlapped.

    Output units. Magnetograms: Blos in gauss. Continuum: quiet-Sun units
    (``BUNIT = ''``, dimensionless; ``ENHUNIT = 'I/I_quiet-Sun'``), i.e. the
    network's own units, with limb darkening removed when it was fitted. The
    normalisation is recorded, not undone: ``ENHNORM`` names the method,
    ``ENHNFAC`` is the divisor (the quiet-Sun intensity at disk centre in
    input units) and ``ENHLDC0..5`` the limb-darkening law ``I(mu)``, so
    input units are recovered by multiplying by ``ENHNFAC`` (quiet-Sun
    method) or by ``I(mu)`` at each output pixel (limb-darkening method).
    Quiet-Sun units are what contrast and power-spectrum comparisons with the
    paper use, and they are independent of the HMI calibration epoch.

    Parameters
    ----------
    input_path, output_path : path-like
        HMI FITS file in; FITS file out (its directory must exist).
    settings : EnhanceSettings, optional
        The run's options (default: :class:`EnhanceSettings`'s defaults).
    progress : bool
        Show a progress bar (callers pass ``sys.stderr.isatty()``).
    **options
        Options that change ``settings``, by field name and as
        :meth:`EnhanceSettings.from_mapping` reads them
        (``enhance_file(a, b, tile=256, input_noise="10 G")``).

    Returns
    -------
    pathlib.Path
        ``output_path``.

    Raises
    ------
    ConfigError, InputError, OutputError, WeightsError
        One clear sentence each; nothing is written.

    References
    ----------
    .. [1] Díaz Baso & Asensio Ramos (2018), A&A 614, A5.
    """
    settings = EnhanceSettings.from_mapping(options, base=settings) if options else settings
    settings = settings or EnhanceSettings()
    settings.check()
    loaded = load_frame(input_path, output_path, settings)
    enhanced = run_network(loaded, settings, progress=progress)
    return write_result(loaded, enhanced, settings)
