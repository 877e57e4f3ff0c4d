"""Enhanced images with their per-pixel uncertainty, in one tiled pass.

The network and its uncertainty head (:mod:`enhance_hmi.model.uncertainty`) run
as one module with two output channels, so :func:`enhance_hmi.inference.enhance_array`
tiles, blends, rescales and masks the output and sigma together: sigma costs
one extra small head per window, not another pass of the network.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from enhance_hmi.errors import SigmaCalibrationMismatchWarning, WeightsError
from enhance_hmi.io.sigma import SigmaMap
from enhance_hmi.model.network import EnhanceNet
from enhance_hmi.model.uncertainty import (
    EnhanceWithUncertainty,
    calibration_digest,
    family_sigma_of,
    load_uncertainty,
    uncertainty_path,
)
from enhance_hmi.model.weights import read_sidecar

__all__ = [
    "allow_for_forward_model",
    "check_uncertainty_available",
    "sigma_calibration_digest",
    "resolve_uncertainty",
    "sigma_map",
    "with_uncertainty",
]

log = logging.getLogger(__name__)


def resolve_uncertainty(requested: bool | None, weights: str | os.PathLike[str]) -> bool:
    """Whether frames enhanced with ``weights`` get a sigma map, checked before compute.

    ``True``: always (a missing or mismatched head is an error); ``False``:
    never; ``None`` (the default of the command line and the workflow): when
    an uncertainty head is installed beside the weights, as it is for the
    shipped networks; one fitted for another network is an error, none at all
    is logged and the frame is written without sigma.

    Raises
    ------
    WeightsError
        See :func:`check_uncertainty_available`.
    """
    if requested is False:
        return False
    if requested is None and not uncertainty_path(weights).is_file():
        # "when available" was asked for: no head is a documented outcome, not a caveat
        log.info(
            "no uncertainty head beside %s: writing without sigma (fit one with "
            "`enhance fit-uncertainty`)",
            Path(weights).name,
        )
        return False
    check_uncertainty_available(weights)
    return True


def check_uncertainty_available(weights: str | os.PathLike[str]) -> dict[str, Any]:
    """The head sidecar for network ``weights``, checked cheaply before any compute.

    Raises
    ------
    WeightsError
        No head beside the network, or one fitted for another network
        (sha256 of the network's sidecar); the message names the command that
        fits one and ``--no-uncertainty``.
    """
    from enhance_hmi.model.uncertainty import _read_head_sidecar

    path = uncertainty_path(weights)
    if not path.is_file():
        raise WeightsError(
            f"no uncertainty weights {path.name} beside {Path(weights).name}; fit them with "
            f"`enhance fit-uncertainty --weights {weights} --scene ...` or run with "
            "--no-uncertainty"
        )
    head = _read_head_sidecar(path)
    net = read_sidecar(weights)
    if head["backbone_sha256"] != net["sha256"]:
        raise WeightsError(
            f"uncertainty weights {uncertainty_path(weights).name} were fitted for network "
            f"{head['backbone_sha256'][:12]}… but {Path(weights).name} is "
            f"{net['sha256'][:12]}…; refit them with `enhance fit-uncertainty --weights "
            f"{weights}` or run with --no-uncertainty"
        )
    return head


@functools.lru_cache(maxsize=8)
def _combined(
    path: str, version: tuple[int, ...], model_id: int, model: EnhanceNet, meta_sha: str
) -> tuple[EnhanceWithUncertainty, dict[str, Any]]:
    return load_uncertainty(path, model, {"sha256": meta_sha})


def with_uncertainty(
    weights: str | os.PathLike[str], model: EnhanceNet, meta: dict[str, Any]
) -> tuple[EnhanceWithUncertainty, dict[str, Any]]:
    """``model`` (loaded from ``weights``) with its head, loaded once per head file version.

    See :func:`enhance_hmi.model.uncertainty.load_uncertainty` for the checks.
    """
    head = uncertainty_path(weights).resolve()
    version: tuple[int, ...] = (0,)
    if head.is_file():
        stat = head.stat()
        version = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
    return _combined(str(Path(weights).resolve()), version, id(model), model, meta["sha256"])


def sigma_calibration_digest(weights: str | os.PathLike[str]) -> str:
    """The ``ENHSGCSH`` frames enhanced with ``weights`` and sigma get, read before any compute.

    :func:`~enhance_hmi.model.uncertainty.calibration_digest` of the head's
    sidecar (checked as :func:`check_uncertainty_available` checks it).
    """
    return calibration_digest(check_uncertainty_available(weights))


def _output_name(projected: bool) -> str:
    return "projected" if projected else "un-projected"


def sigma_map(
    sigma: np.ndarray,
    head_meta: dict[str, Any],
    *,
    projected: bool | None = None,
    stacklevel: int = 2,
) -> SigmaMap:
    """A :class:`~enhance_hmi.io.sigma.SigmaMap` of ``sigma`` with the head's provenance.

    Parameters
    ----------
    sigma : numpy.ndarray
        The calibrated sigma (physical units).
    head_meta : dict
        The head's sidecar: method, calibration factor and summary, weights
        file and sha256, and the digest of its calibration
        (:func:`enhance_hmi.model.uncertainty.calibration_digest`).
    projected : bool, optional
        Whether the output ``sigma`` goes with was projected onto its input.
        When the head's map says it was calibrated for the other output
        (``calibration_model["projected"]``), the calibration text says so
        ("calibrated projected, applied to un-projected output") and a
        :class:`~enhance_hmi.errors.SigmaCalibrationMismatchWarning` is issued.
        None: not checked.
    stacklevel : int
        Of the warning, as for :func:`warnings.warn`.
    """
    summary = str(
        head_meta.get("calibration_summary", "held-out truth, mean 1-sigma coverage 68.27 %")
    )
    calibrated_for = head_meta.get("calibration_model", {}).get("projected")
    if projected is not None and calibrated_for is not None and bool(calibrated_for) != projected:
        for suffix in (", projected", ", unprojected"):
            summary = summary.removesuffix(suffix)
        summary = (
            f"{summary}, calibrated {_output_name(bool(calibrated_for))}, applied to "
            f"{_output_name(projected)} output"
        )
        warnings.warn(
            f"the sigma of {head_meta.get('weights_file', 'the uncertainty head')} was "
            f"calibrated on held-out truth for the {_output_name(bool(calibrated_for))} output "
            f"but the frame was enhanced {_output_name(projected)}; its coverage is not "
            f"measured for this output (refit with `enhance fit-uncertainty --calibrate-only "
            f"...{' --no-consistency' if not projected else ''}` or keep the default "
            "consistency setting)",
            SigmaCalibrationMismatchWarning,
            stacklevel=stacklevel + 1,
        )
    return SigmaMap(
        data=sigma,
        method=str(head_meta.get("method", "")),
        calibration_scale=float(head_meta.get("calibration_scale", 1.0)),
        calibration=summary,
        weights_file=str(head_meta.get("weights_file", "")),
        weights_sha256=str(head_meta.get("sha256", "")),
        calibration_sha256=calibration_digest(head_meta),
    )


def allow_for_forward_model(
    sigma: SigmaMap,
    output: np.ndarray,
    head_meta: dict[str, Any],
    told: str | None,
    signal_fraction: tuple[np.ndarray, np.ndarray] | None = None,
) -> SigmaMap:
    """``sigma`` widened for what the run was told about the HMI forward model.

    Applies the head's :class:`~enhance_hmi.model.uncertainty.FamilySigma`
    (``calibration_model.forward_family`` of its sidecar): told a member
    (``told``, its name), that member's error variance of ``output``
    added with its weight; told nothing (None), the whole family's. A head
    calibrated without the family returns ``sigma`` unchanged.

    Parameters
    ----------
    sigma : SigmaMap
        The head's calibrated sigma of ``output``.
    output : numpy.ndarray
        The enhanced image (projected, as shipped).
    head_meta : dict
        The head's sidecar.
    told : str or None
        The member the run was told, or None.
    signal_fraction : (numpy.ndarray, numpy.ndarray), optional
        The harmonisation's weight of the told run's input
        (:func:`enhance_hmi.physics.harmonise.signal_fraction`); None when
        the input was not harmonised.
    """
    fit = family_sigma_of(head_meta)
    if fit is None:
        return sigma
    data = fit.apply(sigma.data, output, told, signal_fraction)
    data[~np.isfinite(sigma.data)] = np.nan
    if told is None:
        note = f"not told: family spread (kappa {fit.untold_kappa:g})"
    else:
        note = f"told {told} (kappa {fit.kappa_for(told):g})"
    log.info("sigma for the forward model %s", note)
    return dataclasses.replace(sigma, data=data, forward_model=note)
