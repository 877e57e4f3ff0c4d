"""The HTML page of a validation report, rendered from its JSON document.

The page is the Jinja2 template ``templates/report.html.j2`` (autoescaped)
filled from the report's metrics document; this module only turns numbers
into the strings the table shows and marks the best value of each column.

The figures are embedded in the page as ``data:image/png;base64`` URIs, so
the page is self-contained: it shows its figures wherever it is opened. A
page that linked its PNGs by relative name would show broken images inside
``snakemake --report``, which puts each result in the report on its own (a
``data:`` URI in an ``.html`` report, a file under its own hashed folder in
a ``.zip`` one) and shows an HTML result in an iframe; nothing lies beside
the page there, and a figure written only when the weights have an
uncertainty head (``uncertainty.png``) cannot even be a declared output of
the rule. Registering each figure as a report item of its own (they are:
``images.png``, ``spectra.png``) gives no link the page could use. The
price is a page about 1.35 times the size of its PNGs.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any

import jinja2

from enhance_hmi.errors import ReportError
from enhance_hmi.validation.report.case import BOUNDS, FILES, METHOD_LABELS, METHODS

__all__ = ["COLUMNS", "png_data_uri", "render_html"]

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

#: First bytes of every PNG file (ISO/IEC 15948, Sect. 5.2).
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

_ENVIRONMENT = jinja2.Environment(
    loader=jinja2.PackageLoader("enhance_hmi.validation.report", "templates"),
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
    is marked, highest or lowest according to the metric.
    """
    columns = COLUMNS[doc["observable"]]
    table = doc["methods"]
    rows: list[dict[str, Any]] = []
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


def png_data_uri(png: bytes) -> str:
    """A ``data:image/png;base64,...`` URI holding the PNG file ``png``.

    Raises
    ------
    ReportError
        ``png`` does not start with the PNG signature.
    """
    if not png.startswith(_PNG_SIGNATURE):
        raise ReportError("a report figure must be a PNG file; got bytes without its signature")
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def render_html(doc: Mapping[str, Any], *, figures: Mapping[str, bytes]) -> str:
    """The report page for the metrics document ``doc`` (with ``provenance``).

    Parameters
    ----------
    doc : mapping
        The JSON document of :func:`enhance_hmi.validation.report.score.evaluate`
        plus a ``provenance`` mapping.
    figures : mapping of str to bytes
        The PNG files embedded in the page, by name: ``images``,
        ``spectra`` and, when ``doc`` has an ``uncertainty`` section,
        ``uncertainty``. A figure left out leaves its section without an
        image.

    Returns
    -------
    str
        A complete, self-contained HTML5 document; every value from ``doc``
        is escaped, every figure embedded (:func:`png_data_uri`).
    """
    return _ENVIRONMENT.get_template("report.html.j2").render(
        title=f"Enhance validation: {doc['target']} ({doc['observable']})",
        doc=doc,
        files=FILES,
        figures={name: png_data_uri(png) for name, png in figures.items()},
        table=_metrics_table(doc),
        hmi_rows=_kv_rows(doc["hmi_input"]),
        summary_rows=_kv_rows(doc["summary"]),
        alignment_rows=_kv_rows(doc.get("alignment")),
        context_rows=_kv_rows(doc.get("context")),
        provenance_rows=_kv_rows(doc.get("provenance")),
    )
