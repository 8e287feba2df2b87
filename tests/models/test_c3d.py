"""C3D: shapes for several clips, the standard size, ReLU modules, gradients, and the errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lightning_selrel import C3D, C3DClassifier
from lightning_selrel.models.c3d import min_clip_shape, pooled_shape


@pytest.mark.parametrize(
    "clip_shape, width",
    [((16, 112, 112), 4), ((16, 56, 56), 8), ((16, 48, 64), 8), ((32, 16, 16), 4), ((16, 16, 16), 2)],
)
def test_output_shape_for_several_clip_shapes(clip_shape, width):
    net = C3D(num_classes=7, width=width, fc_dim=32, clip_shape=clip_shape)
    out = net(torch.randn(2, 3, *clip_shape))
    assert out.shape == (2, 7)
    t, h, w = pooled_shape(clip_shape)
    assert net.fc6.in_features == 8 * width * t * h * w


def test_standard_c3d_has_the_standard_parameter_count():
    net = C3D(num_classes=101)
    n = sum(p.numel() for p in net.parameters())
    # 27.7 M in the convolutions, 33.6 M fc6 (8192 -> 4096), 16.8 M fc7, 0.41 M fc8.
    assert n == 78_409_573
    assert net.fc6.in_features == 8192  # 512 x 1 x 4 x 4: pool5's (0, 1, 1) padding
    assert [name for name, m in net.named_children() if isinstance(m, nn.Conv3d)] == [
        "conv1a",
        "conv2a",
        "conv3a",
        "conv3b",
        "conv4a",
        "conv4b",
        "conv5a",
        "conv5b",
    ]
    pools = [m for m in net.children() if isinstance(m, nn.MaxPool3d)]
    assert pools[0].kernel_size == (1, 2, 2) and pools[4].padding == (0, 1, 1)


def test_relus_are_modules_and_not_inplace():
    net = C3D(num_classes=4, width=2, fc_dim=8, clip_shape=(16, 16, 16))
    relus = [m for m in net.modules() if isinstance(m, nn.ReLU)]
    assert len(relus) == 10  # eight convolutions, fc6, fc7
    assert not any(m.inplace for m in relus)
    # Every ReLU is hookable: a forward hook on each sees every activation.
    seen = []
    handles = [m.register_forward_hook(lambda mod, i, o: seen.append(o.shape)) for m in relus]
    net(torch.randn(1, 3, 16, 16, 16))
    for h in handles:
        h.remove()
    assert len(seen) == 10


def test_every_parameter_gets_a_finite_gradient():
    torch.manual_seed(0)
    model = C3DClassifier(num_classes=5, width=4, fc_dim=16, clip_shape=(16, 32, 32), dropout=0.0)
    clips = torch.randint(0, 256, (3, 3, 16, 32, 32), dtype=torch.uint8)
    loss = nn.functional.cross_entropy(model(clips), torch.tensor([0, 1, 4]))
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("clip_shape", [(8, 112, 112), (16, 15, 112), (16, 112, 8)])
def test_too_small_clip_names_the_minimum(clip_shape):
    with pytest.raises(ValueError, match=r"minimum is \(T, H, W\) = \(16, 16, 16\)"):
        C3D(num_classes=4, clip_shape=clip_shape)
    assert min_clip_shape() == (16, 16, 16)


def test_wrong_input_shape_is_a_clear_error():
    net = C3D(num_classes=4, width=2, fc_dim=8, clip_shape=(16, 16, 16))
    with pytest.raises(ValueError, match=r"\(16, 16, 16\)"):
        net(torch.randn(1, 3, 16, 32, 32))
