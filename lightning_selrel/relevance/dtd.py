"""Deep Taylor decomposition (DTD) for video models, one batch in one pass: sequential stacks, residual
networks, BatchNorm and global pooling.

The model is traced once with ``torch.fx`` (:func:`dtd_graph`; :class:`~lightning_selrel.models.c3d.Normalize` and
every ``torch.nn`` layer are leaves), and DTD walks the graph: a forward pass computes each node's output and
keeps what its rule needs, a backward pass sends relevance from the logits to the input node by node, summing
what a node receives from all of its users. Each operation has a rule (``_RULES`` names them; anything else
raises, naming it and the supported set):

- ``Conv3d`` and ``Linear``: z+ (``R_i = a_i sum_j w+_ij R_j / sum_i' a_i' w+_i'j``); the first ones on the input
  use zB (inputs bounded by the model's input range, docs/method.md section 2). A ``BatchNorm3d`` after a
  ``Conv3d`` (its only user) is folded into it for the explanation only: the pair is one convolution with weights
  ``W * gamma / sqrt(var + eps)`` per output channel (a temporary; the model is never changed).
- residual addition of two activations: the relevance is split between the branches in proportion to their
  positive parts, ``R_a = R a+ / (a+ + b+)`` (an even split where both are <= 0): conserving.
- ``MaxPool3d``: winner-takes-all (its gradient), or ``maxpool="proportional"``; ``AvgPool3d``,
  ``AdaptiveAvgPool3d`` and ``mean`` over the last axes (global pooling): the z-rule, each window's relevance
  shared in proportion to its inputs.
- ReLU, dropout, ``Identity``, ``Flatten`` / ``view`` / ``reshape``, dtype casts, the clip-shape check, and
  elementwise arithmetic with constants (``Normalize``, ``(x - mean) / std``): relevance passes through (reshaped);
  the zB bounds travel forward through them to the first layer.

Relevance at the output is 1 for the explained class (or its logit, ``start="logit"``) and 0 for the others.

Choices beyond docs/method.md:

- Denominators leave the biases out (``z+_j = sum_i a_i w+_ij``, the DTD form), so every layer passes on all the
  relevance it receives and conservation holds with biases too, less the relevance of neurons whose ``z`` is
  exactly 0. (Captum's ``Alpha1_Beta0_Rule`` keeps the bias in ``z``; the two agree when biases are zero.)
- Stabiliser: denominators are ``z + eps * sign(z)`` with ``sign(0) = +1`` (``eps = 1e-9`` as in captum's LRP).
  z+ denominators after a ReLU are >= 0 and get ``+ eps``; where ``z == 0`` all numerators are 0 too, so 0/0
  gives 0 (that neuron's relevance is dropped).

Every rule is a z-rule computed with the gradient trick: one forward of the modified layer gives ``z'``, one
vector-Jacobian product of that *linear* map gives ``sum_j w'_ij s_j`` for every input at once. The products use
the layers' transposed operators (``F.grad.conv3d_input``, ``s @ W``, the pooling backward ops): no autograd
graph, no hook, and weights are never changed in place. On a sequential stack (C3D) the walk performs exactly the
operations of a layer-by-layer loop, so the relevance is bit for bit the same.
"""

from __future__ import annotations

import operator
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.fx
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.utils import _triple

from lightning_selrel.models.c3d import Normalize, check_clip_shape

__all__ = ["SUPPORTED_LAYERS", "dtd", "dtd_graph", "dtd_layers", "select_target"]

Bound = float | Tensor

