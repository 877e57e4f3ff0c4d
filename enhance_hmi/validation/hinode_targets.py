"""Hinode SOT files as validation targets of a run: find, fetch and enhance their HMI frame.

For each Hinode file (BFI continuum, NFI V/I magnetogram, SP level 2) the
workflow needs the HMI frame observed at the same time, enhanced with the
run's weights. This module:

1. reads the observation time and field of view from the Hinode header
   (:func:`read_target`);
2. asks the acquisition layer of the run (JSOC, KIS, a JSOC-protocol URL or
   a local archive: :func:`enhance_hmi.acquire.acquire`) for the records of the
   HMI series of its observable (``hmi.Ic_45s`` for continuum, ``hmi.M_45s``
   for magnetograms by default) within the largest accepted time difference,
   picks the record whose ``T_OBS`` is nearest the Hinode time and fetches
   that one file only (:func:`find_cotemporal_frame`). The frame need not lie
   in the run's date range;
3. enhances it (:func:`enhance_hmi.pipeline.enhance_file`), co-aligns it with
   Hinode and scores it against the baselines
   (:func:`enhance_hmi.validation.target.target_case`, the same report as
   ``enhance validate --hinode``) (:func:`run_hinode_target`).

A Hinode file with no HMI frame within the time limit is written as a report
entry of its own (``metrics.json`` with ``"status": "no HMI frame"`` and a
short ``report.html``), not an error, unless ``strict`` is set.

References
----------
.. [1] Díaz Baso, C. J. & Asensio Ramos, A. (2018), A&A 614, A5, Sect. 4
   (validation against Hinode SOT degraded to a 28 cm aperture).
.. [2] Tsuneta, S. et al. (2008), Sol. Phys. 249, 167 (Hinode SOT).
.. [3] Schou, J. et al. (2012), Sol. Phys. 275, 229 (the 45 s HMI observables).
"""

from __future__ import annotations

import dataclasses
import glob
import html
import json
import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import astropy.units as u
import numpy as np
from astropy.time import Time

from enhance_hmi.atomic import atomic_path
from enhance_hmi.errors import ConfigError, EnhanceError, InputError, ReportError
from enhance_hmi.provenance import provenance_record, sha256_file
from enhance_hmi.settings import check_symmetries
from enhance_hmi.validation.hinode import read_hinode
from enhance_hmi.validation.target import MAX_TIME_DIFFERENCE, frame_time

if TYPE_CHECKING:
    from enhance_hmi.acquire.series import HmiSeries

__all__ = [
    "DEFAULT_SERIES",
    "NO_FRAME",
    "CotemporalFrame",
    "HinodeTarget",
    "expand_targets",
    "find_cotemporal_frame",
    "read_target",
    "run_hinode_target",
]

log = logging.getLogger(__name__)

#: HMI series searched for each observable by default: the 45 s observables,
#: whose cadence puts a frame within 23 s of any Hinode time [3]_.
DEFAULT_SERIES = {"continuum": "hmi.Ic_45s", "magnetogram": "hmi.M_45s"}
#: ``status`` of a report entry whose Hinode file has no HMI frame in reach.
NO_FRAME = "no HMI frame"
#: Hinode products that are magnetograms (:func:`enhance_hmi.validation.hinode.classify`).
_MAGNETOGRAM_PRODUCTS = ("nfi-v/i", "sp-level2")


@dataclasses.dataclass(frozen=True)
class HinodeTarget:
    """A Hinode file and what the workflow needs to find its HMI frame.

    Attributes
    ----------
    path : pathlib.Path
    name : str
        Report name: the file name without ``.fits``.
    product : str
        ``bfi``, ``nfi``, ``nfi-v/i`` or ``sp-level2``.
    observable : {"continuum", "magnetogram"}
    time : astropy.time.Time
        Observation time (``DATE_OBS``, UTC).
    center : tuple of float
        Helioprojective (Tx, Ty) of the field centre, arcsec.
    fov : tuple of float
        Field of view (width, height), arcsec.
    """

    path: Path
    name: str
    product: str
    observable: str
    time: Time
    center: tuple[float, float]
    fov: tuple[float, float]

    def as_dict(self) -> dict[str, Any]:
        """Plain values for the report JSON."""
        return {
            "file": self.path.name,
            "product": self.product,
            "observable": self.observable,
            "time_utc": self.time.utc.isot,
            "center_arcsec": [round(v, 3) for v in self.center],
            "fov_arcsec": [round(v, 3) for v in self.fov],
        }


