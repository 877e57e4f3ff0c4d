"""Validation report of one target: figures, metrics table, provenance, JSON.

A :class:`ValidationCase` holds three images of one field of view: the
HMI(-like) input at 0.504"/px, the Enhance output at 0.252"/px, and the
reference ("truth") on the same 0.252"/px grid, i.e. what a diffraction-limited
28 cm telescope would have seen (Hinode SOT degraded to 28 cm, or a
high-resolution scene degraded by :func:`enhance.physics.degrade` in the
synthetic twin). :func:`evaluate` adds the classical baselines of
:mod:`enhance.validation.baselines` (bicubic, unsharp masking,
Richardson-Lucy) and computes the metrics of :mod:`enhance.validation.metrics`
for each method against the truth; :func:`write_report` renders

* ``images.png``: HMI (bicubic), Enhance, truth and Richardson-Lucy side by
  side on one grey scale, full field and a central zoom;
* ``spectra.png``: azimuthally averaged power spectra as in the paper, with
  the 0.05-0.25 px^-1 band shaded;
* ``metrics.json``: every number of the page, machine-readable;
* ``report.html``: the page, with relative links to the PNGs so that it opens
  from disk in any browser.

Each file is written atomically (:func:`enhance.atomic.atomic_path`) and
``report.html`` last, so a complete page implies complete figures and JSON.

The quiet-Sun mask (:func:`enhance.validation.metrics.quiet_sun_mask`) is
computed once on the truth and applied to every image, so all contrasts are
measured over the same pixels; on the 0.504"/px input an input pixel is quiet
when all four 0.252"/px pixels it covers are.

References
----------
.. [1] Díaz Baso, C. J. & Asensio Ramos, A. (2018), "Enhancing SDO/HMI images
   using deep learning", A&A 614, A5, Sect. 4 (contrast, power spectra,
   Richardson-Lucy comparison, forward consistency, 1 kG amplification).
"""

from __future__ import annotations

import html
import json
import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import astropy.units as u
import numpy as np

from enhance.atomic import atomic_path
from enhance.errors import OutputError, ReportError
from enhance.frame import OBSERVABLES
from enhance.validation import baselines, metrics

__all__ = [
    "BOUNDS",
    "METHODS",
    "METHOD_LABELS",
    "ValidationCase",
    "Evaluation",
    "evaluate",
    "write_report",
    "ARCSEC_KM",
]

log = logging.getLogger(__name__)

#: Methods compared with the truth, in table order.
METHODS: tuple[str, ...] = ("bicubic", "unsharp", "richardson_lucy", "tikhonov", "enhance")
#: References scored beside the methods but not competing with them: the
#: least-squares linear 2x filter fitted on the truth itself
#: (:func:`enhance.validation.baselines.oracle_linear`), an upper bound for
#: linear methods.
BOUNDS: tuple[str, ...] = ("oracle_linear",)
#: Human-readable method names.
METHOD_LABELS: dict[str, str] = {
    "bicubic": "HMI (bicubic)",
    "unsharp": "HMI (unsharp mask)",
    "richardson_lucy": "Richardson-Lucy",
    "tikhonov": "Tikhonov (HMI PSF, discrepancy principle)",
    "enhance": "Enhance",
    "oracle_linear": "linear filter fitted on the truth (upper bound, not a method)",
}
#: Length of one arcsecond on the Sun seen from 1 AU, 725 km (IAU 2015
#: astronomical unit: 1.496e8 km x 4.848e-6 rad), for flux pixel areas.
ARCSEC_KM = 725.0
#: Grid of the truth and enhanced images (paper [1]_: 0.252"/px).
TRUTH_SCALE = 0.252 * u.arcsec
#: Richardson-Lucy iterations of the baseline (scikit-image default regime;
#: the paper [1]_ shows that more iterations amplify noise further).
RL_ITERATIONS = 20
#: Names of the files a report directory holds.
FILES = {
    "images": "images.png",
    "spectra": "spectra.png",
    "metrics": "metrics.json",
    "html": "report.html",
}


