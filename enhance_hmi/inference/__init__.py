"""Tiled inference of the Enhance network on CPU or GPU.

Public API
----------
enhance_array
    2-D array (physical units, NaN allowed) -> 2x array, tiled and blended.
enhance_array_with_sigma
    The same and the per-pixel sigma of the network's uncertainty head.
enhance_frame
    :class:`enhance_hmi.frame.Frame` -> enhanced Frame with the 2x WCS.
prepare_model
    The inference copy of a network (batch norms folded, cached per device).
cudnn_settings
    cuDNN's process-wide flags set for a ``with`` block and restored after it.
InferenceTimings
    Seconds per stage and windows computed, for benchmarks.
symmetry_group
    The symmetries of the forward model the network may be averaged over
    (``symmetries=`` of :func:`enhance_array`, :mod:`enhance_hmi.inference.symmetry`).
resolve_device, autocast_dtype, plan_windows
    The pieces.

This package never imports drms or h5py.

References
----------
.. [1] Díaz Baso, C. J. & Asensio Ramos, A. (2018), "Enhancing SDO/HMI images
   using deep learning", A&A 614, A5.
"""

from enhance_hmi.inference.array import (
    PRECISIONS,
    InferenceTimings,
    autocast_dtype,
    cudnn_settings,
    enhance_array,
    enhance_array_with_sigma,
    prepare_model,
    resolve_device,
)
from enhance_hmi.inference.frame import enhance_frame
from enhance_hmi.inference.symmetry import Symmetry, symmetry_group
from enhance_hmi.inference.tiling import plan_windows

__all__ = [
    "PRECISIONS",
    "InferenceTimings",
    "Symmetry",
    "autocast_dtype",
    "cudnn_settings",
    "enhance_array",
    "enhance_array_with_sigma",
    "enhance_frame",
    "plan_windows",
    "prepare_model",
    "resolve_device",
    "symmetry_group",
]
