"""lightning_selrel: selective relevance for video models, as a PyTorch Lightning framework.

Data flows one way, and each step is a module::

    clips (data, ucf101) -> C3D (model, classifier) -> relevance (explain, dtd) -> selective map (selective)
                                              \\-> metrics vs motion (flow, metrics) -> TensorBoard (monitor, render)
"""

from .classifier import C3DClassifier
from .data import MotionContextDataModule, MotionContextDataset
from .explain import available_methods, check_methods, explain, explain_with_logits, register_method
from .flow import motion_mask, optical_flow
from .metrics import (
    MotionPrecision,
    RelevanceAgreement,
    Selectivity,
    clip_scores,
    motion_mass_precision,
    motion_precision,
    relevance_agreement,
    relevant_area,
    selectivity,
    spatial_bias,
)
from .model import C3D
from .monitor import SelectiveRelevanceMonitor
from .selective import selective_relevance, temporal_edges

__all__ = [
    "C3D",
    "C3DClassifier",
    "MotionContextDataModule",
    "MotionContextDataset",
    "MotionPrecision",
    "RelevanceAgreement",
    "SelectiveRelevanceMonitor",
    "Selectivity",
    "UCF101DataModule",
    "available_methods",
    "check_methods",
    "clip_scores",
    "explain",
    "explain_with_logits",
    "motion_mask",
    "motion_mass_precision",
    "motion_precision",
    "optical_flow",
    "register_method",
    "relevance_agreement",
    "relevant_area",
    "selective_relevance",
    "selectivity",
    "spatial_bias",
    "temporal_edges",
]
__version__ = "0.1.0"


def __getattr__(name: str):
    # Lazy, so that `python -m lightning_selrel.ucf101` does not import its own module twice.
    if name == "UCF101DataModule":
        from .ucf101 import UCF101DataModule

        return UCF101DataModule
    raise AttributeError(f"module 'lightning_selrel' has no attribute {name!r}")