_WEIGHTED = (nn.Conv3d, nn.Linear)
_PASS_THROUGH = (nn.ReLU, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.Identity)
#: Module types DTD knows a rule for; any other type raises a TypeError.
SUPPORTED_LAYERS: tuple[type[nn.Module], ...] = (
    *_WEIGHTED,
    nn.BatchNorm3d,
    nn.MaxPool3d,
    nn.AvgPool3d,
    nn.AdaptiveAvgPool3d,
    nn.Flatten,
    Normalize,
    *_PASS_THROUGH,
)
_ADD = (operator.add, torch.add)
_ARITHMETIC = (operator.add, torch.add, operator.sub, torch.sub, operator.mul, torch.mul, operator.truediv, torch.div)
_RESHAPE_FUNCTIONS = (torch.flatten, torch.reshape)
_IDENTITY_FUNCTIONS = (check_clip_shape,)
_RELU_FUNCTIONS = (torch.relu, F.relu)
_RESHAPE_METHODS = ("view", "reshape", "flatten")
_IDENTITY_METHODS = ("float", "double", "half", "to", "contiguous", "type_as")
_ARITHMETIC_METHODS = ("add", "sub", "mul", "div")
_SUPPORTED_FUNCTIONS = (
    "+ - * / of tensors and constants, torch.flatten / reshape / relu / mean, F.relu, F.adaptive_avg_pool3d"
)
_SUPPORTED_METHODS = "view, reshape, flatten, mean, relu, add, sub, mul, div, float, to, contiguous"


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


