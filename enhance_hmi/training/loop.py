"""The training loop: seeded, resumable, logged.

The recipe of the paper (Sect. 3): MSE loss, Adam, L2 weight decay 1e-6
(continuum) / 1e-5 (Blos), Gaussian input noise 1e-3 (quiet-Sun units) /
1e-2 kG. Deviations are options with the paper's value as reference:
``lr`` (paper 1e-4) with an optional cosine decay, and ``patch`` (paper 50
input pixels), both recorded in the sidecar of the weights.

Outputs in ``out_dir``: ``checkpoint.pt`` (model, optimiser, random states,
step; written atomically every ``checkpoint_every`` steps and on exit, so an
interrupted run resumes where it stopped), ``loss.csv``, ``loss.png`` and
``{observable}.safetensors`` with its JSON sidecar.

References
----------
.. [1] Díaz Baso, C. J. & Asensio Ramos, A. (2018), "Enhancing SDO/HMI images
   using deep learning", A&A 614, A5.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import logging
import math
import os
import platform
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from enhance_hmi.atomic import atomic_path
from enhance_hmi.errors import TrainingError, WeightsError
from enhance_hmi.model import EnhanceNet, load_weights, save_weights
from enhance_hmi.model.network import deepened
from enhance_hmi.physics import HMI_PIXEL_SCALE
from enhance_hmi.physics.psf import DEFAULT_PSF_MODEL
from enhance_hmi.training.pairs import Pair, PatchSampler

__all__ = ["PAPER_RECIPE", "TrainConfig", "recalibrate_batchnorm", "train", "validation_loss"]

log = logging.getLogger(__name__)

#: Per-observable recipe of the paper (Sect. 3): weight decay, input noise
#: (network units), input scale (network units = physical / scale) and units.
PAPER_RECIPE: dict[str, dict[str, Any]] = {
    "continuum": {
        "weight_decay": 1e-6,
        "noise_sigma": 1e-3,
        "input_scale": 1.0,
        "quantity": "continuum intensity",
        "units": "quiet-Sun intensity",
    },
    "magnetogram": {
        "weight_decay": 1e-5,
        "noise_sigma": 1e-2,
        "input_scale": 1000.0,
        "quantity": "Blos",
        "units": "G",
    },
}


@dataclasses.dataclass
class TrainConfig:
    """Training settings (defaults: the paper where it says, else noted).

    Attributes
    ----------
    observable : {"continuum", "magnetogram"}
    steps : int
        Optimiser steps.
    batch : int
        Patches per step.
    patch : int
        Input patch side (paper: 50).
    lr : float
        Adam learning rate (paper: 1e-4).
    lr_final : float or None
        Cosine decay to this rate over ``steps`` (None: constant).
    weight_decay, noise_sigma : float or None
        None: the paper's value for the observable.
    n_blocks, width : int
        Architecture (paper: 5, 64).
    seed : int
    val_every, checkpoint_every : int
        Steps between validation losses / checkpoints.
    max_minutes : float or None
        Stop (and save) after this wall time even before ``steps``.
    threads : int or None
        torch CPU threads.
    psf_model : str
        HMI PSF of the degradation.
    bn_recalibration : int
        Batches of 16 patches over which the batch-norm statistics are
        recomputed after training (:func:`recalibrate_batchnorm`; 0: keep the
        running averages). Not in the paper; it lowered the held-out MSE of
        the continuum network at step 1900 from 3.7e-3 to 3.6e-4.
    init_weights : str or None
        A weights file to start from instead of a random network (a warm
        start across sessions). Its width, upscale and linear skip must match;
        a deeper ``n_blocks`` adds residual blocks that start as the identity
        (:func:`enhance_hmi.model.network.deepened`), so step 0 reproduces the
        file's output. Its sidecar's ``psf_model`` need not match.
    """

    observable: str = "continuum"
    steps: int = 2000
    batch: int = 8
    patch: int = 40
    lr: float = 1e-4
    lr_final: float | None = None
    weight_decay: float | None = None
    noise_sigma: float | None = None
    n_blocks: int = 5
    width: int = 64
    seed: int = 0
    val_every: int = 100
    checkpoint_every: int = 100
    max_minutes: float | None = None
    threads: int | None = None
    psf_model: str = DEFAULT_PSF_MODEL
    bn_recalibration: int = 200
    noise_range: tuple[float, float] | None = None
    contrast_range: tuple[float, float] | None = None
    linear_skip: int = 0
    init_weights: str | None = None

    def __post_init__(self) -> None:
        if self.observable not in PAPER_RECIPE:
            raise TrainingError(f"unknown observable {self.observable!r}")
        recipe = PAPER_RECIPE[self.observable]
        if self.weight_decay is None:
            self.weight_decay = recipe["weight_decay"]
        if self.noise_sigma is None:
            self.noise_sigma = recipe["noise_sigma"]
        for name in ("steps", "batch", "patch", "val_every", "checkpoint_every"):
            if int(getattr(self, name)) < 1:
                raise TrainingError(f"{name} must be a positive integer")
        for name in ("noise_range", "contrast_range"):
            value = getattr(self, name)
            if value is not None:
                low, high = (float(v) for v in value)
                if not 0 < low <= high:
                    raise TrainingError(f"{name} must be 0 < low <= high, got {value}")
                setattr(self, name, (low, high))
        if self.linear_skip < 0 or (self.linear_skip and self.linear_skip % 2 == 0):
            raise TrainingError(f"linear_skip must be 0 or odd, got {self.linear_skip}")
        if self.contrast_range is not None and self.observable != "continuum":
            raise TrainingError("contrast_range applies to continuum training only")

    @property
    def input_scale(self) -> float:
        """Network units = physical / this (the paper's recipe for the observable)."""
        return float(PAPER_RECIPE[self.observable]["input_scale"])


def _lr_at(config: TrainConfig, step: int) -> float:
    if config.lr_final is None:
        return config.lr
    frac = min(step / max(config.steps, 1), 1.0)
    return config.lr_final + 0.5 * (config.lr - config.lr_final) * (1 + math.cos(math.pi * frac))


def validation_loss(model: EnhanceNet, pairs: list[Pair], input_scale: float) -> float:
    """Mean squared error (network units) of whole held-out images."""
    model.eval()
    total, count = 0.0, 0
    with torch.inference_mode():
        for pair in pairs:
            x = torch.from_numpy(pair.input / np.float32(input_scale))[None, None]
            y = torch.from_numpy(pair.target / np.float32(input_scale))[None, None]
            total += float(((model(x) - y) ** 2).sum())
            count += y.numel()
    model.train()
    return total / count


def recalibrate_batchnorm(
    model: EnhanceNet, sampler: PatchSampler, *, batches: int = 200, batch: int = 16
) -> None:
    """Replace the running batch-norm statistics by exact averages over many patches.

    During training the running mean/variance are exponential averages with
    momentum 0.1 over small batches, so they lag and jitter with the last
    steps (visible as a noisy held-out loss). Here they are recomputed as the
    cumulative average (``momentum=None``) over ``batches`` fresh batches of
    training patches with the weights frozen; nothing else changes.
    """
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    saved = [bn.momentum for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None
    model.train()
    with torch.no_grad():
        for _ in range(batches):
            x, _ = sampler.sample(batch)
            model(torch.from_numpy(x))
    for bn, momentum in zip(bns, saved, strict=True):
        bn.momentum = momentum
    model.eval()


def _plot_loss(rows: list[dict[str, float]], path: Path, title: str) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    steps = [r["step"] for r in rows]
    ax.semilogy(steps, [r["train_loss"] for r in rows], label="training (running mean)")
    val = [(r["step"], r["val_loss"]) for r in rows if r["val_loss"] == r["val_loss"]]
    if val:
        ax.semilogy(*zip(*val, strict=True), "o-", label="held-out regions")
    ax.set_xlabel("step")
    ax.set_ylabel("MSE (network units)")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")


def _save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


@contextlib.contextmanager
def _own_torch_state(threads: int | None) -> Iterator[None]:
    """torch's global RNG and CPU thread count for one run; the caller's come back after it."""
    saved_threads = torch.get_num_threads()
    with torch.random.fork_rng(devices=[]):
        try:
            if threads:
                torch.set_num_threads(int(threads))
            yield
        finally:
            torch.set_num_threads(saved_threads)


def train(
    config: TrainConfig,
    train_pairs: list[Pair],
    val_pairs: list[Pair],
    out_dir: str | os.PathLike[str],
    *,
    training_data: list[str] | None = None,
    progress: bool = False,
) -> Path:
    """Train (or resume) a network and write its weights.

    The seed (``config.seed``) and thread count (``config.threads``) apply to
    this run only: torch's global random state and CPU thread count are the
    caller's again when it returns.

    Returns
    -------
    pathlib.Path
        ``out_dir/{observable}.safetensors``.

    Raises
    ------
    TrainingError
        Bad settings, no patches, a checkpoint from a different configuration,
        or a diverging loss (NaN).
    """
    with _own_torch_state(config.threads):
        return _train(config, train_pairs, val_pairs, out_dir, training_data, progress)


@dataclasses.dataclass
class _Run:
    """One training run's state: what a checkpoint holds and the loop advances."""

    config: TrainConfig
    model: EnhanceNet
    optimiser: torch.optim.Optimizer
    rng: np.random.Generator
    step: int = 0
    elapsed: float = 0.0
    rows: list[dict[str, float]] = dataclasses.field(default_factory=list)
    running: float | None = None
    source_meta: dict[str, Any] | None = None

    @property
    def config_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self.config)


#: Settings a run may change when it resumes from a checkpoint.
_RESUMABLE = ("steps", "max_minutes", "bn_recalibration", "threads")


def _new_run(config: TrainConfig) -> _Run:
    """A seeded network, its optimiser and the patch generator, at step 0."""
    torch.manual_seed(config.seed)
    model = EnhanceNet(n_blocks=config.n_blocks, width=config.width, linear_skip=config.linear_skip)
    source_meta = None
    if config.init_weights is not None:
        model, source_meta = _warm_start(model, config.init_weights, config.observable)
        _lineage(source_meta, config, 0)  # a sidecar it cannot trace fails now, not at the end
    # Channels-last feature maps: faster training steps on a CPU (with the
    # freed-memory setting of the entry points, docs/performance.md). Weights
    # files are written contiguous.
    model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    optimiser = torch.optim.Adam(
        model.parameters(), lr=config.lr, weight_decay=float(config.weight_decay or 0.0)
    )
    return _Run(
        config, model, optimiser, np.random.default_rng(config.seed), source_meta=source_meta
    )


def _warm_start(model: EnhanceNet, path: str, observable: str) -> tuple[EnhanceNet, dict[str, Any]]:
    """``model``'s architecture from the ``observable`` network in ``path``, and its sidecar."""
    try:
        source, meta = load_weights(path)
    except WeightsError as exc:
        raise TrainingError(f"cannot start from {path}: {exc}") from exc
    if meta.get("observable") != observable:
        raise TrainingError(
            f"cannot start a {observable} network from {path}, a {meta.get('observable')} network"
        )
    wanted = {k: v for k, v in model.architecture.items() if k != "n_blocks"}
    found = {k: v for k, v in source.architecture.items() if k != "n_blocks"}
    if wanted != found or source.n_blocks > model.n_blocks:
        raise TrainingError(
            f"cannot start a {model.architecture} network from {path} ({source.architecture}): "
            "width, upscale and linear skip must match and n_blocks may only grow"
        )
    log.info("starting from %s (%d -> %d blocks)", path, source.n_blocks, model.n_blocks)
    return deepened(source.train(), model.n_blocks), dict(meta)


def _lineage(source: dict[str, Any], config: TrainConfig, steps_done: int) -> dict[str, Any]:
    """The training history of a warm-started network: its source's, then this run.

    Each entry of ``history`` gives the cumulative step range of one run, its
    PSF model and, for every run but this one, the sha256 of the network it
    ended with, so the shipped weights can be traced back through every
    warm start. A source without a history counts as one run from step 0.

    Raises
    ------
    TrainingError
        The source's ``training`` record cannot be read as step counts and
        a list of runs with ``steps`` ranges.
    """
    source_training = source.get("training", {})
    try:
        done_before = int(
            source_training.get("steps_done_total", source_training.get("steps_done", 0))
        )
        done_last = int(source_training.get("steps_done", 0))
        history = [dict(entry) for entry in source_training.get("history", [])]
        last_end = int(history[-1]["steps"][1]) if history else None
    except (AttributeError, IndexError, KeyError, TypeError, ValueError) as exc:
        raise TrainingError(
            f"cannot read the training history of {config.init_weights}'s sidecar: {exc!r}"
        ) from exc
    if last_end != done_before:
        if history:
            log.warning(
                "the history of %s ends at step %d, its steps_done_total is %d: its last "
                "run is recorded as steps %d-%d",
                config.init_weights,
                last_end,
                done_before,
                done_before - done_last,
                done_before,
            )
        history.append(
            {"steps": [done_before - done_last, done_before], "psf_model": source.get("psf_model")}
        )
    history[-1].setdefault("sha256_at_end", source.get("sha256"))
    history.append(
        {
            "steps": [done_before, done_before + steps_done],
            "psf_model": config.psf_model,
            "note": f"warm start from {Path(str(config.init_weights)).name} "
            f"(sha256 {str(source.get('sha256'))[:12]}); this run's config is `config`",
        }
    )
    return {"history": history, "steps_done_total": done_before + steps_done}


def _resume(run: _Run, path: Path) -> None:
    """Load the checkpoint ``path`` into ``run``; :class:`TrainingError` if its settings differ."""
    state = torch.load(path, weights_only=False)
    stable = {k: v for k, v in run.config_dict.items() if k not in _RESUMABLE}
    saved = {k: v for k, v in state["config"].items() if k not in _RESUMABLE}
    if stable != saved:
        raise TrainingError(f"{path} was written with other settings; use a new output directory")
    source_sha = (run.source_meta or {}).get("sha256")
    if state.get("source_sha256", source_sha) != source_sha:
        raise TrainingError(
            f"{path} started from a network of sha256 {str(state['source_sha256'])[:12]}, but "
            f"{run.config.init_weights} is now {str(source_sha)[:12]}; use a new output directory"
        )
    run.model.load_state_dict(state["model"])
    run.optimiser.load_state_dict(state["optimiser"])
    run.rng.bit_generator.state = state["numpy_rng"]
    torch.set_rng_state(state["torch_rng"])
    run.step, run.elapsed, run.rows = state["step"], state["elapsed"], state["rows"]
    run.running = state.get("running")
    log.info("resuming %s at step %d", path, run.step)


def _checkpoint(run: _Run, path: Path) -> None:
    _save_checkpoint(
        path,
        {
            "config": run.config_dict,
            "model": run.model.state_dict(),
            "optimiser": run.optimiser.state_dict(),
            "numpy_rng": run.rng.bit_generator.state,
            "torch_rng": torch.get_rng_state(),
            "step": run.step,
            "elapsed": run.elapsed,
            "rows": run.rows,
            "running": run.running,
            "source_sha256": (run.source_meta or {}).get("sha256"),
        },
    )


def _patch_sampler(run: _Run, train_pairs: list[Pair]) -> PatchSampler:
    config = run.config
    try:
        return PatchSampler(
            train_pairs,
            patch=config.patch,
            noise_sigma=config.noise_range or float(config.noise_sigma or 0.0),
            input_scale=config.input_scale,
            rng=run.rng,
            contrast=config.contrast_range,
        )
    except ValueError as exc:
        raise TrainingError(str(exc)) from exc


def _optimiser_step(run: _Run, sampler: PatchSampler) -> None:
    """One step on a fresh batch; the step count and the running mean of the loss advance."""
    config = run.config
    for group in run.optimiser.param_groups:
        group["lr"] = _lr_at(config, run.step)
    x, y = sampler.sample(config.batch)
    run.optimiser.zero_grad(set_to_none=True)
    loss = torch.mean((run.model(torch.from_numpy(x)) - torch.from_numpy(y)) ** 2)
    loss.backward()
    run.optimiser.step()
    value = float(loss.detach())
    if not math.isfinite(value):
        raise TrainingError(f"loss became {value} at step {run.step}; lower the learning rate")
    run.running = value if run.running is None else 0.95 * run.running + 0.05 * value
    run.step += 1


def _record(run: _Run, val_pairs: list[Pair]) -> None:
    """The held-out loss every ``val_every`` steps and at the end; a loss row then and at step 1."""
    config, step = run.config, run.step
    val = float("nan")
    if step % config.val_every == 0 or step == config.steps:
        val = validation_loss(run.model, val_pairs, config.input_scale) if val_pairs else val
    if step % config.val_every == 0 or step == config.steps or step == 1:
        run.rows.append(
            {
                "step": step,
                "train_loss": float(run.running or 0.0),
                "val_loss": val,
                "lr": _lr_at(config, step),
                "seconds": round(run.elapsed, 2),
            }
        )
        log.info("step %d loss %.4g val %.4g", step, run.running, val)


def _optimise(
    run: _Run, sampler: PatchSampler, val_pairs: list[Pair], ckpt_path: Path, *, progress: bool
) -> None:
    """Step until ``config.steps`` or ``config.max_minutes``, checkpointing as configured."""
    config = run.config
    run.model.train()
    start = time.monotonic() - run.elapsed
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(
            total=config.steps, initial=run.step, desc=f"train {config.observable}", unit="step"
        )
    while run.step < config.steps:
        if config.max_minutes is not None and time.monotonic() - start > 60 * config.max_minutes:
            log.info("time limit of %.1f min reached at step %d", config.max_minutes, run.step)
            break
        _optimiser_step(run, sampler)
        run.elapsed = time.monotonic() - start
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{run.running:.3g}")
        _record(run, val_pairs)
        if run.step % config.checkpoint_every == 0:
            _checkpoint(run, ckpt_path)
    if bar is not None:
        bar.close()
    _checkpoint(run, ckpt_path)


def _write_loss(rows: list[dict[str, float]], out: Path, observable: str) -> None:
    """``loss.csv`` and ``loss.png`` in ``out``."""
    with atomic_path(out / "loss.csv") as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["step", "train_loss", "val_loss", "lr", "seconds"])
        writer.writeheader()
        writer.writerows(rows)
    _plot_loss(rows, out / "loss.png", f"Enhance {observable} training")


