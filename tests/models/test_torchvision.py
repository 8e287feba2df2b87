"""torchvision's video models: as ``arch`` builders (given only what they take), explained by every method
(in-place ReLUs and ``+=`` residuals), their state dicts loaded into the project's ResNets with identical logits and
identical explanations, and one trained under the monitor. Needs the ``[torchvision]`` extra (skipped without)."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
from torch import nn
from torchvision_import import import_torchvision

from lightning_selrel import MotionContextDataModule, SelectiveRelevanceMonitor, VideoClassifier
from lightning_selrel.metrics import tags
from lightning_selrel.models.architectures import build_network
from lightning_selrel.relevance.methods import available_methods, check_model, explain, layer_name

SHAPE = (8, 32, 32)


@pytest.fixture(scope="module")
def video():
    return import_torchvision().models.video


def _with_batchnorm_statistics(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random BatchNorm statistics and shifts, so that a mismatch in any of them shows in the logits."""
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm3d):
            size = module.num_features
            module.running_mean.copy_(torch.rand(size, generator=generator) * 0.2 - 0.1)
            module.running_var.copy_(torch.rand(size, generator=generator) + 0.5)
            module.bias.data.copy_(torch.rand(size, generator=generator) * 0.2 - 0.1)
    return model


@pytest.mark.parametrize("name", ["r3d_18", "r2plus1d_18", "mc3_18"])
def test_a_builder_gets_what_it_takes_and_the_network_is_made_explainable(video, name):
    net = build_network(
        f"torchvision.models.video.{name}", num_classes=5, width=8, fc_dim=16, clip_shape=SHAPE, dropout=0.2
    )
    assert isinstance(net, video.VideoResNet) and net.fc.out_features == 5  # width, fc_dim, ... not passed on
    assert not any(m.inplace for m in net.modules() if isinstance(m, nn.ReLU))
    assert net.gradcam_layer == "layer4"


@pytest.mark.parametrize(("name", "ours"), [("r3d_18", "r3d_18"), ("r2plus1d_18", "r2plus1d_18")])
def test_torchvision_weights_load_into_the_projects_resnet_with_identical_logits_and_maps(video, name, ours):
    torch.manual_seed(0)
    theirs = VideoClassifier(num_classes=4, arch=f"torchvision.models.video.{name}", clip_shape=SHAPE).eval()
    _with_batchnorm_statistics(theirs)
    mine = VideoClassifier(num_classes=4, arch=ours, width=64, clip_shape=SHAPE).eval()
    mine.load_state_dict(theirs.state_dict(), strict=True)  # the same names and shapes
    clips = torch.rand(2, 3, *SHAPE, generator=torch.Generator().manual_seed(1)) * 255
    with torch.no_grad():
        assert torch.equal(theirs(clips), mine(clips))
    assert layer_name(theirs) == layer_name(mine) == "net.layer4"
    for method in ("dtd", "guided_backprop"):
        assert torch.equal(explain(theirs, clips, method), explain(mine, clips, method)), method


def test_a_torchvision_state_dict_file_loads_as_pretrained_weights(video, tmp_path):
    torch.manual_seed(0)
    source = _with_batchnorm_statistics(video.r3d_18(num_classes=4)).eval()
    path = tmp_path / "r3d_18.pth"
    torch.save(source.state_dict(), path)
    model = VideoClassifier(num_classes=4, arch="r3d_18", width=64, clip_shape=SHAPE, pretrained=str(path)).eval()
    normalised = torch.randn(2, 3, *SHAPE)
    with torch.no_grad():
        assert torch.equal(model.net(normalised), source(normalised))


@pytest.mark.slow
def test_mc3_trains_under_the_monitor_with_every_method(video, tmp_path):
    arch = "torchvision.models.video.mc3_18"
    dm = MotionContextDataModule(clip_shape=(16, 32, 32), train_size=4, val_size=4, batch_size=2)
    torch.manual_seed(0)
    model = VideoClassifier(num_classes=4, arch=arch, clip_shape=(16, 32, 32), class_names=dm.class_names)
    methods = list(available_methods())
    check_model(model, methods)
    monitor = SelectiveRelevanceMonitor(methods=methods, num_clips=2, num_videos=0, num_conflict_clips=0, batch_size=2)
    trainer = pl.Trainer(
        accelerator="cpu",
        max_epochs=1,
        limit_train_batches=1,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[monitor],
    )
    trainer.fit(model, dm)
    for method in ("dtd", "guided_backprop", "guided_gradcam", "gradcam"):
        assert tags.method_tag(method, "precision_mass") in trainer.callback_metrics, method
    assert 0.0 <= float(trainer.callback_metrics[tags.method_tag("dtd", "spatial_bias")]) <= 1.0


def test_a_checkpoint_may_name_a_torchvision_builder(video, tmp_path):
    arch = "torchvision.models.video.r3d_18"
    model = VideoClassifier(num_classes=4, arch=arch, clip_shape=SHAPE)
    trainer = pl.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.strategy.connect(model)
    trainer.save_checkpoint(tmp_path / "r3d.ckpt")
    loaded = VideoClassifier.load_from_checkpoint(tmp_path / "r3d.ckpt", weights_only=True)  # no trust_arch needed
    assert isinstance(loaded.net, video.VideoResNet)
