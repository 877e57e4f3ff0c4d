"""Calibrating the sigma head on held-out truth, and measuring its coverage there.

The head's sigma is mapped by a log-linear function of four quantities
every frame has (:class:`~enhance_hmi.model.uncertainty.SigmaCalibration`),
fitted over all held-out regions at once (:func:`fit_calibration`) on the
pixels :func:`calibration_samples` collects: the error of the output users
get and the map's inputs, at the network's input noise and 3x it
(:data:`CALIBRATION_NOISE_FACTORS`, each level its own noise draw). The
coverage of a sigma on the held-out regions is measured by
:func:`held_out_coverage` (a prediction run as a user runs it) and
:func:`sample_coverage` (from the collected pixels), and
:func:`leave_one_region_out` refits the map without each scene.

References
----------
.. [1] Kuleshov, V., Fenner, N. & Ermon, S. (2018), "Accurate uncertainties
   for deep learning using calibrated regression", ICML, 2796 (calibrating
   a predicted uncertainty on held-out data by its coverage).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from enhance_hmi.errors import TrainingError
from enhance_hmi.model.uncertainty import (
    CALIBRATION_PERCENTILES,
    LOG_SIGMA_RANGE,
    EnhanceWithUncertainty,
    SigmaCalibration,
    fold_for_inference,
)
from enhance_hmi.training.pairs import Pair
from enhance_hmi.validation.calibration import coverage, fit_log_linear, z_scores

__all__ = [
    "CALIBRATION_NOISE_FACTORS",
    "CalibrationSample",
    "Prediction",
    "calibrated_log_sigma",
    "calibration_noise_seed",
    "calibration_references",
    "calibration_noisy_inputs",
    "calibration_samples",
    "fit_calibration",
    "held_out_coverage",
    "leave_one_region_out",
    "sample_coverage",
    "without_histogram",
]

#: A prediction on one held-out input: ``(output, sigma)`` in physical units.
Prediction = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


def _noisy_inputs(pairs: Sequence[Pair], sigma: float, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [p.input + rng.normal(0.0, sigma, p.input.shape).astype(np.float32) for p in pairs]


def held_out_coverage(
    predict: Prediction,
    pairs: Sequence[Pair],
    *,
    noise: float,
    seed: int,
    border: int,
    scale: float = 1.0,
) -> tuple[list[dict[str, Any]], dict[str, np.ndarray]]:
    """Coverage per held-out pair of the ``(output, sigma)`` that ``predict(input)`` returns.

    ``noise`` (physical units) is added to each input with ``seed``; sigma
    is multiplied by ``scale``. Returns the rows (``region`` plus
    :func:`enhance_hmi.validation.calibration.coverage` and the median sigma)
    and the z-scores by region.
    """
    rows: list[dict[str, Any]] = []
    zs: dict[str, np.ndarray] = {}
    for pair, noisy in zip(pairs, _noisy_inputs(pairs, noise, seed), strict=True):
        out, sigma = predict(noisy)
        z = z_scores(out, pair.target, sigma * scale, border=border)
        row = {"region": pair.label, **coverage(z)}
        row["median_sigma"] = float(np.median(sigma * scale))
        error = (out - pair.target)[border:-border, border:-border]
        row["rmse"] = float(np.sqrt(np.mean(error**2)))
        rows.append(row)
        zs[pair.label] = z
    return rows, zs


#: Input-noise levels (multiples of the network's held-out noise) the calibration
#: map is fitted on: one level cannot show how the error grows with the noise,
#: and 3x lies inside the range the head was trained on (the network's, widened
#: ``noise_widen`` = 2 on each side, times its upper end).
CALIBRATION_NOISE_FACTORS = (1.0, 3.0)


def calibration_noise_seed(seed: int, noise_factor: float) -> int:
    """The seed of the noise drawn at ``noise_factor`` in the draw set ``seed``.

    ``seed`` itself at 1x (the draw :func:`held_out_coverage` makes with it),
    ``seed + 100 i`` at the i-th factor of :data:`CALIBRATION_NOISE_FACTORS`:
    each level gets its own noise, not a multiple of the 1x draw.
    """
    if noise_factor == 1.0:
        return int(seed)
    factors = [f for f in CALIBRATION_NOISE_FACTORS if f != 1.0]
    index = factors.index(noise_factor) + 1 if noise_factor in factors else len(factors) + 1
    return int(seed) + 100 * index


def calibration_noisy_inputs(
    pairs: Sequence[Pair], *, noise: float, noise_factor: float, seed: int
) -> list[np.ndarray]:
    """The held-out inputs with white noise ``noise * noise_factor`` (physical units).

    Drawn with :func:`calibration_noise_seed` of ``seed`` and the factor.
    """
    draw = calibration_noise_seed(seed, noise_factor)
    return _noisy_inputs(pairs, noise * noise_factor, draw)


@dataclasses.dataclass
class CalibrationSample:
    """The held-out pixels of one region and noise draw, as the calibration sees them.

    ``error`` is the shipped output minus the truth, ``error_network`` the
    un-projected network output minus the truth, and ``log_inputs`` the
    logarithms of the map's four inputs (:data:`enhance_hmi.model.uncertainty.CALIBRATION_INPUTS`),
    all in network units and flattened over the pixels inside ``border``.
    """

    region: str
    group: str
    noise_factor: float
    seed: int
    error: np.ndarray
    error_network: np.ndarray
    log_inputs: np.ndarray


def _group(label: str) -> str:
    """The scene a held-out pair comes from (NFI gains ``k=`` are one region)."""
    return label.split(" k=")[0]


def calibration_samples(
    model: EnhanceWithUncertainty,
    pairs: Sequence[Pair],
    *,
    meta: dict[str, Any],
    noise: float,
    noise_factor: float,
    seed: int,
    border: int,
    consistency: bool,
) -> list[CalibrationSample]:
    """The errors of the shipped output and the calibration inputs on every held-out pair.

    The output is the network's, projected onto its noisy input as the
    weights' sidecar says (:func:`enhance_hmi.inference.consistency.project_as_recipe`,
    as :func:`enhance_hmi.inference.enhance_frame` does by default) when
    ``consistency``; the head's sigma and the local structure of the
    network output and of its input are those the model computes before
    its calibration.
    """
    from enhance_hmi.inference.consistency import project_as_recipe
    from enhance_hmi.model.uncertainty import calibration_log_inputs

    scale = float(meta["input_normalisation"].get("scale", 1.0))
    net = fold_for_inference(model)
    inner = (slice(border, -border or None),) * 2
    samples = []
    draw = calibration_noise_seed(seed, noise_factor)
    noisy_inputs = calibration_noisy_inputs(
        pairs, noise=noise, noise_factor=noise_factor, seed=seed
    )
    for pair, noisy in zip(pairs, noisy_inputs, strict=True):
        x = torch.from_numpy(np.ascontiguousarray(noisy, dtype=np.float32) / np.float32(scale))
        with torch.inference_mode():
            out, log_sigma = net.raw(x[None, None])
            log_inputs = calibration_log_inputs(log_sigma, out, x[None, None])
        network = out[0, 0].numpy() * np.float32(scale)
        shipped = project_as_recipe(network, noisy, meta)[0] if consistency else network
        logs = [t[0, 0].numpy()[inner].ravel() for t in log_inputs]
        error = ((shipped - pair.target)[inner] / scale).ravel()
        error_network = ((network - pair.target)[inner] / scale).ravel()
        ok = np.isfinite(error) & np.isfinite(error_network)
        ok &= np.isfinite(np.stack(logs)).all(axis=0)
        samples.append(
            CalibrationSample(
                region=pair.label,
                group=_group(pair.label),
                noise_factor=float(noise_factor),
                seed=draw,
                error=error[ok].astype(np.float64),
                error_network=error_network[ok].astype(np.float64),
                log_inputs=np.stack(logs)[:, ok].astype(np.float64),
            )
        )
    return samples


def fit_calibration(samples: Sequence[CalibrationSample]) -> SigmaCalibration:
    """The log-linear sigma map (:class:`~enhance_hmi.model.uncertainty.SigmaCalibration`).

    Fitted by :func:`enhance_hmi.validation.calibration.fit_log_linear` on all
    ``samples`` at once, each region and noise level counting once; the
    references are the medians of the four inputs over the samples, and
    the map is fitted inside the :data:`~enhance_hmi.model.uncertainty.CALIBRATION_PERCENTILES`
    range of each input over the samples (stored with the map, which is
    applied the same way: :meth:`~enhance_hmi.model.uncertainty.SigmaCalibration.log_terms`).
    """
    ranged = calibration_references(samples)
    log_refs = np.log(np.asarray(ranged.references))
    terms = [ranged.log_terms(s.log_inputs) for s in samples]
    # errors in units of the reference sigma (and of the head's sigma beyond its range):
    # the map is then exp(c0 + c . centred clamped inputs)
    log_scale, exponents = fit_log_linear(
        [
            s.error / np.exp(log_refs[0] + through)
            for s, (_, through) in zip(samples, terms, strict=True)
        ],
        [np.stack(clamped) - log_refs[:, None] for clamped, _ in terms],
    )
    return dataclasses.replace(ranged, log_scale=log_scale, exponents=tuple(exponents))


def calibration_references(samples: Sequence[CalibrationSample]) -> SigmaCalibration:
    """The uncalibrated map of ``samples``: their references and input ranges, power 1 on sigma.

    The references are the medians of the four inputs over the samples, the
    ranges their :data:`~enhance_hmi.model.uncertainty.CALIBRATION_PERCENTILES`
    (what :func:`fit_calibration` fits inside); the factor is 1 and the other
    exponents 0.

    Raises
    ------
    TrainingError
        No samples.
    """
    if not samples:
        raise TrainingError("no held-out pixels to calibrate the uncertainty on")
    pooled = np.concatenate([s.log_inputs for s in samples], axis=1)
    low, high = np.percentile(pooled, CALIBRATION_PERCENTILES, axis=1)
    return SigmaCalibration(
        references=tuple(float(np.exp(v)) for v in np.median(pooled, axis=1)),
        log_ranges=tuple((float(lo), float(hi)) for lo, hi in zip(low, high, strict=True)),
    )


def calibrated_log_sigma(calibration: SigmaCalibration, log_inputs: np.ndarray) -> np.ndarray:
    """log of the calibrated sigma from a sample's ``log_inputs`` (numpy twin of ``apply``)."""
    refs = np.log(np.asarray(calibration.references, dtype=np.float64))
    weights = np.asarray(calibration.exponents, dtype=np.float64)
    clamped, through = calibration.log_terms(log_inputs)
    centred = np.stack(clamped) - refs[:, None]
    log_sigma = calibration.log_scale + refs[0] + weights @ centred + through
    return np.clip(log_sigma, *LOG_SIGMA_RANGE)


