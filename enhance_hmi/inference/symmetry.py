"""Averaging the network over the symmetries of the problem (test-time self-ensemble).

The forward model of the shipped networks commutes with quarter turns and
mirror images of the pixel grid (the HMI PSF models and the 28 cm Airy PSF
are azimuthally symmetric, the pixels square), and for magnetograms with
the sign of the field (Blos -> -Blos leaves the physics unchanged). A
trained network is only approximately equivariant to them, so the mean of
its outputs over a group of them, each turned back, is closer to the truth
than one pass: the self-ensemble of Lim et al. (2017) [1]_. Each member of
the group costs one more pass of the network.

The groups are nested, so ``n`` symmetries always average over a whole
group (the mean is then exactly equivariant to it):

* continuum: 1 (none), 2 (half turn), 4 (quarter turns), 8 (quarter turns
  and mirror images: the symmetries of the square);
* magnetogram: 1, 2 (the sign of the field), 4 (with the half turn),
  8 (with the quarter turns).

The sign comes first for magnetograms because it is the symmetry that
pays most (docs/model_card.md); the mirror images, which would make 16,
add little to 8 there and are not offered.

Measured on the held-out forward-model grid (docs/model_card.md, "Averaging
over symmetries").

References
----------
.. [1] Lim, B., Son, S., Kim, H., Nah, S. & Lee, K. M. (2017), "Enhanced
   deep residual networks for single image super-resolution", CVPR
   Workshops, Sect. 4.4 (geometric self-ensemble).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from enhance_hmi.errors import ConfigError
from enhance_hmi.settings import check_symmetries

__all__ = ["Symmetry", "symmetry_group"]


@dataclass(frozen=True)
class Symmetry:
    """One symmetry of the forward model: turn, then mirror, then sign.

    Attributes
    ----------
    turns : int
        Counter-clockwise quarter turns of the image (:func:`numpy.rot90`).
    mirror : bool
        Mirror the turned image left-right.
    negate : bool
        Change the sign of the values (magnetograms only).
    """

    turns: int = 0
    mirror: bool = False
    negate: bool = False

    def apply(self, image: np.ndarray) -> np.ndarray:
        """The image as this symmetry maps it (last two axes), C-contiguous.

        The identity returns a C-contiguous ``image`` itself, not a copy.
        """
        out = np.rot90(image, self.turns, axes=(-2, -1))
        if self.mirror:
            out = out[..., ::-1]
        if self.negate:
            out = -out
        return np.ascontiguousarray(out)

    def undo(self, image: np.ndarray, *, signed: bool = True) -> np.ndarray:
        """The inverse map: an output of the mapped input back on the frame's grid.

        ``signed=False`` leaves the sign alone (for a channel that does not
        change sign with the field, such as a sigma).
        """
        out = -image if self.negate and signed else image
        if self.mirror:
            out = out[..., ::-1]
        return np.ascontiguousarray(np.rot90(out, -self.turns, axes=(-2, -1)))


_GEOMETRIC = (
    Symmetry(),
    Symmetry(turns=2),
    Symmetry(turns=1),
    Symmetry(turns=3),
    *(Symmetry(turns=k, mirror=True) for k in (0, 2, 1, 3)),
)
_SIGNED = tuple(Symmetry(g.turns, g.mirror, negate) for g in _GEOMETRIC for negate in (False, True))


def symmetry_group(count: int, observable: str) -> tuple[Symmetry, ...]:
    """The ``count`` symmetries averaged over for ``observable``.

    Parameters
    ----------
    count : int
        One of :data:`enhance_hmi.settings.SYMMETRY_COUNTS` (1, 2, 4, 8).
    observable : {"continuum", "magnetogram"}
        Magnetograms also change sign; continuum images do not.

    Returns
    -------
    tuple of Symmetry
        A whole group, the identity first.

    Raises
    ------
    ConfigError
        ``count`` is not an int of :data:`~enhance_hmi.settings.SYMMETRY_COUNTS`,
        or the observable is unknown.
    """
    if observable not in ("continuum", "magnetogram"):
        raise ConfigError(f"unknown observable {observable!r}; use continuum or magnetogram")
    check_symmetries(count)
    members = _SIGNED if observable == "magnetogram" else _GEOMETRIC
    return members[:count]
