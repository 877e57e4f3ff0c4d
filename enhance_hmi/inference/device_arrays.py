"""numpy and scipy.ndimage operations the per-frame measures use, in torch on any device.

Each function reproduces its numpy/scipy counterpart on non-empty input up
to floating-point rounding (same definitions, same edge handling), so the
noise estimate (:mod:`enhance_hmi.inference.device_noise`) and the quality
figures (:mod:`enhance_hmi.inference.device_quality`) of a frame enhanced on a
GPU are computed there and equal the host's figures.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch

__all__ = ["binary_dilation", "gaussian_filter", "median", "pad_axis"]

#: scipy.ndimage edge modes as numpy.pad modes of the row/column indices.
_PAD_MODES: dict[str, Literal["symmetric", "reflect"]] = {
    "reflect": "symmetric",
    "mirror": "reflect",
}


def median(values: torch.Tensor) -> float:
    """:func:`numpy.median` of a non-empty 1-D tensor (the mean of the two middle values when even).

    One sort on a GPU (where ``kthvalue`` is many times slower than a sort of
    the same values), ``kthvalue`` selections on a CPU.
    """
    n = values.numel()
    if values.is_cuda:
        ordered = values.sort().values
        low, high = ordered[(n - 1) // 2], ordered[n // 2]
    else:
        low = torch.kthvalue(values, (n + 1) // 2).values
        high = torch.kthvalue(values, n // 2 + 1).values if n % 2 == 0 else low
    return float((low.double() + high.double()) / 2)


def pad_axis(
    image: torch.Tensor, axis: int, before: int, after: int, *, mode: str = "reflect"
) -> torch.Tensor:
    """``image`` padded along ``axis`` with scipy's edge ``mode``, on its device.

    "reflect" repeats the edge pixel (numpy's "symmetric"), "mirror" does
    not (numpy's "reflect"); any width, as :func:`numpy.pad` allows.
    """
    index = np.pad(np.arange(image.shape[axis]), (before, after), mode=_PAD_MODES[mode])
    return image.index_select(axis, torch.from_numpy(index).to(image.device))


def gaussian_filter(image: torch.Tensor, sigma: float, *, mode: str = "reflect") -> torch.Tensor:
    """:func:`scipy.ndimage.gaussian_filter` of a 2-D tensor (truncated at 4 sigma).

    ``mode`` is scipy's, "reflect" (the edge pixel repeated) or "mirror"
    (not repeated). One tap at a time along each axis: memory of about three
    images whatever the width.
    """
    radius = int(4.0 * sigma + 0.5)
    offsets = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-0.5 * (offsets / sigma) ** 2)
    kernel /= kernel.sum()
    out = image
    for axis in (0, 1):
        length = out.shape[axis]
        padded = pad_axis(out, axis, radius, radius, mode=mode)
        out = torch.zeros_like(image)
        for tap, weight in enumerate(kernel):
            out += float(weight) * padded.narrow(axis, tap, length)
    return out


def binary_dilation(mask: torch.Tensor, *, square: bool, iterations: int) -> torch.Tensor:
    """:func:`scipy.ndimage.binary_dilation` of a 2-D boolean tensor (zeros beyond the edges).

    ``square``: the 3x3 structure; otherwise scipy's default cross
    (connectivity 1).
    """
    kernel = torch.ones((3, 3), dtype=torch.float32, device=mask.device)
    if not square:
        kernel[0, 0] = kernel[0, 2] = kernel[2, 0] = kernel[2, 2] = 0
    out = mask[None, None].to(torch.float32)
    for _ in range(iterations):
        out = (torch.nn.functional.conv2d(out, kernel[None, None], padding=1) > 0).to(out.dtype)
    return out[0, 0] > 0
