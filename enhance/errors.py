"""The exception and warning hierarchy of the package.

Every error a user can cause derives from :class:`EnhanceError` and carries a
message that says what was wrong and what to do. The command-line interface
turns these into a one-line message and a non-zero exit code.
"""

from __future__ import annotations

__all__ = [
    "EnhanceError",
    "InputError",
    "OutputError",
    "WeightsError",
    "ConfigError",
    "JsocError",
    "CubeError",
    "TrainingError",
    "ReportError",
    "EnhanceWarning",
]


class EnhanceError(Exception):
    """Base class of every error raised on purpose by ``enhance``."""


class InputError(EnhanceError, ValueError):
    """An input file or array is unusable (not FITS, not 2-D, all NaN, ...)."""


class OutputError(EnhanceError, OSError):
    """An output cannot be written (directory missing or not writable, ...)."""


class WeightsError(EnhanceError):
    """Network weights are missing, corrupt or do not match their sidecar."""


class ConfigError(EnhanceError, ValueError):
    """A configuration value or command-line option is invalid."""


class JsocError(EnhanceError):
    """Querying, exporting or downloading from JSOC (or a mirror) failed."""


class CubeError(EnhanceError):
    """An HDF5 time cube is inconsistent or cannot be appended to."""


class TrainingError(EnhanceError):
    """Training cannot proceed (no usable scenes, bad checkpoint, ...)."""


class ReportError(EnhanceError):
    """A validation report cannot be produced (no overlap, bad target, ...)."""


class EnhanceWarning(UserWarning):
    """Something worked but deserves the user's attention."""
