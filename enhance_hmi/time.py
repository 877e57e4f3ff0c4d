"""The package's one time model: TAI instants, the ``T_REC`` grammar and slot grid.

HMI records are keyed by ``T_REC``, a TAI time [1]_. Every time the package
reads (configuration, command line, FITS keywords, JSOC answers, cube
indexes) goes through :func:`parse_time`, which returns an
:class:`astropy.time.Time` in the TAI scale, or through :func:`tai_datetime`,
which returns the same instant as a naive :class:`datetime.datetime` in TAI
(the form the slot grid is computed in: exact to the microsecond, cheap to
add and compare, and the same for every module). Both read one grammar:

- JSOC ``T_REC``: ``2014.01.01_06:00:00_TAI``, ``2014.01.01_06:00:00.600_TAI``,
  ``2014.01.01_06:00_TAI``, ``2014.01.01``;
- ISO 8601: ``2014-01-01T06:00:00``, ``2014-01-01 06:00:00.6``,
  ``2014-01-01``;
- a scale suffix ``_TAI``, ``_UTC``, ``_UT``, ``Z`` (UTC) or `` TAI`` / `` UTC``;
  without one the ``scale`` argument says which (TAI by default, as ``T_REC``;
  UTC for FITS ``DATE-OBS``). UTC is converted to TAI by astropy (leap
  seconds included: 35 s in 2014, 37 s since 2017).

Fractions of a second are kept to the microsecond (never rounded to whole
seconds). :func:`format_t_rec` writes whole seconds as JSOC does and adds the
fraction only when there is one (in milliseconds), so
``format_t_rec(tai_datetime(text)) == text`` for a JSOC ``T_REC`` of whole
seconds or milliseconds.

References
----------
.. [1] Couvidat, S. et al. (2016), "Observables processing for the
   Helioseismic and Magnetic Imager instrument on the Solar Dynamics
   Observatory", Sol. Phys. 291, 1887: ``T_REC`` in TAI on a slotted grid
   with epoch 1993.01.01_00:00:00_TAI and steps of 45 s and 720 s.
"""

from __future__ import annotations

import datetime as dt
import re

import numpy as np
from astropy.time import Time

from enhance_hmi.errors import TimeFormatError

__all__ = [
    "T_REC_EPOCH",
    "parse_time",
    "tai_datetime",
    "parse_t_rec",
    "format_t_rec",
    "file_time",
    "grid_offset",
    "grid_floor",
    "utc_timestamp",
]

#: Origin of the slotted ``T_REC`` grid of every HMI observable series, as a
#: naive TAI datetime (the ``T_REC_epoch`` keyword, 1993.01.01_00:00:00_TAI) [1]_.
T_REC_EPOCH = dt.datetime(1993, 1, 1)

_TIME_RE = re.compile(
    r"^\s*(?P<year>\d{4})[.\-](?P<month>\d{2})[.\-](?P<day>\d{2})"
    r"(?:[_T ](?P<hour>\d{2}):(?P<minute>\d{2})"
    r"(?::(?P<second>\d{2})(?P<fraction>\.\d*)?)?)?"
    r"(?:[_ ]?(?P<scale>TAI|UTC|UT|Z))?\s*$",
    re.IGNORECASE,
)
_SCALES = {"tai": "tai", "utc": "utc", "ut": "utc", "z": "utc"}
_FORMS = "2014-01-01T00:00:00, 2014.01.01_00:00:00_TAI or 2014-01-01"


def _check_scale(scale: str) -> str:
    key = str(scale).lower()
    if key not in ("tai", "utc"):
        raise TimeFormatError(f"time scale {scale!r} is not tai or utc")
    return key


def _fields(text: str, scale: str) -> tuple[dt.datetime, str, str]:
    """The calendar fields of ``text`` as a naive datetime, its scale and its ISO form."""
    match = _TIME_RE.match(text)
    if match is None:
        raise TimeFormatError(f"malformed time {text!r}; use e.g. {_FORMS}")
    parts = match.groupdict()
    found = _SCALES[parts["scale"].lower()] if parts["scale"] else scale
    fraction = parts["fraction"] or ""
    micro = round(float(fraction) * 1e6) if len(fraction) > 1 else 0
    second = int(parts["second"] or 0)
    iso = (
        f"{parts['year']}-{parts['month']}-{parts['day']}T{parts['hour'] or '00'}:"
        f"{parts['minute'] or '00'}:{second:02d}{fraction if len(fraction) > 1 else ''}"
    )
    if found == "utc" and second == 60:  # a leap second: only astropy can place it
        return dt.datetime.min, found, iso
    try:
        when = dt.datetime(
            int(parts["year"]),
            int(parts["month"]),
            int(parts["day"]),
            int(parts["hour"] or 0),
            int(parts["minute"] or 0),
            second,
        )
    except ValueError as exc:
        raise TimeFormatError(f"invalid time {text!r}: {exc}") from exc
    return when + dt.timedelta(microseconds=micro), found, iso


