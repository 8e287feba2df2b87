"""The monitor's cue-conflict test: which cue the model follows when motion and context disagree.

When the trainer's data module offers ``conflict_clips(stage)`` (:mod:`lightning_selrel.data.conflict`), the
monitor draws ``num_conflict_clips`` of them once (from its seed, kept for the run), splits them over the ranks,
predicts them at every measurement and logs ``selrel/behaviour/conflict_motion_share``,
``conflict_neither_share`` and ``conflict_motion_prob`` (+ ``_std``) over every rank's clips
(:data:`~lightning_selrel.metrics.tags.CONFLICT`). Forward passes only: on the built-in data 64 clips cost about
as much as one training batch of 32.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from lightning_selrel._lightning import MisconfigurationException, pl
from lightning_selrel.data.conflict import conflict_item
from lightning_selrel.metrics import tags
from lightning_selrel.monitor.behaviour import conflict_scores, conflict_summary
from lightning_selrel.monitor.measuring import gather

__all__ = ["ConflictProbe", "conflict_source"]


def conflict_source(trainer: pl.Trainer, stage: str) -> Any | None:
    """The data module's cue-conflict clips for ``stage``, or None where it offers none."""
    offer = getattr(getattr(trainer, "datamodule", None), "conflict_clips", None)
    if offer is None or not callable(offer):
        return None
    try:
        return offer(stage)
    except ValueError as error:  # e.g. a data module without conflict clips for this stage
        raise MisconfigurationException(f"SelectiveRelevanceMonitor: conflict_clips({stage!r}): {error}") from None


class ConflictProbe:
    """One rank's share of the drawn cue-conflict clips of one stage, loaded once (CPU).

    Args:
        dataset: The data module's ``conflict_clips(stage)``.
        num_clips: Clips to draw (all of a smaller set).
        seed: Seed of the draw.
        world_size, rank: The share of this rank (contiguous, as the probe set's).
    """

    def __init__(self, dataset: Any, num_clips: int, seed: int, world_size: int = 1, rank: int = 0) -> None:
        size = len(dataset)
        if size == 0:
            raise MisconfigurationException(
                "SelectiveRelevanceMonitor: the data module's conflict_clips is empty; give it clips or set "
                "num_conflict_clips=0"
            )
        count = min(num_clips, size)
        self.indices = sorted(int(i) for i in np.random.default_rng(seed).choice(size, count, replace=False))
        share = np.array_split(np.asarray(self.indices), world_size)[rank].tolist()
        source = f"conflict_clips of {type(dataset).__name__}"
        items = [conflict_item(dataset[i], i, source) for i in share]
        self.total = count
        if items:
            self.clips = torch.stack([clip for clip, _, _ in items])
            self.motion = torch.tensor([m for _, m, _ in items])
            self.context = torch.tensor([c for _, _, c in items])
        else:
            self.clips = torch.zeros(0)
            self.motion = self.context = torch.zeros(0, dtype=torch.long)

    def measure(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch_size: int) -> dict[str, float]:
        """``selrel/behaviour/<name>`` -> value for :data:`~lightning_selrel.metrics.tags.CONFLICT`, over every
        rank's clips (the per-clip scores are gathered; every rank returns the same values)."""
        clips = self.clips.to(pl_module.device) if self.clips.numel() else self.clips
        scores: dict[str, Tensor] = conflict_scores(pl_module, clips, self.motion, self.context, batch_size=batch_size)
        scores = gather(trainer, pl_module, scores, self.total)
        summary = conflict_summary(scores)
        return {tags.behaviour_tag(name): value for name, value in summary.items() if value == value}  # no NaN
