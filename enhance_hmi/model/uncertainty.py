"""A per-pixel uncertainty head on the frozen Enhance network, and its weights file.

Deconvolution and 2x super-resolution are ill-posed: part of every enhanced
pixel is filled in from what the network learned. The head predicts, for each
output pixel, the standard deviation sigma of a Gaussian around the network's
output, in the output's units. It reads two things:

* the 64 feature maps the backbone computes last, on the output grid (after
  the upsampling convolution and its ReLU, right before the 1x1 output
  convolution), which carry what the network "sees" at that pixel;
* the logarithm of the local input noise: Immerkær's noise operator
  (a 3x3 Laplacian difference, whose mean absolute response times
  sqrt(pi/2)/6 is the standard deviation of white noise) averaged over 7x7
  input pixels and repeated onto the output grid. It grows with the input
  noise and with the amplitude of the input's fine structure, so sigma
  extrapolates sensibly to inputs noisier or more contrasted than training.

The head (a 1x1 convolution to 16 channels, ReLU, a 3x3 convolution, ReLU and
a 1x1 convolution to one channel, plus a 1x1 linear path from the inputs)
outputs log sigma in network units; it costs ~14 kFLOP per input pixel,
about 1 % of the backbone's 1.1 MFLOP. It is trained with the Gaussian
negative log-likelihood against the 28 cm truth on the training regions
(:mod:`enhance_hmi.training.uncertainty`).

The head's sigma is then calibrated on held-out truth by
:class:`SigmaCalibration`, a log-linear map of four quantities every frame
has, fitted jointly over all held-out regions (never per region: a new frame
has no region label)::

    log sigma = c0 + log s_ref + a (log s - log s_ref)
                + b (log d - log d_ref) + c (log m - log m_ref)
                + e (log g - log g_ref)

with ``s`` the head's sigma, ``d`` the local standard deviation of the
network output and ``m`` the local mean of its absolute value, both over
:data:`CALIBRATION_WINDOW` output pixels (the amount of structure and the
signal level the network is filling in), and ``g`` the local standard
deviation of the input over :data:`CALIBRATION_INPUT_WINDOW` input pixels,
repeated onto the output grid (what the observation itself says about the
structure there: :func:`input_structure`). Heads written before the map
existed carry only one factor (``calibration_scale``) and are read as
``a = 1, b = c = e = 0``; maps of the first three inputs only are read with
``e = 0``. The map is applied only inside the 1st-99th percentile range each
input had in the fit (:data:`CALIBRATION_PERCENTILES`), so it does not
extrapolate without bound where a frame leaves that range (umbrae, the limb,
a contrast never seen): ``log d``, ``log m`` and ``log g`` are clamped to
their range, and beyond its range the head's sigma passes through with
power 1 (the map's correction held at its value at the edge, the head's own
response to noise and structure kept). Maps stored without the range are
applied unclamped.

:class:`EnhanceWithUncertainty` wraps a backbone and a head into one module
whose forward pass returns ``(N, 2, 2H, 2W)``: the network's output (exactly
the backbone's) and sigma, both in network units, so tiled inference
(:func:`enhance_hmi.inference.enhance_array`) blends and scales them together.

Weights: ``NAME.uncertainty.safetensors`` beside the network ``NAME.safetensors``,
with a JSON sidecar that records the sha256 of both files; a head is refused
for any other network.

References
----------
.. [1] Díaz Baso, C. J. & Asensio Ramos, A. (2018), "Enhancing SDO/HMI images
   using deep learning", A&A 614, A5 (the backbone).
.. [2] Nix, D. A. & Weigend, A. S. (1994), "Estimating the mean and variance
   of the target probability distribution", Proc. IEEE ICNN, 55 (a variance
   output trained with the Gaussian likelihood).
.. [3] Immerkær, J. (1996), "Fast noise variance estimation", Computer Vision
   and Image Understanding 64, 300 (the noise operator and its constant).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, cast

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from enhance_hmi import __version__
from enhance_hmi.atomic import atomic_path
from enhance_hmi.errors import InputError, WeightsError
from enhance_hmi.model.network import EnhanceNet
from enhance_hmi.model.weights import read_sidecar, sidecar_path, write_sidecar
from enhance_hmi.provenance import sha256_file

__all__ = [
    "METHOD",
    "EnhanceWithUncertainty",
    "FamilySigma",
    "SigmaCalibration",
    "SigmaHead",
    "backbone_forward",
    "calibration_digest",
    "calibration_of",
    "family_sigma_of",
    "fold_for_inference",
    "calibration_log_inputs",
    "input_structure",
    "load_uncertainty",
    "local_noise",
    "output_structure",
    "save_sigma_head",
    "uncertainty_path",
]

log = logging.getLogger(__name__)

#: Name of the method, written to FITS (ENHSGMET) and cube attributes.
METHOD = "gaussian-nll-head"
#: Immerkær (1996) eq. 3: for white noise of standard deviation s, the mean
#: absolute response of the 3x3 operator [[1,-2,1],[-2,4,-2],[1,-2,1]] is
#: 6 s / sqrt(pi/2).
IMMERKAER_FACTOR = math.sqrt(math.pi / 2.0) / 6.0
#: Side of the box over which the local input noise is averaged (input pixels).
NOISE_WINDOW = 7
#: Floor of the local noise before the logarithm, in network units (far below
#: HMI's noise: 1e-3 quiet-Sun units, 10 G = 1e-2 kG).
NOISE_FLOOR = 1e-6
#: Bounds of log sigma in network units (sigma between ~2e-9 and ~2e4).
LOG_SIGMA_RANGE = (-20.0, 10.0)
#: Side of the box (output pixels) over which the calibration's local spread and
#: level of the network output are taken.
CALIBRATION_WINDOW = 9
#: Floor of the local level and spread before the logarithm, network units.
CALIBRATION_FLOOR = 3e-3
#: Side of the box (input pixels) over which the calibration's local spread of the
#: input is taken.
CALIBRATION_INPUT_WINDOW = 3
#: Floor of the input's local spread before the logarithm, network units (ten
#: times below HMI's continuum noise of 1e-3 quiet-Sun units).
CALIBRATION_INPUT_FLOOR = 1e-4
#: Percentiles of each calibration input over the fitted pixels that bound it
#: when the map is applied (the map is only measured inside this range).
CALIBRATION_PERCENTILES = (1.0, 99.0)
#: Suffix of the head's weights file, after the network's stem.
SUFFIX = ".uncertainty.safetensors"


def uncertainty_path(weights: str | os.PathLike[str]) -> Path:
    """The uncertainty head's weights file for network ``weights``.

    ``continuum.safetensors`` -> ``continuum.uncertainty.safetensors`` (its
    sidecar: ``continuum.uncertainty.json``).
    """
    path = Path(weights)
    return path.with_name(path.stem + SUFFIX)


def local_noise(x: torch.Tensor) -> torch.Tensor:
    """Local white-noise standard deviation of ``x`` (N, 1, H, W), same shape.

    Immerkær's operator (reflect padding), absolute value, mean over
    :data:`NOISE_WINDOW` x :data:`NOISE_WINDOW` pixels, times
    :data:`IMMERKAER_FACTOR`. On pure white noise this is its standard
    deviation; fine structure adds to it.
    """
    kernel = x.new_tensor([[1.0, -2.0, 1.0], [-2.0, 4.0, -2.0], [1.0, -2.0, 1.0]])
    response = nn.functional.conv2d(
        nn.functional.pad(x, (1, 1, 1, 1), mode="reflect"), kernel[None, None]
    ).abs()
    half = NOISE_WINDOW // 2
    padded = nn.functional.pad(response, (half, half, half, half), mode="reflect")
    return IMMERKAER_FACTOR * nn.functional.avg_pool2d(padded, NOISE_WINDOW, stride=1)


def backbone_forward(net: EnhanceNet, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(output, features)`` of an :class:`EnhanceNet` on ``x``.

    ``net(x)`` and the last feature maps the head reads (``width`` channels
    on the output grid, after the upsampling convolution and its ReLU), from
    one pass: :meth:`EnhanceNet.features` and :meth:`EnhanceNet.output`, of
    which ``net.forward`` is made too. Works on the batch-norm-folded
    inference copy as well (its batch norms are identities).
    """
    features = net.features(x)
    return net.output(features, x), features


