"""torchvision for the interop tests, or a skip that says why.

PyPI's Linux wheel of torchvision 0.28 is built against the CUDA build of torch 2.13. With the CPU build (this
project's pin) its compiled operators do not load, and ``import torchvision`` then fails while registering fake
kernels for two detection operators (``torchvision::nms``, ``torchvision::qnms``); torchmetrics imports torchvision
whenever it is installed, so then nothing imports at all. The video models are plain Python and use neither
operator: where that is the failure, :func:`declare_missing_detection_ops` (called by ``conftest.py`` before
anything imports torchmetrics) declares the two schemas (no kernel: calling them would raise). With a matching
torchvision, or none, it does nothing. CI installs no torchvision: these tests skip there.
"""

from __future__ import annotations

import importlib.util
import sys
from typing import Any

import pytest
import torch

_DECLARED: list[Any] = []  # the Library must stay alive, or its declarations go with it


def declare_missing_detection_ops() -> None:
    """Make a torchvision whose compiled operators do not load importable (see the module notes)."""
    if importlib.util.find_spec("torchvision") is None:
        return
    try:
        import torchvision  # noqa: F401
    except RuntimeError as error:
        if "torchvision::nms does not exist" not in str(error):
            raise
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]
        library = torch.library.Library("torchvision", "FRAGMENT")
        for op in ("nms", "qnms"):
            library.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        _DECLARED.append(library)


def import_torchvision() -> Any:
    """torchvision, or a skip."""
    try:
        import torchvision
    except ImportError:
        pytest.skip("torchvision is not installed: pip install -e '.[torchvision]' (a build matching your torch)")
    return torchvision
