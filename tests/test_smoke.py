"""CI smoke training: the default small model learns, and the monitor's TensorBoard output is complete
and correct (what a user opens with `tensorboard --logdir lightning_logs`)."""

from __future__ import annotations

import io
import itertools
from pathlib import Path

import numpy as np
import pytest
import torch
from events import FRACTIONS, images, load, scalars
from PIL import Image

from lightning_selrel import C3DClassifier, explain, motion_mask, motion_precision, selective_relevance, selectivity
from lightning_selrel.commands import main
from lightning_selrel.metrics.functional import motion_mass_precision
from lightning_selrel.monitor.callback import DEFAULT_METHODS, SelectiveRelevanceMonitor
from lightning_selrel.monitor.measuring import BASELINE_SCORES


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Train the default model (with the default monitor) for a small fixed budget."""
    root = tmp_path_factory.mktemp("smoke")
    cli = main(
        [
            "fit",
            "--data.init_args.train_size=384",
            "--data.init_args.val_size=64",
            "--trainer.max_epochs=2",
            "--trainer.enable_progress_bar=false",
            f"--trainer.default_root_dir={root}",
        ]
    )
    return cli, Path(cli.trainer.log_dir)


def test_the_model_learns(run):
    _, logdir = run
    val_acc = scalars(load(logdir))["val/acc"]
    assert len(val_acc) == 2
    assert val_acc[-1][1] > 0.25 + 0.35, f"val/acc {val_acc} is not well above chance (0.25)"


def test_every_selrel_tag_is_present_finite_and_a_fraction(run):
    logged = scalars(load(run[1]))
    (monitor,) = [c for c in run[0].trainer.callbacks if isinstance(c, SelectiveRelevanceMonitor)]
    # The default C3D's conv5b resolves 2 of 16 frames: GradCAM's selective map cannot show motion, so only its
    # baseline scores are logged (docs/monitor.md, "GradCAM needs three time steps").
    assert set(monitor.unresolved) == {"gradcam"}
    assert not any(
        tag.startswith("selrel/gradcam/") and tag.split("/")[2] in {"spatial_bias", "selectivity_mass"}
        for tag in logged
    )
    for method in DEFAULT_METHODS:
        for name in FRACTIONS if method not in monitor.unresolved else sorted(BASELINE_SCORES):
            for tag in (f"selrel/{method}/{name}", f"selrel/{method}/{name}_std"):
                if name.endswith("no_relevance") and tag.endswith("_std"):
                    continue  # a share of clips, not a mean over clips
                assert tag in logged, tag
                values = np.array([v for _, v in logged[tag]])
                assert len(values) == 2, tag  # one per validation epoch
                assert np.isfinite(values).all() and (values >= 0).all() and (values <= 1).all(), (tag, values)
        for name in ("explain_ms", "selective_ms"):
            assert all(v > 0 for _, v in logged[f"selrel/{method}/{name}"])
            # A clip's time is its batch's divided by the clips: a std over clips would be a constant 0.
            assert f"selrel/{method}/{name}_std" not in logged
    for a, b in itertools.combinations(DEFAULT_METHODS, 2):
        for namespace in ("agreement", "agreement_core"):
            for tag in (f"selrel/{namespace}/{a}_vs_{b}", f"selrel/{namespace}/{a}_vs_{b}_std"):
                assert tag in logged and 0 <= logged[tag][-1][1] <= 1, tag
    # The x-axis is the global step: two validation epochs of 12 training steps each.
    assert [step for step, _ in logged["selrel/dtd/spatial_bias"]] == [11, 23]


def test_heatmap_gifs_are_written(run):
    written = images(load(run[1]))
    gifs = {tag: v for tag, v in written.items() if "/clip_" in tag}
    assert set(gifs) == {f"selrel/{m}/clip_{k}" for m in DEFAULT_METHODS for k in (0, 1)}
    assert len(written["selrel/per_class/spatial_bias"]) == 2  # the per-class chart, one per validation epoch
    for tag, events in gifs.items():
        assert len(events) == 2, tag
        blob = events[-1].encoded_image_string
        assert blob[:6] == b"GIF89a", tag
        assert Image.open(io.BytesIO(blob)).n_frames == 16, tag  # as many frames as the clip


def test_logged_precision_equals_the_functional_metrics_on_the_checkpoint(run):
    cli, logdir = run
    ckpt_path = cli.trainer.checkpoint_callback.best_model_path
    checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    (state,) = [v for k, v in checkpoint["callbacks"].items() if "SelectiveRelevanceMonitor" in k]
    indices = state["probe_indices"]["val"]
    assert len(indices) == 8
    model = C3DClassifier.load_from_checkpoint(ckpt_path, map_location="cpu")
    items = [cli.datamodule.val_set[i] for i in indices]
    clips = torch.stack([clip for clip, _, _ in items])
    exact = torch.stack([mask for _, _, mask in items])
    flow = torch.stack([motion_mask(clip, threshold=1.5) for clip, _, _ in items])  # the default flow_threshold

    relevance = explain(model, clips, "dtd")
    selective = selective_relevance(relevance, n_std=4.0)
    expected = {
        "selrel/dtd/precision": motion_precision(relevance, flow),
        "selrel/dtd/selective_precision": motion_precision(selective, flow),
        "selrel/dtd/mask_precision": motion_precision(relevance, exact),
        "selrel/dtd/selective_mask_precision": motion_precision(selective, exact),
        "selrel/dtd/mask_precision_mass": motion_mass_precision(relevance, exact),
        "selrel/dtd/selective_precision_mass": motion_mass_precision(selective, flow),
        "selrel/dtd/selectivity_area": selectivity(relevance, selective).area,
        "selrel/dtd/selectivity_core": selectivity(relevance, selective, relevant="mass", fraction=0.5).area,
        "selrel/dtd/spatial_bias": 1 - selectivity(relevance, selective).mass,
    }
    logged = scalars(load(logdir))
    for tag, per_clip in expected.items():
        assert logged[tag][-1][1] == pytest.approx(float(per_clip.nanmean()), abs=2e-5), tag
