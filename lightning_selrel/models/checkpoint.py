"""The classifier a checkpoint holds, rebuilt safely (files are read by :mod:`lightning_selrel.files`)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lightning_selrel.files import CheckpointError, describe, is_lightning_checkpoint, load_file
from lightning_selrel.models.architectures import check_architecture, check_model_class, import_path
from lightning_selrel.models.classifier import VideoClassifier

# CheckpointError, describe, is_lightning_checkpoint and load_file were defined here before 0.2; they stay importable.
__all__ = [
    "CheckpointError",
    "Classifier",
    "check_architecture",
    "describe",
    "is_lightning_checkpoint",
    "load_classifier",
    "load_file",
]


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
    trust_arch: str | Sequence[str] | None = None,
    trust_fix: str | None = None,
    model_class_fix: str | None = None,
) -> Classifier:
    """The classifier a Lightning checkpoint holds, in eval mode, with its clip shape and class names.

    Args:
        path: A checkpoint written by ``Trainer.save_checkpoint`` (``fit``'s ``checkpoints/*.ckpt``).
        device: Where the model goes.
        model_class: The LightningModule class, as ``module.Class`` (default: this project's classifier); it
            rebuilds itself with ``load_from_checkpoint``.
        clip_shape: (T, H, W) of its clips when neither the model, its hyperparameters nor the saved data module
            say it.
        trust_arch: Class paths the checkpoint's ``arch`` may name (a checkpoint naming any other class path is
            refused before anything is imported; the registered names always load). ``model_class`` is the caller's
            choice of LightningModule and does not extend this trust.
        trust_fix: How the caller's user trusts a class path, for the message (``explain`` says ``--trust-arch``).
        model_class_fix: How the caller's user names a model class, for the message when the checkpoint records one
            (``_class_path``, written by ``fit --model CLASS``) that is neither this project's nor ``model_class``.

    Raises:
        CheckpointError: If the file cannot be read safely, is not a checkpoint of that class, or the clip shape
            is unknown.
    """

    path = Path(path).expanduser()
    fix = "pass a .ckpt written by `python -m lightning_selrel fit` (lightning_logs/version_N/checkpoints/)"
    raw = load_file(path, fix=fix, mmap=True)
    check_architecture(raw, path, trust_arch, fix=trust_fix)  # before --model-class imports anything
    check_model_class(raw, path, model_class, fix=model_class_fix)  # Lightning's loader would import it
    cls = VideoClassifier if model_class is None else _import(model_class)
    hparams = raw.get("hyper_parameters") if isinstance(raw, Mapping) else None
    if not is_lightning_checkpoint(raw):
        raise CheckpointError(f"{path} is {describe(raw)}, not a Lightning checkpoint of {cls.__name__}: {fix}")
    if cls is VideoClassifier and not (isinstance(hparams, Mapping) and {"num_classes", "clip_shape"} <= set(hparams)):
        raise CheckpointError(
            f"{path} is {describe(raw)} without this project's classifier hyperparameters, not a VideoClassifier "
            f"checkpoint: {fix}, or name its class with --model-class"
        )
    try:
        options = {"trust_arch": trust_arch} if issubclass(cls, VideoClassifier) else {}
        model = cls.load_from_checkpoint(path, map_location=device, weights_only=True, **options)
    except CheckpointError:
        raise
    except Exception as error:
        raise CheckpointError(f"checkpoint {path} does not fit {cls.__name__} ({str(error)[:160]}): {fix}") from None
    datamodule = raw.get("datamodule_hyper_parameters") or {}
    datamodule = dict(datamodule) if isinstance(datamodule, Mapping) else {}
    hparams = dict(hparams or {})
    recorded = _clip_shape(model, hparams, datamodule)
    shape = tuple(int(s) for s in clip_shape) if clip_shape is not None else recorded
    if clip_shape is not None and recorded is not None and tuple(shape) != tuple(recorded):
        raise CheckpointError(
            f"{path} records clips of {' x '.join(map(str, recorded))} (T x H x W) and --clip-shape asks for "
            f"{' x '.join(map(str, shape))}: the network is built for the recorded shape; drop --clip-shape (it is "
            "for checkpoints that do not say)"
        )
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
