"""What users wrote with release 0.1.0 keeps working: its checkpoint, its config and every class path it taught.

The files in tests/fixtures/release_0_1_0/ were written by the code of that release (see their README).
"""

from __future__ import annotations

import importlib
import warnings
from pathlib import Path

import pytest
import torch

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "release_0_1_0"
CKPT = FIXTURES / "c3d_synthetic.ckpt"
CONFIG = FIXTURES / "config.yaml"

# The old module paths warn that they moved (the rest of the suite turns that warning into an error).
pytestmark = pytest.mark.filterwarnings("ignore:lightning_selrel.* moved to:DeprecationWarning")

#: Class paths in the presets, the README and the files written by release 0.1.0, and where each now lives.
CLASS_PATHS = {
    "lightning_selrel.MotionContextDataModule": "MotionContextDataModule",
    "lightning_selrel.data.MotionContextDataModule": "MotionContextDataModule",
    "lightning_selrel.synthetic.MotionContextDataModule": "MotionContextDataModule",
    "lightning_selrel.synthetic.MotionContextDataset": "MotionContextDataset",
    "lightning_selrel.UCF101DataModule": "UCF101DataModule",
    "lightning_selrel.ucf101.UCF101DataModule": "UCF101DataModule",
    "lightning_selrel.SelectiveRelevanceMonitor": "SelectiveRelevanceMonitor",
    "lightning_selrel.monitor.SelectiveRelevanceMonitor": "SelectiveRelevanceMonitor",
    "lightning_selrel.C3DClassifier": "C3DClassifier",
    "lightning_selrel.classifier.C3DClassifier": "C3DClassifier",
    "lightning_selrel.C3D": "C3D",
    "lightning_selrel.model.C3D": "C3D",
}


def _resolve(path: str):
    module, _, name = path.rpartition(".")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # an old module path may warn; it must still work
        return getattr(importlib.import_module(module), name)


@pytest.mark.parametrize("path", sorted(CLASS_PATHS))
def test_every_class_path_of_the_release_resolves_to_the_public_class(path):
    import lightning_selrel

    assert _resolve(path) is getattr(lightning_selrel, CLASS_PATHS[path])


def test_the_release_checkpoint_loads_and_predicts():
    from lightning_selrel.checkpoint import load_classifier

    from lightning_selrel import C3DClassifier

    loaded = load_classifier(CKPT)
    assert loaded.clip_shape == (16, 48, 48) and len(loaded.class_names) == 4
    model = C3DClassifier.load_from_checkpoint(CKPT, map_location="cpu", weights_only=True).eval()
    clips = torch.randint(0, 256, (2, 3, 16, 48, 48), dtype=torch.uint8)
    with torch.no_grad():
        assert torch.equal(model(clips), loaded.model(clips))
        assert model(clips).shape == (2, 4)


def test_the_release_config_trains(tmp_path):
    from lightning_selrel.cli import main

    from lightning_selrel import C3DClassifier, MotionContextDataModule, SelectiveRelevanceMonitor

    cli = main(
        [
            "fit",
            "--config",
            str(CONFIG),
            "--trainer.fast_dev_run=1",
            f"--trainer.default_root_dir={tmp_path}",
            f"--trainer.logger.init_args.save_dir={tmp_path}",
        ]
    )
    assert cli.trainer.state.finished
    assert isinstance(cli.model, C3DClassifier) and isinstance(cli.datamodule, MotionContextDataModule)
    assert any(isinstance(c, SelectiveRelevanceMonitor) for c in cli.trainer.callbacks)


def test_the_release_checkpoint_resumes_with_its_config_and_keeps_its_probe_set(tmp_path):
    from lightning_selrel.cli import main

    from lightning_selrel import SelectiveRelevanceMonitor

    cli = main(
        [
            "validate",
            "--config",
            str(CONFIG),
            "--ckpt_path",
            str(CKPT),
            f"--trainer.default_root_dir={tmp_path}",
            f"--trainer.logger.init_args.save_dir={tmp_path}",
        ]
    )
    monitor = next(c for c in cli.trainer.callbacks if isinstance(c, SelectiveRelevanceMonitor))
    assert monitor.probe_indices["val"] == [4, 7, 8, 11]  # the checkpoint's draw, as the release logged it
    assert "selrel/dtd/spatial_bias" in cli.trainer.callback_metrics


def test_every_module_path_of_the_release_imports_warns_once_and_is_the_new_module():
    """`import lightning_selrel.ucf101` and the like: the same module object as the new path, with a warning."""
    import sys

    from lightning_selrel import _compat

    for old, new in sorted(_compat.MOVED.items()):
        name = f"lightning_selrel.{old}"
        sys.modules.pop(name, None)
        with pytest.warns(DeprecationWarning, match=f"{name} moved to lightning_selrel.{new}"):
            module = importlib.import_module(name)
        target = importlib.import_module(f"lightning_selrel.{new}")
        assert module is target, old
        assert module.__name__ == f"lightning_selrel.{new}" and module.__spec__.name == module.__name__, old
    import lightning_selrel

    assert callable(lightning_selrel.explain)  # importing the old module `explain` keeps the function public


def test_old_names_of_split_modules_are_still_there():
    """Modules that were split (checkpoint, cli, dtd, calibration, metrics) keep every public name of 0.1.0."""
    names = {
        "checkpoint": ["CheckpointError", "Classifier", "describe", "is_lightning_checkpoint", "load_classifier"],
        "cli": ["main", "console"],
        "dtd": ["dtd", "dtd_graph", "dtd_layers", "select_target", "SUPPORTED_LAYERS"],
        "calibration": ["Calibration", "CalibrationError", "load_calibration", "calibrated", "write_outputs"],
        "metrics": ["MeanStd", "MotionPrecision", "clip_scores", "spatial_bias", "rank_correlation"],
        "monitor": ["SelectiveRelevanceMonitor", "DEFAULT_METHODS"],
        "data": ["MotionContextDataModule", "MotionContextDataset", "ClipParams", "Cue"],
    }
    for module, public in names.items():
        for name in public:
            assert _resolve(f"lightning_selrel.{module}.{name}") is not None, (module, name)
