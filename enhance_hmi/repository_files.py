"""The workflow's files beside the package: ``profiles/``, ``config/examples/``, the schema.

In a checkout (and an editable install) they are the repository's own
directories, next to ``workflow/``. A wheel has no repository around it, so
its build (``setup.py``) puts a copy of each under ``enhance_hmi/data/`` at the
same relative path; :func:`repository_path` finds whichever this installation
has.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

__all__ = ["BUNDLED_ROOT", "CHECKOUT_ROOT", "repository_path"]

BUNDLED_ROOT = Path(__file__).resolve().parent / "data"
"""Where a wheel keeps its copy of ``profiles/`` and ``config/examples/``."""

CHECKOUT_ROOT = Path(__file__).resolve().parents[1]
"""The repository around the package, when it was installed from (or runs in) a checkout."""


def repository_path(relative: str) -> Path:
    """Return the installed path of a repository file or directory.

    Parameters
    ----------
    relative : str
        Path relative to the repository root, with ``/`` separators (for
        example ``"profiles/slurm"`` or ``"config/examples"``).

    Returns
    -------
    pathlib.Path
        The wheel's copy under :data:`BUNDLED_ROOT` when it exists, else the
        path in :data:`CHECKOUT_ROOT`. The wheel's copy comes first because
        the directory above an installed package is ``site-packages``, where
        another distribution may have put a directory of the same name. The
        path may not exist (a copied package without its repository):
        callers report that with what to do.
    """
    parts = PurePosixPath(relative).parts
    if not parts or PurePosixPath(relative).is_absolute() or ".." in parts:
        raise ValueError(f"{relative!r} is not a path inside the repository")
    bundled = BUNDLED_ROOT.joinpath(*parts)
    return bundled if bundled.exists() else CHECKOUT_ROOT.joinpath(*parts)
