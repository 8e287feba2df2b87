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

from .explain import explain_with_logits

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


# On a CPU the step works through the batch in chunks of about this many voxels (1 MiB of float32),
# reusing two scratch buffers, so that its eight passes over memory hit the cache rather than RAM; a
# CUDA batch is one chunk.
CPU_CHUNK_VOXELS = 1 << 18


def _ends(x: Tensor, dim: int, first: int, last: int) -> Tensor:
    """View of ``x`` holding only indices ``first`` and ``last`` along ``dim`` (there of size 2)."""
    size, stride = list(x.shape), list(x.stride())
    step = stride[dim]
    size[dim], stride[dim] = 2, (last - first) * step
    return x.as_strided(size, stride, x.storage_offset() + first * step)


def _neighbours(x: Tensor, out: Tensor, dim: int, op, flat_x: Tensor, flat_out: Tensor) -> None:
    """``out[i] = op(x[i+1], x[i-1])`` along ``dim`` with replicate padding; ``x`` and ``out`` contiguous.

    The interior is one operation on the flat views (neighbours along ``dim`` lie ``stride(dim)``
    elements apart). It also writes wrong values at the first and last index along ``dim``, whose
    flat neighbours belong to another row; a second operation overwrites both ends at once, through
    strided views, with the replicate-padded values.
    """
    n, step = x.shape[dim], x.stride(dim)
    inner = flat_x.shape[0] - 2 * step
    if inner > 0:
        op(flat_x.narrow(0, 2 * step, inner), flat_x.narrow(0, 0, inner), out=flat_out.narrow(0, step, inner))
    op(_ends(x, dim, 1, n - 1), _ends(x, dim, 0, n - 2), out=_ends(out, dim, 0, n - 1))


def _smooth(x: Tensor, out: Tensor, dim: int, flat_x: Tensor, flat_out: Tensor) -> None:
    """``out = x[i-1] + 2 x[i] + x[i+1]`` along ``dim`` with replicate padding; ``x`` is not modified."""
    if x.shape[dim] == 1:
        torch.mul(x, 4, out=out)  # both neighbours replicate x itself
        return
    _neighbours(x, out, dim, torch.add, flat_x, flat_out)
    out.add_(x, alpha=2)


def _edges_into(clips: Tensor, out: Tensor, work: Tensor, signed: bool) -> Tensor:
    """Temporal edges of contiguous ``clips`` (B, T, H, W) into ``out``; ``work`` is scratch of the same shape.

    On a CPU the step is bound by memory traffic and by per-operation overhead (a few microseconds
    per operation and view, which a small clip does not amortise), so each pass is one flat in-place
    operation plus one for both borders, views are made once, and nothing is allocated.
    """
    flat_out, flat_work = out.view(-1), work.view(-1)
    if clips.shape[1] == 1:
        out.zero_()  # a single frame: nothing changes over time
    else:
        _neighbours(clips, out, 1, torch.sub, clips.view(-1), flat_out)  # R[t+1] - R[t-1], replicate padding
    _smooth(out, work, 2, flat_out, flat_work)  # along H
    _smooth(work, out, 3, flat_work, flat_out)  # along W
    return out.clamp_(min=0) if signed else out.abs_()