def _weights_metadata(
    run: _Run,
    *,
    training_data: list[str] | None,
    final_val: float | None,
    running_val: float | None,
) -> dict[str, Any]:
    """The sidecar of the trained weights: normalisation, PSF, data and the recipe."""
    config = run.config
    recipe = PAPER_RECIPE[config.observable]
    metadata: dict[str, Any] = {
        "observable": config.observable,
        "input_normalisation": {
            "quantity": recipe["quantity"],
            "units": recipe["units"],
            "scale": recipe["input_scale"],
        },
        "psf_model": config.psf_model,
        "input_pixel_scale_arcsec": HMI_PIXEL_SCALE.to_value("arcsec"),
        "training_data": training_data or [],
        "training": {
            "config": run.config_dict,
            "steps_done": run.step,
            "patches_seen": run.step * config.batch,
            "wall_seconds": round(run.elapsed, 1),
            "hardware": f"{platform.machine()} CPU, {torch.get_num_threads()} torch threads",
            "final_val_mse": final_val,
            "val_mse_before_bn_recalibration": running_val,
            "torch_version": torch.__version__,
        },
    }
    if run.source_meta is not None:
        # A warm start keeps its source's inference recipe (the projection's
        # settings were chosen for this lineage) and extends its history.
        metadata["training"].update(_lineage(run.source_meta, config, run.step))
        if "inference" in run.source_meta:
            metadata["inference"] = run.source_meta["inference"]
    return metadata


