"""R3D-18 and R(2+1)D-18: the standard sizes, the paper's middle widths, shapes, and modules built for explanation."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lightning_selrel.models.resnet3d import R3D18, R2Plus1D18, middle_channels


@pytest.mark.parametrize(("cls", "count"), [(R3D18, 33_371_472), (R2Plus1D18, 31_505_325)])
def test_standard_parameter_counts_at_width_64_with_400_classes(cls, count):
    """torchvision's r3d_18 (33.4 M) and r2plus1d_18 (31.5 M)."""
    assert sum(p.numel() for p in cls(num_classes=400).parameters()) == count


def test_the_middle_width_keeps_the_3d_convolutions_parameter_count():
    assert middle_channels(64, 64) == 144 and middle_channels(64, 128) == 230  # torchvision's values
    for cin, cout in ((3, 8), (16, 32), (64, 64)):
        m = middle_channels(cin, cout)
        factorised = 9 * cin * m + 3 * m * cout
        assert abs(factorised - 27 * cin * cout) <= 9 * cin + 3 * cout  # equal up to the floor


@pytest.mark.parametrize("cls", [R3D18, R2Plus1D18])
@pytest.mark.parametrize("clip_shape", [(16, 48, 48), (8, 32, 40)])
def test_shapes_and_modules_built_for_explanation(cls, clip_shape):
    net = cls(num_classes=5, width=4, clip_shape=clip_shape).eval()
    assert net.clip_shape == clip_shape and net(torch.randn(2, 3, *clip_shape)).shape == (2, 5)
    relus = [m for m in net.modules() if isinstance(m, nn.ReLU)]
    assert relus and not any(m.inplace for m in relus) and len({id(m) for m in relus}) == len(relus)
    assert any(isinstance(m, nn.BatchNorm3d) for m in net.modules())
    kernels = {tuple(m.kernel_size) for m in net.modules() if isinstance(m, nn.Conv3d)}
    if cls is R2Plus1D18:
        assert (1, 3, 3) in kernels and (3, 1, 1) in kernels and (3, 3, 3) not in kernels
    else:
        assert (3, 3, 3) in kernels


def test_keyword_only_and_clear_errors():
    with pytest.raises(TypeError):
        R3D18(5)  # keyword-only, as C3D
    with pytest.raises(ValueError, match="width must be a positive integer"):
        R3D18(num_classes=5, width=0)
    with pytest.raises(ValueError, match="dropout must be in"):
        R2Plus1D18(num_classes=5, dropout=1.0)
