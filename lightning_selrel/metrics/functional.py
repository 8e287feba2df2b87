"""Metrics of relevance against motion (docs/method.md, section 3): the functional core (:mod:`.modules` holds the
torchmetrics classes).

For one clip, with ``I_R = R > 0`` and ``I_S = R_sel > 0`` (the paper's definitions):

* motion precision ``P = sum(I_R & I_O) / sum(I_R)``, ``I_O`` the moving voxels;
* selectivity: area ``sum(I_S) / sum(I_R)`` and mass ``sum(R_sel+) / sum(R+)``;
* spatial bias ``1 - mass``: the share of positive relevance that is constant in time;
* agreement of two explanations: IoU of their ``I_R``.

``R > 0`` is nearly every voxel of a DTD map (z+ and zB are non-negative), which fixes the area-based
numbers by the clip or by the other method rather than by the explanation: DTD's precision is then the
clip's share of moving voxels, and its agreement with another method that method's positive share.
Two additions are informative for every method:

* motion *mass* precision ``sum(R+ I_O) / sum(R+)``: the share of the positive relevance on moving
  voxels (the "relevance mass accuracy" of Arras et al., 2022), for the baseline and the selective map;
* a relevant area that is not "every positive voxel" (``relevant="top"``: the ``fraction`` of the
  clip's voxels with the highest relevance; ``"mass"``: the fewest voxels holding ``fraction`` of the
  positive mass), for agreement and for the selectivity area, where ``I_S = I_R & (R_sel > 0)``.

The functions take batches (..., T, H, W) and return one value per clip, shape (...), with **NaN
where the clip has no value**: no positive relevance (for agreement, in either map). Never a
division by zero. The ``Metric`` classes keep, per value, the count, sum and sum of squares of the
valid clips plus the number of skipped clips, all reduced by ``"sum"`` so DDP syncing is exact, and
report the mean and the **population** standard deviation (ddof = 0, ``np.std``'s default) over clips.
"""

from __future__ import annotations

import math
from typing import Literal, NamedTuple, get_args

import torch
from torch import Tensor

from lightning_selrel.metrics.tags import NONEMPTY, PRECISION, SELECTIVITY

__all__ = [
    "RELEVANT_AREAS",
    "RelevantArea",
    "SelectivityScores",
    "clip_scores",
    "mask_iou",
    "motion_mass_precision",
    "motion_precision",
    "rank_correlation",
    "relevance_agreement",
    "relevant_area",
    "selectivity",
    "spatial_bias",
]

#: Definitions of the relevant area I_R: the paper's ``R > 0``, the ``top`` fraction of voxels by
#: relevance, or the fewest voxels holding a fraction of the positive ``mass``.
RelevantArea = Literal["positive", "top", "mass"]
RELEVANT_AREAS: tuple[str, ...] = get_args(RelevantArea)


class SelectivityScores(NamedTuple):
    """Per-clip selectivity, each of shape (...) (the batch shape); NaN where a clip has no value."""

    area: Tensor
    mass: Tensor


