"""The tensor operations of DTD's rules (:mod:`.rules`): z+ and zB by the gradient trick, the pooling z-rules,
the residual split, BatchNorm folding. Each takes tensors and layers and returns the input relevance; none keeps
state, registers a hook or changes a weight.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.fx
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.utils import _triple

__all__ = [
    "add_shares",
    "avgpool",
    "batch_norm",
    "folded_weight",
    "global_mean",
    "maxpool",
    "stabilise_",
    "zb",
    "zplus",
]


def folded_weight(conv: nn.Conv3d, bn: nn.BatchNorm3d, dtype: torch.dtype) -> Tensor:
    """The weights of ``bn(conv(x))`` as one convolution (a temporary): ``W * gamma / sqrt(running_var + eps)``."""
    var = bn.running_var if bn.running_var is not None else torch.ones(conv.out_channels, device=conv.weight.device)
    scale = torch.rsqrt(var.to(dtype) + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight.to(dtype)
    return conv.weight.to(dtype) * scale.view(-1, 1, 1, 1, 1)


def batch_norm(bn: nn.BatchNorm3d, a: Tensor) -> Tensor:
    """Eval-mode BatchNorm (running statistics) whatever the module's mode."""
    return F.batch_norm(a, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)


def stabilise_(z: Tensor, eps: float, nonneg: bool = False) -> Tensor:
    """``z + eps * sign(z)`` with sign(0) = +1, in place; ``nonneg``: z is known to be >= 0."""
    if nonneg:
        return z.add_(eps)
    return z.add_(torch.where(z >= 0, eps, -eps))


