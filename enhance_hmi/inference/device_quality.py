"""The torch mirror of the quality figures' array work, on the device the network ran on.

:func:`enhance_hmi.io.frame_quality.frame_quality` leaves its costly measures
(the re-observation of the 2x output, the flux ratio, the quiet-Sun
contrast, the ripple figure's band power) to a :class:`enhance_hmi.io.frame_quality.QualityKernels`;
:class:`TorchQualityKernels` computes them on a device with the same
definitions (:mod:`enhance_hmi.physics.diagnostics`: the quiet-Sun mask and
the field regions; :func:`enhance_hmi.physics.transfer.reobserve_target`),
so the host of a GPU node runs no FFT, filter or median of the frame. The
figures equal the numpy ones within 1e-5 relative (tests/test_fulldisk.py
and tests/test_diagnostics.py hold them to it on the CPU).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from enhance_hmi.inference.device_arrays import binary_dilation, gaussian_filter, median
from enhance_hmi.inference.forward_model import reobserve_target_on
from enhance_hmi.io.frame_quality import FIELD_SNR, MIN_PIXELS, QUIET_RANGE, QualityKernels
from enhance_hmi.physics.spectrum import band_tiles

__all__ = ["TorchQualityKernels"]


class TorchQualityKernels(QualityKernels):
    """The torch mirror of :class:`enhance_hmi.io.frame_quality.QualityKernels`, on ``device``.

    Parameters
    ----------
    device : torch.device or str
        Where to compute (the network's device; "cpu" works too).
    """

    def __init__(self, device: Any) -> None:
        self.device = torch.device(device)

    def _tensor(self, values: np.ndarray, dtype: type) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(values, dtype=dtype)).to(self.device)

    def reobserve(self, enhanced: np.ndarray, psf_model: str) -> np.ndarray:
        """HMI's view of ``enhanced``, computed on the device (:func:`reobserve_target_on`)."""
        return reobserve_target_on(enhanced, psf_model=psf_model, device=self.device)

    def band_power(
        self, image: np.ndarray, band: tuple[float, float], region: np.ndarray | None, tile: int
    ) -> float:
        """:func:`enhance_hmi.physics.spectrum.band_power`, all tiles in one batch on the device."""
        data, origins, weight, window = band_tiles(image, band, region=region, tile=tile)
        if not origins:
            return math.nan
        side = window.shape[0]
        values = self._tensor(data, np.float32)
        cuts = torch.stack([values[y0 : y0 + side, x0 : x0 + side] for y0, x0 in origins])
        cuts = (cuts - cuts.mean(dim=(1, 2), keepdim=True)) * self._tensor(window, np.float32)
        power = torch.fft.rfft2(cuts).abs() ** 2
        per_tile = (power.double() * self._tensor(weight, np.float64)).sum(dim=(1, 2))
        return float(per_tile.mean())

    def flux_ratio(
        self, data: np.ndarray, enhanced: np.ndarray, noise: float, region: np.ndarray | None
    ) -> float:
        """Mean |B| of the output over the input's field regions over the input's there.

        The field regions are the torch mirror of
        :func:`enhance_hmi.physics.diagnostics.field_mask`.
        """
        x = self._tensor(data, np.float64)
        finite = torch.isfinite(x)
        if region is not None:
            finite &= self._tensor(region, bool)
        if not noise > 0 or int(finite.sum()) < MIN_PIXELS:
            return math.nan
        smooth = gaussian_filter(torch.where(finite, x, 0.0), 1.0).abs()
        field = binary_dilation(smooth > FIELD_SNR * noise, square=False, iterations=2) & finite
        del smooth
        ny, nx = x.shape
        y = self._tensor(enhanced[: 2 * ny, : 2 * nx], np.float32)
        out = y.abs().reshape(ny, 2, nx, 2).mean(dim=(1, 3))
        del y
        field &= torch.isfinite(out)
        if int(field.sum()) < MIN_PIXELS:
            return math.nan
        return float(out[field].double().mean() / x[field].abs().mean())

    def quiet_contrast(self, image: np.ndarray, smooth: float) -> float:
        """rms/mean of ``image`` over its quiet Sun (smoothing ``smooth`` pixels).

        The quiet Sun is the torch mirror of
        :func:`enhance_hmi.physics.diagnostics.quiet_sun_mask` (continuum,
        grown by 5 pixels, no fallback).
        """
        values = self._tensor(image, np.float64)
        finite = torch.isfinite(values)
        if int(finite.sum()) < MIN_PIXELS:
            return math.nan
        level = median(values[finite])
        if not level > 0:
            return math.nan
        filled = gaussian_filter(torch.where(finite, values, level), smooth, mode="mirror")
        active = (filled < QUIET_RANGE[0] * level) | (filled > QUIET_RANGE[1] * level)
        del filled
        if bool(active.any()):
            active = binary_dilation(active, square=True, iterations=5)
        quiet = values[finite & ~active]
        if quiet.numel() < MIN_PIXELS:
            return math.nan
        return float(quiet.std(correction=0) / quiet.mean())
