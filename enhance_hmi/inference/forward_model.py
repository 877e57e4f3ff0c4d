"""HMI's view of a 28 cm image and its exact adjoint, in numpy or in torch.

The projection onto the input (:mod:`enhance_hmi.inference.consistency`) runs
conjugate gradients with this operator: the ``H / A`` kernel
(:func:`enhance_hmi.physics.transfer.hmi_given_target_transfer`) applied with
FFTs on a padded grid, then 2x2 binning; the adjoint repeats each residual
pixel over its 2x2 block with weight 1/4 and applies the same (real, even)
transfer function. Both backends do the same float32 arithmetic, so the
projection gives the same image on the CPU and on the device the network
ran on (within float32 rounding): a GPU run iterates on the GPU, with one
copy of the frame there and one back.

The padded grid is a size with small prime factors only (2, 3, 5), where
FFTs are fastest: an FFT pair on an 8440-pixel square (2^3 x 5 x 211 per
axis) takes 2.8x as long as on an 8640-pixel one (docs/performance.md,
"Full disks").

References
----------
.. [1] Frigo, M. & Johnson, S. G. (2005), "The design and implementation of
   FFTW3", Proc. IEEE 93, 216 (FFT cost and smooth sizes).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import fft as sfft

from enhance_hmi.errors import InputError
from enhance_hmi.physics.transfer import (
    binnable_image,
    hmi_given_target_transfer,
    reobservation_padding,
)

__all__ = ["BACKENDS", "ForwardModel", "fast_padded_length", "reobserve_target_on"]

#: The array libraries the operator runs in.
BACKENDS = ("numpy", "torch")


def fast_padded_length(length: int, margin: int) -> int:
    """Smallest padded input length >= ``length + 2 margin`` whose 2x grid is 5-smooth.

    Parameters
    ----------
    length : int
        Input pixels along the axis.
    margin : int
        Padding wanted on each side at least.

    Returns
    -------
    int
        The padded length ``m``: the operator's FFTs run on the 2x grid, so
        ``2 m`` has no prime factor above 5.
    """
    fine = sfft.next_fast_len(2 * (length + 2 * margin), real=True)
    while fine % 2:  # a 5-smooth size that is also even
        fine = sfft.next_fast_len(fine + 1, real=True)
    return fine // 2


class ForwardModel:
    """HMI's view of a 28 cm image (``H / A`` kernel, 2x2 mean) and its exact adjoint.

    Works on a padded grid of ``padded`` input pixels per axis (the image
    plus at least ``margin`` on each side; FFT-periodic on that grid),
    float32, with numpy (scipy.fft) or torch arrays.

    Parameters
    ----------
    shape_in : (int, int)
        Input (0.504"/px) shape of the image, before padding.
    margin : int
        Input pixels of padding at least, per side.
    psf_model : str
        HMI PSF model (:func:`enhance_hmi.physics.hmi_psf`).
    backend : {"numpy", "torch"}
        The array library.
    device : torch.device or str, optional
        Where torch arrays live (backend "torch"; default the CPU).

    Attributes
    ----------
    padded : (int, int)
        Padded input shape; ``fine`` is twice it.
    pad_before : (int, int)
        Padding before the image per axis (the rest goes after it).
    """

    def __init__(
        self,
        shape_in: tuple[int, int],
        margin: int,
        psf_model: str,
        *,
        backend: str = "numpy",
        device: Any = None,
    ) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; use one of {', '.join(BACKENDS)}")
        self.padded = tuple(fast_padded_length(n, margin) for n in shape_in)
        self.pad_before = (margin, margin)
        self.fine = (2 * self.padded[0], 2 * self.padded[1])
        self.backend = backend
        otf = hmi_given_target_transfer(self.fine, psf_model=psf_model)
        if backend == "torch":
            import torch  # the numpy backend needs no torch

            self._torch = torch
            self.device = torch.device(device or "cpu")
            self.otf: Any = torch.tensor(otf, device=self.device)  # the table is read-only
        else:
            self.otf = otf

    # array conversion -------------------------------------------------------------
    def array(self, values: np.ndarray) -> Any:
        """``values`` (float32) as an array of this backend."""
        values = np.ascontiguousarray(values, dtype=np.float32)
        if self.backend == "torch":
            return self._torch.from_numpy(values).to(self.device)
        return values

    def to_numpy(self, values: Any) -> np.ndarray:
        """A backend array as a float32 numpy array."""
        if self.backend == "torch":
            return values.detach().to("cpu").numpy()
        return np.asarray(values, dtype=np.float32)

    def sum_of_squares(self, values: Any) -> float:
        """Sum of squares accumulated in float64."""
        if self.backend == "torch":
            norm = self._torch.linalg.vector_norm(values, dtype=self._torch.float64)
            return float(norm) ** 2
        return float(np.sum(np.square(values), dtype=np.float64))

    # the operator -----------------------------------------------------------------
    def _convolve(self, x: Any) -> Any:
        if self.backend == "torch":
            fft = self._torch.fft
            return fft.irfft2(fft.rfft2(x) * self.otf, s=x.shape)
        spectrum = sfft.rfft2(x, workers=-1) * self.otf
        return sfft.irfft2(spectrum, s=x.shape, workers=-1).astype(np.float32, copy=False)

    def forward(self, x: Any) -> Any:
        """HMI's view of ``x`` (fine grid) on the padded input grid."""
        blurred = self._convolve(x)
        my, mx = blurred.shape[0] // 2, blurred.shape[1] // 2
        return blurred.reshape(my, 2, mx, 2).mean(axis=(1, 3))

    def adjoint(self, r: Any) -> Any:
        """The exact adjoint of :meth:`forward` (the transfer function is real and even)."""
        if self.backend == "torch":
            up = r.repeat_interleave(2, dim=0).repeat_interleave(2, dim=1) * 0.25
        else:
            up = np.repeat(np.repeat(r, 2, axis=0), 2, axis=1) * np.float32(0.25)
        return self._convolve(up)


def reobserve_target_on(enhanced: object, *, psf_model: str, device: Any) -> np.ndarray:
    """HMI's view of a 28 cm image, computed with torch on ``device``.

    The arithmetic of :func:`enhance_hmi.physics.transfer.reobserve_target` (fill
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
    return binned.to("cpu", torch.float64).numpy()
