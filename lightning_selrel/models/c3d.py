"""C3D (Tran et al., 2015), built for explanation.

The network is one flat :class:`torch.nn.Sequential` whose children are named like the public
Sports-1M port (``conv1a``, ``pool1``, ..., ``fc8``), so explainers can walk it layer by layer and
hook every ReLU. Every nonlinearity is an ``nn.ReLU()`` module, never in-place and never functional.

Sizes are derived from the clip shape: the standard C3D is ``width=64, fc_dim=4096`` on
16 x 112 x 112 clips; a small variant such as ``width=8, clip_shape=(16, 48, 48)`` trains on a CPU.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
import torch.fx
from torch import nn

__all__ = ["C3D", "Normalize", "check_clip_shape", "min_clip_shape", "pooled_shape"]

# (kernel, stride, padding) of pool1 .. pool5, in (T, H, W).
_POOLS: tuple[tuple[tuple[int, int, int], tuple[int, int, int], tuple[int, int, int]], ...] = (
    ((1, 2, 2), (1, 2, 2), (0, 0, 0)),
    ((2, 2, 2), (2, 2, 2), (0, 0, 0)),
    ((2, 2, 2), (2, 2, 2), (0, 0, 0)),
    ((2, 2, 2), (2, 2, 2), (0, 0, 0)),
    ((2, 2, 2), (2, 2, 2), (0, 1, 1)),
)
# Conv blocks: (names of the convs in the block, output channels as a multiple of `width`).
_BLOCKS: tuple[tuple[tuple[str, ...], int], ...] = (
    (("conv1a",), 1),
    (("conv2a",), 2),
    (("conv3a", "conv3b"), 4),
    (("conv4a", "conv4b"), 8),
    (("conv5a", "conv5b"), 8),
)


def check_clip_shape(x: torch.Tensor, clip_shape: tuple[int, ...]) -> torch.Tensor:
    """``x`` itself, after checking it is (B, C, T, H, W) with (T, H, W) = ``clip_shape``.

    A leaf for ``torch.fx`` (wrapped below), so a model that checks its input can still be traced: DTD reads
    the call as the identity.
    """
    if x.ndim != 5 or tuple(x.shape[2:]) != tuple(clip_shape):
        raise ValueError(f"C3D built for clips (B, C, T, H, W) with (T, H, W) = {clip_shape}, got {tuple(x.shape)}")
    return x


torch.fx.wrap("check_clip_shape")


def pooled_shape(clip_shape: Sequence[int]) -> tuple[int, int, int]:
    """Shape (T, H, W) of the feature volume after pool5 for a clip of ``clip_shape``.

    Convolutions keep the size (3x3x3, padding 1); only the five max-pools shrink it. An axis
    that any pool empties is reported as 0 (the clip is too small along it).
    """
    size = [int(s) for s in clip_shape]
    for kernel, stride, pad in _POOLS:
        size = [
            (s + 2 * p - k) // st + 1 if s > 0 else 0 for s, k, st, p in zip(size, kernel, stride, pad, strict=True)
        ]
        size = [max(s, 0) for s in size]
    return size[0], size[1], size[2]


def min_clip_shape() -> tuple[int, int, int]:
    """The smallest (T, H, W) that survives the pooling stack: (16, 16, 16)."""
    smallest = []
    for axis in range(3):
        n = 1
        while pooled_shape([n if a == axis else 1024 for a in range(3)])[axis] < 1:
            n += 1
        smallest.append(n)
    return smallest[0], smallest[1], smallest[2]


class Normalize(nn.Module):
    """Maps clips in pixel scale [0, 255] to the network's input: ``(x - mean) / std`` per channel.

    The statistics are buffers, so they are saved with the model and explainers (DTD's zB bounds)
    and the ``explain`` command know the input range without the data module.

    Args:
        mean: Per-channel mean in pixel scale, RGB order.
        std: Per-channel standard deviation in pixel scale.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        if len(mean) != 3 or len(std) != 3:
            raise ValueError(f"mean and std need 3 values (RGB), got mean={list(mean)}, std={list(std)}")
        if any(s <= 0 for s in std):
            raise ValueError(f"std must be positive in every channel, got {list(std)}")
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(3, 1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(3, 1, 1, 1))

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        if clips.ndim != 5 or clips.shape[1] != 3:
            raise ValueError(f"expected clips of shape (B, 3, T, H, W), got {tuple(clips.shape)}")
        x = clips.float() if not clips.is_floating_point() else clips
        return (x - self.mean) / self.std  # (B, 3, T, H, W)

    def bounds(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Lowest and highest normalised input, per channel, shape (3, 1, 1, 1): pixels 0 and 255."""
        return (0.0 - self.mean) / self.std, (255.0 - self.mean) / self.std

    def extra_repr(self) -> str:
        return f"mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()}"


class C3D(nn.Sequential):
    """The C3D network: eight 3x3x3 convolutions, five max-pools and three fully connected layers.

    Children, in order: ``conv1a relu1a pool1 conv2a relu2a pool2 conv3a relu3a conv3b relu3b pool3
    conv4a relu4a conv4b relu4b pool4 conv5a relu5a conv5b relu5b pool5 flatten fc6 relu6 drop6
    fc7 relu7 drop7 fc8``.

    Args:
        num_classes: Number of output logits.
        width: Channels of conv1a; later blocks use 2x, 4x, 8x, 8x (64 is the standard C3D).
        fc_dim: Width of fc6 and fc7 (4096 is the standard).
        clip_shape: Input (T, H, W); fixes the size of fc6's input. The standard is (16, 112, 112).
        dropout: Dropout probability after fc6 and fc7.
        in_channels: Input channels (3 for RGB).

    Raises:
        ValueError: If ``clip_shape`` is too small for the pooling stack (the message names the
            minimum), or a size argument is not positive.
    """

    def __init__(
        self,
        *,
        num_classes: int,
        width: int = 64,
        fc_dim: int = 4096,
        clip_shape: Sequence[int] = (16, 112, 112),
        dropout: float = 0.5,
        in_channels: int = 3,
    ) -> None:
        for name, value in (("num_classes", num_classes), ("width", width), ("fc_dim", fc_dim)):
            if int(value) < 1:
                raise ValueError(f"{name} must be a positive integer, got {value}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        clip_shape = tuple(int(s) for s in clip_shape)
        if len(clip_shape) != 3:
            raise ValueError(f"clip_shape must be (T, H, W), got {clip_shape}")
        pooled = pooled_shape(clip_shape)
        if min(pooled) < 1:
            raise ValueError(
                f"clip_shape {clip_shape} is too small for C3D's five max-pools (pooled to {pooled}); "
                f"the minimum is (T, H, W) = {min_clip_shape()}"
            )

        layers: OrderedDict[str, nn.Module] = OrderedDict()
        channels = in_channels
        for block, ((names, mult), (kernel, stride, pad)) in enumerate(zip(_BLOCKS, _POOLS, strict=True), start=1):
            for name in names:
                layers[name] = nn.Conv3d(channels, width * mult, kernel_size=3, padding=1)
                layers["relu" + name[len("conv") :]] = nn.ReLU()
                channels = width * mult
            layers[f"pool{block}"] = nn.MaxPool3d(kernel_size=kernel, stride=stride, padding=pad)
        layers["flatten"] = nn.Flatten()
        layers["fc6"] = nn.Linear(channels * pooled[0] * pooled[1] * pooled[2], fc_dim)
        layers["relu6"] = nn.ReLU()
        layers["drop6"] = nn.Dropout(dropout)
        layers["fc7"] = nn.Linear(fc_dim, fc_dim)
        layers["relu7"] = nn.ReLU()
        layers["drop7"] = nn.Dropout(dropout)
        layers["fc8"] = nn.Linear(fc_dim, num_classes)
        super().__init__(layers)

        self.num_classes = int(num_classes)
        self.clip_shape = clip_shape
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Kaiming-normal convolutions and fully connected layers (ReLU gain), zero biases."""
        for module in self.modules():
            if isinstance(module, (nn.Conv3d, nn.Linear)):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                nn.init.zeros_(module.bias)
        # The last layer feeds a softmax, not a ReLU: a smaller scale keeps initial logits tame.
        nn.init.normal_(self.fc8.weight, std=0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (B, num_classes) for normalised clips (B, C, T, H, W) of ``clip_shape``."""
        return super().forward(check_clip_shape(x, self.clip_shape))
