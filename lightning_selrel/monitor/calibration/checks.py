"""A calibration file checked field by field before anything uses it: a hand-edited or damaged
``calibration.json`` is refused in one line naming the file, the field and the fix, not at the first calibrated
value after an epoch of training.

``calibrate`` writes no NaN or infinity (missing values are ``null``), so a non-finite number is an edit; the scale
must hold every method, threshold rule and ``n_std`` the file declares, each point with both references' mean and
std and the paired gap and separation (numbers or ``null``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from lightning_selrel.relevance.selective import THRESHOLDS

__all__ = ["check_fields"]

_FIX = "calibrate again (python -m lightning_selrel calibrate), or restore the file it wrote"


def _number(value: Any, *, optional: bool = False) -> bool:
    if value is None:
        return optional
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_fields(data: Mapping[str, Any], where: str) -> None:
    """Raise ``ValueError`` naming ``where``, the first bad field and the fix, unless ``data`` (a parsed
    ``calibration.json`` of the current version) has every field a calibration needs, of the right kind."""

    def bad(field: str, problem: str) -> None:
        raise ValueError(f"calibration {where}: {field} {problem}; {_FIX}")

    for name in ("methods", "clip_shape", "n_std_grid", "thresholds", "references", "scale"):
        if name not in data:
            bad(name, "is missing")
    methods, shape, grid, rules = data["methods"], data["clip_shape"], data["n_std_grid"], data["thresholds"]
    if not isinstance(methods, list) or not methods or not all(isinstance(m, str) and m for m in methods):
        bad("methods", f"must be a non-empty list of method names, got {methods!r}")
    if not (
        isinstance(shape, list)
        and len(shape) == 3
        and all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in shape)
    ):
        bad("clip_shape", f"must be [T, H, W] of positive integers, got {shape!r}")
    if not isinstance(grid, list) or not grid or not all(_number(n) and n >= 0 for n in grid):
        bad("n_std_grid", f"must be a non-empty list of finite numbers >= 0, got {grid!r}")
    if not isinstance(rules, list) or not rules or not all(r in THRESHOLDS for r in rules):
        bad("thresholds", f"must be a non-empty list of {list(THRESHOLDS)}, got {rules!r}")
    references = data["references"]
    if not isinstance(references, Mapping) or not all(
        isinstance(references.get(r), Mapping) for r in ("motion", "static")
    ):
        bad("references", "must hold a 'motion' and a 'static' entry")
    if "min_separation" in data and not (_number(data["min_separation"]) and data["min_separation"] > 0):
        bad("min_separation", f"must be a finite number > 0, got {data['min_separation']!r}")
    if data.get("refused") is not None and not isinstance(data["refused"], str):
        bad("refused", f"must be null or a reason, got {data['refused']!r}")
    if data.get("recommended") is not None and not isinstance(data["recommended"], Mapping):
        bad("recommended", f"must be null or a setting, got {data['recommended']!r}")
    probe = data.get("probe", {})
    if not isinstance(probe, Mapping):
        bad("probe", f"must be a mapping, got {type(probe).__name__}")
    if probe.get("min_probe_motion") is not None and not (
        _number(probe["min_probe_motion"]) and probe["min_probe_motion"] >= 0
    ):
        bad("probe.min_probe_motion", f"must be null or a finite number >= 0, got {probe['min_probe_motion']!r}")
    if "settings" in data and not isinstance(data["settings"], Mapping):
        bad("settings", f"must be a mapping, got {type(data['settings']).__name__}")
    scale = data["scale"]
    if not isinstance(scale, Mapping):
        bad("scale", f"must be a mapping of method -> rule -> n_std -> point, got {type(scale).__name__}")
    for method in methods:
        if not isinstance(scale.get(method), Mapping):
            bad(f"scale.{method}", f"is missing or not a mapping (the scale holds {sorted(scale)})")
        for rule in rules:
            points = scale[method].get(rule)
            if not isinstance(points, Mapping):
                bad(
                    f"scale.{method}.{rule}",
                    f"is missing (the file declares {rules}; it holds {sorted(scale[method])})",
                )
            for n in grid:
                key = f"{float(n):g}"
                point = points.get(key)
                field = f"scale.{method}.{rule}.{key}"
                if not isinstance(point, Mapping):
                    bad(field, f"is missing or not a point, got {point!r}")
                for reference in ("motion", "static"):
                    entry = point.get(reference)
                    if not isinstance(entry, Mapping):
                        bad(f"{field}.{reference}", "is missing")
                    for stat in ("mean", "std"):
                        if not _number(entry.get(stat), optional=True):
                            bad(
                                f"{field}.{reference}.{stat}",
                                f"must be a finite number or null, got {entry.get(stat)!r}",
                            )
                for stat in ("gap", "separation"):
                    if not _number(point.get(stat), optional=True):
                        bad(f"{field}.{stat}", f"must be a finite number or null, got {point.get(stat)!r}")
