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
    "MIN_MOTION",
    "MIN_PROBE_MOTION",
    "SPEED_CLASSES",
    "SPEED_FACTOR",
    "FrozenClips",
    "SpeedClips",
    "elapsed",
    "judge",
    "learned",
    "motion_energy",
    "moves",
    "probe_loader",
    "reference_behaviour",
    "subset",
]

SPEED_FACTOR = 3
SPEED_CLASSES = ("normal speed", "3x speed")
#: Grey levels by which the frame difference of a window's 3x clip must differ from its normal clip's for the
#: window to take part in the speed task.
MIN_MOTION = 0.5
#: Grey levels of mean absolute frame difference below which a probe clip counts as still and is not measured: on a
#: clip where nothing moves a motion-only model has no motion to use, and the references' spatial bias there says
#: nothing about moving clips (measured on ``../shared/footage/``: the clip of a person standing, 0.6-0.7 grey
#: levels, carried all of the references' separation, while the two moving clips, 2.7-19, did not separate them).
MIN_PROBE_MOTION = 1.0


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
    every ``factor``-th frame of it (class 1); long clips have ``factor * T`` frames.

    Only windows whose speed can be seen take part: where the fast clip's mean absolute frame difference differs
    from the normal clip's by less than ``min_motion`` grey levels, nothing moves enough to tell the two apart (a
    still shot, a motionless person: one of the three public clips of ``../shared/footage/`` differs by 0.2 grey
    levels, the others by 2-8), and such a pair is label noise. Pixel noise adds to both differences alike and
    cancels. (The difference can be negative: on the built-in data the objects of a 3x clip often leave the
    frame, and it moves less than the normal one.) Evaluation
    (``train=False``) keeps the long clips that move, once; training draws again, at most ``tries`` times per
    item, from the same long clip (a new random window where the data draw them) and then from the next ones.

    Args:
        long_clips: A dataset of ``(clip (3, factor * T, H, W), label, ...)``.
        clip_len: T.
        factor: The speed-up of class 1.
        min_motion: Grey levels (0-255) by which the fast clip's frame difference must differ from the normal
            one's; 0 keeps every window.
        train: Draw again at access (training) instead of choosing the moving windows once (evaluation).
        tries: Draws per item in training before moving on to the next long clip (and how many next ones).
    """

    def __init__(
        self,
        long_clips: Dataset,
        clip_len: int,
        factor: int = SPEED_FACTOR,
        *,
        min_motion: float = MIN_MOTION,
        train: bool = False,
        tries: int = 4,
    ) -> None:
        self.long_clips, self.clip_len, self.factor = long_clips, int(clip_len), int(factor)
        self.min_motion, self.train, self.tries = float(min_motion), bool(train), int(tries)
        size = len(long_clips)  # type: ignore[arg-type]
        self.kept = list(range(size))
        self.still = 0
        # evaluation's last pair: items 2 i and 2 i + 1 come from one long clip, read in order by an evaluation
        # loader, so each long clip is read once per pass, not once per item (training draws anew at every access)
        self._last: tuple[int, tuple[Tensor, Tensor]] | None = None
        if not self.train and self.min_motion > 0:
            self.kept = [i for i in range(size) if self._moves(*self._pair(i))]
            self.still = size - len(self.kept)

    def __len__(self) -> int:
        return 2 * len(self.kept)

    def _pair(self, index: int) -> tuple[Tensor, Tensor]:
        clip = torch.as_tensor(self.long_clips[index][0])  # (3, factor * T, H, W)
        t = self.clip_len
        if clip.shape[1] != self.factor * t:
            raise CalibrationError(
                f"long_clips gave clips of {clip.shape[1]} frames; the speed task needs {self.factor} x {t}"
            )
        start = (self.factor - 1) * t // 2
        return clip[:, start : start + t], clip[:, :: self.factor][:, :t]

    def _moves(self, normal: Tensor, fast: Tensor) -> bool:
        return abs(motion_energy(fast) - motion_energy(normal)) >= self.min_motion

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        position, label = self.kept[index // 2], index % 2
        if not self.train:
            if self._last is None or self._last[0] != position:
                self._last = (position, self._pair(position))
            return self._last[1][label].clone(), label  # a copy: the pair's two items share frames
        if self.min_motion <= 0:
            return self._pair(position)[label], label
        size = len(self.kept)
        pair = None
        # this long clip ``tries`` times (a new random window each), then the next ``tries`` ones once each: at
        # most 2 x tries decodings per item, however still the training set is
        for step in range(min(size, self.tries + 1)):
            for _ in range(self.tries if step == 0 else 1):
                pair = self._pair(self.kept[(position + step) % size])
                if self._moves(*pair):
                    return pair[label], label
        assert pair is not None
        return pair[label], label  # nothing near moves: kept (label noise; the judge says if the task was not learned)


def motion_energy(clip: Tensor) -> float:
    """Mean absolute difference of consecutive frames of a clip (C, T, H, W), in its pixel scale."""
    frames = clip.float()
    return float((frames[:, 1:] - frames[:, :-1]).abs().mean()) if frames.shape[1] > 1 else 0.0


def moves(clip: Tensor, minimum: float = MIN_PROBE_MOTION) -> bool:
    """Whether a probe clip (C, T, H, W), pixels in 0-255, moves: its :func:`motion_energy` is at least ``minimum``
    grey levels (0: every clip moves). Pixel noise counts as motion here (a noisy still shot is kept, as before this
    test existed); what it leaves out is the clean still shot, whose selective relevance has no motion to follow."""
    return minimum <= 0 or motion_energy(clip) >= minimum


def subset(dataset: Dataset, count: int | None, seed: int, *, repeat: bool = False) -> Dataset:
    """At most ``count`` items of a dataset, a fixed random choice (all of them when ``count`` is None); with
    ``repeat``, exactly ``count``: a dataset smaller than that is repeated (for training sets that draw a random
    window at every access, such as UCF-101's one clip per video, so that an epoch has ``count`` clips)."""
    size = len(dataset)  # type: ignore[arg-type]
    if repeat and count is not None and count > size > 0:
        return Subset(dataset, [i % size for i in range(count)])
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
        seen = _training_accuracy(motion)
        if seen is not None and learned(seen, 2, gain):
            fix = (
                f"it learned its training clips ({seen:.2f}) but does not carry the task to new windows: give it "
                "more videos (scenes and natural speeds), not more epochs"
            )
        else:
            fix = "raise --epochs or --train-clips"
        problems.append(
            f"the motion reference did not learn its task (normal vs 3x speed: validation accuracy "
            f"{motion['accuracy']:.2f}, needs {0.5 + gain * 0.5:.2f}); {fix}"
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


def _training_accuracy(reference: Mapping[str, Any]) -> float | None:
    """The accuracy on its training clips at the kept epoch, from the steward's report (None when not recorded)."""
    training = reference.get("training") or {}
    best = training.get("best_epoch")
    for row in training.get("history", []):
        if row.get("epoch") == best:
            return row.get("train_accuracy")
    return None


def reference_behaviour(model: torch.nn.Module, clips: Tensor, labels: Tensor, batch_size: int) -> dict[str, float]:
    """A reference on the moving probe clips: its accuracy there and the share unchanged when they are frozen."""
    scores = behaviour(model, clips, labels, batch_size=batch_size)
    return {"probe_accuracy": float(scores["acc"].mean()), "unchanged_frozen": float(scores["unchanged_frozen"].mean())}


def elapsed(start: float) -> str:
    return f"{time.perf_counter() - start:.0f} s"


def probe_loader(dataset: Dataset, batch_size: int, num_workers: int = 0, shuffle: bool = False) -> DataLoader:
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=num_workers)
