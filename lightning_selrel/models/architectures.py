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
from collections.abc import Callable, Sequence
from typing import Any

from torch import nn

from lightning_selrel.models.c3d import C3D
from lightning_selrel.models.resnet3d import R3D18, R2Plus1D18

__all__ = ["ARCHITECTURES", "build_network", "import_path", "resolve_architecture"]

ARCHITECTURES: dict[str, type[nn.Module]] = {"c3d": C3D, "r3d_18": R3D18, "r2plus1d_18": R2Plus1D18}


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
    """The network of ``arch`` built with the classifier's arguments that its constructor takes.

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
    if "num_classes" not in parameters and not any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
        raise ValueError(f"arch {arch!r}: its constructor must take num_classes (it takes {list(parameters)})")
    if any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
        return cls(**offered)
    return cls(**{name: value for name, value in offered.items() if name in parameters})
