"""Validation figures of an enhanced archive: quick-looks and per-frame quality.

For every series of a run:

* :func:`quicklook_figure`: the latest frame of each cube, the HMI input and
  the enhanced output side by side on helioprojective axes (arcsec, from the
  frames' WCS), each with a colour bar in the data's units, a zoom on the
  central 64" x 64" of both, and the azimuthally averaged power spectra of
  input and output per unit solar area (arcsec^-1, power per arcsec^-2 of
  frequency: :func:`enhance_hmi.physics.spectrum.radial_power_spectrum`), so
  the two agree where both resolve the Sun and the output reaches twice
  the input's Nyquist frequency [1]_;
* :func:`quality_table` / :func:`quality_figure` /
  :func:`out_of_tolerance_rows`: the per-frame quality figures stored in
  each cube (``frame_quality/*``, measured while each frame was enhanced:
  :mod:`enhance_hmi.io.frame_quality`) as a table, a time series per figure with
  the tolerances drawn and the frames out of tolerance marked, and the list
  of frames out of tolerance.

Figures are :class:`matplotlib.figure.Figure` objects on their own Agg canvas
(no pyplot state, the caller's backend untouched), written atomically.

References
----------
.. [1] Díaz Baso, C. J. & Asensio Ramos, A. (2018), "Enhancing SDO/HMI images
   using deep learning", A&A 614, A5, Sects. 4-5 (quick-looks and power
   spectra of input and output).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import astropy.units as u
import numpy as np
from astropy.io import fits
from matplotlib.figure import Figure

from enhance_hmi.io.frame_quality import QualityTolerances
from enhance_hmi.physics.spectrum import radial_power_spectrum
from enhance_hmi.validation.report.figures import new_figure, save_png

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.gridspec import GridSpec
    from matplotlib.image import AxesImage

__all__ = [
    "QuickLook",
    "out_of_tolerance_rows",
    "quality_figure",
    "quality_plot",
    "quality_table",
    "quicklook_figure",
]

log = logging.getLogger(__name__)

#: Legend words of the quality figure: enhance's verdict on its output, never
#: JSOC's ``QUALITY`` (docs/workflow.md, "Words").
OUT_OF_TOLERANCE = "out of tolerance"
WITHIN_TOLERANCE = "within tolerance"

#: Side of the zoom panels, arcsec.
ZOOM_ARCSEC = 64.0
#: Largest input region (pixels per side) used for the power spectra: a
#: full-disk frame is cut to its central part (the spectrum of a 512 px
#: region already resolves 0.004 arcsec^-1).
SPECTRUM_SIDE = 512
_UNITS = {"magnetogram": "B$_\\mathrm{LOS}$ (G)", "continuum": "I / I$_\\mathrm{QS}$"}
#: y label of the power spectra: power per arcsec^-2 of frequency (per unit solar area).
_POWER_UNITS = {
    "magnetogram": "power spectral density (G$^2$ arcsec$^2$)",
    "continuum": "power spectral density ((I / I$_\\mathrm{QS}$)$^2$ arcsec$^2$)",
}


@dataclasses.dataclass
class QuickLook:
    """One cube's latest frame: input and output with their headers (north up)."""

    label: str
    observable: str
    output: np.ndarray
    output_header: fits.Header
    input: np.ndarray | None = None
    input_header: fits.Header | None = None
    frames: int = 1


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def _extent(header: Mapping[str, Any], shape: tuple[int, int]) -> tuple[float, float, float, float]:
    """Helioprojective extent (arcsec) of a north-up image: (x0, x1, y0, y1) of pixel edges."""
    ny, nx = shape
    x0, x1 = _edges(header, 1, nx)
    y0, y1 = _edges(header, 2, ny)
    return x0, x1, y0, y1


def _edges(header: Mapping[str, Any], axis: int, size: int) -> tuple[float, float]:
    """Coordinates (arcsec) of the outer pixel edges along FITS ``axis`` of ``size`` pixels."""
    scale = float(header.get(f"CDELT{axis}", 1.0))
    crpix = float(header.get(f"CRPIX{axis}", (size + 1) / 2))
    crval = float(header.get(f"CRVAL{axis}", 0.0))
    return crval + (0.5 - crpix) * scale, crval + (size + 0.5 - crpix) * scale


def _limits(data: np.ndarray, observable: str) -> tuple[float, float, str]:
    vals = data[np.isfinite(data)]
    if not vals.size:
        return -1.0, 1.0, "gray"
    if observable == "magnetogram":
        lim = float(np.percentile(np.abs(vals), 99.5)) or 1.0
        return -lim, lim, "gray"
    low, high = np.percentile(vals, [0.5, 99.5])
    return float(low), float(high), "gray"