def _train(
    config: TrainConfig,
    train_pairs: list[Pair],
    val_pairs: list[Pair],
    out_dir: str | os.PathLike[str],
    training_data: list[str] | None,
    progress: bool,
) -> Path:
    """:func:`train` inside its own torch state: set up or resume, optimise, write."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / "checkpoint.pt"
    run = _new_run(config)
    if ckpt_path.is_file():
        _resume(run, ckpt_path)
    sampler = _patch_sampler(run, train_pairs)
    _optimise(run, sampler, val_pairs, ckpt_path, progress=progress)
    _write_loss(run.rows, out, config.observable)
    running_val = validation_loss(run.model, val_pairs, config.input_scale) if val_pairs else None
    if config.bn_recalibration:
        recalibrate_batchnorm(run.model, sampler, batches=int(config.bn_recalibration))
    final_val = validation_loss(run.model, val_pairs, config.input_scale) if val_pairs else None
    log.info("held-out MSE %s (running BN statistics) -> %s", running_val, final_val)
    metadata = _weights_metadata(
        run, training_data=training_data, final_val=final_val, running_val=running_val
    )
    weights = save_weights(
        run.model.eval(), out / f"{config.observable}.safetensors", metadata=metadata
    )
    with atomic_path(out / "train_config.json") as tmp:
        tmp.write_text(json.dumps(run.config_dict, indent=2) + "\n")
    return weights
