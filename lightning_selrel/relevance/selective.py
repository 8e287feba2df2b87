"""Selective relevance (Hiley et al., 2020): keep only the relevance that changes over time.

A baseline explanation ``R`` of a clip mixes *where* (static context) and *when* (motion). The
temporal edge map ``G_t = |sobel_t(R)|`` differentiates ``R`` along T and smooths it along H and W;
voxels whose edge response is more than ``n_std`` standard deviations of ``G_t`` (per clip) form the
mask ``M``, and the selective relevance is ``R * M``.

Decisions (docs/method.md, section 2):

* The Sobel kernel is separable, derivative ``[-1, 0, 1]`` along T and smoothing ``[1, 2, 1]`` along
  H and W, written as slicing and additions (no dense conv3d). It equals
  ``scipy.ndimage.sobel(R, axis=0, mode="nearest")``.
* Padding replicates the border, so a map that is constant in time gives ``G_t == 0`` exactly,
  first and last frames included (zero padding would turn them into "motion").
* The threshold is per clip, never per batch. ``threshold="std"`` (the paper's rule, the default) is
  ``n_std`` standard deviations of ``G_t``; ``threshold="mad"`` is the median plus ``n_std`` robust
  standard deviations (1.4826 x the median absolute deviation, at least 1.2533 x the mean absolute
  deviation), which stays meaningful when temporal change covers much of the clip (camera motion, large
  actors), where the paper's rule selects nothing. The mean-deviation floor keeps ``n_std`` meaningful when
  most of the clip is static: there the median and the MAD are 0 and the threshold would be 0 at any ``n_std``.
* A floor ties the mask to what rounding can produce: a voxel is kept only where ``G_t`` exceeds
  ``floor`` times the same stencil applied to ``|R|`` (``smooth_HW(|R[t+1]| + |R[t-1]|)``, the bound of
  the Sobel's rounding error there). A map that is constant in time up to rounding selects nothing,
  and a hot static voxel elsewhere never lifts the threshold of the moving ones.

Everything is torch, batched, and runs on any device; on a CPU the ``"mad"`` rule's medians are
``torch.kthvalue`` per clip. The module imports nothing else of the package: explaining
and then selecting, timed, is :mod:`lightning_selrel.relevance.measure`.
"""

from __future__ import annotations

import math
from typing import Literal, NamedTuple, get_args

import torch
from torch import Tensor

__all__ = ["THRESHOLDS", "SelectiveRelevance", "Threshold", "selective_relevance", "temporal_edges"]

#: Threshold rules of :func:`selective_relevance`: the paper's ``n_std * std(G_t)``, or the robust
#: ``median(G_t) + n_std * 1.4826 * MAD(G_t)``.
Threshold = Literal["std", "mad"]
THRESHOLDS: tuple[str, ...] = get_args(Threshold)
# 1.4826 * MAD estimates the standard deviation of normal data (1 / Phi^-1(3/4)).
_MAD_TO_STD = 1.482602218505602


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
            "sum per-channel relevance over C first (docs/method.md, section 2)"
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


def _thresholds(edges: Tensor, n_std: float, rule: str) -> Tensor | float:
    """Per-clip threshold of the rule: (B, 1, 1, 1) in the edges' dtype, or a float for a single CPU clip."""
    rows = edges.view(edges.shape[0], -1)  # (B, N)
    if rows.dtype in (torch.float16, torch.bfloat16):
        rows = rows.float()  # a half-precision sum of squares overflows
    if rule == "mad":
        return _mad_thresholds(rows, n_std, edges.dtype)
    n = rows.shape[1]
    if edges.device.type == "cpu":
        # Each clip is reduced on its own: a batched reduction rounds differently with the batch size,
        # which would move a clip's threshold by an ulp depending on the other clips. A float32 sum is
        # pairwise (accurate), and a lone dot product is faster than vecdot's batched path.
        moments = [(r.sum().item(), torch.dot(r, r).item()) for r in rows]
        limits = _limits_on_host(moments, n, n_std)
        return limits[0] if len(limits) == 1 else torch.tensor(limits, dtype=edges.dtype).view(-1, 1, 1, 1)
    moments = torch.stack((rows.sum(dim=1), torch.linalg.vecdot(rows, rows)), dim=1)
    return _limits_on_device(moments, n, n_std).to(edges.dtype).view(-1, 1, 1, 1)


