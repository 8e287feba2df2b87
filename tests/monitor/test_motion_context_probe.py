"""Proof on the motion/context probe: the monitor tells a model that uses motion from one that uses
static context, and a calibration on the built-in data puts them on its scale in that order. Both presets train
the same small C3D with the same seed; only the cue differs. The two models are trained once for the module."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from events import load, scalars

from lightning_selrel import C3DClassifier, MotionContextDataModule, SelectiveRelevanceMonitor
from lightning_selrel.commands import main
from lightning_selrel.metrics import tags
from lightning_selrel.monitor.calibration import load_calibration, per_clip_bias
from lightning_selrel.monitor.probe_set import choose_indices

REPO = Path(__file__).resolve().parents[2]
METHODS = ["dtd", "gradcam", "guided_backprop", "guided_gradcam"]
# A smaller budget than the presets (README table): enough for both models to learn their cue.
BUDGET = [
    "--data.init_args.train_size=512",
    "--data.init_args.val_size=64",
    "--trainer.max_epochs=3",
    "--trainer.enable_progress_bar=false",
    "--trainer.enable_model_summary=false",
    "--trainer.callbacks.init_args.methods=[" + ",".join(METHODS) + "]",
    "--trainer.callbacks.init_args.num_clips=16",
    "--trainer.callbacks.init_args.num_videos=0",
]


@dataclass
class Probe:
    logged: dict[str, float]  # every tag at the last validation
    model: C3DClassifier
    datamodule: MotionContextDataModule


def _train(cue: str, root: Path) -> Probe:
    cli = main(
        [
            "fit",
            "--config",
            str(REPO / "configs" / f"probe_{cue}.yaml"),
            *BUDGET,
            f"--trainer.default_root_dir={root / cue}",
        ]
    )
    logged = scalars(load(cli.trainer.log_dir))
    last = logged["val/acc"][-1][0]  # the last validation's step: a tag not logged there has no current value
    current = {tag: values[-1][1] for tag, values in logged.items() if values[-1][0] == last}
    return Probe(current, cli.model.eval(), cli.datamodule)


@pytest.fixture(scope="module")
def probes(tmp_path_factory) -> dict[str, Probe]:
    root = tmp_path_factory.mktemp("probe")
    return {cue: _train(cue, root) for cue in ("motion", "context")}


@pytest.mark.slow
def test_monitor_tells_the_motion_model_from_the_context_model(probes):
    motion, context = probes["motion"].logged, probes["context"].logged
    report = "\n".join(
        f"{m:16s} spatial_bias motion {motion.get(f'selrel/{m}/spatial_bias', float('nan')):.3f} context "
        f"{context.get(f'selrel/{m}/spatial_bias', float('nan')):.3f} | selective_mask_precision motion "
        f"{motion.get(f'selrel/{m}/selective_mask_precision', float('nan')):.3f} context "
        f"{context.get(f'selrel/{m}/selective_mask_precision', float('nan')):.3f}"
        for m in METHODS
    )
    print(report)
    behaviour = " | ".join(
        f"{name} motion {motion[tags.behaviour_tag(name)]:.3f} context {context[tags.behaviour_tag(name)]:.3f}"
        for name in tags.BEHAVIOUR
    )
    print(behaviour)
    assert motion["val/acc"] > 0.9 and context["val/acc"] > 0.9, "both models must have learned their cue"
    # The behavioural second opinion orders the models as spatial bias does: without motion the context model
    # keeps its predictions, the motion model loses them.
    assert context[tags.behaviour_tag("acc_frozen")] > motion[tags.behaviour_tag("acc_frozen")], behaviour
    assert context[tags.behaviour_tag("unchanged_frozen")] > motion[tags.behaviour_tag("unchanged_frozen")], behaviour
    assert motion[tags.behaviour_tag("reliance")] > context[tags.behaviour_tag("reliance")], behaviour
    assert motion[tags.behaviour_tag("contrasted_acc")] > context[tags.behaviour_tag("contrasted_acc")], behaviour
    # Clip by clip, a rank correlation of spatial bias with reliance where reliance varies (the motion model).
    assert -1.0 <= motion[tags.method_tag("dtd", tags.CORRELATION)] <= 1.0
    for m in ("dtd", "guided_backprop", "guided_gradcam"):
        assert context[f"selrel/{m}/spatial_bias"] > motion[f"selrel/{m}/spatial_bias"], report
        assert motion[f"selrel/{m}/selective_mask_precision"] > context[f"selrel/{m}/selective_mask_precision"], report
    # GradCAM reads conv5b, 2 time steps of 16 frames: its selective scores are not reported at all.
    assert "selrel/gradcam/spatial_bias" not in motion and "selrel/gradcam/precision_mass" in motion


def _separation(motion: list[float], context: list[float]) -> float:
    """Paired over the clips both models have a value for, as calibrate's: mean difference over its std."""
    d = np.array(context, dtype=float) - np.array(motion, dtype=float)
    d = d[np.isfinite(d)]
    return float(d.mean() / d.std())


