"""lightning_selrel: selective relevance for video models, as a PyTorch Lightning framework.

Data flows one way, and each step is a subpackage; a module imports only from the folders before it (a test
builds the import graph and fails on a circle or an upward import)::

    files -> data -> mitigation -> models -> relevance -> metrics -> monitor -> commands

- :mod:`~lightning_selrel.data`: frames, the built-in motion/context clips, UCF-101, the frame cache;
- :mod:`~lightning_selrel.mitigation`: static-bias mitigations during training (StillMix, background erasing);
- :mod:`~lightning_selrel.models`: C3D, R3D-18 / R(2+1)D-18, weights, the classifier, checkpoints;
- :mod:`~lightning_selrel.relevance`: explanation methods, DTD (graph walk and rules), the selective step;
- :mod:`~lightning_selrel.metrics`: motion masks from optical flow, the scores against motion, their tags;
- :mod:`~lightning_selrel.monitor`: the spatial-bias callback, its probe set, behaviour, calibration, media;
- :mod:`~lightning_selrel.commands`: ``python -m lightning_selrel`` (fit, explain, calibrate, cache).

Names are imported lazily, on first use: ``import lightning_selrel.relevance.selective`` (or
``lightning_selrel.metrics``) loads neither PyTorch Lightning nor captum, and ``lightning_selrel.VideoClassifier``
imports what it needs when it is first touched. The module paths of 0.1.0 (``lightning_selrel.ucf101``, ...) still
import, with a DeprecationWarning (:mod:`lightning_selrel._compat`).
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

from lightning_selrel import _compat

__version__ = "0.1.0"

# Public name -> the module that defines it.
_EXPORTS: dict[str, str] = {
    "C3D": "models.c3d",
    "C3DClassifier": "models.classifier",
    "VideoClassifier": "models.classifier",
    "ClipPredictionWriter": "models.predictions",
    "MotionContextDataModule": "data.synthetic",
    "MotionContextDataset": "data.synthetic",
    "UCF101DataModule": "data.ucf101.datamodule",
    "VideoListDataModule": "data.video_list",
    "MotionPrecision": "metrics.modules",
    "RelevanceAgreement": "metrics.modules",
    "Selectivity": "metrics.modules",
    "clip_scores": "metrics.functional",
    "motion_mass_precision": "metrics.functional",
    "motion_precision": "metrics.functional",
    "relevance_agreement": "metrics.functional",
    "relevant_area": "metrics.functional",
    "selectivity": "metrics.functional",
    "spatial_bias": "metrics.functional",
    "SelectiveRelevanceMonitor": "monitor.callback",
    "StaticBiasMitigation": "mitigation.callback",
    "available_methods": "relevance.methods",
    "check_methods": "relevance.methods",
    "explain": "relevance.methods",
    "explain_with_logits": "relevance.methods",
    "explain_video": "commands.notebook",
    "calibrate": "commands.notebook",
    "register_method": "relevance.methods",
    "motion_mask": "metrics.flow",
    "optical_flow": "metrics.flow",
    "selective_relevance": "relevance.selective",
    "temporal_edges": "relevance.selective",
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
    """Importing the old module path ``lightning_selrel.explain`` sets the package attribute of that name to the
    module; the public name is the function, so the function is kept instead."""

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, types.ModuleType) and name in _EXPORTS and not _EXPORTS[name].endswith(name):
            value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
_compat.install()
