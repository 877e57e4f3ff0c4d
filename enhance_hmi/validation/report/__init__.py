"""Validation report of one target: figures, metrics table, provenance, JSON.

One concern per module:

* :mod:`~enhance_hmi.validation.report.case`: the data model
  (:class:`ValidationCase`, :class:`Evaluation`, the methods compared);
* :mod:`~enhance_hmi.validation.report.score`: :func:`evaluate`, the one scorer
  (baselines and metrics against the truth);
* :mod:`~enhance_hmi.validation.report.figures`: ``images.png`` (HMI bicubic,
  Enhance, truth and Tikhonov on one grey scale, full field and a central
  zoom) and ``spectra.png`` (azimuthally averaged power spectra per unit
  solar area, the HMI input among them, the paper's band shaded),
  matplotlib ``Figure`` on the Agg canvas;
* :mod:`~enhance_hmi.validation.report.page`: ``report.html`` from a Jinja2
  template, self-contained (the PNGs embedded as ``data:`` URIs), with a
  relative link to ``metrics.json``;
* :mod:`~enhance_hmi.validation.report.writer`: :func:`write_report`, every file
  atomically and the page last.

References
----------
.. [1] Díaz Baso, C. J. & Asensio Ramos, A. (2018), "Enhancing SDO/HMI images
   using deep learning", A&A 614, A5, Sect. 4.
"""

from enhance_hmi.validation.report.case import (
    ARCSEC_KM,
    BOUNDS,
    FILES,
    METHOD_LABELS,
    METHODS,
    TRUTH_SCALE,
    Evaluation,
    ValidationCase,
)
from enhance_hmi.validation.report.page import png_data_uri, render_html
from enhance_hmi.validation.report.score import RL_ITERATIONS, evaluate
from enhance_hmi.validation.report.writer import write_report

__all__ = [
    "ARCSEC_KM",
    "BOUNDS",
    "FILES",
    "METHODS",
    "METHOD_LABELS",
    "RL_ITERATIONS",
    "TRUTH_SCALE",
    "Evaluation",
    "ValidationCase",
    "evaluate",
    "png_data_uri",
    "render_html",
    "write_report",
]
