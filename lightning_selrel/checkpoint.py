"""Checkpoint files: read them safely, say what a file is, and rebuild the classifier a checkpoint holds.

Every file is read with ``torch.load(weights_only=True)``, which never executes a pickle. When it fails,
:func:`load_file` tells why in one line: the file is missing or empty, is not a PyTorch file at all (text,
random bytes), is a PyTorch file that is damaged or truncated, or holds Python objects that
``weights_only`` refuses (naming the first one). :func:`describe` says what a loaded object is (a Lightning
checkpoint, a bare state dict, ...), so callers can tell a user what to pass instead.
"""

from __future__ import annotations

import os
import pickle
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .architectures import import_path

__all__ = ["CheckpointError", "Classifier", "describe", "is_lightning_checkpoint", "load_classifier", "load_file"]

_ZIP_MAGIC = b"PK\x03\x04"  # torch.save's default format is a zip archive
_PICKLE_PROTOCOL = 0x80  # the legacy format starts with a pickle (protocol 2 or later)
_WRAPPERS = ("state_dict", "model_state_dict", "model", "net")


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used; the one-line message names the file, what it is, and the fix."""


def _first_bytes(path: Path, n: int = 4) -> bytes:
    with open(path, "rb") as handle:
        return handle.read(n)


def _reason(path: Path, error: BaseException) -> str:
    """What is wrong with a file ``torch.load(weights_only=True)`` refused, in a few words."""
    head = _first_bytes(path)
    if not head:
        return "the file is empty"
    found = re.search(r"Unsupported global: GLOBAL (\S+)", str(error))
    if found:
        return (
            f"Unsupported global: GLOBAL {found.group(1)}: it holds Python objects that weights_only refuses; if "
            "you trust the file, convert it once: torch.save(torch.load(PATH, weights_only=False)['state_dict'], "
            "'weights.pth')"
        )
    if head.startswith(_ZIP_MAGIC):
        return "it is a PyTorch file, but damaged or truncated (its zip archive cannot be read)"
    if head[0] == _PICKLE_PROTOCOL:
        if isinstance(error, EOFError):
            return "it is a PyTorch file (legacy format), but truncated"
        return "it is a PyTorch file (legacy format), but damaged"
    return "it is not a PyTorch file (neither a zip archive nor a pickle: text, random bytes or another format)"


def load_file(path: str | os.PathLike, *, what: str = "checkpoint", fix: str = "", mmap: bool = False) -> Any:
    """``torch.load(path, map_location="cpu", weights_only=True)``, with every failure as one clear line.

    Args:
        path: The file.
        what: What the caller expected, for the message ("checkpoint", "C3D weights", ...).
        fix: What to pass instead, appended to the message.
        mmap: Memory-map the tensors (only the small pickled part is read now); legacy-format files,
            which cannot be memory-mapped, are read whole.

    Raises:
        CheckpointError: If the file is missing or ``torch.load`` refuses it.
    """
    path = Path(path).expanduser()
    tail = f"; {fix}" if fix else ""
    if not path.is_file():
        raise CheckpointError(f"{what} {path} not found{tail}")
    try:
        try:
            return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
        except RuntimeError as error:
            if not (mmap and "mmap" in str(error)):
                raise
            return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError, AttributeError) as error:
        reason = _reason(path, error)
        message = f"cannot read {what} {path} with torch.load(weights_only=True) ({reason}){tail}"
        raise CheckpointError(message) from error


def is_lightning_checkpoint(obj: Any) -> bool:
    """Whether a loaded object is a Lightning checkpoint (``Trainer.save_checkpoint``), not bare weights."""
    return isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping) and "global_step" in obj


def describe(obj: Any) -> str:
    """What a loaded checkpoint object is, in a few words (for messages)."""
    if is_lightning_checkpoint(obj):
        return f"a Lightning checkpoint (epoch {obj.get('epoch', '?')}, step {obj.get('global_step', '?')})"
    if isinstance(obj, Mapping):
        tensors = sum(isinstance(v, torch.Tensor) for v in obj.values())
        if tensors:
            return f"a bare state dict of {tensors} tensors (weights only, no training state)"
        inner = next((key for key in _WRAPPERS if isinstance(obj.get(key), Mapping)), None)
        if inner is not None:
            return f"a state dict wrapped under {inner!r} (weights only, no training state)"
        return f"a dict with keys {list(obj)[:8]}"
    if isinstance(obj, torch.Tensor):
        return f"a single tensor of shape {tuple(obj.shape)}"
    return f"a {type(obj).__name__}"


@dataclass(frozen=True)
class Classifier:
    """A model rebuilt from a checkpoint, with what explaining needs to know about its clips.

    Attributes:
        model: The module, in eval mode.
        clip_shape: (T, H, W) of its clips.
        class_names: A name per class.
        datamodule: The data module's hyperparameters saved with it ({} if none).
    """

    model: torch.nn.Module
    clip_shape: tuple[int, int, int]
    class_names: list[str]
    datamodule: dict[str, Any]


def _import(path: str) -> type:
    try:
        return import_path(path)
    except ImportError as error:
        raise CheckpointError(
            f"--model-class {path} does not import ({error}); pass an importable module.Class"
        ) from None


def _clip_shape(model: Any, hparams: Mapping[str, Any], datamodule: Mapping[str, Any]) -> tuple[int, int, int] | None:
    shape = getattr(model, "clip_shape", None) or hparams.get("clip_shape") or datamodule.get("clip_shape")
    if shape is None and "clip_len" in datamodule and "crop" in datamodule:  # UCF-101
        shape = (datamodule["clip_len"], datamodule["crop"], datamodule["crop"])
    return tuple(int(s) for s in shape) if shape is not None else None  # type: ignore[return-value]


def load_classifier(
    path: str | os.PathLike,
    device: torch.device | str = "cpu",
    *,
    model_class: str | None = None,
    clip_shape: Sequence[int] | None = None,
) -> Classifier:
    """The classifier a Lightning checkpoint holds, in eval mode, with its clip shape and class names.

    Args:
        path: A checkpoint written by ``Trainer.save_checkpoint`` (``fit``'s ``checkpoints/*.ckpt``).
        device: Where the model goes.
        model_class: The LightningModule class, as ``module.Class`` (default: this project's classifier); it
            rebuilds itself with ``load_from_checkpoint``.
        clip_shape: (T, H, W) of its clips when neither the model, its hyperparameters nor the saved data module
            say it.

    Raises:
        CheckpointError: If the file cannot be read safely, is not a checkpoint of that class, or the clip shape
            is unknown.
    """
    from .classifier import C3DClassifier  # here: reading and describing files needs no model

    path = Path(path).expanduser()
    fix = "pass a .ckpt written by `python -m lightning_selrel fit` (lightning_logs/version_N/checkpoints/)"
    raw = load_file(path, fix=fix, mmap=True)
    cls = C3DClassifier if model_class is None else _import(model_class)
    hparams = raw.get("hyper_parameters") if isinstance(raw, Mapping) else None
    if not is_lightning_checkpoint(raw):
        raise CheckpointError(f"{path} is {describe(raw)}, not a Lightning checkpoint of {cls.__name__}: {fix}")
    if cls is C3DClassifier and not (isinstance(hparams, Mapping) and {"num_classes", "clip_shape"} <= set(hparams)):
        raise CheckpointError(
            f"{path} is {describe(raw)} without this project's classifier hyperparameters, not a C3DClassifier "
            f"checkpoint: {fix}, or name its class with --model-class"
        )
    try:
        model = cls.load_from_checkpoint(path, map_location=device, weights_only=True)
    except Exception as error:
        raise CheckpointError(f"checkpoint {path} does not fit {cls.__name__} ({str(error)[:160]}): {fix}") from None
    datamodule = raw.get("datamodule_hyper_parameters") or {}
    datamodule = dict(datamodule) if isinstance(datamodule, Mapping) else {}
    hparams = dict(hparams or {})
    shape = tuple(int(s) for s in clip_shape) if clip_shape is not None else _clip_shape(model, hparams, datamodule)
    if shape is None:
        raise CheckpointError(
            f"{path}: the clip shape of {cls.__name__} is unknown (no clip_shape on the model, in its hyperparameters "
            "or its data module's): pass --clip-shape T H W"
        )
    names = getattr(model, "class_names", None) or hparams.get("class_names") or datamodule.get("class_names")
    if not names:
        count = int(hparams.get("num_classes") or getattr(model, "num_classes", 0) or 0)
        names = [str(i) for i in range(count)]
    return Classifier(model.eval(), shape, [str(n) for n in names], datamodule)  # type: ignore[arg-type]
