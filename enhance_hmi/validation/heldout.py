"""Held-out evaluation: the network against classical methods on data it never saw.

Held-out scenes: the held-out region of each truth scene (see
:func:`enhance_hmi.scenes.split_scene`; the pairs come from
:func:`enhance_hmi.training.held_out_pairs`, the split ``enhance train`` used) is
degraded to an HMI-like
input (with the paper's input noise; one seeded draw, or several with
:func:`evaluate_over_draws`) and its 28 cm target. The
network output, bicubic interpolation, an unsharp mask and Richardson-Lucy
(scikit-image, HMI PSF) are scored against the target by the scorer of the
validation reports (:func:`enhance_hmi.validation.report.evaluate`): PSNR, SSIM,
quiet-Sun rms contrast, the distance between azimuthally averaged power
spectra at 0.20-0.99 arcsec^-1 (0.05-0.25 px^-1 of the 0.252"/px grid, the
paper's recipe) and the forward-consistency residual. The figure's spectra
are per unit solar area (arcsec^-1, power per arcsec^-2 of frequency), the
input at 0.504"/px on the scale of the 0.252"/px images.

Real HMI: the quiet-Sun contrast of a real HMI continuum cut-out before and
after enhancement, and for real HMI magnetograms the unsigned flux (output
vs input, same field of view) and the quiet-Sun noise against
Richardson-Lucy's.

References
----------
.. [1] Díaz Baso, C. J. & Asensio Ramos, A. (2018), "Enhancing SDO/HMI images
   using deep learning", A&A 614, A5, Sect. 4.
"""

from __future__ import annotations

import json
import logging
import math
import numbers
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, TypeGuard

import astropy.units as u
import numpy as np

from enhance_hmi.atomic import atomic_path
from enhance_hmi.errors import ConfigError
from enhance_hmi.inference import enhance_array
from enhance_hmi.inference.consistency import project_as_recipe
from enhance_hmi.inference.symmetry import symmetry_group
from enhance_hmi.model import load_weights_cached, psf_model_of
from enhance_hmi.physics import ENHANCED_PIXEL_SCALE, HMI_PIXEL_SCALE, degrade
from enhance_hmi.physics.disk import SolarDisk
from enhance_hmi.physics.forward_family import forward_model_of
from enhance_hmi.physics.noise import hmi_noise_sigma
from enhance_hmi.physics.spectrum import radial_power_spectrum
from enhance_hmi.provenance import provenance_record
from enhance_hmi.scenes import SELF_SIMILAR_FACTOR
from enhance_hmi.validation import baselines, metrics, report
from enhance_hmi.validation.report.figures import SPECTRUM_PAD, new_figure, save_png

__all__ = [
    "METHODS",
    "HeldOutPair",
    "evaluate_hmi_continuum",
    "evaluate_hmi_magnetograms",
    "evaluate_over_draws",
    "evaluate_pairs",
    "format_table",
    "self_similar_field_flux",
    "write_evaluation",
]

log = logging.getLogger(__name__)

#: Methods compared, in table order (those of the validation reports), then
#: the bounds scored beside them (the linear filter fitted on the truth).
METHODS = (*report.METHODS, *report.BOUNDS)
#: Scores copied from :func:`enhance_hmi.validation.report.evaluate` into each row.
_SCORES = ("psnr", "ssim", "spectrum_distance", "forward_residual")


class HeldOutPair(Protocol):
    """What the evaluation reads of a held-out pair (:class:`enhance_hmi.training.Pair`).

    Attributes
    ----------
    input : numpy.ndarray
        Noise-free degraded input at 0.504"/px, shape (H, W).
    target : numpy.ndarray
        Its 28 cm target at 0.252"/px, shape (2H, 2W).
    label : str
        Name of the held-out region (table rows, figure labels).
    """

    input: np.ndarray
    target: np.ndarray
    label: str


#: Input pixels left out at each edge of a real HMI cut-out's forward residual
#: (beyond its edge the re-observation sees a mirror image, not the Sun); the
#: held-out scores drop the same 4 input pixels (8 enhanced).
REAL_HMI_BORDER = 4
#: Strong-field threshold of the held-out flux check (G): plage and pores.
STRONG_FIELD_G = 500.0


def _percent(fraction: float | None) -> float | None:
    return None if fraction is None else 100.0 * fraction