@pytest.mark.slow
def test_a_calibration_on_the_built_in_data_orders_the_probe_models_on_its_scale(probes, tmp_path, monkeypatch):
    """`calibrate` on the default built-in data (a smaller budget), then the probe models on its scale."""
    monkeypatch.chdir(tmp_path)
    budget = ["--train-clips=512", "--epochs=3", "--probe-clips=16", "--val-clips=64"]
    main(["calibrate", "--out", "cal", *budget, "--data.init_args.val_size=64", "--trainer.enable_progress_bar=false"])
    assert {p.name for p in (tmp_path / "cal").iterdir()} == {"calibration.json", "calibration.png", "calibration.md"}
    calibration = load_calibration(tmp_path / "cal")
    assert calibration.refused is None, calibration.refused
    assert calibration.references["motion"]["frozen_accuracy"] == pytest.approx(0.5)  # only motion tells speed
    best = calibration.recommended
    method, rule, n_std = best["method"], best["threshold"], best["n_std"]
    print(f"recommended {method} {rule} n_std {n_std:g}: separation {best['separation']:.2f}")

    # The recommendation is chosen on half of the calibration's probe clips and measured on the other half; it must
    # also hold on other models: on 32 validation clips of the probe models' own data, the recommended setting
    # separates them by at least the calibration's minimum. The paper's n = 4 is printed beside it.
    assert best["separation"] >= calibration.min_separation and best["clips"] >= 4
    values = {}
    for cue, probe in probes.items():
        dataset = probe.datamodule.val_set
        indices = choose_indices(len(dataset), 32, seed=0)
        clips = torch.stack([dataset[i][0] for i in indices])
        values[cue] = per_clip_bias(probe.model, clips, [method], sorted({n_std, 4.0}))[method][rule]
    at_best = _separation(values["motion"][f"{n_std:g}"], values["context"][f"{n_std:g}"])
    at_four = _separation(values["motion"]["4"], values["context"]["4"])
    print(f"probe separation at the recommended n_std {at_best:.2f}, at n_std 4 {at_four:.2f}")
    assert at_best >= calibration.min_separation, (at_best, at_four)

    # On the calibration's scale the motion model reads below the context model.
    on_scale = {}
    for cue, probe in probes.items():
        monitor = SelectiveRelevanceMonitor(
            methods=[method], n_std=n_std, threshold=rule, calibration=str(tmp_path / "cal"), num_videos=0
        )
        trainer = pl.Trainer(logger=False, callbacks=[monitor], enable_progress_bar=False, enable_model_summary=False)
        trainer.validate(probe.model, probe.datamodule)
        on_scale[cue] = float(trainer.callback_metrics[tags.method_tag(method, tags.CALIBRATED)])
    print(f"calibrated spatial bias: motion {on_scale['motion']:.3f}, context {on_scale['context']:.3f}")
    assert on_scale["motion"] < on_scale["context"], on_scale
