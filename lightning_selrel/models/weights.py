"""Public C3D checkpoints into :class:`~lightning_selrel.models.c3d.C3D`, whatever their layer names.

Public C3D weights (Sports-1M pre-training, UCF-101 fine-tuning) come in several namings. Each is a
:data:`NAMINGS` entry that maps our layers (``conv1a .. conv5b``, ``fc6 .. fc8``) to the checkpoint's:

============== ======================================================================================
naming         checkpoint keys
============== ======================================================================================
c3d-sports1m   ``conv1 conv2 conv3a conv3b .. conv5b fc6 fc7 fc8`` (the Sports-1M port, 487 classes)
sequential     ``features.N`` convs and ``classifier.N`` linears, matched by their order
mmaction2      ``[backbone.]conv1a.conv .. conv5b.conv``, ``[backbone.]fc6 fc7``, ``cls_head.fc_cls``
lightning      ours: ``[net.]conv1a .. fc8`` (a C3D or a VideoClassifier checkpoint of this package)
============== ======================================================================================

Keys may carry a ``module.`` prefix (DataParallel) and sit under a ``state_dict``, ``model``, ``net``
or ``model_state_dict`` key. Files are read with ``torch.load(..., weights_only=True)``
(:func:`lightning_selrel.files.load_file`): a file that also pickles arbitrary objects is refused,
with the one-line conversion to do if it is trusted.

Every convolution, fc6 and fc7 must be present with our shapes. The head (fc8) is loaded when it
has our class count and re-initialised otherwise (or when the file has none, as MMAction2's
backbone-only pre-training file). The Sports-1M port's fc6 takes 8192 = 512 x 1 x 4 x 4 inputs, what
our C3D derives for width 64 and 16 x 112 x 112 clips.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from lightning_selrel._lightning import rank_zero_info
from lightning_selrel.files import load_file
from lightning_selrel.models.c3d import C3D, pooled_shape

__all__ = ["LoadReport", "NAMINGS", "load_c3d_weights", "load_matching_weights", "read_state_dict"]

_WRAPPERS = ("state_dict", "model_state_dict", "model", "net")

# A naming maps (our conv names, our linear names, the checkpoint's tensors) to
# {our layer: the checkpoint's prefix for that layer's ".weight" and ".bias"}.
Naming = Callable[[list[str], list[str], Mapping[str, torch.Tensor]], dict[str, str]]


def _has_prefix(state: Mapping[str, torch.Tensor], prefix: str) -> bool:
    return any(key.startswith(prefix) for key in state)


def _sports1m(convs: list[str], linears: list[str], state: Mapping[str, torch.Tensor]) -> dict[str, str]:
    # The port names a block's single conv without its letter: conv1a -> conv1, conv2a -> conv2.
    single = {name[:-1] for name in convs if sum(other[:-1] == name[:-1] for other in convs) == 1}
    mapping = {name: name[:-1] if name[:-1] in single else name for name in convs}
    return {**mapping, **{name: name for name in linears}}


def _mmaction2(convs: list[str], linears: list[str], state: Mapping[str, torch.Tensor]) -> dict[str, str]:
    prefix = "backbone." if _has_prefix(state, "backbone.") else ""
    mapping = {name: f"{prefix}{name}.conv" for name in convs}
    mapping.update({name: f"{prefix}{name}" for name in linears[:-1]})
    mapping[linears[-1]] = "cls_head.fc_cls"
    return mapping


def _ordered(state: Mapping[str, torch.Tensor], module: str, ndim: int) -> list[str]:
    """Prefixes ``module.N`` of the ``ndim``-D weights under ``module``, in the order of N."""
    found = []
    for key, value in state.items():
        match = re.fullmatch(rf"{module}\.(\d+)\.weight", key)
        if match and value.ndim == ndim:
            found.append((int(match.group(1)), key[: -len(".weight")]))
    return [prefix for _, prefix in sorted(found)]


def _sequential(convs: list[str], linears: list[str], state: Mapping[str, torch.Tensor]) -> dict[str, str]:
    conv_prefixes = _ordered(state, "features", ndim=5)
    linear_prefixes = _ordered(state, "classifier", ndim=2)
    mapping = {}
    for names, prefixes, module in ((convs, conv_prefixes, "features"), (linears, linear_prefixes, "classifier")):
        for position, name in enumerate(names):
            # Past the end of what the file has, name the missing layer by its position.
            mapping[name] = prefixes[position] if position < len(prefixes) else f"{module}.<layer {position + 1}>"
    return mapping


def _lightning(convs: list[str], linears: list[str], state: Mapping[str, torch.Tensor]) -> dict[str, str]:
    prefix = "net." if _has_prefix(state, "net.") else ""
    return {name: f"{prefix}{name}" for name in convs + linears}


NAMINGS: dict[str, Naming] = {
    "c3d-sports1m": _sports1m,
    "sequential": _sequential,
    "mmaction2": _mmaction2,
    "lightning": _lightning,
}


@dataclass(frozen=True)
class LoadReport:
    """What :func:`load_c3d_weights` did.

    Attributes:
        path: The checkpoint file.
        naming: The :data:`NAMINGS` entry it matched.
        loaded: Our parameter names that were overwritten (``conv1a.weight``, ...).
        head: ``"loaded"``, or why the head was re-initialised.
    """

    path: Path
    naming: str
    loaded: tuple[str, ...]
    head: str

    def __str__(self) -> str:
        head = "head loaded" if self.head == "loaded" else f"head re-initialised ({self.head})"
        return f"C3D weights from {self.path}: {len(self.loaded)} tensors loaded, naming {self.naming!r}, {head}"


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint file, unwrapped from ``state_dict``-like keys, ``module.`` stripped.

    Raises:
        FileNotFoundError: If the file does not exist.
        ValueError: If ``torch.load(weights_only=True)`` refuses it (a
            :class:`~lightning_selrel.files.CheckpointError` saying why) or it holds no tensors.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"C3D checkpoint {path} not found; pass the path of a downloaded .pth/.pickle file")
    obj = load_file(path, what="C3D checkpoint")
    while isinstance(obj, Mapping) and not any(isinstance(v, torch.Tensor) for v in obj.values()):
        inner = next((obj[key] for key in _WRAPPERS if isinstance(obj.get(key), Mapping)), None)
        if inner is None:
            break
        obj = inner
    if not isinstance(obj, Mapping) or not any(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(
            f"{path} holds no tensors (top level: {type(obj).__name__}"
            f"{' with keys ' + str(list(obj)[:10]) if isinstance(obj, Mapping) else ''}); expected a state dict, "
            f"possibly under one of {list(_WRAPPERS)}"
        )
    return {key.removeprefix("module."): value for key, value in obj.items() if isinstance(value, torch.Tensor)}


def _missing(mapping: dict[str, str], required: list[str], state: Mapping[str, torch.Tensor]) -> list[str]:
    return [
        f"{mapping[name]}.{kind}"
        for name in required
        for kind in ("weight", "bias")
        if f"{mapping[name]}.{kind}" not in state
    ]


def _shape_hint(net: C3D, layer: str, source_shape: tuple[int, ...]) -> str:
    if isinstance(net.get_submodule(layer), nn.Conv3d):
        return "build the model with the checkpoint's width (conv1a has `width` output channels; 64 is standard)"
    if layer == "fc6":
        channels = net.conv5b.out_channels
        pooled = pooled_shape(net.clip_shape)
        return (
            f"this network's fc6 takes {channels} x {pooled[0]} x {pooled[1]} x {pooled[2]} inputs for clip_shape "
            f"{net.clip_shape}; the checkpoint's takes {source_shape[-1]} (the public C3D: width 64 and clips "
            "16 x 112 x 112 give 8192); match width, clip_len and crop to it, and fc_dim to its output"
        )
    return "build the model with the checkpoint's fc_dim (4096 for the public C3D)"


def load_c3d_weights(net: C3D, path: str | os.PathLike, *, strict_head: bool = False) -> LoadReport:
    """Loads a public C3D checkpoint into ``net`` in place.

    Args:
        net: The network to load into.
        path: A checkpoint in one of the :data:`NAMINGS`.
        strict_head: Fail instead of re-initialising the head when the checkpoint has no head or
            another class count.

    Returns:
        A :class:`LoadReport`; its summary is also logged (rank zero).

    Raises:
        FileNotFoundError: If the file does not exist.
        ValueError: If the file cannot be read safely, matches no naming (the message lists the
            keys the closest naming misses), a shape differs, or ``strict_head`` is violated.
    """
    path = Path(path).expanduser()
    state = read_state_dict(path)
    convs = [name for name, module in net.named_children() if isinstance(module, nn.Conv3d)]
    linears = [name for name, module in net.named_children() if isinstance(module, nn.Linear)]
    head, required = linears[-1], convs + linears[:-1]

    candidates = []
    for naming, build in NAMINGS.items():
        mapping = build(convs, linears, state)
        candidates.append((len(_missing(mapping, required, state)), naming, mapping))
    missing_count, naming, mapping = min(candidates, key=lambda candidate: candidate[0])
    if missing_count:
        sample = list(state)[:12]
        raise ValueError(
            f"{path} matches none of the known C3D namings {list(NAMINGS)}. The closest, {naming!r}, misses "
            f"{_missing(mapping, required, state)}. The file's first keys: {sample}"
        )

    loaded: list[str] = []
    with torch.no_grad():
        for layer in required:
            module = net.get_submodule(layer)
            for kind in ("weight", "bias"):
                source = state[f"{mapping[layer]}.{kind}"]
                target = getattr(module, kind)
                if tuple(source.shape) != tuple(target.shape):
                    raise ValueError(
                        f"{path}: {mapping[layer]}.{kind} has shape {tuple(source.shape)} but this network's "
                        f"{layer}.{kind} has {tuple(target.shape)}; {_shape_hint(net, layer, tuple(source.shape))}"
                    )
            for kind in ("weight", "bias"):
                getattr(module, kind).copy_(state[f"{mapping[layer]}.{kind}"])
                loaded.append(f"{layer}.{kind}")

        fc = net.get_submodule(head)
        weight, bias = state.get(f"{mapping[head]}.weight"), state.get(f"{mapping[head]}.bias")
        if weight is None or bias is None:
            head_status = f"the checkpoint has no {mapping[head]}"
        elif tuple(weight.shape) != tuple(fc.weight.shape) or tuple(bias.shape) != tuple(fc.bias.shape):
            head_status = f"the checkpoint has {weight.shape[0]} classes, the network {fc.out_features}"
        else:
            head_status = "loaded"
            fc.weight.copy_(weight)
            fc.bias.copy_(bias)
            loaded += [f"{head}.weight", f"{head}.bias"]
        if head_status != "loaded":
            if strict_head:
                raise ValueError(f"{path}: cannot load the head: {head_status} (strict_head=True)")
            nn.init.normal_(fc.weight, std=0.01)  # as C3D.reset_parameters
            nn.init.zeros_(fc.bias)

    report = LoadReport(path=path, naming=naming, loaded=tuple(loaded), head=head_status)
    rank_zero_info(str(report))
    return report


def load_matching_weights(net: nn.Module, path: str | os.PathLike) -> LoadReport:
    """Load a state dict whose names match ``net``'s (after ``module.`` / ``net.`` / ``backbone.`` prefixes), e.g.
    torchvision's R3D-18 or R(2+1)D-18 weights into :mod:`lightning_selrel.models.resnet3d`; the last Linear (the
    head) is re-initialised when its shape differs.

    Raises:
        FileNotFoundError: If the file does not exist.
        ValueError: If the file cannot be read safely, a name is missing or a shape differs (naming it).
    """
    path = Path(path).expanduser()
    state = read_state_dict(path)
    own = net.state_dict()
    for prefix in ("net.", "backbone."):
        if not any(k in own for k in state) and any(k.startswith(prefix) for k in state):
            state = {k.removeprefix(prefix): v for k, v in state.items()}
    linears = [name for name, module in net.named_modules() if isinstance(module, nn.Linear)]
    head = linears[-1] if linears else None
    missing = [k for k in own if k not in state and not (head and k.startswith(head + "."))]
    if missing:
        raise ValueError(
            f"{path} lacks {len(missing)} of this network's tensors, e.g. {missing[:5]}; its keys: {list(state)[:8]}"
        )
    loaded, head_status = [], "loaded"
    with torch.no_grad():
        for key, target in own.items():
            source = state.get(key)
            if head and key.startswith(head + ".") and (source is None or source.shape != target.shape):
                head_status = f"the file's {head} has another shape ({None if source is None else tuple(source.shape)})"
                continue
            if source.shape != target.shape:
                raise ValueError(
                    f"{path}: {key} has shape {tuple(source.shape)} but this network's has {tuple(target.shape)}"
                )
            target.copy_(source)
            loaded.append(key)
        if head_status != "loaded":
            fc = net.get_submodule(head)
            nn.init.normal_(fc.weight, std=0.01)
            nn.init.zeros_(fc.bias)
    report = LoadReport(path=path, naming="matching names", loaded=tuple(loaded), head=head_status)
    rank_zero_info(str(report))
    return report
