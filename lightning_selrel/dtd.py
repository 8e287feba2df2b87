"""Deep Taylor decomposition (DTD) for sequential video models, one batch in one pass.

Rules (docs/method.md, section 2): z+ for hidden Conv3d / Linear layers, zB for the first one (inputs
bounded by the normalised pixel range), ReLU, dropout and the input normalisation pass relevance
through (Normalize is element-wise, so the relevance of the normalised clip is that of the pixel
clip), max-pooling is winner-takes-all (its gradient), Flatten reshapes.

Starting value (``start``): the explained class gets relevance 1 at the output and every other class 0
(``start="one"``, the default, as zennit's one-hot output relevance), so the input relevance sums to 1:
the map says which share of the decision each voxel carries. z+ and zB are linear in the output
relevance (their denominators depend on the activations only), so the map is the classic
logit-started map (``start="logit"``, whose input relevance sums to the logit) divided by the logit:
the same pattern, and every metric here is a ratio. Only its sign differs: z+ and zB redistribute
non-negatively, so a negative logit (common early in training, or with ``target="label"``) gives a
``"logit"`` map that is <= 0 everywhere and has no positive relevance at all, while a ``"one"`` map is
>= 0 for every clip.

Choices beyond docs/method.md:

- Denominators leave the biases out (``z+_j = sum_i a_i w+_ij``, the DTD form), so every layer
  passes on all the relevance it receives and conservation holds with biases too, less the
  relevance of neurons whose ``z`` is exactly 0. (Captum's ``Alpha1_Beta0_Rule`` keeps the bias
  in ``z``; the two agree when biases are zero.)
- ``maxpool="proportional"`` (the authors' variant) and AvgPool3d use the z-rule on the window
  sum: each window's relevance is shared in proportion to its inputs.
- Stabiliser: denominators are ``z + eps * sign(z)`` with ``sign(0) = +1`` (``eps = 1e-9`` as in
  captum's LRP). z+ denominators after a ReLU are >= 0 and get ``+ eps``; where ``z == 0`` all
  numerators are 0 too, so 0/0 gives 0 (that neuron's relevance is dropped).

Every rule is a z-rule ``R_i = a_i * sum_j w'_ij R_j / z'_j``, computed with the gradient trick:
one forward of the modified layer gives ``z'``, one vector-Jacobian product of that *linear* map
gives ``sum_j w'_ij s_j`` for every input at once. The products use the layers' transposed
operators (``F.grad.conv3d_input``, ``s @ W``, the pooling backward ops): no autograd graph, no
hook, and weights are never changed in place (``W.clamp(min=0)`` is a temporary). Cost: one
forward of the network plus, per layer, one forward and one input-backward of the modified layer
(zB's bound terms are computed for one clip and broadcast over the batch).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.utils import _triple

from .model import Normalize

__all__ = ["dtd", "dtd_layers", "select_target", "SUPPORTED_LAYERS"]

Bound = float | Tensor

_WEIGHTED = (nn.Conv3d, nn.Linear)
_PASS_THROUGH = (nn.ReLU, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.Identity)
#: Layer types DTD knows a rule for; any other type raises a TypeError.
SUPPORTED_LAYERS: tuple[type[nn.Module], ...] = (
    *_WEIGHTED,
    nn.MaxPool3d,
    nn.AvgPool3d,
    nn.Flatten,
    Normalize,
    *_PASS_THROUGH,
)


def select_target(target: int | Sequence[int] | Tensor | None, logits: Tensor) -> Tensor:
    """The class to explain per clip, a LongTensor (B,) on the logits' device.

    Args:
        target: ``None`` (the predicted class, argmax of the logits), one int for every clip, or one
            class per clip as a list or a LongTensor (B,).
        logits: The model's output (B, num_classes).

    Raises:
        ValueError: If the number of targets is not B or a class index is out of range.
    """
    batch, num_classes = logits.shape
    if target is None:
        return logits.detach().argmax(dim=1)
    t = torch.as_tensor(target, device=logits.device)
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise ValueError(f"target must hold integer class indices, got dtype {t.dtype}")
    t = t.long()
    if t.ndim == 0:
        t = t.expand(batch)
    if t.shape != (batch,):
        raise ValueError(
            f"target must be None, an int or {batch} class indices (one per clip), got shape {tuple(t.shape)}"
        )
    if bool(((t < 0) | (t >= num_classes)).any()):
        raise ValueError(f"target class indices must be in [0, {num_classes}), got {t.tolist()}")
    return t


def dtd_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The layers DTD walks, in forward order, as (dotted name, module).

    A :class:`~lightning_selrel.classifier.C3DClassifier` (anything with a ``normalize`` module and a
    sequential ``net``) gives ``[normalize] + net``'s children; an :class:`nn.Sequential` gives its
    children, nested sequentials flattened. The sequential's ``forward`` is assumed to chain its
    children (C3D's only adds a shape check).

    Raises:
        TypeError: If the model is not sequential, or a layer has no DTD rule (the message names it).
    """
    if isinstance(model, nn.Sequential):
        layers = _flatten(model, "")
    elif isinstance(getattr(model, "normalize", None), Normalize) and isinstance(
        getattr(model, "net", None), nn.Sequential
    ):
        layers = [("normalize", model.normalize), *_flatten(model.net, "net.")]
    else:
        raise TypeError(
            f"DTD needs a sequential model (an nn.Sequential, or a C3DClassifier with .normalize and a "
            f"sequential .net) so it can walk the layers; got {type(model).__name__}"
        )
    for name, layer in layers:
        if not isinstance(layer, SUPPORTED_LAYERS):
            supported = ", ".join(t.__name__ for t in SUPPORTED_LAYERS)
            raise TypeError(
                f"DTD has no rule for layer {name!r} of type {type(layer).__name__}; supported types: {supported}"
            )
        if isinstance(layer, nn.Conv3d) and layer.padding_mode != "zeros":
            raise TypeError(f"DTD supports Conv3d with zero padding only; layer {name!r} uses {layer.padding_mode!r}")
    return layers


