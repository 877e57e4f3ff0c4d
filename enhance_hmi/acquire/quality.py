"""HMI level-1.5 ``QUALITY`` keyword: decoding and the skip policy.

JSOC returns ``QUALITY`` as a hexadecimal string (``"0x00010400"``); FITS
headers carry it as a signed 32-bit integer. Both are read here into an
unsigned integer and decoded into the named bits of the HMI pipeline.

Bits ``0x00020000`` and above say that no usable observable was produced
(``0x80000000``: the record exists but has no image); the lower bits flag
observables made in sub-optimal conditions (eclipse, open ISS loop, ...).

References
----------
.. [1] Couvidat, S. "Current meaning of the HMI QUALITY keyword for processing
   level 1.5", jsoc.stanford.edu/doc/data/hmi/Quality_Bits/QUALITY.txt
   (24 May 2013), and the bit definitions in the JSOC pipeline modules
   ``HMI_observables.c`` / ``HMI_IQUV_averaging.c`` (lm-jps/proj).
.. [2] Hoeksema, J. T. et al. (2018), "On-orbit performance of the
   Helioseismic and Magnetic Imager instrument onboard the Solar Dynamics
   Observatory", Sol. Phys. 293, 45: eclipses, ISS loop, thermal recovery.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import SupportsIndex, SupportsInt

from enhance_hmi.errors import ConfigError, InputError

__all__ = [
    "QUALITY_BITS",
    "NODATA",
    "NO_OBSERVABLE_MASK",
    "QualityPolicy",
    "decode_quality",
    "parse_quality",
    "format_quality",
]

#: Named bits of the level-1.5 line-of-sight observables ``QUALITY`` [1]_.
QUALITY_BITS: dict[str, int] = {
    # no observable produced, and why
    "NODATA": 0x80000000,
    "TARGETFILTERGRAMMISSING": 0x40000000,
    "NOINTERPOLATEDKEYWORDS": 0x20000000,
    "NOFRAMELISTINFO": 0x10000000,
    "WRONGCADENCE": 0x08000000,
    "WRONGTARGET": 0x04000000,
    "MISSINGLEV1D": 0x02000000,
    "MISSINGKEYWORDLEV1D": 0x01000000,
    "WRONGWAVELENGTHNUM": 0x00800000,
    "MISSINGKEYWORDLEV1P": 0x00400000,
    "NOLOOKUPRECORD": 0x00200000,
    "NOLOOKUPKEYWORD": 0x00100000,
    "NOTENOUGHINTERPOLANTS": 0x00080000,
    "INTERPOLATIONFAILED": 0x00040000,
    "MISSINGLEV1P": 0x00020000,
    # observable produced in sub-optimal conditions
    "LOWINTERPNUM": 0x00010000,
    "LOWKEYWORDNUM": 0x00008000,
    "ISSTARGET": 0x00004000,  # ISS (image stabilisation) loop open
    "NOTEMP": 0x00002000,
    "NOGAPFILL": 0x00001000,
    "LIMBFITISSUE": 0x00000800,
    "NOCOSMICRAY": 0x00000400,
    "ECLIPSE": 0x00000200,
    "LARGEFTSID": 0x00000100,
    "POORQUALITY": 0x00000020,  # eclipse, lunar transit, thermal recovery, open ISS, ...
}

#: The record exists but holds no image [1]_.
NODATA = QUALITY_BITS["NODATA"]
#: Every "no observable produced" bit (``0x00020000`` and above) [1]_.
NO_OBSERVABLE_MASK = 0xFFFE0000

#: Named skip policies; a policy may also list bit names or hex masks.
PRESETS: dict[str, int] = {
    "nodata": NO_OBSERVABLE_MASK,
    "conservative": NO_OBSERVABLE_MASK
    | QUALITY_BITS["ECLIPSE"]
    | QUALITY_BITS["ISSTARGET"]
    | QUALITY_BITS["POORQUALITY"]
    | QUALITY_BITS["LIMBFITISSUE"],
    "strict": 0xFFFFFFFF,
}

_HEX_RE = re.compile(r"^0x[0-9a-f]{1,8}$", re.IGNORECASE)


def parse_quality(value: object) -> int | None:
    """Read a ``QUALITY`` value (hex string, decimal string, int) as unsigned 32 bits.

    Returns ``None`` for a missing value (``None``, NaN, empty, ``"MISSING"``).

    Raises
    ------
    InputError
        If the value is present but not a 32-bit integer in any of those forms.
    """
    if value is None:
        return None
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if value != int(value):
            raise InputError(f"QUALITY value {value!r} is not an integer")
        value = int(value)
    if isinstance(value, str):
        text = value.strip()
        if text == "" or text.upper() in {"MISSING", "NAN"}:
            return None
        try:
            value = int(text, 16) if text.lower().startswith("0x") else int(text)
        except ValueError as exc:
            raise InputError(f"QUALITY value {value!r} is neither hex nor decimal") from exc
    if not isinstance(value, (SupportsInt, SupportsIndex, bytes, bytearray)):
        raise InputError(f"QUALITY value {value!r} is not an integer")
    try:
        number = int(value)  # numpy integers too
    except (TypeError, ValueError) as exc:
        raise InputError(f"QUALITY value {value!r} is not an integer") from exc
    if not -(2**31) <= number < 2**32:
        raise InputError(f"QUALITY value {value!r} does not fit in 32 bits")
    return number & 0xFFFFFFFF


def format_quality(value: int) -> str:
    """``0x%08X``, the way JSOC writes ``QUALITY``."""
    return f"0x{value & 0xFFFFFFFF:08X}"


def decode_quality(value: object) -> list[str]:
    """Names of the bits set in a ``QUALITY`` value, most severe first [1]_.

    Bits without a documented meaning come back as ``"BIT_0x........"``; a
    missing value decodes to an empty list.

    Examples
    --------
    >>> decode_quality("0x00010400")
    ['LOWINTERPNUM', 'NOCOSMICRAY']
    >>> decode_quality(-2147483648)
    ['NODATA']
    """
    number = parse_quality(value)
    if not number:
        return []
    names = [name for name, bit in QUALITY_BITS.items() if number & bit]
    known = 0
    for bit in QUALITY_BITS.values():
        known |= bit
    names += [
        f"BIT_{format_quality(1 << i)}"
        for i in range(31, -1, -1)
        if number & (1 << i) and not known & (1 << i)
    ]
    return names


@dataclasses.dataclass(frozen=True)
class QualityPolicy:
    """Which ``QUALITY`` bits make a frame be skipped.

    A frame with ``NODATA`` is always skipped (there is no image to fetch).

    Parameters
    ----------
    skip_mask : int
        Bits that cause a skip.
    name : str
        The text the policy was parsed from (for manifests and logs).
    """

    skip_mask: int = NO_OBSERVABLE_MASK
    name: str = "nodata"

    @classmethod
    def parse(cls, text: str | None) -> QualityPolicy:
        """Parse ``"nodata"``, ``"conservative"``, ``"strict"``, bit names and hex masks.

        Items are separated by commas or ``+`` and combined, e.g.
        ``"nodata,ECLIPSE,ISSTARGET"`` or ``"nodata+0x00000400"``.

        Raises
        ------
        ConfigError
            If an item is none of those.
        """
        if text is None or not str(text).strip():
            return cls()
        mask = 0
        for item in re.split(r"[,+\s]+", str(text).strip()):
            if not item:
                continue
            key = item.upper().removeprefix("QUAL_")
            if item.lower() in PRESETS:
                mask |= PRESETS[item.lower()]
            elif key in QUALITY_BITS:
                mask |= QUALITY_BITS[key]
            elif _HEX_RE.match(item):
                mask |= int(item, 16)
            else:
                raise ConfigError(
                    f"unknown QUALITY policy item {item!r}; use {', '.join(PRESETS)}, "
                    "bit names such as ECLIPSE or ISSTARGET, or a hex mask like 0x00000200"
                )
        return cls(skip_mask=mask | NODATA, name=str(text).strip())

    def skip_reason(self, quality: int | None) -> str | None:
        """Why a frame with this ``QUALITY`` is skipped, or ``None`` to keep it."""
        if quality is None:
            return None
        hit = quality & (self.skip_mask | NODATA)
        if not hit:
            return None
        names = ",".join(decode_quality(hit))
        return f"QUALITY {format_quality(quality)} has {names} (policy {self.name})"