def _conv_padding(layer: nn.Conv3d) -> tuple[int, int, int]:
    if isinstance(layer.padding, str):
        if layer.padding == "valid":
            return (0, 0, 0)
        total = [d * (k - 1) for d, k in zip(layer.dilation, layer.kernel_size, strict=True)]
        if any(p % 2 for p in total):
            raise TypeError(f"DTD cannot invert asymmetric padding='same' of {layer}")
        return tuple(p // 2 for p in total)  # type: ignore[return-value]
    return layer.padding  # type: ignore[return-value]


def _apply(layer: nn.Module, a: Tensor, weight: Tensor) -> Tensor:
    """``z = W a`` without bias."""
    if isinstance(layer, nn.Linear):
        return F.linear(a, weight)
    return F.conv3d(a, weight, None, layer.stride, _conv_padding(layer), layer.dilation, layer.groups)


def _apply_t(layer: nn.Module, shape: Sequence[int], weight: Tensor, s: Tensor) -> Tensor:
    """``W^T s``: the vector-Jacobian product of the bias-free layer, shaped like its input."""
    if isinstance(layer, nn.Linear):
        return s @ weight
    return F.grad.conv3d_input(list(shape), weight, s, layer.stride, _conv_padding(layer), layer.dilation, layer.groups)


def zplus(layer: nn.Module, a: Tensor, nonneg: bool, relevance: Tensor, eps: float, weight: Tensor) -> Tensor:
    """z+: ``R_i = a_i sum_j w+_ij R_j / sum_i' a_i' w+_i'j`` (biases ignored)."""
    w_pos = weight.clamp(min=0)
    z = stabilise_(_apply(layer, a, w_pos), eps, nonneg)
    s = torch.div(relevance, z, out=z)  # R_j / z_j, reusing z's memory
    return _apply_t(layer, a.shape, w_pos, s).mul_(a)


def zb(layer: nn.Module, x: Tensor, low: Tensor, high: Tensor, relevance: Tensor, eps: float, w: Tensor) -> Tensor:
    """zB: ``R_i = sum_j (x_i w_ij - l_i w+_ij - h_i w-_ij) / (sum_i' ...) R_j``.

    The bounds are one "clip" (1, ...) broadcast over the batch, so their two products cost one
    clip; the three transposed products are one call with the weights stacked along the inputs.
    """
    w_pos, w_neg = w.clamp(min=0), w.clamp(max=0)
    z = _apply(layer, x, w).sub_(_apply(layer, low, w_pos).add_(_apply(layer, high, w_neg)))
    s = torch.div(relevance, stabilise_(z, eps), out=z)
    if isinstance(layer, nn.Linear) or layer.groups == 1:
        stacked = torch.cat([w, w_pos, w_neg], dim=1)  # (out, 3 * in, ...)
        shape = [x.shape[0], 3 * x.shape[1], *x.shape[2:]]
        c_x, c_low, c_high = _apply_t(layer, shape, stacked, s).chunk(3, dim=1)
    else:
        c_x, c_low, c_high = (_apply_t(layer, x.shape, weight, s) for weight in (w, w_pos, w_neg))
    return c_x.mul(x).sub_(c_low.mul_(low)).sub_(c_high.mul_(high))


def add_shares(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """Shares of a residual sum's relevance: in proportion to the positive parts, an even split where neither is."""
    px, py = x.clamp(min=0), y.clamp(min=0)
    total = px + py
    none = total <= 0
    share_x = torch.where(none, 0.5, px / total.where(~none, 1.0))
    return share_x, 1.0 - share_x


def maxpool(layer: nn.MaxPool3d, keep: tuple[Tensor, Tensor], relevance: Tensor, mode: str, eps: float) -> Tensor:
    a, indices = keep
    kernel, stride, padding = (
        _triple(layer.kernel_size),
        _triple(layer.stride or layer.kernel_size),
        _triple(layer.padding),
    )
    if mode == "winner":
        return torch.ops.aten.max_pool3d_with_indices_backward(
            relevance, a, kernel, stride, padding, _triple(layer.dilation), layer.ceil_mode, indices
        )
    if _triple(layer.dilation) != (1, 1, 1):
        raise TypeError(f"maxpool='proportional' needs a MaxPool3d without dilation, got {layer}")
    # z-rule on the window sum: an average pool with a constant divisor (which cancels) over the
    # zero-padded input (avg_pool3d's own padding rejects inputs smaller than the kernel).
    padded = F.pad(a, [p for size in reversed(padding) for p in (size, size)])
    z = F.avg_pool3d(padded, kernel, stride, 0, layer.ceil_mode)
    if z.shape != relevance.shape:
        raise TypeError(f"maxpool='proportional' cannot reproduce the windows of {layer} (ceil_mode with padding)")
    s = torch.div(relevance, stabilise_(z, eps), out=z)
    share = torch.ops.aten.avg_pool3d_backward(s, padded, kernel, stride, (0, 0, 0), layer.ceil_mode, True, None)
    t, h, w = padding
    return a * share[..., t : share.shape[-3] - t, h : share.shape[-2] - h, w : share.shape[-1] - w]


def avgpool(layer: nn.AvgPool3d, a: Tensor, relevance: Tensor, eps: float) -> Tensor:
    """z-rule: relevance shared in proportion to the inputs of each window."""
    kernel, stride, padding = (
        _triple(layer.kernel_size),
        _triple(layer.stride or layer.kernel_size),
        _triple(layer.padding),
    )
    z = F.avg_pool3d(a, kernel, stride, padding, layer.ceil_mode, layer.count_include_pad, layer.divisor_override)
    s = torch.div(relevance, stabilise_(z, eps), out=z)
    return a * torch.ops.aten.avg_pool3d_backward(
        s, a, kernel, stride, padding, layer.ceil_mode, layer.count_include_pad, layer.divisor_override
    )


def global_mean(node: torch.fx.Node, module: nn.Module | None, a: Tensor, relevance: Tensor, eps: float) -> Tensor:
    """z-rule for average pooling by ``AdaptiveAvgPool3d`` / ``F.adaptive_avg_pool3d`` or ``mean`` over axes: each
    output's relevance is shared in proportion to its inputs (the divisor cancels). An adaptive pool to a grid
    larger than 1 x 1 x 1 needs windows that divide the input evenly (it is then an average pool)."""
    if module is None and node.target in (torch.mean, "mean"):
        dims = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else None)
        keepdim = node.kwargs.get("keepdim", node.args[2] if len(node.args) > 2 else False)
        dims = tuple(range(a.ndim)) if dims is None else (dims,) if isinstance(dims, int) else tuple(dims)
        dims = tuple(sorted(d % a.ndim for d in dims))
    else:
        size = module.output_size if module is not None else node.kwargs.get("output_size", node.args[1])
        size = tuple(d if s is None else s for d, s in zip(a.shape[2:], _triple(size), strict=True))
        if size != (1, 1, 1):
            if any(d % s for d, s in zip(a.shape[2:], size, strict=True)):
                raise TypeError(f"DTD supports adaptive average pooling to a grid that divides the input, got {size}")
            kernel = tuple(d // s for d, s in zip(a.shape[2:], size, strict=True))
            return avgpool(nn.AvgPool3d(kernel, kernel), a, relevance, eps)
        dims, keepdim = (2, 3, 4), True
    shaped = relevance
    if not keepdim:
        for d in dims:
            shaped = shaped.unsqueeze(d)
    total = a.sum(dim=dims, keepdim=True)
    return a * shaped / stabilise_(total, eps)
