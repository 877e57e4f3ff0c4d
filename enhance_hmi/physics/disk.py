"""Where the solar disk lies in a north-up image: centre, radius, distance from centre.

Full-disk HMI frames hold three kinds of pixel: the disk, a ring of noisy
values just beyond the limb (hmi.M_720s keeps finite values out to about
1.045 solar radii), and NaN further out. The forward model of the network
and of the projection onto the input describes the disk only: beyond the
limb there is no photosphere to re-observe, and within a few pixels of the
limb the image changes faster than the PSF's core (intensity drops to zero,
magnetogram noise steps up). :class:`SolarDisk` says which pixel is which,
from the header alone.

References
----------
.. [1] Thompson, W. T. (2006), "Coordinate systems for solar image data",
   A&A 449, 791 (helioprojective coordinates, ``RSUN_OBS``).
.. [2] Couvidat, S. et al. (2016), "Observables processing for the
   Helioseismic and Magnetic Imager instrument on the Solar Dynamics
   Observatory", Sol. Phys. 291, 1887 (HMI's disk centre and radius keywords).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["CONSTRAINED_RADIUS", "SolarDisk", "constraint_region"]

#: Fraction of the solar radius within which input pixels constrain the
#: projection onto the input and enter the per-frame quality figures. Beyond
#: it the re-observed output cannot match the input: HMI's PSF there reaches
#: the ring of off-limb values that hmi.M_720s keeps out to ~1.045 R_sun
#: (5-10x the disk's noise, with a spike at the limb) and the step of the
#: limb itself. On the three real full disks the network's
#: re-observed output stays within the noise out to 0.995 R_sun and misses
#: by 3-4x the noise in the last 0.5 % (docs/model_card.md, "Forward consistency").
CONSTRAINED_RADIUS = 0.99


@dataclass(frozen=True)
class SolarDisk:
    """The solar disk in an image: centre and radius in pixels (0-based, north up).

    Attributes
    ----------
    x0, y0 : float
        Disk centre, 0-based pixel coordinates (column, row).
    radius : float
        Disk radius in pixels (``RSUN_OBS / CDELT1``).
    """

    x0: float
    y0: float
    radius: float

    @classmethod
    def from_header(cls, header: Mapping[str, Any] | None) -> SolarDisk | None:
        """The disk a north-up header describes, or None when it does not say.

        The centre is the pixel of helioprojective (0", 0"): ``CRPIX - 1 -
        CRVAL / CDELT`` per axis [1]_; the radius ``RSUN_OBS / CDELT1`` [2]_.
        A header without these keywords (a cut-out without WCS, a
        simulation) gives None: callers then treat every pixel as disk.
        """
        if header is None:
            return None
        try:
            scale_x = float(header["CDELT1"])
            scale_y = float(header.get("CDELT2", scale_x))
            radius = float(header["RSUN_OBS"]) / scale_x
            x0 = float(header["CRPIX1"]) - 1 - float(header.get("CRVAL1", 0.0)) / scale_x
            y0 = float(header["CRPIX2"]) - 1 - float(header.get("CRVAL2", 0.0)) / scale_y
        except (KeyError, TypeError, ValueError, ZeroDivisionError):
            return None
        if not all(math.isfinite(v) for v in (radius, x0, y0)) or radius <= 0:
            return None
        return cls(x0=x0, y0=y0, radius=radius)

    def scaled(self, factor: int) -> SolarDisk:
        """The same disk on a grid ``factor`` times finer (pixel centres kept aligned)."""
        return SolarDisk(
            x0=(self.x0 + 0.5) * factor - 0.5,
            y0=(self.y0 + 0.5) * factor - 0.5,
            radius=self.radius * factor,
        )

    def relative_radius(self, shape: tuple[int, int]) -> np.ndarray:
        """Distance of each pixel centre from the disk centre, in solar radii (float32)."""
        ny, nx = shape
        dx = (np.arange(nx, dtype=np.float32) - np.float32(self.x0)) / np.float32(self.radius)
        dy = (np.arange(ny, dtype=np.float32) - np.float32(self.y0)) / np.float32(self.radius)
        return np.sqrt(dy[:, None] ** 2 + dx[None, :] ** 2)

    def inside(self, shape: tuple[int, int], fraction: float = 1.0) -> np.ndarray:
        """Pixels whose centre lies within ``fraction`` of the disk radius (bool)."""
        return self.relative_radius(shape) <= np.float32(fraction)

    def holds_limb(self, shape: tuple[int, int], fraction: float = 1.0) -> bool:
        """Whether any pixel of an image of ``shape`` lies beyond ``fraction`` of the radius."""
        ny, nx = shape
        far_x = max(abs(0 - self.x0), abs(nx - 1 - self.x0))
        far_y = max(abs(0 - self.y0), abs(ny - 1 - self.y0))
        return math.hypot(far_x, far_y) > fraction * self.radius


def constraint_region(shape: tuple[int, int], disk: SolarDisk | None) -> np.ndarray | None:
    """Input pixels the forward model describes: the disk within :data:`CONSTRAINED_RADIUS`.

    None (every pixel) when there is no disk geometry (a cut-out without
    WCS, a simulation) or when the whole image lies inside that radius.
    """
    if disk is None or not disk.holds_limb(shape, CONSTRAINED_RADIUS):
        return None
    return disk.inside(shape, CONSTRAINED_RADIUS)
