"""The one scorer of the package: every method of a case against its truth.

:func:`evaluate` runs the classical baselines of
:mod:`enhance_hmi.validation.baselines` (bicubic, unsharp masking,
Richardson-Lucy, Tikhonov, and the linear filter fitted on the truth as a
bound) on the HMI input of a :class:`~enhance_hmi.validation.report.case.ValidationCase`
and computes the metrics of :mod:`enhance_hmi.validation.metrics` for each method
against the truth. Validation reports (twins, Hinode targets) and
``enhance evaluate`` (held-out regions, :mod:`enhance_hmi.validation.heldout`)
both score through it.

The quiet-Sun mask (:func:`enhance_hmi.validation.metrics.quiet_sun_mask`) is
computed once on the truth and applied to every image, so all contrasts are
measured over the same pixels; on the 0.504"/px input an input pixel is quiet
when all four 0.252"/px pixels it covers are.

References
----------
.. [1] Díaz Baso, C. J. & Asensio Ramos, A. (2018), "Enhancing SDO/HMI images
   using deep learning", A&A 614, A5, Sect. 4 (contrast, power spectra,
   Richardson-Lucy comparison, forward consistency, 1 kG amplification).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import astropy.units as u
import numpy as np

from enhance_hmi.errors import ReportError
from enhance_hmi.validation import baselines, metrics
from enhance_hmi.validation.report.case import (
    BOUNDS,
    METHODS,
    TRUTH_SCALE,
    Evaluation,
    ValidationCase,
)

__all__ = ["RL_ITERATIONS", "evaluate"]

#: Richardson-Lucy iterations of the baseline (scikit-image default regime;
#: the paper [1]_ shows that more iterations amplify noise further).
RL_ITERATIONS = 20


def _finite(value: float | None) -> float | None:
    """JSON-safe number: NaN and infinities become None."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _coarse_mask(mask: np.ndarray) -> np.ndarray:
    """Quiet on the 0.504"/px grid: all 2x2 fine pixels quiet."""
    ny, nx = mask.shape[0] // 2, mask.shape[1] // 2
    return np.asarray(mask[: 2 * ny, : 2 * nx].reshape(ny, 2, nx, 2).all(axis=(1, 3)))


def _method_metrics(
    image: np.ndarray,
    truth: np.ndarray,
    observable: str,
    mask: np.ndarray,
    truth_stats: dict[str, Any],
    forward_residual: float | None,
) -> dict[str, float | None]:
    """The scores of one method's image against the truth (one table row)."""
    out: dict[str, float | None] = {
        "psnr": _finite(metrics.psnr(image, truth)),
        "ssim": _finite(metrics.ssim(image, truth)),
        "pearson": _finite(metrics.pearson(image, truth)),
        "spectrum_distance": _finite(
            metrics.spectrum_distance(image, truth, pixel_scale=TRUTH_SCALE)
        ),
        "forward_residual": _finite(forward_residual),
    }
    if observable == "continuum":
        contrast = metrics.rms_contrast(image, mask)
        out["rms_contrast"] = _finite(contrast)
        out["contrast_difference_pp"] = _finite(
            100.0 * (contrast - truth_stats["rms_contrast"])
            if truth_stats["rms_contrast"] is not None
            else None
        )
        out["umbral_intensity"] = _finite(metrics.umbral_intensity(image))
    else:
        flux = metrics.unsigned_flux(image, metrics.solar_pixel_area(TRUTH_SCALE)).to_value(u.Mx)
        out["unsigned_flux_Mx"] = _finite(flux)
        ref = truth_stats["unsigned_flux_Mx"]
        out["unsigned_flux_ratio"] = _finite(flux / ref if ref else None)
        out["noise_level_G"] = _finite(metrics.noise_level(image, mask))
        out["amplification_1kG"] = _finite(metrics.field_amplification(image, truth))
    return out


def _inner(image: np.ndarray, border: int) -> np.ndarray:
    """``image`` without ``border`` pixels at each edge."""
    return image[border:-border, border:-border] if border else image