def network_output(
    data: np.ndarray,
    model: Any,
    meta: dict,
    scale: float,
    consistency: bool,
    header: Any = None,
    *,
    network_input: np.ndarray | None = None,
    symmetries: int = 1,
) -> np.ndarray:
    """The network's output for ``data`` on the CPU, projected onto the data if asked.

    The projection is the one :func:`enhance_hmi.inference.enhance_frame`
    applies (:func:`enhance_hmi.inference.consistency.project_as_recipe` with
    the recipe ``meta``, and the disk of ``header`` when it has one). The
    network runs on ``network_input`` when given (``data`` harmonised to
    another forward model, :mod:`enhance_hmi.validation.forward_grid`), the
    projection always onto ``data``. ``symmetries``: the network averaged
    over that many symmetries (:func:`enhance_hmi.inference.symmetry.symmetry_group`
    of the sidecar's observable), as ``enhance predict --symmetries`` does.
    """
    source = data if network_input is None else network_input
    group = symmetry_group(symmetries, str(meta["observable"]))
    out = enhance_array(source, model, device="cpu", input_scale=scale, tile=512, symmetries=group)
    if not consistency:
        return out
    projected, _ = project_as_recipe(out, data, meta, disk=SolarDisk.from_header(header))
    return projected


def evaluate_pairs(
    weights: str | os.PathLike[str],
    pairs: Sequence[HeldOutPair],
    *,
    noise_seed: int = 1,
    noise_sigma: float | None = None,
    border: int = 8,
    consistency: bool = True,
    symmetries: int = 1,
) -> tuple[list[dict[str, Any]], dict[str, dict[str, np.ndarray]]]:
    """Score every method on every held-out pair.

    Parameters
    ----------
    weights : path-like
    pairs : sequence of HeldOutPair
        Noise-free held-out pairs; input noise of the weights' recipe
        (sidecar ``training.config.noise_sigma`` x input scale) is added with
        ``noise_seed``.
    noise_sigma : float, optional
        Input noise in network units instead of the weights' training noise
        (e.g. the paper's 1e-3, to compare networks trained with different
        noise on the same inputs).
    border : int
        Even number of target pixels dropped at each edge before scoring
        (edge handling is not what is compared); the forward residual is
        measured on the whole field.
    consistency : bool
        Project the network's output onto its input, as ``enhance predict`` does.
    symmetries : int
        Average the network over that many symmetries of the forward model
        (:func:`enhance_hmi.inference.symmetry.symmetry_group`), as ``enhance
        predict --symmetries`` does.

    Returns
    -------
    (rows, images)
        One row per (scene, method) with ``psnr``, ``ssim``,
        ``spectrum_distance``, ``forward_residual`` and, for continuum,
        ``contrast`` and ``truth_contrast`` (per cent, quiet-Sun mask of the
        truth) or, for Blos, ``noise_G``, ``truth_noise_G`` and
        ``input_noise_G`` (robust rms over the truth's quiet-Sun mask, on the
        input's grid for the input: comparable with each other),
        ``flux_ratio`` and ``flux_ratio_500G``; the forward residual of the
        method and of the truth (``forward_*`` and ``truth_forward_*``:
        ``rms_in_noise``, ``rms_field_in_noise``, ``rms_quiet_in_noise``
        (None where the input has no quiet Sun), ``rms`` and
        ``rms_field_pixels`` of
        :func:`enhance_hmi.validation.metrics.forward_residual_stats`), with
        ``forward_noise``, what the ``*_in_noise`` figures divide by: the
        robust rms of the input over its own quiet-Sun mask (for Blos; the
        spectral noise level for continuum), the noise and regions of
        :func:`evaluate_hmi_magnetograms`; and the images per scene. The
        truth's own quiet-Sun residual shows what a right answer scores on
        the real-HMI checks, where no truth exists. The scores are those of
        :func:`enhance_hmi.validation.report.evaluate`.
    """
    model, meta = load_weights_cached(weights)
    scale = float(meta["input_normalisation"]["scale"])
    if noise_sigma is None:
        noise_sigma = float(meta.get("training", {}).get("config", {}).get("noise_sigma", 0.0))
    sigma = float(noise_sigma) * scale
    psf_model = psf_model_of(meta)
    rng = np.random.default_rng(noise_seed)
    observable = meta["observable"]
    rows, images = [], {}
    for pair in pairs:
        noisy = pair.input + rng.normal(0.0, sigma, pair.input.shape).astype(np.float32)
        case = report.ValidationCase(
            name=pair.label,
            observable=observable,
            hmi=noisy,
            truth=pair.target,
            enhanced=network_output(noisy, model, meta, scale, consistency, symmetries=symmetries),
            truth_label="held-out region degraded to 28 cm",
            psf_model=psf_model,
        )
        evaluation = report.evaluate(case, border=border)
        for name in METHODS:
            rows.append(_method_row(evaluation, name, pair, observable, border))
        images[pair.label] = {"input": noisy, **evaluation.images}
        log.info("evaluated %s", pair.label)
    return rows, images