@dataclasses.dataclass(frozen=True)
class CotemporalFrame:
    """The HMI file chosen for a target and how far in time it is from it."""

    path: Path
    series: str
    t_rec: str
    t_obs: Time
    time_difference: u.Quantity


def target_name(path: str | os.PathLike[str]) -> str:
    """Report name of a Hinode file: its name without ``.fits`` (or ``.fits.gz``)."""
    return Path(path).name.split(".fits")[0]


def expand_targets(patterns: Sequence[str], *, base: str | os.PathLike[str] = ".") -> list[Path]:
    """The Hinode files named by ``patterns`` (paths or globs, relative to ``base``).

    Raises
    ------
    ConfigError
        A pattern matches no file, or two files would get the same report
        name.
    """
    files: list[Path] = []
    for pattern in patterns:
        text = str(pattern)
        full = text if Path(text).is_absolute() else str(Path(base) / text)
        found = sorted(Path(p) for p in glob.glob(full)) if glob.has_magic(text) else [Path(full)]
        found = [p for p in found if p.is_file()]
        if not found:
            raise ConfigError(
                f"config validation.hinode entry {text!r} matches no file "
                "(paths and globs are relative to the working directory)"
            )
        files += [p for p in found if p not in files]
    names: dict[str, Path] = {}
    for path in files:
        name = target_name(path)
        if name in names:
            raise ConfigError(
                f"config validation.hinode: {names[name]} and {path} have the same report "
                f"name {name!r}; rename one of them"
            )
        names[name] = path
    return files


def read_target(path: str | os.PathLike[str]) -> HinodeTarget:
    """Observation time, observable and field of view of a Hinode SOT file.

    The field centre and size come from the header's WCS (``CRVAL``,
    ``CRPIX``, ``CDELT`` and the image size; ``XCEN``/``YCEN`` when present,
    as SOT level-1 files carry them).

    Raises
    ------
    InputError
        Not a Hinode SOT file, or no ``DATE_OBS``.
    """
    path = Path(path)
    image = read_hinode(path)
    if not image.date_obs:
        raise InputError(f"{path.name} has no DATE_OBS; its time is needed to find its HMI frame")
    try:
        when = Time(str(image.date_obs), scale="utc")
    except ValueError as exc:
        raise InputError(f"{path.name}: DATE_OBS {image.date_obs!r} is not a time") from exc
    header = image.header
    ny, nx = image.data.shape
    scale = float(image.pixel_scale.to_value(u.arcsec))
    center = []
    for axis, size, key in ((1, nx, "XCEN"), (2, ny, "YCEN")):
        if key in header:
            center.append(float(header[key]))
        else:
            crpix = float(header.get(f"CRPIX{axis}", (size + 1) / 2))
            crval = float(header.get(f"CRVAL{axis}", 0.0))
            center.append(crval + ((size + 1) / 2 - crpix) * scale)
    observable = "magnetogram" if image.product in _MAGNETOGRAM_PRODUCTS else "continuum"
    return HinodeTarget(
        path=path,
        name=target_name(path),
        product=image.product,
        observable=observable,
        time=when,
        center=(center[0], center[1]),
        fov=(nx * scale, ny * scale),
    )


def _tai_iso(when: Time) -> str:
    return when.tai.strftime("%Y-%m-%dT%H:%M:%S")