def sample_coverage(
    sample: CalibrationSample, log_sigma: np.ndarray, scale: float, *, network: bool = False
) -> dict[str, Any]:
    """The coverage row of ``sample`` under the sigma ``exp(log_sigma)`` (network units).

    ``region``, ``noise_factor``, :func:`enhance_hmi.validation.calibration.coverage`
    of the errors of the shipped output (of the network output itself with
    ``network``) over sigma, and the median sigma and the rmse in physical
    units (times ``scale``).
    """
    error = sample.error_network if network else sample.error
    z = error / np.exp(log_sigma)
    row = {"region": sample.region, "noise_factor": sample.noise_factor, **coverage(z)}
    row["median_sigma"] = float(np.median(np.exp(log_sigma))) * scale
    row["rmse"] = float(np.sqrt(np.mean(error**2))) * scale
    return row


def without_histogram(row: dict[str, Any]) -> dict[str, Any]:
    """A coverage row without its z histogram (the tables the sidecar stores)."""
    return {k: v for k, v in row.items() if k != "histogram"}


def leave_one_region_out(
    fit_samples: Sequence[CalibrationSample],
    test_samples: Sequence[CalibrationSample],
    *,
    scale: float,
) -> list[dict[str, Any]]:
    """Coverage of each region under a map fitted without it (all its gains, all noise levels).

    Shows how the calibration does on a scene it has not seen: the map is
    refitted on ``fit_samples`` minus the region's scene and measured on the
    region's ``test_samples`` (another noise draw).
    """
    rows = []
    for group in dict.fromkeys(sample.group for sample in test_samples):
        others = [s for s in fit_samples if s.group != group]
        if not others:
            continue
        calibration = fit_calibration(others)
        for sample in (s for s in test_samples if s.group == group):
            row = sample_coverage(
                sample, calibrated_log_sigma(calibration, sample.log_inputs), scale
            )
            row["fitted_without"] = group
            rows.append(without_histogram(row))
    return rows