def _method_row(
    evaluation: report.Evaluation, name: str, pair: HeldOutPair, observable: str, border: int
) -> dict[str, Any]:
    """The row of method ``name`` on the held-out ``pair``: its scores beside the truth's."""
    doc = evaluation.metrics
    truth_stats = doc["truth_stats"]
    scores = doc["methods"][name]
    row: dict[str, Any] = {"scene": pair.label, "method": name}
    row.update({k: scores[k] for k in _SCORES})
    if observable == "continuum":
        row["contrast"] = _percent(scores["rms_contrast"])
        row["truth_contrast"] = _percent(truth_stats["rms_contrast"])
    else:
        row["noise_G"] = scores["noise_level_G"]
        row["truth_noise_G"] = truth_stats["noise_level_G"]
        row["input_noise_G"] = doc["hmi_input"]["noise_level_G"]
        row["flux_ratio"] = scores["unsigned_flux_ratio"]
        row["flux_ratio_500G"] = _strong_flux_ratio(evaluation.images[name], pair.target, border)
    row["forward_noise"] = doc["forward_residuals"][name]["noise"]
    for key in (
        "rms_in_noise",
        "rms_field_in_noise",
        "rms_quiet_in_noise",
        "rms",
        "rms_field_pixels",
    ):
        row[f"forward_{key}"] = doc["forward_residuals"][name][key]
        row[f"truth_forward_{key}"] = doc["forward_residuals"]["truth"][key]
    return row


def evaluate_over_draws(
    weights: str | os.PathLike[str],
    pairs: Sequence[HeldOutPair],
    *,
    draws: int = 1,
    noise_sigma: float | None = None,
    border: int = 8,
    consistency: bool = True,
    symmetries: int = 1,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, dict[str, np.ndarray]]]:
    """:func:`evaluate_pairs` on ``draws`` noise realisations (seeds 1 to ``draws``).

    A comparison decided on one noise draw can be decided by the draw: the
    Tikhonov baseline's regularisation follows the noise level it estimates
    from each input, so its PSNR moves with the draw more than the
    network's (docs/model_card.md, "Evaluation on held-out data").

    Parameters
    ----------
    weights, pairs, noise_sigma, border, consistency, symmetries
        As for :func:`evaluate_pairs`.
    draws : int
        Number of noise realisations; draw ``i`` uses ``noise_seed=i``, so
        ``draws=1`` is :func:`evaluate_pairs` with its default seed.

    Returns
    -------
    (summary, per_draw, images)
        ``summary``: one row per (scene, method): ``psnr`` (mean over the
        draws), ``psnr_min``, ``psnr_max``, for the network
        ``psnr_minus_tikhonov`` (mean, ``_min``, ``_max`` of the per-draw
        margins), then every other numeric score averaged over the draws
        that define it (None where none does; ``{key}_draws`` counts them
        where some draws do not), other values as in the first draw
        (``{key}_varies`` when the draws disagree), and ``draws``.
        ``per_draw``: every draw's rows with their ``noise_seed``.
        ``images``: the first draw's (the figure of
        :func:`write_evaluation` shows them).

    Raises
    ------
    ConfigError
        ``draws`` below 1.
    """
    if draws < 1:
        raise ConfigError(f"draws must be at least 1, got {draws}")
    per_draw: list[dict[str, Any]] = []
    images: dict[str, dict[str, np.ndarray]] = {}
    for seed in range(1, draws + 1):
        rows, imgs = evaluate_pairs(
            weights,
            pairs,
            noise_seed=seed,
            noise_sigma=noise_sigma,
            border=border,
            consistency=consistency,
            symmetries=symmetries,
        )
        per_draw.extend({**row, "noise_seed": seed} for row in rows)
        if seed == 1:
            images = imgs
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in per_draw:
        groups.setdefault((row["scene"], row["method"]), []).append(row)
    summary = []
    for (scene, method), rows in groups.items():
        if len(rows) != draws:
            raise ConfigError(
                f"held-out regions share the label {scene!r}; give them distinct names"
            )
        tikhonov = {r["noise_seed"]: r["psnr"] for r in groups.get((scene, "tikhonov"), [])}
        summary.append(_draw_summary(scene, method, rows, tikhonov))
    return summary, per_draw, images