def _utc_to_tai(iso: str, text: str) -> dt.datetime:
    try:
        return Time(iso, scale="utc", precision=6).tai.to_datetime()
    except ValueError as exc:
        raise TimeFormatError(f"invalid UTC time {text!r}: {exc}") from exc


def tai_datetime(value: object, *, scale: str = "tai") -> dt.datetime:
    """The instant ``value`` as a naive :class:`datetime.datetime` in TAI.

    Parameters
    ----------
    value : str, datetime, date, astropy Time or numpy datetime64
        A time in one of the forms of the module docstring; a naive datetime
        or datetime64 is taken in ``scale``, an aware datetime by its zone, a
        date as its midnight, a Time by its own scale.
    scale : {"tai", "utc"}
        The scale of a value that does not name one.

    Returns
    -------
    datetime.datetime
        Naive, TAI, microsecond precision.

    Raises
    ------
    TimeFormatError
        ``value`` is not a time (wrong form, impossible date, unknown scale).
    """
    scale = _check_scale(scale)
    if isinstance(value, Time):
        return value.tai.to_datetime()
    if isinstance(value, np.datetime64):
        value = value.astype("datetime64[us]").item()
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            utc = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
            return Time(utc, scale="utc").tai.to_datetime()
        return value if scale == "tai" else Time(value, scale="utc").tai.to_datetime()
    if isinstance(value, dt.date):
        midnight = dt.datetime(value.year, value.month, value.day)
        return midnight if scale == "tai" else Time(midnight, scale="utc").tai.to_datetime()
    if not isinstance(value, str):
        raise TimeFormatError(f"{value!r} ({type(value).__name__}) is not a time")
    when, found, iso = _fields(value, scale)
    return when if found == "tai" else _utc_to_tai(iso, value)


def parse_time(value: object, *, scale: str = "tai") -> Time:
    """The instant ``value`` as an :class:`astropy.time.Time` in the TAI scale.

    Accepts what :func:`tai_datetime` accepts, with the same ``scale`` rule;
    ``parse_time(v).to_datetime() == tai_datetime(v)``.

    Raises
    ------
    TimeFormatError
        ``value`` is not a time.
    """
    if isinstance(value, Time):
        return value.tai
    return Time(tai_datetime(value, scale=scale), scale="tai", precision=6)


def parse_t_rec(value: object) -> dt.datetime | None:
    """A ``T_REC`` keyword value as a naive TAI datetime; None when missing or unreadable.

    For values read from files and server answers, where an absent or
    malformed ``T_REC`` is a property of the record (reported by the caller),
    not an error.
    """
    try:
        return tai_datetime(str(value))
    except TimeFormatError:
        return None


def _as_tai(when: object) -> dt.datetime:
    return when if isinstance(when, dt.datetime) and when.tzinfo is None else tai_datetime(when)


def format_t_rec(when: object) -> str:
    """``YYYY.MM.DD_hh:mm:ss_TAI``, as JSOC writes ``T_REC``, with any fraction of a second.

    ``when`` is a naive TAI datetime or anything :func:`tai_datetime` reads.
    A fraction is written in milliseconds (``06:00:00.600_TAI``), or in
    microseconds when it is not a whole number of them.
    """
    tai = _as_tai(when)
    text = tai.strftime("%Y.%m.%d_%H:%M:%S")
    if tai.microsecond % 1000:
        text += f".{tai.microsecond:06d}"
    elif tai.microsecond:
        text += f".{tai.microsecond // 1000:03d}"
    return text + "_TAI"


def file_time(when: object) -> str:
    """``YYYYMMDD_hhmmss_TAI``, as JSOC export file names write ``T_REC``."""
    return _as_tai(when).strftime("%Y%m%d_%H%M%S_TAI")


def grid_offset(when: dt.datetime, step: dt.timedelta) -> dt.timedelta:
    """How far ``when`` (naive TAI) lies past the last slot of the ``step`` grid [1]_."""
    return (when - T_REC_EPOCH) % step


def grid_floor(when: dt.datetime, window: dt.timedelta) -> dt.datetime:
    """Start of the window of length ``window`` on the ``T_REC`` grid that holds ``when``."""
    return T_REC_EPOCH + window * ((when - T_REC_EPOCH) // window)


def utc_timestamp(seconds: float | None = None) -> str:
    """A UTC time as ``YYYY-MM-DDThh:mm:ssZ`` (when files were written).

    ``seconds`` since the Unix epoch (say a file's or a process's start
    time); now when None.
    """
    when = (
        dt.datetime.now(dt.timezone.utc)
        if seconds is None
        else dt.datetime.fromtimestamp(seconds, tz=dt.timezone.utc)
    )
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")
