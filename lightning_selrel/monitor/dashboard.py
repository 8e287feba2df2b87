"""What the monitor writes for a person to read: the custom-scalars layout, the HParams entry, and the per-class view.

- :func:`layout`: TensorBoard's Custom Scalars tab. A multiline chart's tags are regular expressions that
  TensorBoard applies with ``re.match`` (anchored at the start only), so ``selrel/dtd/spatial_bias`` would also
  chart ``selrel/dtd/spatial_bias_std``: every tag here is escaped and ends in ``$``
  (:func:`exact`). Means with a spread are margin charts: the mean between mean - std and mean + std, which the
  monitor logs as :func:`lightning_selrel.metrics.tags.band_tag` tags (:func:`bands`).
- :func:`hparams_summaries`: one HParams entry per run (what was compared: methods, ``n_std``, threshold rule,
  data cue, model width, learning rate, ...) whose metric columns are the run's final ``val/acc`` and per-method
  spatial bias, read by TensorBoard from the logged scalars. TensorBoard keeps the first HParams entry of a run.
- :func:`per_class_rows`, :func:`markdown_table`, :func:`append_csv`, :func:`bar_chart_png`: the per-class view
  of spatial bias, motion reliance and accuracy, most static class first.
"""

from __future__ import annotations

import csv
import io
import math
import os
import re
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tensorboard.compat.proto.summary_pb2 import Summary

from lightning_selrel.metrics import tags

__all__ = [
    "append_csv",
    "bands",
    "bar_chart_png",
    "exact",
    "hparams_summaries",
    "image_summary",
    "layout",
    "markdown_table",
    "per_class_rows",
]

#: Per-method scores shown as margin charts (mean +- std over clips).
BANDED_SCORES = ("spatial_bias", "selective_precision_mass", "selective_mask_precision_mass")


def exact(tag: str) -> str:
    """A custom-scalars regular expression that matches ``tag`` and nothing else."""
    return re.escape(tag) + "$"


def _margin(tag: str) -> list[Any]:
    return ["Margin", [tag, tags.band_tag(tag, "lower"), tags.band_tag(tag, "upper")]]


def banded_tags(methods: Sequence[str], behaviour: bool = True, calibrated: bool = False) -> list[str]:
    """The tags whose mean +- std the monitor logs for the margin charts."""
    banded = [tags.method_tag(m, name) for m in methods for name in BANDED_SCORES]
    if calibrated:
        banded += [tags.method_tag(m, tags.CALIBRATED) for m in methods]
    behavioural = [tags.behaviour_tag("reliance"), tags.behaviour_tag(tags.CONFLICT[2])] if behaviour else []
    return [*banded, tags.FLOW_IOU, *behavioural]


def bands(values: Mapping[str, float], banded: Sequence[str]) -> dict[str, float]:
    """``band_tag(tag, "lower" / "upper")`` = mean -+ std for every banded tag that has a mean and a std."""
    out = {}
    for tag in banded:
        if tag in values and tag + tags.STD in values:
            mean, std = values[tag], values[tag + tags.STD]
            out[tags.band_tag(tag, "lower")], out[tags.band_tag(tag, "upper")] = mean - std, mean + std
    return out


