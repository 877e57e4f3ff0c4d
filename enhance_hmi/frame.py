"""The :class:`Frame` type that crosses module borders."""

from __future__ import annotations

import dataclasses
from typing import Literal

import numpy as np
from astropy.io import fits

__all__ = ["Frame", "Observable", "OBSERVABLES"]

Observable = Literal["continuum", "magnetogram"]
#: The observables a network exists for.
OBSERVABLES: tuple[str, ...] = ("continuum", "magnetogram")


@dataclasses.dataclass
class Frame:
    """One 2-D image with its header and what it shows.

    Attributes
    ----------
    data : numpy.ndarray
        2-D float32 image, solar north up once read through
        :func:`enhance_hmi.io.read_hmi`. Continuum in the units named by
        ``meta["units"]``; magnetogram (Blos) in gauss. Off-disk pixels NaN.
    header : astropy.io.fits.Header
        FITS header consistent with ``data`` (WCS included when known).
    observable : {"continuum", "magnetogram"}
        What the image shows.
    meta : dict
        Source metadata: ``t_rec``, ``quality``, ``input_file``,
        ``input_sha256``, normalisation details, ...
    """

    data: np.ndarray
    header: fits.Header
    observable: str
    meta: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.observable not in OBSERVABLES:
            from enhance_hmi.errors import InputError

            raise InputError(
                f"unknown observable {self.observable!r}; use one of {', '.join(OBSERVABLES)}"
            )
