"""DTD's rules: one class per operation, each with one job: the node's value on the way forward (keeping what its
backward needs) and the relevance it sends back to its inputs. :func:`rules_for` is the composite: which rule each
node of a graph follows, given the walk's options (zennit separates rules, composites and the attributor the same way).

- :class:`ZPlus` (``Conv3d``, ``Linear``): ``R_i = a_i sum_j w+_ij R_j / sum_i' a_i' w+_i'j``; :class:`ZB` for the
  first layers on the input (inputs bounded by the model's input range, docs/method.md section 2).
- :class:`FoldedBatchNorm`: a ``BatchNorm3d`` after a ``Conv3d`` (its only user) is folded into it for the
  explanation only: the pair is one convolution with weights ``W * gamma / sqrt(var + eps)`` per output channel.
- :class:`PositiveSplit` (residual sums, the default): the relevance is split between the two branches in proportion
  to their positive parts, ``R_a = R a+ / (a+ + b+)`` (an even split where both are <= 0): LRP alpha1-beta0 on the
  addition, conservative and non-negative. :class:`SignedSplit`: in proportion to the signed values,
  ``R_a = R a / (a + b)`` (zennit's ``Norm`` on the sum): conservative, but shares can be large and of both signs.
- :class:`WinnerTakesAll` (``MaxPool3d``, its gradient) or :class:`ProportionalMaxPool` (the z-rule on the window
  sum); :class:`AvgPoolZ` and :class:`GlobalMeanZ` (``AvgPool3d``, ``AdaptiveAvgPool3d``, ``mean`` over axes): each
  window's relevance shared in proportion to its inputs.
- :class:`ReLU`, :class:`Identity` (dropout, ``Identity``), :class:`Cast` (dtype casts, the clip-shape check),
  :class:`Affine` (``Normalize``, arithmetic with constants), :class:`Reshape`: relevance passes through (reshaped);
  the zB bounds travel forward through them to the first layer.

Denominators leave the biases out (``z+_j = sum_i a_i w+_ij``, the DTD form), so every layer passes on all the
relevance it receives, less the relevance of neurons whose ``z`` is exactly 0. Stabiliser: ``z + eps * sign(z)`` with
``sign(0) = +1``. Every rule is computed with the gradient trick: one forward of the modified layer gives ``z'``, one
vector-Jacobian product of that *linear* map (the layers' transposed operators: ``F.grad.conv3d_input``, ``s @ W``,
the pooling backward ops) gives ``sum_j w'_ij s_j`` for every input at once. No autograd graph, no hook, and weights
are never changed in place.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_selrel.relevance.dtd import ops
from lightning_selrel.relevance.dtd.graph import Graph, Step, evaluate
from lightning_selrel.relevance.dtd.state import Walk

__all__ = [
    "RULES",
    "Affine",
    "AvgPoolZ",
    "Cast",
    "FoldedBatchNorm",
    "GlobalMeanZ",
    "Identity",
    "ProportionalMaxPool",
    "PositiveSplit",
    "ReLU",
    "Reshape",
    "Rule",
    "SignedSplit",
    "WinnerTakesAll",
    "ZB",
    "ZPlus",
    "rules_for",
]

Box = tuple[Tensor, Tensor]


class Rule:
    """How one kind of node computes its value forward and sends relevance back.

    Attributes:
        aliases: The output may share memory with the input (a view, the identity): nothing may overwrite it.
        keeps_sign: The output is >= 0 whenever the (first) input is (pooling, reshapes, the identity).
    """

    aliases = False
    keeps_sign = False

    def forward(self, step: Step, walk: Walk) -> Any:
        """The node's value from its inputs' values (``walk.env``); store in ``walk.saved`` what backward needs."""
        return evaluate(step.node, walk.env, step.module)

    def nonneg(self, step: Step, walk: Walk) -> bool:
        """Whether the value just computed is known to be >= 0 (z+ denominators after it need no sign)."""
        return self.keeps_sign and walk.nonneg[step.inputs[0]]

    def owns(self, step: Step, walk: Walk) -> bool:
        """Whether the value is a tensor of the walk's own, which a later ReLU may overwrite."""
        return not self.aliases

    def backward(self, step: Step, walk: Walk, relevance: Tensor) -> None:
        """Send the node's relevance to its inputs (``walk.send``); the default passes it through unchanged."""
        walk.send(step.inputs[0], relevance)

    def bounds(self, step: Step, walk: Walk, box: Box) -> Box:
        """The zB bounds after this single-input operation: the operation on each bound (all are monotone in each
        element), then the elementwise min and max (a division by a negative constant swaps them)."""
        low, high = (evaluate(step.node, {**walk.env, step.inputs[0]: bound}, step.module) for bound in box)
        return torch.minimum(low, high), torch.maximum(low, high)


