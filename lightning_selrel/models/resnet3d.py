"""C3D's successors: R3D-18 and R(2+1)D-18 (Tran et al., "A Closer Look at Spatiotemporal Convolutions for
Action Recognition", CVPR 2018), built for explanation like :class:`~lightning_selrel.models.c3d.C3D`.

Both are a stem, four stages of two BasicBlocks (residual, BatchNorm3d) with ``width``, 2, 4 and 8 times
``width`` channels (stages 2-4 halve T, H and W), global average pooling and a linear head. R3D's convolutions
are 3 x 3 x 3; R(2+1)D factorises each into a spatial 1 x 3 x 3 and a temporal 3 x 1 x 1 convolution with BatchNorm
and ReLU between them, with the paper's number of middle channels,
``M = floor(t d^2 N_in N_out / (d^2 N_in + t N_out))`` (t = d = 3), computed from the block's input and output
channels and used by both of its convolutions, as the reference implementation (torchvision) does; per
convolution it would keep each 3D convolution's parameter count exactly (33.4 M in all, like R3D-18). The
R(2+1)D stem is a 1 x 7 x 7 convolution to ``45 * width / 64`` channels and a 3 x 1 x 1 one (45 as in the paper's
released model and torchvision). At ``width=64`` with 400 classes they have
the standard sizes: R3D-18 33.4 M and R(2+1)D-18 31.5 M parameters. Module names follow torchvision's
(``stem``, ``layer1`` .. ``layer4``, ``fc``), so converted torchvision or pytorchvideo weights map name for name.

Every nonlinearity is its own ``nn.ReLU()`` module (never in place, never reused), and the residual addition is
written ``out = out + identity``: DTD walks the traced graph (:mod:`lightning_selrel.relevance.dtd`) and captum's Guided
Backprop hooks every ReLU. ``clip_shape`` is the clip the network is built for (reported to the monitor, the
explain command and calibration); global pooling makes the weights independent of it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["BasicBlock", "R2Plus1D18", "R3D18", "middle_channels"]


def middle_channels(in_channels: int, out_channels: int, t: int = 3, d: int = 3) -> int:
    """The (2+1)D middle width that keeps a t x d x d convolution's parameter count (Tran et al. 2018, eq. 4)."""
    return (t * d * d * in_channels * out_channels) // (d * d * in_channels + t * out_channels)


def _conv3d(in_channels: int, out_channels: int, stride: int) -> nn.Conv3d:
    return nn.Conv3d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False)


class Conv2Plus1D(nn.Sequential):
    """A 1 x 3 x 3 spatial convolution, BatchNorm3d, ReLU, and a 3 x 1 x 1 temporal convolution (stride split alike)."""

    def __init__(self, in_channels: int, out_channels: int, middle: int, stride: int = 1) -> None:
        super().__init__(
            nn.Conv3d(in_channels, middle, (1, 3, 3), stride=(1, stride, stride), padding=(0, 1, 1), bias=False),
            nn.BatchNorm3d(middle),
            nn.ReLU(),
            nn.Conv3d(middle, out_channels, (3, 1, 1), stride=(stride, 1, 1), padding=(1, 0, 0), bias=False),
        )


class BasicBlock(nn.Module):
    """Two convolutions with BatchNorm (ReLU between and after), plus the identity or a 1 x 1 x 1 projection.

    Children: ``conv1`` (conv, BN, ReLU), ``conv2`` (conv, BN), ``downsample`` (conv, BN, or None), ``relu``.
    """

    def __init__(self, in_channels: int, channels: int, stride: int, factorised: bool) -> None:
        super().__init__()
        middle = middle_channels(in_channels, channels)  # one middle width for the block's two convolutions

        def conv(cin: int, cout: int, s: int) -> nn.Module:
            return Conv2Plus1D(cin, cout, middle, s) if factorised else _conv3d(cin, cout, s)

        self.conv1 = nn.Sequential(conv(in_channels, channels, stride), nn.BatchNorm3d(channels), nn.ReLU())
        self.conv2 = nn.Sequential(conv(channels, channels, 1), nn.BatchNorm3d(channels))
        self.downsample: nn.Module | None = None
        if stride != 1 or in_channels != channels:
            self.downsample = nn.Sequential(
                nn.Conv3d(in_channels, channels, kernel_size=1, stride=stride, bias=False), nn.BatchNorm3d(channels)
            )
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.conv2(self.conv1(x))
        return self.relu(out + identity)


