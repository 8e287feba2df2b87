"""The calibration's report: ``calibration.json``, a plot and a Markdown table, written atomically."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from lightning_selrel.monitor.calibration.scale import Calibration

__all__ = ["cannot_tell", "plot_png", "report_markdown", "write_outputs"]


def cannot_tell(calibration: Calibration, n_std: float = 4.0) -> dict[str, str]:
    """Per method whose spatial bias orders the references the wrong way round at ``n_std`` under every threshold
    rule (the static reference reads at or below the motion reference), why it cannot tell motion from context on
    these clips. A measurement of the method on the user's data, reported whether or not the calibration was
    refused (a reference that did not learn still shows how the maps of a motion-trained model look)."""
    out = {}
    for method in calibration.methods:
        gaps = {}
        for rule in calibration.thresholds:
            point = calibration.scale.get(method, {}).get(rule, {}).get(f"{n_std:g}")
            if point is None or point.get("gap") is None or not math.isfinite(point["gap"]):
                break
            gaps[rule] = point["gap"]
        else:
            if gaps and all(gap <= 0 for gap in gaps.values()):
                read = ", ".join(f"gap {gap:+.3f} ({rule})" for rule, gap in gaps.items())
                out[method] = (
                    f"at n_std {n_std:g} the static reference reads at or below the motion reference ({read}): "
                    f"{method}'s spatial bias cannot tell a motion model from a context model on these clips"
                )
    return out


def plot_png(calibration: Calibration) -> bytes:
    """Spatial bias of both references against n_std, one panel per method, both rules (mean +- std over clips)."""
    import io

    from matplotlib.figure import Figure  # a figure of its own: the caller's pyplot backend is left alone

    methods = calibration.methods
    columns = min(3, len(methods))
    rows = math.ceil(len(methods) / columns)
    figure = Figure(figsize=(4.2 * columns, 3.2 * rows), dpi=100)
    axes = figure.subplots(rows, columns, squeeze=False)
    grid = calibration.n_std_grid
    colours = {"motion": "tab:orange", "static": "tab:blue"}
    styles = {"std": "-", "mad": "--"}
    for ax, method in zip(axes.flat, methods, strict=False):
        for rule in calibration.thresholds:
            points = [calibration.point(method, rule, n) for n in grid]
            for reference in ("motion", "static"):
                mean = np.array([p[reference]["mean"] if p[reference]["mean"] is not None else np.nan for p in points])
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
    for name in ("motion", "static"):
        training = calibration.references[name].get("training")
        if training:
            best, runs = training.get("best_val_accuracy"), training["epochs_run"]
            kept = "-" if training.get("best_epoch") is None else training["best_epoch"] + 1
            lines.append(
                f"- the {name} reference trained {runs} epoch{'' if runs == 1 else 's'} ({training['stopped']}); "
                f"kept epoch {kept} (validation accuracy {_fmt(best, 3)}); "
                f"{len(training.get('recoveries', []))} recoveries from a collapse"
            )
    settings = calibration.settings
    apart = calibration.probe.get("kept_apart_from")
    lines += [
        f"- maps at signed={settings.get('signed')}, target={settings.get('target')}, GradCAM layer "
        f"{settings.get('gradcam_layer') or '-'}, normalisation {settings.get('normalisation') or 'none'}",
        "- probe clips "
        + (
            f"disjoint from the monitor's {len(apart)} validation clips"
            if apart
            else "not kept apart from the monitor's (too few validation clips)"
        )
        + _still_line(calibration.probe),
        "",
    ]
    if calibration.recommended is None:
        lines += [f"**No setting is recommended**: {calibration.refused or 'no setting separates the references'}.", ""]
    else:
        r = calibration.recommended
        lines += [
            f"**Recommended: `{r['method']}` with `threshold: {r['threshold']}` and `n_std: {r['n_std']:g}`**: chosen "
            f"as the widest separation on half of the probe clips ({r['selection_separation']:.2f}); on the other "
            f"half, which did not choose it, the static reference reads {r['gap']:.3f} above the motion reference, "
            f"{r['separation']:.2f} standard deviations of the per-clip difference (minimum "
            f"{calibration.min_separation:g}).",
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
    for method, reason in cannot_tell(calibration).items():
        lines += [f"**{method} cannot tell motion from context here**: {reason}.", ""]
    lines += [
        "Separation (paired over all probe clips: the mean per-clip difference over its standard deviation) per "
        "method at the paper's n_std = 4, and at the best n_std of each rule (read on the clips that chose it, so "
        "optimistic):",
        "",
    ]
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


def _still_line(probe: dict) -> str:
    still, minimum = probe.get("still_left_out"), probe.get("min_probe_motion")
    if not still:
        return ""
    return (
        f"; {len(still)} still clips (mean frame difference below {minimum:g} grey levels) left out and replaced: "
        "a motion model has no motion to use on them"
    )


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