@dataclass
class ValidationCase:
    """One validation target: HMI input, Enhance output and 28 cm truth.

    Attributes
    ----------
    name : str
        Short name of the target (page title, JSON ``target``).
    observable : {"continuum", "magnetogram"}
        Continuum in quiet-Sun units, magnetograms in gauss.
    hmi : numpy.ndarray
        HMI(-like) input at 0.504"/px, shape (H, W).
    truth : numpy.ndarray
        Reference at 0.252"/px, shape (2H, 2W).
    enhanced : numpy.ndarray
        Enhance output at 0.252"/px, shape (2H, 2W).
    truth_label : str
        What the truth is (e.g. "Hinode SOT/BFI degraded to 28 cm").
    kind : {"twin", "hinode"}
        Synthetic twin or real Hinode target.
    psf_model : str
        HMI PSF model for Richardson-Lucy and the forward residual.
    provenance : dict
        Provenance record (:func:`enhance.provenance.provenance_record`).
    notes : list of str
        Caveats shown on the page.
    alignment : dict, optional
        Co-alignment details of a real target (shift applied, time offset).
    context : dict
        Other facts shown on the page (scene, crop, noise, ...).
    """

    name: str
    observable: str
    hmi: np.ndarray
    truth: np.ndarray
    enhanced: np.ndarray
    truth_label: str
    kind: str = "twin"
    psf_model: str = "wachter"
    provenance: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    alignment: dict[str, Any] | None = None
    context: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.observable not in OBSERVABLES:
            raise ReportError(
                f"unknown observable {self.observable!r}; use one of {', '.join(OBSERVABLES)}"
            )
        self.hmi = np.asarray(self.hmi, dtype=np.float64)
        self.truth = np.asarray(self.truth, dtype=np.float64)
        self.enhanced = np.asarray(self.enhanced, dtype=np.float64)
        if self.hmi.ndim != 2 or min(self.hmi.shape) < 8:
            raise ReportError(
                f"the HMI input must be a 2-D image of at least 8x8 pixels; got {self.hmi.shape}"
            )
        double = (2 * self.hmi.shape[0], 2 * self.hmi.shape[1])
        for label, image in (("truth", self.truth), ("enhanced", self.enhanced)):
            if image.shape != double:
                raise ReportError(
                    f"the {label} image has shape {image.shape} but must be twice the HMI "
                    f"input {self.hmi.shape}, i.e. {double}; put it on the 0.252 arcsec grid"
                )


@dataclass
class Evaluation:
    """Images of every method and the metrics of a :class:`ValidationCase`."""

    images: dict[str, np.ndarray]
    metrics: dict[str, Any]
    quiet_mask: np.ndarray


def _finite(value: float | None) -> float | None:
    """JSON-safe number: NaN and infinities become None."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _coarse_mask(mask: np.ndarray) -> np.ndarray:
    """Quiet on the 0.504"/px grid: all 2x2 fine pixels quiet."""
    ny, nx = mask.shape[0] // 2, mask.shape[1] // 2
    return mask[: 2 * ny, : 2 * nx].reshape(ny, 2, nx, 2).all(axis=(1, 3))


def _pixel_area(scale: u.Quantity) -> u.Quantity:
    return (scale.to_value(u.arcsec) * ARCSEC_KM * u.km) ** 2


