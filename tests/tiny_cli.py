"""Command-line arguments for a tiny model and data, so that instantiating and running stay fast."""

from __future__ import annotations

#: Model and data small enough for a CPU test; a test adds its trainer limits.
TINY = [
    "--model.width=2",
    "--model.fc_dim=8",
    "--data.init_args.train_size=8",
    "--data.init_args.val_size=4",
    "--data.init_args.test_size=4",
    "--data.init_args.batch_size=4",
    "--data.init_args.clip_shape=[16,16,16]",
    "--trainer.enable_progress_bar=false",
    "--trainer.enable_model_summary=false",
]
