"""Calibration of per-pixel uncertainties against a known truth.

For an enhanced image ``output`` with a predicted standard deviation
``sigma`` and the truth it estimates, the z-scores ``(output - truth) /
sigma`` of a calibrated Gaussian uncertainty follow N(0, 1): 68.27 % of the
pixels lie within one sigma and 95.45 % within two. :func:`coverage` measures
both fractions and the z-score histogram; :func:`fit_scale` finds the single
factor on sigma that brings the one- and two-sigma coverage of several
regions closest to nominal; :func:`fit_log_linear` fits, on the same
criterion, a log-linear map of several per-pixel quantities (the predicted
sigma and what else is known at each pixel), one map for all regions;
:func:`calibration_figure` draws the histograms against N(0, 1) and the
coverage curve (observed against nominal fraction).

References
----------
.. [1] Kuleshov, V., Fenner, N. & Ermon, S. (2018), "Accurate uncertainties
   for deep learning using calibrated regression", ICML, 2796 (coverage of
   predicted intervals as the calibration measure).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from enhance_hmi.atomic import atomic_path
from enhance_hmi.errors import InputError

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = [
    "NOMINAL_1SIGMA",
    "NOMINAL_2SIGMA",
    "Z_BINS",
    "calibration_figure",
    "coverage",
    "coverage_miss",
    "fit_log_linear",
    "fit_scale",
    "uncertainty_figure",
    "uncertainty_summary",
    "z_scores",
]

log = logging.getLogger(__name__)

#: Fraction of a Gaussian within one / two standard deviations (erf(1/sqrt 2),
#: erf(sqrt 2)).
NOMINAL_1SIGMA = math.erf(1.0 / math.sqrt(2.0))
NOMINAL_2SIGMA = math.erf(math.sqrt(2.0))
#: Edges of the z-score histograms (0.25 wide, ``|z|`` up to 6; beyond: the end bins).
Z_BINS = np.linspace(-6.0, 6.0, 49)


def z_scores(
    output: np.ndarray, truth: np.ndarray, sigma: np.ndarray, *, border: int = 0
) -> np.ndarray:
    """``(output - truth) / sigma`` over the pixels finite in all three, ``border`` cut.

    Raises
    ------
    InputError
        Shapes differ, sigma is not positive where finite, or no pixel is left.
    """
    a, b, s = (np.asarray(v, dtype=np.float64) for v in (output, truth, sigma))
    if not a.shape == b.shape == s.shape or a.ndim != 2:
        raise InputError(
            f"output {a.shape}, truth {b.shape} and sigma {s.shape} must be 2-D and of one shape"
        )
    if border:
        a, b, s = (v[border:-border, border:-border] for v in (a, b, s))
    ok = np.isfinite(a) & np.isfinite(b) & np.isfinite(s)
    if not ok.any():
        raise InputError("output, truth and sigma share no finite pixel")
    if np.any(s[ok] <= 0):
        raise InputError("sigma must be positive wherever it is finite")
    return (a[ok] - b[ok]) / s[ok]


def coverage(z: np.ndarray) -> dict[str, Any]:
    """Coverage figures of z-scores: fractions within 1 and 2 sigma, histogram.

    Returns
    -------
    dict
        ``within_1sigma``, ``within_2sigma`` (fractions), ``median_abs_z``
        (0.674 for N(0, 1)), ``rms_z``, ``pixels`` and ``histogram``
        (densities on :data:`Z_BINS`, the end bins holding everything beyond).
    """
    z = np.asarray(z, dtype=np.float64).ravel()
    if z.size == 0:
        raise InputError("no z-scores to measure coverage on")
    absz = np.abs(z)
    counts, _ = np.histogram(np.clip(z, Z_BINS[0], Z_BINS[-1] - 1e-9), bins=Z_BINS)
    width = float(Z_BINS[1] - Z_BINS[0])
    return {
        "within_1sigma": float(np.mean(absz <= 1.0)),
        "within_2sigma": float(np.mean(absz <= 2.0)),
        "median_abs_z": float(np.median(absz)),
        "rms_z": float(np.sqrt(np.mean(z * z))),
        "pixels": int(z.size),
        "histogram": (counts / (z.size * width)).tolist(),
    }


#: Tolerances of the one- and two-sigma coverage that weight them in :func:`fit_scale`
#: (the goals: 68 % +- 5 and 95 % +- 3).
COVERAGE_TOLERANCE = (0.05, 0.03)


def coverage_miss(within_1sigma: Any, within_2sigma: Any) -> Any:
    """The squared misses of 68.27 / 95.45 % in units of :data:`COVERAGE_TOLERANCE`, summed.

    Works on numbers or arrays (fractions, not per cent): the loss
    :func:`fit_scale` minimises per region.
    """
    tol1, tol2 = COVERAGE_TOLERANCE
    return ((within_1sigma - NOMINAL_1SIGMA) / tol1) ** 2 + (
        (within_2sigma - NOMINAL_2SIGMA) / tol2
    ) ** 2


def fit_scale(z_by_region: Sequence[np.ndarray]) -> float:
    """The one factor ``s`` on sigma that brings both coverages closest to nominal.

    Minimises, over the regions (each counting equally, so a large region
    does not decide the calibration of the small ones), the squared
    deviations of the fractions within one and two sigma (``|z| <= s`` and
    ``|z| <= 2 s``) from 68.27 % and 95.45 %, each in units of its
    tolerance (:data:`COVERAGE_TOLERANCE`). For Gaussian z-scores this is
    the factor that makes them N(0, 1); for heavier tails it trades a
    little one-sigma coverage for two-sigma coverage. Grid search in log s
    (0.1 % steps).
    """
    regions = [np.abs(np.asarray(z, dtype=np.float64).ravel()) for z in z_by_region]
    regions = [np.sort(z) for z in regions if z.size]
    if not regions:
        raise InputError("no z-scores to fit a calibration scale on")

    def loss(scales: np.ndarray) -> np.ndarray:
        total = np.zeros_like(scales)
        for z in regions:
            c1 = np.searchsorted(z, scales, side="right") / z.size
            c2 = np.searchsorted(z, 2 * scales, side="right") / z.size
            total += coverage_miss(c1, c2)
        return total / len(regions)

    median = float(np.median(np.concatenate(regions))) / 0.6745 or 1.0
    grid = median * np.exp(np.linspace(-2.0, 2.0, 4001))
    return float(grid[int(np.argmin(loss(grid)))])


#: How far inside each goal band (fraction) :func:`fit_log_linear` starts to
#: penalise a region's coverage steeply, and the weight of that penalty: the
#: fit is made on one noise draw and measured on another, which moves a
#: region's coverage by a few tenths of a percent.
BAND_MARGIN = 0.01
OUT_OF_BAND_WEIGHT = 100.0


def _coverage_loss(absz_by_region: Sequence[np.ndarray], log_factor: Sequence[np.ndarray]) -> float:
    """Mean over regions of the squared coverage misses in units of their tolerance.

    Plus :data:`OUT_OF_BAND_WEIGHT` times the squared excess of each miss
    beyond its tolerance less :data:`BAND_MARGIN`, so that a map that keeps
    every region inside its band is preferred to one that centres most
    regions and leaves one outside.
    """
    total = 0.0
    for absz, shift in zip(absz_by_region, log_factor, strict=True):
        ratio = absz * np.exp(-shift)
        misses = (np.mean(ratio <= 1.0) - NOMINAL_1SIGMA, np.mean(ratio <= 2.0) - NOMINAL_2SIGMA)
        for miss, tol in zip(misses, COVERAGE_TOLERANCE, strict=True):
            beyond = max(0.0, abs(miss) - (tol - BAND_MARGIN)) / tol
            total += (miss / tol) ** 2 + OUT_OF_BAND_WEIGHT * beyond**2
    return total / len(absz_by_region)


def fit_log_linear(
    errors: Sequence[np.ndarray],
    features: Sequence[np.ndarray],
    *,
    starts: Sequence[npt.ArrayLike] | None = None,
) -> tuple[float, tuple[float, ...]]:
    """Fit ``log sigma = c0 + sum_i c_i f_i`` to the errors of several regions at once.

    The criterion is that of :func:`fit_scale`: the one- and two-sigma
    coverage of every region, each counting once, closest to 68.27 and
    95.45 % in units of :data:`COVERAGE_TOLERANCE`, with a steep penalty on
    any region that comes within :data:`BAND_MARGIN` of leaving its band
    (:data:`OUT_OF_BAND_WEIGHT`). The map is one for all
    regions: it can follow how the error grows with each quantity but knows
    nothing of which region a pixel is from.

    Parameters
    ----------
    errors : sequence of ndarray
        ``output - truth`` per region (1-D, finite), in the units in which
        ``exp(c0)`` is the sigma at ``f = 0``.
    features : sequence of ndarray
        Per region, ``(k, n)``: the k quantities at each of its n pixels,
        already logarithms and centred (``f_0`` is usually log sigma minus
        its reference, so ``c_0 = 1``, the rest 0 is the uncalibrated sigma
        up to ``exp(c0)``).
    starts : sequence of sequence, optional
        Starting coefficients ``(c0, c_1..c_k)``; default three around
        ``(0, 1, 0, ..)``.

    Returns
    -------
    (float, tuple of float)
        ``c0`` and ``(c_1, .., c_k)``.

    Notes
    -----
    The coverage is a step function of the coefficients; Nelder-Mead
    from several starts on a few hundred thousand pixels finds its
    minimum to the 0.1 % the coverage is reported with.
    """
    if not errors or len(errors) != len(features):
        raise InputError("fit_log_linear needs one feature array per region's errors")
    absz = [np.abs(np.asarray(e, dtype=np.float64).ravel()) for e in errors]
    feats = [np.atleast_2d(np.asarray(f, dtype=np.float64)) for f in features]
    k = feats[0].shape[0]
    for a, f in zip(absz, feats, strict=True):
        if f.shape != (k, a.size) or not (np.isfinite(a).all() and np.isfinite(f).all()):
            raise InputError(f"features {f.shape} do not match {a.size} finite errors as ({k}, n)")
    # log |error| = log sigma + log |z|: the coverage depends on c only through this shift

    def loss(c: np.ndarray) -> float:
        return _coverage_loss(absz, [c[0] + c[1:] @ f for f in feats])

    if starts is None:
        base = np.zeros(k + 1)
        base[1] = 1.0
        starts = [base, base + 0.15, base - np.r_[0.15, 0.3, np.full(k - 1, 0.3)]]
    coefficients, best = _nelder_mead_from(loss, starts, k + 1)
    log.debug("log-linear calibration %s, loss %.4g", np.round(coefficients, 4), best)
    return float(coefficients[0]), tuple(float(v) for v in coefficients[1:])


def _nelder_mead_from(
    loss: Callable[[np.ndarray], float], starts: Sequence[npt.ArrayLike], n: int
) -> tuple[np.ndarray, float]:
    """The ``n`` coefficients of least ``loss`` found by Nelder-Mead from each of ``starts``."""
    from scipy.optimize import minimize

    best_x: np.ndarray | None = None
    best_fun = math.inf
    for given in starts:
        start = np.asarray(given, dtype=np.float64)
        # a simplex wide enough to see the coverage change (it is a step function)
        simplex = np.vstack([start, start + np.diag(np.full(n, 0.2))])
        result = minimize(
            loss,
            start,
            method="Nelder-Mead",
            options={
                "xatol": 1e-4,
                "fatol": 1e-7,
                "maxiter": 2000 * n,
                "initial_simplex": simplex,
            },
        )
        if best_x is None or result.fun < best_fun:
            best_x, best_fun = np.asarray(result.x), float(result.fun)
    if best_x is None:
        raise InputError("fit_log_linear needs at least one starting point in starts")
    return best_x, best_fun


def calibration_figure(
    rows: Sequence[Mapping[str, Any]],
    path: str | os.PathLike[str],
    *,
    title: str = "",
    z_by_region: Mapping[str, np.ndarray] | None = None,
    left_out_rows: Sequence[Mapping[str, Any]] | None = None,
) -> Path:
    """Z-score histograms against N(0, 1) and the coverage curve, as a small PNG.

    With ``left_out_rows`` a third panel puts, per region, the coverage of the
    calibration fitted on all regions beside that of the calibration fitted
    without the region, against the goal bands.

    Parameters
    ----------
    rows : sequence of mapping
        One per region: ``region`` and the output of :func:`coverage`.
    path : path-like
        PNG written atomically.
    title : str
        Figure title (the observable).
    z_by_region : mapping, optional
        The z-scores by region; when given, the right panel shows the
        observed fraction within k sigma for every k against the nominal
        Gaussian fraction (the diagonal is perfect calibration).
    left_out_rows : sequence of mapping, optional
        Rows of the leave-one-region-out check (``region``, ``within_1sigma``,
        ``within_2sigma``): shown in the legend beside each region's coverage
        and in the third panel.
    """
    from matplotlib.figure import Figure

    left_out = {row["region"]: row for row in left_out_rows or ()}
    fig = Figure(figsize=(13.5 if left_out else 9.0, 3.6), dpi=80)
    panels = fig.subplots(1, 3 if left_out else 2)
    left, right = panels[0], panels[1]
    _histogram_panel(left, rows, left_out)
    _coverage_panel(right, z_by_region)
    if left_out:
        _left_out_panel(panels[2], rows, left_out)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path


def _histogram_panel(
    ax: Axes, rows: Sequence[Mapping[str, Any]], left_out: Mapping[str, Mapping[str, Any]]
) -> None:
    """Z-score histogram of each region against N(0, 1), coverage in the legend."""
    centres = 0.5 * (Z_BINS[1:] + Z_BINS[:-1])
    for row in rows:
        label = (
            f"{row['region'][:28]} ({100 * row['within_1sigma']:.0f}/"
            f"{100 * row['within_2sigma']:.0f} %"
        )
        if row["region"] in left_out:
            out = left_out[row["region"]]
            one, two = 100 * out["within_1sigma"], 100 * out["within_2sigma"]
            label += f"; left out {one:.0f}/{two:.0f} %"
        label += ")"
        ax.step(centres, row["histogram"], where="mid", lw=1.0, label=label)
    ax.plot(centres, np.exp(-0.5 * centres**2) / math.sqrt(2 * math.pi), "k--", lw=1.2)
    ax.set_yscale("log")
    ax.set_ylim(1e-4, 1.0)
    ax.set_xlabel("z = (output - truth) / sigma")
    ax.set_ylabel("density")
    ax.legend(
        fontsize=6,
        loc="upper right",
        title="within 1/2 sigma" + ("; region left out" if left_out else ""),
        title_fontsize=6,
    )


def _coverage_panel(ax: Axes, z_by_region: Mapping[str, np.ndarray] | None) -> None:
    """Observed against nominal fraction within k sigma per region (the diagonal is perfect)."""
    ks = np.linspace(0.0, 3.0, 61)
    nominal = np.array([math.erf(k / math.sqrt(2.0)) for k in ks])
    if z_by_region:
        for name, z in z_by_region.items():
            absz = np.sort(np.abs(np.asarray(z).ravel()))
            observed = np.searchsorted(absz, ks, side="right") / absz.size
            ax.plot(nominal, observed, lw=1.0, label=name[:28])
    ax.plot([0, 1], [0, 1], "k--", lw=1.0)
    for level in (NOMINAL_1SIGMA, NOMINAL_2SIGMA):
        ax.axvline(level, color="0.8", lw=0.8)
    ax.set_xlabel("nominal fraction within k sigma")
    ax.set_ylabel("observed fraction")
    ax.set_title("coverage (k = 0..3)", fontsize=9)


def _short_region(name: str) -> str:
    """A region label short enough for a tick: its end (date, ``k=...``) kept."""
    for noise in ("[held-out]", ".magnetogram", "_TAI"):
        name = name.replace(noise, "")
    return name if len(name) <= 24 else f"...{name[-21:]}"


def _left_out_panel(ax: Any, rows: Sequence[Mapping[str, Any]], left_out: Mapping) -> None:
    """Per region: 1- and 2-sigma coverage fitted on all regions and with the region left out."""
    names = [row["region"] for row in rows]
    positions = np.arange(len(names), dtype=float)
    for goal, tolerance in ((68.0, 5.0), (95.0, 3.0)):
        ax.axhspan(goal - tolerance, goal + tolerance, color="0.9", lw=0)
    for key, colour in (("within_1sigma", "C0"), ("within_2sigma", "C3")):
        level = "1" if key == "within_1sigma" else "2"
        ax.plot(
            positions - 0.12,
            [100 * row[key] for row in rows],
            "o",
            color=colour,
            ms=5,
            label=f"{level} sigma, fitted on all",
        )
        ax.plot(
            positions + 0.12,
            [100 * left_out[n][key] if n in left_out else np.nan for n in names],
            "s",
            color=colour,
            mfc="none",
            ms=5,
            label=f"{level} sigma, region left out",
        )
    ax.set_xticks(positions)
    ax.set_xticklabels([_short_region(n) for n in names], rotation=30, ha="right")
    ax.tick_params(axis="x", labelsize=6)
    ax.set_ylabel("held-out pixels within (%)")
    ax.set_title("coverage: in-sample and leave-one-region-out", fontsize=9)
    ax.set_ylim(30.0, 100.0)
    ax.legend(fontsize=6, loc="lower center", ncol=2)  # below the 1-sigma goal band


def uncertainty_summary(
    enhanced: np.ndarray, truth: np.ndarray, sigma: np.ndarray, *, border: int = 8
) -> dict[str, Any]:
    """Coverage of ``sigma`` against ``truth`` plus its median, for a report's JSON.

    :func:`coverage` of :func:`z_scores` (``border`` pixels cut) without the
    histogram, and ``median_sigma`` / ``rms_error`` in the image's units.
    """
    z = z_scores(enhanced, truth, sigma, border=border)
    summary = {k: v for k, v in coverage(z).items() if k != "histogram"}
    inner = (slice(border, -border or None),) * 2
    summary["median_sigma"] = float(np.nanmedian(np.asarray(sigma)[inner]))
    error = (np.asarray(enhanced, dtype=np.float64) - truth)[inner]
    summary["rms_error"] = float(np.sqrt(np.nanmean(error**2)))
    return summary


def uncertainty_figure(
    enhanced: np.ndarray,
    truth: np.ndarray,
    sigma: np.ndarray,
    path: str | os.PathLike[str],
    *,
    units: str = "",
    border: int = 8,
) -> Path:
    """Four panels: ``|enhanced - truth|``, sigma (same colour scale), z histogram, coverage curve.

    Written atomically as a PNG; ``units`` labels the colour bar.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    z = z_scores(enhanced, truth, sigma, border=border)
    cov = coverage(z)
    error = np.abs(np.asarray(enhanced, dtype=np.float64) - truth)
    top = float(np.nanpercentile(np.asarray(sigma, dtype=np.float64), 99.5)) * 2 or 1.0
    fig = Figure(figsize=(13.0, 3.4), dpi=80)
    FigureCanvasAgg(fig)  # its own canvas: the process's matplotlib backend is left alone
    axes = fig.subplots(1, 4)
    for ax, image, title in (
        (axes[0], error, "|Enhance - truth|"),
        (axes[1], sigma, "sigma (predicted)"),
    ):
        shown = ax.imshow(image, origin="lower", cmap="magma", vmin=0, vmax=top)
        ax.set_title(title, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        fig.colorbar(shown, ax=ax, fraction=0.046, label=units)
    centres = 0.5 * (Z_BINS[1:] + Z_BINS[:-1])
    axes[2].step(centres, cov["histogram"], where="mid", label="held-out pixels")
    axes[2].plot(centres, np.exp(-0.5 * centres**2) / math.sqrt(2 * math.pi), "k--", label="N(0,1)")
    axes[2].set_yscale("log")
    axes[2].set_ylim(1e-4, 1.0)
    axes[2].set_xlabel("z = (Enhance - truth) / sigma")
    axes[2].legend(fontsize=7)
    axes[2].set_title(
        f"{100 * cov['within_1sigma']:.1f} % within 1 sigma, "
        f"{100 * cov['within_2sigma']:.1f} % within 2",
        fontsize=9,
    )
    ks = np.linspace(0.0, 3.0, 61)
    nominal = np.array([math.erf(k / math.sqrt(2.0)) for k in ks])
    absz = np.sort(np.abs(z))
    axes[3].plot(nominal, np.searchsorted(absz, ks, side="right") / absz.size)
    axes[3].plot([0, 1], [0, 1], "k--", lw=1.0)
    axes[3].set_xlabel("nominal fraction within k sigma")
    axes[3].set_ylabel("observed fraction")
    axes[3].set_title("calibration", fontsize=9)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path
