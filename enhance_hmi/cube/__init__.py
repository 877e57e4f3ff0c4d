"""HDF5 time cubes of enhanced HMI frames: one file per observable per period.

:class:`TimeCube` appends frames atomically and idempotently, writing only
the new frames (segment files stitched by an atomically replaced index), and
reads them back as sunpy Maps; :class:`Codec` chooses the HDF5 filter and an optional
quantisation below the noise; :class:`CubeLayout` names the cube a frame
belongs to; :func:`read_enhanced` reads a per-frame product of
:func:`enhance_hmi.io.write_enhanced`. This package never imports torch or drms.

References
----------
.. [1] Díaz Baso, C. J. & Asensio Ramos, A. (2018), "Enhancing SDO/HMI images
   using deep learning", A&A 614, A5.
"""

from enhance_hmi.cube.codec import COMPRESSIONS, Codec, quantize
from enhance_hmi.cube.layout import LAYOUTS, CubeLayout
from enhance_hmi.cube.plan import (
    PlannedFrame,
    batch_id,
    plan_batches,
    read_plan,
    write_plan,
)
from enhance_hmi.cube.source import (
    OUT_OF_TOLERANCE_CHOICES,
    CubeInput,
    out_of_tolerance_choice,
    read_enhanced,
)
from enhance_hmi.cube.store import FORMAT, FORMAT_VERSION, WCS_NUMERIC, WCS_TEXT, TimeCube
from enhance_hmi.time import format_t_rec, parse_t_rec

__all__ = [
    "COMPRESSIONS",
    "Codec",
    "CubeInput",
    "CubeLayout",
    "FORMAT",
    "FORMAT_VERSION",
    "LAYOUTS",
    "OUT_OF_TOLERANCE_CHOICES",
    "PlannedFrame",
    "TimeCube",
    "WCS_NUMERIC",
    "WCS_TEXT",
    "batch_id",
    "format_t_rec",
    "out_of_tolerance_choice",
    "parse_t_rec",
    "plan_batches",
    "quantize",
    "read_enhanced",
    "read_plan",
    "write_plan",
]