# -- the graph ------------------------------------------------------------------------------------
class _Tracer(torch.fx.Tracer):
    """torch.nn layers and :class:`Normalize` are leaves: DTD has a rule for each; everything else is traced into."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return isinstance(m, Normalize) or super().is_leaf_module(m, module_qualified_name)


@dataclass
class _Graph:
    """A traced model: its nodes in forward order and, per node, what DTD does with it."""

    nodes: list[torch.fx.Node]
    kinds: dict[torch.fx.Node, str]
    modules: dict[torch.fx.Node, nn.Module]
    users: dict[torch.fx.Node, int]
    folded: dict[torch.fx.Node, torch.fx.Node] = field(default_factory=dict)  # BatchNorm node -> its Conv3d node


_CACHE: weakref.WeakKeyDictionary[nn.Module, tuple[tuple[int, ...], _Graph]] = weakref.WeakKeyDictionary()


#: The rule a module's node follows backwards: the first entry whose types match.
_KINDS = (
    (_WEIGHTED, "weighted"),
    (nn.BatchNorm3d, "batchnorm"),
    (nn.ReLU, "relu"),
    (_PASS_THROUGH, "pass"),
    (nn.MaxPool3d, "maxpool"),
    (nn.AvgPool3d, "avgpool"),
    (nn.AdaptiveAvgPool3d, "adaptive"),
    (nn.Flatten, "reshape"),
    (Normalize, "affine"),
)


def _module_kind(module: nn.Module) -> str:
    """The rule of :data:`_KINDS` a module follows backwards, or "unsupported"."""
    return next((kind for types, kind in _KINDS if isinstance(module, types)), "unsupported")


def _depends(node: Any, live: set[torch.fx.Node]) -> bool:
    return isinstance(node, torch.fx.Node) and node in live


def _classify(node: torch.fx.Node, live: set[torch.fx.Node]) -> str:
    """The rule of a node that depends on the input (``live``)."""
    tensors = [a for a in node.args if _depends(a, live)]
    if node.op == "call_function":
        target = node.target
        if target in _IDENTITY_FUNCTIONS:
            return "pass"
        if target in _RELU_FUNCTIONS:
            return "relu"
        if target in _RESHAPE_FUNCTIONS:
            return "reshape"
        if target in _ADD and len(tensors) == 2:
            return "add"
        if target in _ARITHMETIC and len(tensors) == 1:
            return "affine"
        if target is torch.mean:
            return "mean"
        if target is F.adaptive_avg_pool3d:
            return "adaptive"
        return "unsupported"
    if node.op == "call_method":
        name = node.target
        if name in _IDENTITY_METHODS:
            return "pass"
        if name == "relu":
            return "relu"
        if name in _RESHAPE_METHODS:
            return "reshape"
        if name == "add" and len(tensors) == 2:
            return "add"
        if name in _ARITHMETIC_METHODS and len(tensors) == 1:
            return "affine"
        if name == "mean":
            return "mean"
        return "unsupported"
    return "unsupported"


def _describe(node: torch.fx.Node, module: nn.Module | None) -> str:
    if module is not None:
        return f"layer {node.target!r} of type {type(module).__name__}"
    what = getattr(node.target, "__name__", str(node.target))
    return f"{'method' if node.op == 'call_method' else 'function'} {what!r} (node {node.name})"


def dtd_graph(model: nn.Module) -> _Graph:
    """The traced graph of ``model`` with a DTD rule for every node on the path from the input to the logits.

    The trace is cached per model and redone when its module tree changes.

    Raises:
        TypeError: If ``torch.fx`` cannot trace the model (data-dependent control flow in ``forward``), or a node
            has no rule (the message names the layer, function or method and the supported set).
    """
    signature = tuple(id(m) for m in model.modules())
    cached = _CACHE.get(model)
    if cached is not None and cached[0] == signature:
        return cached[1]
    try:
        graph = _Tracer().trace(model)
    except Exception as error:  # a TraceError, or whatever a forward raises on proxies
        raise TypeError(
            f"DTD traces the model with torch.fx and {type(model).__name__} cannot be traced ({error}); keep "
            "data-dependent control flow out of forward (or in a torch.fx.wrap'ped function), or explain it "
            "with gradcam / guided_backprop"
        ) from None
    nodes = list(graph.nodes)
    modules: dict[torch.fx.Node, nn.Module] = {}
    kinds: dict[torch.fx.Node, str] = {}
    live: set[torch.fx.Node] = set()
    for node in nodes:
        if node.op == "placeholder":
            if live:
                raise TypeError(f"DTD explains models with one input (the clips); {type(model).__name__} takes more")
            live.add(node)
            kinds[node] = "input"
            continue
        if node.op in ("get_attr", "output") or not any(_depends(a, live) for a in (*node.args, *node.kwargs.values())):
            kinds[node] = node.op if node.op in ("get_attr", "output") else "constant"
            continue
        live.add(node)
        if node.op == "call_module":
            module = model.get_submodule(str(node.target))
            modules[node] = module
            kinds[node] = _module_kind(module)
            if isinstance(module, nn.Conv3d) and module.padding_mode != "zeros":
                raise TypeError(
                    f"DTD supports Conv3d with zero padding only; layer {node.target!r} uses {module.padding_mode!r}"
                )
        else:
            kinds[node] = _classify(node, live)
        if kinds[node] == "unsupported":
            supported = ", ".join(t.__name__ for t in SUPPORTED_LAYERS)
            raise TypeError(
                f"DTD has no rule for {_describe(node, modules.get(node))}; supported layers: {supported}; "
                f"functions: {_SUPPORTED_FUNCTIONS}; methods: {_SUPPORTED_METHODS}"
            )
    users = {node: len(node.users) for node in nodes}
    result = _Graph(nodes=nodes, kinds=kinds, modules=modules, users=users)
    for node in nodes:
        if kinds[node] != "batchnorm":
            continue
        source = node.args[0]
        if not (
            isinstance(source, torch.fx.Node) and isinstance(modules.get(source), nn.Conv3d) and users[source] == 1
        ):
            raise TypeError(
                f"DTD folds BatchNorm3d into the Conv3d it follows; layer {node.target!r} follows "
                f"{getattr(source, 'name', source)!r}, which is not a Conv3d used only by it"
            )
        result.folded[node] = source
    if not any(kind in ("weighted", "batchnorm") for kind in kinds.values()):
        raise TypeError("DTD needs at least one Conv3d or Linear layer in the model")
    _CACHE[model] = (signature, result)
    return result


def dtd_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The layers DTD walks, in forward order, as (dotted name, module): every traced module call.

    Raises:
        TypeError: As :func:`dtd_graph`.
    """
    graph = dtd_graph(model)
    return [(str(node.target), graph.modules[node]) for node in graph.nodes if node in graph.modules]


# -- the walk -----------------------------------------------------------------------------------
def _value(arg: Any, env: dict[torch.fx.Node, Any]) -> Any:
    return torch.fx.node.map_arg(arg, lambda n: env[n])