def _method_metrics(
    image: np.ndarray,
    truth: np.ndarray,
    observable: str,
    mask: np.ndarray,
    truth_stats: dict[str, Any],
    forward_residual: float,
) -> dict[str, float | None]:
    out: dict[str, float | None] = {
        "psnr": _finite(metrics.psnr(image, truth)),
        "ssim": _finite(metrics.ssim(image, truth)),
        "pearson": _finite(metrics.pearson(image, truth)),
        "spectrum_distance": _finite(metrics.spectrum_distance(image, truth)),
        "forward_residual": _finite(forward_residual),
    }
    if observable == "continuum":
        contrast = metrics.rms_contrast(image, mask)
        out["rms_contrast"] = _finite(contrast)
        out["contrast_difference_pp"] = _finite(
            100.0 * (contrast - truth_stats["rms_contrast"])
            if truth_stats["rms_contrast"] is not None
            else None
        )
        out["umbral_intensity"] = _finite(metrics.umbral_intensity(image))
    else:
        flux = metrics.unsigned_flux(image, _pixel_area(TRUTH_SCALE)).to_value(u.Mx)
        out["unsigned_flux_Mx"] = _finite(flux)
        ref = truth_stats["unsigned_flux_Mx"]
        out["unsigned_flux_ratio"] = _finite(flux / ref if ref else None)
        out["noise_level_G"] = _finite(metrics.noise_level(image, mask))
        out["amplification_1kG"] = _finite(metrics.field_amplification(image, truth))
    return out


def _inner(image: np.ndarray, border: int) -> np.ndarray:
    return image[border:-border, border:-border] if border else image


