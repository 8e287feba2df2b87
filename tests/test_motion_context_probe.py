"""Proof on the motion/context probe: the monitor tells a model that uses motion from one that uses
static context. Both presets train the same small C3D with the same seed; only the cue differs."""

from __future__ import annotations

from pathlib import Path

import pytest
from events import load, scalars

from lightning_selrel import tags
from lightning_selrel.cli import main

REPO = Path(__file__).resolve().parents[1]
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


def _train(cue: str, root: Path) -> dict[str, float]:
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
    return {tag: values[-1][1] for tag, values in logged.items() if values[-1][0] == last}


@pytest.mark.slow
def test_monitor_tells_the_motion_model_from_the_context_model(tmp_path):
    motion, context = _train("motion", tmp_path), _train("context", tmp_path)
    report = "\n".join(
        f"{m:16s} spatial_bias motion {motion[f'selrel/{m}/spatial_bias']:.3f} context "
        f"{context[f'selrel/{m}/spatial_bias']:.3f} | selective_mask_precision motion "
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
    # GradCAM (2 temporal cells at conv5b) is reported, not asserted: see the README table.
