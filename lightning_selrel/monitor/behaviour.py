"""The model's behaviour without motion: a second opinion on spatial bias, from forward passes only.

Work on static versus dynamic bias in video models measures motion reliance through behaviour: the clip with
its motion removed (one frame repeated over T, *frozen*) or scrambled (a fixed permutation of the frames,
*shuffled*; the frames backwards, *reversed*), as in Huang et al. (CVPR 2018, "What makes a video a video"),
whose frozen-frame test on C3D / UCF-101 found a 25% accuracy drop naively but 6% once the model had seen
such clips in training; the contrasted accuracy of Li et al. (ICCV 2023, SCUBA / SCUFO: correct on the clip
and wrong on its frozen version); and Kowal et al. (CVPR 2022). Frozen clips lie outside the training
distribution, so these numbers *overstate* motion reliance: read them as an upper bound and next to spatial
bias, not instead of it.

For each clip, with ``p`` the softmax probability of the class predicted on the clip as it is:

- ``acc``, ``acc_frozen``, ``acc_shuffled``, ``acc_reversed``: 1 where the prediction on that version is the
  true label;
- ``unchanged_frozen``: 1 where the frozen clip gets the same prediction (label-free);
- ``contrasted_acc``: 1 where the clip is right and its frozen version wrong;
- ``reliance``: ``p(clip) - p(frozen)`` for that class: how much of its confidence the model loses without
  motion (negative when freezing makes it surer).

The frozen clip repeats the middle frame ``T // 2``; the permutation comes from a seed and is never the
identity. Pure torch: the monitor and ``calibrate`` both use it.

On cue-conflict clips (:mod:`lightning_selrel.data.conflict`: motion one class, context another),
:func:`conflict_scores` says per clip which cue the prediction follows, and :func:`conflict_summary` turns them
into the shares of :data:`~lightning_selrel.metrics.tags.CONFLICT`: a direct test of the question frozen clips
answer out of distribution.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import torch
from torch import Tensor, nn

from lightning_selrel.metrics.tags import BEHAVIOUR, CONFLICT

__all__ = [
    "BEHAVIOUR",
    "RELIANCE_RESOLUTION",
    "behaviour",
    "conflict_scores",
    "conflict_summary",
    "freeze",
    "reliance_for_ranking",
    "reverse",
    "shuffle",
    "time_permutation",
]

#: Reliance is a difference of probabilities; below this it is rounding, not behaviour. Ranked against spatial
#: bias, values are rounded to it, so clips whose prediction does not move are ties rather than noise.
RELIANCE_RESOLUTION = 1e-3


def reliance_for_ranking(reliance: Tensor) -> Tensor:
    """Reliance rounded to :data:`RELIANCE_RESOLUTION` (NaN stays NaN)."""
    return torch.round(reliance / RELIANCE_RESOLUTION) * RELIANCE_RESOLUTION


def freeze(clips: Tensor, frame: int | None = None) -> Tensor:
    """Clips (B, C, T, H, W) with one frame (default the middle one, T // 2) repeated over T."""
    t = clips.shape[2]
    index = t // 2 if frame is None else frame
    return clips[:, :, index : index + 1].expand(-1, -1, t, -1, -1).contiguous()


def time_permutation(length: int, seed: int = 0) -> Tensor:
    """A fixed permutation of ``length`` frames drawn from ``seed``; never the identity when length >= 2."""
    rng = np.random.default_rng(seed)
    order = np.arange(length)
    while length >= 2 and (order == np.arange(length)).all():
        order = rng.permutation(length)
    return torch.from_numpy(order)


def shuffle(clips: Tensor, permutation: Tensor) -> Tensor:
    """Clips (B, C, T, H, W) with their frames in the order ``permutation`` (T,)."""
    return clips.index_select(2, permutation.to(clips.device))


def reverse(clips: Tensor) -> Tensor:
    """Clips (B, C, T, H, W) played backwards."""
    return clips.flip(2)


@contextlib.contextmanager
def _evaluating(model: nn.Module) -> Iterator[None]:
    """Eval mode and no gradient; every submodule's mode is restored afterwards."""
    modes = [(m, m.training) for m in model.modules()]
    try:
        model.eval()
        with torch.no_grad():
            yield
    finally:
        for module, training in modes:
            module.training = training


def behaviour(
    model: nn.Module, clips: Tensor, labels: Tensor, *, batch_size: int = 8, seed: int = 0
) -> dict[str, Tensor]:
    """The per-clip behaviour scores of :data:`BEHAVIOUR` for clips as the model's forward takes them.

    Args:
        model: A classifier: (B, C, T, H, W) clips in, (B, num_classes) logits out.
        clips: (N, C, T, H, W) on the model's device.
        labels: (N,) true classes.
        batch_size: Clips per forward pass.
        seed: Seed of the time permutation.

    Returns:
        Float64 tensors (N,) on the CPU, by name.
    """
    if clips.shape[0] == 0:  # an empty share of the probe clips (DDP)
        return {name: torch.zeros(0, dtype=torch.float64) for name in BEHAVIOUR}
    permutation = time_permutation(clips.shape[2], seed)
    variants = {
        "clip": lambda x: x,
        "frozen": freeze,
        "shuffled": lambda x: shuffle(x, permutation),
        "reversed": reverse,
    }
    logits: dict[str, list[Tensor]] = {name: [] for name in variants}
    with _evaluating(model):
        for start in range(0, clips.shape[0], batch_size):
            chunk = clips[start : start + batch_size]
            for name, make in variants.items():
                logits[name].append(model(make(chunk)).float().cpu())
    out = {name: torch.cat(values) for name, values in logits.items()}  # (N, num_classes) each
    labels = labels.cpu()
    predicted = {name: values.argmax(dim=1) for name, values in out.items()}
    correct = predicted["clip"] == labels
    chosen = predicted["clip"][:, None]  # the class predicted on the clip as it is
    probability = {name: out[name].softmax(dim=1).gather(1, chosen)[:, 0] for name in ("clip", "frozen")}
    scores = {
        "acc": correct,
        "acc_frozen": predicted["frozen"] == labels,
        "acc_shuffled": predicted["shuffled"] == labels,
        "acc_reversed": predicted["reversed"] == labels,
        "unchanged_frozen": predicted["frozen"] == predicted["clip"],
        "contrasted_acc": correct & (predicted["frozen"] != labels),
        "reliance": probability["clip"] - probability["frozen"],
    }
    return {name: scores[name].to(torch.float64) for name in BEHAVIOUR}


def conflict_scores(
    model: nn.Module, clips: Tensor, motion_labels: Tensor, context_labels: Tensor, *, batch_size: int = 8
) -> dict[str, Tensor]:
    """Per cue-conflict clip: ``motion`` 1 where the prediction is the motion's class, ``context`` 1 where it is
    the context's, and ``motion_prob`` = p(motion class) / (p(motion class) + p(context class)) (float64 (N,),
    on the CPU).

    Args:
        model: A classifier: (B, C, T, H, W) clips in, (B, num_classes) logits out.
        clips: (N, C, T, H, W) on the model's device.
        motion_labels, context_labels: (N,) the class each cue shows (different on every clip).
        batch_size: Clips per forward pass.
    """
    names = ("motion", "context", "motion_prob")
    if clips.shape[0] == 0:
        return {name: torch.zeros(0, dtype=torch.float64) for name in names}
    with _evaluating(model):
        logits = torch.cat(
            [model(clips[i : i + batch_size]).float().cpu() for i in range(0, clips.shape[0], batch_size)]
        )
    motion, context = motion_labels.cpu().long(), context_labels.cpu().long()
    predicted = logits.argmax(dim=1)
    # log-probabilities: the ratio of two tiny probabilities stays finite
    log_p = logits.double().log_softmax(dim=1)
    lm, lc = log_p.gather(1, motion[:, None])[:, 0], log_p.gather(1, context[:, None])[:, 0]
    return {
        "motion": (predicted == motion).double(),
        "context": (predicted == context).double(),
        "motion_prob": torch.sigmoid(lm - lc),
    }


def conflict_summary(scores: dict[str, Tensor]) -> dict[str, float]:
    """The shares of :data:`~lightning_selrel.metrics.tags.CONFLICT` from per-clip :func:`conflict_scores` (of every
    rank): ``conflict_motion_share`` is NaN where no prediction follows either cue; ``conflict_motion_prob`` comes
    with its population std as ``conflict_motion_prob_std``."""
    n = scores["motion"].numel()
    if n == 0:
        return {}
    motion, context = float(scores["motion"].sum()), float(scores["context"].sum())
    either = motion + context
    prob = scores["motion_prob"].double()
    share, neither, mean_prob = CONFLICT
    return {
        share: motion / either if either else float("nan"),
        neither: (n - either) / n,
        mean_prob: float(prob.mean()),
        mean_prob + "_std": float(prob.std(unbiased=False)),
    }