def _flatten(seq: nn.Sequential, prefix: str) -> list[tuple[str, nn.Module]]:
    out: list[tuple[str, nn.Module]] = []
    for name, child in seq.named_children():
        if isinstance(child, nn.Sequential):
            out.extend(_flatten(child, f"{prefix}{name}."))
        else:
            out.append((prefix + name, child))
    return out


@torch.no_grad()
def dtd(
    model: nn.Module,
    clips: Tensor,
    target: int | Sequence[int] | Tensor | None = None,
    *,
    first_rule: Literal["zb", "zplus"] = "zb",
    bounds: tuple[Bound, Bound] | None = None,
    maxpool: Literal["winner", "proportional"] = "winner",
    eps: float = 1e-9,
    start: Literal["one", "logit"] = "one",
) -> tuple[Tensor, Tensor, Tensor]:
    """Deep Taylor relevance of every input element for one target logit per clip.

    Runs in the dtype of the model's weights (cast the model to float64 for exact checks) and in
    eval semantics whatever the model's mode (dropout is the identity). Needs no autograd, so it
    works under ``torch.no_grad()`` and ``torch.inference_mode()``; it calls no module's
    ``forward`` except those of Flatten, AvgPool3d and Normalize, so user hooks do not fire.

    Args:
        model: A sequential model (see :func:`dtd_layers`) ending in logits (B, num_classes).
        clips: What the model's forward takes, e.g. pixel-scale clips (B, 3, T, H, W), any dtype.
        target: Class per clip (see :func:`select_target`); ``None`` explains the predicted class.
        first_rule: ``"zb"`` (bounded input, the default) or ``"zplus"`` for the first Conv3d/Linear.
        bounds: ``(low, high)`` range of the *model's input* (scalars or tensors broadcastable to
            ``clips``), mapped through the layers before the first Conv3d/Linear (a Normalize maps
            it to normalised units). Default: when a :class:`Normalize` precedes the first
            Conv3d/Linear, the pixel range [0, 255] (its :meth:`Normalize.bounds`).
        maxpool: ``"winner"`` (winner-takes-all, the gradient) or ``"proportional"`` (relevance
            shared in proportion to the window's inputs, the z-rule on the window sum).
        eps: Stabiliser added to denominators (with their sign).
        start: Relevance of the explained class at the output: ``"one"`` (default; the input relevance
            sums to 1 and is >= 0 for every clip) or ``"logit"`` (the classic DTD start; it sums to the
            logit and is <= 0 everywhere when the logit is negative). See the module notes.

    Returns:
        ``(relevance, logits, target)``: relevance shaped like ``clips`` (channels not summed), the
        logits (B, num_classes) and the explained class (B,).

    Raises:
        TypeError: For a non-sequential model or a layer without a rule.
        ValueError: For zB without bounds, or bad ``first_rule`` / ``maxpool`` / ``start`` / ``target``.
    """
    if start not in ("one", "logit"):
        raise ValueError(f"start must be 'one' or 'logit', got {start!r}")
    if first_rule not in ("zb", "zplus"):
        raise ValueError(f"first_rule must be 'zb' or 'zplus', got {first_rule!r}")
    if maxpool not in ("winner", "proportional"):
        raise ValueError(f"maxpool must be 'winner' or 'proportional', got {maxpool!r}")
    layers = dtd_layers(model)
    first = next((i for i, (_, layer) in enumerate(layers) if isinstance(layer, _WEIGHTED)), None)
    if first is None:
        raise TypeError("DTD needs at least one Conv3d or Linear layer in the model")
    dtype = layers[first][1].weight.dtype
    x = clips.to(dtype)

    # Bounds for zB travel with x through the (monotone) layers before the first Conv3d/Linear,
    # as one "clip" (1, ...) that broadcasts over the batch.
    box: tuple[Tensor, Tensor] | None = None
    if first_rule == "zb" and bounds is not None:
        tensors = [torch.as_tensor(b, dtype=dtype, device=x.device) for b in bounds]
        box = tuple(b.expand(torch.broadcast_shapes(b.shape, (1, *x.shape[1:]))) for b in tensors)  # type: ignore[assignment]
    elif first_rule == "zb" and not any(isinstance(layer, Normalize) for _, layer in layers[:first]):
        raise ValueError(
            f"DTD's zB rule for the first layer {layers[first][0]!r} needs the input range: pass "
            "bounds=(low, high) of the model's input (e.g. (0, 255) for pixel clips), or first_rule='zplus'"
        )

    # Forward: keep what each rule needs (layer inputs; pooling indices; flatten shapes). `owned`:
    # the activation is a tensor made here (not the caller's), so ReLU may work in place;
    # `nonneg`: it is >= 0 (after a ReLU), so z+ denominators are >= 0.
    saved: list[object] = []
    a, owned, nonneg = x, False, False
    for i, (_, layer) in enumerate(layers):
        if i < first and first_rule == "zb":
            if isinstance(layer, Normalize) and box is None:
                low, high = (b.to(dtype) for b in layer.bounds())
                box = (low.expand(1, *a.shape[1:]), high.expand(1, *a.shape[1:]))
            elif box is not None:
                box = (_forward(layer, box[0], False)[0], _forward(layer, box[1], False)[0])
        if isinstance(layer, _WEIGHTED):
            saved.append((a, nonneg))
        a, keep = _forward(layer, a, owned)
        if not isinstance(layer, _WEIGHTED):
            saved.append(keep)
        owned = owned or not isinstance(layer, (nn.Flatten, *_PASS_THROUGH))
        if isinstance(layer, nn.ReLU):
            nonneg = True
        elif not isinstance(layer, (nn.MaxPool3d, nn.AvgPool3d, nn.Flatten, *_PASS_THROUGH)):
            nonneg = False
    logits = a
    if logits.ndim != 2:
        raise TypeError(f"DTD needs a model that outputs logits (B, num_classes), got shape {tuple(logits.shape)}")
    t = select_target(target, logits)

    # Backward: relevance = 1 (or the logit) at the target, everything else zero.
    seed = logits.gather(1, t[:, None]) if start == "logit" else torch.ones_like(logits[:, :1])
    relevance = torch.zeros_like(logits).scatter_(1, t[:, None], seed)
    for i in range(len(layers) - 1, -1, -1):
        layer, keep = layers[i][1], saved[i]
        saved[i] = None  # free the activation as soon as it is used
        if isinstance(layer, _WEIGHTED):
            if i == first and first_rule == "zb":
                assert box is not None
                relevance = _zb(layer, keep[0], box[0], box[1], relevance, eps)  # type: ignore[index]
            else:
                relevance = _zplus(layer, *keep, relevance, eps)  # type: ignore[misc]
        elif isinstance(layer, nn.MaxPool3d):
            relevance = _maxpool(layer, keep, relevance, maxpool, eps)  # type: ignore[arg-type]
        elif isinstance(layer, nn.AvgPool3d):
            relevance = _avgpool(layer, keep, relevance, eps)  # type: ignore[arg-type]
        elif isinstance(layer, nn.Flatten):
            relevance = relevance.reshape(keep)  # type: ignore[arg-type]
        # ReLU, dropout, Identity, Normalize: relevance passes through unchanged.
    return relevance, logits, t


