"""Figures of a validation report: images side by side and power spectra.

Power spectra are densities per unit solar area
(:func:`enhance_hmi.physics.spectrum.radial_power_spectrum`): frequency in
arcsec^-1, power per arcsec^-2 of frequency, so the HMI input at 0.504"/px
and the images at 0.252"/px lie on one scale.

Figures are :class:`matplotlib.figure.Figure` objects on their own Agg
canvas (:func:`new_figure`): no pyplot state, and the caller's matplotlib
backend is left as it is. PNGs are written atomically (:func:`save_png`).

References
----------
.. [1] Díaz Baso, C. J. & Asensio Ramos, A. (2018), "Enhancing SDO/HMI images
   using deep learning", A&A 614, A5, Sect. 4 (power spectra band).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import astropy.units as u
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from enhance_hmi.atomic import atomic_path
from enhance_hmi.physics.spectrum import radial_power_spectrum
from enhance_hmi.validation import metrics
from enhance_hmi.validation.report.case import (
    METHOD_LABELS,
    METHODS,
    TRUTH_SCALE,
    Evaluation,
    ValidationCase,
)

__all__ = ["SPECTRUM_PAD", "images_figure", "new_figure", "save_png", "spectra_figure"]

#: Zero padding of the report's spectra (annuli 3x finer than the image's
#: frequency step; the images are at most a few hundred pixels).
SPECTRUM_PAD = 3


def new_figure(
    width: float,
    height: float,
    *,
    layout: Literal["constrained", "compressed", "tight"] | None = "constrained",
) -> Figure:
    """A figure of ``width`` x ``height`` inches at 100 dpi on its own Agg canvas."""
    fig = Figure(figsize=(width, height), dpi=100, layout=layout)
    FigureCanvasAgg(fig)
    return fig


def save_png(fig: Figure, path: Path, *, dpi: int = 100) -> None:
    """Write ``fig`` to ``path`` as PNG, atomically (``path.part``, then rename)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        fig.savefig(fh, format="png", dpi=dpi)


def _display_range(truth: np.ndarray, observable: str) -> tuple[float, float, str]:
    """Grey-scale limits from the truth: 0.5-99.5 percentiles, symmetric for Blos."""
    vals = truth[np.isfinite(truth)]
    if observable == "magnetogram":
        lim = float(np.percentile(np.abs(vals), 99.5)) or 1.0
        return -lim, lim, "gray"
    lo, hi = np.percentile(vals, [0.5, 99.5])
    return float(lo), float(hi), "gray"


