"""The torch mirrors of the forward operator: the projection's and the re-observation.

:class:`TorchForwardModel` is the torch mirror of
:class:`enhance_hmi.physics.projection.ForwardModel` (the ``H / A`` kernel
applied with FFTs on a padded grid, then 2x2 binning, and its exact
adjoint), and :func:`reobserve_target_on` the torch mirror of
:func:`enhance_hmi.physics.transfer.reobserve_target`. Both do the same
float32 arithmetic as the numpy definitions, so the projection onto the
input and the quality figures give the same image and figures on the CPU
and on the device the network ran on (within float32 rounding;
tests/test_fulldisk.py holds them to it): a GPU run iterates on the GPU,
with one copy of the frame there and one back.

References
----------
.. [1] Díaz Baso, C. J. & Asensio Ramos, A. (2018), A&A 614, A5, Sect. 4
   (forward consistency).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from enhance_hmi.errors import InputError
from enhance_hmi.physics.projection import ForwardModel, fast_padded_length
from enhance_hmi.physics.transfer import (
    binnable_image,
    hmi_given_target_transfer,
    reobservation_padding,
)

__all__ = [
    "BACKENDS",
    "ForwardModel",
    "TorchForwardModel",
    "fast_padded_length",
    "forward_model",
    "reobserve_target_on",
]

#: The array libraries the operator runs in.
BACKENDS = ("numpy", "torch")


class TorchForwardModel(ForwardModel):
    """The torch mirror of :class:`enhance_hmi.physics.projection.ForwardModel`.

    The same operator and adjoint in float32 torch tensors on ``device``.

    Parameters
    ----------
    shape_in, margin, psf_model, pixel_integration
        As :class:`~enhance_hmi.physics.projection.ForwardModel`.
    device : torch.device or str, optional
        Where the tensors live (default the CPU).
    """

    backend = "torch"

    def __init__(
        self,
        shape_in: tuple[int, int],
        margin: int,
        psf_model: str,
        *,
        pixel_integration: bool = True,
        device: Any = None,
    ) -> None:
        import torch  # importing this module loads no torch; building the operator does

        super().__init__(shape_in, margin, psf_model, pixel_integration=pixel_integration)
        self._torch = torch
        self.device = torch.device(device or "cpu")
        self.otf = torch.tensor(self.otf, device=self.device)  # the table is read-only

    def array(self, values: np.ndarray) -> Any:
        """``values`` (float32) as a tensor on the device."""
        values = np.ascontiguousarray(values, dtype=np.float32)
        return self._torch.from_numpy(values).to(self.device)

    def to_numpy(self, values: Any) -> np.ndarray:
        """A tensor as a float32 numpy array."""
        out: np.ndarray = values.detach().to("cpu").numpy()
        return out

    def sum_of_squares(self, values: Any) -> float:
        """Sum of squares accumulated in float64."""
        norm = self._torch.linalg.vector_norm(values, dtype=self._torch.float64)
        return float(norm) ** 2

    def _convolve(self, x: Any) -> Any:
        fft = self._torch.fft
        return fft.irfft2(fft.rfft2(x) * self.otf, s=x.shape)

    def _upsample(self, r: Any) -> Any:
        return r.repeat_interleave(2, dim=0).repeat_interleave(2, dim=1) * 0.25


def forward_model(
    shape_in: tuple[int, int],
    margin: int,
    psf_model: str,
    *,
    backend: str = "numpy",
    device: Any = None,
) -> ForwardModel:
    """The projection's forward operator in ``backend`` ("numpy" or "torch" on ``device``).

    Raises
    ------
    ValueError
        An unknown backend.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; use one of {', '.join(BACKENDS)}")
    if backend == "torch":
        return TorchForwardModel(shape_in, margin, psf_model, device=device)
    return ForwardModel(shape_in, margin, psf_model)


def reobserve_target_on(enhanced: object, *, psf_model: str, device: Any) -> np.ndarray:
    """The torch mirror of :func:`enhance_hmi.physics.transfer.reobserve_target`.

    HMI's view of a 28 cm image, computed with torch on ``device``: the
    arithmetic of :func:`enhance_hmi.physics.transfer.reobserve_target` (fill
    non-finite pixels with the mean, mirror padding, the ``H / A`` transfer
    function, 2x2 mean, NaN for every block holding a non-finite pixel) in
    float32 on ``device``, so the quality figures of a frame enhanced on a
    GPU need no FFT on its host: equal to it within float32 rounding.

    Parameters
    ----------
    enhanced : array_like
        2-D enhanced image at 0.252"/px (any units).
    psf_model : str
        HMI PSF model (:func:`enhance_hmi.physics.hmi_psf`).
    device : torch.device or str
        Where to compute ("cpu" works too).

    Returns
    -------
    numpy.ndarray
        float64, as :func:`~enhance_hmi.physics.transfer.reobserve_target`'s.

    Raises
    ------
    InputError
        As :func:`~enhance_hmi.physics.transfer.reobserve_target`.
    """
    import torch

    from enhance_hmi.inference.device_arrays import pad_axis

    data = binnable_image(enhanced, np.float32)
    ny, nx = data.shape
    image = torch.from_numpy(np.ascontiguousarray(data)).to(device)
    finite = torch.isfinite(image)
    if not bool(finite.any()):
        raise InputError("enhanced image has no finite pixels; nothing to re-observe")
    level = float(image[finite].mean(dtype=torch.float64))
    filled = torch.where(finite, image, level) - level
    del image
    (pad, after_y), (_, after_x) = reobservation_padding((ny, nx), psf_model)
    # numpy's "symmetric" mirror (edge pixel repeated) of reobserve_target
    padded = pad_axis(pad_axis(filled, 0, pad, after_y), 1, pad, after_x)
    del filled
    table = hmi_given_target_transfer(tuple(padded.shape), psf_model=psf_model)  # read-only
    spectrum = torch.fft.rfft2(padded) * torch.tensor(table, dtype=torch.float32, device=device)
    blurred = torch.fft.irfft2(spectrum, s=tuple(padded.shape))[pad : pad + ny, pad : pad + nx]
    del spectrum, padded
    binned = blurred.reshape(ny // 2, 2, nx // 2, 2).mean(dim=(1, 3)) + level
    bad = ~finite.reshape(ny // 2, 2, nx // 2, 2).all(dim=3).all(dim=1)
    binned[bad] = float("nan")
    out: np.ndarray = binned.to("cpu", torch.float64).numpy()
    return out
