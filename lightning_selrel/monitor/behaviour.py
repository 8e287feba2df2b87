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
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import torch
from torch import Tensor, nn

from lightning_selrel.metrics.tags import BEHAVIOUR

__all__ = [
    "BEHAVIOUR",
    "RELIANCE_RESOLUTION",
    "behaviour",
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
