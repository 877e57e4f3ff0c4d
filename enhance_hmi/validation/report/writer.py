"""Writing a validation report directory: figures, JSON, then the page.

Each file is written atomically (:func:`enhance_hmi.atomic.atomic_path`) and
``report.html`` last, so a complete page implies complete figures and JSON.
The page embeds the figures it shows (:mod:`enhance_hmi.validation.report.page`
says why), so it stays whole when copied alone or shown inside
``snakemake --report``; the PNGs are also written beside it.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from enhance_hmi.atomic import atomic_path
from enhance_hmi.errors import OutputError
from enhance_hmi.validation.calibration import uncertainty_figure, uncertainty_summary
from enhance_hmi.validation.report.case import FILES, ValidationCase
from enhance_hmi.validation.report.figures import images_figure, spectra_figure
from enhance_hmi.validation.report.page import render_html
from enhance_hmi.validation.report.score import RL_ITERATIONS, evaluate

__all__ = ["write_report"]

log = logging.getLogger(__name__)


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
        each atomically, the HTML last (with the figures embedded); with
        ``case.sigma`` also ``uncertainty.png`` (sigma map and calibration
        plot).
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
    images_figure(ev, case, out / FILES["images"])
    spectra_figure(ev, case, out / FILES["spectra"])
    if case.sigma is not None:  # the predicted sigma against the truth's actual error
        doc["uncertainty"] = uncertainty_summary(case.enhanced, case.truth, case.sigma)
        doc["figures"]["uncertainty"] = FILES["uncertainty"]
        units = "G" if case.observable == "magnetogram" else "quiet-Sun units"
        uncertainty_figure(
            case.enhanced, case.truth, case.sigma, out / FILES["uncertainty"], units=units
        )
    with atomic_path(out / FILES["metrics"]) as tmp:
        tmp.write_text(json.dumps(doc, indent=1, allow_nan=False, default=str) + "\n")
    # the page embeds the PNGs just written: the same bytes as the files beside it
    figures = {name: (out / FILES[name]).read_bytes() for name in doc["figures"]}
    with atomic_path(out / FILES["html"]) as tmp:
        tmp.write_text(render_html(doc, figures=figures), encoding="utf-8")
    log.info("wrote validation report %s", out / FILES["html"])
    return out / FILES["html"]