# -- weighted layers ------------------------------------------------------------------------------
class ZPlus(Rule):
    """z+ on ``Conv3d`` / ``Linear``: ``R_i = a_i sum_j w+_ij R_j / sum_i' a_i' w+_i'j`` (biases ignored)."""

    def forward(self, step: Step, walk: Walk) -> Tensor:
        layer, a = step.module, walk.env[step.inputs[0]]
        walk.saved[step.node] = (a, walk.nonneg[step.inputs[0]])
        if isinstance(layer, nn.Conv3d):
            return layer._conv_forward(a, layer.weight, layer.bias)
        return F.linear(a, layer.weight, layer.bias)

    def backward(self, step: Step, walk: Walk, relevance: Tensor) -> None:
        a, a_nonneg = walk.saved.pop(step.node)
        walk.send(step.inputs[0], self.relevance(step.module, step.module.weight, a, a_nonneg, None, relevance, walk))

    def relevance(
        self, layer: nn.Module, weight: Tensor, a: Tensor, a_nonneg: bool, box: Box | None, r: Tensor, walk: Walk
    ) -> Tensor:
        """The input relevance of the layer ``layer`` with weights ``weight`` (a folded pair passes its own)."""
        return ops.zplus(layer, a, a_nonneg, r, walk.eps, weight)


class ZB(ZPlus):
    """zB on a first layer: ``R_i = sum_j (x_i w_ij - l_i w+_ij - h_i w-_ij) / (sum_i' ...) R_j`` with the input's
    bounds ``l <= x <= h`` carried forward from the model's input."""

    def backward(self, step: Step, walk: Walk, relevance: Tensor) -> None:
        a, _ = walk.saved.pop(step.node)
        box = walk.boxes[step.inputs[0]]
        walk.send(step.inputs[0], self.relevance(step.module, step.module.weight, a, False, box, relevance, walk))

    def relevance(
        self, layer: nn.Module, weight: Tensor, a: Tensor, a_nonneg: bool, box: Box | None, r: Tensor, walk: Walk
    ) -> Tensor:
        low, high = box  # type: ignore[misc]
        return ops.zb(layer, a, low, high, r, walk.eps, weight)


class FoldedBatchNorm(Rule):
    """A ``BatchNorm3d`` folded into the ``Conv3d`` before it: forward in eval semantics, and backward the conv's rule
    (``inner``) with the pair's weights ``W * gamma / sqrt(running_var + eps)``, into the conv's input."""

    def __init__(self, inner: ZPlus) -> None:
        self.inner = inner

    def forward(self, step: Step, walk: Walk) -> Tensor:
        return ops.batch_norm(step.module, walk.env[step.inputs[0]])

    def backward(self, step: Step, walk: Walk, relevance: Tensor) -> None:
        conv = step.conv
        a, a_nonneg = walk.saved.pop(conv.node)
        weight = ops.folded_weight(conv.module, step.module, walk.dtype)
        box = walk.boxes.get(conv.inputs[0]) if isinstance(self.inner, ZB) else None
        walk.send(conv.inputs[0], self.inner.relevance(conv.module, weight, a, a_nonneg, box, relevance, walk))


