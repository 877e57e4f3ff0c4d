"""Which cube a frame belongs to: one file per observable per period.

Two layouts: ``day`` (one cube per TAI day, named ``YYYYMMDD``) and
``frames`` (one cube per window of N consecutive ``T_REC`` slots, named by
the window's first slot ``YYYYMMDD_hhmmss``). Windows are fixed on the slot
grid, so a frame's cube never changes as the archive grows or gaps are
backfilled.

References
----------
.. [1] Couvidat, S. et al. (2016), "Observables processing for the
   Helioseismic and Magnetic Imager instrument on the Solar Dynamics
   Observatory", Sol. Phys. 291, 1887: the slotted ``T_REC`` grid with epoch
   1993.01.01_00:00:00_TAI (:data:`enhance_hmi.time.T_REC_EPOCH`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt

from enhance_hmi.errors import ConfigError
from enhance_hmi.time import grid_floor, tai_datetime

__all__ = ["CubeLayout", "LAYOUTS"]

#: Accepted layout names.
LAYOUTS: tuple[str, ...] = ("day", "frames")


@dataclasses.dataclass(frozen=True)
class CubeLayout:
    """How frames are split into cube files.

    Attributes
    ----------
    period : {"day", "frames"}
        One cube per TAI day, or per window of ``frames`` slots.
    frames : int
        Slots per cube for ``period="frames"``.
    step : datetime.timedelta
        Slot spacing (the cadence, or the series' native step when every
        frame found is processed) for ``period="frames"``.
    """

    period: str = "day"
    frames: int = 100
    step: dt.timedelta = dt.timedelta(seconds=720)

    def __post_init__(self) -> None:
        if self.period not in LAYOUTS:
            raise ConfigError(f"unknown cube period {self.period!r}; use one of {LAYOUTS}")
        if self.frames < 1:
            raise ConfigError(f"frames per cube must be at least 1, got {self.frames}")
        if self.step <= dt.timedelta(0):
            raise ConfigError(f"the slot step must be positive, got {self.step}")

    def period_of(self, t_rec: str | dt.datetime) -> str:
        """Name of the cube (without suffix) holding the frame at ``t_rec``.

        ``t_rec`` is a naive TAI datetime or a time :func:`enhance_hmi.time.tai_datetime`
        reads (``T_REC`` text, ISO, a date).

        Raises
        ------
        TimeFormatError
            If ``t_rec`` is not a time.
        """
        when = t_rec if isinstance(t_rec, dt.datetime) else tai_datetime(t_rec)
        if self.period == "day":
            return when.strftime("%Y%m%d")
        return grid_floor(when, self.step * self.frames).strftime("%Y%m%d_%H%M%S")