def _limits_on_host(moments, n: int, n_std: float) -> list[float]:
    """``n_std * std`` per clip in Python floats (float64) from ``(sum, sum of squares)`` rows.

    ``std`` is the population standard deviation from the sum and the sum of squares (one vectorised
    pass and one BLAS dot product per clip, several times faster on a CPU than ``Tensor.std``'s
    Welford loop), finished in float64 so that the cancellation in ``E[x^2] - E[x]^2`` stays far
    below the threshold's resolution. On a CPU the few numbers per clip are finished in Python, where
    a dozen tiny tensor operations would cost more than the passes over the map.
    """
    limits = []
    for total, squares in moments:
        variance = max(squares / n - (total / n) * (total / n), 0.0)
        limits.append(n_std * math.sqrt(variance))
    return limits


def _limits_on_device(moments: Tensor, n: int, n_std: float) -> Tensor:
    """:func:`_limits_on_host` as float64 tensors (B,) from (B, 2) rows, with no synchronisation (CUDA).

    The batched reductions there may round a clip's threshold differently in the last bit with the
    batch size.
    """
    moments = moments.double()
    mean = moments[:, 0] / n
    variance = (moments[:, 1] / n - mean * mean).clamp_(min=0)
    return n_std * variance.sqrt_()


# 1.2533 * the mean absolute deviation estimates the standard deviation of normal data (sqrt(pi / 2)).
_MEAN_AD_TO_STD = 1.2533141373155003


def _mad_thresholds(rows: Tensor, n_std: float, dtype: torch.dtype) -> Tensor | float:
    """``median + n_std * max(1.4826 * MAD, 1.2533 * MeanAD)`` per clip, with the lower median of an even count.

    Medians are order statistics and the mean deviation is reduced clip by clip, so a clip's threshold does not
    depend on the batch. On a CPU each median is ``torch.kthvalue`` on the clip's row, finished in Python floats
    (NumPy's introselect took 26 ms on the edge map of a GradCAM clip, whose many equal values it handles badly;
    kthvalue 1.5 ms); elsewhere ``torch.median``, which picks the same element.
    """
    if rows.device.type == "cpu":
        k = (rows.shape[1] - 1) // 2 + 1  # kthvalue counts from 1: the lower median
        deviation = torch.empty_like(rows[0])
        limits = []
        for row in rows:
            centre = row.kthvalue(k).values.item()
            torch.sub(row, centre, out=deviation).abs_()
            mean_deviation = torch.sum(deviation, dtype=torch.float64).item() / deviation.numel()
            spread = max(_MAD_TO_STD * deviation.kthvalue(k).values.item(), _MEAN_AD_TO_STD * mean_deviation)
            limits.append(centre + n_std * spread)
        return limits[0] if len(limits) == 1 else torch.tensor(limits, dtype=dtype).view(-1, 1, 1, 1)
    centre = rows.median(dim=1, keepdim=True).values  # (B, 1)
    deviation = (rows - centre).abs_()
    mad = deviation.median(dim=1, keepdim=True).values.double()
    spread = torch.maximum(_MAD_TO_STD * mad, _MEAN_AD_TO_STD * deviation.double().mean(dim=1, keepdim=True))
    limits = centre.double() + n_std * spread
    return limits.to(dtype).view(-1, 1, 1, 1)


def _magnitude_into(clips: Tensor, out: Tensor, work: Tensor) -> Tensor:
    """``smooth_HW(|R[t+1]| + |R[t-1]|)`` with replicate padding into ``out``: the temporal Sobel's stencil
    applied to ``|R|``, which bounds the rounding error of ``G_t`` at each voxel (T >= 2)."""
    flat_out, flat_work = out.view(-1), work.view(-1)
    torch.abs(clips, out=work)
    _neighbours(work, out, 1, torch.add, flat_work, flat_out)
    _smooth(out, work, 2, flat_out, flat_work)
    _smooth(work, out, 3, flat_work, flat_out)
    return out