def evaluate(
    case: ValidationCase, *, rl_iterations: int = RL_ITERATIONS, border: int = 0
) -> Evaluation:
    """Compute the baselines and every metric of ``case`` against its truth.

    This is the one scorer of the package: validation reports (twins, Hinode
    targets) and ``enhance evaluate`` (held-out regions,
    :func:`enhance.training.evaluate.evaluate_pairs`) both use it.

    Parameters
    ----------
    case : ValidationCase
    rl_iterations : int
        Richardson-Lucy iterations of the baseline.
    border : int
        Even number of 0.252"/px pixels left out at each edge of every image
        before scoring (``border // 2`` on the HMI grid). Every method still
        runs on the whole field, and the forward residual is measured on the
        whole field. 0: score everything, edges included.

    Returns
    -------
    Evaluation
        ``images`` (``truth`` and each of :data:`METHODS` at 0.252"/px, whole
        field), ``metrics`` (the JSON document without provenance) and the
        quiet-Sun mask used (scored region).

    Raises
    ------
    ReportError
        ``border`` is odd, negative or leaves fewer than 8 pixels.

    References
    ----------
    .. [1] Díaz Baso & Asensio Ramos (2018), A&A 614, A5, Sect. 4.
    """
    border = int(border)
    if border < 0 or border % 2 or min(case.truth.shape) - 2 * border < 8:
        raise ReportError(
            f"border must be an even number of pixels leaving at least 8; got {border} "
            f"for a {case.truth.shape} truth"
        )
    images = {
        "bicubic": baselines.bicubic(case.hmi),
        "unsharp": baselines.unsharp_mask(case.hmi),
        "richardson_lucy": baselines.richardson_lucy(
            case.hmi, psf_model=case.psf_model, iterations=rl_iterations
        ),
        "tikhonov": baselines.tikhonov(case.hmi, psf_model=case.psf_model),
        "enhance": case.enhanced,
        "oracle_linear": baselines.oracle_linear(case.hmi, case.truth),
    }
    truth, hmi = _inner(case.truth, border), _inner(case.hmi, border // 2)
    kind = "continuum" if case.observable == "continuum" else "blos"
    mask = metrics.quiet_sun_mask(truth, kind=kind)
    coarse = _coarse_mask(mask)
    # forward residual: whole field, in the input's noise, per region of the input
    quiet_in = metrics.quiet_sun_mask(case.hmi, kind=kind)
    if case.observable == "continuum":
        noise_in = baselines.spectral_noise_sigma_hmi(case.hmi)
        field_in = ~quiet_in
    else:
        noise_in = metrics.noise_level(case.hmi, quiet_in)
        field_in = metrics.field_mask(case.hmi, noise_in)
    residual_stats = {
        name: metrics.forward_residual_stats(
            image,
            case.hmi,
            noise=noise_in,
            field=field_in,
            quiet=quiet_in,
            psf_model=case.psf_model,
        )
        for name, image in [*images.items(), ("truth", case.truth)]
    }
    residuals = {name: stats["relative"] for name, stats in residual_stats.items()}
    truth_stats: dict[str, Any] = {"forward_residual": _finite(residuals["truth"])}
    hmi_stats: dict[str, Any] = {}
    if case.observable == "continuum":
        truth_stats["rms_contrast"] = _finite(metrics.rms_contrast(truth, mask))
        truth_stats["umbral_intensity"] = _finite(metrics.umbral_intensity(truth))
        hmi_stats["rms_contrast"] = _finite(metrics.rms_contrast(hmi, coarse))
    else:
        flux = metrics.unsigned_flux(truth, _pixel_area(TRUTH_SCALE)).to_value(u.Mx)
        truth_stats["unsigned_flux_Mx"] = _finite(flux)
        truth_stats["noise_level_G"] = _finite(metrics.noise_level(truth, mask))
        hmi_flux = metrics.unsigned_flux(hmi, _pixel_area(2 * TRUTH_SCALE)).to_value(u.Mx)
        hmi_stats["unsigned_flux_Mx"] = _finite(hmi_flux)
        hmi_stats["noise_level_G"] = _finite(metrics.noise_level(hmi, coarse))
    table = {
        m: _method_metrics(
            _inner(images[m], border), truth, case.observable, mask, truth_stats, residuals[m]
        )
        for m in (*METHODS, *BOUNDS)
    }
    if case.observable == "magnetogram":
        table["enhance"]["amplification_1kG_vs_bicubic"] = _finite(
            metrics.field_amplification(
                _inner(images["enhance"], border), _inner(images["bicubic"], border)
            )
        )
    summary = _summary(table, truth_stats, case.observable)
    doc = {
        "target": case.name,
        "kind": case.kind,
        "observable": case.observable,
        "truth": case.truth_label,
        "units": "quiet-Sun intensity" if case.observable == "continuum" else "G",
        "pixel_scale_arcsec": TRUTH_SCALE.to_value(u.arcsec),
        "shape": list(case.truth.shape),
        "hmi_shape": list(case.hmi.shape),
        "border_px": border,
        "psf_model": case.psf_model,
        "richardson_lucy_iterations": int(rl_iterations),
        "spectrum_band_px": list(metrics.SPECTRUM_BAND),
        "quiet_sun_fraction": float(mask.mean()),
        "methods": table,
        "forward_residuals": {
            name: {k: _finite(v) for k, v in stats.items()}
            for name, stats in residual_stats.items()
        },
        "truth_stats": truth_stats,
        "hmi_input": hmi_stats,
        "summary": summary,
        "alignment": case.alignment,
        "context": case.context,
        "notes": list(case.notes),
    }
    images["truth"] = case.truth
    return Evaluation(images=images, metrics=doc, quiet_mask=mask)


def _summary(table: dict, truth_stats: dict, observable: str) -> dict[str, Any]:
    """Acceptance checks of the issue: Enhance against bicubic and RL."""

    def best(key: str, higher: bool) -> str | None:
        vals = {m: table[m][key] for m in METHODS if table[m][key] is not None}
        if not vals:
            return None
        return (max if higher else min)(vals, key=vals.get)

    def beats(key: str, higher: bool, rivals: tuple[str, ...]) -> bool | None:
        mine = table["enhance"][key]
        others = [table[m][key] for m in rivals]
        if mine is None or any(v is None for v in others):
            return None
        return all(mine > v if higher else mine < v for v in others)

    classical = ("bicubic", "richardson_lucy")
    out: dict[str, Any] = {
        "best_psnr": best("psnr", True),
        "best_spectrum": best("spectrum_distance", False),
        "enhance_beats_bicubic_and_rl_psnr": beats("psnr", True, classical),
        "enhance_beats_bicubic_and_rl_spectrum": beats("spectrum_distance", False, classical),
        "enhance_beats_tikhonov_psnr": beats("psnr", True, ("tikhonov",)),
    }
    bound, mine = table["oracle_linear"]["psnr"], table["enhance"]["psnr"]
    out["enhance_minus_linear_bound_db"] = None if bound is None or mine is None else mine - bound
    if observable == "continuum":
        diff = table["enhance"]["contrast_difference_pp"]
        out["enhance_contrast_within_1pp"] = None if diff is None else abs(diff) <= 1.0
    return out


# --------------------------------------------------------------------- figures


def _display_range(truth: np.ndarray, observable: str) -> tuple[float, float, str]:
    vals = truth[np.isfinite(truth)]
    if observable == "magnetogram":
        lim = float(np.percentile(np.abs(vals), 99.5)) or 1.0
        return -lim, lim, "gray"
    lo, hi = np.percentile(vals, [0.5, 99.5])
    return float(lo), float(hi), "gray"


def _new_figure(width: float, height: float):
    # The Agg canvas directly: no pyplot state and no change of the user's backend.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save_png(fig, path: Path) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        fig.savefig(fh, format="png", dpi=100)


def _images_figure(ev: Evaluation, case: ValidationCase, path: Path) -> None:
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
    fig = _new_figure(4 * panel + 1.2, panel * min(ny / nx, 1.5) + panel + 1.6)
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
            _rectangle((x0 * scale, y0 * scale), zoom * scale, zoom * scale),
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
    _save_png(fig, path)


def _rectangle(xy: tuple[float, float], width: float, height: float):
    from matplotlib.patches import Rectangle

    return Rectangle(xy, width, height, fill=False, edgecolor="tab:orange", linewidth=1.0)


def _binned(freq: np.ndarray, power: np.ndarray, nbins: int = 160):
    """Mean spectrum in ``nbins`` equal frequency bins (display only: large images
    give thousands of padded-frequency annuli that draw as a thick band)."""
    if freq.size <= nbins:
        return freq, power
    edges = np.linspace(0.0, float(freq.max()) + 1e-12, nbins + 1)
    idx = np.clip(np.digitize(freq, edges) - 1, 0, nbins - 1)
    counts = np.bincount(idx, minlength=nbins)
    good = counts > 0
    f = np.bincount(idx, weights=freq, minlength=nbins)[good] / counts[good]
    p = np.bincount(idx, weights=power, minlength=nbins)[good] / counts[good]
    return f, p


def _spectra_figure(ev: Evaluation, case: ValidationCase, path: Path) -> None:
    fig = _new_figure(8, 5.2)
    ax = fig.subplots()
    styles = {
        "truth": ("black", "-", 2.2),
        "bicubic": ("tab:blue", "--", 1.4),
        "unsharp": ("tab:cyan", ":", 1.4),
        "richardson_lucy": ("tab:green", "-.", 1.4),
        "tikhonov": ("tab:purple", "--", 1.4),
        "enhance": ("tab:red", "-", 1.6),
    }
    for key in ("truth", *METHODS):
        freq, power = _binned(*metrics.power_spectrum(ev.images[key]))
        keep = (freq > 0) & (power > 0)
        color, style, width = styles[key]
        label = case.truth_label if key == "truth" else METHOD_LABELS[key]
        ax.plot(freq[keep], power[keep], color=color, ls=style, lw=width, label=label)
    lo, hi = metrics.SPECTRUM_BAND
    ax.axvspan(lo, hi, color="0.85", zorder=0, label=f"{lo}-{hi} px$^{{-1}}$ (paper Sect. 4)")
    ax.set_yscale("log")
    ax.set_xlim(0, 0.5)
    ax.set_xlabel('spatial frequency [px$^{-1}$] at 0.252"/px')
    ax.set_ylabel("azimuthally averaged power (binned for display)")
    ax.set_title(f"{case.name}: power spectra ((img - median) / std, 3x zero padding)")
    ax.legend(fontsize=8, loc="lower left")
    _save_png(fig, path)


# ------------------------------------------------------------------------ HTML

_COLUMNS = {
    "continuum": [
        ("psnr", "PSNR [dB]", "{:.2f}"),
        ("ssim", "SSIM", "{:.3f}"),
        ("pearson", "Pearson r", "{:.3f}"),
        ("rms_contrast", "QS rms contrast [%]", "pct"),
        ("contrast_difference_pp", "contrast - truth [pp]", "{:+.2f}"),
        ("spectrum_distance", "spectrum distance", "{:.3f}"),
        ("forward_residual", "forward residual [%]", "pct"),
        ("umbral_intensity", "umbra [I_QS]", "{:.3f}"),
    ],
    "magnetogram": [
        ("psnr", "PSNR [dB]", "{:.2f}"),
        ("ssim", "SSIM", "{:.3f}"),
        ("pearson", "Pearson r", "{:.3f}"),
        ("spectrum_distance", "spectrum distance", "{:.3f}"),
        ("forward_residual", "forward residual [%]", "pct"),
        ("unsigned_flux_ratio", "flux / truth", "{:.3f}"),
        ("noise_level_G", "QS noise [G]", "{:.1f}"),
        ("amplification_1kG", "~1 kG amplification", "{:.2f}"),
    ],
}

_CSS = """
body { font-family: sans-serif; margin: 1.5em; max-width: 1250px; color: #222; }
table { border-collapse: collapse; margin: 0.8em 0; }
th, td { border: 1px solid #bbb; padding: 0.25em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
tr.enhance td { font-weight: bold; background: #fdeaea; }
tr td.best, tr.enhance td.best { background: #c9ebc9; }
img { max-width: 100%; border: 1px solid #ddd; }
.notes li { color: #8a4b00; }
code { background: #f4f4f4; padding: 0 0.2em; }
"""


def _fmt(value: Any, fmt: str) -> str:
    if value is None:
        return "&ndash;"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if fmt == "pct":
        return f"{100 * float(value):.2f}"
    return fmt.format(value)


def _kv_table(rows: Mapping[str, Any]) -> str:
    cells = []
    for key, value in rows.items():
        if isinstance(value, (dict, list)):
            text = json.dumps(value, default=str)
        elif isinstance(value, float):
            text = f"{value:.6g}"
        else:
            text = str(value)
        cells.append(f"<tr><td>{html.escape(str(key))}</td><td>{html.escape(text)}</td></tr>")
    return "<table>" + "".join(cells) + "</table>"


def _metrics_table(doc: dict[str, Any]) -> str:
    columns = _COLUMNS[doc["observable"]]
    best_high = {"psnr", "ssim", "pearson"}
    best_low = {"spectrum_distance", "forward_residual"}
    head = "".join(f"<th>{html.escape(label)}</th>" for _, label, _ in columns)
    rows = [f"<tr><th>method</th>{head}</tr>"]
    table = doc["methods"]
    for method in (*METHODS, *BOUNDS):
        cells = []
        for key, _, fmt in columns:
            value = table[method].get(key)
            vals = [table[m].get(key) for m in METHODS if table[m].get(key) is not None]
            is_best = (
                method in METHODS
                and value is not None
                and (
                    (key in best_high and value == max(vals))
                    or (key in best_low and value == min(vals))
                )
            )
            cls = ' class="best"' if is_best else ""
            cells.append(f"<td{cls}>{_fmt(value, fmt)}</td>")
        rows.append(
            f'<tr class="{method}"><td>{html.escape(METHOD_LABELS[method])}</td>'
            + "".join(cells)
            + "</tr>"
        )
    truth = doc["truth_stats"]
    truth_cells = []
    for key, _, fmt in columns:
        value = {"unsigned_flux_ratio": 1.0}.get(key, truth.get(key))
        truth_cells.append(f"<td>{_fmt(value, fmt)}</td>")
    rows.append(f"<tr><td>{html.escape(doc['truth'])}</td>" + "".join(truth_cells) + "</tr>")
    return "<table>" + "".join(rows) + "</table>"


def _html(doc: dict[str, Any]) -> str:
    esc = html.escape
    title = f"Enhance validation: {doc['target']} ({doc['observable']})"
    hmi = doc["hmi_input"]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{esc(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{esc(title)}</h1>",
        "<p>Does the enhanced HMI image look like what a diffraction-limited 28 cm "
        "telescope would have seen? Method: Díaz Baso &amp; Asensio Ramos (2018), "
        "A&amp;A 614, A5. Reference (&ldquo;truth&rdquo;): "
        f"<b>{esc(doc['truth'])}</b>; {doc['shape'][1]}&times;{doc['shape'][0]} pixels at "
        f"{doc['pixel_scale_arcsec']}&Prime;/px ({esc(doc['kind'])}).</p>",
    ]
    if doc["notes"]:
        parts.append(
            '<ul class="notes">' + "".join(f"<li>{esc(n)}</li>" for n in doc["notes"]) + "</ul>"
        )
    parts += [
        "<h2>Images</h2>",
        f'<p><img src="{FILES["images"]}" alt="HMI bicubic, Enhance, truth and '
        'Richardson-Lucy side by side"></p>',
        "<h2>Power spectra</h2>",
        f'<p><img src="{FILES["spectra"]}" alt="azimuthally averaged power spectra" '
        'style="max-width: 800px"></p>',
        "<h2>Metrics against the truth</h2>",
        _metrics_table(doc),
        "<p>Quiet-Sun mask from the truth, applied to every image "
        f"({100 * doc['quiet_sun_fraction']:.0f} % of the pixels). Spectrum distance: mean "
        "|log10 P &minus; log10 P<sub>truth</sub>| over "
        f"{doc['spectrum_band_px'][0]}&ndash;{doc['spectrum_band_px'][1]} px<sup>&minus;1</sup>. "
        "Forward residual: rms(HMI PSF &#8859; image, 2&times;2 binned &minus; input) / "
        f"rms(input), HMI PSF model <code>{esc(doc['psf_model'])}</code>; the truth row "
        "shows it for the truth itself. Richardson-Lucy: "
        f"{doc['richardson_lucy_iterations']} iterations. Best value per column in green.</p>",
        "<h3>HMI input (0.504&Prime;/px)</h3>",
        _kv_table(hmi),
        "<h3>Acceptance checks</h3>",
        _kv_table(doc["summary"]),
    ]
    if doc.get("alignment"):
        parts += ["<h2>Co-alignment</h2>", _kv_table(doc["alignment"])]
    if doc.get("context"):
        parts += ["<h2>Inputs</h2>", _kv_table(doc["context"])]
    parts += [
        "<h2>Provenance</h2>",
        _kv_table(doc.get("provenance", {})),
        f'<p>Machine-readable: <a href="{FILES["metrics"]}">{FILES["metrics"]}</a></p>',
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def write_report(
    case: ValidationCase,
    out_dir: str | os.PathLike[str],
    *,
    rl_iterations: int = RL_ITERATIONS,
) -> Path:
    """Evaluate ``case`` and write the report directory.

    Parameters
    ----------
    case : ValidationCase
    out_dir : path-like
        Created when missing; ``images.png``, ``spectra.png``,
        ``metrics.json`` and ``report.html`` are (re)written in it,
        each atomically, the HTML last.
    rl_iterations : int
        Richardson-Lucy iterations of the baseline.

    Returns
    -------
    pathlib.Path
        The ``report.html`` path.

    Raises
    ------
    OutputError
        ``out_dir`` exists and is not a directory, or cannot be created.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise OutputError(f"report directory {out} is a file; give a directory name")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create report directory {out}: {exc.strerror}") from exc
    ev = evaluate(case, rl_iterations=rl_iterations)
    doc = dict(ev.metrics)
    doc["provenance"] = {k: str(v) for k, v in case.provenance.items()}
    doc["figures"] = {k: FILES[k] for k in ("images", "spectra")}
    _images_figure(ev, case, out / FILES["images"])
    _spectra_figure(ev, case, out / FILES["spectra"])
    with atomic_path(out / FILES["metrics"]) as tmp:
        tmp.write_text(json.dumps(doc, indent=1, allow_nan=False, default=str) + "\n")
    with atomic_path(out / FILES["html"]) as tmp:
        tmp.write_text(_html(doc), encoding="utf-8")
    log.info("wrote validation report %s", out / FILES["html"])
    return out / FILES["html"]
