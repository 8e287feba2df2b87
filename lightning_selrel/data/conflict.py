"""Cue-conflict clips: motion says one class, the static context another.

A direct behavioural test of static bias, as the shape-vs-texture cue-conflict images of Geirhos et al. (ICLR
2019) are for image models, and the conflicting foreground and background of Li et al. (ICCV 2023, SCUFO): a
model that decides from motion predicts the motion's class, one that decides from context the context's. The
monitor logs the share of predictions that follow the motion among those that follow either cue
(``selrel/behaviour/conflict_motion_share``) when the data module offers such clips.

**The interface** (what any data module may offer, as ``long_clips`` is for ``calibrate``): a method
``conflict_clips(stage)`` for ``stage`` ``"val"`` or ``"test"`` returning a map-style dataset whose items are
``(clip, motion_label, context_label)``: ``clip`` a uint8 (or float) tensor (C, T, H, W) as the model's forward
takes it in a batch, the two labels distinct ints. On real video such clips can be made by pasting the actor of
one class over the background of another (SCUFO), or from a dataset's own annotation of both. The built-in data
render them exactly (:meth:`~lightning_selrel.data.synthetic.MotionContextDataModule.conflict_clips`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import Dataset

__all__ = ["ConflictClips", "conflict_item"]


class ConflictClips(Dataset):
    """The built-in cue-conflict clips: items ``(clip, motion_label, context_label)`` of a
    :class:`~lightning_selrel.data.synthetic.MotionContextDataset` made with ``cue="conflict"``."""

    def __init__(self, clips: Any) -> None:
        if getattr(clips, "cue", None) != "conflict":
            raise ValueError(f"ConflictClips needs a MotionContextDataset with cue='conflict', got {clips!r}")
        self.clips = clips

    def __len__(self) -> int:
        return len(self.clips)

    @property
    def labels(self) -> list[int]:
        """The motion label of every clip, without rendering (the probe draw's per-class option reads it)."""
        return self.clips.labels

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int]:
        clip, label, _ = self.clips[index]
        context = self.clips.params(index).context_label
        return clip, int(label), int(context)


def conflict_item(item: Any, index: int, source: str) -> tuple[torch.Tensor, int, int]:
    """One item of a data module's ``conflict_clips``, checked: ``(clip (C, T, H, W), motion_label,
    context_label)`` with two different labels; otherwise a ValueError naming ``source`` and the fix."""
    if not isinstance(item, (tuple, list)) or len(item) < 3:
        raise ValueError(
            f"{source}: item {index} must be (clip, motion_label, context_label), got {type(item).__name__} "
            f"of length {len(item) if isinstance(item, (tuple, list)) else '-'}"
        )
    clip, motion, context = item[0], item[1], item[2]
    clip = torch.as_tensor(clip)
    motion, context = int(torch.as_tensor(motion)), int(torch.as_tensor(context))
    if clip.ndim != 4:
        raise ValueError(f"{source}: item {index}'s clip must be (C, T, H, W), got shape {tuple(clip.shape)}")
    if motion == context:
        raise ValueError(
            f"{source}: item {index} has motion_label = context_label = {motion}: a cue-conflict clip shows two "
            "different classes"
        )
    return clip, motion, context
