"""enhance_hmi (enhance): deconvolution and 2x super-resolution of SDO/HMI images.

Implements the method of Díaz Baso & Asensio Ramos (2018), "Enhancing SDO/HMI
images using deep learning", A&A 614, A5 (arXiv:1706.02933), as a package
for archival reprocessing: physics (PSFs, degradation), the network, tiled
inference, FITS/HDF5 I/O, JSOC acquisition and validation.
"""

import importlib
from importlib.metadata import PackageNotFoundError, version

DISTRIBUTION = "enhance-hmi"
"""The name this package is installed under (``pip install enhance-hmi``)."""

try:
    # written at install time from git (setuptools_scm): the tag and the commits since it
    __version__ = version(DISTRIBUTION)
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__", "enhance_map"]


def __getattr__(name: str):
    """``enhance_hmi.enhance_map`` (:mod:`enhance_hmi.maps`), loaded on first use (torch)."""
    if name == "enhance_map":
        # on first use only: importing enhance_hmi (or its torch-free parts) stays light
        return importlib.import_module("enhance_hmi.maps").enhance_map
    raise AttributeError(f"module 'enhance_hmi' has no attribute {name!r}")
