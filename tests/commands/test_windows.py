"""One window of the explain command: its record holds every reported metric, None without a ground truth."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lightning_selrel import C3DClassifier
from lightning_selrel.commands.windows import METRICS, WindowExplainer, json_safe, summarise

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("flow", ["farneback", None])
def test_a_window_record_and_its_panels(flow):
    torch.manual_seed(0)
    model = C3DClassifier(num_classes=4, width=2, fc_dim=8, clip_shape=(16, 16, 16), class_names=list("abcd")).eval()
    frames = np.random.default_rng(0).integers(0, 256, (16, 16, 16, 3), dtype=np.uint8)
    explainer = WindowExplainer(model, ["dtd", "gradcam"], n_std=4.0, flow=flow, threshold="mad")
    record, panels = explainer(frames, first=5)
    assert (record["start"], record["end"], record["loop_padded"]) == (5, 20, False)
    assert record["prediction"]["name"] in "abcd"
    for method in ("dtd", "gradcam"):
        values = record["methods"][method]
        assert tuple(values) == METRICS
        assert (values["precision"] is None) == (flow is None) and values["spatial_bias"] is not None
    assert panels.shape[0] == 16 and panels.dtype == np.uint8
    display = np.random.default_rng(1).integers(0, 256, (16, 200, 200, 3), dtype=np.uint8)
    _, drawn = explainer(frames, first=5, display=display)  # on the source frames: three 200 px panels per row
    assert drawn.shape[0] == 16 and drawn.shape[2] == 3 * 200 and drawn.shape[1] > 2 * 200
    summary = summarise([record, record], ["dtd", "gradcam"], seconds=2.0)
    assert summary["windows"] == 2 and summary["windows_per_s"] == 1.0
    assert json_safe({"x": float("nan"), "y": np.float32(1.5)}) == {"x": None, "y": 1.5}