class _VideoResNet(nn.Module):
    """Stem, four stages of two BasicBlocks, global average pooling, dropout and the linear head."""

    factorised = False
    # GradCAM reads the last stage's output (after its residual sum and ReLU), as is usual for ResNets; the last
    # Conv3d would be the residual branch's temporal convolution alone, before its BatchNorm and the skip.
    gradcam_layer = "layer4"

    def __init__(
        self,
        *,
        num_classes: int,
        width: int = 64,
        clip_shape: Sequence[int] = (16, 112, 112),
        dropout: float = 0.0,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        for name, value in (("num_classes", num_classes), ("width", width)):
            if int(value) < 1:
                raise ValueError(f"{name} must be a positive integer, got {value}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        clip_shape = tuple(int(s) for s in clip_shape)
        if len(clip_shape) != 3 or min(clip_shape) < 1:
            raise ValueError(f"clip_shape must be (T, H, W) with positive sizes, got {clip_shape}")
        self.stem = self._stem(in_channels, width)
        channels, layers = width, []
        for stage, multiple in enumerate((1, 2, 4, 8)):
            out = width * multiple
            stride = 1 if stage == 0 else 2
            layers.append(
                nn.Sequential(
                    BasicBlock(channels, out, stride, self.factorised), BasicBlock(out, out, 1, self.factorised)
                )
            )
            channels = out
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.avgpool = nn.AdaptiveAvgPool3d(1)
        self.flatten = nn.Flatten()
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(channels, num_classes)
        self.num_classes = int(num_classes)
        self.clip_shape = clip_shape
        self.reset_parameters()

    def _stem(self, in_channels: int, width: int) -> nn.Sequential:  # pragma: no cover - overridden
        raise NotImplementedError

    def reset_parameters(self) -> None:
        """Kaiming-normal convolutions (fan out), BatchNorm at 1 and 0, a small head (as torchvision)."""
        for module in self.modules():
            if isinstance(module, nn.Conv3d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm3d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        nn.init.normal_(self.fc.weight, std=0.01)
        nn.init.zeros_(self.fc.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (B, num_classes) for normalised clips (B, C, T, H, W)."""
        x = self.stem(x)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.dropout(self.flatten(self.avgpool(x))))


class R3D18(_VideoResNet):
    """R3D-18: 3 x 3 x 3 residual convolutions; stem 3 x 7 x 7, stride (1, 2, 2).

    Args:
        num_classes: Number of output logits.
        width: Channels of the stem and the first stage (64 is the standard R3D-18).
        clip_shape: Input (T, H, W) the network is built for (16 x 112 x 112 is the standard).
        dropout: Dropout before the head (0 in the original network).
        in_channels: Input channels (3 for RGB).
    """

    def _stem(self, in_channels: int, width: int) -> nn.Sequential:
        return nn.Sequential(
            nn.Conv3d(in_channels, width, (3, 7, 7), stride=(1, 2, 2), padding=(1, 3, 3), bias=False),
            nn.BatchNorm3d(width),
            nn.ReLU(),
        )


class R2Plus1D18(_VideoResNet):
    """R(2+1)D-18: every 3D convolution factorised into spatial and temporal ones (see the module notes).

    Args:
        num_classes: Number of output logits.
        width: Channels of the first stage (64 is the standard R(2+1)D-18).
        clip_shape: Input (T, H, W) the network is built for (16 x 112 x 112 is the standard).
        dropout: Dropout before the head (0 in the original network).
        in_channels: Input channels (3 for RGB).
    """

    factorised = True

    def _stem(self, in_channels: int, width: int) -> nn.Sequential:
        middle = max(1, round(45 * width / 64))
        return nn.Sequential(
            nn.Conv3d(in_channels, middle, (1, 7, 7), stride=(1, 2, 2), padding=(0, 3, 3), bias=False),
            nn.BatchNorm3d(middle),
            nn.ReLU(),
            nn.Conv3d(middle, width, (3, 1, 1), stride=(1, 1, 1), padding=(1, 0, 0), bias=False),
            nn.BatchNorm3d(width),
            nn.ReLU(),
        )