# -- forward ------------------------------------------------------------------------------------
def _forward(layer: nn.Module, a: Tensor, owned: bool) -> tuple[Tensor, object]:
    """Eval-mode output of ``layer`` and what its rule needs later (weighted layers: nothing extra)."""
    if isinstance(layer, nn.Conv3d):
        return layer._conv_forward(a, layer.weight, layer.bias), None
    if isinstance(layer, nn.Linear):
        return F.linear(a, layer.weight, layer.bias), None
    if isinstance(layer, nn.ReLU):
        return F.relu(a, inplace=owned), None  # never in place on the caller's tensor
    if isinstance(layer, nn.MaxPool3d):
        out, indices = F.max_pool3d(
            a, layer.kernel_size, layer.stride, layer.padding, layer.dilation, layer.ceil_mode, return_indices=True
        )
        return out, (a, indices)
    if isinstance(layer, nn.AvgPool3d):
        return layer(a), a
    if isinstance(layer, nn.Flatten):
        return layer(a), a.shape
    if isinstance(layer, Normalize):
        return layer(a), None
    return a, None  # dropout and Identity: the identity in eval mode


# -- rules --------------------------------------------------------------------------------------
def _stabilise_(z: Tensor, eps: float, nonneg: bool = False) -> Tensor:
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


