"""Input harmonisation: HMI data made under one forward model, filtered as if made under another.

A network trained for one member ``T`` of the HMI forward-model family
(:mod:`enhance_hmi.physics.forward_family`) meets data that the user says
were made by member ``M``. Without retraining, the data can be filtered on
their own 0.504" grid so that their signal has ``T``'s transfer function
instead of ``M``'s; the network then runs as usual.

The filter. With ``T_M``, ``T_T`` the two members' 2-D transfer functions at
the input sampling (:meth:`ForwardModelSpec.otf`, real and positive inside
the Nyquist frequency) and the data ``Y = T_M S + N`` (sky ``S``, white noise
``N`` of variance ``sigma^2``), the data had they been observed under ``T``
with the same noise are ``Y_T = Y + (T_T - T_M) S``. The linear
minimum-mean-square-error (Wiener [1]_) estimate of ``(T_T - T_M) S`` from
``Y`` gives::

    R(f) = 1 + (T_T(f) - T_M(f)) T_M(f) / (T_M(f)^2 + lambda(f)),
    lambda(f) = P_N / P_S(f),

the Wiener regularisation: noise power over sky power per frequency. Both
are measured on the input itself: ``P_N = sigma^2 p^2`` (white noise) and
``T_M^2 P_S = P_Y - P_N`` from the input's radially averaged, Hann-windowed
power spectrum ``P_Y`` (:func:`enhance_hmi.physics.spectrum.radial_power_spectrum`),
so that ``T_M^2 / (T_M^2 + lambda) = max(1 - P_N / P_Y, 0)`` and::

    R(f) = 1 + (T_T(f) / T_M(f) - 1) max(1 - P_N / P_Y(|f|), 0).

Where the signal dominates the filter swaps the transfer functions
(``R = T_T / T_M``); where the noise does it leaves the data alone
(``R = 1``), so the noise keeps the level the network was trained with
instead of being amplified or removed. The gain is then capped at
:data:`MAX_GAIN`. When ``M`` is ``T`` the filter is the identity and
:func:`harmonise` returns the input unchanged, bit for bit.

``form="wiener"`` instead estimates the noise-free ``T_T S`` (the textbook
Wiener ratio ``T_T T_M / (T_M^2 + lambda)``, which also removes the noise
where it dominates); the network was trained on noisy inputs, and on the
bundled held-out truth this form scored 0.05-0.25 dB lower under every other member
(``docs/forward_models.md``).

Approximations, stated: the filter acts on the input grid and treats the
observed spectrum at ``f`` as ``T_M(f) S(f)``, ignoring the aliasing of
the 0.504" sampling (the sky beyond the Nyquist frequency folded back);
near the Nyquist frequency, where aliasing is largest, the signal is below
the noise of an HMI frame and ``R`` is close to 1. The sky power is taken
as isotropic (radially averaged), and the noise as white.

References
----------
.. [1] Wiener, N. (1949), *Extrapolation, Interpolation, and Smoothing of
   Stationary Time Series*, MIT Press; the frequency-domain form as in
   Gonzalez, R. C. & Woods, R. E., *Digital Image Processing*, Sect. 5.8.
.. [2] Goodman, J. W., *Introduction to Fourier Optics*, Sect. 6.4 (the
   square pixel's transfer function).
"""

from __future__ import annotations

import logging

import astropy.units as u
import numpy as np
from scipy import fft as sfft

from enhance_hmi.errors import ConfigError, InputError
from enhance_hmi.physics.constants import HMI_PIXEL_SCALE, to_arcsec
from enhance_hmi.physics.forward_family import ForwardModelSpec
from enhance_hmi.physics.spectrum import radial_power_spectrum

__all__ = ["HARMONISE_FORMS", "MAX_GAIN", "harmonise", "harmonising_filter", "signal_fraction"]

log = logging.getLogger(__name__)

#: The largest gain of the filter at any frequency: a told member blurrier
#: than the trained one is sharpened by at most this factor, so that the
#: noise at a frequency the signal barely dominates is amplified at most
#: this much (the Wiener weight already keeps the gain near 1 where the
#: noise dominates). Chosen on the bundled held-out truth at noise 1e-3
#: among 1.25, 2 and 4 (docs/forward_models.md): 4 scored best on average.
MAX_GAIN = 4.0
#: The filters :func:`harmonising_filter` builds (see the module's docstring).
HARMONISE_FORMS = ("same_noise", "wiener")


