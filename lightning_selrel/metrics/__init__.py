"""Relevance against motion: the motion ground truth, the scores and their tags.

- :mod:`~lightning_selrel.metrics.flow`: motion masks from optical flow (OpenCV);
- :mod:`~lightning_selrel.metrics.functional`: one value per clip (motion precision, selectivity, spatial bias,
  agreement, rank correlation), NaN where a clip has none;
- :mod:`~lightning_selrel.metrics.modules`: torchmetrics classes over them (mean and population std over clips,
  synced exactly over ranks);
- :mod:`~lightning_selrel.metrics.tags`: the ``selrel/...`` names they are logged under.

All of it imports without PyTorch Lightning.
"""

from __future__ import annotations

from lightning_selrel._lazy import lazy_exports

_EXPORTS = {
    **dict.fromkeys(("FLOW_METHODS", "flow_magnitude_per_frame", "motion_mask", "optical_flow"), ".flow"),
    **dict.fromkeys(
        (
            "RELEVANT_AREAS",
            "RelevantArea",
            "SelectivityScores",
            "clip_scores",
            "mask_iou",
            "motion_mass_precision",
            "motion_precision",
            "rank_correlation",
            "relevance_agreement",
            "relevant_area",
            "selectivity",
            "spatial_bias",
        ),
        ".functional",
    ),
    **dict.fromkeys(("MeanStd", "MotionPrecision", "RelevanceAgreement", "Selectivity"), ".modules"),
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
