"""The two references' data and checks: frozen clips for the static reference, normal vs 3x speed for the motion
reference, and whether a reference learned its task (:mod:`lightning_selrel.monitor.calibration`)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Subset

from lightning_selrel.monitor.behaviour import behaviour, freeze
from lightning_selrel.monitor.calibration.scale import CalibrationError

__all__ = [
    "SPEED_CLASSES",
    "SPEED_FACTOR",
    "FrozenClips",
    "SpeedClips",
    "elapsed",
    "judge",
    "learned",
    "probe_loader",
    "reference_behaviour",
    "subset",
]

SPEED_FACTOR = 3
SPEED_CLASSES = ("normal speed", "3x speed")


class FrozenClips(Dataset):
    """Items ``(clip with one frame repeated over T, label)`` of a dataset of ``(clip, label, ...)``.

    Training draws the frame at random at every access (``random_frame=True``) from torch's generator, which
    ``seed_everything`` and Lightning's worker seeding make repeatable; evaluation freezes each clip at a frame
    fixed by its index, so two passes see the same clips.
    """

    def __init__(self, dataset: Dataset, *, random_frame: bool = True, seed: int = 0) -> None:
        self.dataset, self.random_frame, self.seed = dataset, random_frame, seed

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        item = self.dataset[index]
        clip = torch.as_tensor(item[0])  # (3, T, H, W)
        t = clip.shape[1]
        if self.random_frame:
            frame = int(torch.randint(t, (1,)))
        else:
            frame = int(np.random.default_rng([self.seed, index]).integers(t))
        return freeze(clip[None], frame)[0], int(item[1])


class SpeedClips(Dataset):
    """The speed task: item ``2 i`` is the middle T frames of long clip i (class 0, normal speed), item ``2 i + 1``
    every ``factor``-th frame of it (class 1); long clips have ``factor * T`` frames."""

    def __init__(self, long_clips: Dataset, clip_len: int, factor: int = SPEED_FACTOR) -> None:
        self.long_clips, self.clip_len, self.factor = long_clips, int(clip_len), int(factor)

    def __len__(self) -> int:
        return 2 * len(self.long_clips)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        clip = torch.as_tensor(self.long_clips[index // 2][0])  # (3, factor * T, H, W)
        t = self.clip_len
        if clip.shape[1] != self.factor * t:
            raise CalibrationError(
                f"long_clips gave clips of {clip.shape[1]} frames; the speed task needs {self.factor} x {t}"
            )
        if index % 2 == 0:
            start = (self.factor - 1) * t // 2
            return clip[:, start : start + t], 0
        return clip[:, :: self.factor][:, :t], 1


def subset(dataset: Dataset, count: int | None, seed: int) -> Dataset:
    """At most ``count`` items of a dataset, a fixed random choice (all of them when ``count`` is None)."""
    size = len(dataset)  # type: ignore[arg-type]
    if count is None or count >= size:
        return dataset
    return Subset(dataset, sorted(np.random.default_rng(seed).choice(size, count, replace=False).tolist()))


def learned(accuracy: float, classes: int, gain: float = 0.5) -> bool:
    """A reference learned its task when its accuracy is at least ``gain`` of the way from chance to perfect."""
    chance = 1.0 / classes
    return accuracy >= chance + gain * (1.0 - chance)


def judge(
    references: Mapping[str, Mapping[str, Any]], *, gain: float = 0.5, static_unchanged: float = 0.8
) -> str | None:
    """Why no setting should be recommended, or None when both references did what they were built for."""
    motion, static = references["motion"], references["static"]
    problems = []
    if not learned(motion["accuracy"], 2, gain):
        problems.append(
            f"the motion reference did not learn its task (normal vs 3x speed: accuracy {motion['accuracy']:.2f}, "
            f"needs {0.5 + gain * 0.5:.2f}); raise --epochs or --train-clips"
        )
    if not learned(static["accuracy"], static["classes"], gain):
        chance = 1.0 / static["classes"]
        problems.append(
            f"the static reference did not learn its task (frozen clips: accuracy {static['accuracy']:.2f}, chance "
            f"{chance:.2f}); the classes may not be told apart by appearance, or the budget is too small"
        )
    if static["unchanged_frozen"] < static_unchanged:
        problems.append(
            f"the static reference is not static: its prediction changes on {1 - static['unchanged_frozen']:.0%} of "
            f"the probe clips when they are frozen (at most {1 - static_unchanged:.0%} allowed)"
        )
    return "; ".join(problems) if problems else None


def reference_behaviour(model: torch.nn.Module, clips: Tensor, labels: Tensor, batch_size: int) -> dict[str, float]:
    """A reference on the moving probe clips: its accuracy there and the share unchanged when they are frozen."""
    scores = behaviour(model, clips, labels, batch_size=batch_size)
    return {"probe_accuracy": float(scores["acc"].mean()), "unchanged_frozen": float(scores["unchanged_frozen"].mean())}


def elapsed(start: float) -> str:
    return f"{time.perf_counter() - start:.0f} s"


def probe_loader(dataset: Dataset, batch_size: int, num_workers: int = 0, shuffle: bool = False) -> DataLoader:
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=num_workers)