def layout(
    methods: Sequence[str],
    *,
    behaviour: bool = True,
    calibrated: bool = False,
    unresolved: Collection[str] = (),
    conflict: bool = False,
    name: str | None = None,
) -> dict[str, dict[str, list]]:
    """The custom-scalars layout, in the form ``SummaryWriter.add_custom_scalars`` takes.

    ``name``: the monitor's name (:func:`lightning_selrel.metrics.tags.named`): its categories read
    ``selrel (<name>): ...`` and chart its tags, so that the layouts of several monitors of one run merge.

    ``unresolved`` methods (GradCAM on a layer with fewer than three time steps: the monitor logs only their
    baseline scores) get their baseline precision charts and no chart of a selective score, so that no chart of
    the dashboard stays empty. ``conflict``: the data give cue-conflict clips (their shares join the behaviour
    charts)."""
    selective = [m for m in methods if m not in unresolved]
    bias: dict[str, list] = {
        "spatial bias, all methods": ["Multiline", [exact(tags.method_tag(m, "spatial_bias")) for m in selective]],
    }
    if calibrated:
        bias["spatial bias on the calibration's scale (0 motion reference, 1 static reference)"] = [
            "Multiline",
            [exact(tags.method_tag(m, tags.CALIBRATED)) for m in selective],
        ]
    bias["spatial bias over non-empty selective maps, and the share of empty ones"] = [
        "Multiline",
        [exact(tags.method_tag(m, name)) for m in selective for name in (tags.NONEMPTY, "selective_no_relevance")],
    ]
    for m in selective:
        bias[f"{m}: spatial bias, mean +- std over probe clips"] = _margin(tags.method_tag(m, "spatial_bias"))
        if calibrated:
            bias[f"{m}: calibrated spatial bias, mean +- std"] = _margin(tags.method_tag(m, tags.CALIBRATED))
    precision: dict[str, list] = {}
    for m in methods:
        flow, mask = tags.PRECISION["flow"], tags.PRECISION["exact"]
        if m in unresolved:
            precision[f"{m}: motion mass precision of the baseline map (flow, exact masks)"] = [
                "Multiline",
                [exact(tags.method_tag(m, name)) for name in (flow[2], mask[2])],
            ]
            precision[f"{m}: motion precision by area of the baseline map (flow, exact masks)"] = [
                "Multiline",
                [exact(tags.method_tag(m, name)) for name in (flow[0], mask[0])],
            ]
            continue
        precision[f"{m}: motion mass precision, baseline and selective (flow, exact masks)"] = [
            "Multiline",
            [exact(tags.method_tag(m, name)) for name in (flow[2], flow[3], mask[2], mask[3])],
        ]
        precision[f"{m}: selective motion mass precision (exact masks), mean +- std"] = _margin(
            tags.method_tag(m, mask[3])
        )
        precision[f"{m}: motion precision by area, the paper's (flow, exact masks)"] = [
            "Multiline",
            [exact(tags.method_tag(m, name)) for name in (flow[0], flow[1], mask[0], mask[1])],
        ]
    precision["optical flow against the exact motion masks: IoU per probe clip, mean +- std"] = _margin(tags.FLOW_IOU)
    out = {"selrel: spatial bias": bias, "selrel: motion precision": precision}
    if behaviour:
        out["selrel: behaviour"] = {
            "accuracy on the probe clips, as they are and with the motion removed or scrambled": [
                "Multiline",
                [exact(tags.behaviour_tag(n)) for n in ("acc", "acc_frozen", "acc_shuffled", "acc_reversed")],
            ],
            "predictions unchanged when frozen, and contrasted accuracy": [
                "Multiline",
                [exact(tags.behaviour_tag(n)) for n in ("unchanged_frozen", "contrasted_acc")],
            ],
            "motion reliance: probability lost when frozen, mean +- std": _margin(tags.behaviour_tag("reliance")),
            "rank correlation over clips of spatial bias with motion reliance (Spearman)": [
                "Multiline",
                [exact(tags.method_tag(m, tags.CORRELATION)) for m in selective],
            ],
        }
        if conflict:
            share, neither, prob = tags.CONFLICT
            out["selrel: behaviour"][
                "cue conflict: predictions following the motion (of those following a cue), and following neither"
            ] = ["Multiline", [exact(tags.behaviour_tag(n)) for n in (share, neither)]]
            out["selrel: behaviour"]["cue conflict: p(motion class) / (p(motion) + p(context)), mean +- std"] = _margin(
                tags.behaviour_tag(prob)
            )
    return out if not name else _named_layout(out, name)


def _named_layout(charts: dict[str, dict[str, list]], name: str) -> dict[str, dict[str, list]]:
    """``charts`` of a monitor called ``name``: its categories titled apart and every regular expression matching
    the named tag (each starts with an escaped tag of :func:`exact`, so the name goes in after the group)."""

    def rename(pattern: str) -> str:
        for group in (f"{tags.PREFIX}/", f"{tags.PREFIX}_band/"):
            if pattern.startswith(re.escape(group)):
                return re.escape(group) + re.escape(f"{name}/") + pattern[len(re.escape(group)) :]
        return pattern

    return {
        title.replace(f"{tags.PREFIX}:", f"{tags.PREFIX} ({name}):", 1): {
            chart: [kind, [rename(pattern) for pattern in patterns]] for chart, (kind, patterns) in category.items()
        }
        for title, category in charts.items()
    }


def hparams_summaries(params: Mapping[str, Any], metric_tags: Sequence[str]) -> tuple[Summary, Summary, Summary]:
    """TensorBoard's three HParams summaries (experiment, session start, session end) for one run.

    ``params`` values must be int, float, str or bool (others are written as their ``str``); the metric columns
    are ``metric_tags``, whose values TensorBoard takes from the run's scalars (their last value).
    """
    from torch.utils.tensorboard.summary import hparams

    clean = {k: v if isinstance(v, (bool, int, float, str)) else str(v) for k, v in params.items() if v is not None}
    return hparams(clean, {tag: 0.0 for tag in metric_tags})


def image_summary(tag: str, encoded: bytes, height: int, width: int) -> Summary:
    """An image summary of an encoded PNG or GIF."""
    image = Summary.Image(height=height, width=width, colorspace=3, encoded_image_string=encoded)
    return Summary(value=[Summary.Value(tag=tag, image=image)])