def harmonising_filter(
    shape: tuple[int, int],
    *,
    told: ForwardModelSpec,
    trained: ForwardModelSpec,
    pixel_scale: u.Quantity,
    frequency: np.ndarray,
    signal_fraction: np.ndarray,
    max_gain: float = MAX_GAIN,
    form: str = "same_noise",
) -> np.ndarray:
    """The filter ``R`` of the module's docstring for ``numpy.fft.rfft2`` spectra of ``shape``.

    Parameters
    ----------
    shape : (int, int)
        The grid the filter multiplies the real FFT of.
    told, trained : ForwardModelSpec
        The member the data came from (``M``) and the one the network was
        trained for (``T``).
    pixel_scale : `~astropy.units.Quantity`
        The grid's pixel (0.504").
    frequency, signal_fraction : numpy.ndarray
        ``max(1 - P_N / P_Y, 0)`` tabulated against the radial frequency
        (cycles per arcsec, increasing); read off by linear interpolation,
        held constant beyond the ends.
    max_gain : float
        Cap of ``R``.
    form : {"same_noise", "wiener"}
        :data:`HARMONISE_FORMS`.

    Returns
    -------
    numpy.ndarray
        float64 of shape ``(shape[0], shape[1] // 2 + 1)``, real and even.
    """
    if form not in HARMONISE_FORMS:
        raise ConfigError(f"unknown harmonisation form {form!r}; use one of {HARMONISE_FORMS}")
    if not max_gain >= 1:
        raise ConfigError(f"max_gain must be >= 1; got {max_gain!r}")
    scale = to_arcsec(pixel_scale, "pixel_scale")
    fy = np.fft.fftfreq(shape[0], d=scale)[:, None]
    fx = np.fft.rfftfreq(shape[1], d=scale)[None, :]
    ratio = trained.otf(fy, fx) / np.maximum(told.otf(fy, fx), 1e-12)
    weight = np.interp(np.hypot(fy, fx), frequency, signal_fraction)
    gain = 1.0 + (ratio - 1.0) * weight if form == "same_noise" else ratio * weight
    gain[0, 0] = 1.0  # the mean is the mean under every member
    out: np.ndarray = np.minimum(gain, float(max_gain))
    return out