def evaluate(
    case: ValidationCase, *, rl_iterations: int = RL_ITERATIONS, border: int = 0
) -> Evaluation:
    """Compute the baselines and every metric of ``case`` against its truth.

    Long because it assembles the flat metrics document; the scores come from named
    steps, and a further split would only pass the document's parts along.

    Parameters
    ----------
    case : ValidationCase
    rl_iterations : int
        Richardson-Lucy iterations of the baseline.
    border : int
        Even number of 0.252"/px pixels left out at each edge of every image
        before scoring (``border // 2`` on the HMI grid). Every method still
        runs on the whole field, and the forward residual is measured on the
        whole field. 0: score everything, edges included.

    Returns
    -------
    Evaluation
        ``images`` (``truth`` and each of :data:`METHODS` at 0.252"/px, whole
        field), ``metrics`` (the JSON document without provenance) and the
        quiet-Sun mask used (scored region).

    Raises
    ------
    ReportError
        ``border`` is odd, negative or leaves fewer than 8 pixels.

    References
    ----------
    .. [1] Díaz Baso & Asensio Ramos (2018), A&A 614, A5, Sect. 4.
    """
    border = _checked_border(border, case.truth.shape)
    images: dict[str, np.ndarray] = {
        "bicubic": baselines.bicubic(case.hmi),
        "unsharp": baselines.unsharp_mask(case.hmi),
        "richardson_lucy": baselines.richardson_lucy(
            case.hmi, psf_model=case.psf_model, iterations=rl_iterations
        ),
        "tikhonov": baselines.tikhonov(case.hmi, psf_model=case.psf_model),
        "enhance": case.enhanced,
        "oracle_linear": baselines.oracle_linear(case.hmi, case.truth),
    }
    truth, hmi = _inner(case.truth, border), _inner(case.hmi, border // 2)
    kind = "continuum" if case.observable == "continuum" else "blos"
    mask = metrics.quiet_sun_mask(truth, kind=kind)
    residual_stats = _forward_residual_stats(case, images, kind=kind, border=border)
    residuals = {name: stats["relative"] for name, stats in residual_stats.items()}
    truth_stats, hmi_stats = _reference_stats(
        truth, hmi, mask, case.observable, truth_residual=residuals["truth"]
    )
    table = {
        m: _method_metrics(
            _inner(images[m], border), truth, case.observable, mask, truth_stats, residuals[m]
        )
        for m in (*METHODS, *BOUNDS)
    }
    if case.observable == "magnetogram":
        table["enhance"]["amplification_1kG_vs_bicubic"] = _finite(
            metrics.field_amplification(
                _inner(images["enhance"], border), _inner(images["bicubic"], border)
            )
        )
    doc = {
        "target": case.name,
        "kind": case.kind,
        "observable": case.observable,
        "truth": case.truth_label,
        "units": "quiet-Sun intensity" if case.observable == "continuum" else "G",
        "pixel_scale_arcsec": TRUTH_SCALE.to_value(u.arcsec),
        "shape": list(case.truth.shape),
        "hmi_shape": list(case.hmi.shape),
        "border_px": border,
        "psf_model": case.psf_model,
        "richardson_lucy_iterations": int(rl_iterations),
        "spectrum_band_px": list(metrics.SPECTRUM_BAND),
        "spectrum_band_arcsec": [
            float(f) for f in metrics.spectrum_band(TRUTH_SCALE).to_value(1 / u.arcsec)
        ],
        "quiet_sun_fraction": float(mask.mean()),
        "methods": table,
        "forward_residuals": {
            name: {k: _finite(v) for k, v in stats.items()}
            for name, stats in residual_stats.items()
        },
        "truth_stats": truth_stats,
        "hmi_input": hmi_stats,
        "summary": _summary(table, case.observable),
        "alignment": case.alignment,
        "context": case.context,
        "notes": list(case.notes),
    }
    images["truth"] = case.truth
    return Evaluation(images=images, metrics=doc, quiet_mask=mask)


def _checked_border(border: int, shape: tuple[int, ...]) -> int:
    """``border`` as an int, refused unless even, >= 0 and leaving 8 pixels of ``shape``."""
    border = int(border)
    if border < 0 or border % 2 or min(shape) - 2 * border < 8:
        raise ReportError(
            f"border must be an even number of pixels leaving at least 8; got {border} "
            f"for a {shape} truth"
        )
    return border


def _forward_residual_stats(
    case: ValidationCase, images: Mapping[str, np.ndarray], *, kind: str, border: int
) -> dict[str, dict[str, float | None]]:
    """Forward residual statistics of each image and of the truth against the HMI input.

    Inside the border, in the input's noise, per region of the input; the
    quiet-Sun figure only where there is quiet Sun, the noise over the mask's
    fallback to every finite pixel otherwise (what ``quiet_sun_mask`` returns
    by default).
    """
    quiet_only = metrics.quiet_sun_mask(case.hmi, kind=kind, fallback=False)
    quiet_in = quiet_only if quiet_only.any() else np.isfinite(case.hmi)
    if case.observable == "continuum":
        noise_in = baselines.spectral_noise_sigma_hmi(case.hmi)
        field_in = ~quiet_in
    else:
        noise_in = metrics.noise_level(case.hmi, quiet_in)
        field_in = metrics.field_mask(case.hmi, noise_in)
    pixels_in = None if case.observable == "continuum" else metrics.field_pixel_mask(case.hmi)
    return {
        name: metrics.forward_residual_stats(
            image,
            case.hmi,
            noise=noise_in,
            field=field_in,
            quiet=quiet_only if quiet_only.any() else None,
            field_pixels=pixels_in,
            psf_model=case.psf_model,
            border=border // 2,
        )
        for name, image in [*images.items(), ("truth", case.truth)]
    }


def _reference_stats(
    truth: np.ndarray,
    hmi: np.ndarray,
    mask: np.ndarray,
    observable: str,
    *,
    truth_residual: float | None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The scored statistics of the truth and of the HMI input (quiet Sun: ``mask``)."""
    coarse = _coarse_mask(mask)
    truth_stats: dict[str, Any] = {"forward_residual": _finite(truth_residual)}
    hmi_stats: dict[str, Any] = {}
    if observable == "continuum":
        truth_stats["rms_contrast"] = _finite(metrics.rms_contrast(truth, mask))
        truth_stats["umbral_intensity"] = _finite(metrics.umbral_intensity(truth))
        hmi_stats["rms_contrast"] = _finite(metrics.rms_contrast(hmi, coarse))
    else:
        flux = metrics.unsigned_flux(truth, metrics.solar_pixel_area(TRUTH_SCALE)).to_value(u.Mx)
        truth_stats["unsigned_flux_Mx"] = _finite(flux)
        truth_stats["noise_level_G"] = _finite(metrics.noise_level(truth, mask))
        hmi_flux = metrics.unsigned_flux(hmi, metrics.solar_pixel_area(2 * TRUTH_SCALE)).to_value(
            u.Mx
        )
        hmi_stats["unsigned_flux_Mx"] = _finite(hmi_flux)
        hmi_stats["noise_level_G"] = _finite(metrics.noise_level(hmi, coarse))
    return truth_stats, hmi_stats


def _summary(table: dict[str, dict[str, Any]], observable: str) -> dict[str, Any]:
    """Enhance against the classical methods and the linear bound, as yes/no and dB.

    ``best_*`` name the best of :data:`METHODS` (bounds excluded); a
    comparison is None when a score it needs is undefined.
    """

    def best(key: str, higher: bool) -> str | None:
        vals = {m: table[m][key] for m in METHODS if table[m][key] is not None}
        if not vals:
            return None
        return (max if higher else min)(vals, key=vals.__getitem__)

    def beats(key: str, higher: bool, rivals: tuple[str, ...]) -> bool | None:
        mine = table["enhance"][key]
        others = [table[m][key] for m in rivals]
        if mine is None or any(v is None for v in others):
            return None
        return all(mine > v if higher else mine < v for v in others)

    classical = ("bicubic", "richardson_lucy")
    out: dict[str, Any] = {
        "best_psnr": best("psnr", True),
        "best_spectrum": best("spectrum_distance", False),
        "enhance_beats_bicubic_and_rl_psnr": beats("psnr", True, classical),
        "enhance_beats_bicubic_and_rl_spectrum": beats("spectrum_distance", False, classical),
        "enhance_beats_tikhonov_psnr": beats("psnr", True, ("tikhonov",)),
    }
    bound, mine = table["oracle_linear"]["psnr"], table["enhance"]["psnr"]
    out["enhance_minus_linear_bound_db"] = None if bound is None or mine is None else mine - bound
    if observable == "continuum":
        diff = table["enhance"]["contrast_difference_pp"]
        out["enhance_contrast_within_1pp"] = None if diff is None else abs(diff) <= 1.0
    return out
