"""Lazy public names for a package: ``__getattr__`` and ``__dir__`` that import a name's module on first use.

Each package's ``__init__`` lists its public names and the module that defines each, so that importing a pure
part (``lightning_selrel.relevance.selective``, ``lightning_selrel.metrics``) loads neither PyTorch Lightning
nor captum, while ``from lightning_selrel.models import VideoClassifier`` still works.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, exports: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The module-level ``__getattr__`` and ``__dir__`` of ``package`` for ``exports`` (name -> relative module).

    A name is imported from its module on first access and stored on the package, so later lookups are plain
    attribute reads.
    """

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module, package), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(exports))

    return __getattr__, __dir__
