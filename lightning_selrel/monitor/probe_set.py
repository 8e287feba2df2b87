"""The probe set: fixed validation clips that are explained, epoch after epoch, with their motion masks.

:func:`choose_indices` draws the clips once from a seed, at random or ``per_class`` clips of every class
(or keeps a restored draw); :func:`load_probe` loads
one rank's share of them with the motion ground truth computed once (optical flow on the raw frames, plus the
data's exact masks when items carry them); :func:`stage_dataset` finds the dataset of a trainer's
validation or test loader, and :func:`check_item` says what is wrong with an item that does not fit. The
spatial-bias monitor uses them; so can any other consumer of fixed probe clips.

Items must be ``(clip, label)`` or ``(clip, label, motion_mask)``: ``clip`` (3, T, H, W) in pixel scale (as
the classifier's forward takes it), ``label`` an int, ``motion_mask`` bool (T, H, W).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from lightning_selrel._lightning import MisconfigurationException, pl, rank_zero_info, rank_zero_warn
from lightning_selrel.metrics.flow import motion_mask

__all__ = ["ProbeSet", "check_item", "choose_indices", "dataset_labels", "load_probe", "stage_dataset"]


@dataclass
class ProbeSet:
    """One rank's share of the probe clips, loaded once and kept on the CPU.

    Attributes:
        indices: Dataset indices of the whole probe set (every rank's).
        positions: Position k in the whole probe set of each clip held here (names ``clip_<k>``).
        clips: uint8 (N, 3, T, H, W).
        labels: int64 (N,).
        flow_masks: bool (N, T, H, W), from optical flow on the raw frames.
        exact_masks: bool (N, T, H, W) when the data provide them, else None.
    """

    indices: list[int]
    positions: list[int]
    clips: Tensor
    labels: Tensor
    flow_masks: Tensor
    exact_masks: Tensor | None


def stage_dataset(trainer: pl.Trainer, stage: str, owner: str = "SelectiveRelevanceMonitor") -> Any:
    """The map-style dataset of the trainer's first ``"val"`` or ``"test"`` loader.

    Raises:
        MisconfigurationException: If there is none, it has no ``__len__`` / ``__getitem__``, or it is empty.
    """
    loaders = trainer.val_dataloaders if stage == "val" else trainer.test_dataloaders
    if isinstance(loaders, (list, tuple)):
        loaders = loaders[0] if loaders else None
    dataset = getattr(loaders, "dataset", None)
    if dataset is None or not hasattr(dataset, "__getitem__") or not hasattr(dataset, "__len__"):
        raise MisconfigurationException(
            f"{owner} needs a map-style {stage} dataset (with __len__ and __getitem__) "
            f"to draw fixed probe clips from; got {type(dataset).__name__}."
        )
    if len(dataset) == 0:
        raise MisconfigurationException(f"{owner}: the {stage} dataset is empty.")
    return dataset


def dataset_labels(dataset: Any) -> list[int]:
    """The label of every item: the dataset's ``labels`` (the built-in data and UCF-101 have them), else read
    from the items one by one (slow for video files: give a dataset a ``labels`` sequence to avoid it)."""
    labels = getattr(dataset, "labels", None)
    if labels is not None:
        return [int(label) for label in labels]
    rank_zero_info(f"{type(dataset).__name__} has no `labels`: reading every item's label to draw per class")
    return [int(dataset[i][1]) for i in range(len(dataset))]


def choose_indices(
    size: int,
    num_clips: int,
    seed: int,
    *,
    stored: list[int] | None = None,
    stage: str = "val",
    owner: str = "SelectiveRelevanceMonitor",
    labels: list[int] | None = None,
    per_class: int | None = None,
) -> list[int]:
    """Distinct indices of a dataset of ``size`` items, sorted, drawn from ``seed``: ``min(num_clips, size)``
    of them, or with ``per_class`` (and the items' ``labels``) that many of every class (all of a smaller one).

    A ``stored`` draw (restored from a checkpoint) is kept when it still fits the dataset and the count;
    otherwise a new one is drawn, with a warning.
    """
    rng = np.random.default_rng(seed)
    if per_class is None:
        count = min(num_clips, size)

        def draw() -> list[int]:
            return sorted(int(i) for i in rng.choice(size, size=count, replace=False))
    else:
        if labels is None or len(labels) != size:
            raise ValueError(f"a per-class draw needs the label of each of the {size} items")
        by_class: dict[int, list[int]] = {}
        for index, label in enumerate(labels):
            by_class.setdefault(int(label), []).append(index)
        count = sum(min(per_class, len(items)) for items in by_class.values())
        small = sorted(c for c, items in by_class.items() if len(items) < per_class)
        if small:
            rank_zero_info(
                f"{owner}: classes {small} have fewer than per_class={per_class} {stage} clips: all are used"
            )

        def draw() -> list[int]:
            chosen = []
            for label in sorted(by_class):
                items = by_class[label]
                chosen += [int(i) for i in rng.choice(items, size=min(per_class, len(items)), replace=False)]
            return sorted(chosen)

    if stored and max(stored) < size and len(stored) == count:
        return list(stored)
    if stored:
        rank_zero_warn(
            f"{owner}: the restored probe clips {stored} do not fit num_clips={num_clips} "
            f"and a {stage} set of {size} clips; drawing a new probe set (earlier epochs used other clips)."
        )
    if per_class is None and count < num_clips:
        rank_zero_warn(
            f"{owner}: the {stage} set has only {size} clips, fewer than num_clips={num_clips}; using all of them."
        )
    return draw()


def check_item(item: Any, index: int, stage: str, owner: str = "SelectiveRelevanceMonitor") -> Any:
    """A dataset item must be (clip (3, T, H, W), label) or (clip, label, motion_mask (T, H, W)).

    Raises:
        MisconfigurationException: Saying what the item is and what is expected.
    """
    if not isinstance(item, (tuple, list)) or len(item) < 2:
        raise MisconfigurationException(
            f"{owner} expects dataset items (clip, label) or (clip, label, motion_mask); "
            f"{stage} item {index} is a {type(item).__name__}."
        )
    shape = tuple(torch.as_tensor(item[0]).shape)
    if len(shape) != 4 or shape[0] != 3:
        raise MisconfigurationException(
            f"{owner}: {stage} item {index} has a clip of shape {shape}; expected uint8 pixels "
            "(3, T, H, W), as the classifier's forward takes them."
        )
    if len(item) > 2 and tuple(torch.as_tensor(item[2]).shape) != shape[1:]:
        raise MisconfigurationException(
            f"{owner}: the third element of {stage} item {index} has shape "
            f"{tuple(torch.as_tensor(item[2]).shape)}; it is read as the exact motion mask and must be (T, H, W) = "
            f"{shape[1:]}. Yield (clip, label) if the data have no motion masks."
        )
    return item


def load_probe(
    dataset: Any,
    indices: list[int],
    *,
    world_size: int = 1,
    rank: int = 0,
    flow_method: str = "farneback",
    flow_threshold: float = 0.5,
    stage: str = "val",
    owner: str = "SelectiveRelevanceMonitor",
) -> ProbeSet:
    """Load this rank's contiguous share of the probe clips (rank 0 holds the first, the ones rendered as
    videos) with their motion masks. Every rank reads the first item, for the shapes of an empty share."""
    share = np.array_split(np.arange(len(indices)), world_size)[rank]
    clips, labels, flows, exact = [], [], [], []
    first = check_item(dataset[indices[0]], indices[0], stage, owner)
    has_exact = len(first) > 2
    for k in share:
        item = first if k == 0 else check_item(dataset[indices[k]], indices[k], stage, owner)
        clip = torch.as_tensor(item[0])
        if clip.dtype != torch.uint8:
            clip = clip.float().round().clamp(0, 255).to(torch.uint8)  # flow needs raw pixels
        clips.append(clip)
        labels.append(int(item[1]))
        flows.append(motion_mask(clip, threshold=flow_threshold, method=flow_method))
        if has_exact:
            exact.append(torch.as_tensor(item[2]).bool())
    shape = torch.as_tensor(first[0]).shape
    empty_masks = torch.zeros((0, *shape[1:]), dtype=torch.bool)
    probe = ProbeSet(
        indices=list(indices),
        positions=[int(k) for k in share],
        clips=torch.stack(clips) if clips else torch.zeros((0, *shape), dtype=torch.uint8),
        labels=torch.tensor(labels, dtype=torch.long),
        flow_masks=torch.stack(flows) if flows else empty_masks,
        exact_masks=(torch.stack(exact) if exact else empty_masks.clone()) if has_exact else None,
    )
    rank_zero_info(
        f"{owner}: {len(indices)} probe clips from the {stage} set (indices {indices}); "
        f"motion masks from {flow_method} flow > {flow_threshold} px"
        + (" and the data's exact masks" if has_exact else "")
    )
    return probe