def _evaluate(node: torch.fx.Node, env: dict[torch.fx.Node, Any], module: nn.Module | None) -> Any:
    """A node's output from its arguments' values in ``env`` (a module node calls the module)."""
    if module is not None:
        return module(_value(node.args[0], env))
    if node.op == "call_method":
        this = _value(node.args[0], env)
        return getattr(this, str(node.target))(*_value(node.args[1:], env), **_value(node.kwargs, env))
    return node.target(*_value(node.args, env), **_value(node.kwargs, env))


def _live_args(node: torch.fx.Node, graph: _Graph) -> list[torch.fx.Node]:
    """The arguments of a node that carry the input's value (not constants), in argument order, repeats kept."""
    found: list[torch.fx.Node] = []
    torch.fx.node.map_arg(
        (node.args, node.kwargs),
        lambda n: found.append(n) if graph.kinds.get(n) not in ("get_attr", "constant") else None,
    )
    return found


def _folded_weight(conv: nn.Conv3d, bn: nn.BatchNorm3d, dtype: torch.dtype) -> Tensor:
    """The weights of ``bn(conv(x))`` as one convolution (a temporary): ``W * gamma / sqrt(running_var + eps)``."""
    var = bn.running_var if bn.running_var is not None else torch.ones(conv.out_channels, device=conv.weight.device)
    scale = torch.rsqrt(var.to(dtype) + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight.to(dtype)
    return conv.weight.to(dtype) * scale.view(-1, 1, 1, 1, 1)


def _batch_norm(bn: nn.BatchNorm3d, a: Tensor) -> Tensor:
    """Eval-mode BatchNorm (running statistics) whatever the module's mode."""
    return F.batch_norm(a, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)


def _input_path(graph: _Graph) -> set[torch.fx.Node]:
    """Nodes reached from the input through single-input operations only (no weighted layer, no residual sum):
    the zB bounds travel along them, and a weighted layer fed by one of them is a first layer."""
    path: set[torch.fx.Node] = set()
    for node in graph.nodes:
        kind = graph.kinds[node]
        if kind == "input":
            path.add(node)
        elif kind not in ("weighted", "batchnorm", "add", "output", "get_attr", "constant"):
            live = _live_args(node, graph)
            if live and all(a in path for a in live):
                path.add(node)
    return path


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
    pixel_input: bool = False,
) -> tuple[Tensor, Tensor, Tensor]:
    """Deep Taylor relevance of every input element for one target logit per clip.

    Runs in the dtype of the model's first weighted layer (cast the model to float64 for exact checks) and in
    eval semantics whatever the model's mode (dropout is the identity, BatchNorm uses its running statistics).
    Needs no autograd, so it works under ``torch.no_grad()`` and ``torch.inference_mode()``; it calls no module's
    ``forward`` except those of Flatten, AvgPool3d, AdaptiveAvgPool3d and Normalize, so user hooks do not fire.

    Args:
        model: A model ``torch.fx`` can trace, every node with a rule (see :func:`dtd_graph`), ending in logits
            (B, num_classes).
        clips: What the model's forward takes, e.g. pixel-scale clips (B, 3, T, H, W), any dtype.
        target: Class per clip (see :func:`select_target`); ``None`` explains the predicted class.
        first_rule: ``"zb"`` (bounded input, the default) or ``"zplus"`` for the first Conv3d/Linear layers.
        bounds: ``(low, high)`` range of the *model's input* (scalars or tensors broadcastable to ``clips``),
            carried forward through the single-input operations before the first layers. Default, in order: a
            ``model.input_range`` attribute (declared by the model), then [0, 255] when the model normalises
            with :class:`Normalize` or ``pixel_input`` is set (``explain`` sets it for uint8 clips).
        maxpool: ``"winner"`` (winner-takes-all, the gradient) or ``"proportional"`` (relevance shared in
            proportion to the window's inputs, the z-rule on the window sum).
        eps: Stabiliser added to denominators (with their sign).
        start: Relevance of the explained class at the output: ``"one"`` (default; the input relevance sums to 1
            and is >= 0 for every clip) or ``"logit"`` (the classic DTD start; it sums to the logit and is <= 0
            everywhere when the logit is negative). z+ and zB are linear in it: the pattern is the same.
        pixel_input: The clips are pixels in [0, 255] (the zB bounds when the model declares no other range).

    Returns:
        ``(relevance, logits, target)``: relevance shaped like ``clips`` (channels not summed), the logits
        (B, num_classes) and the explained class (B,).

    Raises:
        TypeError: For a model DTD cannot walk (see :func:`dtd_graph`).
        ValueError: For zB without a known input range, or bad ``first_rule`` / ``maxpool`` / ``start`` /
            ``target``.
    """
    if start not in ("one", "logit"):
        raise ValueError(f"start must be 'one' or 'logit', got {start!r}")
    if first_rule not in ("zb", "zplus"):
        raise ValueError(f"first_rule must be 'zb' or 'zplus', got {first_rule!r}")
    if maxpool not in ("winner", "proportional"):
        raise ValueError(f"maxpool must be 'winner' or 'proportional', got {maxpool!r}")
    graph = dtd_graph(model)
    kinds, modules, nodes = graph.kinds, graph.modules, graph.nodes
    weighted = [n for n in nodes if kinds[n] == "weighted"]
    dtype = modules[weighted[0]].weight.dtype
    path = _input_path(graph)
    use_zb = first_rule == "zb"
    box = _input_box(model, graph, bounds, pixel_input, clips, dtype) if use_zb else None
    conv_of = {conv: bn for bn, conv in graph.folded.items()}  # a Conv3d node -> the BatchNorm folded into it
    first_layers = {conv_of.get(n, n) for n in weighted if n.args[0] in path}  # where the rule is applied

    # Forward: each node's output, and what its rule needs. `owned`: the tensor was made here (a ReLU may work in
    # place on it when nothing else uses it); `nonneg`: it is >= 0 (z+ denominators after a ReLU are >= 0).
    env: dict[torch.fx.Node, Any] = {}
    saved: dict[torch.fx.Node, Any] = {}
    owned: dict[torch.fx.Node, bool] = {}
    nonneg: dict[torch.fx.Node, bool] = {}
    boxes: dict[torch.fx.Node, tuple[Tensor, Tensor]] = {}
    remaining = dict(graph.users)
    logits: Any = None
    for node in nodes:
        kind = kinds[node]
        if kind == "input":
            env[node] = clips.to(dtype)
            owned[node], nonneg[node] = False, False
            if box is not None:
                boxes[node] = box
            continue
        if kind in ("get_attr", "constant"):
            env[node] = _evaluate_constant(node, model, env)
            continue
        if kind == "output":
            logits = _value(node.args[0], env)
            break
        live = _live_args(node, graph)
        a = env[live[0]]
        module = modules.get(node)
        if kind == "weighted":
            saved[node] = (a, nonneg[live[0]])
            if isinstance(module, nn.Conv3d):
                out = module._conv_forward(a, module.weight, module.bias)
            else:
                out = F.linear(a, module.weight, module.bias)
        elif kind == "batchnorm":
            out = _batch_norm(module, a)
        elif kind == "relu":
            in_place = owned[live[0]] and graph.users[live[0]] == 1  # never the caller's tensor or a shared one
            out = F.relu(a, inplace=in_place)
        elif kind == "maxpool":
            out, indices = F.max_pool3d(
                a,
                module.kernel_size,
                module.stride,
                module.padding,
                module.dilation,
                module.ceil_mode,
                return_indices=True,
            )
            saved[node] = (a, indices)
        elif kind == "add":
            x, y = env[live[0]], env[live[1]]
            saved[node] = (x, y)
            out = x + y
        elif kind == "pass" and module is not None:
            out = a  # dropout and Identity: the identity in eval mode
        else:  # pass (casts, the shape check), reshape, affine, pools: the operation itself
            out = _evaluate(node, env, module)
            if kind in ("avgpool", "adaptive", "mean"):
                saved[node] = a
            elif kind == "reshape":
                saved[node] = a.shape
        if kind == "pass" and isinstance(out, Tensor) and out.dtype != dtype:
            out = out.to(dtype)  # the walk keeps one dtype (a `.float()` in forward)
        env[node] = out
        owned[node] = kind not in ("reshape", "pass") and (kind != "relu" or owned[live[0]] or not in_place)
        if kind == "add":
            nonneg[node] = nonneg[live[0]] and nonneg[live[1]]
        else:
            keeps = ("maxpool", "avgpool", "adaptive", "mean", "reshape", "pass")
            nonneg[node] = kind == "relu" or (kind in keeps and nonneg[live[0]])
        if box is not None and node in path:
            boxes[node] = _map_box(node, env, live[0], boxes[live[0]], module)
        for arg in set(node.all_input_nodes):  # drop what no later node needs (rules keep their own inputs)
            remaining[arg] -= 1
            if remaining[arg] == 0 and kinds[arg] != "input":
                env.pop(arg, None)
    if not isinstance(logits, Tensor) or logits.ndim != 2:
        raise TypeError(f"DTD needs a model that outputs logits (B, num_classes), got {type(logits).__name__}")
    t = select_target(target, logits)

    # Backward: relevance = 1 (or the logit) at the target, everything else zero; a node sums its users'.
    seed = logits.gather(1, t[:, None]) if start == "logit" else torch.ones_like(logits[:, :1])
    output = next(n for n in nodes if kinds[n] == "output")
    relevance: dict[torch.fx.Node, Tensor] = {output.args[0]: torch.zeros_like(logits).scatter_(1, t[:, None], seed)}
    for node in reversed(nodes):
        kind = kinds[node]
        if kind in ("input", "output", "get_attr", "constant") or node not in relevance:
            continue
        r = relevance.pop(node)
        live = _live_args(node, graph)
        module = modules.get(node)
        if kind in ("weighted", "batchnorm"):
            conv = graph.folded.get(node, node)
            layer = modules[conv]
            weight = _folded_weight(layer, module, dtype) if kind == "batchnorm" else layer.weight
            a, a_nonneg = saved.pop(conv)
            into = _live_args(conv, graph)[0]
            if use_zb and node in first_layers:
                low, high = boxes[into]
                _accumulate(relevance, into, _zb(layer, a, low, high, r, eps, weight))
            else:
                _accumulate(relevance, into, _zplus(layer, a, a_nonneg, r, eps, weight))
        elif kind == "maxpool":
            _accumulate(relevance, live[0], _maxpool(module, saved.pop(node), r, maxpool, eps))
        elif kind == "avgpool":
            _accumulate(relevance, live[0], _avgpool(module, saved.pop(node), r, eps))
        elif kind in ("adaptive", "mean"):
            _accumulate(relevance, live[0], _global_mean(node, module, saved.pop(node), r, eps))
        elif kind == "reshape":
            _accumulate(relevance, live[0], r.reshape(saved.pop(node)))
        elif kind == "add":
            x, y = saved.pop(node)
            share_x, share_y = _add_shares(x, y)
            _accumulate(relevance, live[0], r * share_x)
            _accumulate(relevance, live[1], r * share_y)
        else:  # relu, pass, affine: relevance passes through
            _accumulate(relevance, live[0], r)
    input_node = next(n for n in nodes if kinds[n] == "input")
    return relevance.get(input_node, torch.zeros_like(env[input_node])), logits, t


