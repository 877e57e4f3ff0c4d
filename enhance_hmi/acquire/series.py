"""The HMI data series ``enhance`` acquires, with their segment and cadence.

References
----------
.. [1] Schou, J. et al. (2012), "Design and ground calibration of the
   Helioseismic and Magnetic Imager (HMI) instrument on the Solar Dynamics
   Observatory (SDO)", Sol. Phys. 275, 229: 45 s and 720 s observables.
.. [2] Couvidat, S. et al. (2016), "Observables processing for the
   Helioseismic and Magnetic Imager instrument on the Solar Dynamics
   Observatory", Sol. Phys. 291, 1887: level-1.5 series and their T_REC grid.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

from enhance_hmi.errors import ConfigError
from enhance_hmi.time import grid_offset

__all__ = ["HmiSeries", "SERIES", "get_series"]


@dataclasses.dataclass(frozen=True)
class HmiSeries:
    """One JSOC series: name, image segment, native step and observable."""

    name: str
    segment: str
    step: dt.timedelta
    observable: str
    content: str  # value of the CONTENT keyword in the series' FITS files

    def on_grid(self, when: dt.datetime) -> bool:
        """True when ``when`` (TAI) is a ``T_REC`` slot of this series [2]_."""
        return grid_offset(when, self.step) == dt.timedelta(0)


_45S = dt.timedelta(seconds=45)
_720S = dt.timedelta(seconds=720)

#: Supported series, keyed by their JSOC name [1]_, [2]_.
SERIES: dict[str, HmiSeries] = {
    s.name: s
    for s in (
        HmiSeries("hmi.Ic_45s", "continuum", _45S, "continuum", "CONTINUUM INTENSITY"),
        HmiSeries("hmi.M_45s", "magnetogram", _45S, "magnetogram", "MAGNETOGRAM"),
        HmiSeries("hmi.Ic_720s", "continuum", _720S, "continuum", "CONTINUUM INTENSITY"),
        HmiSeries("hmi.M_720s", "magnetogram", _720S, "magnetogram", "MAGNETOGRAM"),
        HmiSeries("hmi.Ic_noLimbDark_720s", "continuum", _720S, "continuum", "CONTINUUM INTENSITY"),
    )
}


def get_series(name: str) -> HmiSeries:
    """Return the :class:`HmiSeries` called ``name`` (case-insensitive).

    Raises
    ------
    ConfigError
        If the series is not one ``enhance`` supports.
    """
    for key, series in SERIES.items():
        if key.lower() == str(name).strip().lower():
            return series
    raise ConfigError(f"unknown series {name!r}; choose one of {', '.join(SERIES)}")