def _draw_summary(
    scene: str, method: str, rows: Sequence[dict[str, Any]], tikhonov: dict[int, Any]
) -> dict[str, Any]:
    """One summary row of :func:`evaluate_over_draws` from a method's rows on a scene.

    ``tikhonov`` maps each draw's seed to the Tikhonov baseline's PSNR on the
    scene (the network's margin over it).
    """
    out: dict[str, Any] = {"scene": scene, "method": method}
    psnr = [r["psnr"] for r in rows if _is_number(r["psnr"])]
    out["psnr"] = float(np.mean(psnr)) if psnr else None
    out["psnr_min"] = float(min(psnr)) if psnr else None
    out["psnr_max"] = float(max(psnr)) if psnr else None
    if method == "enhance" and tikhonov:
        margin = [
            r["psnr"] - tikhonov[r["noise_seed"]]
            for r in rows
            if _is_number(r["psnr"]) and _is_number(tikhonov.get(r["noise_seed"]))
        ]
        out["psnr_minus_tikhonov"] = float(np.mean(margin)) if margin else None
        out["psnr_minus_tikhonov_min"] = float(min(margin)) if margin else None
        out["psnr_minus_tikhonov_max"] = float(max(margin)) if margin else None
    for key in _keys_of(rows, skip={*out, "noise_seed"}):
        values = [r.get(key) for r in rows]
        numbers_ = [v for v in values if _is_number(v)]
        if numbers_:
            out[key] = float(np.mean(numbers_))
            if len(numbers_) < len(values):
                out[f"{key}_draws"] = len(numbers_)
        else:
            out[key] = values[0]
            if any(v != values[0] for v in values):
                out[f"{key}_varies"] = True
    out["draws"] = len(rows)
    return out


def _keys_of(
    rows: Sequence[dict[str, Any]], skip: set[str] | frozenset[str] = frozenset()
) -> list[str]:
    """Every key of any row, in order of first appearance, less ``skip``."""
    return [k for k in dict.fromkeys(k for row in rows for k in row) if k not in skip]