def selective_relevance(
    relevance: Tensor,
    *,
    n_std: float = 4.0,
    threshold: Threshold = "std",
    signed: bool = False,
    floor: float = 1e-3,
    return_mask: bool = False,
) -> Tensor | SelectiveRelevance:
    """Selective relevance ``R * M``: ``M`` keeps the voxels whose temporal edge ``G_t`` exceeds the clip's
    threshold and the rounding floor.

    ``M = (G_t > tau) & (G_t > floor * smooth_HW(|R[t+1]| + |R[t-1]|))`` with, per clip,

    * ``threshold="std"`` (the paper's rule): ``tau = n_std * std(G_t)``, the population standard
      deviation over the clip's T x H x W voxels. For an edge map that takes one value on a share ``p``
      of the voxels and 0 elsewhere, it selects nothing once ``p (1 - p) > 1 / n_std**2`` (p > 6.7% at
      n = 4): camera motion and large actors empty the selective map.
    * ``threshold="mad"``: ``tau = median(G_t) + n_std * s`` with ``s = max(1.4826 * MAD(G_t), 1.2533 *
      MeanAD(G_t))``, the robust z-score of Leys et al. (2013) whose spread is floored by the mean absolute
      deviation about the median (Iglewicz and Hoaglin's fallback when the MAD is 0; both factors make ``s``
      the standard deviation of normal data). Where change is widespread (camera motion) the MAD is the
      spread of the bulk and the outliers above it are kept. Where most of the clip is static the median and
      MAD are 0, and ``s`` is the mean deviation, so ``n_std`` still matters: an edge map of one value on a
      share ``p`` of the voxels is selected while ``p < 1 / (1.2533 n_std)`` (20% at n = 4, 3x the paper's
      rule), and small noise everywhere barely moves it.

    The threshold of a clip depends on that clip alone, never on the others in the batch.

    Args:
        relevance: Relevance of shape (T, H, W) or (B, T, H, W), floating point.
        n_std: Threshold in (robust) standard deviations of ``G_t`` (the paper uses 4; tune per dataset,
            and compare models only at the same value and rule).
        threshold: ``"std"`` or ``"mad"`` (see above).
        signed: Use only increases of relevance over time (see :func:`temporal_edges`).
        floor: A voxel's edge must exceed this fraction of the local relevance magnitude, the Sobel
            stencil applied to ``|R|`` (what bounds the edge's rounding error there). It makes a map that
            is constant in time up to rounding select nothing; 1e-3 is far above float32 rounding (1e-7).
            For relevance computed in half precision pass a few times its epsilon (e.g. 3e-2 for bfloat16).
        return_mask: Also return the boolean mask.

    Returns:
        The selective map, same shape and dtype as ``relevance``; or, with ``return_mask=True``, a
        :class:`SelectiveRelevance` ``(selective, mask)`` where ``mask`` is a bool tensor of the same shape.

    Raises:
        TypeError: If ``relevance`` is not a floating-point tensor.
        ValueError: If ``relevance`` has the wrong rank or is empty, ``n_std`` or ``floor`` is negative or
            not finite, or ``threshold`` is not a rule name.
    """
    _check_relevance(relevance)
    for name, value in (("n_std", n_std), ("floor", floor)):
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
            raise ValueError(f"{name} must be a finite number >= 0, got {value}")
    if threshold not in THRESHOLDS:
        raise ValueError(f"threshold must be one of {list(THRESHOLDS)}, got {threshold!r}")
    clips = _clips(relevance)  # (B, T, H, W)
    size = _chunk_size(clips)
    edges = torch.empty_like(clips[:size])  # scratch, reused by every chunk
    work = torch.empty_like(edges)
    magnitude = torch.empty_like(edges) if floor > 0 and clips.shape[1] > 1 else None
    # Without a gradient to keep, R * M is written chunk by chunk; with one, this holds M and R * M follows.
    out = torch.empty_like(clips)
    mask = torch.empty_like(clips, dtype=torch.bool) if return_mask else None
    for start in range(0, len(clips), size):
        stop = min(start + size, len(clips))
        chunk = clips[start:stop]
        chunk_edges = _edges_into(chunk, edges[: stop - start], work[: stop - start], signed)
        tau = _thresholds(chunk_edges, n_std, threshold)
        if magnitude is None:
            limit = tau
        else:  # per voxel: max(tau, floor * local magnitude)
            limit = _magnitude_into(chunk, magnitude[: stop - start], work[: stop - start]).mul_(floor)
            if isinstance(tau, float):
                limit.clamp_(min=tau)
            else:
                torch.maximum(limit, tau, out=limit)
        keep = chunk_edges.gt_(limit)  # M as 1.0 / 0.0 in R's dtype
        if mask is not None:
            mask[start:stop].copy_(keep)
        if relevance.requires_grad:
            out[start:stop].copy_(keep)
        else:
            torch.mul(chunk, keep, out=out[start:stop])
    selective = relevance * out.view_as(relevance) if relevance.requires_grad else out.view_as(relevance)
    return SelectiveRelevance(selective, mask.view_as(relevance)) if return_mask else selective