def _zplus(layer: nn.Module, a: Tensor, nonneg: bool, relevance: Tensor, eps: float) -> Tensor:
    """z+: ``R_i = a_i sum_j w+_ij R_j / sum_i' a_i' w+_i'j`` (biases ignored)."""
    w_pos = layer.weight.clamp(min=0)
    z = _stabilise_(_apply(layer, a, w_pos), eps, nonneg)
    s = torch.div(relevance, z, out=z)  # R_j / z_j, reusing z's memory
    return _apply_t(layer, a.shape, w_pos, s).mul_(a)


def _zb(layer: nn.Module, x: Tensor, low: Tensor, high: Tensor, relevance: Tensor, eps: float) -> Tensor:
    """zB: ``R_i = sum_j (x_i w_ij - l_i w+_ij - h_i w-_ij) / (sum_i' ...) R_j``.

    The bounds are one "clip" (1, ...) broadcast over the batch, so their two products cost one
    clip; the three transposed products are one call with the weights stacked along the inputs.
    """
    w = layer.weight
    w_pos, w_neg = w.clamp(min=0), w.clamp(max=0)
    z = _apply(layer, x, w).sub_(_apply(layer, low, w_pos).add_(_apply(layer, high, w_neg)))
    s = torch.div(relevance, _stabilise_(z, eps), out=z)
    if isinstance(layer, nn.Linear) or layer.groups == 1:
        stacked = torch.cat([w, w_pos, w_neg], dim=1)  # (out, 3 * in, ...)
        shape = [x.shape[0], 3 * x.shape[1], *x.shape[2:]]
        c_x, c_low, c_high = _apply_t(layer, shape, stacked, s).chunk(3, dim=1)
    else:
        c_x, c_low, c_high = (_apply_t(layer, x.shape, weight, s) for weight in (w, w_pos, w_neg))
    return c_x.mul(x).sub_(c_low.mul_(low)).sub_(c_high.mul_(high))


def _maxpool(layer: nn.MaxPool3d, keep: tuple[Tensor, Tensor], relevance: Tensor, mode: str, eps: float) -> Tensor:
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
    s = torch.div(relevance, _stabilise_(z, eps), out=z)
    share = torch.ops.aten.avg_pool3d_backward(s, padded, kernel, stride, (0, 0, 0), layer.ceil_mode, True, None)
    t, h, w = padding
    return a * share[..., t : share.shape[-3] - t, h : share.shape[-2] - h, w : share.shape[-1] - w]


def _avgpool(layer: nn.AvgPool3d, a: Tensor, relevance: Tensor, eps: float) -> Tensor:
    """z-rule: relevance shared in proportion to the inputs of each window."""
    kernel, stride, padding = (
        _triple(layer.kernel_size),
        _triple(layer.stride or layer.kernel_size),
        _triple(layer.padding),
    )
    z = F.avg_pool3d(a, kernel, stride, padding, layer.ceil_mode, layer.count_include_pad, layer.divisor_override)
    s = torch.div(relevance, _stabilise_(z, eps), out=z)
    return a * torch.ops.aten.avg_pool3d_backward(
        s, a, kernel, stride, padding, layer.ceil_mode, layer.count_include_pad, layer.divisor_override
    )
