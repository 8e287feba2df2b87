"""What the monitor measures on one probe set, synced over ranks: every method's maps, their per-clip scores and
means (with population std), agreement between methods, and the behaviour scores. The callback
(:mod:`.callback`) decides when; :mod:`.writers` how it is shown.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from lightning_selrel._lightning import pl
from lightning_selrel.metrics import tags
from lightning_selrel.metrics.functional import clip_scores, mask_iou, relevance_agreement
from lightning_selrel.metrics.modules import MeanStd
from lightning_selrel.monitor.calibration import Calibration, calibrated
from lightning_selrel.monitor.probe_set import ProbeSet
from lightning_selrel.relevance.measure import explain_selective
from lightning_selrel.relevance.methods import MIN_TEMPORAL_CELLS, method_options, temporal_cells

__all__ = ["BASELINE_SCORES", "Settings", "compute", "gather", "log_behaviour", "measure", "put", "unresolved"]

#: The scores of the baseline map alone (motion precision by area and by mass against flow and exact masks).
BASELINE_SCORES = frozenset(
    name for source in ("flow", "exact") for i, name in enumerate(tags.PRECISION[source]) if i in (0, 2)
)


@dataclass(frozen=True)
class Settings:
    """The monitor's options that decide what is measured (see :class:`~.callback.SelectiveRelevanceMonitor`)."""

    methods: tuple[str, ...]
    n_std: float
    threshold: str
    signed: bool
    target: str
    batch_size: int
    core_mass: float
    num_videos: int
    gradcam_layer: str | None
    calibration: Calibration | None
    #: Methods whose maps have too few time steps for a selective map: only their baseline scores are reported.
    unresolved: frozenset[str] = frozenset()


def unresolved(
    pl_module: torch.nn.Module, methods: Sequence[str], clip_shape: Sequence[int], layer: str | None
) -> dict[str, str]:
    """Per method of GradCAM and gradcam_t whose layer resolves fewer time steps than the temporal Sobel spans
    (three), why its selective map cannot show motion within a clip (the floor of the upsampling: a cam that
    purely appears reads spatial bias 1.00, a random one 0.99). One forward pass of a blank clip of
    ``clip_shape`` (C, T, H, W), the same on every rank."""
    methods = [m for m in methods if m in ("gradcam", "gradcam_t")]
    if not methods:
        return {}
    device = next(pl_module.parameters()).device
    cells = temporal_cells(pl_module, torch.zeros(tuple(clip_shape), dtype=torch.uint8, device=device), layer)
    if cells >= MIN_TEMPORAL_CELLS:
        return {}
    reason = (
        f"its layer resolves {cells} time step(s) of the {clip_shape[1]}-frame clips and the temporal Sobel needs "
        f"{MIN_TEMPORAL_CELLS}: its selective map cannot show motion within a clip"
    )
    return dict.fromkeys(methods, reason)


def log_behaviour(values: dict[str, float], scores: dict[str, Tensor], device: torch.device) -> None:
    """Means over the probe clips (synced over ranks); ``reliance`` also gets its population std."""
    for name, per_clip in scores.items():
        result = compute(MeanStd(), device, per_clip)
        if name == "reliance":
            put(values, tags.behaviour_tag(name), result["mean"], result["std"])
        elif not torch.isnan(result["mean"]):
            values[tags.behaviour_tag(name)] = float(result["mean"])


def gather(
    trainer: pl.Trainer, pl_module: pl.LightningModule, columns: dict[str, Tensor], total: int
) -> dict[str, Tensor]:
    """Per-clip columns (n,) of this rank's share, gathered from every rank in probe order (contiguous shares)."""
    if trainer.world_size == 1:
        return {name: column.cpu().to(torch.float64) for name, column in columns.items()}
    names = list(columns)
    longest = len(np.array_split(np.arange(total), trainer.world_size)[0])
    rows = torch.full((longest, len(names) + 1), torch.nan, dtype=torch.float64)
    share = next(iter(columns.values())).shape[0]
    if share:
        rows[:share, :-1] = torch.stack([columns[name].cpu().to(torch.float64) for name in names], dim=1)
        rows[:share, -1] = 1.0  # this row holds a clip (padding rows do not)
    gathered = pl_module.all_gather(rows.to(pl_module.device)).reshape(-1, len(names) + 1).cpu()
    kept = gathered[gathered[:, -1] == 1.0]
    return {name: kept[:, i] for i, name in enumerate(names)}