def harmonise(
    image: object,
    *,
    told: ForwardModelSpec,
    trained: ForwardModelSpec,
    noise: float,
    pixel_scale: u.Quantity = HMI_PIXEL_SCALE,
    max_gain: float = MAX_GAIN,
    form: str = "same_noise",
    fraction: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """Filter an HMI input made under member ``told`` so that it looks made under ``trained``.

    See the module's docstring for the filter. Non-finite pixels are filled
    with the median of the finite ones (as the network fills them), the
    image is extended by its mirror images to twice its size (so the
    periodic FFT sees no edge jumps and the real, even filter acts as on
    the image itself), filtered, and the non-finite pixels are put back.

    Parameters
    ----------
    image : array_like
        2-D input at ``pixel_scale`` (continuum or Blos; any units).
    told : ForwardModelSpec
        The member the user says the data were made with.
    trained : ForwardModelSpec
        The member the network was trained for
        (:func:`~enhance_hmi.physics.forward_family.forward_model_of` its sidecar).
    noise : float
        The input's noise (rms per pixel, input units), e.g.
        :func:`enhance_hmi.physics.noise.input_noise`.
    pixel_scale : `~astropy.units.Quantity`
        The input's pixel (0.504").
    max_gain, form
        See :func:`harmonising_filter`.
    fraction : (numpy.ndarray, numpy.ndarray), optional
        :func:`signal_fraction` of ``image`` with ``noise``, when the caller
        has it already; computed here otherwise.

    Returns
    -------
    numpy.ndarray
        float64, the input's shape; the input itself (as float64, same
        values) when ``told == trained``.

    Raises
    ------
    enhance_hmi.errors.InputError
        Not 2-D, or fewer than 16 finite pixels.
    enhance_hmi.errors.ConfigError
        A negative or non-finite noise, a bad ``max_gain`` or ``form``.
    """
    data = np.asarray(image, dtype=np.float64)
    if data.ndim != 2:
        raise InputError(f"harmonise needs a 2-D image; got shape {data.shape}")
    if not (np.isfinite(noise) and noise >= 0):
        raise ConfigError(f"noise must be a finite number >= 0; got {noise!r}")
    if told == trained:
        return data
    filled, finite = _median_filled(data)
    frequency, weight = (
        _signal_fraction(filled, finite, noise, pixel_scale) if fraction is None else fraction
    )
    ny, nx = data.shape
    mirrored = np.pad(filled, ((0, ny), (0, nx)), mode="symmetric")
    gain = harmonising_filter(
        mirrored.shape,
        told=told,
        trained=trained,
        pixel_scale=pixel_scale,
        frequency=frequency,
        signal_fraction=weight,
        max_gain=max_gain,
        form=form,
    )
    spectrum = sfft.rfft2(mirrored, workers=-1) * gain
    out: np.ndarray = sfft.irfft2(spectrum, s=mirrored.shape, workers=-1)[:ny, :nx]
    out[~finite] = data[~finite]
    log.debug(
        "harmonised %s input from %s to %s (max gain %.2f)",
        data.shape,
        told,
        trained,
        float(gain.max()),
    )
    return out


def signal_fraction(
    image: object, *, noise: float, pixel_scale: u.Quantity = HMI_PIXEL_SCALE
) -> tuple[np.ndarray, np.ndarray]:
    """``max(1 - P_N / P_Y, 0)`` of an input against radial frequency: the filter's weight.

    ``P_Y`` is the input's radially averaged power spectrum (measured on its
    central half when it has non-finite pixels, :func:`_spectrum_region`)
    and ``P_N = noise^2 p^2`` that of white noise; see the module's
    docstring. :func:`harmonise` builds its filter with it, and the sigma of
    a told run (:class:`enhance_hmi.model.uncertainty.FamilySigma`) weighs
    what the filter left with it.

    Returns
    -------
    frequency, fraction : numpy.ndarray
        Cycles per arcsec (increasing) and the weight in [0, 1] at each.

    Raises
    ------
    enhance_hmi.errors.InputError
        Fewer than 16 finite pixels.
    """
    filled, finite = _median_filled(np.asarray(image, dtype=np.float64))
    return _signal_fraction(filled, finite, noise, pixel_scale)


def _median_filled(data: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``data`` with its non-finite pixels set to the median of the others, and the finite mask.

    Raises
    ------
    enhance_hmi.errors.InputError
        Fewer than 16 finite pixels.
    """
    finite = np.isfinite(data)
    if finite.sum() < 16:
        raise InputError("harmonise needs at least 16 finite pixels")
    return np.where(finite, data, float(np.median(data[finite]))), finite


def _signal_fraction(
    filled: np.ndarray, finite: np.ndarray, noise: float, pixel_scale: u.Quantity
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`signal_fraction` of an image already filled by :func:`_median_filled`."""
    scale = to_arcsec(pixel_scale, "pixel_scale")
    frequency, power = radial_power_spectrum(_spectrum_region(filled, finite), pixel_scale)
    noise_power = float(noise) ** 2 * scale**2
    fraction = np.clip(1.0 - noise_power / np.maximum(power.to_value(u.arcsec**2), 1e-300), 0, 1)
    return frequency.to_value(1 / u.arcsec), fraction


def _spectrum_region(filled: np.ndarray, finite: np.ndarray) -> np.ndarray:
    """Where the input's own power spectrum is measured: all of it, or its central half.

    An image with non-finite pixels (a full disk's off-limb NaN) is filled
    with the median, and the step between the fill and the limb would add
    power at every frequency, so the filter would treat noise as signal
    (a synthetic full disk told yeo: 2.9x the noise at disk centre). Such an
    image is measured on its central half, which lies on the disk, when that
    is all finite (as :func:`enhance_hmi.physics.noise.spectral_noise_sigma`
    chooses); an image without non-finite pixels is measured whole.
    """
    if finite.all():
        return filled
    ny, nx = filled.shape
    centre = (slice(ny // 4, ny // 4 + ny // 2), slice(nx // 4, nx // 4 + nx // 2))
    return filled[centre] if finite[centre].all() else filled