# -- operations relevance passes through -----------------------------------------------------------
class ReLU(Rule):
    """ReLU (module, function or method): in place on a tensor of the walk's own that nothing else uses."""

    def forward(self, step: Step, walk: Walk) -> Tensor:
        source = step.inputs[0]
        walk.in_place[step.node] = in_place = walk.owned[source] and step.in_place
        return F.relu(walk.env[source], inplace=in_place)

    def nonneg(self, step: Step, walk: Walk) -> bool:
        return True

    def owns(self, step: Step, walk: Walk) -> bool:
        return walk.owned[step.inputs[0]] or not walk.in_place.pop(step.node)


class Identity(Rule):
    """Dropout and ``Identity`` modules: the identity (eval semantics)."""

    aliases = keeps_sign = True

    def forward(self, step: Step, walk: Walk) -> Tensor:
        return walk.env[step.inputs[0]]

    def bounds(self, step: Step, walk: Walk, box: Box) -> Box:
        return box


class Cast(Rule):
    """Dtype casts, ``contiguous`` and the clip-shape check: the operation, kept in the walk's dtype."""

    aliases = keeps_sign = True

    def forward(self, step: Step, walk: Walk) -> Any:
        out = evaluate(step.node, walk.env, step.module)
        if isinstance(out, Tensor) and out.dtype != walk.dtype:
            out = out.to(walk.dtype)  # the walk keeps one dtype (a `.float()` in forward)
        return out


class Affine(Rule):
    """``Normalize`` and elementwise arithmetic with constants (``(x - mean) / std``): the operation itself."""


class Reshape(Rule):
    """``Flatten``, ``view``, ``reshape``, ``flatten``: relevance is reshaped back."""

    aliases = keeps_sign = True

    def forward(self, step: Step, walk: Walk) -> Any:
        walk.saved[step.node] = walk.env[step.inputs[0]].shape
        return evaluate(step.node, walk.env, step.module)

    def backward(self, step: Step, walk: Walk, relevance: Tensor) -> None:
        walk.send(step.inputs[0], relevance.reshape(walk.saved.pop(step.node)))


# -- pooling ------------------------------------------------------------------------------------
class WinnerTakesAll(Rule):
    """``MaxPool3d``: each window's relevance goes to its maximum (the gradient)."""

    keeps_sign = True

    def forward(self, step: Step, walk: Walk) -> Tensor:
        layer, a = step.module, walk.env[step.inputs[0]]
        out, indices = F.max_pool3d(
            a, layer.kernel_size, layer.stride, layer.padding, layer.dilation, layer.ceil_mode, return_indices=True
        )
        walk.saved[step.node] = (a, indices)
        return out

    def backward(self, step: Step, walk: Walk, relevance: Tensor) -> None:
        walk.send(step.inputs[0], ops.maxpool(step.module, walk.saved.pop(step.node), relevance, "winner", walk.eps))

    def bounds(self, step: Step, walk: Walk, box: Box) -> Box:
        layer = step.module
        low, high = (
            F.max_pool3d(bound, layer.kernel_size, layer.stride, layer.padding, layer.dilation, layer.ceil_mode)
            for bound in box
        )
        return torch.minimum(low, high), torch.maximum(low, high)


class ProportionalMaxPool(WinnerTakesAll):
    """``MaxPool3d`` read as the z-rule on the window sum: each window's relevance shared in proportion to its
    inputs (``maxpool="proportional"``)."""

    def backward(self, step: Step, walk: Walk, relevance: Tensor) -> None:
        walk.send(
            step.inputs[0], ops.maxpool(step.module, walk.saved.pop(step.node), relevance, "proportional", walk.eps)
        )


class AvgPoolZ(Rule):
    """``AvgPool3d``: the z-rule, each window's relevance shared in proportion to its inputs."""

    keeps_sign = True

    def forward(self, step: Step, walk: Walk) -> Any:
        walk.saved[step.node] = walk.env[step.inputs[0]]
        return evaluate(step.node, walk.env, step.module)

    def backward(self, step: Step, walk: Walk, relevance: Tensor) -> None:
        walk.send(step.inputs[0], ops.avgpool(step.module, walk.saved.pop(step.node), relevance, walk.eps))


