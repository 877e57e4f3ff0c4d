"""Times, cadences and record-set strings in JSOC's conventions.

All times are TAI, like the ``T_REC`` keyword of HMI series; they are handled
as naive :class:`datetime.datetime` objects. A cadence is a positive multiple
of the series' native step (45 s or 720 s).

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

from enhance.acquire.series import T_REC_EPOCH, HmiSeries
from enhance.errors import ConfigError

__all__ = [
    "parse_time",
    "parse_cadence",
    "format_t_rec",
    "parse_t_rec",
    "file_time",
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
_T_REC_RE = re.compile(
    r"(\d{4})[.\-](\d{2})[.\-](\d{2})"
    r"(?:[_T ](\d{2}):(\d{2})(?::(\d{2})(\.\d+)?)?)?(?:_?(TAI|UTC|Z))?$",
    re.IGNORECASE,
)


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


def parse_time(value: str | dt.datetime) -> dt.datetime:
    """Parse a TAI time: ISO (``2014-01-01T00:12:00``), JSOC (``2014.01.01_00:12:00_TAI``)
    or a date (``2014-01-01``).

    Raises
    ------
    ConfigError
        If the text is not a time in one of those forms.
    """
    if isinstance(value, dt.datetime):
        return value.replace(tzinfo=None)
    text = str(value).strip()
    match = _T_REC_RE.match(text)
    if match is None:
        raise ConfigError(
            f"malformed time {value!r}; use e.g. 2014-01-01T00:00:00 or 2014.01.01_00:00:00_TAI"
        )
    year, month, day, hour, minute, second, frac, scale = match.groups()
    if scale is not None and scale.upper() != "TAI":
        raise ConfigError(
            f"time {value!r} is UTC, but T_REC is TAI (37 s apart since 2017); "
            "give the time without a suffix or with _TAI"
        )
    try:
        when = dt.datetime(
            int(year), int(month), int(day), int(hour or 0), int(minute or 0), int(second or 0)
        )
    except ValueError as exc:
        raise ConfigError(f"invalid time {value!r}: {exc}") from exc
    if frac:
        when += dt.timedelta(seconds=round(float(frac), 6))
    return when


def parse_t_rec(value: str) -> dt.datetime | None:
    """Parse a ``T_REC`` keyword value; ``None`` for missing or unparsable values."""
    try:
        return parse_time(value)
    except ConfigError:
        return None


def format_t_rec(when: dt.datetime) -> str:
    """Format a TAI time as JSOC writes ``T_REC``: ``YYYY.MM.DD_hh:mm:ss_TAI``."""
    return when.strftime("%Y.%m.%d_%H:%M:%S_TAI")


def file_time(when: dt.datetime) -> str:
    """Format a TAI time as JSOC export file names do: ``YYYYMMDD_hhmmss_TAI``."""
    return when.strftime("%Y%m%d_%H%M%S_TAI")


def format_duration(delta: dt.timedelta) -> str:
    """Write a duration in JSOC's units with the largest exact unit (``1d``, ``12m``)."""
    seconds = int(delta.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def snap_up(when: dt.datetime, series: HmiSeries) -> dt.datetime:
    """The first ``T_REC`` slot of ``series`` at or after ``when`` [1]_."""
    offset = (when - T_REC_EPOCH) % series.step
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