def _map_box(
    node: torch.fx.Node, env: dict, source: torch.fx.Node, box: tuple[Tensor, Tensor], module: nn.Module | None
) -> tuple[Tensor, Tensor]:
    """The zB bounds after a single-input operation: the operation applied to each bound (all are monotone in each
    element), then the elementwise min and max (a division by a negative constant swaps them)."""
    mapped = []
    for bound in box:
        local = {**env, source: bound}
        if isinstance(module, nn.MaxPool3d):
            mapped.append(
                F.max_pool3d(
                    bound, module.kernel_size, module.stride, module.padding, module.dilation, module.ceil_mode
                )
            )
        elif isinstance(module, _PASS_THROUGH) and not isinstance(module, nn.ReLU):
            mapped.append(bound)
        else:
            mapped.append(_evaluate(node, local, module))
    low, high = mapped
    return torch.minimum(low, high), torch.maximum(low, high)


def _evaluate_constant(node: torch.fx.Node, model: nn.Module, env: dict) -> Any:
    if node.op == "get_attr":
        value: Any = model
        for part in str(node.target).split("."):
            value = getattr(value, part)
        return value
    return _evaluate(node, env, None)


def _accumulate(relevance: dict[torch.fx.Node, Tensor], node: torch.fx.Node, contribution: Tensor) -> None:
    """Add a user's contribution to the relevance of ``node`` (a node with several users sums them)."""
    relevance[node] = relevance[node] + contribution if node in relevance else contribution


