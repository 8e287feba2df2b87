"""The networks a classifier can train, by name or by class path: ``arch: r2plus1d_18`` in a configuration.

========================= =====================================================================================
name                      network
========================= =====================================================================================
``c3d``                   :class:`~lightning_selrel.models.c3d.C3D` (Tran et al. 2015), by ``width`` and ``fc_dim``
``r3d_18``                :class:`~lightning_selrel.models.resnet3d.R3D18` (Tran et al. 2018), sized by ``width``
``r2plus1d_18``           :class:`~lightning_selrel.models.resnet3d.R2Plus1D18` (Tran et al. 2018), sized by ``width``
``package.module.Class``  any class whose constructor takes ``num_classes`` (and whichever of ``width``,
                          ``fc_dim``, ``clip_shape``, ``dropout`` it declares); its forward takes normalised clips
========================= =====================================================================================
"""

from __future__ import annotations

import importlib
import inspect
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from torch import nn

from lightning_selrel.files import CheckpointError
from lightning_selrel.models.c3d import C3D
from lightning_selrel.models.resnet3d import R3D18, R2Plus1D18

__all__ = [
    "ARCHITECTURES",
    "CLASSIFIER_PATHS",
    "TORCHVISION_BUILDERS",
    "build_network",
    "check_architecture",
    "check_model_class",
    "explainable",
    "import_path",
    "is_trusted",
    "resolve_architecture",
    "trust_architecture",
    "untrusted_architecture",
]

ARCHITECTURES: dict[str, type[nn.Module]] = {"c3d": C3D, "r3d_18": R3D18, "r2plus1d_18": R2Plus1D18}
#: torchvision's video ResNet builders (the ``[torchvision]`` extra): a checkpoint may name them as its ``arch``,
#: as it may a registered name (importing torchvision runs no code a checkpoint chose).
TORCHVISION_BUILDERS = frozenset(f"torchvision.models.video.{name}" for name in ("r3d_18", "mc3_18", "r2plus1d_18"))

#: The class paths of this project's classifier, under its name and its earlier one (``C3DClassifier``), from every
#: module that exports it (those of 0.1 included): what LightningCLI records as a checkpoint's ``_class_path``.
CLASSIFIER_PATHS = frozenset(
    f"{module}.{name}"
    for module in ("lightning_selrel", "lightning_selrel.models", "lightning_selrel.models.classifier")
    for name in ("VideoClassifier", "C3DClassifier")
) | {"lightning_selrel.classifier.C3DClassifier"}

#: Class paths the user has said a checkpoint may name (:func:`trust_architecture`); the registered names always may.
_TRUSTED: set[str] = set()


def trust_architecture(path: str) -> None:
    """Let checkpoints name the class path ``path`` as their ``arch`` (the user's explicit trust, for this process).

    A checkpoint is data: the ``arch`` it records is resolved only when it is a registered name (:data:`ARCHITECTURES`)
    or a class path trusted here, by ``trust_arch=`` of the loaders, ``--trust-arch`` of ``explain``, or
    ``--model.arch`` of ``fit``/``validate``/``test``/``predict`` (the user's own configuration is code). As
    Lightning's allowlist of trusted instantiators.
    """
    if not isinstance(path, str) or "." not in path:
        raise ValueError(f"trust_architecture takes a class path such as mypkg.MyNet, got {path!r}")
    _TRUSTED.add(path)


def is_trusted(arch: Any, trust: str | Sequence[str] | None = None) -> bool:
    """Whether a checkpoint may name ``arch``: a registered name, a trusted class path, or one in ``trust``."""
    extra = {trust} if isinstance(trust, str) else set(trust or ())
    known = arch in ARCHITECTURES or arch in TORCHVISION_BUILDERS or arch in _TRUSTED
    return not isinstance(arch, str) or known or arch in extra


def untrusted_architecture(hparams: Any, trust: str | Sequence[str] | None = None) -> str | None:
    """The class path a checkpoint's hyperparameters name as ``arch`` that is not trusted, or None. Imports nothing."""
    arch = hparams.get("arch") if isinstance(hparams, dict) else None
    if arch is None or is_trusted(arch, trust):
        return None
    return str(arch)


def check_architecture(
    checkpoint: Any, path: str | os.PathLike, trust: str | Sequence[str] | None = None, *, fix: str | None = None
) -> None:
    """Refuse, before any import, a checkpoint whose ``arch`` is a class path the user has not trusted.

    Args:
        checkpoint: The loaded checkpoint (a dict, read with ``weights_only=True``).
        path: The file, for the message.
        trust: Class paths the caller trusts (``trust_arch=``, ``--trust-arch``).
        fix: How to trust it from where the caller is, with ``{arch}`` for the class path (default: the Python
            ways).

    Raises:
        CheckpointError: Naming the file, the class path and the fix.
    """
    hparams = checkpoint.get("hyper_parameters") if isinstance(checkpoint, Mapping) else None
    arch = untrusted_architecture(dict(hparams) if isinstance(hparams, Mapping) else None, trust)
    if arch is None:
        return
    fix = (fix or "load_classifier(path, trust_arch='{arch}') or trust_architecture('{arch}') before loading").format(
        arch=arch
    )
    raise CheckpointError(
        f"checkpoint {path} names the architecture class path {arch!r}: a checkpoint is data and may not choose code "
        f"to import (registered: {', '.join(sorted(ARCHITECTURES))} and torchvision's video ResNets); if you trust "
        f"the file and that code, {fix}"
    )