def _chunk_size(clips: Tensor) -> int:
    """Clips per chunk: about CPU_CHUNK_VOXELS at a time on a CPU (at least one clip), all at once on CUDA."""
    if clips.device.type != "cpu":
        return clips.shape[0]
    return max(1, CPU_CHUNK_VOXELS // clips[0].numel())


def _clips(relevance: Tensor) -> Tensor:
    """The relevance as contiguous (B, T, H, W) without gradient (the mask carries none)."""
    clips = relevance.detach()
    return (clips if clips.ndim == 4 else clips.unsqueeze(0)).contiguous()


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
        Non-negative contiguous tensor with the shape and dtype of ``relevance``. It carries no
        gradient (it only decides the mask); :func:`selective_relevance`'s ``R * M`` keeps the
        gradient through R.

    Raises:
        TypeError: If ``relevance`` is not a floating-point tensor.
        ValueError: If ``relevance`` has the wrong rank or is empty.
    """
    _check_relevance(relevance)
    clips = _clips(relevance)
    edges = torch.empty_like(clips)
    size = _chunk_size(clips)
    work = torch.empty_like(clips[:size])
    for start in range(0, len(clips), size):
        stop = min(start + size, len(clips))
        _edges_into(clips[start:stop], edges[start:stop], work[: stop - start], signed)
    return edges.view(relevance.shape)


def _thresholds(edges: Tensor, clips: Tensor, n_std: float, floor: float) -> Tensor | float:
    """Per-clip threshold ``max(n_std * std(G_t), floor * max|R|)``: (B, 1, 1, 1) in the edges' dtype, or a float.

    ``std`` is the population standard deviation from the sum and the sum of squares (one vectorised
    pass and one BLAS dot product per clip, several times faster on a CPU than ``Tensor.std``'s
    Welford loop), finished in float64 so that the cancellation in ``E[x^2] - E[x]^2`` stays far
    below the threshold's resolution. On a CPU the few numbers per clip are finished in Python, where
    a dozen tiny tensor operations would cost more than the passes over the map, and a single clip's
    threshold is returned as a Python float; on CUDA they stay on the device (no synchronisation), and
    the batched reductions there may round a clip's threshold differently in the last bit with the
    batch size.
    """
    rows = edges.view(edges.shape[0], -1)  # (B, N)
    if rows.dtype in (torch.float16, torch.bfloat16):
        rows = rows.float()  # a half-precision sum of squares overflows
    values = clips.view(clips.shape[0], -1)
    n = rows.shape[1]
    if edges.device.type == "cpu":
        # Each clip is reduced on its own: a batched reduction rounds differently with the batch size,
        # which would move a clip's threshold by an ulp depending on the other clips. A float32 sum is
        # pairwise (accurate), and a lone dot product is faster than vecdot's batched path.
        moments = [
            (r.sum().item(), torch.dot(r, r).item(), v.amax().item(), v.amin().item())
            for r, v in zip(rows, values, strict=True)
        ]
        limits = _limits_on_host(moments, n, n_std, floor)
        return limits[0] if len(limits) == 1 else torch.tensor(limits, dtype=edges.dtype).view(-1, 1, 1, 1)
    high, low = values.amax(dim=1).to(rows.dtype), values.amin(dim=1).to(rows.dtype)
    moments = torch.stack((rows.sum(dim=1), torch.linalg.vecdot(rows, rows), high, low), dim=1)
    return _limits_on_device(moments, n, n_std, floor).to(edges.dtype).view(-1, 1, 1, 1)


def _limits_on_host(moments, n: int, n_std: float, floor: float) -> list[float]:
    """:func:`_limits_on_device` in Python floats (float64) from ``(sum, sum of squares, max R, min R)`` rows."""
    limits = []
    for total, squares, high, low in moments:
        variance = max(squares / n - (total / n) * (total / n), 0.0)
        limits.append(max(n_std * math.sqrt(variance), floor * max(high, -low)))
    return limits


def _limits_on_device(moments: Tensor, n: int, n_std: float, floor: float) -> Tensor:
    """Thresholds (B,) in float64 from per-clip ``(sum, sum of squares, max R, min R)`` rows (B, 4)."""
    moments = moments.double()
    mean = moments[:, 0] / n
    variance = (moments[:, 1] / n - mean * mean).clamp_(min=0)
    largest = torch.maximum(moments[:, 2], -moments[:, 3])  # max|R|
    return torch.maximum(n_std * variance.sqrt_(), floor * largest)


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
    clips = _clips(relevance)  # (B, T, H, W)
    size = _chunk_size(clips)
    edges = torch.empty_like(clips[:size])  # scratch, reused by every chunk
    work = torch.empty_like(edges)
    # Without a gradient to keep, R * M is written chunk by chunk; with one, this holds M and R * M follows.
    out = torch.empty_like(clips)
    mask = torch.empty_like(clips, dtype=torch.bool) if return_mask else None
    for start in range(0, len(clips), size):
        stop = min(start + size, len(clips))
        chunk = clips[start:stop]
        chunk_edges = _edges_into(chunk, edges[: stop - start], work[: stop - start], signed)
        keep = chunk_edges.gt_(_thresholds(chunk_edges, chunk, n_std, floor))  # M as 1.0 / 0.0 in R's dtype
        if mask is not None:
            mask[start:stop].copy_(keep)
        if relevance.requires_grad:
            out[start:stop].copy_(keep)
        else:
            torch.mul(chunk, keep, out=out[start:stop])
    selective = relevance * out.view_as(relevance) if relevance.requires_grad else out.view_as(relevance)
    return SelectiveRelevance(selective, mask.view_as(relevance)) if return_mask else selective


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
