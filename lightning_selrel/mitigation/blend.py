"""Static-bias mitigations as batch transforms: pure torch, on clips (B, C, T, H, W) as the model takes them.

Both blend a *still* video (one frame repeated over time) into each training clip and keep its label, so that
static appearance stops predicting the class while the motion stays where it was:

- :func:`background_erasing` (BE; Wang et al., "Removing the Background by Adding the Background: Towards
  Background Robust Self-supervised Video Representation Learning", CVPR 2021): a random frame of the *same* clip
  is added to every frame, ``x' = (1 - w) x + w x_k``, with ``w ~ max_weight * Beta(alpha, alpha)`` (the paper's
  setting: ``w ~ U(0, 0.3)``). The paper adds it as a distractor for a self-supervised consistency loss, which
  makes the representation invariant to it; here, as in the supervised BE baseline of StillMix's experiments, it
  is an augmentation with the label kept and no extra loss (our simplification: without that loss the added
  frame shows the clip's own context, so BE mainly teaches the model to discount a static offset).
- :func:`still_mix` (Li, Liu, Zhang and Li, "Mitigating and Evaluating Static Bias of Action Representations in
  the Background and the Foreground", ICCV 2023): a still frame of *another* training video is blended in,
  ``x' = lam x + (1 - lam) z``, ``lam ~ Beta(alpha, alpha)`` (the paper's ``alpha = 200``: ``lam`` about 0.5), to a
  share ``p`` of the clips (the paper's 0.5), label kept: the static cue of another class is now present in a
  clip of this class, so static appearance is a weaker predictor and motion, untouched, a stronger one. The paper
  draws the frame from a *bank of bias-inducing frames*: frames that a 2D reference network, trained on single
  frames, classifies confidently as their video's class. ``frames`` takes such a bank;
  :class:`~lightning_selrel.mitigation.callback.StaticBiasMitigation` can fill one during training from the
  training clips, scored by the model being trained on each clip's frozen version (our simplification: the 3D
  model on a still clip stands in for the separate 2D reference network). Without a bank the frame comes from
  another clip of the batch (the paper's "random" variant, which its ablation finds weaker than the bank).

Every draw comes from ``generator`` (a CPU :class:`torch.Generator`), so a seeded run mixes the same way. The
output has the input's dtype (integer clips are rounded and clamped to the dtype's range).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["background_erasing", "blend_still", "still_mix"]


def _check(clips: Tensor) -> None:
    if clips.ndim != 5:
        raise ValueError(f"clips must be (B, C, T, H, W), got shape {tuple(clips.shape)}")


def _beta(alpha: float, count: int, generator: torch.Generator | None) -> Tensor:
    """``count`` draws of Beta(alpha, alpha), from ``generator`` (via two Gamma draws)."""
    # torch.distributions' Beta and Gamma take no generator: two Gamma draws of our own keep a seeded run exact.
    gamma = _gamma(torch.full((2, count), float(alpha), dtype=torch.float64), generator)
    return (gamma[0] / (gamma[0] + gamma[1])).to(torch.float32)


def _gamma(shape: Tensor, generator: torch.Generator | None) -> Tensor:
    """Gamma(shape, 1) draws (Marsaglia and Tsang 2000), every random number from ``generator``."""
    boost = shape < 1  # Gamma(a) = Gamma(a + 1) * U^(1 / a) for a < 1
    a = torch.where(boost, shape + 1, shape)
    d = a - 1.0 / 3.0
    c = 1.0 / torch.sqrt(9.0 * d)
    out = torch.empty_like(shape)
    todo = torch.ones_like(shape, dtype=torch.bool)
    while todo.any():
        x = torch.randn(shape.shape, generator=generator, dtype=torch.float64)
        u = torch.rand(shape.shape, generator=generator, dtype=torch.float64)
        v = (1 + c * x) ** 3
        ok = (v > 0) & (torch.log(u.clamp_min(1e-300)) < 0.5 * x**2 + d - d * v + d * torch.log(v.clamp_min(1e-300)))
        take = todo & ok
        out[take] = (d * v)[take]
        todo &= ~ok
    u = torch.rand(shape.shape, generator=generator, dtype=torch.float64)
    return torch.where(boost, out * u.clamp_min(1e-300) ** (1.0 / shape), out)


def blend_still(clips: Tensor, frames: Tensor, keep: Tensor, *, inplace: bool = False) -> Tensor:
    """``keep * clips + (1 - keep) * frames`` repeated over time, in the clips' dtype; clips whose ``keep`` is 1
    are left as they are (and cost nothing).

    Args:
        clips: (B, C, T, H, W).
        frames: (B, C, H, W), one still frame per clip.
        keep: (B,) the weight of each clip (1: unchanged).
        inplace: Write the blended clips into ``clips`` (and return it) instead of a copy.
    """
    _check(clips)
    out = clips if inplace else clips.clone()
    rows = torch.nonzero(keep.cpu() < 1).flatten().to(clips.device)
    if rows.numel() == 0:
        return out
    weight = keep.to(device=clips.device, dtype=torch.float32)[rows].view(-1, 1, 1, 1, 1)
    still = frames.to(clips.device)[rows].float().unsqueeze(2)  # (n, C, 1, H, W), broadcast over time
    mixed = torch.lerp(still, clips[rows].float(), weight)  # still + keep * (clip - still)
    if not clips.dtype.is_floating_point:
        info = torch.iinfo(clips.dtype)
        mixed = mixed.round_().clamp_(info.min, info.max)
    out[rows] = mixed.to(clips.dtype)
    return out


def background_erasing(
    clips: Tensor,
    *,
    max_weight: float = 0.3,
    alpha: float = 1.0,
    p: float = 1.0,
    generator: torch.Generator | None = None,
    inplace: bool = False,
) -> Tensor:
    """Background erasing: a random frame of each clip added to all its frames with weight
    ``w ~ max_weight * Beta(alpha, alpha)``, to a share ``p`` of the clips (the others unchanged; ``inplace``
    writes into ``clips``)."""
    _check(clips)
    b, t = clips.shape[0], clips.shape[2]
    chosen = torch.randint(0, t, (b,), generator=generator)
    frames = clips[torch.arange(b), :, chosen.to(clips.device)]  # (B, C, H, W)
    weight = max_weight * _beta(alpha, b, generator)
    applied = torch.rand(b, generator=generator) < p
    return blend_still(clips, frames, torch.where(applied, 1 - weight, torch.ones(b)), inplace=inplace)


def still_mix(
    clips: Tensor,
    *,
    alpha: float = 200.0,
    p: float = 0.5,
    frames: Tensor | None = None,
    generator: torch.Generator | None = None,
    inplace: bool = False,
) -> Tensor:
    """StillMix: to a share ``p`` of the clips, ``lam x + (1 - lam) z`` with ``lam ~ Beta(alpha, alpha)`` and ``z``
    a still frame of another video: from the bank ``frames`` (N, C, H, W) when given, else a random frame of
    another clip of the batch (a batch of one is returned unchanged); ``inplace`` writes into ``clips``."""
    _check(clips)
    b, t = clips.shape[0], clips.shape[2]
    if frames is not None and len(frames):
        still = frames[torch.randint(0, len(frames), (b,), generator=generator).to(frames.device)]
    elif b > 1:
        other = (torch.arange(b) + torch.randint(1, b, (b,), generator=generator)) % b  # never the clip itself
        chosen = torch.randint(0, t, (b,), generator=generator)
        still = clips[other.to(clips.device), :, chosen.to(clips.device)]  # a copy: safe to write clips after
    else:
        return clips if inplace else clips.clone()
    lam = _beta(alpha, b, generator)
    applied = torch.rand(b, generator=generator) < p
    return blend_still(clips, still, torch.where(applied, lam, torch.ones(b)), inplace=inplace)