def _row_time(row: dict[str, str]) -> Time | None:
    for key in ("T_OBS", "t_rec"):
        value = str(row.get(key, "")).strip()
        if value and value.upper() not in ("MISSING", "NAN"):
            try:
                return frame_time({"T_OBS" if key == "T_OBS" else "T_REC": value})
            except InputError:
                continue
    return None


def find_cotemporal_frame(
    target: HinodeTarget,
    *,
    server: str,
    out_dir: str | os.PathLike[str],
    series: str | None = None,
    max_difference: u.Quantity = MAX_TIME_DIFFERENCE,
    email: str | None = None,
    options: Any = None,
) -> CotemporalFrame | None:
    """The HMI frame whose ``T_OBS`` is nearest ``target.time``, fetched into ``out_dir``.

    Long for its documentation; the body is one search, one optional fetch and their
    checks.

    Parameters
    ----------
    target : HinodeTarget
    server : str
        The run's source: ``"jsoc"``, ``"kis"``, a base URL of a server
        speaking the JSOC protocol, or a local directory of HMI files.
    out_dir : path-like
        Where the acquisition writes its manifest and the fetched file.
    series : str, optional
        HMI series; default :data:`DEFAULT_SERIES` of the target's observable.
    max_difference : Quantity
        Largest accepted ``|T_OBS - DATE_OBS|``.
    email, options
        As :func:`enhance_hmi.acquire.acquire` takes them (a registered JSOC
        address; :class:`enhance_hmi.acquire.AcquireOptions`).

    Returns
    -------
    CotemporalFrame or None
        None when no record with data lies within ``max_difference``.

    Raises
    ------
    ConfigError
        Unknown series or one of another observable than the target.
    JsocError, OutputError
        The server failed, or ``out_dir`` cannot be written.
    """
    from enhance_hmi.acquire import acquire
    from enhance_hmi.acquire.manifest import NEEDS_EXPORT

    hmi = _target_series(target, series)
    limit = u.Quantity(max_difference, u.s)
    first, last = _search_window(target.time, limit, hmi.step.total_seconds())
    remote = not Path(server).is_dir()
    window: dict[str, Any] = {
        "series": hmi.name,
        "start": _tai_iso(first),
        "end": _tai_iso(last),
        "cadence": f"{int(hmi.step.total_seconds())}s" if remote else None,
        "out_dir": out_dir,
        "server": server,
        "email": email,
        "options": options,
    }
    manifest = acquire(**window, download=not remote)
    usable = ("verified",) if not remote else ("verified", *NEEDS_EXPORT)
    candidate = _nearest_record(manifest.rows(usable), target.time)
    if candidate is None:
        log.info("%s: no %s record between %s and %s", target.name, hmi.name, first, last)
        return None
    difference, nearest, when = candidate
    if difference > limit:
        log.info("%s: nearest %s record is %s away", target.name, hmi.name, difference)
        return None
    t_rec = nearest["t_rec"]
    row: dict[str, str] | None = nearest
    if nearest["state"] != "verified":
        manifest = acquire(**{**window, "start": t_rec, "end": t_rec}, download=True)
        row = manifest.get(t_rec)
    if row is None or row["state"] != "verified" or not row.get("file"):
        raise ReportError(
            f"{hmi.name} record {t_rec} for {target.name} was found but could not be fetched "
            f"({row['state'] if row else 'no row'}); see the manifest in {out_dir}"
        )
    return CotemporalFrame(
        path=Path(out_dir) / row["file"],
        series=hmi.name,
        t_rec=t_rec,
        t_obs=when,
        time_difference=(when - target.time).to(u.s),
    )


def _target_series(target: HinodeTarget, series: str | None) -> HmiSeries:
    """The HMI series to search for ``target``: ``series`` or the observable's default."""
    from enhance_hmi.acquire import get_series

    hmi = get_series(series or DEFAULT_SERIES[target.observable])
    if hmi.observable != target.observable:
        raise ConfigError(
            f"{target.path.name} is a {target.observable} target but {hmi.name} holds "
            f"{hmi.observable} frames; give a {target.observable} series"
        )
    return hmi


