"""The HTML page of a validation report, rendered from its JSON document.

The page is the Jinja2 template ``templates/report.html.j2`` (autoescaped)
filled from the report's metrics document; this module only turns numbers
into the strings the table shows and marks the best value of each column.
Figures are linked by relative names, so the page opens from disk in any
browser.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import jinja2

from enhance.validation.report.case import BOUNDS, FILES, METHOD_LABELS, METHODS

__all__ = ["COLUMNS", "render_html"]

#: Table columns per observable: (metrics key, header, format). The format
#: "pct" shows a fraction in per cent with two decimals.
COLUMNS: dict[str, list[tuple[str, str, str]]] = {
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
#: Columns where the highest value is best, and where the lowest is.
_BEST_HIGH = frozenset({"psnr", "ssim", "pearson"})
_BEST_LOW = frozenset({"spectrum_distance", "forward_residual"})

_ENVIRONMENT = jinja2.Environment(
    loader=jinja2.PackageLoader("enhance.validation.report", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
)


def _fmt(value: Any, fmt: str) -> str:
    """One table cell: en dash for a missing value, yes/no for booleans."""
    if value is None:
        return "\N{EN DASH}"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if fmt == "pct":
        return f"{100 * float(value):.2f}"
    return fmt.format(value)


def _kv_rows(rows: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    """(key, text) pairs of a two-column table; containers as JSON, floats to 6 digits."""
    out = []
    for key, value in (rows or {}).items():
        if isinstance(value, (dict, list)):
            text = json.dumps(value, default=str)
        elif isinstance(value, float):
            text = f"{value:.6g}"
        else:
            text = str(value)
        out.append((str(key), text))
    return out


def _metrics_table(doc: Mapping[str, Any]) -> dict[str, Any]:
    """Header and rows of the metrics table: the methods, the bounds, then the truth.

    The best value of each column among :data:`METHODS` (bounds excluded)
    is flagged, highest or lowest according to the metric.
    """
    columns = COLUMNS[doc["observable"]]
    table = doc["methods"]
    rows = []
    for method in (*METHODS, *BOUNDS):
        cells = []
        for key, _, fmt in columns:
            value = table[method].get(key)
            vals = [table[m].get(key) for m in METHODS if table[m].get(key) is not None]
            best = (
                method in METHODS
                and value is not None
                and (
                    (key in _BEST_HIGH and value == max(vals))
                    or (key in _BEST_LOW and value == min(vals))
                )
            )
            cells.append({"text": _fmt(value, fmt), "best": best})
        rows.append({"method": method, "label": METHOD_LABELS[method], "cells": cells})
    truth = doc["truth_stats"]
    rows.append(
        {
            "method": None,
            "label": doc["truth"],
            "cells": [
                {
                    "text": _fmt({"unsigned_flux_ratio": 1.0}.get(key, truth.get(key)), fmt),
                    "best": False,
                }
                for key, _, fmt in columns
            ],
        }
    )
    return {"header": [label for _, label, _ in columns], "rows": rows}


def render_html(doc: Mapping[str, Any]) -> str:
    """The report page for the metrics document ``doc`` (with ``provenance``).

    Parameters
    ----------
    doc : mapping
        The JSON document of :func:`enhance.validation.report.score.evaluate`
        plus a ``provenance`` mapping.

    Returns
    -------
    str
        A complete HTML5 document; every value from ``doc`` is escaped.
    """
    return _ENVIRONMENT.get_template("report.html.j2").render(
        title=f"Enhance validation: {doc['target']} ({doc['observable']})",
        doc=doc,
        files=FILES,
        table=_metrics_table(doc),
        hmi_rows=_kv_rows(doc["hmi_input"]),
        summary_rows=_kv_rows(doc["summary"]),
        alignment_rows=_kv_rows(doc.get("alignment")),
        context_rows=_kv_rows(doc.get("context")),
        provenance_rows=_kv_rows(doc.get("provenance")),
    )
