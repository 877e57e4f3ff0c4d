"""The forward-model grid: each held-out region degraded by every member of the family.

The true HMI forward model is uncertain (which PSF; whether it includes the
CCD pixel: :mod:`enhance_hmi.physics.forward_family`). A network trained
under one member meets data made by another, while a classical method can
be told the member. For every held-out region and every member asked for,
the region's truth is degraded with that member (one noise draw, the same
for every member) and these methods are scored against its 28 cm target:

``network_default``
    the network as ``enhance predict`` runs it (its projection onto the
    input uses the forward model of its weights);
``network_told``
    the same network told the member: its input is first harmonised to the
    member it was trained for (:func:`enhance_hmi.physics.harmonise.harmonise`,
    a Wiener-regularised ratio of the two transfer functions, with the noise
    the projection estimates), and its output is projected onto the
    (unfiltered) input with the member's own forward model; under the
    trained member it is ``network_default`` itself;
``tikhonov_told``
    Tikhonov deconvolution (:func:`enhance_hmi.validation.baselines.tikhonov`)
    with the member's own PSF and pixel choice;
``tikhonov_default``
    Tikhonov with the weights' PSF and the default pixel choice (what a
    user who is told nothing would run);
``bicubic``
    2x cubic interpolation;
``oracle_linear``
    the least-squares linear 2x filter fitted on the truth
    (:func:`~enhance_hmi.validation.baselines.oracle_linear`): a bound for
    linear methods, not a method.

Continuum is scored by PSNR (dB; higher is better),
magnetograms by RMSE (gauss; lower is better), over the target less an
8-pixel border.

References
----------
.. [1] Díaz Baso, C. J. & Asensio Ramos, A. (2018), "Enhancing SDO/HMI images
   using deep learning", A&A 614, A5, Sect. 4.
.. [2] Tikhonov, A. N. & Arsenin, V. Y. (1977), *Solutions of Ill-posed
   Problems*, Winston.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from enhance_hmi.atomic import atomic_path
from enhance_hmi.model import load_weights_cached, read_sidecar
from enhance_hmi.physics import degrade
from enhance_hmi.physics.forward_family import ForwardModelSpec, forward_model_of
from enhance_hmi.physics.harmonise import harmonise
from enhance_hmi.physics.noise import input_noise
from enhance_hmi.physics.projection import recipe_noise_estimate
from enhance_hmi.provenance import provenance_record
from enhance_hmi.scenes import Scene, held_out_part
from enhance_hmi.validation import baselines, metrics
from enhance_hmi.validation.heldout import network_output
from enhance_hmi.validation.report.figures import new_figure, save_png

__all__ = [
    "GRID_METHODS",
    "NOTES",
    "evaluate_forward_grid",
    "format_grid_table",
    "write_forward_grid",
]

log = logging.getLogger(__name__)

#: The methods of the grid, in column order.
GRID_METHODS = (
    "network_default",
    "network_told",
    "tikhonov_told",
    "tikhonov_default",
    "bicubic",
    "oracle_linear",
)
#: What every grid table says beside its numbers.
NOTES = (
    "network_told is the shipped network (not retrained) told the member: its input "
    "harmonised to the member it was trained for by a Wiener-regularised transfer-function "
    "ratio, its output projected onto the input with the member's forward model.",
    "oracle_linear is the linear 2x filter fitted on the truth: a bound for linear "
    "methods, not a method.",
    "tikhonov_default uses the weights' PSF with pixel integration (the default); "
    "tikhonov_told the member's own PSF and pixel choice.",
)


def _regions(scenes: Sequence[Scene], holdout: float) -> list[tuple[str, Scene, float]]:
    """(label, held-out part, calibration factor) of every region, as ``enhance train`` splits."""
    out = []
    for scene in scenes:
        part = held_out_part(scene, holdout=holdout)
        if scene.gain == (1.0, 1.0):
            out.append((part.name, part, 1.0))
        else:
            out += [(f"{part.name} k={k:g}", part, float(k)) for k in scene.gain]
    return out


def _score(image: np.ndarray, truth: np.ndarray, observable: str, border: int) -> float:
    """PSNR (dB) for continuum, RMSE (truth units) for magnetograms, inside ``border``."""
    inner = (slice(border, -border), slice(border, -border)) if border else (slice(None),) * 2
    img = np.asarray(image, dtype=np.float64)[inner]
    ref = np.asarray(truth, dtype=np.float64)[inner]
    if observable == "continuum":
        return metrics.psnr(img, ref)
    ok = np.isfinite(img) & np.isfinite(ref)
    return float(np.sqrt(np.mean((img[ok] - ref[ok]) ** 2)))


def _network_told(
    noisy: np.ndarray,
    member: ForwardModelSpec,
    model: Any,
    meta: dict[str, Any],
    scale: float,
    consistency: bool,
    symmetries: int = 1,
) -> np.ndarray:
    """The network told ``member``: harmonised input, projection with the member's forward model."""
    told_meta = {**meta, **member.options()}
    noise, _ = input_noise(noisy, recipe_noise_estimate(told_meta))
    trained = forward_model_of(meta)
    ready = harmonise(noisy, told=member, trained=trained, noise=noise).astype(np.float32)
    return network_output(
        noisy, model, told_meta, scale, consistency, network_input=ready, symmetries=symmetries
    )


