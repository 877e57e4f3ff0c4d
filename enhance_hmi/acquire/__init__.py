"""Acquisition of SDO/HMI frames from JSOC (through ``drms``) or a local archive.

The public entry point is :func:`acquire`; it writes, per series, a manifest
(``<series>.manifest.csv``, one row per expected ``T_REC`` slot) and a gap
report next to the verified FITS files. This package never imports torch.

References
----------
.. [1] Díaz Baso, C. J. & Asensio Ramos, A. (2018), A&A 614, A5: the HMI
   continuum and magnetogram frames the network enhances.
.. [2] Glogowski, K. et al. (2019), "drms: A Python package for accessing HMI
   and AIA data", JOSS 4, 1614.
"""

from __future__ import annotations

from enhance_hmi.acquire.addresses import mask_email
from enhance_hmi.acquire.fetch import EMAIL_ENV, acquire
from enhance_hmi.acquire.gaps import GapReport, gap_report
from enhance_hmi.acquire.jsoc import JsocOptions, JsocSource, server_config
from enhance_hmi.acquire.local import sample_dir, scan_archive
from enhance_hmi.acquire.manifest import (
    COLUMNS,
    KEYWORDS,
    STATES,
    Manifest,
    manifest_path,
    read_manifest,
)
from enhance_hmi.acquire.options import AcquireOptions, acquire_options
from enhance_hmi.acquire.quality import QUALITY_BITS, QualityPolicy, decode_quality, parse_quality
from enhance_hmi.acquire.series import SERIES, HmiSeries, get_series
from enhance_hmi.acquire.status import AcquisitionStatus, read_status, status_path
from enhance_hmi.acquire.timespec import expected_slots, parse_cadence
from enhance_hmi.acquire.verify import VerificationError, verify_fits

__all__ = [
    "acquire",
    "AcquireOptions",
    "acquire_options",
    "JsocOptions",
    "JsocSource",
    "EMAIL_ENV",
    "Manifest",
    "manifest_path",
    "read_manifest",
    "COLUMNS",
    "KEYWORDS",
    "STATES",
    "GapReport",
    "AcquisitionStatus",
    "read_status",
    "status_path",
    "gap_report",
    "QUALITY_BITS",
    "QualityPolicy",
    "decode_quality",
    "parse_quality",
    "SERIES",
    "HmiSeries",
    "get_series",
    "parse_cadence",
    "expected_slots",
    "sample_dir",
    "scan_archive",
    "server_config",
    "mask_email",
    "VerificationError",
    "verify_fits",
]
