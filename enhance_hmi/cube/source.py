"""Enhanced per-frame FITS files as cube input: :func:`read_enhanced`, :class:`CubeInput`.

The files are those written by :func:`enhance_hmi.io.write_enhanced`: float32
image (tile-compressed in HDU 1, or in the primary HDU), 2x WCS and the
provenance keywords ``ENHOBS``, ``ENHINSHA``, ``ENHWSHA``, ``ENHPSF``...
No normalisation or rotation is applied: the data are already north up and
in the output units.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.io.fits.verify import VerifyWarning

from enhance_hmi.errors import ConfigError, InputError
from enhance_hmi.frame import OBSERVABLES, Frame
from enhance_hmi.io.frame_quality import quality_from_header
from enhance_hmi.io.sigma import SIGMA_KEYWORDS, SigmaMap
from enhance_hmi.time import format_t_rec

__all__ = ["OUT_OF_TOLERANCE_CHOICES", "CubeInput", "out_of_tolerance_choice", "read_enhanced"]

log = logging.getLogger(__name__)

#: What a cube does with a frame out of tolerance (quality figures beyond
#: their tolerances when it was enhanced: ``ENHQFLAG`` not empty,
#: :mod:`enhance_hmi.io.frame_quality`): "keep" it, marked in the cube's
#: per-frame table, or "exclude" it from the cube's data. The input's JSOC
#: ``QUALITY`` bits alone never exclude a frame here.
OUT_OF_TOLERANCE_CHOICES = ("keep", "exclude")
#: Older name of the config key ``cube.out_of_tolerance``, still read.
_OLD_CONFIG_KEY = "flagged"


def out_of_tolerance_choice(cube_config: Mapping[str, Any]) -> str:
    """The workflow config's choice for frames out of tolerance (default "keep").

    Reads ``cube.out_of_tolerance`` and, for configs written before it had
    that name, ``cube.flagged``.

    Parameters
    ----------
    cube_config : mapping
        The ``cube`` section of the workflow config.

    Raises
    ------
    ConfigError
        Both keys given with different values, or a value not in
        :data:`OUT_OF_TOLERANCE_CHOICES`.
    """
    given = {
        key: cube_config[key]
        for key in ("out_of_tolerance", _OLD_CONFIG_KEY)
        if cube_config.get(key) is not None
    }
    if len(set(given.values())) > 1:
        raise ConfigError(
            f"config cube.out_of_tolerance is {given['out_of_tolerance']!r} but its older name "
            f"cube.{_OLD_CONFIG_KEY} is {given[_OLD_CONFIG_KEY]!r}; keep only "
            "cube.out_of_tolerance"
        )
    choice = next(iter(given.values()), "keep")
    if choice not in OUT_OF_TOLERANCE_CHOICES:
        raise ConfigError(
            f"config cube.out_of_tolerance is {choice!r}; use one of "
            f"{', '.join(OUT_OF_TOLERANCE_CHOICES)}"
        )
    return str(choice)


_PROVENANCE = {
    "observable": "ENHOBS",
    "input_file": "ENHINPUT",
    "input_sha256": "ENHINSHA",
    "weights_sha256": "ENHWSHA",
    "weights_file": "ENHWTS",
    "psf_model": "ENHPSF",
    "software": "ENHVERS",
}


def _sigma_map(hdu: fits.ImageHDU) -> SigmaMap:
    """The :class:`~enhance_hmi.io.sigma.SigmaMap` of a ``SIGMA`` HDU (data, ``ENHSG*``)."""
    values = {key: hdu.header.get(card, "") for key, (card, _) in SIGMA_KEYWORDS.items()}
    return SigmaMap(
        data=np.asarray(hdu.data, dtype=np.float32),
        method=str(values["method"]),
        calibration_scale=float(values["calibration_scale"] or 1.0),
        calibration=str(values["calibration"]),
        weights_file=str(values["weights_file"]),
        weights_sha256=str(values["weights_sha256"]),
        calibration_sha256=str(values["calibration_sha256"]),
        forward_model=str(values["forward_model"]),
    )


def read_enhanced(path: str | os.PathLike[str], *, sigma: bool = True) -> Frame:
    """Read an enhanced frame written by :func:`enhance_hmi.io.write_enhanced`.

    Parameters
    ----------
    path : path-like
    sigma : bool
        Also read the ``SIGMA`` HDU (the per-pixel uncertainty) when the
        file has one, as ``meta["sigma"]`` (:class:`enhance_hmi.io.sigma.SigmaMap`),
        which :meth:`enhance_hmi.cube.TimeCube.append` stores as ``/sigma``.

    Returns
    -------
    Frame
        ``meta`` holds ``t_rec``, ``quality``, ``input_file``,
        ``input_sha256``, ``weights_sha256``, ``weights_file``, ``psf_model``
        and ``software`` from the header (and ``sigma``, see above).

    Raises
    ------
    InputError
        The file is missing, unreadable, or not an enhanced frame.
    """
    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", VerifyWarning)  # float BLANK cards in HMI headers
            with fits.open(path, memmap=False) as hdul:
                hdu = next(
                    (h for h in hdul if h.header.get("NAXIS", 0) == 2 and h.data is not None),
                    None,
                )
                if hdu is None:
                    raise InputError(f"{path} holds no 2-D image")
                data = np.asarray(hdu.data, dtype=np.float32)
                header = hdu.header.copy()
                sigma_hdu = next((h for h in hdul if h.name == "SIGMA"), None) if sigma else None
                sigma_map = _sigma_map(sigma_hdu) if sigma_hdu is not None else None
    except (OSError, ValueError, TypeError) as exc:
        raise InputError(f"cannot read enhanced frame {path} ({exc})") from exc
    for key in ("XTENSION", "ZIMAGE", "PCOUNT", "GCOUNT", "CHECKSUM", "DATASUM"):
        header.remove(key, ignore_missing=True, remove_all=True)
    meta: dict[str, object] = {k: str(header.get(card, "")) for k, card in _PROVENANCE.items()}
    observable = meta.pop("observable")
    if observable not in OBSERVABLES:
        raise InputError(
            f"{path.name} is not an enhanced frame (ENHOBS = {observable!r}); "
            "cubes are built from the output of enhance predict"
        )
    meta["t_rec"] = str(header.get("T_REC", ""))
    meta["quality"] = header.get("QUALITY", 0)
    meta["enhanced_file"] = path.name
    if sigma_map is not None:
        meta["sigma"] = sigma_map
    return Frame(data=data, header=header, observable=str(observable), meta=meta)


@dataclasses.dataclass
class CubeInput:
    """The enhanced frames of one cube, read one at a time; frames out of tolerance optionally out.

    Iterate it into :meth:`enhance_hmi.cube.TimeCube.append`. Each pass reads
    the files anew and lists the frames it kept out in :attr:`kept_out`.

    Parameters
    ----------
    paths : sequence of path-like
        Enhanced FITS files (:func:`read_enhanced`).
    sigma : bool
        Also read each frame's ``SIGMA`` HDU.
    out_of_tolerance : {"keep", "exclude"}
        Frames out of tolerance (``ENHQFLAG`` not empty, as written when the
        frame was enhanced): "keep" passes them on (the cube's per-frame
        table marks them), "exclude" keeps them out of the cube's data.

    Attributes
    ----------
    kept_out : list of dict
        One ``{"t_rec", "file", "out_of_tolerance"}`` per frame kept out in
        the last pass, ``out_of_tolerance`` naming its figures out of
        tolerance (a frame the cube already holds is listed too:
        :meth:`kept_out_of` leaves those out).

    Raises
    ------
    ConfigError
        ``out_of_tolerance`` is not one of :data:`OUT_OF_TOLERANCE_CHOICES`.
    """

    paths: Sequence[str | os.PathLike[str]]
    sigma: bool = True
    out_of_tolerance: str = "keep"
    kept_out: list[dict[str, str]] = dataclasses.field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        if self.out_of_tolerance not in OUT_OF_TOLERANCE_CHOICES:
            raise ConfigError(
                "frames out of tolerance are kept or excluded "
                f"({', '.join(OUT_OF_TOLERANCE_CHOICES)}), not {self.out_of_tolerance!r}"
            )

    def __iter__(self) -> Iterator[Frame]:
        self.kept_out = []
        for path in self.paths:
            frame = read_enhanced(path, sigma=self.sigma)
            figures = quality_from_header(frame.header)["flags"]
            # without a T_REC the cube's append refuses the frame with its own message
            if figures and self.out_of_tolerance == "exclude" and frame.meta["t_rec"]:
                log.warning(
                    "%s kept out of the cube: out of tolerance (%s)", Path(path).name, figures
                )
                self.kept_out.append(
                    {
                        "t_rec": str(frame.meta["t_rec"]),
                        "file": Path(path).name,
                        "out_of_tolerance": figures,
                    }
                )
                continue
            yield frame

    def kept_out_of(self, cube_t_recs: Sequence[str]) -> list[dict[str, str]]:
        """:attr:`kept_out` without the frames whose ``T_REC`` is in ``cube_t_recs``."""
        held = {format_t_rec(t_rec) for t_rec in cube_t_recs}
        return [item for item in self.kept_out if format_t_rec(item["t_rec"]) not in held]
