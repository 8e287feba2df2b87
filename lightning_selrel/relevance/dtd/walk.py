"""DTD's walk: one forward pass through the traced graph computing each node's value (and what its rule keeps), then
one backward pass sending relevance from the logits to the input node by node, a node summing what it receives from
all of its users. The rules are :mod:`~lightning_selrel.relevance.dtd.rules`; the graph and its plan
:mod:`~lightning_selrel.relevance.dtd.graph`.

On a sequential stack (C3D) the walk performs exactly the operations of a layer-by-layer loop, so the relevance is
bit for bit the same (and equal to zennit's on C3D).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
import torch.fx
from torch import Tensor, nn

from lightning_selrel.models.c3d import Normalize
from lightning_selrel.relevance.dtd.graph import Graph, dtd_graph, evaluate, value
from lightning_selrel.relevance.dtd.rules import rules_for
from lightning_selrel.relevance.dtd.state import Walk

__all__ = ["dtd", "select_target"]

Bound = float | Tensor


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
    sum_rule: Literal["positive", "signed"] = "positive",
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
        sum_rule: Residual sums: ``"positive"`` (the default; shares in proportion to the branches' positive parts,
            LRP alpha1-beta0 on the addition) or ``"signed"`` (in proportion to the signed values, zennit's ``Norm``).

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
    if sum_rule not in ("positive", "signed"):
        raise ValueError(f"sum_rule must be 'positive' or 'signed', got {sum_rule!r}")
    graph = dtd_graph(model)
    rules = rules_for(graph, first_rule=first_rule, maxpool=maxpool, sum_rule=sum_rule)
    dtype = graph.dtype_layer.weight.dtype
    walk = Walk(dtype, eps)
    box = _input_box(model, graph, bounds, pixel_input, clips, dtype) if first_rule == "zb" else None
    logits = _forward(model, graph, rules, walk, clips, box)
    if not isinstance(logits, Tensor) or logits.ndim != 2:
        raise TypeError(f"DTD needs a model that outputs logits (B, num_classes), got {type(logits).__name__}")
    t = select_target(target, logits)

    # Backward: relevance = 1 (or the logit) at the target, everything else zero; a node sums its users'.
    seed = logits.gather(1, t[:, None]) if start == "logit" else torch.ones_like(logits[:, :1])
    output = graph.steps[-1] if graph.steps[-1].kind == "output" else next(s for s in graph.steps if s.kind == "output")
    walk.relevance[output.node.args[0]] = torch.zeros_like(logits).scatter_(1, t[:, None], seed)
    relevance = walk.relevance
    for step, rule in zip(reversed(graph.steps), reversed(rules), strict=True):
        if rule is None or step.node not in relevance:
            continue
        rule.backward(step, walk, relevance.pop(step.node))
    input_node = (
        graph.steps[0].node
        if graph.steps[0].kind == "input"
        else next(s.node for s in graph.steps if s.kind == "input")
    )
    return relevance.get(input_node, torch.zeros_like(walk.env[input_node])), logits, t


def _forward(model: nn.Module, graph: Graph, rules: list, walk: Walk, clips: Tensor, box: Any) -> Any:
    """Every node's value in forward order (each rule keeping what its backward needs); returns the logits."""
    env, owned, nonneg, boxes = walk.env, walk.owned, walk.nonneg, walk.boxes
    for step, rule in zip(graph.steps, rules, strict=True):
        node, kind = step.node, step.kind
        if kind == "input":
            env[node] = clips.to(walk.dtype)
            owned[node], nonneg[node] = False, False
            if box is not None:
                boxes[node] = box
            continue
        if kind in ("get_attr", "constant"):
            env[node] = _constant(node, model, env)
            continue
        if kind == "output":
            return value(node.args[0], env)
        env[node] = rule.forward(step, walk)
        owned[node] = rule.owns(step, walk)
        nonneg[node] = rule.nonneg(step, walk)
        if box is not None and step.on_input_path:
            boxes[node] = rule.bounds(step, walk, boxes[step.inputs[0]])
        for arg in step.release:  # drop what no later node needs (rules keep their own inputs)
            env.pop(arg, None)
    return None


def _constant(node: torch.fx.Node, model: nn.Module, env: dict) -> Any:
    if node.op == "get_attr":
        found: Any = model
        for part in str(node.target).split("."):
            found = getattr(found, part)
        return found
    return evaluate(node, env, None)


def _no_bounds_message(layer: str) -> str:
    return (
        f"DTD's zB rule for the first layer {layer!r} needs the input range: pass bounds=(low, high) of the "
        "model's input (e.g. (0, 255) for pixel clips), declare model.input_range, or first_rule='zplus'"
    )


def _input_box(
    model: nn.Module, graph: Graph, bounds: tuple[Bound, Bound] | None, pixel_input: bool, clips: Tensor, dtype
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