def measure(
    pl_module: pl.LightningModule, probe: ProbeSet, settings: Settings
) -> tuple[dict[str, float], dict[str, Any], dict[str, Tensor]]:
    """Explain this rank's probe clips with every method; returns synced scalars, this rank's maps and its
    per-clip spatial bias per method."""
    device = pl_module.device
    clips = probe.clips.to(device)
    flow = probe.flow_masks.to(device)
    exact = probe.exact_masks.to(device) if probe.exact_masks is not None else None
    target = probe.labels.to(device) if settings.target == "label" else None
    values: dict[str, float] = {}
    relevance: dict[str, Tensor] = {}
    maps: dict[str, Any] = {}
    bias: dict[str, Tensor] = {}
    for method in settings.methods:
        rel, sel, logits, explain_ms, selective_ms = explain_probe(pl_module, clips, method, target, settings)
        relevance[method] = rel
        maps[method] = (
            rel[: settings.num_videos].cpu(),
            sel[: settings.num_videos].cpu(),
            logits[: settings.num_videos],
        )
        scores = clip_scores(rel, sel, flow=flow, exact=exact, core_mass=settings.core_mass)
        resolved = method not in settings.unresolved
        if resolved:
            bias[method] = scores["spatial_bias"]
        else:  # the selective map has no meaning: baseline scores only
            scores = {k: v for k, v in scores.items() if k in BASELINE_SCORES}
            bias[method] = torch.full((rel.shape[0],), math.nan, dtype=torch.float64, device=rel.device)
        if settings.calibration is not None and resolved:
            point = settings.calibration.point(method, settings.threshold, settings.n_std)
            minimum = settings.calibration.min_separation
            # NaN stays NaN, and a setting where the references do not separate gives NaN: nothing is logged
            values_on_scale = [calibrated(b, point, minimum) for b in scores["spatial_bias"].tolist()]
            scores[tags.CALIBRATED] = torch.tensor(values_on_scale, dtype=torch.float64, device=rel.device)
        for name, per_clip in scores.items():
            result = compute(MeanStd(), device, per_clip)
            put(values, tags.method_tag(method, name), result["mean"], result["std"])
        nothing = (~(rel > 0).flatten(1).any(dim=1)).to(torch.float64)  # (N,): no positive baseline relevance
        values[tags.method_tag(method, "no_relevance")] = mean_or_zero(compute(MeanStd(), device, nothing))
        if resolved:  # every rank has the same unresolved methods: the sync below is skipped on all or none
            empty = ((sel > 0).flatten(1).sum(1) == 0).to(torch.float64)  # (N,): the selective map is empty
            values[tags.method_tag(method, "selective_no_relevance")] = mean_or_zero(compute(MeanStd(), device, empty))
        # Clips are explained together, a batch at a time: a clip's cost is its batch's divided by its
        # clips, so a spread over clips would be a constant. Only the mean is logged.
        for name, samples in zip(tags.TIMINGS, (explain_ms, selective_ms), strict=True):
            values[tags.method_tag(method, name)] = mean_or_zero(compute(MeanStd(), device, samples))
    if exact is not None:  # how wrong the flow mask is, on these clips
        result = compute(MeanStd(), device, mask_iou(flow, exact))
        put(values, tags.FLOW_IOU, result["mean"], result["std"])
    for first, second in itertools.combinations(settings.methods, 2):
        for kind, options in zip(tags.AGREEMENTS, ({}, {"relevant": "mass"}), strict=True):
            agreement = relevance_agreement(relevance[first], relevance[second], fraction=settings.core_mass, **options)
            result = compute(MeanStd(), device, agreement)
            put(values, tags.agreement_tag(kind, first, second), result["mean"], result["std"])
    return values, maps, bias


def explain_probe(
    pl_module: pl.LightningModule, clips: Tensor, method: str, target: Tensor | None, settings: Settings
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Relevance, selective relevance and logits of all clips, in chunks of ``batch_size``, with the
    per-clip milliseconds of the explanation and of the selective step."""
    rel, sel, logits, explain_ms, selective_ms = [], [], [], [], []
    for start in range(0, clips.shape[0], settings.batch_size):
        chunk = clips[start : start + settings.batch_size]
        n = chunk.shape[0]
        chunk_target = target[start : start + n] if target is not None else None
        options = method_options(method, layer=settings.gradcam_layer)
        result = explain_selective(
            pl_module,
            chunk,
            method,
            chunk_target,
            n_std=settings.n_std,
            threshold=settings.threshold,
            signed=settings.signed,
            **options,
        )
        rel.append(result.relevance)
        sel.append(result.selective)
        logits.append(result.logits.cpu())
        explain_ms.append(torch.full((n,), result.explain_ms / n, dtype=torch.float64))
        selective_ms.append(torch.full((n,), result.selective_ms / n, dtype=torch.float64))
    if not rel:  # this rank holds no probe clip: contribute nothing, but take part in the sync
        empty = torch.zeros((0, *clips.shape[2:]), device=clips.device)
        none = torch.zeros(0, dtype=torch.float64)
        return empty, empty.clone(), torch.zeros(0, 0), none, none.clone()
    return torch.cat(rel), torch.cat(sel), torch.cat(logits), torch.cat(explain_ms), torch.cat(selective_ms)


def compute(metric: Any, device: torch.device, *inputs: Tensor) -> dict[str, Tensor]:
    """Update a fresh metric with this rank's clips and compute it, synced over all ranks."""
    metric = metric.to(device)
    metric.update(*(x.to(device) for x in inputs))
    return metric.compute()


def put(values: dict[str, float], name: str, mean: Tensor, std: Tensor) -> None:
    """Store a mean and its ``_std`` companion; a metric without any valid clip is not logged."""
    if not torch.isnan(mean):
        values[name] = float(mean)
        values[name + tags.STD] = float(std)


def mean_or_zero(result: dict[str, Tensor]) -> float:
    """The mean of a :class:`MeanStd` result, 0.0 when no rank had a sample."""
    return float(result["mean"]) if not torch.isnan(result["mean"]) else 0.0
