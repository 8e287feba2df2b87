"""Selective relevance (Hiley et al., 2020): keep only the relevance that changes over time.

A baseline explanation ``R`` of a clip mixes *where* (static context) and *when* (motion). The
temporal edge map ``G_t = |sobel_t(R)|`` differentiates ``R`` along T and smooths it along H and W;
voxels whose edge response is more than ``n_std`` standard deviations of ``G_t`` (per clip) form the
mask ``M``, and the selective relevance is ``R * M``.

Decisions (METHOD.md, section 2):

* The Sobel kernel is separable, derivative ``[-1, 0, 1]`` along T and smoothing ``[1, 2, 1]`` along
  H and W, written as slicing and additions (no dense conv3d). It equals
  ``scipy.ndimage.sobel(R, axis=0, mode="nearest")``.
* Padding replicates the border, so a map that is constant in time gives ``G_t == 0`` exactly,
  first and last frames included (zero padding would turn them into "motion").
* The threshold is per clip, never per batch, and has an absolute floor ``floor * max|R|`` so a
  static or all-zero map selects nothing.

Everything is pure torch, batched, and runs on any device.
"""

from __future__ import annotations

import math
import time
from typing import NamedTuple

import torch
from torch import Tensor

__all__ = ["TimedSelective", "explain_selective", "SelectiveRelevance", "selective_relevance", "temporal_edges"]


class SelectiveRelevance(NamedTuple):
    """Result of :func:`selective_relevance` with ``return_mask=True``; unpacks as ``(selective, mask)``.

    Attributes:
        selective: ``R * M``, same shape and dtype as the relevance.
        mask: The boolean mask ``M``, same shape as the relevance.
    """

    selective: Tensor
    mask: Tensor


def _check_relevance(relevance: Tensor) -> None:
    if not isinstance(relevance, Tensor):
        raise TypeError(f"relevance must be a torch.Tensor, got {type(relevance).__name__}")
    if relevance.ndim not in (3, 4):
        raise ValueError(
            f"relevance must have shape (T, H, W) or (B, T, H, W), got {tuple(relevance.shape)}; "
            "sum per-channel relevance over C first (METHOD.md, section 2)"
        )
    if not relevance.is_floating_point():
        raise TypeError(f"relevance must be a floating-point tensor, got {relevance.dtype}; call .float() first")
    if relevance.numel() == 0:
        raise ValueError(f"relevance is empty, shape {tuple(relevance.shape)}")


def _smooth_into(x: Tensor, out: Tensor, dim: int) -> Tensor:
    """``out = x[i-1] + 2 x[i] + x[i+1]`` along ``dim`` with replicate padding; ``x`` is not modified.

    In-place adds on views: four passes over memory and no temporary, where concatenating shifted
    copies costs several allocations (the selective step is on the monitor's hot path).
    """
    n = x.shape[dim]
    torch.mul(x, 2, out=out)
    if n == 1:
        return out.add_(x, alpha=2)
    out.narrow(dim, 1, n - 1).add_(x.narrow(dim, 0, n - 1))  # + x[i-1]
    out.narrow(dim, 0, n - 1).add_(x.narrow(dim, 1, n - 1))  # + x[i+1]
    out.narrow(dim, 0, 1).add_(x.narrow(dim, 0, 1))  # replicate: x[-1] = x[0]
    out.narrow(dim, n - 1, 1).add_(x.narrow(dim, n - 1, 1))  # replicate: x[n] = x[n-1]
    return out


def temporal_edges(relevance: Tensor, *, signed: bool = False) -> Tensor:
    """Temporal edge map ``G_t``: a separable 3D Sobel along T with replicate padding.

    Per clip, ``sobel[t] = smooth_HW(R[t+1] - R[t-1])`` with ``R[-1] = R[0]`` and ``R[T] = R[T-1]``,
    where ``smooth_HW`` applies ``[1, 2, 1]`` along H and then along W. This is
    ``scipy.ndimage.sobel(R, axis=0, mode="nearest")``.

    Args:
        relevance: Relevance of shape (T, H, W) or (B, T, H, W), floating point.
        signed: If False (default), return ``|sobel|``: relevance appearing and disappearing are
            both motion. If True, return ``max(sobel, 0)``: only relevance that appears.

    Returns:
        Non-negative tensor with the shape and dtype of ``relevance``. It carries no gradient (it
        only decides the mask); :func:`selective_relevance`'s ``R * M`` keeps the gradient through R.

    Raises:
        TypeError: If ``relevance`` is not a floating-point tensor.
        ValueError: If ``relevance`` has the wrong rank or is empty.
    """
    _check_relevance(relevance)
    r = relevance.detach() if relevance.requires_grad else relevance
    t_dim = r.ndim - 3  # (..., T, H, W)
    n = r.shape[t_dim]
    diff = torch.zeros_like(r)  # R[t+1] - R[t-1], with R[-1] = R[0] and R[T] = R[T-1]
    if n > 2:
        torch.sub(r.narrow(t_dim, 2, n - 2), r.narrow(t_dim, 0, n - 2), out=diff.narrow(t_dim, 1, n - 2))
    if n > 1:
        torch.sub(r.narrow(t_dim, 1, 1), r.narrow(t_dim, 0, 1), out=diff.narrow(t_dim, 0, 1))
        torch.sub(r.narrow(t_dim, n - 1, 1), r.narrow(t_dim, n - 2, 1), out=diff.narrow(t_dim, n - 1, 1))
    smoothed = _smooth_into(diff, torch.empty_like(r), t_dim + 1)  # along H
    edges = _smooth_into(smoothed, diff, t_dim + 2)  # along W, reusing the first buffer; (..., T, H, W)
    return edges.clamp_(min=0) if signed else edges.abs_()


