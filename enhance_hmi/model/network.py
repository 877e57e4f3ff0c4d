"""The Enhance network of Díaz Baso & Asensio Ramos (2018), in PyTorch.

Architecture (paper Sect. 3, Fig. 2; ../shared/docs/method.md):

* conv 3x3 (``width`` filters) + ReLU -> ``x0``;
* ``n_blocks`` residual blocks: conv3x3-BN-ReLU-conv3x3-BN, plus the skip;
* conv3x3-BN, plus a skip from ``x0``;
* nearest-neighbour 2x upsampling, conv 3x3 (``width``) + ReLU;
* conv 1x1 -> 1 channel, linear output;
* optionally (``linear_skip=k``, not in the paper) plus a learned linear 2x
  filter of the input: a k x k convolution to ``upscale**2`` channels
  rearranged into the output grid (one filter per output phase, sub-pixel
  convolution of Shi et al. 2016). The deep path then only has to learn
  what a linear filter cannot do.

Every 3x3 convolution pads by reflection (zero padding darkens the borders).
With the paper's defaults (5 blocks, 64 filters) the net has 445,249
parameters (the paper quotes ~450k) and costs about 1.1 MFLOP per input pixel.

Parameter order follows the published Keras model (``conv2d_1..14``,
``batch_normalization_1..11`` for the default depth) so that
:mod:`enhance_hmi.model.keras_import` can map the original weights one to one.

References
----------
.. [1] Díaz Baso, C. J. & Asensio Ramos, A. (2018), "Enhancing SDO/HMI images
   using deep learning", A&A 614, A5.
.. [2] Shi, W. et al. (2016), "Real-time single image and video
   super-resolution using an efficient sub-pixel convolutional neural
   network", CVPR, 1874.
"""

from __future__ import annotations

from typing import cast

import torch
from torch import nn

from enhance_hmi.errors import ConfigError

__all__ = ["EnhanceNet", "FLOP_PER_INPUT_PIXEL", "PAPER_ARCHITECTURE", "TORCH_BN_EPS", "deepened"]

#: Default depth and width: five residual blocks of 64 filters (paper Sect. 3).
PAPER_ARCHITECTURE: dict[str, int] = {"n_blocks": 5, "width": 64, "upscale": 2}
#: Cost of the paper architecture per input pixel, ~1.1 MFLOP (18.6 TFLOP per
#: 4096x4096 frame; ../shared/docs/method.md), the figure the benchmarks report
#: achieved TFLOP/s and fractions of a device's peak against.
FLOP_PER_INPUT_PIXEL = 1.1e6

#: PyTorch's BatchNorm epsilon, used by networks trained here. Networks imported
#: from the 2018 Keras code carry Keras' own default, 1e-3 (keras.layers.BatchNormalization).
TORCH_BN_EPS = 1e-5


def _conv3x3(in_channels: int, out_channels: int) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, padding=1, padding_mode="reflect")


class ResidualBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN with an identity skip (paper Fig. 2)."""

    def __init__(self, width: int, *, bn_eps: float = TORCH_BN_EPS) -> None:
        super().__init__()
        self.conv1 = _conv3x3(width, width)
        self.bn1 = nn.BatchNorm2d(width, eps=bn_eps)
        self.conv2 = _conv3x3(width, width)
        self.bn2 = nn.BatchNorm2d(width, eps=bn_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        residual: torch.Tensor = self.bn2(self.conv2(y))
        return x + residual


class EnhanceNet(nn.Module):
    """Deconvolution + ``upscale``-times super-resolution, fully convolutional.

    Parameters
    ----------
    n_blocks : int
        Number of residual blocks (paper: 5).
    width : int
        Filters per convolution (paper: 64).
    upscale : int
        Output/input sampling ratio (paper: 2, 0.504"/px -> 0.252"/px).
    bn_eps : float
        Epsilon of every batch normalisation: PyTorch's 1e-5 for networks
        trained here, Keras' 1e-3 for weights imported from the 2018 code
        (:mod:`enhance_hmi.model.keras_import`). It is not part of a state_dict,
        so :attr:`architecture` records it whenever it differs from 1e-5.
    linear_skip : int
        Side of the learned linear polyphase 2x filter added to the output
        (odd; 0: none, the paper's network). Initialised to nearest-neighbour
        upsampling of the input.

    Notes
    -----
    Input ``(N, 1, H, W)`` in network units (continuum: quiet-Sun intensity;
    Blos: kG), output ``(N, 1, upscale*H, upscale*W)``. The receptive radius
    is :attr:`receptive_radius` input pixels; tiles overlapping by at least
    that much reproduce the whole-image result (see :mod:`enhance_hmi.inference`).
    """

    def __init__(
        self,
        *,
        n_blocks: int = 5,
        width: int = 64,
        upscale: int = 2,
        bn_eps: float = TORCH_BN_EPS,
        linear_skip: int = 0,
    ) -> None:
        super().__init__()
        if (
            n_blocks < 0
            or width < 1
            or upscale < 1
            or not bn_eps > 0
            or linear_skip < 0
            or (linear_skip and linear_skip % 2 == 0)
        ):
            raise ConfigError(
                f"invalid architecture n_blocks={n_blocks}, width={width}, upscale={upscale}, "
                f"bn_eps={bn_eps}, linear_skip={linear_skip} (odd or 0)"
            )
        self.n_blocks, self.width, self.upscale = int(n_blocks), int(width), int(upscale)
        self.bn_eps = float(bn_eps)
        self.head = _conv3x3(1, width)
        self.blocks = nn.ModuleList(ResidualBlock(width, bn_eps=bn_eps) for _ in range(n_blocks))
        self.body_conv = _conv3x3(width, width)
        self.body_bn = nn.BatchNorm2d(width, eps=bn_eps)
        self.up = nn.Upsample(scale_factor=upscale, mode="nearest")
        self.up_conv = _conv3x3(width, width)
        self.tail = nn.Conv2d(width, 1, 1)
        self.linear_skip = int(linear_skip)
        if self.linear_skip:
            k = self.linear_skip
            self.linear = nn.Conv2d(1, upscale**2, k, padding=k // 2, padding_mode="reflect")
            with torch.no_grad():
                self.linear.weight.zero_()
                self.linear.weight[:, 0, k // 2, k // 2] = 1.0
                cast(torch.Tensor, self.linear.bias).zero_()
            self.shuffle = nn.PixelShuffle(upscale)

    @property
    def architecture(self) -> dict[str, int | float]:
        """``{"n_blocks", "width", "upscale"}``, as stored in the weights sidecar.

        ``bn_eps`` is added when it is not PyTorch's default (imported Keras
        weights), so ``EnhanceNet(**architecture)`` rebuilds the same network.
        """
        arch: dict[str, int | float] = {
            "n_blocks": self.n_blocks,
            "width": self.width,
            "upscale": self.upscale,
        }
        if self.bn_eps != TORCH_BN_EPS:
            arch["bn_eps"] = self.bn_eps
        if self.linear_skip:
            arch["linear_skip"] = self.linear_skip
        return arch

    @property
    def receptive_radius(self) -> int:
        """Receptive-field radius in input pixels (rounded up).

        ``2 n_blocks + 2`` 3x3 convolutions at input resolution reach that many
        pixels; the 3x3 convolution after upsampling adds one output pixel,
        i.e. ``1/upscale`` input pixel, rounded up to 1. The linear skip
        reaches ``linear_skip // 2`` pixels.
        """
        return max(2 * self.n_blocks + 2 + 1, self.linear_skip // 2)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The last feature maps of ``x`` (N, 1, H, W): ``(N, width, upscale H, upscale W)``.

        Everything before the 1x1 output convolution: the head, the residual
        blocks, the body with its skip, the upsampling and its 3x3
        convolution and ReLU. The uncertainty head reads them
        (:mod:`enhance_hmi.model.uncertainty`); :meth:`forward` is
        :meth:`output` of them, so the two never differ.
        """
        x0 = torch.relu(self.head(x))
        y = x0
        for block in self.blocks:
            y = block(y)
        y = x0 + self.body_bn(self.body_conv(y))
        return torch.relu(self.up_conv(self.up(y)))

    def output(self, features: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The network output from :meth:`features` of ``x`` and ``x`` itself.

        The 1x1 output convolution of the features, plus the linear skip of
        the input when the network has one.
        """
        y: torch.Tensor = self.tail(features)
        if self.linear_skip:
            y = y + self.shuffle(self.linear(x))
        return y

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The enhanced image ``(N, 1, upscale H, upscale W)`` of ``x`` (N, 1, H, W)."""
        return self.output(self.features(x), x)

    def keras_layer_order(self) -> tuple[list[nn.Conv2d], list[nn.BatchNorm2d]]:
        """Convolutions and batch norms in the order of the published Keras model.

        Returns ``(convs, bns)`` matching ``conv2d_1..`` and
        ``batch_normalization_1..`` of the 2018 code's ``network/*_model.json``.
        """
        convs: list[nn.Conv2d] = [self.head]
        bns: list[nn.BatchNorm2d] = []
        for block in (cast(ResidualBlock, b) for b in self.blocks):
            convs += [block.conv1, block.conv2]
            bns += [block.bn1, block.bn2]
        convs += [self.body_conv, self.up_conv, self.tail]
        bns.append(self.body_bn)
        return convs, bns


def deepened(source: EnhanceNet, n_blocks: int) -> EnhanceNet:
    """A copy of ``source`` with ``n_blocks`` residual blocks that computes the same image.

    The first ``source.n_blocks`` blocks and every other layer are copied;
    each added block's last batch norm has zero scale and shift, so its
    residual is zero and the block passes its input through (the zero-γ
    initialisation of Goyal et al. 2017, arXiv:1706.02677, Sect. 5.1). Training
    then starts from the source network's output instead of from scratch.

    Parameters
    ----------
    source : EnhanceNet
        The trained network.
    n_blocks : int
        Residual blocks of the copy, at least ``source.n_blocks``.

    Returns
    -------
    EnhanceNet
        A new network on the CPU, in the source's training mode.

    Raises
    ------
    ConfigError
        ``n_blocks`` is smaller than the source's.
    """
    if n_blocks < source.n_blocks:
        raise ConfigError(f"cannot deepen a {source.n_blocks}-block network to {n_blocks} blocks")
    grown = EnhanceNet(
        n_blocks=int(n_blocks),
        width=source.width,
        upscale=source.upscale,
        bn_eps=source.bn_eps,
        linear_skip=source.linear_skip,
    )
    result = grown.load_state_dict(source.state_dict(), strict=False)
    added = {f"blocks.{i}." for i in range(source.n_blocks, int(n_blocks))}
    stray = [k for k in result.missing_keys if not any(k.startswith(p) for p in added)]
    if stray or result.unexpected_keys:
        raise ConfigError(
            f"cannot deepen: keys {stray + list(result.unexpected_keys)} do not match"
        )
    with torch.no_grad():
        for block in list(grown.blocks)[source.n_blocks :]:
            bn = cast(ResidualBlock, block).bn2
            bn.weight.zero_()
            bn.bias.zero_()
    return grown.train(source.training)
