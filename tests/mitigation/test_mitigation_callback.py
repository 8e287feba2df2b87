"""The mitigation callback in a run: training steps see mixed clips, validation does not, the bank fills with
frames the model finds telling, a resume draws on, and bad batches or options are named."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch

from lightning_selrel import C3DClassifier, MotionContextDataModule, SelectiveRelevanceMonitor, StaticBiasMitigation
from lightning_selrel.mitigation.callback import mitigation_of

SHAPE = [16, 16, 16]  # a list, as the CLI gives it (the model and data hparams must agree)


class Recording(C3DClassifier):
    """Keeps a copy of the clips every training and validation step receives."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.seen: dict[str, list[torch.Tensor]] = {"train": [], "val": []}

    def training_step(self, batch, batch_idx):
        self.seen["train"].append(batch[0].clone())
        return super().training_step(batch, batch_idx)

    def validation_step(self, batch, batch_idx):
        self.seen["val"].append(batch[0].clone())
        return super().validation_step(batch, batch_idx)


def _fit(tmp_path, mitigation, model=None, **trainer_kwargs):
    dm = MotionContextDataModule(clip_shape=SHAPE, train_size=16, val_size=4, test_size=4, batch_size=8)
    torch.manual_seed(0)
    model = model or Recording(num_classes=4, width=2, fc_dim=8, clip_shape=SHAPE)
    options = dict(
        default_root_dir=tmp_path,
        accelerator="cpu",
        max_epochs=1,
        num_sanity_val_steps=0,
        enable_progress_bar=False,
        enable_model_summary=False,
        logger=False,
        callbacks=[mitigation],
    )
    options.update(trainer_kwargs)
    trainer = pl.Trainer(**options)
    trainer.fit(model, dm)
    return trainer, model, dm


@pytest.mark.parametrize("method", ["stillmix", "background_erasing"])
def test_training_steps_get_mixed_clips_and_validation_the_clips_as_they_are(tmp_path, method):
    mitigation = StaticBiasMitigation(method=method, p=1.0, bank_size=0)
    trainer, model, dm = _fit(tmp_path, mitigation)
    loader = dm.train_dataloader()
    assert len(model.seen["train"]) == 2
    # Every training clip was blended (p = 1): none equals a clip of the data.
    originals = torch.cat([torch.stack([dm.train_set[i][0] for i in range(16)])])
    for batch in model.seen["train"]:
        for clip in batch:
            assert not any(torch.equal(clip, original) for original in originals)
    val = torch.stack([dm.val_set[i][0] for i in range(4)])
    assert torch.equal(model.seen["val"][0], val)
    assert loader is not None and mitigation_of(trainer).startswith(method + "(p=1")


def test_the_bank_keeps_frames_by_the_models_probability_and_a_resume_draws_on(tmp_path):
    mitigation = StaticBiasMitigation(bank_size=4, bank_every_n_steps=1, bank_candidates=8, p=1.0)
    trainer, model, _ = _fit(tmp_path, mitigation, max_epochs=2, enable_checkpointing=True)
    # An untrained model gives each class about 1/4: about a quarter of 32 candidates enter a ring of 4.
    assert mitigation.bank is not None and mitigation.bank.shape == (4, 3, 16, 16)
    assert 0 < mitigation._bank_filled <= 4 and mitigation.bank.dtype == torch.uint8
    state = mitigation.state_dict()
    assert isinstance(state["generator"], torch.Tensor)
    resumed = StaticBiasMitigation(bank_size=4, bank_every_n_steps=1, bank_candidates=8, p=1.0)
    resumed.load_state_dict(state)

    class _T:
        global_rank = 0

    resumed.on_train_start(_T(), model)  # type: ignore[arg-type]
    assert torch.equal(resumed._generator.get_state(), mitigation._generator.get_state())
    assert mitigation.state_key != StaticBiasMitigation(method="background_erasing").state_key


def test_it_composes_with_the_monitor_and_names_itself_in_the_hparams(tmp_path):
    from events import load
    from pytorch_lightning.loggers import TensorBoardLogger
    from tensorboard.plugins.hparams import plugin_data_pb2

    monitor = SelectiveRelevanceMonitor(methods=["dtd"], num_clips=2, num_videos=0, num_conflict_clips=4)
    logger = TensorBoardLogger(tmp_path, name="", version="")
    trainer, _, _ = _fit(tmp_path, StaticBiasMitigation(), logger=logger, callbacks=[monitor, StaticBiasMitigation()])
    assert "selrel/behaviour/conflict_motion_prob" in trainer.callback_metrics
    content = load(tmp_path).PluginTagToContent("hparams")
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"]).session_start_info
    found = [start.hparams["mitigation"].string_value]
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
    assert "selrel/behaviour/conflict_motion_share" in [m.name.tag for m in experiment.metric_infos]
    assert found and found[0].startswith("stillmix(p=0.5, alpha=200, bank=256)")


def test_bad_options_and_batches_are_named():
    with pytest.raises(ValueError, match="method must be one of"):
        StaticBiasMitigation(method="mixup")
    with pytest.raises(ValueError, match=r"p \(the share of clips mixed\) must be in \[0, 1\]"):
        StaticBiasMitigation(p=1.5)
    with pytest.raises(ValueError, match="bank_size must be an integer >= 0"):
        StaticBiasMitigation(bank_size=-1)
    with pytest.raises(ValueError, match="alpha"):
        StaticBiasMitigation(alpha=0)
    hook = StaticBiasMitigation()

    class _T:
        global_rank, global_step = 0, 0

    with pytest.raises(ValueError, match=r"clips \(B, C, T, H, W\) first .* got list whose clips have shape \(2, 3\)"):
        hook.on_train_batch_start(_T(), None, [torch.zeros(2, 3)], 0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="need the labels second"):
        hook.on_train_batch_start(_T(), None, [torch.zeros(2, 3, 4, 5, 5)], 0)  # type: ignore[arg-type]