def _central(data: np.ndarray, side: int) -> np.ndarray:
    ny, nx = data.shape
    y0, x0 = max(0, (ny - side) // 2), max(0, (nx - side) // 2)
    return data[y0 : y0 + side, x0 : x0 + side]


def _image_panels(fig: Figure, grid: GridSpec, row: int, look: QuickLook) -> AxesImage | None:
    """Input and output of ``look`` and their zooms in ``row``; the last image drawn."""
    low, high, cmap = _limits(look.output, look.observable)
    when = look.output_header.get("T_REC") or look.output_header.get("T_OBS", "")
    panels = [
        ("HMI input", look.input, look.input_header),
        ("Enhanced (2x)", look.output, look.output_header),
    ]
    image = None
    for col, (title, data, header) in enumerate(panels):
        ax = fig.add_subplot(grid[row, col])
        if data is None or header is None:
            ax.text(
                0.5,
                0.5,
                "input file not found",
                ha="center",
                va="center",
                transform=ax.transAxes,
            )
            ax.set_axis_off()
            continue
        extent = _extent(header, data.shape)
        shown: dict[str, Any] = {
            "origin": "lower",
            "cmap": cmap,
            "vmin": low,
            "vmax": high,
            "extent": extent,
            "interpolation": "nearest",
        }
        image = ax.imshow(data, **shown)
        ax.set_xlabel("Tx (arcsec)")
        ax.set_ylabel("Ty (arcsec)")
        ax.set_title(f"{title}\n{look.label}, {when}", fontsize=9)
        centre = ((extent[0] + extent[1]) / 2, (extent[2] + extent[3]) / 2)
        half = ZOOM_ARCSEC / 2
        zoom = fig.add_subplot(grid[row, 2 + col])
        zoom.imshow(data, **shown)
        zoom.set_xlim(centre[0] - half, centre[0] + half)
        zoom.set_ylim(centre[1] - half, centre[1] + half)
        zoom.set_title(f"zoom: {title.split(' (')[0].lower()}", fontsize=9)
        zoom.set_xlabel("Tx (arcsec)")
        zoom.tick_params(labelsize=7)
    return image


def _spectrum_panel(spec: Axes, look: QuickLook) -> None:
    """Power spectra of the central input and output of ``look`` per unit solar area."""
    for label, data, header, style in (
        ("HMI input", look.input, look.input_header, "-"),
        ("Enhanced", look.output, look.output_header, "-"),
    ):
        if data is None or header is None:
            continue
        scale = abs(float(header.get("CDELT1", 1.0))) * u.arcsec
        side = SPECTRUM_SIDE * (2 if label == "Enhanced" else 1)
        freq, power = radial_power_spectrum(_central(data, side), scale)
        spec.loglog(freq.to_value(1 / u.arcsec), power.to_value(u.arcsec**2), style, label=label)
    spec.set_xlabel("spatial frequency (arcsec$^{-1}$)")
    spec.set_ylabel(_POWER_UNITS.get(look.observable, "power spectral density"))
    spec.set_title(
        f"power spectra per unit solar area ({_plural(look.frames, 'frame')} in cube)",
        fontsize=9,
    )
    spec.legend(fontsize=8)
    spec.grid(True, which="both", alpha=0.3)


def quicklook_figure(looks: Sequence[QuickLook], path: str | os.PathLike[str]) -> Path:
    """Input | output | zoom (input, output) | power spectra, one row per cube.

    Axes are helioprojective Tx, Ty in arcsec from each frame's header
    (``CRVAL``, ``CRPIX``, ``CDELT``; the frames are north up); input and
    output share one grey scale (99.5th percentile of ``|B|`` for magnetograms,
    0.5-99.5 percentiles for continuum) shown on a colour bar with units.
    A cube whose input file is not found shows the output and its spectrum
    only. Returns ``path``.
    """
    path = Path(path)
    rows = max(1, len(looks))
    fig = new_figure(17.0, 3.6 * rows)
    grid = fig.add_gridspec(rows, 5, width_ratios=[1, 1, 0.55, 0.55, 1.1])
    if not looks:
        ax = fig.add_subplot(grid[0, :])
        ax.text(0.5, 0.5, "no cube holds a frame yet", ha="center", va="center")
        ax.set_axis_off()
    for row, look in enumerate(looks):
        image = _image_panels(fig, grid, row, look)
        if image is not None:
            bar = fig.colorbar(image, ax=fig.axes[-1], fraction=0.08, pad=0.02)
            bar.set_label(_UNITS.get(look.observable, ""))
        _spectrum_panel(fig.add_subplot(grid[row, 4]), look)
    save_png(fig, path, dpi=80)
    return path


def quality_table(cube_path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The per-frame quality table of a cube: one record per frame in time order.

    Keys: ``t_rec``, ``quality`` (bits), the numeric figures of
    :data:`enhance_hmi.io.frame_quality.QUALITY_KEYWORDS` (NaN where not
    measured) and ``flags``, the names of the figures out of tolerance
    (:meth:`enhance_hmi.cube.TimeCube.quality_table`).
    """
    from enhance_hmi.cube import TimeCube

    return TimeCube(cube_path).quality_table()


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def out_of_tolerance_rows(
    tables: Mapping[str, Sequence[Mapping[str, Any]]],
) -> list[dict[str, Any]]:
    """Every frame out of tolerance in ``tables`` (cube name -> :func:`quality_table`), by time."""
    rows = [
        {"cube": cube, **row}
        for cube, table in tables.items()
        for row in table
        if str(row.get("flags", "")).strip()
    ]
    return sorted(rows, key=lambda r: r["t_rec"])


def _times(table: Sequence[Mapping[str, Any]]) -> np.ndarray:
    from enhance_hmi.validation.target import frame_time

    return np.array([frame_time({"T_REC": row["t_rec"]}).datetime for row in table])


def quality_figure(
    tables: Mapping[str, Sequence[Mapping[str, Any]]],
    observable: str,
    path: str | os.PathLike[str],
    *,
    tolerances: QualityTolerances | None = None,
    title: str = "",
) -> Path:
    """Write :func:`quality_plot` of ``tables`` to ``path`` (PNG, atomically); return ``path``."""
    fig = quality_plot(tables, observable, tolerances=tolerances, title=title)
    save_png(fig, Path(path), dpi=80)
    return Path(path)


def quality_plot(
    tables: Mapping[str, Sequence[Mapping[str, Any]]],
    observable: str,
    *,
    tolerances: QualityTolerances | None = None,
    title: str = "",
) -> Figure:
    """Time series of the per-frame quality figures of every cube of one series.

    Panels: forward residual (in units of the input noise sigma), input
    noise sigma, unsigned-flux ratio (magnetograms) or quiet-Sun contrast of
    input and output (continuum), masked fraction, ripple figure (output
    over network power near HMI's Nyquist frequency). Tolerances are dashed
    lines; frames out of tolerance are red crosses, the others black dots.
    The input's JSOC ``QUALITY`` bits are not drawn: they count only through
    the ``quality_mask`` tolerance.
    """
    tolerances = tolerances or QualityTolerances()
    rows = [dict(row) for table in tables.values() for row in table]
    rows.sort(key=lambda r: r["t_rec"])
    fig = new_figure(11.0, 9.5)
    grid = fig.subplots(3, 2, sharex=True).ravel()
    grid[-1].remove()  # five panels
    grid[-3].tick_params(labelbottom=True)  # now the lowest of its column
    axes = grid[:-1]
    count = len(rows)
    outside = sum(1 for r in rows if r["flags"])
    fig.suptitle(
        f"{title}: per-frame quality, {_plural(count, 'frame')}, {outside} {OUT_OF_TOLERANCE}",
        fontsize=11,
    )
    if not rows:
        for ax in axes:
            ax.text(0.5, 0.5, "no frames", ha="center", va="center", transform=ax.transAxes)
        return fig
    times = _times(rows)
    bad = np.array([bool(r["flags"]) for r in rows])
    if observable == "magnetogram":
        third = ("flux_ratio", "unsigned-flux ratio output/input", tolerances.flux_ratio)
        noise_units = "G"
    else:
        third = ("contrast", "quiet-Sun rms contrast", tolerances.contrast)
        noise_units = "I$_{QS}$"
    panels = [
        (
            "forward_residual",
            "forward residual / input noise σ",
            (None, tolerances.forward_residual),
        ),
        (
            "input_noise",
            f"input noise σ ({noise_units})",
            (None, tolerances.input_noise.get(observable)),
        ),
        third,
        ("masked_fraction", "masked fraction of disk", (None, tolerances.masked_fraction)),
        ("ripple", "ripple (output / network, near Nyquist)", (None, tolerances.ripple)),
    ]
    for ax, (name, label, (low, high)) in zip(axes, panels, strict=True):
        values = np.array([r[name] for r in rows], dtype=float)
        ax.plot(times[~bad], values[~bad], "k.", label=WITHIN_TOLERANCE)
        if bad.any():
            ax.plot(times[bad], values[bad], "rx", ms=8, label=OUT_OF_TOLERANCE)
        if name == "contrast":
            inputs = np.array([r["input_contrast"] for r in rows], dtype=float)
            ax.plot(times, inputs, ".", color="0.6", label="input (HMI)")
        for limit in (low, high):
            if limit is not None:
                ax.axhline(limit, ls="--", color="tab:red", lw=1)
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
        if name in ("forward_residual", "ripple") and np.nanmax(values, initial=0) > 10 * (
            high or 1
        ):
            ax.set_yscale("log")
    axes[0].legend(fontsize=8)
    for ax in axes[3:]:
        ax.set_xlabel("T_REC (TAI)")
        ax.tick_params(axis="x", labelrotation=30, labelsize=8)
    return fig