def images_figure(ev: Evaluation, case: ValidationCase, path: Path) -> None:
    """Bicubic, Enhance, truth and Tikhonov on one grey scale, full field and central zoom.

    Panel titles give the quiet-Sun rms contrast (continuum) or the PSNR
    (magnetograms); the zoomed region is outlined on the full field.
    """
    panels = [
        ("bicubic", METHOD_LABELS["bicubic"]),
        ("enhance", METHOD_LABELS["enhance"]),
        ("truth", case.truth_label),
        ("tikhonov", METHOD_LABELS["tikhonov"]),
    ]
    vmin, vmax, cmap = _display_range(case.truth, case.observable)
    ny, nx = case.truth.shape
    scale = TRUTH_SCALE.to_value(u.arcsec)
    zoom = max(16, min(ny, nx) // 3)
    y0, x0 = (ny - zoom) // 2, (nx - zoom) // 2
    panel = 3.7  # inches per panel column
    fig = new_figure(4 * panel + 1.2, panel * min(ny / nx, 1.5) + panel + 1.6)
    axes = fig.subplots(2, 4, squeeze=False)
    units = "I / I_QS" if case.observable == "continuum" else "Blos [G]"
    for col, (key, label) in enumerate(panels):
        image = ev.images[key]
        top = axes[0, col].imshow(
            image,
            origin="lower",
            cmap=cmap,
            vmin=vmin,
            vmax=vmax,
            extent=(0, nx * scale, 0, ny * scale),
            interpolation="nearest",
        )
        title = label
        if case.observable == "continuum":
            value = (
                ev.metrics["truth_stats"]["rms_contrast"]
                if key == "truth"
                else ev.metrics["methods"][key]["rms_contrast"]
            )
            if value is not None:
                title += f"\nquiet-Sun rms contrast {100 * value:.1f} %"
        elif key != "truth" and ev.metrics["methods"][key]["psnr"] is not None:
            title += f"\nPSNR {ev.metrics['methods'][key]['psnr']:.1f} dB"
        axes[0, col].set_title(title, fontsize=10)
        axes[0, col].set_xlabel("arcsec")
        axes[0, col].add_patch(
            Rectangle(
                (x0 * scale, y0 * scale),
                zoom * scale,
                zoom * scale,
                fill=False,
                edgecolor="tab:orange",
                linewidth=1.0,
            )
        )
        axes[1, col].imshow(
            image[y0 : y0 + zoom, x0 : x0 + zoom],
            origin="lower",
            cmap=cmap,
            vmin=vmin,
            vmax=vmax,
            extent=(x0 * scale, (x0 + zoom) * scale, y0 * scale, (y0 + zoom) * scale),
            interpolation="nearest",
        )
        axes[1, col].set_title(f'zoom ({zoom * scale:.1f}")', fontsize=9)
        axes[1, col].set_xlabel("arcsec")
    axes[0, 0].set_ylabel("arcsec")
    axes[1, 0].set_ylabel("arcsec")
    fig.colorbar(top, ax=axes[:, -1], shrink=0.8, label=units)
    fig.suptitle(f'{case.name}: {case.observable}, 0.252"/px, one grey scale', fontsize=12)
    save_png(fig, path)


def _binned(freq: np.ndarray, power: np.ndarray, nbins: int = 160) -> tuple[np.ndarray, np.ndarray]:
    """Mean spectrum in ``nbins`` equal frequency bins.

    For display only: large images give thousands of padded-frequency
    annuli that draw as a thick band.
    """
    if freq.size <= nbins:
        return freq, power
    edges = np.linspace(0.0, float(freq.max()) + 1e-12, nbins + 1)
    idx = np.clip(np.digitize(freq, edges) - 1, 0, nbins - 1)
    counts = np.bincount(idx, minlength=nbins)
    good = counts > 0
    f = np.bincount(idx, weights=freq, minlength=nbins)[good] / counts[good]
    p = np.bincount(idx, weights=power, minlength=nbins)[good] / counts[good]
    return f, p


def spectra_figure(ev: Evaluation, case: ValidationCase, path: Path) -> None:
    """Power spectra per unit solar area of the HMI input, the truth and every method.

    Every curve is :func:`enhance_hmi.physics.spectrum.radial_power_spectrum`
    (Hann window, 3x zero padding) at the image's own pixel scale: the HMI
    input at 0.504"/px (its curve ends at HMI's Nyquist frequency,
    0.99 arcsec^-1), the others at 0.252"/px, all in arcsec^-1 and in power
    per arcsec^-2 of frequency, so input and outputs are on one scale and
    agree at low frequency. The paper's comparison band [1]_ is shaded.
    """
    fig = new_figure(8, 5.2)
    ax = fig.subplots()
    styles = {
        "input": ("0.55", "-", 2.6),
        "truth": ("black", "-", 2.2),
        "bicubic": ("tab:blue", "--", 1.4),
        "unsharp": ("tab:cyan", ":", 1.4),
        "richardson_lucy": ("tab:green", "-.", 1.4),
        "tikhonov": ("tab:purple", "--", 1.4),
        "enhance": ("tab:red", "-", 1.6),
    }
    curves = [("input", case.hmi, 2 * TRUTH_SCALE, 'HMI input (0.504"/px)')]
    curves.append(("truth", ev.images["truth"], TRUTH_SCALE, case.truth_label))
    curves += [(key, ev.images[key], TRUTH_SCALE, METHOD_LABELS[key]) for key in METHODS]
    for key, image, scale, label in curves:
        freq, power = radial_power_spectrum(image, scale, pad=SPECTRUM_PAD)
        freq, power = _binned(freq.to_value(1 / u.arcsec), power.to_value(u.arcsec**2))
        keep = power > 0
        color, style, width = styles[key]
        ax.plot(freq[keep], power[keep], color=color, ls=style, lw=width, label=label)
    lo, hi = metrics.spectrum_band(TRUTH_SCALE).to_value(1 / u.arcsec)
    px_lo, px_hi = metrics.SPECTRUM_BAND
    ax.axvspan(
        lo,
        hi,
        color="0.88",
        zorder=0,
        label=f"{lo:.2f}-{hi:.2f} arcsec$^{{-1}}$ ({px_lo}-{px_hi} px$^{{-1}}$, paper Sect. 4)",
    )
    ax.set_yscale("log")
    ax.set_xlim(0, 0.5 / TRUTH_SCALE.to_value(u.arcsec))
    ax.set_xlabel("spatial frequency [arcsec$^{-1}$]")
    units = "(I / I$_\\mathrm{QS}$)$^2$" if case.observable == "continuum" else "G$^2$"
    ax.set_ylabel(f"power spectral density [{units} arcsec$^2$]")
    ax.set_title(f"{case.name}: power spectra per unit solar area (Hann window)")
    ax.legend(fontsize=8, loc="lower left")
    save_png(fig, path)
