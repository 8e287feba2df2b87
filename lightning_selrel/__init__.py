"""lightning_selrel: selective relevance for video models, as a PyTorch Lightning framework.

Data flows one way, and each step is a module (the README's "Layout" lists them all)::

    frames (frames, synthetic, ucf101) -> model (model, classifier) -> relevance (explain, dtd)
        -> selective map (selective) -> scores vs motion (flow, metrics) -> TensorBoard (monitor, render)

Names are imported lazily, on first use: ``import lightning_selrel.selective`` (or ``metrics``, ``flow``)
loads neither PyTorch Lightning nor captum, and ``lightning_selrel.C3DClassifier`` imports what it needs
when it is first touched.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

__version__ = "0.1.0"

# Public name -> the module that defines it.
_EXPORTS: dict[str, str] = {
    "C3D": "model",
    "C3DClassifier": "classifier",
    "MotionContextDataModule": "synthetic",
    "MotionContextDataset": "synthetic",
    "UCF101DataModule": "ucf101",
    "MotionPrecision": "metrics",
    "RelevanceAgreement": "metrics",
    "Selectivity": "metrics",
    "clip_scores": "metrics",
    "motion_mass_precision": "metrics",
    "motion_precision": "metrics",
    "relevance_agreement": "metrics",
    "relevant_area": "metrics",
    "selectivity": "metrics",
    "spatial_bias": "metrics",
    "SelectiveRelevanceMonitor": "monitor",
    "available_methods": "explain",
    "check_methods": "explain",
    "explain": "explain",
    "explain_with_logits": "explain",
    "register_method": "explain",
    "motion_mask": "flow",
    "optical_flow": "flow",
    "selective_relevance": "selective",
    "temporal_edges": "selective",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'lightning_selrel' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


class _Package(types.ModuleType):
    """Importing the submodule ``explain`` sets the package attribute of that name to the module; the public
    name is the function, so the function it defines is kept instead (as an eager ``from .explain import
    explain`` would have rebound it)."""

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, types.ModuleType) and _EXPORTS.get(name) == name:
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