class GlobalMeanZ(AvgPoolZ):
    """``AdaptiveAvgPool3d``, ``F.adaptive_avg_pool3d`` and ``mean`` over axes: the z-rule (the divisor cancels)."""

    def backward(self, step: Step, walk: Walk, relevance: Tensor) -> None:
        a = walk.saved.pop(step.node)
        walk.send(step.inputs[0], ops.global_mean(step.node, step.module, a, relevance, walk.eps))


# -- residual sums ----------------------------------------------------------------------------------
class PositiveSplit(Rule):
    """A sum of two activations: relevance split in proportion to their positive parts (an even split where both are
    <= 0): LRP alpha1-beta0 on the addition, conservative and non-negative."""

    def forward(self, step: Step, walk: Walk) -> Tensor:
        x, y = walk.env[step.inputs[0]], walk.env[step.inputs[1]]
        walk.saved[step.node] = (x, y)
        return x + y

    def nonneg(self, step: Step, walk: Walk) -> bool:
        return walk.nonneg[step.inputs[0]] and walk.nonneg[step.inputs[1]]

    def backward(self, step: Step, walk: Walk, relevance: Tensor) -> None:
        share_x, share_y = self.shares(*walk.saved.pop(step.node), walk.eps)
        walk.send(step.inputs[0], relevance * share_x)
        walk.send(step.inputs[1], relevance * share_y)

    @staticmethod
    def shares(x: Tensor, y: Tensor, eps: float) -> tuple[Tensor, Tensor]:
        return ops.add_shares(x, y)


class SignedSplit(PositiveSplit):
    """A sum of two activations: relevance split in proportion to the signed values, ``R_x = R x / (x + y)``
    (stabilised; zennit's ``Norm`` rule on the sum). The sum conserves; where the branches nearly cancel the shares
    are large and of opposite signs (``x = 3, y = -2.9``: 30 and -29), and a negative branch now receives relevance
    that z+ below drops where its ``z+`` is 0, so the whole map conserves only approximately."""

    @staticmethod
    def shares(x: Tensor, y: Tensor, eps: float) -> tuple[Tensor, Tensor]:
        share_x = x / ops.stabilise_(x + y, eps)
        return share_x, 1.0 - share_x


#: The rule of each node kind; weighted layers, max pooling and sums are chosen by the walk's options.
RULES: dict[str, Rule] = {
    "relu": ReLU(),
    "pass": Cast(),
    "affine": Affine(),
    "reshape": Reshape(),
    "avgpool": AvgPoolZ(),
    "adaptive": GlobalMeanZ(),
    "mean": GlobalMeanZ(),
}
_MAXPOOL = {"winner": WinnerTakesAll(), "proportional": ProportionalMaxPool()}
_SUMS = {"positive": PositiveSplit(), "signed": SignedSplit()}
_ZPLUS, _ZB = ZPlus(), ZB()
_IDENTITY = Identity()


def rules_for(graph: Graph, *, first_rule: str, maxpool: str, sum_rule: str) -> list[Rule | None]:
    """The composite: the rule of every step of ``graph`` (None where a step has none: input, output, constants).

    Weighted layers follow z+, the first ones zB when ``first_rule="zb"`` (a folded pair applies it at its
    BatchNorm); max pooling follows ``maxpool``; residual sums ``sum_rule``. Cached per graph and options.
    """
    key = (first_rule, maxpool, sum_rule)
    cached = graph.rules.get(key)
    if cached is not None:
        return cached
    chosen: list[Rule | None] = []
    for step in graph.steps:
        weighted = _ZB if first_rule == "zb" and step.first_layer else _ZPLUS
        if step.kind == "weighted":
            chosen.append(weighted)
        elif step.kind == "batchnorm":
            chosen.append(FoldedBatchNorm(_ZB if first_rule == "zb" and step.first_layer else _ZPLUS))
        elif step.kind == "maxpool":
            chosen.append(_MAXPOOL[maxpool])
        elif step.kind == "add":
            chosen.append(_SUMS[sum_rule])
        elif step.kind == "pass" and step.module is not None:
            chosen.append(_IDENTITY)
        else:
            chosen.append(RULES.get(step.kind))
    graph.rules[key] = chosen
    return chosen
