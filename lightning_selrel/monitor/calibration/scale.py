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
from lightning_selrel.monitor.calibration.checks import check_fields
from lightning_selrel.relevance.methods import GRADCAM_FAMILY, explain, layer_name, method_options
from lightning_selrel.relevance.selective import THRESHOLDS, selective_relevance

__all__ = [
    "CALIBRATION_VERSION",
    "DEFAULT_GRID",
    "MIN_SEPARATION",
    "SETTINGS",
    "THRESHOLDS",
    "Calibration",
    "CalibrationError",
    "calibrated",
    "halves",
    "load_calibration",
    "map_settings",
    "normalisation_of",
    "per_clip_bias",
    "recommend",
    "scale_of",
    "unusable",
    "why_none",
]

#: Version 2 records the settings the references were explained at and pairs the clips; version 1 files did not.
CALIBRATION_VERSION = 2
DEFAULT_GRID = (1.0, 2.0, 3.0, 4.0, 5.0, 6.0)
#: The least separation (paired: the mean per-clip difference of the two references' spatial bias over its
#: standard deviation, Cohen's d_z) at which a setting is recommended or a calibrated value logged. 1.0 is a
#: large effect: on most probe clips the static reference reads above the motion reference.
MIN_SEPARATION = 1.0
#: What changes a map besides the method, the rule and n_std: a calibration is used only where all of them match.
SETTINGS = ("clip_shape", "signed", "target", "gradcam_layer", "normalisation")


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
        scale: ``scale[method][rule][n]`` = ``{"motion": {"mean", "std"}, "static": {...}, "gap", "separation",
            "clips", "select": {"gap", "separation", "clips"}, "held_out": {...}}``, with ``n`` as a string
            (``"4"``). The means and population stds are over all probe clips; ``gap`` and ``separation`` are
            paired over the clips where both references have a value (see :func:`scale_of`), over all of them
            and over the two halves of :func:`halves`.
        recommended: ``{"method", "threshold", "n_std", "gap", "separation", "selection_separation"}``: the
            setting chosen on the selection half, with the gap and separation measured on the held-out half; or
            None when refused.
        refused: Why no setting is recommended (None when one is). A refused calibration is not used.
        probe: How the probe clips were drawn (``num_clips``, ``seed``, ``indices``, and the monitor's clips they
            were kept apart from).
        source: The configuration it was made from (data module, model, budget).
        settings: What else the maps depend on (:data:`SETTINGS`): ``clip_shape``, ``signed``, ``target``,
            ``gradcam_layer`` (the dotted name of the layer the GradCAM family read) and ``normalisation`` (the
            model's input mean and std, or None).
        min_separation: The least separation to recommend a setting or to use one.
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
    settings: dict[str, Any] = field(default_factory=dict)
    min_separation: float = MIN_SEPARATION
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

    def check(self, where: str, **settings: Any) -> None:
        """Refuse this calibration for maps made at other ``settings`` (any of :data:`SETTINGS`; a setting not
        passed is not checked), or when it was refused; one line naming the first mismatch and the fix.

        Raises:
            CalibrationError: Naming ``where`` (the file), the setting, both values and the fix.
        """
        if self.refused is not None:
            raise CalibrationError(
                f"calibration {where} was refused by calibrate ({self.refused}); its scale has no meaning: fix what "
                "it says and calibrate again, or drop the calibration"
            )
        for name, value in settings.items():
            if name not in SETTINGS:
                raise ValueError(f"unknown calibration setting {name!r}; known: {list(SETTINGS)}")
            measured = self.settings.get(name)
            if _comparable(measured) != _comparable(value):
                raise CalibrationError(
                    f"calibration {where} was made at {name}={measured!r}, these maps use {name}={value!r}; "
                    "calibrate with the same settings (calibrate reads the monitor in your configuration) or drop "
                    "the calibration"
                )

    def unusable_for(self, methods: Sequence[str], threshold: str, n_std: float) -> dict[str, str]:
        """Per method, why this calibration gives no value at ``threshold`` and ``n_std`` (:func:`unusable`);
        raises :class:`CalibrationError` where the setting was not measured."""
        reasons = {m: unusable(self.point(m, threshold, n_std), self.min_separation) for m in methods}
        return {m: reason for m, reason in reasons.items() if reason is not None}

    def check_model(
        self, where: str, model: torch.nn.Module, methods: Sequence[str], gradcam_layer: str | None
    ) -> None:
        """Refuse this calibration for ``model``'s maps when its input normalisation, or the GradCAM family's layer
        (only where ``methods`` use the family), differs from what the references were explained with."""
        shape = getattr(model, "clip_shape", None) or (getattr(model, "hparams", None) or {}).get("clip_shape")
        if shape is not None and [int(s) for s in shape] != [int(s) for s in self.clip_shape]:
            raise CalibrationError(
                f"calibration {where} was made for clips {list(self.clip_shape)} (T, H, W), the model takes "
                f"{[int(s) for s in shape]}; calibrate with this model and data"
            )
        compared: dict[str, Any] = {"normalisation": normalisation_of(model)}
        if any(m in GRADCAM_FAMILY for m in methods):
            compared["gradcam_layer"] = layer_name(model, gradcam_layer)
        self.check(where, **compared)


def _comparable(value: Any) -> Any:
    """Lists and tuples alike, floats to 6 significant digits (a JSON round trip)."""
    if isinstance(value, Mapping):
        return {str(k): _comparable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_comparable(v) for v in value]
    if isinstance(value, float):
        return float(f"{value:.6g}")
    return value


def map_settings(
    model: torch.nn.Module,
    methods: Sequence[str],
    *,
    clip_shape: Sequence[int],
    signed: bool,
    target: str,
    gradcam_layer: str | None,
) -> dict[str, Any]:
    """The settings (:data:`SETTINGS`) that maps of ``model`` explained with these options depend on, as a
    calibration records them and :meth:`Calibration.check` compares them: the GradCAM family's layer by its
    dotted name in ``model`` (None when no such method is used), the input normalisation by the model's
    ``normalize`` module's ``mean`` and ``std`` (None when it has none)."""
    uses_layer = any(m in GRADCAM_FAMILY for m in methods)
    return {
        "clip_shape": [int(s) for s in clip_shape],
        "signed": bool(signed),
        "target": str(target),
        "gradcam_layer": layer_name(model, gradcam_layer) if uses_layer else None,
        "normalisation": normalisation_of(model),
    }


def normalisation_of(model: torch.nn.Module) -> dict[str, list[float]] | None:
    """The model's input normalisation, its ``normalize`` module's ``mean`` and ``std`` (None when it has none)."""
    normalize = getattr(model, "normalize", None)
    mean, std = getattr(normalize, "mean", None), getattr(normalize, "std", None)
    if isinstance(mean, Tensor) and isinstance(std, Tensor):
        return {"mean": mean.flatten().tolist(), "std": std.flatten().tolist()}
    return None


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
    if isinstance(data, dict) and data.get("version") == 1 and "scale" in data:
        raise CalibrationError(
            f"calibration {path} is of version 1, which did not record the settings its references were explained "
            "at (GradCAM layer, signed, target, normalisation) nor pair the clips; calibrate again"
        )
    if not isinstance(data, dict) or data.get("version") != CALIBRATION_VERSION or "scale" not in data:
        raise CalibrationError(f"{path} is not a calibration of version {CALIBRATION_VERSION}; {fix}")
    try:
        check_fields(data, str(path))  # a hand-edited or damaged file: one line, before any work
    except ValueError as error:
        raise CalibrationError(str(error)) from None
    fields = Calibration.__dataclass_fields__
    return Calibration(**{k: v for k, v in data.items() if k in fields})


def unusable(point: Mapping[str, Any], minimum: float = MIN_SEPARATION) -> str | None:
    """Why a setting's scale has no meaning (the references do not separate there), or None when it has one."""
    gap, separation = point.get("gap"), point.get("separation")
    if gap is None or separation is None or not math.isfinite(gap) or not math.isfinite(separation):
        return "the references have no paired spread there"
    if gap <= 0:
        return (
            f"the static reference does not read above the motion reference there (gap {gap:.3f}): the method's "
            "spatial bias cannot tell a motion model from a context model on these clips"
        )
    if separation < minimum:
        return f"the references separate by {separation:.2f} there, below the minimum of {minimum:g}"
    return None


def calibrated(bias: float, point: Mapping[str, Any], minimum: float = MIN_SEPARATION) -> float:
    """Spatial bias on the calibration's scale: 0 at the motion reference's mean, 1 at the static one's (not
    clipped); NaN where the references do not separate (:func:`unusable`), so no value without a meaning."""
    if unusable(point, minimum) is not None:
        return math.nan
    low, high = point["motion"]["mean"], point["static"]["mean"]
    return (bias - low) / (high - low)


def per_clip_bias(
    model: torch.nn.Module,
    clips: Tensor,
    methods: Sequence[str],
    grid: Sequence[float],
    *,
    batch_size: int = 8,
    progress: Callable[[str], None] | None = None,
    signed: bool = False,
    target: Tensor | None = None,
    layer: str | None = None,
) -> dict[str, dict[str, dict[str, list[float]]]]:
    """Spatial bias of every probe clip: ``[method][rule][n_std] -> values (N,)`` (NaN: no positive relevance).

    ``signed``, ``target`` (a class per clip, None: the predicted class) and ``layer`` (the GradCAM family's, a
    dotted name) are the monitor's options of the same names.
    """
    out: dict[str, dict[str, dict[str, list[float]]]] = {}
    for method in methods:
        options = method_options(method, layer=layer)
        relevance = torch.cat(
            [
                explain(
                    model,
                    clips[s : s + batch_size],
                    method,
                    None if target is None else target[s : s + batch_size],
                    **options,
                )
                for s in range(0, len(clips), batch_size)
            ]
        )  # (N, T, H, W)
        out[method] = {
            rule: {
                _key(n): spatial_bias(
                    relevance, selective_relevance(relevance, n_std=n, threshold=rule, signed=signed)
                ).tolist()
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


def halves(count: int) -> tuple[list[int], list[int]]:
    """Positions of the probe clips that choose a setting (even) and that measure it (odd): fixed, interleaved
    over the sorted draw, so that neither half is an end of the dataset."""
    return list(range(0, count, 2)), list(range(1, count, 2))


def _paired(low: Sequence[float], high: Sequence[float], positions: Sequence[int]) -> dict[str, Any]:
    """Gap and separation over the clips at ``positions`` where both references have a value: the mean of the
    per-clip difference (static - motion) and that mean over the difference's population std (d_z)."""
    a, b = np.asarray(low, dtype=np.float64), np.asarray(high, dtype=np.float64)
    index = np.asarray(positions, dtype=np.int64)
    d = b[index] - a[index]
    d = d[np.isfinite(d)]
    if d.size < 2:
        return {"gap": math.nan, "separation": math.nan, "clips": int(d.size)}
    gap, spread = float(d.mean()), float(d.std())
    separation = gap / spread if spread > 0 else math.nan
    return {"gap": gap, "separation": separation, "clips": int(d.size)}


def scale_of(
    motion: dict[str, dict[str, dict[str, list[float]]]], static: dict[str, dict[str, dict[str, list[float]]]]
) -> dict[str, dict[str, dict[str, dict[str, Any]]]]:
    """Per setting: both references' mean and population std over clips, and the paired gap and separation over
    all clips, over the selection half and over the held-out half (:func:`halves`)."""
    scale: dict[str, dict[str, dict[str, dict[str, Any]]]] = {}
    for method, rules in motion.items():
        for rule, values in rules.items():
            for key, low_values in values.items():
                high_values = static[method][rule][key]
                if len(high_values) != len(low_values):
                    raise CalibrationError(
                        f"{method} {rule} n_std {key}: {len(low_values)} motion values but {len(high_values)} "
                        "static ones; both references are explained on the same probe clips"
                    )
                low, low_std = _mean_std(low_values)
                high, high_std = _mean_std(high_values)
                select, held_out = halves(len(low_values))
                scale.setdefault(method, {}).setdefault(rule, {})[key] = {
                    "motion": {"mean": low, "std": low_std},
                    "static": {"mean": high, "std": high_std},
                    **_paired(low_values, high_values, range(len(low_values))),
                    "select": _paired(low_values, high_values, select),
                    "held_out": _paired(low_values, high_values, held_out),
                }
    return scale


def recommend(scale: Mapping[str, Any], minimum: float = MIN_SEPARATION) -> dict[str, Any] | None:
    """The setting (method, rule, n_std) of widest separation on the selection half, with its gap and separation
    measured on the held-out half; None when no setting separates the references by ``minimum`` on both halves.

    The maximum over ~60 settings read on the clips that chose it is optimistic; the held-out half is not.
    """
    best: dict[str, Any] | None = None
    for method, rules in scale.items():
        for rule, points in rules.items():
            for key, point in points.items():
                chosen = point.get("select", {})
                if unusable(chosen, minimum) is not None:
                    continue
                if best is None or chosen["separation"] > best["selection_separation"]:
                    best = {
                        "method": method,
                        "threshold": rule,
                        "n_std": float(key),
                        "gap": point["held_out"]["gap"],
                        "separation": point["held_out"]["separation"],
                        "selection_separation": chosen["separation"],
                        "clips": point["held_out"]["clips"],
                    }
    if best is None or unusable(best, minimum) is not None:
        return None
    return best


def why_none(scale: Mapping[str, Any], minimum: float = MIN_SEPARATION) -> str:
    """Why :func:`recommend` found nothing: the best setting of the selection half and what the held-out half
    measured there."""
    best = None
    for method, rules in scale.items():
        for rule, points in rules.items():
            for key, point in points.items():
                chosen = point["select"]["separation"]
                if chosen is not None and math.isfinite(chosen) and (best is None or chosen > best[0]):
                    best = (chosen, method, rule, key, point["held_out"]["separation"])
    if best is None or best[0] < minimum:
        widest = "-" if best is None else f"{best[0]:.2f}"
        return (
            f"no setting separates the references by the minimum of {minimum:g} on the selection half of the probe "
            f"clips (widest {widest}); the references may not differ on these clips, or too few probe clips"
        )
    return (
        f"the setting chosen on the selection half ({best[1]}, {best[2]}, n_std {best[3]}: separation {best[0]:.2f}) "
        f"separates the references by {best[4]:.2f} on the held-out half, below the minimum of {minimum:g}: the "
        "choice does not hold; more --probe-clips or a larger budget"
    )
