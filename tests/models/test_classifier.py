"""C3DClassifier: pixel input, checkpoints that rebuild the network, and the paper's optimiser."""

from __future__ import annotations

import pytest
import torch

from lightning_selrel import C3DClassifier


def test_classifier_takes_uint8_and_float_pixels_alike():
    model = C3DClassifier(num_classes=4, width=2, fc_dim=8, clip_shape=(16, 16, 16)).eval()
    clips = torch.randint(0, 256, (2, 3, 16, 16, 16), dtype=torch.uint8)
    torch.testing.assert_close(model(clips), model(clips.float()))
    lo, hi = model.normalize.bounds()
    assert torch.allclose(lo.flatten(), torch.full((3,), -2.0)) and torch.allclose(
        hi.flatten(), torch.full((3,), (255 - 114.75) / 57.375)
    )


def test_checkpoint_hyperparameters_rebuild_the_network(tmp_path):
    import pytorch_lightning as pl

    model = C3DClassifier(
        num_classes=4,
        width=2,
        fc_dim=8,
        clip_shape=(16, 16, 24),
        mean=(1.0, 2.0, 3.0),
        std=(4.0, 5.0, 6.0),
        class_names=["a", "b", "c", "d"],
    )
    trainer = pl.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.strategy.connect(model)
    path = tmp_path / "m.ckpt"
    trainer.save_checkpoint(path)
    loaded = C3DClassifier.load_from_checkpoint(path).eval()
    assert loaded.clip_shape == (16, 16, 24) and loaded.class_names == ["a", "b", "c", "d"]
    torch.testing.assert_close(loaded.normalize.mean.flatten(), torch.tensor([1.0, 2.0, 3.0]))
    clips = torch.randint(0, 256, (1, 3, 16, 16, 24), dtype=torch.uint8)
    torch.testing.assert_close(loaded(clips), model.eval()(clips))


def test_default_optimiser_and_scheduler_follow_the_paper():
    model = C3DClassifier(num_classes=4, width=2, fc_dim=8, clip_shape=(16, 16, 16))
    config = model.configure_optimizers()
    opt = config["optimizer"]
    assert isinstance(opt, torch.optim.SGD)
    assert opt.defaults["lr"] == 1e-3 and opt.defaults["momentum"] == 0.9
    sched = config["lr_scheduler"]
    assert isinstance(sched["scheduler"], torch.optim.lr_scheduler.ReduceLROnPlateau)
    assert sched["monitor"] == "val/loss"
    assert sched["scheduler"].factor == pytest.approx(0.1) and sched["scheduler"].patience == 10
