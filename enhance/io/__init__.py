"""FITS input/output of HMI frames: reading, north-up rotation, quiet-Sun
normalisation, the 2x output WCS and writing enhanced frames with provenance.

Public API
----------
read_hmi
    FITS file -> :class:`enhance.frame.Frame` (north up, float32, continuum in
    quiet-Sun units, Blos in gauss).
upsample_header
    Header of the 2x (or ``factor``) finer grid over the same field of view.
write_enhanced
    Atomic FITS output with provenance keywords and HISTORY.
rotate_north_up, infer_observable, normalise_continuum, quiet_sun_level,
fit_limb_darkening, disk_mu
    The pieces, for callers that need them separately.

This package never imports torch or drms.

References
----------
.. [1] Díaz Baso, C. J. & Asensio Ramos, A. (2018), "Enhancing SDO/HMI images
   using deep learning", A&A 614, A5.
"""

from enhance.io.normalise import disk_mu, fit_limb_darkening, normalise_continuum, quiet_sun_level
from enhance.io.reader import NORMALIZE_CHOICES, infer_observable, read_hmi
from enhance.io.wcs import rotate_north_up, upsample_header
from enhance.io.writer import write_enhanced

__all__ = [
    "NORMALIZE_CHOICES",
    "disk_mu",
    "fit_limb_darkening",
    "infer_observable",
    "normalise_continuum",
    "quiet_sun_level",
    "read_hmi",
    "rotate_north_up",
    "upsample_header",
    "write_enhanced",
]