def _nearest_record(
    rows: Iterable[dict[str, str]], when: Time
) -> tuple[u.Quantity, dict[str, str], Time] | None:
    """``(|time difference|, row, its time)`` of the row nearest ``when``; None without one."""
    candidates = []
    for row in rows:
        row_time = _row_time(row)
        if row_time is not None:
            candidates.append((abs((row_time - when).to(u.s)), row, row_time))
    if not candidates:
        return None
    return min(candidates, key=lambda c: c[0].value)


def _search_window(when: Time, limit: u.Quantity, step: float) -> tuple[Time, Time]:
    """First and last HMI grid time (TAI, ``step`` seconds) within ``limit`` of ``when``.

    The window is in whole grid steps around the Hinode time, both ends included.
    """
    epoch = Time("1993-01-01T00:00:00", scale="tai")
    offset = float((when.tai - epoch).to_value(u.s))
    first = epoch + (np.floor((offset - limit.value) / step) * step) * u.s
    last = epoch + (np.ceil((offset + limit.value) / step) * step) * u.s
    return first, last


_NO_FRAME_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:sans-serif;max-width:60em;margin:2em auto}}
td,th{{padding:.2em .8em;text-align:left}}</style></head>
<body><h1>{title}</h1>
<p><strong>{status}</strong>: {reason}</p>
<table>{rows}</table>
<p>Data: <a href="metrics.json">metrics.json</a></p>
</body></html>
"""


def _write_entry(out: Path, doc: dict[str, Any]) -> None:
    rows = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>"
        for k, v in doc["hinode"].items()
    )
    page = _NO_FRAME_PAGE.format(
        title=html.escape(f"Hinode target {doc['target']}"),
        status=html.escape(doc["status"]),
        reason=html.escape(doc["reason"]),
        rows=rows,
    )
    from enhance_hmi.validation.report.figures import new_figure, save_png

    for figure in ("images.png", "spectra.png"):  # the entry's place in the figure lists
        fig = new_figure(8.0, 2.0)
        ax = fig.add_subplot()
        ax.text(0.5, 0.6, f"Hinode target {doc['target']}: {doc['status']}", ha="center")
        ax.text(0.5, 0.3, doc["reason"], ha="center", fontsize=8, wrap=True)
        ax.set_axis_off()
        save_png(fig, out / figure, dpi=80)
    with atomic_path(out / "metrics.json") as tmp:
        tmp.write_text(json.dumps(doc, indent=1) + "\n")
    with atomic_path(out / "report.html") as tmp:
        tmp.write_text(page)


def _no_frame_entry(
    target: HinodeTarget,
    out: Path,
    *,
    server: str,
    series: str,
    limit: u.Quantity,
    strict: bool,
) -> dict[str, Any]:
    """Write and return the report entry of a target without an HMI frame (see ``strict``)."""
    reason = (
        f"no {series} frame with data within {limit.to(u.min):.1f} of the Hinode "
        f"observation at {target.time.utc.isot} UTC in {server}"
    )
    doc = {
        "target": target.name,
        "kind": "hinode",
        "observable": target.observable,
        "status": NO_FRAME,
        "reason": reason,
        "strict": bool(strict),
        "hinode": target.as_dict(),
        "series": series,
        "max_time_difference_s": float(limit.value),
        "provenance": provenance_record(
            kind="Hinode target",
            hinode_file=target.path.name,
            hinode_sha256=sha256_file(target.path),
        ),
    }
    _write_entry(out, doc)
    log.warning("%s: %s", target.name, reason)
    if strict:
        raise ReportError(f"{target.path.name}: {reason} (validation.strict is set)")
    return doc


def _enhance_found(
    target: HinodeTarget,
    found: CotemporalFrame,
    out: Path,
    *,
    weights: str | os.PathLike[str] | None,
    device: str,
    tile: int,
    symmetries: int,
) -> Path:
    """Enhance the HMI frame found for ``target`` into ``out/enhanced``; the written path."""
    from enhance_hmi.pipeline import enhance_file

    enhanced = out / "enhanced" / (found.path.name.removesuffix(".fits") + ".enhanced.fits")
    enhanced.parent.mkdir(parents=True, exist_ok=True)
    try:
        enhance_file(
            found.path,
            enhanced,
            observable=target.observable,
            weights=weights,
            device=device,
            tile=tile,
            symmetries=symmetries,
        )
    except EnhanceError as exc:
        raise type(exc)(f"{target.name}: enhancing {found.path.name}: {exc}") from exc
    return enhanced


def run_hinode_target(
    path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    server: str,
    series: str | None = None,
    max_difference: u.Quantity = MAX_TIME_DIFFERENCE,
    weights: str | os.PathLike[str] | None = None,
    device: str = "auto",
    tile: int = 256,
    strict: bool = False,
    email: str | None = None,
    options: Any = None,
    symmetries: int = 1,
) -> dict[str, Any]:
    """Validate the run's network on one Hinode file; write its report in ``out_dir``.

    Steps: :func:`read_target`, :func:`find_cotemporal_frame` (into
    ``out_dir/hmi``), :func:`enhance_hmi.pipeline.enhance_file` (into
    ``out_dir/enhanced``, the network averaged over ``symmetries`` symmetries
    as ``enhance predict --symmetries`` does; the enhanced file's header
    records it as ``ENHSYMM``), :func:`enhance_hmi.validation.target.target_case` and
    :func:`enhance_hmi.validation.report.write_report` (``report.html``,
    ``metrics.json``, ``images.png``, ``spectra.png``).

    Returns
    -------
    dict
        ``metrics.json`` as written, with ``"target"`` (the name), ``"hinode"``
        (:meth:`HinodeTarget.as_dict`) and ``"status"``: ``"validated"`` or
        :data:`NO_FRAME` (then also ``"reason"``; ``report.html`` says why, and
        ``images.png`` and ``spectra.png`` hold that sentence instead of images).

    Raises
    ------
    ReportError
        ``strict`` and no HMI frame within ``max_difference`` (the entry is
        written first), or the co-alignment failed.
    ConfigError
        ``symmetries`` is not one of 1, 2, 4, 8 (before anything is fetched).
    EnhanceError
        Acquisition, enhancement or input errors, one sentence each.
    """
    from enhance_hmi.validation.report import write_report
    from enhance_hmi.validation.target import target_case

    check_symmetries(symmetries)  # before the HMI frame is fetched
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    target = read_target(path)
    limit = u.Quantity(max_difference, u.s)
    found = find_cotemporal_frame(
        target,
        server=server,
        out_dir=out / "hmi",
        series=series,
        max_difference=limit,
        email=email,
        options=options,
    )
    wanted = series or DEFAULT_SERIES[target.observable]
    if found is None:
        return _no_frame_entry(
            target, out, server=server, series=wanted, limit=limit, strict=strict
        )
    enhanced = _enhance_found(
        target, found, out, weights=weights, device=device, tile=tile, symmetries=symmetries
    )
    case = target_case(
        target.path,
        [enhanced],
        hmi_paths=[found.path],
        max_time_difference=limit,
        name=target.name,
    )
    case.context.update(
        {
            "hmi_series": found.series,
            "hmi_t_rec": found.t_rec,
            "hinode_center_arcsec": list(target.center),
            "hinode_fov_arcsec": list(target.fov),
            "symmetries": symmetries,
        }
    )
    write_report(case, out)
    doc = json.loads((out / "metrics.json").read_text())
    doc["status"] = "validated"
    doc["hinode"] = target.as_dict()
    with atomic_path(out / "metrics.json") as tmp:
        tmp.write_text(json.dumps(doc, indent=1) + "\n")
    return doc