def check_model_class(
    checkpoint: Any, path: str | os.PathLike, trusted: str | Sequence[str] | None = None, *, fix: str | None = None
) -> None:
    """Refuse, before any import, a checkpoint whose ``_class_path`` (the LightningModule class LightningCLI records
    in subclass mode, which Lightning's loaders import) is not this project's classifier nor a class the caller
    named.

    Args:
        checkpoint: The loaded checkpoint (a dict, read with ``weights_only=True``).
        path: The file, for the message.
        trusted: The class paths the caller chose (``model_class=``, ``--model-class``, ``--model``).
        fix: How to name it from where the caller is, with ``{name}`` for the class path.

    Raises:
        CheckpointError: Naming the file, the class path and the fix.
    """
    hparams = checkpoint.get("hyper_parameters") if isinstance(checkpoint, Mapping) else None
    name = hparams.get("_class_path") if isinstance(hparams, Mapping) else None
    chosen = {trusted} if isinstance(trusted, str) else set(trusted or ())
    if name is None or name in CLASSIFIER_PATHS or name in chosen:
        return
    fix = (fix or "name the class yourself: load_classifier(path, model_class='{name}')").format(name=name)
    raise CheckpointError(
        f"checkpoint {path} names the model class path {name!r}: a checkpoint is data and may not choose code to "
        f"import; if you trust the file and that code, {fix}"
    )


def import_path(path: str) -> Any:
    """The object an importable dotted path ``package.module.Name`` names.

    Raises:
        ImportError: Saying why it does not import (no such module, no such name, no module part).
    """
    module_name, _, name = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError, ValueError) as error:
        raise ImportError(str(error)) from None


def resolve_architecture(arch: str) -> type[nn.Module] | Callable[..., nn.Module]:
    """The network class named ``arch``: a name of :data:`ARCHITECTURES` or an importable ``module.Class`` path.

    Raises:
        ValueError: Naming the architecture and listing the names (or why the class path does not import).
    """
    if arch in ARCHITECTURES:
        return ARCHITECTURES[arch]
    if "." in arch:
        try:
            found = import_path(arch)
        except ImportError as error:
            raise ValueError(
                f"arch {arch!r} does not import ({error}); pass one of {sorted(ARCHITECTURES)} or a class path"
            ) from None
        if not callable(found):
            raise ValueError(f"arch {arch!r} is not a class")
        return found
    raise ValueError(f"unknown arch {arch!r}; use one of {sorted(ARCHITECTURES)} or a class path such as mypkg.MyNet")


def build_network(
    arch: str, *, num_classes: int, width: int, fc_dim: int, clip_shape: Sequence[int], dropout: float
) -> nn.Module:
    """The network of ``arch`` built with the classifier's arguments that its constructor or builder names.

    A class or builder function is given the arguments it names. A class that takes ``**kwargs`` gets them all; a
    builder function that takes ``**kwargs`` gets ``num_classes`` and what it names (torchvision's
    ``r3d_18(*, weights=None, progress=True, **kwargs)`` passes its keyword arguments on to a network that takes
    no ``width`` or ``clip_shape``). The network is then made explainable: in-place ReLUs become out-of-place (the
    explanations hook them, and an in-place ReLU overwrites what a hook saw), and a torchvision video ResNet
    declares ``layer4``, its last stage, as the GradCAM layer (as the project's ResNets do).

    Raises:
        ValueError: For an unknown ``arch``, or a class whose constructor does not take ``num_classes``.
    """
    cls = resolve_architecture(arch)
    offered = {
        "num_classes": num_classes,
        "width": width,
        "fc_dim": fc_dim,
        "clip_shape": clip_shape,
        "dropout": dropout,
    }
    parameters = inspect.signature(cls).parameters
    takes_any = any(p.kind is p.VAR_KEYWORD for p in parameters.values())
    if "num_classes" not in parameters and not takes_any:
        raise ValueError(f"arch {arch!r}: its constructor must take num_classes (it takes {list(parameters)})")
    if takes_any and inspect.isclass(cls):
        return explainable(cls(**offered))
    given = {name: value for name, value in offered.items() if name in parameters}
    given.setdefault("num_classes", num_classes)
    return explainable(cls(**given))


def explainable(net: nn.Module) -> nn.Module:
    """``net`` with its in-place ReLUs made out-of-place and, for a torchvision video ResNet without a
    ``gradcam_layer``, ``layer4`` declared as it; the same module (nothing is copied, no weight changes)."""
    for module in net.modules():
        if isinstance(module, nn.ReLU) and module.inplace:
            module.inplace = False
    if (
        type(net).__module__.startswith("torchvision.models.video")
        and not hasattr(net, "gradcam_layer")
        and isinstance(getattr(net, "layer4", None), nn.Module)
    ):
        net.gradcam_layer = "layer4"
    return net
