"""The state of one DTD call (:class:`Walk`), shared by the walk and the rules."""

from __future__ import annotations

from typing import Any

import torch
import torch.fx
from torch import Tensor

__all__ = ["Walk"]


class Walk:
    """The state of one DTD call: each node's value, what the rules keep for backward, and the relevance on its way.

    Attributes:
        env: Node -> its value (dropped once no later node needs it).
        saved: Node -> what its rule keeps for backward.
        owned: Node -> its value is a tensor the walk made (a later ReLU may overwrite it); ``in_place``: the ReLUs
            that did.
        nonneg: Node -> its value is known to be >= 0.
        boxes: Node -> the zB bounds (low, high) of its value, along the input path.
        relevance: Node -> the relevance received so far (summed over its users).
    """

    def __init__(self, dtype: torch.dtype, eps: float) -> None:
        self.dtype, self.eps = dtype, eps
        self.env: dict[torch.fx.Node, Any] = {}
        self.saved: dict[torch.fx.Node, Any] = {}
        self.owned: dict[torch.fx.Node, bool] = {}
        self.in_place: dict[torch.fx.Node, bool] = {}
        self.nonneg: dict[torch.fx.Node, bool] = {}
        self.boxes: dict[torch.fx.Node, tuple[Tensor, Tensor]] = {}
        self.relevance: dict[torch.fx.Node, Tensor] = {}

    def send(self, node: torch.fx.Node, contribution: Tensor) -> None:
        """Add a user's contribution to the relevance of ``node`` (a node with several users sums them)."""
        relevance = self.relevance
        relevance[node] = relevance[node] + contribution if node in relevance else contribution