def _check_pair(first: Tensor, second: Tensor, names: tuple[str, str]) -> None:
    for name, value in zip(names, (first, second), strict=True):
        if not isinstance(value, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
        if value.ndim < 3:
            raise ValueError(f"{name} must have shape (..., T, H, W), got {tuple(value.shape)}")
    if first.shape != second.shape:
        raise ValueError(
            f"{names[0]} and {names[1]} must have the same shape, got {tuple(first.shape)} and {tuple(second.shape)}"
        )


def _per_clip_sum(x: Tensor) -> Tensor:
    """Sum over the last three axes (T, H, W), in float64: (..., T, H, W) -> (...)."""
    return x.sum(dim=(-3, -2, -1), dtype=torch.float64)


def _ratio(numerator: Tensor, denominator: Tensor) -> Tensor:
    """``numerator / denominator`` per clip, NaN where the denominator is 0 (no division by zero)."""
    valid = denominator > 0
    return torch.where(valid, numerator / denominator.where(valid, 1.0), torch.nan)


def relevant_area(relevance: Tensor, relevant: RelevantArea = "positive", fraction: float = 0.1) -> Tensor:
    """The relevant voxels I_R of each clip, a bool mask shaped like ``relevance`` (..., T, H, W).

    Args:
        relevance: Relevance (..., T, H, W).
        relevant: ``"positive"``: ``R > 0`` (the paper). ``"top"``: the ``ceil(fraction * T * H * W)``
            voxels of the clip with the highest relevance (every voxel tied with the last one included),
            among the positive ones. ``"mass"``: the voxels of highest relevance that together hold at
            least ``fraction`` of the clip's positive relevance (the fewest such voxels, ties included).
        fraction: The share of the clip (``"top"``) or of its positive mass (``"mass"``), in (0, 1].

    Returns:
        Bool tensor of the shape of ``relevance``; empty (all False) for a clip without positive relevance.
    """
    if relevant not in RELEVANT_AREAS:
        raise ValueError(f"relevant must be one of {list(RELEVANT_AREAS)}, got {relevant!r}")
    positive = relevance > 0
    if relevant == "positive":
        return positive
    if not (isinstance(fraction, (int, float)) and 0 < fraction <= 1):
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    rows = relevance.reshape(-1, math.prod(relevance.shape[-3:]))  # (B, N)
    if relevant == "top":
        k = min(rows.shape[1], max(1, math.ceil(fraction * rows.shape[1])))
        cut = rows.topk(k, dim=1).values[:, -1:]  # (B, 1): the k-th largest value
    else:
        ordered = rows.clamp(min=0).sort(dim=1, descending=True).values  # (B, N)
        total = ordered.sum(dim=1, keepdim=True, dtype=torch.float64)  # (B, 1)
        held = ordered.cumsum(dim=1, dtype=torch.float64)  # (B, N)
        count = (held < fraction * total).sum(dim=1, keepdim=True).clamp(max=rows.shape[1] - 1)  # (B, 1)
        cut = ordered.gather(1, count)  # (B, 1): the last value the set needs
    return positive & (rows >= cut).view_as(relevance)


def motion_precision(relevance: Tensor, motion: Tensor) -> Tensor:
    """Share of the relevant voxels that move: ``sum(R > 0 & I_O) / sum(R > 0)`` per clip.

    Args:
        relevance: Relevance (..., T, H, W), baseline or selective.
        motion: Moving voxels I_O, bool, same shape (e.g. :func:`lightning_selrel.metrics.flow.motion_mask`).

    Returns:
        Float64 tensor of shape (...) with values in [0, 1]; NaN for clips without positive relevance.
    """
    _check_pair(relevance, motion, ("relevance", "motion"))
    if motion.dtype != torch.bool:
        raise TypeError(f"motion must be a bool mask, got {motion.dtype}; threshold it first (e.g. `flow > 0.5`)")
    relevant = relevance > 0
    return _ratio(_per_clip_sum(relevant & motion), _per_clip_sum(relevant))


def motion_mass_precision(relevance: Tensor, motion: Tensor) -> Tensor:
    """Share of the positive relevance on moving voxels: ``sum(max(R, 0) * I_O) / sum(max(R, 0))`` per clip.

    Unlike :func:`motion_precision` it weighs each voxel by its relevance, so it does not reduce to the
    clip's share of moving voxels when every voxel is relevant (a DTD map).

    Args:
        relevance: Relevance (..., T, H, W), baseline or selective.
        motion: Moving voxels I_O, bool, same shape.

    Returns:
        Float64 tensor of shape (...) with values in [0, 1]; NaN for clips without positive relevance.
    """
    _check_pair(relevance, motion, ("relevance", "motion"))
    if motion.dtype != torch.bool:
        raise TypeError(f"motion must be a bool mask, got {motion.dtype}; threshold it first (e.g. `flow > 0.5`)")
    positive = relevance.clamp(min=0)
    return _ratio(_per_clip_sum(positive * motion), _per_clip_sum(positive))


def selectivity(
    relevance: Tensor, selective: Tensor, *, relevant: RelevantArea = "positive", fraction: float = 0.1
) -> SelectivityScores:
    """How much of the relevance the selective step keeps, by area and by mass, per clip.

    Args:
        relevance: Baseline relevance R (..., T, H, W).
        selective: Selective relevance R_sel, same shape
            (:func:`lightning_selrel.relevance.selective.selective_relevance`).
        relevant: Definition of the relevant area I_R for ``area`` (see :func:`relevant_area`); the
            selective relevant area is ``I_S = I_R & (R_sel > 0)``, which for ``"positive"`` is ``R_sel > 0``.
        fraction: Its fraction, for ``"top"`` and ``"mass"``.

    Returns:
        :class:`SelectivityScores` ``(area, mass)``: ``area = sum(I_S) / sum(I_R)`` and
        ``mass = sum(max(R_sel, 0)) / sum(max(R, 0))``, float64 of shape (...); NaN for clips without
        positive relevance.
    """
    _check_pair(relevance, selective, ("relevance", "selective"))
    if relevant == "positive":
        area = _ratio(_per_clip_sum(selective > 0), _per_clip_sum(relevance > 0))
    else:
        region = relevant_area(relevance, relevant, fraction)
        area = _ratio(_per_clip_sum(region & (selective > 0)), _per_clip_sum(region))
    mass = _ratio(_per_clip_sum(selective.clamp(min=0)), _per_clip_sum(relevance.clamp(min=0)))
    return SelectivityScores(area, mass)


def spatial_bias(relevance: Tensor, selective: Tensor) -> Tensor:
    """Share of the positive relevance that is constant in time: ``1 - mass`` (see :func:`selectivity`).

    Returns:
        Float64 tensor of shape (...) with values in [0, 1]; NaN for clips without positive relevance.
    """
    return 1.0 - selectivity(relevance, selective).mass


def relevance_agreement(
    first: Tensor, second: Tensor, *, relevant: RelevantArea = "positive", fraction: float = 0.1
) -> Tensor:
    """IoU of the relevant areas of two explanations of the same clips: ``|A & B| / |A | B|``.

    A clip where either map has no positive relevance has no value (NaN): an explanation without
    relevant voxels failed, and scoring it as 0 agreement would mix failures into the measure.

    Args:
        first: Relevance (..., T, H, W) of one method.
        second: Relevance of another method, same shape.
        relevant: Definition of the relevant areas A and B (see :func:`relevant_area`; the paper's
            ``"positive"``, A = first > 0, by default).
        fraction: Its fraction, for ``"top"`` and ``"mass"``.

    Returns:
        Float64 tensor of shape (...) with values in [0, 1]; NaN where either map has no positive relevance.
    """
    _check_pair(first, second, ("first", "second"))
    a, b = relevant_area(first, relevant, fraction), relevant_area(second, relevant, fraction)
    both_relevant = (_per_clip_sum(a) > 0) & (_per_clip_sum(b) > 0)
    iou = _ratio(_per_clip_sum(a & b), _per_clip_sum(a | b))
    return iou.where(both_relevant, torch.nan)


def clip_scores(
    relevance: Tensor,
    selective: Tensor,
    *,
    flow: Tensor | None = None,
    exact: Tensor | None = None,
    core_mass: float = 0.5,
) -> dict[str, Tensor]:
    """Every per-clip score the monitor and the ``explain`` command report for one method, by tag name.

    Args:
        relevance: Baseline relevance (B, T, H, W).
        selective: Its selective map, same shape.
        flow: Moving voxels from optical flow (B, T, H, W) bool, or None.
        exact: Exact moving voxels (B, T, H, W) bool (the built-in data), or None.
        core_mass: Share of the positive relevance that the relevance *core* holds: the fewest voxels of
            highest relevance holding it (:func:`relevant_area` with ``"mass"``).

    Returns:
        Float64 tensors (B,) named as :mod:`lightning_selrel.metrics.tags` names them, NaN where a clip has no value:

        - ``tags.PRECISION["flow"]`` (with ``flow``): ``precision``, ``selective_precision`` (the paper's, by
          area) and ``precision_mass``, ``selective_precision_mass`` (:func:`motion_mass_precision`);
        - ``tags.PRECISION["exact"]`` (with ``exact``): the same as ``mask_precision``, ...;
        - ``tags.SELECTIVITY``: ``selectivity_area`` (the paper's, by the area ``R > 0``), ``selectivity_core``
          (the share of the core the selective map keeps), ``selectivity_mass``, and ``spatial_bias`` = 1 - mass;
        - ``tags.NONEMPTY``: ``spatial_bias`` where the selective map keeps some positive relevance, else NaN.
    """
    scores: dict[str, Tensor] = {}
    for source, motion in (("flow", flow), ("exact", exact)):
        if motion is None:
            continue
        area, selective_area, mass, selective_mass = PRECISION[source]
        scores[area] = motion_precision(relevance, motion)
        scores[selective_area] = motion_precision(selective, motion)
        scores[mass] = motion_mass_precision(relevance, motion)
        scores[selective_mass] = motion_mass_precision(selective, motion)
    area, core, mass, bias = SELECTIVITY
    kept_area, kept_mass = selectivity(relevance, selective)
    scores[area] = kept_area
    scores[core] = selectivity(relevance, selective, relevant="mass", fraction=core_mass).area
    scores[mass] = kept_mass
    scores[bias] = 1.0 - kept_mass
    empty = ~(selective > 0).flatten(1).any(dim=1)  # (B,): the selective map keeps no positive relevance
    scores[NONEMPTY] = scores[bias].masked_fill(empty.to(scores[bias].device), math.nan)
    return scores


def mask_iou(first: Tensor, second: Tensor) -> Tensor:
    """Per clip, the IoU of two boolean masks (B, T, H, W): voxels both mark over voxels either marks (float64;
    NaN where neither marks any)."""
    first, second = first.flatten(1).bool(), second.flatten(1).bool()
    both = (first & second).sum(dim=1).to(torch.float64)
    either = (first | second).sum(dim=1).to(torch.float64)
    return both / either.masked_fill(either == 0, math.nan)


def _ranks(x: Tensor) -> Tensor:
    """1-based ranks of a 1-D tensor, ties getting the mean of their ranks (float64)."""
    order = x.argsort(stable=True)
    _, inverse, counts = torch.unique_consecutive(x[order], return_inverse=True, return_counts=True)
    ends = counts.cumsum(0).to(torch.float64)  # the last rank of each group of ties
    mean_rank = ends - (counts.to(torch.float64) - 1) / 2
    ranks = torch.empty(x.shape, dtype=torch.float64, device=x.device)
    ranks[order] = mean_rank[inverse]
    return ranks


def rank_correlation(x: Tensor, y: Tensor) -> float:
    """Spearman's rank correlation of two per-clip values (ties get average ranks); NaN pairs are left out.

    Returns:
        A float in [-1, 1], or NaN when fewer than 3 pairs remain or either side is constant.
    """
    x, y = torch.as_tensor(x).flatten().double(), torch.as_tensor(y).flatten().double()
    if x.shape != y.shape:
        raise ValueError(f"rank_correlation needs values of the same length, got {tuple(x.shape)} and {tuple(y.shape)}")
    valid = ~(x.isnan() | y.isnan())
    x, y = x[valid], y[valid]
    if x.numel() < 3:
        return float("nan")
    rx, ry = _ranks(x), _ranks(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denominator = (rx.square().sum() * ry.square().sum()).sqrt()
    return float((rx * ry).sum() / denominator) if denominator > 0 else float("nan")
