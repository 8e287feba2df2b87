"""``python -m lightning_selrel``: LightningCLI around :class:`C3DClassifier`, as a callable function.

With no arguments, ``fit`` trains a small C3D on the built-in motion/context data on a CPU in a
few minutes; ``configs/synthetic.yaml`` spells out exactly these defaults (a test keeps the two in
step). Any other data module is chosen with ``--data CLASS`` or a config's ``data: class_path:``;
the data module's ``num_classes``, ``clip_shape`` and ``class_names`` flow into the model, so a
checkpoint carries everything needed to rebuild and annotate it.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from jsonargparse import Namespace
from pytorch_lightning.cli import ArgsType, LightningArgumentParser, LightningCLI
from typing_extensions import override

from .classifier import C3DClassifier

__all__ = [
    "CALLBACK_DEFAULTS",
    "DATA_DEFAULT",
    "MODEL_DEFAULTS",
    "TRAINER_DEFAULTS",
    "SelrelCLI",
    "cli_options",
    "console",
    "main",
]

# The small model the default run trains (the standard C3D is width 64, fc_dim 4096).
MODEL_DEFAULTS: dict[str, Any] = {
    "model.width": 8,
    "model.fc_dim": 128,
    "model.dropout": 0.2,
    "model.optimizer": {"class_path": "torch.optim.Adam", "init_args": {"lr": 1e-3}},
    "model.scheduler": {
        "class_path": "torch.optim.lr_scheduler.ReduceLROnPlateau",
        "init_args": {"mode": "min", "factor": 0.1, "patience": 10},
    },
}
DATA_DEFAULT: dict[str, Any] = {"class_path": "lightning_selrel.MotionContextDataModule"}
TRAINER_DEFAULTS: dict[str, Any] = {
    "max_epochs": 3,
    "log_every_n_steps": 8,
}
# The monitor is a default of `trainer.callbacks`, not a forced callback: it shows in --print_config,
# a config's own `callbacks:` list replaces it, and `callbacks+:` presets add to it.
MONITOR = "lightning_selrel.SelectiveRelevanceMonitor"
CALLBACK_DEFAULTS: list[dict[str, Any]] = [{"class_path": MONITOR}]


class SelrelCLI(LightningCLI):
    """LightningCLI with the data module's shape and classes linked into the model."""

    @override
    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        # Lists, not tuples: Lightning compares the model's and the data module's hyperparameters.
        parser.link_arguments("data.num_classes", "model.num_classes", apply_on="instantiate")
        parser.link_arguments("data.clip_shape", "model.clip_shape", compute_fn=list, apply_on="instantiate")
        parser.link_arguments("data.class_names", "model.class_names", compute_fn=list, apply_on="instantiate")
        parser.set_defaults({"data": DATA_DEFAULT, "trainer.callbacks": CALLBACK_DEFAULTS, **MODEL_DEFAULTS})

    @override
    def before_instantiate_classes(self) -> None:
        """Keep one monitor: a preset that adds one (``callbacks/selrel_monitor.yaml``) replaces the default; and
        the default logger without Lightning's ``hp_metric`` placeholder (the monitor writes the HParams entry)."""
        config = self.config[self.subcommand] if self.subcommand else self.config
        if config.trainer.logger in (None, True):  # what the Trainer would build, with the placeholder off
            config.trainer.logger = Namespace(
                class_path="pytorch_lightning.loggers.TensorBoardLogger",
                init_args=Namespace(save_dir=config.trainer.default_root_dir or os.getcwd(), default_hp_metric=False),
            )
        callbacks = config.trainer.callbacks
        if not isinstance(callbacks, list):
            return
        monitors = [i for i, c in enumerate(callbacks) if _class_path(c).endswith("SelectiveRelevanceMonitor")]
        for i in reversed(monitors[:-1]):
            del callbacks[i]


def _class_path(callback: Any) -> str:
    return str(
        getattr(callback, "class_path", "") or (callback.get("class_path", "") if isinstance(callback, dict) else "")
    )


def main(args: ArgsType = None, *, run: bool = True) -> SelrelCLI | None:
    """Run the command line (``fit``, ``validate``, ``test``, ``predict``) with ``args`` or ``sys.argv``.

    Tests call ``main(["fit", "--trainer.fast_dev_run=1"])`` in-process. ``explain ...`` runs
    :mod:`lightning_selrel.cli_explain` and ``cache ...`` :func:`lightning_selrel.video_cache.main` instead:
    they return None when they succeed and raise ``SystemExit`` with their exit code otherwise.
    """
    argv = sys.argv[1:] if args is None else args
    if isinstance(argv, (list, tuple)) and argv[:1] in (["explain"], ["cache"], ["calibrate"]):
        if argv[0] == "explain":  # imported here: `fit` does not load the commands
            from .cli_explain import main as command
        elif argv[0] == "calibrate":
            from .cli_calibrate import main as command
        else:
            from .video_cache import main as command
        code = command(list(argv[1:]))
        if code:
            raise SystemExit(code)
        return None
    return SelrelCLI(args=args, run=run, **cli_options())


def cli_options() -> dict[str, Any]:
    """How the command line builds its LightningCLI (``calibrate`` reads its configuration the same way)."""
    return {
        "model_class": C3DClassifier,
        "subclass_mode_data": True,
        "trainer_defaults": TRAINER_DEFAULTS,
        "seed_everything_default": 0,
        "auto_configure_optimizers": False,  # the model takes its optimiser and scheduler as arguments
    }


def console() -> None:
    """Entry point of the ``lightning-selrel`` script: like ``python -m lightning_selrel``, exit status 0 on success."""
    main()
