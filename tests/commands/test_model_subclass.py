"""``fit --model mypkg.MyModule``: the user's LightningModule trains under the CLI with the monitor, its
checkpoints resume under the same ``--model``, and a class path read from a checkpoint is refused before any
import; the classifier's new name and its old one are the same class."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from tiny_cli import TINY

import lightning_selrel
from lightning_selrel.commands import main
from lightning_selrel.files import CheckpointError
from lightning_selrel.metrics import tags
from lightning_selrel.models.checkpoint import load_classifier

USER = "user_model.UserClassifier"
TRAIN = ["--trainer.max_epochs=1", "--trainer.limit_train_batches=1", "--trainer.limit_val_batches=1"]
MONITOR = [
    "--trainer.callbacks+=lightning_selrel.SelectiveRelevanceMonitor",
    "--trainer.callbacks.init_args.num_clips=2",
    "--trainer.callbacks.init_args.num_videos=0",
    "--trainer.callbacks.init_args.methods=[dtd,gradcam]",
]


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="module")
def user_run(tmp_path_factory):
    """One fit of the user's module under the CLI with the monitor: its checkpoint."""
    folder = tmp_path_factory.mktemp("user_run")
    cli = main(
        ["fit", *TINY, "--model", USER, "--model.channels=3", *TRAIN, *MONITOR, f"--trainer.default_root_dir={folder}"]
    )
    (ckpt,) = Path(cli.trainer.log_dir, "checkpoints").glob("*.ckpt")
    return cli, ckpt


def test_fit_trains_the_users_module_with_the_monitor(user_run):
    cli, ckpt = user_run
    assert type(cli.model).__name__ == "UserClassifier" and cli.model.hparams.channels == 3
    assert cli.model.class_names == cli.datamodule.class_names  # linked from the data module: it takes them
    metrics = cli.trainer.callback_metrics
    assert tags.method_tag("dtd", "spatial_bias") in metrics and tags.behaviour_tag("acc_frozen") in metrics
    saved = torch.load(ckpt, weights_only=True)["hyper_parameters"]
    assert saved["_class_path"] == USER


def test_its_checkpoint_resumes_under_the_same_model_and_is_refused_without_it(user_run, capsys):
    _, ckpt = user_run
    cli = main(["validate", *TINY, "--model", USER, f"--ckpt_path={ckpt}", "--trainer.logger=false"])
    assert type(cli.model).__name__ == "UserClassifier" and cli.trainer.state.finished
    with pytest.raises(SystemExit) as raised:  # the default model: the checkpoint may not switch it to its own code
        main(["validate", *TINY, f"--ckpt_path={ckpt}", "--trainer.logger=false"])
    assert raised.value.code == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert "model class path 'user_model.UserClassifier'" in line and "--model user_model.UserClassifier" in line


def test_load_classifier_takes_the_users_class_only_when_named(user_run):
    _, ckpt = user_run
    with pytest.raises(CheckpointError, match="model_class='user_model.UserClassifier'"):
        load_classifier(ckpt, clip_shape=(16, 16, 16))
    loaded = load_classifier(ckpt, model_class=USER, clip_shape=(16, 16, 16))
    assert type(loaded.model).__name__ == "UserClassifier"


def test_a_class_path_in_a_checkpoint_is_refused_before_it_is_imported(tmp_path, monkeypatch, capsys):
    trained = main(["fit", *TINY, *TRAIN, "--trainer.callbacks=[]", f"--trainer.default_root_dir={tmp_path}"])
    (ckpt,) = Path(trained.trainer.log_dir, "checkpoints").glob("*.ckpt")
    (tmp_path / "planted.py").write_text(
        "from pathlib import Path\nPath('IMPORTED').write_text('yes')\nimport pytorch_lightning as pl\n"
        "class Net(pl.LightningModule):\n    def __init__(self, **kw):\n        super().__init__()\n"
        "        Path('CALLED').write_text('yes')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    checkpoint = torch.load(ckpt, weights_only=True)
    assert checkpoint["hyper_parameters"]["_class_path"] == "lightning_selrel.VideoClassifier"
    checkpoint["hyper_parameters"]["_class_path"] = "planted.Net"
    crafted = tmp_path / "crafted.ckpt"
    torch.save(checkpoint, crafted)
    with pytest.raises(SystemExit):
        main(["fit", *TINY, *TRAIN, f"--ckpt_path={crafted}", "--trainer.logger=false"])
    assert "model class path 'planted.Net'" in capsys.readouterr().err
    with pytest.raises(CheckpointError, match="planted.Net"):
        lightning_selrel.VideoClassifier.load_from_checkpoint(crafted, weights_only=True)
    with pytest.raises(CheckpointError, match="planted.Net"):
        load_classifier(crafted)
    assert "planted" not in sys.modules and not (tmp_path / "IMPORTED").exists() and not (tmp_path / "CALLED").exists()


def test_the_old_name_is_the_same_class_in_code_configs_and_checkpoints(tmp_path):
    assert lightning_selrel.C3DClassifier is lightning_selrel.VideoClassifier
    old = tmp_path / "old.yaml"
    old.write_text("model:\n  class_path: lightning_selrel.C3DClassifier\n  init_args:\n    width: 2\n    fc_dim: 8\n")
    cli = main(["--config", str(old), *TINY[2:], "--trainer.logger=false"], run=False)
    assert isinstance(cli.model, lightning_selrel.VideoClassifier) and cli.model.hparams.width == 2
    short = tmp_path / "short.yaml"  # the form of every config before --model: init arguments without a class
    short.write_text("model:\n  width: 3\n  fc_dim: 8\n")
    cli = main(["--config", str(short), *TINY[2:], "--trainer.logger=false"], run=False)
    assert isinstance(cli.model, lightning_selrel.VideoClassifier) and cli.model.hparams.width == 3
