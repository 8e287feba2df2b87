"""Architectures by name or class path, and the classifier that builds them (old C3D checkpoints included)."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
from torch import nn

from lightning_selrel import C3DClassifier
from lightning_selrel.models.architectures import ARCHITECTURES, build_network, resolve_architecture
from lightning_selrel.models.c3d import C3D
from lightning_selrel.models.resnet3d import R2Plus1D18


class TinyNet(nn.Module):
    """A user's network: it takes num_classes and clip_shape, and nothing else the classifier offers."""

    def __init__(self, *, num_classes: int, clip_shape=(16, 16, 16)) -> None:
        super().__init__()
        self.clip_shape = tuple(clip_shape)
        self.conv = nn.Conv3d(3, 2, 3, padding=1)
        self.fc = nn.Linear(2, num_classes)

    def forward(self, x):
        return self.fc(self.conv(x).mean(dim=(2, 3, 4)))


def test_names_and_class_paths_resolve():
    assert set(ARCHITECTURES) == {"c3d", "r3d_18", "r2plus1d_18"}
    assert resolve_architecture("r2plus1d_18") is R2Plus1D18
    assert resolve_architecture("test_architectures.TinyNet") is TinyNet
    net = build_network(
        "test_architectures.TinyNet", num_classes=3, width=8, fc_dim=9, clip_shape=(16, 8, 8), dropout=0.1
    )
    assert isinstance(net, TinyNet) and net.clip_shape == (16, 8, 8)
    with pytest.raises(ValueError, match=r"unknown arch 'resnet50'; use one of \['c3d', 'r2plus1d_18', 'r3d_18'\]"):
        resolve_architecture("resnet50")
    with pytest.raises(ValueError, match="does not import"):
        resolve_architecture("nowhere.Net")


@pytest.mark.parametrize("arch", ["r3d_18", "r2plus1d_18", "test_architectures.TinyNet"])
def test_the_classifier_trains_any_architecture_and_its_checkpoint_rebuilds_it(arch, tmp_path):
    model = C3DClassifier(num_classes=4, width=4, clip_shape=(16, 16, 16), arch=arch, class_names=list("abcd"))
    trainer = pl.Trainer(
        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False
    )
    trainer.strategy.connect(model)
    trainer.save_checkpoint(tmp_path / "m.ckpt")
    # a class path is code: the test trusts its own, a registered name needs no trust
    loaded = C3DClassifier.load_from_checkpoint(tmp_path / "m.ckpt", trust_arch=arch).eval()
    assert type(loaded.net) is type(model.net) and loaded.hparams["arch"] == arch and loaded.clip_shape == (16, 16, 16)
    clips = torch.randint(0, 256, (2, 3, 16, 16, 16), dtype=torch.uint8)
    torch.testing.assert_close(loaded(clips), model.eval()(clips))


def test_a_c3d_checkpoint_written_before_arch_existed_still_loads(tmp_path):
    model = C3DClassifier(num_classes=4, width=2, fc_dim=8, clip_shape=(16, 16, 16))
    trainer = pl.Trainer(
        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False
    )
    trainer.strategy.connect(model)
    path = tmp_path / "old.ckpt"
    trainer.save_checkpoint(path)
    checkpoint = torch.load(path, weights_only=False)
    del checkpoint["hyper_parameters"]["arch"]  # as the previous version wrote it
    torch.save(checkpoint, path)
    loaded = C3DClassifier.load_from_checkpoint(path)
    assert isinstance(loaded.net, C3D) and loaded.hparams["arch"] == "c3d"