def _no_bounds_message(layer: str) -> str:
    return (
        f"DTD's zB rule for the first layer {layer!r} needs the input range: pass bounds=(low, high) of the "
        "model's input (e.g. (0, 255) for pixel clips), declare model.input_range, or first_rule='zplus'"
    )


def _input_box(
    model: nn.Module, graph: _Graph, bounds: tuple[Bound, Bound] | None, pixel_input: bool, clips: Tensor, dtype
) -> tuple[Tensor, Tensor]:
    """The zB bounds of the model's input, as one "clip" (1, ...) that broadcasts over the batch."""
    if bounds is None:
        declared = getattr(model, "input_range", None)
        if declared is not None:
            bounds = tuple(declared)  # type: ignore[assignment]
        elif pixel_input or any(isinstance(m, Normalize) for m in graph.modules.values()):
            bounds = (0.0, 255.0)
        else:
            first = next(n for n in graph.nodes if graph.kinds[n] == "weighted")
            raise ValueError(_no_bounds_message(str(first.target)))
    tensors = [torch.as_tensor(b, dtype=dtype, device=clips.device) for b in bounds]  # type: ignore[union-attr]
    shape = (1, *clips.shape[1:])
    return tuple(b.expand(torch.broadcast_shapes(b.shape, shape)) for b in tensors)  # type: ignore[return-value]


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


