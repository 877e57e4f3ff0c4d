"""sunpy Maps in, sunpy Maps out: :func:`enhance_map`.

A sunpy user holds ``sunpy.map.Map`` objects. :func:`enhance_map` runs the
same pipeline as ``enhance predict`` on one (or a sequence of them, with the
network loaded once) and returns Maps: north up (an HMI map with
``CROTA2`` ~ 180 is turned the way :func:`enhance_hmi.io.read_hmi` turns files),
on the 2x grid with its WCS (:func:`enhance_hmi.io.wcs.upsample_header`), the
provenance and quality keywords of the FITS product in ``.meta``, and the
per-pixel sigma, when the weights have an uncertainty head, as the Map's
``uncertainty`` (:class:`astropy.nddata.StdDevUncertainty`, same units).

The Map goes through a temporary FITS file, so the checks, messages and
provenance are exactly those of a file (``input_file`` reads
``sunpy_map_<T_REC>.fits``; ``input_sha256`` is that of the Map as saved).
"""

from __future__ import annotations

import re
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from astropy.io.fits.verify import VerifyWarning

from enhance_hmi.batch import enhance_files
from enhance_hmi.cube.source import read_enhanced
from enhance_hmi.errors import InputError
from enhance_hmi.settings import EnhanceSettings

__all__ = ["enhance_map"]


def _input_name(smap: Any, index: int) -> str:
    """A file name for the Map: its T_REC (or date) in the name, as JSOC files carry it."""
    when = str(smap.meta.get("t_rec") or smap.meta.get("date-obs") or f"map{index}")
    return f"sunpy_map_{re.sub(r'[^0-9A-Za-z_.-]', '_', when)}.fits"


def _as_map(path: Path) -> Any:
    import sunpy.map
    from astropy.nddata import StdDevUncertainty

    frame = read_enhanced(path, sigma=True)
    result = sunpy.map.Map(frame.data, frame.header)
    sigma = frame.meta.get("sigma")
    if sigma is not None:
        result.uncertainty = StdDevUncertainty(sigma.data, unit=result.unit)
    return result


def enhance_map(smap: Any, *, settings: EnhanceSettings | None = None, **options: Any) -> Any:
    """Deconvolve and 2x super-resolve a sunpy Map (or a sequence of Maps).

    Parameters
    ----------
    smap : sunpy.map.GenericMap or sequence of them, or sunpy.map.MapSequence
        HMI continuum images or magnetograms, with their JSOC metadata.
    settings : EnhanceSettings, optional
        As for :func:`enhance_hmi.batch.enhance_files`; default built from
        ``options`` (``weights``, ``device``, ``tile``, ``consistency``,
        ``uncertainty``...). The compression setting does not apply: the
        Maps are in memory.
    **options
        Options that change ``settings``, by field name, as
        :meth:`enhance_hmi.settings.EnhanceSettings.from_mapping` reads them.

    Returns
    -------
    sunpy.map.GenericMap or sunpy.map.MapSequence
        One enhanced Map per input (a MapSequence for a sequence), as
        described in the module notes.

    Raises
    ------
    InputError
        A Map that cannot be enhanced (the message of the file pipeline,
        naming the Map's T_REC).
    ConfigError
        Bad settings, before any Map is enhanced.
    """
    import sunpy.map

    single = not isinstance(smap, (Sequence, sunpy.map.MapSequence))
    maps = [smap] if single else list(smap)
    if not maps:
        raise InputError("no Map to enhance")
    settings = EnhanceSettings.from_mapping(options, base=settings) if options else settings
    settings = settings or EnhanceSettings()
    with tempfile.TemporaryDirectory(prefix="enhance-map-") as tmp:
        folder = Path(tmp)
        pairs = []
        for index, item in enumerate(maps):
            source = folder / f"{index:05d}" / _input_name(item, index)
            source.parent.mkdir()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", VerifyWarning)  # float BLANK of HMI headers
                item.save(source)
            pairs.append((source, source.with_suffix(".enhanced.fits")))
        outcomes = enhance_files(pairs, settings)
        failed = [o for o in outcomes if o.status != "enhanced"]
        if failed:
            raise InputError(f"{failed[0].input.name}: {failed[0].error}")
        results = [_as_map(target) for _, target in pairs]
    return results[0] if single else sunpy.map.Map(results, sequence=True)
