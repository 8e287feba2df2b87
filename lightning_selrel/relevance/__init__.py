"""Relevance maps and their selective part.

- :mod:`~lightning_selrel.relevance.methods`: the registry of explanation methods (DTD and captum's GradCAM
  family) and one call that runs any of them;
- :mod:`~lightning_selrel.relevance.dtd`: Deep Taylor decomposition as a graph walk with a rule per operation;
- :mod:`~lightning_selrel.relevance.selective`: the selective step (temporal Sobel, threshold, mask), pure;
- :mod:`~lightning_selrel.relevance.measure`: one timed explain-then-select step.
"""

from __future__ import annotations

from lightning_selrel._lazy import lazy_exports

_EXPORTS = {
    "available_methods": ".methods",
    "check_methods": ".methods",
    "check_model": ".methods",
    "explain": ".methods",
    "explain_with_logits": ".methods",
    "register_method": ".methods",
    "resolve_layer": ".methods",
    "selective_relevance": ".selective",
    "temporal_edges": ".selective",
    "explain_selective": ".measure",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
