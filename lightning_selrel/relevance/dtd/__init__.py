"""Deep Taylor decomposition (DTD) for video models, one batch in one pass: sequential stacks, residual networks,
BatchNorm and global pooling.

The model is traced once with ``torch.fx`` (:mod:`.graph`); DTD walks the graph (:mod:`.walk`), each operation
following a rule (:mod:`.rules`: one class per rule, and the composite that picks them). Anything without a rule
raises, naming it and the supported set. Relevance at the output is 1 for the explained class (or its logit,
``start="logit"``) and 0 for the others.

Choices beyond docs/method.md are written in :mod:`.rules` (biases left out of the denominators, the stabiliser,
the residual-sum rule).
"""

from lightning_selrel.relevance.dtd.graph import SUPPORTED_LAYERS, dtd_graph, dtd_layers
from lightning_selrel.relevance.dtd.walk import dtd, select_target

__all__ = ["SUPPORTED_LAYERS", "dtd", "dtd_graph", "dtd_layers", "select_target"]
