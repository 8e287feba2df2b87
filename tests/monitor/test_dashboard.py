"""The dashboard: anchored layout regexes, margin bands, the HParams entry, and the per-class table, CSV and chart."""

from __future__ import annotations

import csv
import io
import math
import re

from PIL import Image
from tensorboard.plugins.hparams import plugin_data_pb2

from lightning_selrel.metrics import tags
from lightning_selrel.monitor import dashboard

METHODS = ["dtd", "gradcam"]


def test_every_multiline_regex_matches_its_tag_and_not_its_std():
    charts = dashboard.layout(METHODS, behaviour=True)
    regexes = [
        tag for category in charts.values() for kind, chart in category.values() if kind == "Multiline" for tag in chart
    ]
    assert regexes and all(pattern.endswith("$") for pattern in regexes)
    for pattern in regexes:
        tag = pattern[:-1].replace("\\", "")
        assert re.match(pattern, tag) and not re.match(pattern, tag + tags.STD), pattern
    margins = [chart for category in charts.values() for kind, chart in category.values() if kind == "Margin"]
    value, lower, upper = margins[0]
    assert (lower, upper) == (tags.band_tag(value, "lower"), tags.band_tag(value, "upper"))
    assert "selrel: behaviour" not in dashboard.layout(METHODS, behaviour=False)


def test_an_unresolved_method_gets_only_charts_of_its_baseline_scores():
    charts = dashboard.layout(METHODS, unresolved={"gradcam"})
    named = {title: chart for category in charts.values() for title, chart in category.items()}
    logged = {tags.method_tag("gradcam", name) for name in ("precision", "precision_mass", "mask_precision")}
    logged |= {tags.method_tag("gradcam", "mask_precision_mass")}
    for title, (kind, series) in named.items():
        for pattern in series if kind == "Multiline" else []:
            tag = pattern[:-1].replace("\\", "")
            assert not tag.startswith("selrel/gradcam/") or tag in logged, (title, tag)
        if kind == "Margin":
            assert not series[0].startswith("selrel/gradcam/"), title
    assert "gradcam: motion precision by area of the baseline map (flow, exact masks)" in named
    assert "dtd: spatial bias, mean +- std over probe clips" in named


def test_bands_are_mean_minus_and_plus_std():
    tag = tags.method_tag("dtd", "spatial_bias")
    values = {tag: 0.8, tag + "_std": 0.1, tags.method_tag("gradcam", "spatial_bias"): 0.9}  # gradcam: no std
    bands = dashboard.bands(values, dashboard.banded_tags(METHODS))
    assert bands == {"selrel_band/dtd/spatial_bias/lower": 0.8 - 0.1, "selrel_band/dtd/spatial_bias/upper": 0.8 + 0.1}


def test_hparams_entry_declares_the_metric_columns():
    exp, ssi, _ = dashboard.hparams_summaries(
        {"selrel/methods": "dtd,gradcam", "lr": 1e-3, "data/cue": None, "clip": [16, 48, 48]}, ["val/acc", "x"]
    )
    experiment = plugin_data_pb2.HParamsPluginData.FromString(exp.value[0].metadata.plugin_data.content).experiment
    assert [m.name.tag for m in experiment.metric_infos] == ["val/acc", "x"]
    start = plugin_data_pb2.HParamsPluginData.FromString(ssi.value[0].metadata.plugin_data.content).session_start_info
    assert start.hparams["clip"].string_value == "[16, 48, 48]" and "data/cue" not in start.hparams


def test_per_class_rows_sort_most_static_first_and_write_a_table_a_csv_and_a_chart(tmp_path):
    labels = [0, 0, 1, 2, 2, 2]
    bias = {"dtd": [0.5, 0.7, 0.9, float("nan"), 0.2, 0.4], "gradcam": [0.1] * 6}
    rows = dashboard.per_class_rows(labels, ["a", "b", "c"], bias, reliance=[0.1] * 6, correct=[1, 0, 1, 1, 1, 0])
    assert [r["class"] for r in rows] == ["b", "a", "c"]  # 0.9, 0.6, 0.3
    assert rows[1]["clips"] == 2 and math.isclose(rows[1]["spatial_bias_dtd"], 0.6) and rows[1]["acc"] == 0.5
    assert math.isclose(rows[2]["spatial_bias_dtd"], 0.3)  # the clip without a value is left out
    table = dashboard.markdown_table(rows, "**heading**")
    assert table.startswith("**heading**") and "| b | 1 | 1.000 | 0.100 | 0.900 | 0.100 |" in table
    path = tmp_path / "per_class.csv"
    dashboard.append_csv(path, rows, epoch=0, step=10)
    dashboard.append_csv(path, rows, epoch=1, step=20)  # appended: the earlier epoch stays
    read = list(csv.DictReader(path.open()))
    assert len(read) == 6 and read[0]["epoch"] == "0" and read[-1]["step"] == "20" and read[0]["class"] == "b"
    png, height, width = dashboard.bar_chart_png(rows, list(bias), "per class")
    with Image.open(io.BytesIO(png)) as image:
        assert image.format == "PNG" and image.size == (width, height)


def test_charts_leave_the_callers_matplotlib_backend_alone():
    import matplotlib

    before = matplotlib.get_backend()
    try:
        matplotlib.use("svg")  # a notebook's inline backend, say: ours must not replace it
        rows = dashboard.per_class_rows([0, 1], ["a", "b"], {"dtd": [0.5, 0.7]}, reliance=[0.1, 0.2], correct=[1, 0])
        png, height, width = dashboard.bar_chart_png(rows, ["dtd"], "t")
        assert png.startswith(b"\x89PNG") and height > 0 and width > 0
        assert matplotlib.get_backend() == "svg"
    finally:
        matplotlib.use(before)
