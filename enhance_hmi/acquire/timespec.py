"""Cadences, slot grids and record-set strings in JSOC's conventions.

Times are naive TAI :class:`datetime.datetime` objects as
:func:`enhance_hmi.time.tai_datetime` returns them (the ``T_REC`` keyword of HMI
series is TAI); reading and writing times is :mod:`enhance_hmi.time`'s job. A
cadence is a positive multiple of the series' native step (45 s or 720 s).

References
----------
.. [1] Couvidat, S. et al. (2016), Sol. Phys. 291, 1887: the slotted T_REC grid
   (epoch 1993.01.01_00:00:00_TAI, steps of 45 s and 720 s).
.. [2] JSOC record-set syntax, ``series[start/duration@step]{segment}``
   (jsoc.stanford.edu/ajax/RecordSetHelp.html).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator

import astropy.units as u

from enhance_hmi.acquire.series import HmiSeries
from enhance_hmi.errors import ConfigError
from enhance_hmi.time import format_t_rec, grid_offset

__all__ = [
    "parse_cadence",
    "snap_up",
    "expected_slots",
    "iter_slots",
    "count_slots",
    "slot_windows",
    "record_set",
    "format_duration",
]

_CADENCE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|d)\s*$", re.IGNORECASE)
_UNIT_SECONDS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}


def parse_cadence(value: str | u.Quantity | dt.timedelta) -> dt.timedelta:
    """Parse a cadence such as ``"45s"``, ``"12m"``, ``"1h"`` or ``720 * u.s``.

    Raises
    ------
    ConfigError
        If the cadence is malformed, not positive or not a whole number of seconds.
    """
    if isinstance(value, dt.timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, u.Quantity):
        try:
            seconds = float(value.to_value(u.s))
        except u.UnitConversionError as exc:
            raise ConfigError(f"cadence {value} is not a time; use e.g. 12 min") from exc
    else:
        match = _CADENCE_RE.match(str(value))
        if match is None:
            raise ConfigError(
                f"malformed cadence {value!r}; write a number and a unit, e.g. 45s, 12m, 1h, 1d"
            )
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2).lower()]
    if seconds <= 0 or seconds != int(seconds):
        raise ConfigError(f"cadence {value!r} must be a positive whole number of seconds")
    return dt.timedelta(seconds=int(seconds))


def format_duration(delta: dt.timedelta) -> str:
    """Write a duration in JSOC's units with the largest exact unit (``1d``, ``12m``)."""
    seconds = int(delta.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def snap_up(when: dt.datetime, series: HmiSeries) -> dt.datetime:
    """The first ``T_REC`` slot of ``series`` at or after ``when`` [1]_."""
    offset = grid_offset(when, series.step)
    return when if offset == dt.timedelta(0) else when + (series.step - offset)


def _check_grid(
    series: HmiSeries, start: dt.datetime, end: dt.datetime, cadence: dt.timedelta
) -> dt.datetime:
    if end < start:
        raise ConfigError(f"end {end:%Y-%m-%dT%H:%M:%S} is before start {start:%Y-%m-%dT%H:%M:%S}")
    if cadence % series.step != dt.timedelta(0):
        raise ConfigError(
            f"cadence {format_duration(cadence)} is not a multiple of the "
            f"{int(series.step.total_seconds())} s step of {series.name}"
        )
    return snap_up(start, series)


def count_slots(
    series: HmiSeries, start: dt.datetime, end: dt.datetime, cadence: dt.timedelta
) -> int:
    """Number of slots :func:`iter_slots` yields, computed without listing them."""
    first = _check_grid(series, start, end, cadence)
    return 0 if first > end else (end - first) // cadence + 1


def iter_slots(
    series: HmiSeries, start: dt.datetime, end: dt.datetime, cadence: dt.timedelta
) -> Iterator[dt.datetime]:
    """Yield every slot ``start' + k * cadence <= end``, ``start'`` snapped onto the grid.

    A generator: a range of millions of slots costs no memory until consumed.

    Raises
    ------
    ConfigError
        If ``end`` is before ``start`` or the cadence is not a multiple of the
        series' native step (raised on the call, before the first slot).
    """
    first = _check_grid(series, start, end, cadence)

    def slots() -> Iterator[dt.datetime]:
        when = first
        while when <= end:
            yield when
            when += cadence

    return slots()


def expected_slots(
    series: HmiSeries, start: dt.datetime, end: dt.datetime, cadence: dt.timedelta
) -> list[dt.datetime]:
    """Every slot of :func:`iter_slots` as a list (for short ranges).

    Raises
    ------
    ConfigError
        If ``end`` is before ``start`` or the cadence is not a multiple of the
        series' native step.
    """
    return list(iter_slots(series, start, end, cadence))


def slot_windows(
    series: HmiSeries,
    start: dt.datetime,
    end: dt.datetime,
    cadence: dt.timedelta,
    size: int,
) -> Iterator[list[dt.datetime]]:
    """Yield the slots of :func:`iter_slots` in consecutive lists of at most ``size``.

    Raises
    ------
    ConfigError
        As :func:`iter_slots`, or if ``size`` is not positive.
    """
    if size < 1:
        raise ConfigError(f"a window needs at least one slot, got {size}")
    slots = iter_slots(series, start, end, cadence)

    def windows() -> Iterator[list[dt.datetime]]:
        window: list[dt.datetime] = []
        for when in slots:
            window.append(when)
            if len(window) == size:
                yield window
                window = []
        if window:
            yield window

    return windows()


def record_set(series: HmiSeries, first: dt.datetime, count: int, cadence: dt.timedelta) -> str:
    """The record set of ``count`` slots from ``first`` every ``cadence`` [2]_.

    JSOC intervals are half open, so the duration is ``count * cadence``.
    """
    duration = format_duration(cadence * count)
    return (
        f"{series.name}[{format_t_rec(first)}/{duration}@{format_duration(cadence)}]"
        f"{{{series.segment}}}"
    )
