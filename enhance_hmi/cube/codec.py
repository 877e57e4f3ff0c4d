"""Compression and optional quantisation of the HDF5 time cubes.

Lossless compression of noisy float32 images buys little (about 1.2x), so
the cubes offer a documented quantisation: values rounded to a multiple of a
step chosen well below the noise, recorded in the file attributes, after
which a fast lossless codec reaches 2.5-3x. Every codec is a standard HDF5
filter: ``gzip`` is built into every HDF5 library; ``blosc2-zstd`` and
``zstd`` are registered HDF5 filters (ids 32026 and 32015) that h5py reads
after ``import hdf5plugin`` (and HDF5 command-line tools with
``HDF5_PLUGIN_PATH`` set to ``hdf5plugin.PLUGINS_PATH``).

References
----------
.. [1] Díaz Baso, C. J. & Asensio Ramos, A. (2018), A&A 614, A5: the
   enhanced products stored in the cubes.
.. [2] Liu, Y. et al. (2012), "Comparison of line-of-sight magnetograms taken
   by SDO/HMI and SOHO/MDI", Sol. Phys. 279, 295: HMI 720 s magnetogram
   noise of about 6-10 G, so a 0.1 G step is ~1/100 of the noise; the
   paper's training noise for the continuum, 1e-3 quiet-Sun units [1]_,
   makes 1e-4 the matching continuum step.
.. [3] Pence, W. D., Seaman, R. & White, R. L. (2009), PASP 121, 414: a
   quantisation step of a fraction of the noise sigma loses no information
   that matters (rms error = step / sqrt(12)).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import astropy.units as u
import numpy as np

from enhance_hmi.errors import ConfigError

__all__ = ["COMPRESSIONS", "Codec", "quantize"]

#: Accepted ``compression`` names.
COMPRESSIONS: tuple[str, ...] = ("blosc2-zstd", "zstd", "gzip", "none")

#: Units of the stored data per observable (magnetograms in gauss, continuum
#: in quiet-Sun units, dimensionless).
DATA_UNITS = {"magnetogram": u.G, "continuum": u.dimensionless_unscaled}


@dataclasses.dataclass(frozen=True)
class Codec:
    """How pixel data are stored: HDF5 filter, level and quantisation step.

    Attributes
    ----------
    compression : str
        One of :data:`COMPRESSIONS`.
    level : int
        Codec level (gzip 1-9, zstd 1-22); small levels are fast.
    step : float
        Quantisation step in data units (0: values stored exactly).
    """

    compression: str = "blosc2-zstd"
    level: int = 1
    step: float = 0.0

    def __post_init__(self) -> None:
        if self.compression not in COMPRESSIONS:
            raise ConfigError(
                f"unknown cube compression {self.compression!r}; "
                f"use one of {', '.join(COMPRESSIONS)}"
            )
        if not 0 <= self.level <= 22:
            raise ConfigError(f"compression level must be between 0 and 22, got {self.level}")
        if not np.isfinite(self.step) or self.step < 0:
            raise ConfigError(f"quantisation step must be >= 0, got {self.step}")

    @classmethod
    def from_options(
        cls,
        *,
        compression: str = "blosc2-zstd",
        level: int | None = None,
        quantize: float | u.Quantity | None = None,
        observable: str = "magnetogram",
    ) -> Codec:
        """Build a codec, converting a Quantity step to the observable's units."""
        step = 0.0
        if quantize is not None:
            if isinstance(quantize, u.Quantity):
                try:
                    step = float(quantize.to_value(DATA_UNITS[observable]))
                except u.UnitConversionError as exc:
                    raise ConfigError(
                        f"quantisation step {quantize} is not in the units of {observable} "
                        f"data ({DATA_UNITS[observable] or 'dimensionless'})"
                    ) from exc
            else:
                step = float(quantize)
        if level is None:
            level = 1 if compression in ("blosc2-zstd", "gzip") else 3
        return cls(compression=compression, level=int(level), step=step)

    def dataset_options(self) -> dict[str, Any]:
        """Keyword arguments for ``h5py.Group.create_dataset``."""
        if self.compression == "none":
            return {}
        if self.compression == "gzip":
            return {"compression": "gzip", "compression_opts": self.level, "shuffle": True}
        import hdf5plugin  # registers the filters with the HDF5 library

        if self.compression == "zstd":
            return dict(hdf5plugin.Zstd(clevel=self.level))
        return dict(
            hdf5plugin.Blosc2(cname="zstd", clevel=self.level, filters=hdf5plugin.Blosc2.SHUFFLE)
        )

    def describe(self) -> str:
        """One line for the file attributes: filter and how to read it."""
        if self.compression == "none":
            return "none"
        if self.compression == "gzip":
            return f"gzip level {self.level} with byte shuffle (built into HDF5)"
        filter_id = 32015 if self.compression == "zstd" else 32026
        return (
            f"{self.compression} level {self.level} (HDF5 filter {filter_id}; "
            "python: import hdf5plugin before opening)"
        )

    def encode(self, data: np.ndarray) -> np.ndarray:
        """Return ``data`` as float32, rounded to the step when there is one."""
        return quantize(data, self.step)


def quantize(data: np.ndarray, step: float) -> np.ndarray:
    """Round ``data`` to the nearest multiple of ``step`` (NaN kept), as float32.

    The rms error is ``step / sqrt(12)`` [3]_; ``step = 0`` returns the data
    unchanged (as float32).

    References
    ----------
    .. [3] Pence, Seaman & White (2009), PASP 121, 414.
    """
    out = np.asarray(data, dtype=np.float32)
    if step <= 0:
        return out
    return (np.round(out / np.float32(step)) * np.float32(step)).astype(np.float32, copy=False)