def evaluate_forward_grid(
    weights: str | os.PathLike[str],
    scenes: Sequence[Scene],
    members: Sequence[ForwardModelSpec],
    *,
    holdout: float = 0.35,
    noise_sigma: float | Sequence[float] | None = None,
    noise_seed: int = 1,
    border: int = 8,
    consistency: bool = True,
    symmetries: int = 1,
) -> list[dict[str, Any]]:
    """Score every method of :data:`GRID_METHODS` on every (region, member) cell.

    Parameters
    ----------
    weights : path-like
        Network weights (the ``network_default`` and ``network_told``
        columns; their sidecar's PSF sets ``tikhonov_default``).
    scenes : sequence of Scene
        Truth scenes; the held-out region of each is used
        (:func:`enhance_hmi.scenes.held_out_part`), one region per
        calibration factor for a scene known up to one.
    members : sequence of ForwardModelSpec
        Forward models to degrade with (rows).
    holdout : float
        Held-out column fraction (as trained).
    noise_sigma : float or sequence of float, optional
        Input noise in network units, one level or several (each its own
        set of rows, e.g. :data:`~enhance_hmi.physics.noise.CADENCE_NOISE`);
        default the weights' training noise.
    noise_seed : int
        Seed of the input noise; every member of a region gets the same draw
        (scaled to each level).
    border : int
        Target pixels left out at each edge before scoring.
    consistency : bool
        Project the network output onto its input, as ``enhance predict`` does.
    symmetries : int
        Average the network over that many symmetries, as ``enhance predict
        --symmetries`` does (:func:`enhance_hmi.inference.symmetry.symmetry_group`).

    Returns
    -------
    list of dict
        One row per (region, member, noise level): ``scene``,
        ``forward_model``, ``noise`` (network units), ``score`` ("psnr_dB"
        or "rmse"), one value per method, and the margins of
        ``network_default`` (``network_*``) and ``network_told``
        (``network_told_*``) over ``tikhonov_told`` and ``oracle_linear``
        (``*_minus_*`` in dB for PSNR; ``*_over_*`` RMSE ratios).
    """
    model, meta = load_weights_cached(weights)
    scale = float(meta["input_normalisation"]["scale"])
    if noise_sigma is None:
        noise_sigma = float(meta.get("training", {}).get("config", {}).get("noise_sigma", 0.0))
    levels = (
        [float(noise_sigma)]  # type: ignore[arg-type]
        if np.ndim(noise_sigma) == 0
        else [float(n) for n in noise_sigma]  # type: ignore[union-attr]
    )
    rows: list[dict[str, Any]] = []
    for label, part, gain in _regions(scenes, holdout):
        for member in members:
            pair = degrade(part.data, part.pixel_scale, **member.options())
            target = (pair.target * gain).astype(np.float32)
            clean = (pair.input * gain).astype(np.float32)
            draw = np.random.default_rng(noise_seed).normal(0.0, 1.0, clean.shape)
            for level in levels:
                noisy = clean + (draw * level * scale).astype(np.float32)
                row = {"scene": label, "forward_model": member.name, "noise": level}
                row.update(
                    _cell_scores(
                        noisy, target, member, model, meta, consistency, border, symmetries
                    )
                )
                rows.append(row)
                log.info("forward grid: %s under %s, noise %g", label, member.name, level)
    return rows