def _population_std(x: Tensor) -> Tensor:
    """Population std of each row of ``x`` (B, N), from the sum and the sum of squares.

    The sums are one vectorised pass and one BLAS dot product per row, several times faster on a
    CPU than ``Tensor.std``'s Welford loop; they are finished in float64, so the cancellation in
    ``E[x^2] - E[x]^2`` stays far below the threshold's resolution.
    """
    n = x.shape[1]
    if x.dtype in (torch.float16, torch.bfloat16):
        x = x.float()  # a half-precision sum of squares overflows
    mean = x.sum(dim=1).double() / n  # (B,); a float32 sum is pairwise (accurate) and needs no float64 copy
    mean_square = torch.linalg.vecdot(x, x).double() / n  # (B,)
    return (mean_square - mean * mean).clamp_(min=0).sqrt()


def selective_relevance(
    relevance: Tensor,
    *,
    n_std: float = 4.0,
    signed: bool = False,
    floor: float = 1e-3,
    return_mask: bool = False,
) -> Tensor | SelectiveRelevance:
    """Selective relevance ``R * M`` with ``M = G_t > max(n_std * std(G_t), floor * max|R|)`` per clip.

    The standard deviation (population, over the clip's T x H x W voxels) and ``max|R|`` are
    computed for each clip on its own: a clip's mask does not depend on the other clips in the batch.

    Args:
        relevance: Relevance of shape (T, H, W) or (B, T, H, W), floating point.
        n_std: Threshold in standard deviations of ``G_t`` (the paper uses 4; tune per dataset, and
            compare models only at the same value).
        signed: Use only increases of relevance over time (see :func:`temporal_edges`).
        floor: Absolute floor of the threshold, as a fraction of the clip's ``max|R|``. It makes a
            map that is constant in time (where ``std(G_t)`` is 0 or rounding noise) select nothing.
        return_mask: Also return the boolean mask.

    Returns:
        The selective map, same shape and dtype as ``relevance``; or, with ``return_mask=True``, a
        :class:`SelectiveRelevance` ``(selective, mask)`` where ``mask`` is a bool tensor of the same shape.

    Raises:
        TypeError: If ``relevance`` is not a floating-point tensor.
        ValueError: If ``relevance`` has the wrong rank or is empty, or ``n_std`` or ``floor`` is
            negative or not finite.
    """
    _check_relevance(relevance)
    for name, value in (("n_std", n_std), ("floor", floor)):
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"{name} must be a finite number >= 0, got {value}")
    clips = relevance if relevance.ndim == 4 else relevance.unsqueeze(0)  # (B, T, H, W)
    clips = clips.detach()  # the mask carries no gradient; R * M below keeps the one through R
    edges = temporal_edges(clips, signed=signed).flatten(1)  # (B, T*H*W)
    sigma = n_std * _population_std(edges)  # (B,)
    minimum = floor * torch.linalg.vector_norm(clips.flatten(1), ord=math.inf, dim=1)  # (B,) max|R|
    threshold = torch.maximum(sigma, minimum.to(sigma.dtype)).to(edges.dtype).unsqueeze(1)  # (B, 1)
    # Compare in place: the edge buffer becomes the mask as 1.0 / 0.0 in R's dtype, so R * M needs no cast.
    keep = edges.gt_(threshold).view_as(clips)  # (B, T, H, W)
    if relevance.ndim == 3:
        keep = keep.squeeze(0)  # (T, H, W)
    selective = relevance * keep
    return SelectiveRelevance(selective, keep.bool()) if return_mask else selective


class TimedSelective(NamedTuple):
    """One explanation, its selective map, and what each cost (milliseconds for the whole batch)."""

    relevance: Tensor  # (B, T, H, W) float32
    selective: Tensor  # (B, T, H, W)
    logits: Tensor  # (B, num_classes)
    explain_ms: float
    selective_ms: float


def explain_selective(
    model: torch.nn.Module,
    clips: Tensor,
    method: str,
    target: Tensor | int | None = None,
    *,
    n_std: float = 4.0,
    signed: bool = False,
) -> TimedSelective:
    """Explain ``clips`` with ``method`` and keep the selective relevance, timing both steps (the paper's
    Table 4); on CUDA the clock waits for the device's queued work. Used by the monitor and ``explain``."""
    from .explain import explain_with_logits  # imported here: the Sobel step stays light (no captum)

    start = time.perf_counter()
    explanation = explain_with_logits(model, clips, method, target)
    middle = _elapsed_ms(start, explanation.relevance.device)
    start = time.perf_counter()
    selective = selective_relevance(explanation.relevance, n_std=n_std, signed=signed)
    end = _elapsed_ms(start, selective.device)
    return TimedSelective(explanation.relevance, selective, explanation.logits, middle, end)


def _elapsed_ms(start: float, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - start) * 1000.0
