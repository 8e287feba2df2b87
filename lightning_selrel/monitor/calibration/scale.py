"""The scale: a calibration file (read, checked, applied) and the measurement that makes it: every method's per-clip
spatial bias of both references over the ``n_std`` grid and both rules, and the recommended setting."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from lightning_selrel.metrics.functional import spatial_bias
from lightning_selrel.relevance.methods import explain
from lightning_selrel.relevance.selective import THRESHOLDS, selective_relevance

__all__ = [
    "CALIBRATION_VERSION",
    "DEFAULT_GRID",
    "THRESHOLDS",
    "Calibration",
    "CalibrationError",
    "calibrated",
    "load_calibration",
    "per_clip_bias",
    "recommend",
    "scale_of",
]

CALIBRATION_VERSION = 1
DEFAULT_GRID = (1.0, 2.0, 3.0, 4.0, 5.0, 6.0)


class CalibrationError(ValueError):
    """A calibration that cannot be made or used; the one-line message names the file or value and the fix."""


@dataclass
class Calibration:
    """What ``calibrate`` measured, and what it recommends (the content of ``calibration.json``).

    Attributes:
        methods: Explanation methods measured.
        clip_shape: (T, H, W) of the clips the references and the probe set have.
        n_std_grid: The ``n_std`` values measured, under every rule of ``thresholds``.
        thresholds: The threshold rules measured.
        references: Per reference (``"motion"``, ``"static"``): its task, accuracy, frozen-clip accuracy and the
            share of probe clips whose prediction does not change when frozen.
        scale: ``scale[method][rule][n]`` = ``{"motion": {"mean", "std"}, "static": {...}, "gap", "separation"}``,
            with ``n`` as a string (``"4"``) and the std the population std over probe clips.
        recommended: ``{"method", "threshold", "n_std", "gap", "separation"}``, or None when refused.
        refused: Why no setting is recommended (None when one is).
        probe: How the probe clips were drawn (``num_clips``, ``seed``, ``indices``).
        source: The configuration it was made from (data module, model, budget).
    """

    methods: list[str]
    clip_shape: list[int]
    n_std_grid: list[float]
    thresholds: list[str]
    references: dict[str, dict[str, Any]]
    scale: dict[str, dict[str, dict[str, dict[str, Any]]]]
    recommended: dict[str, Any] | None
    refused: str | None
    probe: dict[str, Any] = field(default_factory=dict)
    source: dict[str, Any] = field(default_factory=dict)
    version: int = CALIBRATION_VERSION

    def to_json(self) -> str:
        return json.dumps(_finite(self.__dict__), indent=1, allow_nan=False) + "\n"

    def point(self, method: str, threshold: str, n_std: float) -> dict[str, Any]:
        """The two references' scale at one setting (raises :class:`CalibrationError` naming what is missing)."""
        if method not in self.scale:
            raise CalibrationError(f"the calibration has no method {method!r}; it measured {self.methods}")
        if threshold not in self.scale[method]:
            raise CalibrationError(
                f"the calibration has no threshold rule {threshold!r}; it measured {self.thresholds}"
            )
        key = _key(n_std)
        if key not in self.scale[method][threshold]:
            raise CalibrationError(f"the calibration has no n_std {n_std:g}; it measured n_std {self.n_std_grid}")
        return self.scale[method][threshold][key]


def _key(n_std: float) -> str:
    return f"{float(n_std):g}"


def _finite(value: Any) -> Any:
    """Plain JSON: NaN and infinities become None."""
    if isinstance(value, Mapping):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def load_calibration(path: str | os.PathLike) -> Calibration:
    """Read ``calibration.json`` (or a folder holding one).

    Raises:
        CalibrationError: If the file is missing, not a calibration, or of another version.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        path = path / "calibration.json"
    fix = "pass the calibration.json that `python -m lightning_selrel calibrate` wrote"
    if not path.is_file():
        raise CalibrationError(f"calibration {path} not found; {fix}")
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise CalibrationError(f"calibration {path} is not readable JSON ({error}); {fix}") from None
    if not isinstance(data, dict) or data.get("version") != CALIBRATION_VERSION or "scale" not in data:
        raise CalibrationError(f"{path} is not a calibration of version {CALIBRATION_VERSION}; {fix}")
    fields = Calibration.__dataclass_fields__
    return Calibration(**{k: v for k, v in data.items() if k in fields})


def calibrated(bias: float, point: Mapping[str, Any]) -> float:
    """Spatial bias on the calibration's scale: 0 at the motion reference's mean, 1 at the static one's (not
    clipped)."""
    low, high = point["motion"]["mean"], point["static"]["mean"]
    if low is None or high is None or high == low:
        return math.nan
    return (bias - low) / (high - low)


def per_clip_bias(
    model: torch.nn.Module,
    clips: Tensor,
    methods: Sequence[str],
    grid: Sequence[float],
    *,
    batch_size: int = 8,
    progress: Callable[[str], None] | None = None,
) -> dict[str, dict[str, dict[str, list[float]]]]:
    """Spatial bias of every probe clip: ``[method][rule][n_std] -> values (N,)`` (NaN: no positive relevance)."""
    out: dict[str, dict[str, dict[str, list[float]]]] = {}
    for method in methods:
        relevance = torch.cat(
            [explain(model, clips[s : s + batch_size], method) for s in range(0, len(clips), batch_size)]
        )  # (N, T, H, W)
        out[method] = {
            rule: {
                _key(n): spatial_bias(relevance, selective_relevance(relevance, n_std=n, threshold=rule)).tolist()
                for n in grid
            }
            for rule in THRESHOLDS
        }
        if progress is not None:
            progress(method)
    return out


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    kept = np.array([v for v in values if v is not None and not math.isnan(v)], dtype=np.float64)
    return (float(kept.mean()), float(kept.std())) if kept.size else (math.nan, math.nan)


def scale_of(
    motion: dict[str, dict[str, dict[str, list[float]]]], static: dict[str, dict[str, dict[str, list[float]]]]
) -> dict[str, dict[str, dict[str, dict[str, Any]]]]:
    """Per setting: both references' mean and population std over clips, the gap and the separation."""
    scale: dict[str, dict[str, dict[str, dict[str, Any]]]] = {}
    for method, rules in motion.items():
        for rule, values in rules.items():
            for key, low_values in values.items():
                low, low_std = _mean_std(low_values)
                high, high_std = _mean_std(static[method][rule][key])
                pooled = math.sqrt((low_std**2 + high_std**2) / 2)
                gap = high - low
                separation = gap / pooled if pooled > 0 else math.nan
                scale.setdefault(method, {}).setdefault(rule, {})[key] = {
                    "motion": {"mean": low, "std": low_std},
                    "static": {"mean": high, "std": high_std},
                    "gap": gap,
                    "separation": separation,
                }
    return scale


def recommend(scale: Mapping[str, Any]) -> dict[str, Any] | None:
    """The setting (method, rule, n_std) of widest separation, or None when no setting has a positive gap."""
    best: dict[str, Any] | None = None
    for method, rules in scale.items():
        for rule, points in rules.items():
            for key, point in points.items():
                separation = point["separation"]
                if separation is None or math.isnan(separation) or point["gap"] <= 0:
                    continue
                if best is None or separation > best["separation"]:
                    best = {"method": method, "threshold": rule, "n_std": float(key), **point}
    if best is None:
        return None
    return {k: best[k] for k in ("method", "threshold", "n_std", "gap", "separation")}
