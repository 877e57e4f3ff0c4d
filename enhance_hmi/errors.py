"""The exception and warning hierarchy of the package.

Every error a user can cause derives from :class:`EnhanceError` and carries a
message that says what was wrong and what to do. The command-line interface
turns these into a one-line message and a non-zero exit code.

A result that was produced but carries a caveat about the data (an image
left unrotated, a unit taken on trust, a truth too coarse for its target)
is reported with a subclass of :class:`EnhanceWarning` through
:mod:`warnings`, so library users see it, can filter it by class, and test
suites that turn warnings into errors catch it. The subclass's name says the
caveat.
"""

from __future__ import annotations

__all__ = [
    "EnhanceError",
    "InputError",
    "HeaderLimitError",
    "CorruptDataError",
    "OutputError",
    "WeightsError",
    "ConfigError",
    "TimeFormatError",
    "JsocError",
    "CubeError",
    "TrainingError",
    "ReportError",
    "EnhanceWarning",
    "NotNorthUpWarning",
    "UnexpectedUnitWarning",
    "NotQuietSunUnitsWarning",
    "CoarseTruthWarning",
    "FieldDominatedNoiseWarning",
    "FamilyFloorWarning",
]


class EnhanceError(Exception):
    """Base class of every error raised on purpose by ``enhance``."""


class InputError(EnhanceError, ValueError):
    """An input file or array is unusable (not FITS, not 2-D, all NaN, ...)."""


class HeaderLimitError(InputError):
    """A FITS header claims sizes or parameters beyond what ``enhance`` reads.

    Raised from the header alone, before any data is read or allocated (a
    damaged or hostile header claiming 100000 x 100000 pixels); see
    :mod:`enhance_hmi.io.header_limits`.
    """


class CorruptDataError(InputError):
    """The compressed data of a FITS file do not decode to what they claim to hold.

    See :mod:`enhance_hmi.io.tile_integrity`: the check for files that carry no
    ``DATASUM`` to verify their data against.
    """


class OutputError(EnhanceError, OSError):
    """An output cannot be written (directory missing or not writable, ...)."""


class WeightsError(EnhanceError):
    """Network weights are missing, corrupt or do not match their sidecar."""


class ConfigError(EnhanceError, ValueError):
    """A configuration value or command-line option is invalid."""


class TimeFormatError(ConfigError, InputError):
    """A time (option, configuration value or keyword) is not a time ``enhance`` reads.

    Both a :class:`ConfigError` and an :class:`InputError`: the same text can
    come from a user's configuration or from a file.
    """


class JsocError(EnhanceError):
    """Querying, exporting or downloading from JSOC (or a mirror) failed."""


class CubeError(EnhanceError):
    """An HDF5 time cube is inconsistent or cannot be appended to."""


class TrainingError(EnhanceError):
    """Training cannot proceed (no usable scenes, bad checkpoint, ...)."""


class ReportError(EnhanceError):
    """A validation report cannot be produced (no overlap, bad target, ...)."""


class EnhanceWarning(UserWarning):
    """Something worked but deserves the user's attention (base of the caveats below)."""


class NotNorthUpWarning(EnhanceWarning):
    """The image is rotated by neither ~0 nor ~180 degrees (an SDO roll) and was kept as it is.

    The data are not north up; the WCS in the header carries the angle.
    """


class UnexpectedUnitWarning(EnhanceWarning):
    """``BUNIT`` is not a unit ``enhance`` expects for the observable; the values were used."""


class NotQuietSunUnitsWarning(EnhanceWarning):
    """A continuum image said to be in quiet-Sun units has a median far from 1."""


class CoarseTruthWarning(EnhanceWarning):
    """A truth image is coarser than the target grid: the target is not a faithful 28 cm image."""


class FieldDominatedNoiseWarning(EnhanceWarning):
    """Too little of a magnetogram is quiet Sun for the histogram-core noise estimate.

    The core of the value histogram measures field there, several times the
    true noise: the "histogram" estimate then makes the projection onto the
    input barely act, and the "auto" estimate falls back to the spectral
    level beyond HMI's cutoff, right for white noise but low for noise
    correlated between pixels (2-3x on real hmi.M_720s frames), so the
    projection fits some noise. Pass the input noise (``enhance predict
    --input-noise``).
    """


class ImplausibleInputNoiseWarning(EnhanceWarning):
    """A given input noise is far from the frame's own estimate.

    More than :data:`enhance_hmi.inference.consistency.GIVEN_NOISE_FACTOR` times
    above it, the projection onto the input barely acts; as far below, it
    fits the input's noise. Usually a wrong unit (``10 kG`` for ``10 G``).
    """


class FamilyFloorWarning(EnhanceWarning):
    """No weight of the family's spread keeps every held-out cell at the coverage floor.

    ``enhance fit-uncertainty`` fits the weight of the forward-model family's
    error variance (:mod:`enhance_hmi.training.family_calibration`) as the
    smallest that keeps every region, member and noise level at or above
    60 / 90 % coverage; when even the largest weight tried does not, that
    weight is kept and sigma told nothing is under-covered somewhere.
    """


class SigmaCalibrationMismatchWarning(EnhanceWarning):
    """Sigma was calibrated for one output and is written with another.

    The uncertainty head's map was fitted against the network output
    projected onto its input (or against the un-projected output) and the
    frame was enhanced the other way (``consistency``), so its coverage on
    held-out truth was not measured for this output; the sigma header's
    ``ENHSGCDS`` says which is which.
    """
