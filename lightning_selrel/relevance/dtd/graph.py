"""The graph DTD walks: the model traced with ``torch.fx``, a kind for every node on the path from the input to the
logits, and the walk's plan (:class:`Step`), computed once per model and cached.

:class:`~lightning_selrel.models.c3d.Normalize` and every ``torch.nn`` layer are leaves of the trace; everything else
is traced into. A node whose operation has no rule raises a TypeError naming it and the supported set, before any
relevance is computed.
"""

from __future__ import annotations

import operator
import weakref
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.fx
import torch.nn.functional as F
from torch import nn

from lightning_selrel.models.c3d import Normalize, check_clip_shape

__all__ = ["SUPPORTED_LAYERS", "Graph", "Step", "dtd_graph", "dtd_layers", "evaluate", "value"]


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
#: Supported layers whose subclasses (that keep ``forward``) take their rule (:class:`_Tracer`).
_SUBCLASSED: tuple[type[nn.Module], ...] = tuple(t for t in SUPPORTED_LAYERS if t is not Normalize)
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


# -- the graph ------------------------------------------------------------------------------------
class _Tracer(torch.fx.Tracer):
    """torch.nn layers and :class:`Normalize` are leaves: DTD has a rule for each; everything else is traced into.

    A subclass of a supported layer that keeps its ``forward`` (torchvision's ``Conv3DSimple(nn.Conv3d)``) is a
    leaf too, and gets that layer's rule; one that overrides ``forward`` is traced into."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        if isinstance(m, Normalize) or super().is_leaf_module(m, module_qualified_name):
            return True
        return any(isinstance(m, layer) and type(m).forward is layer.forward for layer in _SUBCLASSED)


@dataclass(eq=False)
class Step:
    """One node of the walk, with everything the walk needs to know about it, computed once.

    Attributes:
        node: The graph node.
        kind: What DTD does with it: ``input``, ``output``, ``get_attr``, ``constant`` (no dependence on the input),
            or the name of its rule (``weighted``, ``batchnorm``, ``relu``, ``pass``, ``affine``, ``reshape``,
            ``maxpool``, ``avgpool``, ``adaptive``, ``mean``, ``add``).
        module: The module a ``call_module`` node calls (None otherwise).
        inputs: The arguments that carry the input's value (not constants), in argument order, repeats kept.
        release: Values no later node needs once this one has run (the walk drops them).
        in_place: A ReLU may overwrite its input: nothing else uses it.
        on_input_path: Reached from the input through single-input operations only: the zB bounds travel along it.
        first_layer: A weighted layer (or a BatchNorm folded into one) fed from the input path: where zB applies.
        conv: For a folded BatchNorm, the step of the Conv3d it folds into (the pair is one convolution).
    """

    node: torch.fx.Node
    kind: str
    module: nn.Module | None = None
    inputs: tuple[torch.fx.Node, ...] = ()
    release: tuple[torch.fx.Node, ...] = ()
    in_place: bool = False
    on_input_path: bool = False
    first_layer: bool = False
    conv: Step | None = None


@dataclass(eq=False)
class Graph:
    """A traced model: its nodes in forward order and, per node, what DTD does with it (:class:`Step`)."""

    nodes: list[torch.fx.Node]
    kinds: dict[torch.fx.Node, str]
    modules: dict[torch.fx.Node, nn.Module]
    users: dict[torch.fx.Node, int]
    folded: dict[torch.fx.Node, torch.fx.Node] = field(default_factory=dict)  # BatchNorm node -> its Conv3d node
    steps: list[Step] = field(default_factory=list)
    rules: dict[tuple[str, ...], list[Any]] = field(default_factory=dict)  # the composite's choice, per options
    dtype_layer: nn.Module | None = None  # the first weighted layer: the walk runs in its dtype


_CACHE: weakref.WeakKeyDictionary[nn.Module, tuple[tuple[int, ...], Graph]] = weakref.WeakKeyDictionary()


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


def dtd_graph(model: nn.Module) -> Graph:
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
    result = Graph(nodes=nodes, kinds=kinds, modules=modules, users=users)
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
    _plan(result)
    _CACHE[model] = (signature, result)
    return result


def dtd_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The layers DTD walks, in forward order, as (dotted name, module): every traced module call.

    Raises:
        TypeError: As :func:`dtd_graph`.
    """
    graph = dtd_graph(model)
    return [(str(node.target), graph.modules[node]) for node in graph.nodes if node in graph.modules]


def value(arg: Any, env: dict[torch.fx.Node, Any]) -> Any:
    """An argument with every node replaced by its value in ``env``."""
    return torch.fx.node.map_arg(arg, lambda n: env[n])


def evaluate(node: torch.fx.Node, env: dict[torch.fx.Node, Any], module: nn.Module | None) -> Any:
    """A node's output from its arguments' values in ``env`` (a module node calls the module)."""
    if module is not None:
        return module(value(node.args[0], env))
    if node.op == "call_method":
        this = value(node.args[0], env)
        return getattr(this, str(node.target))(*value(node.args[1:], env), **value(node.kwargs, env))
    return node.target(*value(node.args, env), **value(node.kwargs, env))


def _live_args(node: torch.fx.Node, kinds: dict[torch.fx.Node, str]) -> tuple[torch.fx.Node, ...]:
    """The arguments of a node that carry the input's value (not constants), in argument order, repeats kept."""
    found: list[torch.fx.Node] = []
    torch.fx.node.map_arg(
        (node.args, node.kwargs), lambda n: found.append(n) if kinds.get(n) not in ("get_attr", "constant") else None
    )
    return tuple(found)


_NOT_ON_PATH = ("weighted", "batchnorm", "add", "output", "get_attr", "constant")


def _plan(graph: Graph) -> None:
    """The walk's steps: per node its live inputs, what it releases, whether a ReLU may work in place, and where the
    zB bounds travel and the zB rule applies."""
    kinds, nodes = graph.kinds, graph.nodes
    last_use: dict[torch.fx.Node, torch.fx.Node] = {}
    for node in nodes:
        if kinds[node] in ("get_attr", "constant", "output"):
            continue
        for arg in node.all_input_nodes:
            last_use[arg] = node
    released: dict[torch.fx.Node, list[torch.fx.Node]] = {}
    for arg, user in last_use.items():
        if kinds[arg] != "input":
            released.setdefault(user, []).append(arg)
    steps: dict[torch.fx.Node, Step] = {}
    path: set[torch.fx.Node] = set()
    for node in nodes:
        kind = kinds[node]
        inputs = () if kind in ("input", "get_attr", "constant") else _live_args(node, kinds)
        if kind == "input" or (kind not in _NOT_ON_PATH and inputs and all(a in path for a in inputs)):
            path.add(node)
        steps[node] = Step(
            node=node,
            kind=kind,
            module=graph.modules.get(node),
            inputs=inputs,
            release=tuple(released.get(node, ())),
            in_place=bool(inputs) and graph.users[inputs[0]] == 1,
            on_input_path=node in path,
        )
    for node, step in steps.items():
        if step.kind == "batchnorm":
            step.conv = steps[graph.folded[node]]
    conv_of = {conv: bn for bn, conv in graph.folded.items()}
    for node, step in steps.items():
        if step.kind == "weighted" and step.inputs and step.inputs[0] in path:
            steps[conv_of.get(node, node)].first_layer = True  # a folded pair applies the rule at its BatchNorm
    graph.steps = [steps[node] for node in nodes]
    graph.dtype_layer = next(s.module for s in graph.steps if s.kind == "weighted")
