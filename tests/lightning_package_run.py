"""Run by tests/test_lightning_package.py in a process of its own: a user of the unified ``lightning`` package
(``import lightning.pytorch as L`` first) trains the classifier with the monitor and the mitigation under
Lightning's own Trainer and TensorBoardLogger, then runs the command line; prints what happened as JSON."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import lightning.pytorch as L  # noqa: N812  (the unified package's own convention)
import torch

from lightning_selrel import MotionContextDataModule, SelectiveRelevanceMonitor, StaticBiasMitigation, VideoClassifier
from lightning_selrel._lightning import PACKAGE
from lightning_selrel.commands import main


def run(out: Path) -> dict:
    dm = MotionContextDataModule(clip_shape=(16, 16, 16), train_size=8, val_size=8, batch_size=4)
    torch.manual_seed(0)
    model = VideoClassifier(num_classes=4, width=2, fc_dim=8, clip_shape=(16, 16, 16), class_names=dm.class_names)
    monitor = SelectiveRelevanceMonitor(methods=["dtd"], num_clips=2, num_videos=1, num_conflict_clips=4)
    trainer = L.Trainer(
        accelerator="cpu",
        max_epochs=1,
        limit_train_batches=1,
        num_sanity_val_steps=0,
        enable_progress_bar=False,
        enable_model_summary=False,
        logger=L.loggers.TensorBoardLogger(str(out), name="", version=""),
        callbacks=[monitor, StaticBiasMitigation()],
    )
    trainer.fit(model, dm)
    cli = main(
        ["fit", "--model.width=2", "--model.fc_dim=8", "--data.init_args.train_size=8", "--data.init_args.val_size=4"]
        + ["--data.init_args.clip_shape=[16,16,16]", "--trainer.fast_dev_run=1", "--trainer.enable_progress_bar=false"]
        + [f"--trainer.default_root_dir={out / 'cli'}"]
    )
    return {
        "package": PACKAGE,
        "pytorch_lightning_imported": "pytorch_lightning" in sys.modules,
        "metrics": sorted(trainer.callback_metrics),
        "events": [p.name for p in out.glob("events.out.tfevents.*")],
        "cli_trainer": type(cli.trainer).__module__,
        "cli_finished": bool(cli.trainer.state.finished),
    }


if __name__ == "__main__":
    print("RESULT " + json.dumps(run(Path(sys.argv[1]))))
