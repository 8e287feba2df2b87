"""torchmetrics classes over the functional core (:mod:`lightning_selrel.metrics.functional`): per value, the count, sum
and sum of squares of the valid clips plus the number of skipped clips, all reduced by ``"sum"`` so DDP syncing is
exact; ``compute`` reports the mean and the **population** standard deviation (ddof = 0) over clips."""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric

from lightning_selrel.metrics.functional import motion_precision, relevance_agreement, selectivity

__all__ = ["MeanStd", "MotionPrecision", "RelevanceAgreement", "Selectivity"]


class _ClipMeanStd(Metric):
    """Mean and population std over clips of named per-clip values; clips with a NaN are skipped and counted."""

    is_differentiable = False
    full_state_update = False
    plot_lower_bound = 0.0
    plot_upper_bound = 1.0
    _values: tuple[str, ...] = ()

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        zero = torch.tensor(0.0, dtype=torch.float64)
        for name in self._values:
            self.add_state(f"{name}_sum", default=zero.clone(), dist_reduce_fx="sum")
            self.add_state(f"{name}_sumsq", default=zero.clone(), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("skipped", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def _accumulate(self, **values: Tensor) -> None:
        flat = {name: values[name].detach().flatten().to(torch.float64) for name in self._values}  # (N,) each
        valid = torch.stack([~v.isnan() for v in flat.values()]).all(dim=0)  # (N,)
        for name, value in flat.items():
            kept = value[valid]  # (N_valid,)
            setattr(self, f"{name}_sum", getattr(self, f"{name}_sum") + kept.sum())
            setattr(self, f"{name}_sumsq", getattr(self, f"{name}_sumsq") + kept.square().sum())
        self.count = self.count + valid.sum()
        self.skipped = self.skipped + (~valid).sum()

    def compute(self) -> dict[str, Tensor]:
        """Mean and population std over the clips of the one per-clip value, with the clip counts."""
        mean, std = self._mean_std(self._values[0])
        return {"mean": mean, "std": std, "count": self.count.clone(), "skipped": self.skipped.clone()}

    def _mean_std(self, name: str) -> tuple[Tensor, Tensor]:
        """Mean and population std over the valid clips; NaN for both when there is none."""
        count = self.count.to(torch.float64)
        if self.count == 0:
            nan = torch.tensor(torch.nan, dtype=torch.float64, device=count.device)
            return nan, nan.clone()
        mean = getattr(self, f"{name}_sum") / count
        variance = (getattr(self, f"{name}_sumsq") / count - mean.square()).clamp(min=0)
        return mean, variance.sqrt()


class MotionPrecision(_ClipMeanStd):
    """Motion precision over clips: see :func:`motion_precision`.

    ``update(relevance, motion)`` takes batches (..., T, H, W). ``compute()`` returns
    ``{"mean", "std", "count", "skipped"}``: mean and population std over the clips with positive
    relevance (float64, NaN when there is none), the number of those clips and of skipped ones.
    """

    higher_is_better = True
    _values = ("precision",)

    def update(self, relevance: Tensor, motion: Tensor) -> None:
        self._accumulate(precision=motion_precision(relevance, motion))


class Selectivity(_ClipMeanStd):
    """Selectivity and spatial bias over clips: see :func:`selectivity` and :func:`spatial_bias`.

    ``update(relevance, selective)`` takes batches (..., T, H, W). ``compute()`` returns ``area``,
    ``mass``, ``spatial_bias`` (= 1 - mass) and their population stds ``area_std``, ``mass_std``,
    ``spatial_bias_std`` (float64, NaN when no clip has positive relevance), plus ``count`` and ``skipped``.
    Higher is neither better nor worse, so ``higher_is_better`` is None.
    """

    higher_is_better = None
    _values = ("area", "mass")

    def update(self, relevance: Tensor, selective: Tensor) -> None:
        area, mass = selectivity(relevance, selective)
        self._accumulate(area=area, mass=mass)

    def compute(self) -> dict[str, Tensor]:
        area, area_std = self._mean_std("area")
        mass, mass_std = self._mean_std("mass")
        return {
            "area": area,
            "area_std": area_std,
            "mass": mass,
            "mass_std": mass_std,
            "spatial_bias": 1.0 - mass,
            "spatial_bias_std": mass_std.clone(),
            "count": self.count.clone(),
            "skipped": self.skipped.clone(),
        }


class RelevanceAgreement(_ClipMeanStd):
    """Agreement of two explanation methods over clips: see :func:`relevance_agreement`.

    ``update(first, second)`` takes batches (..., T, H, W). ``compute()`` returns
    ``{"mean", "std", "count", "skipped"}`` like :class:`MotionPrecision`; a clip is skipped when
    either map has no positive relevance. ``higher_is_better`` is None: agreement is a description.
    """

    higher_is_better = None
    _values = ("iou",)

    def update(self, first: Tensor, second: Tensor) -> None:
        self._accumulate(iou=relevance_agreement(first, second))


class MeanStd(_ClipMeanStd):
    """Mean and population std of per-clip samples that are not fractions (e.g. milliseconds per clip).

    ``update(values)`` takes a tensor of samples (any shape); NaNs are skipped and counted.
    ``compute()`` returns ``{"mean", "std", "count", "skipped"}`` like :class:`MotionPrecision`.
    """

    higher_is_better = None
    plot_upper_bound = None
    _values = ("value",)

    def update(self, values: Tensor) -> None:
        self._accumulate(value=torch.as_tensor(values))
