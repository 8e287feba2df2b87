"""A scale for spatial bias, from two reference models trained on the user's own clips.

Spatial bias has no meaning on its own: it moves with ``n_std``, the threshold rule and the method, and a model
that can only use motion still reads about 0.8. :func:`calibrate` trains, with the user's architecture and a
small budget, two references whose reliance on motion is known by construction:

- the **static reference** is trained on *frozen* clips (one random frame repeated over T) with the true labels:
  it can only use appearance;
- the **motion reference** is trained on a *speed* task: each long window of ``3 T`` frames gives two clips of
  the same videos and positions, its middle ``T`` frames (normal speed, class 0) and every third frame (3x speed,
  class 1). Both freeze to the same middle frame, so appearance cannot solve the task; only motion can. (Chosen
  by measurement on real public videos: a small C3D told normal from 3x speed with 0.87 validation accuracy and
  frozen-clip accuracy at chance, 0.49, while forward versus reversed playback stayed at chance, 0.43.)

Both are explained on the same moving probe clips (the user's validation clips) with every method, over a grid
of ``n_std`` and both threshold rules. For each setting the two references' mean spatial bias span a scale
(0 = the motion reference, 1 = the static reference) and their *separation* (the gap over the pooled population
std over clips) says how well that setting can see a difference; the widest is recommended. The command refuses
to recommend (and says why) when a reference did not learn its task or the static reference is not static (its
predictions change when the probe clips are frozen).

A data module takes part through ``long_clips(stage, factor)``: a dataset of the stage's clips with ``factor``
times as many frames (the built-in data and UCF-101 have it).
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Subset

from lightning_selrel.metrics.functional import spatial_bias
from lightning_selrel.monitor.behaviour import behaviour, freeze
from lightning_selrel.relevance.methods import explain
from lightning_selrel.relevance.selective import THRESHOLDS, selective_relevance

__all__ = [
    "CALIBRATION_VERSION",
    "Calibration",
    "CalibrationError",
    "FrozenClips",
    "SpeedClips",
    "calibrated",
    "learned",
    "load_calibration",
    "recommend",
    "write_outputs",
]

CALIBRATION_VERSION = 1
SPEED_FACTOR = 3
DEFAULT_GRID = (1.0, 2.0, 3.0, 4.0, 5.0, 6.0)
SPEED_CLASSES = ("normal speed", "3x speed")


class CalibrationError(ValueError):
    """A calibration that cannot be made or used; the one-line message names the file or value and the fix."""


# -- the references' data -----------------------------------------------------------------------------
class FrozenClips(Dataset):
    """Items ``(clip with one frame repeated over T, label)`` of a dataset of ``(clip, label, ...)``.

    Training draws the frame at random at every access (``random_frame=True``) from torch's generator, which
    ``seed_everything`` and Lightning's worker seeding make repeatable; evaluation freezes each clip at a frame
    fixed by its index, so two passes see the same clips.
    """

    def __init__(self, dataset: Dataset, *, random_frame: bool = True, seed: int = 0) -> None:
        self.dataset, self.random_frame, self.seed = dataset, random_frame, seed

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        item = self.dataset[index]
        clip = torch.as_tensor(item[0])  # (3, T, H, W)
        t = clip.shape[1]
        if self.random_frame:
            frame = int(torch.randint(t, (1,)))
        else:
            frame = int(np.random.default_rng([self.seed, index]).integers(t))
        return freeze(clip[None], frame)[0], int(item[1])


class SpeedClips(Dataset):
    """The speed task: item ``2 i`` is the middle T frames of long clip i (class 0, normal speed), item ``2 i + 1``
    every ``factor``-th frame of it (class 1); long clips have ``factor * T`` frames."""

    def __init__(self, long_clips: Dataset, clip_len: int, factor: int = SPEED_FACTOR) -> None:
        self.long_clips, self.clip_len, self.factor = long_clips, int(clip_len), int(factor)

    def __len__(self) -> int:
        return 2 * len(self.long_clips)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        clip = torch.as_tensor(self.long_clips[index // 2][0])  # (3, factor * T, H, W)
        t = self.clip_len
        if clip.shape[1] != self.factor * t:
            raise CalibrationError(
                f"long_clips gave clips of {clip.shape[1]} frames; the speed task needs {self.factor} x {t}"
            )
        if index % 2 == 0:
            start = (self.factor - 1) * t // 2
            return clip[:, start : start + t], 0
        return clip[:, :: self.factor][:, :t], 1


def subset(dataset: Dataset, count: int | None, seed: int) -> Dataset:
    """At most ``count`` items of a dataset, a fixed random choice (all of them when ``count`` is None)."""
    size = len(dataset)  # type: ignore[arg-type]
    if count is None or count >= size:
        return dataset
    return Subset(dataset, sorted(np.random.default_rng(seed).choice(size, count, replace=False).tolist()))


# -- judging the references --------------------------------------------------------------------------
def learned(accuracy: float, classes: int, gain: float = 0.5) -> bool:
    """A reference learned its task when its accuracy is at least ``gain`` of the way from chance to perfect."""
    chance = 1.0 / classes
    return accuracy >= chance + gain * (1.0 - chance)


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


# -- measuring --------------------------------------------------------------------------------------
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


def judge(
    references: Mapping[str, Mapping[str, Any]], *, gain: float = 0.5, static_unchanged: float = 0.8
) -> str | None:
    """Why no setting should be recommended, or None when both references did what they were built for."""
    motion, static = references["motion"], references["static"]
    problems = []
    if not learned(motion["accuracy"], 2, gain):
        problems.append(
            f"the motion reference did not learn its task (normal vs 3x speed: accuracy {motion['accuracy']:.2f}, "
            f"needs {0.5 + gain * 0.5:.2f}); raise --epochs or --train-clips"
        )
    if not learned(static["accuracy"], static["classes"], gain):
        chance = 1.0 / static["classes"]
        problems.append(
            f"the static reference did not learn its task (frozen clips: accuracy {static['accuracy']:.2f}, chance "
            f"{chance:.2f}); the classes may not be told apart by appearance, or the budget is too small"
        )
    if static["unchanged_frozen"] < static_unchanged:
        problems.append(
            f"the static reference is not static: its prediction changes on {1 - static['unchanged_frozen']:.0%} of "
            f"the probe clips when they are frozen (at most {1 - static_unchanged:.0%} allowed)"
        )
    return "; ".join(problems) if problems else None


def reference_behaviour(model: torch.nn.Module, clips: Tensor, labels: Tensor, batch_size: int) -> dict[str, float]:
    """A reference on the moving probe clips: its accuracy there and the share unchanged when they are frozen."""
    scores = behaviour(model, clips, labels, batch_size=batch_size)
    return {"probe_accuracy": float(scores["acc"].mean()), "unchanged_frozen": float(scores["unchanged_frozen"].mean())}


# -- outputs ----------------------------------------------------------------------------------------
def plot_png(calibration: Calibration) -> bytes:
    """Spatial bias of both references against n_std, one panel per method, both rules (mean +- std over clips)."""
    import io

    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib import pyplot as plt

    methods = calibration.methods
    columns = min(3, len(methods))
    rows = math.ceil(len(methods) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.2 * rows), dpi=100, squeeze=False)
    grid = calibration.n_std_grid
    colours = {"motion": "tab:orange", "static": "tab:blue"}
    styles = {"std": "-", "mad": "--"}
    try:
        for ax, method in zip(axes.flat, methods, strict=False):
            for rule in calibration.thresholds:
                points = [calibration.point(method, rule, n) for n in grid]
                for reference in ("motion", "static"):
                    mean = np.array(
                        [p[reference]["mean"] if p[reference]["mean"] is not None else np.nan for p in points]
                    )
                    std = np.array([p[reference]["std"] if p[reference]["std"] is not None else np.nan for p in points])
                    ax.plot(grid, mean, styles.get(rule, "-"), color=colours[reference], label=f"{reference}, {rule}")
                    ax.fill_between(grid, mean - std, mean + std, color=colours[reference], alpha=0.12)
            recommended = calibration.recommended
            if recommended and recommended["method"] == method:
                ax.axvline(recommended["n_std"], color="black", lw=0.8, ls=":")
            ax.set_title(method, fontsize=10)
            ax.set_xlabel("n_std")
            ax.set_ylabel("spatial bias")
            ax.set_ylim(0.0, 1.02)
            ax.grid(alpha=0.3)
        for ax in list(axes.flat)[len(methods) :]:
            ax.axis("off")
        axes.flat[0].legend(fontsize=7, loc="lower right")
        figure.suptitle("Spatial bias of the motion and static references on the probe clips", fontsize=11)
        figure.tight_layout()
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png")
    finally:
        plt.close(figure)
    return buffer.getvalue()


def report_markdown(calibration: Calibration) -> str:
    """The short report: the references, the recommendation (or why there is none), and the n = 4 comparison."""
    motion, static = calibration.references["motion"], calibration.references["static"]
    lines = [
        "# Calibration of spatial bias",
        "",
        f"Clips {calibration.clip_shape} (T, H, W); {len(calibration.probe.get('indices', []))} probe clips; methods "
        f"{', '.join(calibration.methods)}; n_std grid {calibration.n_std_grid}; "
        f"rules {', '.join(calibration.thresholds)}.",
        "",
        "| reference | task | accuracy | frozen-clip accuracy | probe clips unchanged when frozen |",
        "|---|---|---:|---:|---:|",
        f"| motion | {motion['task']} | {motion['accuracy']:.3f} | {motion['frozen_accuracy']:.3f} | "
        f"{motion['unchanged_frozen']:.3f} |",
        f"| static | {static['task']} | {static['accuracy']:.3f} | {static['frozen_accuracy']:.3f} | "
        f"{static['unchanged_frozen']:.3f} |",
        "",
    ]
    if calibration.recommended is None:
        lines += [f"**No setting is recommended**: {calibration.refused or 'no setting separates the references'}.", ""]
    else:
        r = calibration.recommended
        lines += [
            f"**Recommended: `{r['method']}` with `threshold: {r['threshold']}` and `n_std: {r['n_std']:g}`**: the "
            f"references' spatial bias differs by {r['gap']:.3f} there, {r['separation']:.2f} pooled standard "
            "deviations over the probe clips, the widest separation measured.",
            "",
            "Monitor with it: `SelectiveRelevanceMonitor(calibration=PATH, methods=[...], n_std=..., threshold=...)`; "
            "`selrel/<m>/spatial_bias_calibrated` is then 0 at the motion reference and 1 at the static one.",
            "",
        ]
        if r["n_std"] in (min(calibration.n_std_grid), max(calibration.n_std_grid)):
            lines += [
                f"n_std {r['n_std']:g} is at the edge of the grid: a wider `--n-std-grid` may separate the references "
                "more.",
                "",
            ]
    lines += ["Separation per method at the paper's n_std = 4, and at the best n_std of each rule:", ""]
    lines += [
        "| method | rule | separation at n = 4 | best n_std | separation there | motion / static at best |",
        "|---|---|---:|---:|---:|---|",
    ]
    for method in calibration.methods:
        for rule in calibration.thresholds:
            points = calibration.scale[method][rule]
            at4 = points.get("4", {}).get("separation")
            best_key = max(
                points, key=lambda k: points[k]["separation"] if points[k]["separation"] is not None else -1e9
            )
            best = points[best_key]
            lines.append(
                f"| {method} | {rule} | {_fmt(at4)} | {best_key} | {_fmt(best['separation'])} | "
                f"{_fmt(best['motion']['mean'], 3)} / {_fmt(best['static']['mean'], 3)} |"
            )
    return "\n".join(lines) + "\n"


def _fmt(value: Any, digits: int = 2) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def write_outputs(calibration: Calibration, out: str | os.PathLike) -> dict[str, Path]:
    """Write ``calibration.json``, ``calibration.png`` and ``calibration.md`` into ``out``.

    Each goes to a temporary name first and is moved into place only when all three are ready, the JSON last:
    an interrupted run leaves no half-written ``calibration.json``.
    """
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    contents = {
        "calibration.png": plot_png(calibration),
        "calibration.md": report_markdown(calibration).encode(),
        "calibration.json": calibration.to_json().encode(),
    }
    temporary = {name: folder / f".{name}.{os.getpid()}.tmp" for name in contents}
    try:
        for name, data in contents.items():
            temporary[name].write_bytes(data)
        for name in contents:  # in order: the JSON, which says the calibration is complete, last
            os.replace(temporary[name], folder / name)
    finally:
        for path in temporary.values():
            path.unlink(missing_ok=True)
    return {name: folder / name for name in contents}


def elapsed(start: float) -> str:
    return f"{time.perf_counter() - start:.0f} s"


def probe_loader(dataset: Dataset, batch_size: int, num_workers: int = 0, shuffle: bool = False) -> DataLoader:
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=num_workers)
