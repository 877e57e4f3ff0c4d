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
   1993.01.01_00:00:00_TAI.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re

from enhance.errors import ConfigError, InputError

__all__ = ["CubeLayout", "LAYOUTS", "T_REC_EPOCH", "parse_t_rec", "format_t_rec"]

#: Accepted layout names.
LAYOUTS: tuple[str, ...] = ("day", "frames")
#: Origin of the HMI ``T_REC`` slot grid (TAI) [1]_.
T_REC_EPOCH = dt.datetime(1993, 1, 1)

_T_REC = re.compile(
    r"^\s*(\d{4})[.\-](\d{2})[.\-](\d{2})[_T ](\d{2}):(\d{2}):(\d{2})(\.\d+)?(?:_?TAI)?\s*$"
)


def parse_t_rec(value: str) -> dt.datetime:
    """Parse ``YYYY.MM.DD_hh:mm:ss[.fff]_TAI`` (or ISO) into a naive TAI datetime.

    Raises
    ------
    InputError
        If ``value`` is not such a time.
    """
    match = _T_REC.match(str(value))
    if match is None:
        raise InputError(f"T_REC {value!r} is not a time like 2014.01.01_00:00:00_TAI")
    year, month, day, hour, minute, second, frac = match.groups()
    when = dt.datetime(int(year), int(month), int(day), int(hour), int(minute), int(second))
    if frac:
        when += dt.timedelta(seconds=round(float(frac)))
    return when


def format_t_rec(when: dt.datetime) -> str:
    """``YYYY.MM.DD_hh:mm:ss_TAI``, the key frames are stored under."""
    return when.strftime("%Y.%m.%d_%H:%M:%S_TAI")


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
        """Name of the cube (without suffix) holding the frame at ``t_rec``."""
        when = t_rec if isinstance(t_rec, dt.datetime) else parse_t_rec(t_rec)
        if self.period == "day":
            return when.strftime("%Y%m%d")
        window = self.step * self.frames
        start = T_REC_EPOCH + window * ((when - T_REC_EPOCH) // window)
        return start.strftime("%Y%m%d_%H%M%S")