def _zplus(layer: nn.Module, a: Tensor, nonneg: bool, relevance: Tensor, eps: float, weight: Tensor) -> Tensor:
    """z+: ``R_i = a_i sum_j w+_ij R_j / sum_i' a_i' w+_i'j`` (biases ignored)."""
    w_pos = weight.clamp(min=0)
    z = _stabilise_(_apply(layer, a, w_pos), eps, nonneg)
    s = torch.div(relevance, z, out=z)  # R_j / z_j, reusing z's memory
    return _apply_t(layer, a.shape, w_pos, s).mul_(a)


def _zb(layer: nn.Module, x: Tensor, low: Tensor, high: Tensor, relevance: Tensor, eps: float, w: Tensor) -> Tensor:
    """zB: ``R_i = sum_j (x_i w_ij - l_i w+_ij - h_i w-_ij) / (sum_i' ...) R_j``.

    The bounds are one "clip" (1, ...) broadcast over the batch, so their two products cost one
    clip; the three transposed products are one call with the weights stacked along the inputs.
    """
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


def _add_shares(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """Shares of a residual sum's relevance: in proportion to the positive parts, an even split where neither is."""
    px, py = x.clamp(min=0), y.clamp(min=0)
    total = px + py
    none = total <= 0
    share_x = torch.where(none, 0.5, px / total.where(~none, 1.0))
    return share_x, 1.0 - share_x


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


def _global_mean(node: torch.fx.Node, module: nn.Module | None, a: Tensor, relevance: Tensor, eps: float) -> Tensor:
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
            return _avgpool(nn.AvgPool3d(kernel, kernel), a, relevance, eps)
        dims, keepdim = (2, 3, 4), True
    shaped = relevance
    if not keepdim:
        for d in dims:
            shaped = shaped.unsqueeze(d)
    total = a.sum(dim=dims, keepdim=True)
    return a * shaped / _stabilise_(total, eps)