# -- per class ----------------------------------------------------------------------------------
def _nanmean(values: np.ndarray) -> float:
    kept = values[~np.isnan(values)]
    return float(kept.mean()) if kept.size else math.nan


def per_class_rows(
    labels: Sequence[int],
    class_names: Sequence[str],
    bias: Mapping[str, Sequence[float]],
    reliance: Sequence[float] | None = None,
    correct: Sequence[float] | None = None,
) -> list[dict[str, Any]]:
    """One row per class present in ``labels``, sorted by the first method's spatial bias, most static first.

    Each row: ``class_index``, ``class``, ``clips``, ``acc`` and ``reliance`` (means over the class's clips, when
    given) and ``spatial_bias_<m>`` per method (mean over the clips that have a value; NaN if none).
    """
    labels = np.asarray(labels, dtype=np.int64)
    rows = []
    for label in sorted(set(labels.tolist())):
        members = labels == label
        name = class_names[label] if 0 <= label < len(class_names) else str(label)
        row: dict[str, Any] = {"class_index": label, "class": name, "clips": int(members.sum())}
        if correct is not None:
            row["acc"] = _nanmean(np.asarray(correct, dtype=np.float64)[members])
        if reliance is not None:
            row["reliance"] = _nanmean(np.asarray(reliance, dtype=np.float64)[members])
        for method, values in bias.items():
            row[f"spatial_bias_{method}"] = _nanmean(np.asarray(values, dtype=np.float64)[members])
        rows.append(row)
    first = f"spatial_bias_{next(iter(bias))}" if bias else None
    if first is not None:
        rows.sort(key=lambda r: (math.isnan(r[first]), -r[first] if not math.isnan(r[first]) else 0.0))
    return rows


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return "-" if math.isnan(value) else f"{value:.3f}"
    return str(value)


def markdown_table(
    rows: Sequence[Mapping[str, Any]], heading: str = "", headers: Mapping[str, str] | None = None
) -> str:
    """The rows as a Markdown table (TensorBoard's Text tab renders it), with an optional heading line.

    ``headers`` renames columns for display (the per-class view shows ``spatial_bias_dtd`` as ``dtd``).
    """
    if not rows:
        return heading + "\n\n(no probe clips)"
    columns = list(rows[0])
    shown = [(headers or {}).get(c, c) for c in columns]
    lines = [heading, ""] if heading else []
    lines += ["| " + " | ".join(shown) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(row[c]) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def append_csv(path: str | os.PathLike, rows: Sequence[Mapping[str, Any]], **context: Any) -> None:
    """Append the rows to a CSV file (created with a header), each prefixed by the ``context`` columns
    (e.g. ``epoch``, ``step``); an existing file keeps its rows. The whole file is written to a temporary name and
    moved over the old one, so a run killed while writing leaves the old rows or the new ones, never half a row."""
    if not rows:
        return
    path = Path(path)
    columns = list(context) + list(rows[0])
    before = path.read_bytes() if path.exists() else b""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\r\n")
    if not before:
        writer.writeheader()
    for row in rows:
        writer.writerow(
            {**context, **{k: ("" if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}}
        )
    temporary = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        temporary.write_bytes(before + out.getvalue().encode())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def bar_chart_png(rows: Sequence[Mapping[str, Any]], methods: Sequence[str], title: str) -> tuple[bytes, int, int]:
    """A horizontal bar chart of the per-class spatial bias, one bar per method, most static class on top.

    Returns:
        The PNG bytes, its height and its width in pixels.
    """
    from matplotlib.figure import Figure  # a figure of its own: the caller's pyplot backend is left alone

    classes = [str(r["class"]) for r in rows]
    height = max(2.8, 0.28 * len(classes) * max(1, len(methods)) ** 0.5 + 1.6)
    figure = Figure(figsize=(8.0, height), dpi=100)
    axes = figure.subplots()
    positions = np.arange(len(classes))
    width = 0.8 / max(1, len(methods))
    for k, method in enumerate(methods):
        values = [r[f"spatial_bias_{method}"] for r in rows]
        axes.barh(positions + (k - (len(methods) - 1) / 2) * width, values, height=width, label=method)
    axes.set_yticks(positions, classes)
    axes.invert_yaxis()  # the most static class (first row) on top
    axes.set_xlim(0.0, 1.0)
    axes.set_xlabel("spatial bias (share of positive relevance constant in time)")
    axes.set_title(title, fontsize=10)
    axes.grid(axis="x", alpha=0.3)
    axes.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16 * 4 / height), ncol=len(methods))
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    w, h = figure.canvas.get_width_height()
    return buffer.getvalue(), int(h), int(w)