def _cell_scores(
    noisy: np.ndarray,
    target: np.ndarray,
    member: ForwardModelSpec,
    model: Any,
    meta: dict[str, Any],
    consistency: bool,
    border: int,
    symmetries: int = 1,
) -> dict[str, Any]:
    """The scores of every method of :data:`GRID_METHODS` on one cell, and the network's margins."""
    scale = float(meta["input_normalisation"]["scale"])
    observable = str(meta["observable"])
    trained = forward_model_of(meta)
    default = ForwardModelSpec(trained.psf_model, True)
    told = baselines.tikhonov(noisy, **member.options())
    net = network_output(noisy, model, meta, scale, consistency, symmetries=symmetries)
    images = {
        "network_default": net,
        "network_told": (
            net
            if member == trained
            else _network_told(noisy, member, model, meta, scale, consistency, symmetries)
        ),
        "tikhonov_told": told,
        "tikhonov_default": (
            told if member == default else baselines.tikhonov(noisy, **default.options())
        ),
        "bicubic": baselines.bicubic(noisy),
        "oracle_linear": baselines.oracle_linear(noisy, target),
    }
    row: dict[str, Any] = {"score": "psnr_dB" if observable == "continuum" else "rmse"}
    row.update({k: _score(v, target, observable, border) for k, v in images.items()})
    for method, name in (("network_default", "network"), ("network_told", "network_told")):
        for ref in ("tikhonov_told", "oracle_linear"):
            if observable == "continuum":
                row[f"{name}_minus_{ref}"] = row[method] - row[ref]
            else:
                row[f"{name}_over_{ref}"] = row[method] / row[ref] if row[ref] > 0 else None
    return row


def _columns(rows: Sequence[dict[str, Any]]) -> list[str]:
    return list(dict.fromkeys(k for row in rows for k in row))


def _cell(value: object) -> str:
    if value is None:
        return ""
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def format_grid_table(rows: Sequence[dict[str, Any]]) -> str:
    """The grid as a Markdown table (rows: region x member; columns: methods), and the notes."""
    keys = _columns(rows)
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(_cell(row.get(k)) for k in keys) + " |" for row in rows]
    lines += ["", *(f"- {note}" for note in NOTES)]
    return "\n".join(lines)