def output_structure(out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Local standard deviation and local mean of ``|out|`` (N, 1, H, W), same shape.

    Box of :data:`CALIBRATION_WINDOW` pixels (reflect padding), both
    floored at :data:`CALIBRATION_FLOOR`; the calibration's second and third
    inputs.
    """
    half = CALIBRATION_WINDOW // 2
    mode = "reflect" if min(out.shape[-2:]) > half else "replicate"
    # float64: the variance as E[x^2] - E[x]^2 cancels digits in float32
    padded = nn.functional.pad(out.double(), (half, half, half, half), mode=mode)
    # the three box means at once, separably by running sums (rows, then columns)
    stacked = torch.cat([padded, padded * padded, padded.abs()], dim=1)
    width = CALIBRATION_WINDOW
    sums = nn.functional.pad(stacked.cumsum(-1), (1, 0))
    stacked = (sums[..., width:] - sums[..., :-width]) / width
    sums = nn.functional.pad(stacked.cumsum(-2), (0, 0, 1, 0))
    stacked = (sums[..., width:, :] - sums[..., :-width, :]) / width
    mean, square, level = stacked[:, 0:1], stacked[:, 1:2], stacked[:, 2:3]
    spread = torch.sqrt((square - mean * mean).clamp_min(0.0))
    return (
        spread.clamp_min(CALIBRATION_FLOOR).to(out.dtype),
        level.clamp_min(CALIBRATION_FLOOR).to(out.dtype),
    )


def input_structure(x: torch.Tensor, upscale: int) -> torch.Tensor:
    """Local standard deviation of the input ``x`` (N, 1, H, W) on the output grid.

    Box of :data:`CALIBRATION_INPUT_WINDOW` input pixels (reflect padding),
    floored at :data:`CALIBRATION_INPUT_FLOOR` and repeated ``upscale`` times
    along each axis (N, 1, upscale H, upscale W); the calibration's fourth
    input.
    """
    half = CALIBRATION_INPUT_WINDOW // 2
    mode = "reflect" if min(x.shape[-2:]) > half else "replicate"
    padded = nn.functional.pad(x.double(), (half, half, half, half), mode=mode)
    mean = nn.functional.avg_pool2d(padded, CALIBRATION_INPUT_WINDOW, stride=1)
    square = nn.functional.avg_pool2d(padded * padded, CALIBRATION_INPUT_WINDOW, stride=1)
    spread = torch.sqrt((square - mean * mean).clamp_min(0.0)).clamp_min(CALIBRATION_INPUT_FLOOR)
    return nn.functional.interpolate(spread.to(x.dtype), scale_factor=upscale, mode="nearest")


#: The calibration's inputs, in the order of :attr:`SigmaCalibration.exponents`.
CALIBRATION_INPUTS = (
    "head_sigma",
    "output_local_std",
    "output_local_abs_mean",
    "input_local_std",
)
#: The inputs of maps written before the fourth was added (read with exponent 0 on it).
CALIBRATION_INPUTS_V1 = CALIBRATION_INPUTS[:3]


def _log_input_structure(out: torch.Tensor, x: torch.Tensor | None) -> torch.Tensor:
    """log :func:`input_structure` of ``x`` on the grid of ``out``; :class:`InputError` if none."""
    if x is None:
        raise InputError("this sigma calibration reads the network input: pass x")
    upscale = out.shape[-1] // x.shape[-1]
    if upscale < 1 or tuple(out.shape[-2:]) != (upscale * x.shape[-2], upscale * x.shape[-1]):
        raise InputError(
            f"output grid {tuple(out.shape[-2:])} is not an integer multiple of the "
            f"input grid {tuple(x.shape[-2:])}"
        )
    return torch.log(input_structure(x, upscale))


def calibration_log_inputs(
    log_sigma: torch.Tensor, out: torch.Tensor, x: torch.Tensor
) -> list[torch.Tensor]:
    """The logarithms of the calibration's inputs (:data:`CALIBRATION_INPUTS`), in order.

    From the head's ``log_sigma`` and the network output ``out`` (N, 1, fH,
    fW) and its input ``x`` (N, 1, H, W): what :meth:`SigmaCalibration.apply`
    reads, for fitting the map on the same quantities.
    """
    spread, level = output_structure(out)
    return [log_sigma, torch.log(spread), torch.log(level), _log_input_structure(out, x)]


@dataclasses.dataclass(frozen=True)
class SigmaCalibration:
    """The map from the head's sigma to the calibrated sigma (network units).

    ``log sigma = log_scale + sum_i exponents[i] * (log f_i - log references[i]) +
    log references[0]`` with ``f`` the head's sigma, the output's local
    standard deviation, its local mean absolute value and the input's local
    standard deviation (:data:`CALIBRATION_INPUTS`, :func:`output_structure`,
    :func:`input_structure`).

    Attributes
    ----------
    log_scale : float
        log of the factor on sigma at the reference point.
    exponents : tuple of 4 float
        Power of each input (1, 0, 0, 0: one factor on the head's sigma).
    references : tuple of 4 float
        Reference value of each input (network units; the medians over the
        held-out pixels the map was fitted on), which keeps ``log_scale``
        readable as a factor.
    log_ranges : tuple of 4 (low, high), optional
        The range of each input's natural logarithm the map was fitted on
        (the :data:`CALIBRATION_PERCENTILES` over the fitted pixels): the
        output's and input's local structure are clamped to it, the head's
        sigma beyond it enters with power 1 (:meth:`log_terms`); None: no
        clamp (maps stored without it).
    """

    log_scale: float = 0.0
    exponents: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0)
    references: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0)
    log_ranges: tuple[tuple[float, float], ...] | None = None

    def __post_init__(self) -> None:
        n = len(CALIBRATION_INPUTS)
        object.__setattr__(self, "exponents", tuple(float(v) for v in self.exponents))
        object.__setattr__(self, "references", tuple(float(v) for v in self.references))
        values = (self.log_scale, *self.exponents, *self.references)
        if len(self.exponents) != n or len(self.references) != n:
            raise WeightsError(f"a sigma calibration has {n} exponents and {n} references")
        if not all(math.isfinite(float(v)) for v in values) or min(self.references) <= 0:
            raise WeightsError(f"sigma calibration {self} has a non-finite or non-positive value")
        if self.log_ranges is not None:
            ranges = tuple((float(lo), float(hi)) for lo, hi in self.log_ranges)
            if len(ranges) != n or not all(
                math.isfinite(lo) and math.isfinite(hi) and lo <= hi for lo, hi in ranges
            ):
                raise WeightsError(
                    f"sigma calibration input ranges {self.log_ranges} are not {n} finite "
                    "(low, high) pairs with low <= high"
                )
            object.__setattr__(self, "log_ranges", ranges)

    @classmethod
    def factor(cls, scale: float) -> SigmaCalibration:
        """One factor ``scale`` on the head's sigma."""
        return cls(log_scale=math.log(scale))

    @property
    def uses_output(self) -> bool:
        """Whether the map reads the network output (exponents 2 or 3 not zero)."""
        return any(e != 0.0 for e in self.exponents[1:3])

    @property
    def uses_input(self) -> bool:
        """Whether the map reads the network input (exponent 4 not zero)."""
        return self.exponents[3] != 0.0

    def log_terms(self, log_inputs: Any) -> tuple[list[Any], Any]:
        """``(clamped log inputs, pass-through)`` of the four log inputs (tensors or arrays).

        Each input clamped to :attr:`log_ranges`; the pass-through is what the
        head's log sigma exceeds its range by (0 inside it), added with power
        1. Without ranges: the inputs themselves and 0.
        """
        if self.log_ranges is None:
            return list(log_inputs), 0.0
        clamped = [_clip(v, *bounds) for v, bounds in zip(log_inputs, self.log_ranges, strict=True)]
        return clamped, log_inputs[0] - clamped[0]

    def apply(
        self, log_sigma: torch.Tensor, out: torch.Tensor, x: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Calibrated sigma from the head's ``log_sigma``, the output ``out`` and input ``x``.

        Inside :attr:`log_ranges` (when stored) the log-linear map; outside,
        see :meth:`log_terms`.

        Parameters
        ----------
        log_sigma : torch.Tensor
            The head's log sigma, (N, 1, fH, fW), network units.
        out : torch.Tensor
            The network output on the same grid.
        x : torch.Tensor, optional
            The network input (N, 1, H, W) with ``fH = f H`` and ``fW = f W``
            for one integer ``f``; needed only when the map reads it
            (:attr:`uses_input`).

        Returns
        -------
        torch.Tensor
            sigma, the shape of ``log_sigma``, network units.

        Raises
        ------
        InputError
            The map reads the input and ``x`` is missing or not on a grid
            the output is an integer multiple of.
        """
        a, b, c, e = self.exponents
        ref_s, ref_d, ref_m, ref_g = (math.log(r) for r in self.references)
        inputs = [log_sigma] * 4  # inputs with power 0 are not computed
        if self.uses_output:
            spread, level = output_structure(out)
            inputs[1:3] = [torch.log(spread), torch.log(level)]
        if self.uses_input:
            inputs[3] = _log_input_structure(out, x)
        (log_s, log_d, log_m, log_g), through = self.log_terms(inputs)
        log_cal = (self.log_scale + ref_s) + a * (log_s - ref_s) + through
        if self.uses_output:
            log_cal = log_cal + b * (log_d - ref_d) + c * (log_m - ref_m)
        if self.uses_input:
            log_cal = log_cal + e * (log_g - ref_g)
        return torch.exp(log_cal.clamp(*LOG_SIGMA_RANGE))

    def to_dict(self) -> dict[str, Any]:
        """The sidecar's ``calibration_model`` entry (without provenance)."""
        entry: dict[str, Any] = {
            "form": "log-linear",
            "inputs": list(CALIBRATION_INPUTS),
            "window": CALIBRATION_WINDOW,
            "floor": CALIBRATION_FLOOR,
            "input_window": CALIBRATION_INPUT_WINDOW,
            "input_floor": CALIBRATION_INPUT_FLOOR,
            "log_scale": self.log_scale,
            "exponents": list(self.exponents),
            "references": list(self.references),
            "units": "network",
        }
        if self.log_ranges is not None:
            entry["log_input_ranges"] = [list(pair) for pair in self.log_ranges]
            entry["log_input_percentiles"] = list(CALIBRATION_PERCENTILES)
        return entry

    @classmethod
    def from_dict(cls, entry: Mapping[str, Any], *, source: str = "sidecar") -> SigmaCalibration:
        """Read a ``calibration_model`` entry; :class:`WeightsError` if it is not this form."""
        try:
            inputs = list(entry["inputs"])
            if entry["form"] != "log-linear" or inputs not in (
                list(CALIBRATION_INPUTS),
                list(CALIBRATION_INPUTS_V1),
            ):
                raise ValueError(f"form {entry['form']!r} with inputs {entry['inputs']}")
            if int(entry["window"]) != CALIBRATION_WINDOW or float(entry["floor"]) != (
                CALIBRATION_FLOOR
            ):
                raise ValueError(f"window {entry['window']} and floor {entry['floor']}")
            exponents = [float(v) for v in entry["exponents"]]
            references = [float(v) for v in entry["references"]]
            ranges = entry.get("log_input_ranges")
            ranges = [[float(v) for v in pair] for pair in ranges] if ranges is not None else None
            if len(inputs) == len(CALIBRATION_INPUTS):
                if (
                    int(entry["input_window"]) != CALIBRATION_INPUT_WINDOW
                    or float(entry["input_floor"]) != CALIBRATION_INPUT_FLOOR
                ):
                    raise ValueError(
                        f"input window {entry['input_window']} and floor {entry['input_floor']}"
                    )
            elif len(exponents) == len(references) == len(inputs) and (
                ranges is None or len(ranges) == len(inputs)
            ):
                # a map of the first three inputs: the fourth has power 0
                exponents, references = exponents + [0.0], references + [1.0]
                ranges = ranges + [[0.0, 0.0]] if ranges is not None else None
            else:
                raise ValueError(
                    f"{len(exponents)} exponents and {len(references)} references for "
                    f"{len(inputs)} inputs"
                )
            return cls(
                log_scale=float(entry["log_scale"]),
                exponents=tuple(exponents),
                references=tuple(references),
                log_ranges=tuple(tuple(pair) for pair in ranges) if ranges is not None else None,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise WeightsError(
                f"{source}: calibration_model is not one this version reads ({exc}); refit it "
                "with `enhance fit-uncertainty --weights NETWORK --scene ... --calibrate-only "
                "HEAD`"
            ) from exc


def _clip(value: Any, low: float, high: float) -> Any:
    """``value`` clamped to ``[low, high]``: a tensor or a numpy array."""
    if isinstance(value, torch.Tensor):
        return value.clamp(low, high)
    import numpy as np

    return np.clip(value, low, high)


class SigmaHead(nn.Module):
    """log sigma (network units) from the backbone's features and the local input noise.

    Parameters
    ----------
    width : int
        Feature channels of the backbone (64 for the paper's network).
    hidden : int
        Channels of the head's hidden layers.
    upscale : int
        Output/input sampling ratio of the backbone.
    """

    def __init__(self, *, width: int = 64, hidden: int = 16, upscale: int = 2) -> None:
        super().__init__()
        if width < 1 or hidden < 1 or upscale < 1:
            raise ValueError(f"invalid head width={width}, hidden={hidden}, upscale={upscale}")
        self.width, self.hidden, self.upscale = int(width), int(hidden), int(upscale)
        channels = self.width + 1
        self.reduce = nn.Conv2d(channels, hidden, 1)
        self.mix = nn.Conv2d(hidden, hidden, 3, padding=1, padding_mode="reflect")
        self.out = nn.Conv2d(hidden, 1, 1)
        self.linear = nn.Conv2d(channels, 1, 1)
        with torch.no_grad():
            # start at sigma = the local input noise: a sensible first guess
            self.linear.weight.zero_()
            self.linear.weight[0, -1] = 1.0
            cast(torch.Tensor, self.linear.bias).zero_()
            self.out.weight.mul_(0.1)
            cast(torch.Tensor, self.out.bias).zero_()

    @property
    def architecture(self) -> dict[str, int]:
        """``{"width", "hidden", "upscale"}`` as stored in the sidecar."""
        return {"width": self.width, "hidden": self.hidden, "upscale": self.upscale}

    def forward(self, features: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """log sigma ``(N, 1, fH, fW)`` from features ``(N, width, fH, fW)`` and input ``x``."""
        noise = torch.log(local_noise(x).clamp_min(NOISE_FLOOR))
        noise = nn.functional.interpolate(noise, scale_factor=self.upscale, mode="nearest")
        # the 1x1 convolutions of [features, noise], without copying the 64
        # feature maps into a concatenated tensor (memory-bound on a CPU)
        reduce_w, linear_w = self.reduce.weight, self.linear.weight
        reduced = nn.functional.conv2d(features, reduce_w[:, :-1], self.reduce.bias)
        reduced = reduced + reduce_w[:, -1:].reshape(1, -1, 1, 1) * noise
        linear = nn.functional.conv2d(features, linear_w[:, :-1], self.linear.bias)
        linear = linear + linear_w[:, -1:].reshape(1, -1, 1, 1) * noise
        hidden = torch.relu(self.mix(torch.relu(reduced)))
        log_sigma: torch.Tensor = self.out(hidden) + linear
        return log_sigma.clamp(*LOG_SIGMA_RANGE)


class EnhanceWithUncertainty(nn.Module):
    """An Enhance network and its sigma head as one module: ``(N, 2, fH, fW)`` out.

    Channel 0 is the backbone's output, channel 1 sigma (network units: the
    head's output mapped by ``calibration``, times ``calibration_scale``).
    ``upscale`` and ``receptive_radius`` follow the backbone's (the head's
    3x3 convolution on the output grid, the 3x3 + 7x7 noise window, which
    also covers the calibration's box on the input, and the calibration's
    window on the output add input pixels beyond it), so
    tiled inference reproduces the whole-image result.

    Parameters
    ----------
    backbone : EnhanceNet
    head : SigmaHead
    calibration_scale : float
        A factor on the calibrated sigma (1: none; heads without a
        calibration map store their one fitted factor here).
    calibration : SigmaCalibration, optional
        The map fitted on held-out truth; default the identity.
    """

    def __init__(
        self,
        backbone: EnhanceNet,
        head: SigmaHead,
        *,
        calibration_scale: float = 1.0,
        calibration: SigmaCalibration | None = None,
    ) -> None:
        super().__init__()
        if head.width != backbone.width or head.upscale != backbone.upscale:
            raise WeightsError(
                f"uncertainty head for width {head.width}, upscale {head.upscale} does not fit "
                f"a network of width {backbone.width}, upscale {backbone.upscale}"
            )
        self.backbone, self.head = backbone, head
        self.calibration_scale = float(calibration_scale)
        self.calibration = calibration or SigmaCalibration()

    @property
    def upscale(self) -> int:
        """The backbone's output/input sampling ratio."""
        return self.backbone.upscale

    @property
    def receptive_radius(self) -> int:
        """Receptive-field radius in input pixels: the backbone's + 1 (+ the calibration's)."""
        half = NOISE_WINDOW // 2 + 1
        radius = max(self.backbone.receptive_radius, half) + 1
        if self.calibration.uses_output:
            radius += -(-(CALIBRATION_WINDOW // 2) // self.upscale)
        if self.calibration.uses_input:
            radius = max(radius, CALIBRATION_INPUT_WINDOW // 2)
        return radius

    def raw(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(output, log sigma)`` of the network and its uncalibrated head."""
        out, features = backbone_forward(self.backbone, x)
        return out, self.head(features, x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The network's output and sigma as two channels, shape (N, 2, 2H, 2W)."""
        out, log_sigma = self.raw(x)
        sigma = self.calibration.apply(log_sigma, out, x) * self.calibration_scale
        return torch.cat([out, sigma], dim=1)


def save_sigma_head(
    head: SigmaHead,
    path: str | os.PathLike[str],
    *,
    backbone: str | os.PathLike[str],
    metadata: Mapping[str, Any],
) -> Path:
    """Write ``head`` to ``path`` (.safetensors) and its sidecar, atomically.

    Parameters
    ----------
    head : SigmaHead
    path : path-like
        Usually :func:`uncertainty_path` of ``backbone``.
    backbone : path-like
        The network the head was trained on; its sha256 (from its checked
        sidecar) and file name are recorded, and loading refuses any other.
    metadata : mapping
        Stored as given (``calibration_scale``, ``training``, ``coverage``...).
        ``method``, ``architecture``, ``backbone_sha256``, ``backbone_file``,
        ``observable``, ``units``, ``package_version`` and ``sha256`` are
        filled in here.
    """
    path = Path(path)
    if not path.name.endswith(".safetensors"):
        raise WeightsError(f"uncertainty weights file {path} must end in .safetensors")
    net_meta = read_sidecar(backbone)
    state = {k: v.detach().cpu().contiguous() for k, v in head.state_dict().items()}
    if not _holds(path, state):  # a recalibrated head keeps its file (and sha256)
        with atomic_path(path) as tmp:
            save_file(state, str(tmp), metadata={"format": "pt", "kind": "uncertainty"})
            os.chmod(tmp, 0o644)
    sidecar = dict(metadata)
    sidecar.setdefault("calibration_scale", 1.0)
    sidecar.update(
        method=METHOD,
        architecture=head.architecture,
        backbone_file=Path(backbone).name,
        backbone_sha256=net_meta["sha256"],
        observable=net_meta["observable"],
        units=net_meta["input_normalisation"].get("units"),
        package_version=__version__,
        sha256=sha256_file(path),
        weights_file=path.name,
    )
    write_sidecar(path, sidecar)
    log.info("wrote %s (for network %s…)", path, net_meta["sha256"][:12])
    return path


def _holds(path: Path, state: Mapping[str, torch.Tensor]) -> bool:
    """Whether the safetensors file ``path`` exists and holds exactly ``state``."""
    try:
        stored = load_file(str(path))
    except (OSError, SafetensorError):
        return False
    return stored.keys() == state.keys() and all(
        stored[k].dtype == v.dtype and torch.equal(stored[k], v) for k, v in state.items()
    )


def _read_head_sidecar(path: Path) -> dict[str, Any]:
    side = sidecar_path(path)
    if not path.is_file():
        raise WeightsError(
            f"no uncertainty weights {path.name} beside the network; fit them with "
            f"`enhance fit-uncertainty --weights {path.parent / path.name.replace(SUFFIX, '')}"
            ".safetensors ...` or run without uncertainty"
        )
    try:
        meta = json.loads(side.read_text())
    except FileNotFoundError as exc:
        raise WeightsError(f"uncertainty weights {path} have no sidecar {side.name}") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WeightsError(f"sidecar {side} is not valid JSON ({exc})") from exc
    if not isinstance(meta, dict):
        raise WeightsError(f"sidecar {side} does not hold a JSON object")
    missing = [k for k in ("sha256", "backbone_sha256", "architecture") if k not in meta]
    if missing:
        raise WeightsError(f"sidecar {side} lacks {', '.join(missing)}")
    scale = meta.get("calibration_scale", 1.0)
    if not isinstance(scale, (int, float)) or not math.isfinite(scale) or scale <= 0:
        raise WeightsError(f"sidecar {side}: calibration_scale {scale!r} must be positive")
    if "calibration_model" in meta:
        SigmaCalibration.from_dict(meta["calibration_model"], source=f"sidecar {side}")
    return meta


@dataclasses.dataclass(frozen=True)
class FamilySigma:
    """How the calibrated sigma follows what the run was told about the forward model.

    The head and its map are calibrated on held-out data made with the
    member the network was trained for. Under another member of the HMI
    forward-model family (:mod:`enhance_hmi.physics.forward_family`) the
    error grows, so sigma grows with it:

    * told a member (``enhance predict --psf-model/--[no-]pixel-integration``,
      the network's own included): ``sqrt(sigma^2 + k_m^2 v_m)`` with ``v_m``
      that member's error variance of the output (what harmonising the
      input left, weighted by its signal fraction;
      :func:`enhance_hmi.physics.forward_family.family_error_variance` with
      the member alone) and ``k_m`` its weight (:attr:`told_kappas`;
      none for the trained member), fitted so that the member's held-out
      coverage is closest to 68.27 / 95.45 %;
    * told nothing: ``sqrt(sigma^2 + untold_kappa^2 v)`` with ``v`` the
      family's error variance of the output
      (:func:`enhance_hmi.physics.forward_family.family_error_variance`),
      ``untold_kappa`` the smallest weight that keeps every plausible member
      at or above the coverage floor (60 / 90 %) on held-out data, with a
      margin (:data:`enhance_hmi.training.family_calibration.FLOOR_MARGIN`).

    Attributes
    ----------
    trained : str
        The member the network was trained for (its name).
    told_kappas : mapping of str to float
        Weight of its own error variance for each member told (by name).
    untold_kappa : float
        Weight of the family term when nothing was told.
    """

    trained: str
    told_kappas: Mapping[str, float]
    untold_kappa: float

    def kappa_for(self, member: str) -> float:
        """The weight of ``member``'s error variance when it was told.

        0 for the trained member; a member without a fitted weight (a bound
        such as ``airy14+pixel``) gets the largest fitted one: its coverage
        was never measured.
        """
        if member == self.trained:
            return 0.0
        if member in self.told_kappas:
            return float(self.told_kappas[member])
        return max([0.0, *(float(v) for v in self.told_kappas.values())])

    def apply(
        self,
        sigma: np.ndarray,
        output: np.ndarray,
        told: str | None,
        signal_fraction: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> np.ndarray:
        """The sigma of an output (both physical units) for a run told ``told`` (None: nothing).

        ``signal_fraction``: the harmonisation's weight of a told run's input
        (:func:`enhance_hmi.physics.harmonise.signal_fraction`); the told
        member's error is what the harmonisation left.
        """
        from enhance_hmi.physics.forward_family import ForwardModelSpec, family_error_variance

        trained = ForwardModelSpec.from_name(self.trained)
        if told is None:
            kappa = self.untold_kappa
            variance = family_error_variance(output, trained=trained)
        else:
            kappa = self.kappa_for(told)
            if kappa == 0.0:
                return np.asarray(sigma, dtype=np.float32)
            member = ForwardModelSpec.from_name(told)
            variance = family_error_variance(
                output, trained=trained, members=[member], signal_fraction=signal_fraction
            )
        widened = np.sqrt(np.asarray(sigma, np.float64) ** 2 + kappa**2 * variance)
        return widened.astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        """The ``forward_family`` entry of the sidecar's ``calibration_model``."""
        return {
            "trained": self.trained,
            "told_kappas": {k: float(v) for k, v in self.told_kappas.items()},
            "untold_kappa": float(self.untold_kappa),
        }

    @classmethod
    def from_dict(cls, entry: Mapping[str, Any]) -> FamilySigma:
        """Read a ``forward_family`` entry; :class:`WeightsError` if it is malformed."""
        try:
            kappas = {str(k): float(v) for k, v in dict(entry["told_kappas"]).items()}
            kappa = float(entry["untold_kappa"])
            if any(not v >= 0 for v in [kappa, *kappas.values()]):
                raise ValueError("a negative weight")
            return cls(str(entry["trained"]), MappingProxyType(kappas), kappa)
        except (KeyError, TypeError, ValueError) as exc:
            raise WeightsError(f"calibration_model.forward_family is malformed ({exc})") from exc


def family_sigma_of(meta: Mapping[str, Any]) -> FamilySigma | None:
    """The :class:`FamilySigma` of a head sidecar, None when it was not fitted."""
    entry = meta.get("calibration_model", {}).get("forward_family")
    return None if entry is None else FamilySigma.from_dict(entry)


def calibration_of(meta: Mapping[str, Any]) -> tuple[SigmaCalibration, float]:
    """``(calibration map, factor)`` a head sidecar describes.

    A ``calibration_model`` entry is the map (its factor is 1); a sidecar
    with only ``calibration_scale`` (heads fitted before the map) is read as
    that one factor on the head's sigma.
    """
    if "calibration_model" in meta:
        return SigmaCalibration.from_dict(meta["calibration_model"]), 1.0
    return SigmaCalibration(), float(meta.get("calibration_scale", 1.0))


def calibration_digest(meta: Mapping[str, Any]) -> str:
    """sha256 of the calibration a head sidecar describes, as canonical JSON.

    The ``calibration_model`` entry (or, for heads without one, the
    ``calibration_scale``) serialised with sorted keys and no whitespace,
    so a refitted map changes the digest while the head's weights (and their
    sha256) stay the same.
    """
    import hashlib

    if "calibration_model" in meta:
        payload: Any = {"calibration_model": meta["calibration_model"]}
    else:
        payload = {"calibration_scale": float(meta.get("calibration_scale", 1.0))}
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def load_uncertainty(
    weights: str | os.PathLike[str],
    backbone: EnhanceNet,
    backbone_meta: Mapping[str, Any],
    *,
    path: str | os.PathLike[str] | None = None,
) -> tuple[EnhanceWithUncertainty, dict[str, Any]]:
    """The network ``backbone`` (loaded from ``weights``) with its checked sigma head.

    Parameters
    ----------
    weights : path-like
        The network's weights file (for names in messages and the default path).
    backbone : EnhanceNet
        The network loaded from ``weights`` (not modified).
    backbone_meta : mapping
        Its sidecar (``sha256`` is compared with the head's ``backbone_sha256``).
    path : path-like, optional
        The head's weights; default :func:`uncertainty_path` of ``weights``.

    Returns
    -------
    (EnhanceWithUncertainty, dict)
        The combined module in eval mode and the head's sidecar.

    Raises
    ------
    WeightsError
        The head is missing, corrupt, for another network (sha256 mismatch)
        or does not fit the backbone: one sentence saying how to fix it.
    """
    head_path = Path(path) if path is not None else uncertainty_path(weights)
    meta = _read_head_sidecar(head_path)
    if meta["backbone_sha256"] != backbone_meta["sha256"]:
        raise WeightsError(
            f"uncertainty weights {head_path.name} were fitted for network "
            f"{meta['backbone_sha256'][:12]}… but {Path(weights).name} is "
            f"{backbone_meta['sha256'][:12]}…; refit them with `enhance fit-uncertainty "
            f"--weights {weights}` or run without uncertainty"
        )
    actual = sha256_file(head_path)
    if actual != meta["sha256"]:
        raise WeightsError(
            f"uncertainty weights {head_path} are corrupt or were changed: sha256 "
            f"{actual[:12]}… does not match {meta['sha256'][:12]}… in its sidecar"
        )
    try:
        head = SigmaHead(**meta["architecture"])
        head.load_state_dict(load_file(str(head_path)), strict=True)
    except (TypeError, ValueError, RuntimeError, SafetensorError, OSError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise WeightsError(f"uncertainty weights {head_path} do not load: {first}") from exc
    calibration, factor = calibration_of(meta)
    model = EnhanceWithUncertainty(
        backbone, head.eval(), calibration_scale=factor, calibration=calibration
    )
    return model.eval(), meta


def fold_for_inference(model: EnhanceWithUncertainty) -> EnhanceWithUncertainty:
    """An evaluation copy of ``model`` with the backbone's batch norms folded.

    :func:`enhance_hmi.model.fuse.fold_batchnorm` on the backbone, a copy of the
    head; ``model`` is untouched.
    """
    import copy

    from enhance_hmi.model.fuse import fold_batchnorm

    folded = EnhanceWithUncertainty(
        fold_batchnorm(model.backbone),
        copy.deepcopy(model.head).eval(),
        calibration_scale=model.calibration_scale,
        calibration=model.calibration,
    ).eval()
    for parameter in folded.parameters():
        parameter.requires_grad_(False)
    return folded
