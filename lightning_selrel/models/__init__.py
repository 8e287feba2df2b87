"""Video networks and the LightningModule that trains them.

- :mod:`~lightning_selrel.models.c3d`: C3D, its input normalisation and the clip-shape check;
- :mod:`~lightning_selrel.models.resnet3d`: R3D-18 and R(2+1)D-18;
- :mod:`~lightning_selrel.models.architectures`: ``arch`` names (``c3d``, ``r3d_18``, ``r2plus1d_18``) and class
  paths to networks;
- :mod:`~lightning_selrel.models.weights`: public weights into these networks;
- :mod:`~lightning_selrel.models.classifier`: ``VideoClassifier``, the LightningModule (``C3DClassifier`` too);
- :mod:`~lightning_selrel.models.checkpoint`: the classifier a checkpoint holds, rebuilt safely;
- :mod:`~lightning_selrel.models.predictions`: ``predict``'s writer, one row per clip.
"""

from __future__ import annotations

from lightning_selrel._lazy import lazy_exports

_EXPORTS = {
    "C3D": ".c3d",
    "Normalize": ".c3d",
    "R3D18": ".resnet3d",
    "R2Plus1D18": ".resnet3d",
    "build_network": ".architectures",
    "resolve_architecture": ".architectures",
    "load_c3d_weights": ".weights",
    "load_matching_weights": ".weights",
    "C3DClassifier": ".classifier",
    "VideoClassifier": ".classifier",
    "Classifier": ".checkpoint",
    "ClipPredictionWriter": ".predictions",
    "load_classifier": ".checkpoint",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