def _csv_text(rows: Sequence[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=_columns(rows), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


#: Figure of :func:`write_forward_grid`: inches per member (width) and per panel (height).
_INCHES_PER_MEMBER = 1.1
_PANEL_INCHES = 3.2


def _margins(by_member: dict[str, dict[str, Any]], members: list[str], key: str) -> list[float]:
    """``key`` of each member's row (NaN where missing)."""
    return [
        np.nan if by_member.get(m, {}).get(key) is None else float(by_member[m][key])
        for m in members
    ]


def _figure(rows: Sequence[dict[str, Any]], path: Path, title: str) -> None:
    """Regions as columns; per noise level a row of scores and a row of margins.

    Scores: each method against the member. Margins against Tikhonov told
    the member: the network told it (bars; green where ahead) and the
    network as shipped (black dots).
    """
    scenes = list(dict.fromkeys(row["scene"] for row in rows))
    levels = list(dict.fromkeys(row.get("noise") for row in rows))
    members = list(dict.fromkeys(row["forward_model"] for row in rows))
    width = max(5.0, _INCHES_PER_MEMBER * len(members)) * len(scenes)
    fig = new_figure(width, 2 * _PANEL_INCHES * len(levels), layout="tight")
    axes = fig.subplots(2 * len(levels), len(scenes), squeeze=False)
    continuum = rows[0]["score"] == "psnr_dB"
    told, shipped = (
        ("network_told_minus_tikhonov_told", "network_minus_tikhonov_told")
        if continuum
        else ("network_told_over_tikhonov_told", "network_over_tikhonov_told")
    )
    x = np.arange(len(members))
    for (level_index, noise), (c, scene) in itertools.product(enumerate(levels), enumerate(scenes)):
        by_member = {
            r["forward_model"]: r for r in rows if (r["scene"], r.get("noise")) == (scene, noise)
        }
        ax = axes[2 * level_index, c]
        for method in GRID_METHODS:
            values = [by_member[m][method] if m in by_member else np.nan for m in members]
            ax.plot(x, values, marker="o", label=method)
        ax.set_title(scene if noise is None else f"{scene}, noise {noise:g}", fontsize=9)
        ax.set_ylabel("PSNR (dB)" if continuum else "RMSE", fontsize=8)
        ax.set_xticks(x, [""] * len(members))
        if c == 0 and level_index == 0:
            ax.legend(fontsize=7)
        ax = axes[2 * level_index + 1, c]
        values = _margins(by_member, members, told)
        good = [(v >= 0) if continuum else (v <= 1) for v in values]
        ax.bar(x, values, color=["tab:green" if g else "tab:red" for g in good], label="told")
        ax.plot(x, _margins(by_member, members, shipped), "k.", label="not told")
        ax.axhline(0.0 if continuum else 1.0, color="k", lw=0.8)
        ax.set_ylabel(
            "network - Tikhonov told (dB)" if continuum else "network / Tikhonov told", fontsize=8
        )
        ax.set_xticks(x, members, rotation=45, ha="right", fontsize=7)
        if c == 0 and level_index == 0:
            ax.legend(fontsize=7)
    fig.suptitle(title)
    save_png(fig, path, dpi=80)


def write_forward_grid(
    out_dir: str | os.PathLike[str],
    *,
    weights: str | os.PathLike[str],
    rows: Sequence[dict[str, Any]],
    symmetries: int = 1,
) -> dict[str, Path]:
    """Write ``forward_grid.csv``, ``.md``, ``.json`` (with provenance) and ``.png`` atomically.

    ``symmetries`` (the network's passes, as evaluated) goes to the provenance.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    meta = read_sidecar(weights)
    paths = {
        "csv": out / "forward_grid.csv",
        "table": out / "forward_grid.md",
        "json": out / "forward_grid.json",
        "figure": out / "forward_grid.png",
    }
    record = {
        "provenance": provenance_record(
            weights_sha256=meta["sha256"], weights=Path(weights).name, symmetries=symmetries
        ),
        "methods": list(GRID_METHODS),
        "notes": list(NOTES),
        "rows": list(rows),
    }
    with atomic_path(paths["csv"]) as tmp:
        tmp.write_text(_csv_text(rows))
    with atomic_path(paths["table"]) as tmp:
        tmp.write_text(format_grid_table(rows) + "\n")
    with atomic_path(paths["json"]) as tmp:
        tmp.write_text(json.dumps(record, indent=2, default=float) + "\n")
    _figure(rows, paths["figure"], f"{meta['observable']}: held-out regions x forward models")
    return paths
