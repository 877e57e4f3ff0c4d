"""The small 28 cm truth shipped with the package, for the default twin report.

``enhance_hmi/data/truth/muram_quiet_ic_heldout.fits``: the held-out columns of
a MURaM quiet-Sun snapshot [1]_ (pixels the shipped networks never saw), in
quiet-Sun units; its source, licence and making are in the README beside
it. A workflow twin whose ``scene`` is :data:`SAMPLE_SCENE` uses it.

References
----------
.. [1] Vögler, A. et al. (2005), "Simulations of magneto-convection in the
   solar photosphere", A&A 429, 335 (MURaM).
"""

from __future__ import annotations

from pathlib import Path

from enhance_hmi.errors import InputError

__all__ = ["SAMPLE_SCENE", "shipped_truth", "resolve_scene"]

#: ``scene`` value naming the shipped truth crop.
SAMPLE_SCENE = "sample"
_TRUTH = Path(__file__).resolve().parents[1] / "data" / "truth" / "muram_quiet_ic_heldout.fits"


def shipped_truth() -> Path:
    """Path of the shipped truth crop.

    Raises
    ------
    InputError
        The package was installed without its data files.
    """
    if not _TRUTH.is_file():
        raise InputError(
            f"the shipped truth crop {_TRUTH} is missing; reinstall enhance with its data files"
        )
    return _TRUTH


def resolve_scene(scene: str) -> Path:
    """A twin's scene path: :func:`shipped_truth` for :data:`SAMPLE_SCENE`, else ``scene``."""
    return shipped_truth() if str(scene).strip() == SAMPLE_SCENE else Path(scene)
