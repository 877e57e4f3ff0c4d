"""The projection onto the input, on the CPU or on the network's device.

The projection itself (conjugate-gradient least squares on HMI's view of
the enhanced image, stopped at the input noise by the discrepancy
principle [1]_ [2]_) and everything it needs are defined once, in numpy and
scipy, in :mod:`enhance_hmi.physics.projection` and
:mod:`enhance_hmi.physics.noise`; import them from there when torch is not
wanted (a Snakefile, a settings object). This module adds the ``backend``
choice: ``"torch"`` runs the same iterations with the torch mirrors of the
operator (:class:`enhance_hmi.inference.forward_model.TorchForwardModel`)
and of the noise estimate
(:func:`enhance_hmi.inference.device_noise.input_noise_on`) on the
device the network ran on. The names it has always offered are re-exported.

References
----------
.. [1] Díaz Baso, C. J. & Asensio Ramos, A. (2018), A&A 614, A5, Sect. 4
   (forward consistency of the network output).
.. [2] Morozov, V. A. (1966), Soviet Math. Dokl. 7, 414 (the discrepancy
   principle).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import numpy as np

from enhance_hmi.errors import ConfigError
from enhance_hmi.inference.forward_model import BACKENDS
from enhance_hmi.physics import projection
from enhance_hmi.physics.disk import CONSTRAINED_RADIUS, constraint_region
from enhance_hmi.physics.noise import (
    GIVEN_NOISE_FACTOR,
    NOISE_ESTIMATES,
    QUIET_SUN_FRACTION_MIN,
    input_noise_in_data_units,
    noise_estimate_for,
    parse_input_noise,
    quiet_sun_fraction,
    resolve_noise_estimate,
    warn_if_field_dominated,
    warn_if_given_noise_implausible,
)
from enhance_hmi.physics.projection import (
    GOAL_LANDING,
    NOISE_SOURCES,
    STALL_FRACTION,
    Projection,
    recipe_noise_estimate,
)

__all__ = [
    "BACKENDS",
    "CONSTRAINED_RADIUS",
    "GIVEN_NOISE_FACTOR",
    "GOAL_LANDING",
    "NOISE_ESTIMATES",
    "NOISE_SOURCES",
    "QUIET_SUN_FRACTION_MIN",
    "STALL_FRACTION",
    "Projection",
    "constraint_region",
    "input_noise_in_data_units",
    "noise_estimate_for",
    "parse_input_noise",
    "project_as_recipe",
    "project_to_observation",
    "quiet_sun_fraction",
    "recipe_noise_estimate",
    "resolve_noise_estimate",
    "warn_if_field_dominated",
    "warn_if_given_noise_implausible",
]


def _backend(backend: str, device: object) -> dict[str, Any]:
    """The ``operator`` and ``estimate_noise`` of the physics projection for ``backend``."""
    if backend not in BACKENDS:
        raise ConfigError(f"unknown projection backend {backend!r}; use {' or '.join(BACKENDS)}")
    if backend == "numpy":
        return {}
    from enhance_hmi.inference.device_noise import input_noise_on
    from enhance_hmi.inference.forward_model import TorchForwardModel

    return {
        "operator": functools.partial(TorchForwardModel, device=device),
        "estimate_noise": functools.partial(input_noise_on, device=device),
    }


def project_to_observation(
    enhanced: object,
    observed: object,
    *,
    backend: str = "numpy",
    device: object = None,
    **options: Any,
) -> tuple[np.ndarray, Projection]:
    """:func:`enhance_hmi.physics.projection.project_to_observation` on ``backend``.

    Parameters
    ----------
    enhanced, observed : array_like
        As :func:`~enhance_hmi.physics.projection.project_to_observation`.
    backend : {"numpy", "torch"}
        Array library of the iterations and of the noise estimate; both
        give the same image within float32 rounding.
    device : torch.device or str, optional
        Where the torch backend runs (default the CPU): the network's
        device, so a GPU run iterates on the GPU and estimates the input
        noise there.
    **options
        ``noise``, ``discrepancy``, ``max_iterations``, ``psf_model``,
        ``border``, ``noise_estimate`` and ``disk``
        (:func:`~enhance_hmi.physics.projection.project_to_observation`).

    Raises
    ------
    ConfigError
        An unknown ``backend``, or as the physics projection.
    """
    return projection.project_to_observation(
        enhanced, observed, **_backend(backend, device), **options
    )


def project_as_recipe(
    enhanced: object,
    observed: object,
    meta: Mapping[str, Any],
    *,
    backend: str = "numpy",
    device: object = None,
    **options: Any,
) -> tuple[np.ndarray, Projection]:
    """:func:`enhance_hmi.physics.projection.project_as_recipe` on ``backend``.

    The projection :func:`enhance_hmi.inference.enhance_frame` applies:
    the settings the weights sidecar ``meta`` records, ``noise``,
    ``noise_estimate`` and ``disk`` passed on as ``options``; ``backend``
    and ``device`` as :func:`project_to_observation`.
    """
    return projection.project_as_recipe(
        enhanced, observed, meta, **_backend(backend, device), **options
    )