def _is_number(value: object) -> TypeGuard[float]:
    """A real number (``numbers.Real``) that is not a bool (True/False are ints in Python)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _strong_flux_ratio(image: np.ndarray, truth: np.ndarray, border: int) -> float | None:
    """Unsigned flux of ``image`` over the truth's pixels above 500 G, over the truth's."""
    inner = (slice(border, -border), slice(border, -border)) if border else ...
    img, ref = np.asarray(image)[inner], np.asarray(truth)[inner]
    strong = np.isfinite(img) & (np.abs(ref) > STRONG_FIELD_G)
    total = float(np.abs(ref[strong]).sum())
    return float(np.abs(img[strong]).sum()) / total if total > 0 else None


def evaluate_hmi_continuum(
    weights: str | os.PathLike[str],
    path: str | os.PathLike[str],
    *,
    consistency: bool = True,
    symmetries: int = 1,
) -> dict[str, Any]:
    """Quiet-Sun contrast of a real HMI continuum image before/after enhancement.

    The image is read with :func:`enhance_hmi.io.read_hmi` (quiet-Sun
    normalisation); contrasts use the automatic quiet-Sun mask of each image.
    The paper reports 3.7-3.8 % -> 6.7-7.7 % [1]_. The forward residual of
    the output and of bicubic interpolation is given in units of the input
    noise (:func:`enhance_hmi.physics.noise.hmi_noise_sigma`).
    """
    from enhance_hmi.io import read_hmi

    frame = read_hmi(path, observable="continuum")
    model, meta = load_weights_cached(weights)
    out = network_output(
        frame.data, model, meta, 1.0, consistency, frame.header, symmetries=symmetries
    )
    psf_model = psf_model_of(meta)
    rl = baselines.richardson_lucy(frame.data, psf_model=psf_model)
    contrast = {}
    for name, image in (("hmi", frame.data), ("enhance", out), ("richardson_lucy", rl)):
        contrast[name] = 100 * metrics.rms_contrast(image, metrics.quiet_sun_mask(image))
    noise = hmi_noise_sigma(frame.data)
    residual = {
        name: metrics.forward_residual_stats(
            image, frame.data, noise=noise, psf_model=psf_model, border=REAL_HMI_BORDER
        )["rms_in_noise"]
        for name, image in (("enhance", out), ("bicubic", baselines.bicubic(frame.data)))
    }
    return {
        "file": Path(path).name,
        "shape": list(frame.data.shape),
        "contrast_percent": contrast,
        "noise": noise,
        "forward_residual_in_noise": residual,
        "consistency": bool(consistency),
    }


def evaluate_hmi_magnetograms(
    weights: str | os.PathLike[str],
    paths: Sequence[str | os.PathLike[str]],
    *,
    crop: int = 1024,
    consistency: bool = True,
    symmetries: int = 1,
) -> list[dict[str, Any]]:
    """Unsigned flux and quiet-Sun noise on real HMI magnetograms.

    For each file the central ``crop`` x ``crop`` pixels (disk centre) are
    enhanced. Unsigned flux is compared on the same field of view (output
    pixels have a quarter of the area), over every pixel and over the field
    regions of :func:`enhance_hmi.validation.metrics.field_mask` (the flux of
    the magnetic features, without the noise floor); noise is the robust standard
    deviation over the quiet-Sun mask (``|B| < 50`` G, grown by 5 px) of the
    input, mapped to each output grid by nearest-neighbour 2x. The paper
    finds the flux roughly conserved and Richardson-Lucy adding ~80 G of
    noise where Enhance adds none [1]_.

    A correct enhancement does not conserve the field-region flux: it
    undoes the PSF's spreading of weak flux below the mask's threshold and
    the cancellation of opposite polarities it blurs together. What it
    should do on each frame is measured on the frame itself by
    :func:`self_similar_field_flux` (``field_flux_ratio_self_similar_truth``
    and ``..._enhance``).
    """
    from enhance_hmi.io import read_hmi

    model, meta = load_weights_cached(weights)
    rows = []
    for path in paths:
        frame = read_hmi(path, observable="magnetogram")
        ny, nx = frame.data.shape
        size = min(crop, ny, nx)
        y0, x0 = (ny - size) // 2, (nx - size) // 2
        data = np.asarray(frame.data[y0 : y0 + size, x0 : x0 + size], dtype=np.float32)
        out = network_output(data, model, meta, 1000.0, consistency, symmetries=symmetries)
        psf_model = psf_model_of(meta)
        rl = baselines.richardson_lucy(data, psf_model=psf_model)
        bic = baselines.bicubic(data)
        quiet_in = metrics.quiet_sun_mask(data, kind="blos")
        quiet = np.repeat(np.repeat(quiet_in, 2, axis=0), 2, axis=1)
        pix_in = metrics.solar_pixel_area(HMI_PIXEL_SCALE)
        pix_out = pix_in / 4
        noise_in = metrics.noise_level(data, quiet_in)
        field_in = metrics.field_mask(data, noise_in)
        flux_in = metrics.unsigned_flux(data, pix_in)
        flux_field_in = metrics.unsigned_flux(np.where(field_in, data, 0.0), pix_in)
        reference = self_similar_field_flux(
            data, model, meta, noise=noise_in, consistency=consistency, symmetries=symmetries
        )

        row = {
            "file": Path(path).name,
            "crop": size,
            "flux_in_Mx": float(flux_in.value),
            "flux_ratio_enhance": float(metrics.unsigned_flux(out, pix_out) / flux_in),
            "flux_ratio_richardson_lucy": float(metrics.unsigned_flux(rl, pix_out) / flux_in),
            "field_fraction": float(field_in.mean()),
            "field_flux_in_Mx": float(flux_field_in.value),
            "field_flux_ratio_enhance": _field_flux_ratio(out, field_in, data),
            "field_flux_ratio_richardson_lucy": _field_flux_ratio(rl, field_in, data),
            "field_flux_ratio_self_similar_truth": reference["truth"],
            "field_flux_ratio_self_similar_enhance": reference["enhance"],
            "field_fraction_self_similar": reference["field_fraction"],
            "noise_in_G": noise_in,
            "noise_bicubic_G": metrics.noise_level(bic, quiet),
            "noise_enhance_G": metrics.noise_level(out, quiet),
            "noise_richardson_lucy_G": metrics.noise_level(rl, quiet),
            "amplification_1kG_enhance": metrics.field_amplification(out, bic),
            "forward_residual_enhance": metrics.forward_residual(out, data, psf_model=psf_model),
        }
        for name, image in (("enhance", out), ("bicubic", bic)):
            stats = metrics.forward_residual_stats(
                image,
                data,
                noise=noise_in,
                field=field_in,
                quiet=quiet_in,
                psf_model=psf_model,
                border=REAL_HMI_BORDER,
            )
            row[f"forward_residual_quiet_in_noise_{name}"] = stats["rms_quiet_in_noise"]
            row[f"forward_residual_field_in_noise_{name}"] = stats["rms_field_in_noise"]
        rows.append(row)
        log.info("evaluated %s", row["file"])
    return rows


def _field_flux_ratio(image: np.ndarray, field_in: np.ndarray, data: np.ndarray) -> float:
    """Unsigned flux of a 2x image over the input's field regions, over the input's there.

    The output pixel has a quarter of the input pixel's area; the field mask
    is mapped to the output grid by nearest-neighbour 2x.
    """
    field = np.repeat(np.repeat(field_in, 2, axis=0), 2, axis=1)
    flux_in = float(np.nansum(np.abs(data[field_in])))
    return float(np.nansum(np.abs(image[field])) / 4 / flux_in) if flux_in else math.nan


def self_similar_field_flux(
    data: np.ndarray,
    model: Any,
    meta: dict,
    *,
    noise: float,
    seed: int = 1,
    consistency: bool = True,
    symmetries: int = 1,
) -> dict[str, float]:
    """The field-region flux a correct enhancement gives a real magnetogram, on its own view.

    The frame ``data`` (Blos in gauss at 0.504"/px) is taken as a truth at
    0.504"/:data:`~enhance_hmi.scenes.SELF_SIMILAR_FACTOR` per pixel, the
    self-similar truth the magnetogram network trains on
    (:func:`enhance_hmi.scenes.load_magnetogram_scene`), and degraded with
    the network's forward model (:func:`enhance_hmi.physics.forward_family.forward_model_of`)
    and Gaussian noise of ``noise`` gauss (the frame's own). On that
    HMI-like view the field mask, noise estimate and flux ratio are those
    of :func:`evaluate_hmi_magnetograms`; the ratio is given for the 28 cm
    target (what a perfect enhancement would give) and for the network with
    its recipe. Structure is self-similar over the factor only roughly
    (finer real structure would cancel more flux in HMI's view), so the
    truth's ratio is a reference for the frame's field content, not a bound.

    Parameters
    ----------
    data : numpy.ndarray
        Blos (G) of a real HMI crop at 0.504"/px, on the disk (NaN read as 0).
    model, meta
        The network and its sidecar (:func:`enhance_hmi.model.load_weights_cached`).
    noise : float
        Gaussian noise (G) added to the view: the frame's own.
    seed : int
        Seed of that noise.
    consistency, symmetries
        The recipe the network runs with, as in :func:`network_output`.

    Returns
    -------
    dict
        ``truth`` and ``enhance`` (field-region flux over the view's) and
        ``field_fraction`` (of the view's pixels).
    """
    truth = np.nan_to_num(np.asarray(data, dtype=np.float64))
    pair = degrade(
        truth,
        HMI_PIXEL_SCALE / SELF_SIMILAR_FACTOR,
        noise_sigma=noise,
        rng=seed,
        **forward_model_of(meta).options(),
    )
    view = pair.input.astype(np.float32)
    noise_view = metrics.noise_level(view, metrics.quiet_sun_mask(view, kind="blos"))
    field_in = metrics.field_mask(view, noise_view)
    out = network_output(view, model, meta, 1000.0, consistency, symmetries=symmetries)
    return {
        "truth": _field_flux_ratio(pair.target, field_in, view),
        "enhance": _field_flux_ratio(out, field_in, view),
        "field_fraction": float(field_in.mean()),
    }


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """A Markdown table of the per-scene, per-method rows (columns: every key of any row)."""
    keys = _keys_of(rows, skip={"scene", "method"})
    lines = [
        "| scene | method | " + " | ".join(keys) + " |",
        "|---|---|" + "---|" * len(keys),
    ]
    for row in rows:
        cells = []
        for k in keys:
            v = row.get(k)
            cells.append("" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v))
        lines.append(f"| {row['scene']} | {row['method']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


#: Figure of write_evaluation: panel height (inches), range of image-panel widths, spectrum width.
_PANEL_INCHES = 3.0
_PANEL_WIDTH_RANGE = (1.5, 4.0)
_SPECTRUM_INCHES = 3.5


def _figure(images: dict[str, dict[str, np.ndarray]], path: Path, title: str) -> None:
    """One row per held-out region: every method on the truth's grey scale, and spectra."""
    cols = ["input", "bicubic", "richardson_lucy", "tikhonov", "enhance", "oracle_linear", "truth"]
    # image panels as wide as the widest region asks (tall strips get narrow panels)
    aspect = max(t["truth"].shape[1] / t["truth"].shape[0] for t in images.values())
    panel = float(np.clip(_PANEL_INCHES * aspect, *_PANEL_WIDTH_RANGE))
    fig = new_figure(
        panel * len(cols) + _SPECTRUM_INCHES, _PANEL_INCHES * len(images), layout="tight"
    )
    axes = fig.subplots(
        len(images),
        len(cols) + 1,
        squeeze=False,
        gridspec_kw={"width_ratios": [panel] * len(cols) + [_SPECTRUM_INCHES]},
    )
    for r, (label, imgs) in enumerate(images.items()):
        truth = imgs["truth"]
        lo, hi = np.percentile(truth, [1, 99])
        for c, name in enumerate(cols):
            ax = axes[r, c]
            ax.imshow(imgs[name], origin="lower", cmap="gray", vmin=lo, vmax=hi)
            ax.set_title(name if r == 0 else "", fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r, 0].set_ylabel(label.replace("[", "\n["), fontsize=8)
        ax = axes[r, -1]
        # per unit solar area: the input at 0.504"/px on the scale of the 0.252"/px images
        for name in ("input", "bicubic", "tikhonov", "enhance", "truth"):
            scale = HMI_PIXEL_SCALE if name == "input" else ENHANCED_PIXEL_SCALE
            f, p = radial_power_spectrum(imgs[name], scale, pad=SPECTRUM_PAD)
            ax.loglog(f.to_value(1 / u.arcsec), p.to_value(u.arcsec**2), label=name)
        ax.axvspan(*metrics.spectrum_band().to_value(1 / u.arcsec), color="0.9")
        ax.set_xlabel("arcsec$^{-1}$", fontsize=8)
        ax.set_ylabel("power spectral density (arcsec$^2$)", fontsize=8)
        if r == 0:
            ax.legend(fontsize=7)
    fig.suptitle(title)
    save_png(fig, path, dpi=80)


def write_evaluation(
    out_dir: str | os.PathLike[str],
    *,
    weights: str | os.PathLike[str],
    rows: Sequence[dict[str, Any]],
    images: dict[str, dict[str, np.ndarray]],
    hmi: dict[str, Any] | list | None = None,
    per_draw: Sequence[dict[str, Any]] | None = None,
    symmetries: int = 1,
) -> dict[str, Path]:
    """Write ``evaluation.json``, ``evaluation.md`` and ``evaluation.png``.

    ``rows`` are the held-out scores (over several noise draws: their
    means, :func:`evaluate_over_draws`), ``per_draw`` every draw's rows;
    ``symmetries`` (the network's passes) goes to the provenance.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    from enhance_hmi.model import read_sidecar

    meta = read_sidecar(weights)
    record = {
        "provenance": provenance_record(
            weights_sha256=meta["sha256"], weights=Path(weights).name, symmetries=symmetries
        ),
        "held_out": list(rows),
        "held_out_draws": list(per_draw) if per_draw is not None else None,
        "real_hmi": hmi,
    }
    paths = {
        "json": out / "evaluation.json",
        "table": out / "evaluation.md",
        "figure": out / "evaluation.png",
    }
    with atomic_path(paths["json"]) as tmp:
        tmp.write_text(json.dumps(record, indent=2, default=float) + "\n")
    with atomic_path(paths["table"]) as tmp:
        tmp.write_text(format_table(rows) + "\n")
    title = f"{meta['observable']}: held-out regions"
    if per_draw is not None and len({r.get("noise_seed") for r in per_draw}) > 1:
        title += " (images: noise draw 1 of the tables' mean)"
    _figure(images, paths["figure"], title)
    return paths
