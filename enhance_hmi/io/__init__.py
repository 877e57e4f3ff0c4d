"""FITS input/output of HMI frames.

Reading, north-up rotation, quiet-Sun normalisation, the 2x output WCS and
writing enhanced frames with provenance.

Public API
----------
read_hmi
    FITS file -> :class:`enhance_hmi.frame.Frame` (north up, float32, continuum in
    quiet-Sun units, Blos in gauss).
upsample_header
    Header of the 2x (or ``factor``) finer grid over the same field of view.
write_enhanced
    Atomic FITS output with provenance keywords and HISTORY.
rotate_north_up, infer_observable, normalise_continuum, quiet_sun_level, fit_limb_darkening, disk_mu
    The pieces, for callers that need them separately.

This package never imports torch or drms.

References
----------
.. [1] Díaz Baso, C. J. & Asensio Ramos, A. (2018), "Enhancing SDO/HMI images
   using deep learning", A&A 614, A5.
"""

import importlib
from typing import Any

#: Where each public name lives; imported on first use (PEP 562), so that a
#: light module of this package (say :mod:`enhance_hmi.io.header_limits`, which
#: ``enhance predict`` uses before anything heavy) does not load them all.
_HOMES = {
    "NORMALIZE_CHOICES": "enhance_hmi.io.reader",
    "disk_mu": "enhance_hmi.io.normalise",
    "fit_limb_darkening": "enhance_hmi.io.normalise",
    "infer_observable": "enhance_hmi.io.reader",
    "normalise_continuum": "enhance_hmi.io.normalise",
    "quiet_sun_level": "enhance_hmi.io.normalise",
    "read_hmi": "enhance_hmi.io.reader",
    "rotate_north_up": "enhance_hmi.io.wcs",
    "upsample_header": "enhance_hmi.io.wcs",
    "write_enhanced": "enhance_hmi.io.writer",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_HOMES[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_HOMES})
