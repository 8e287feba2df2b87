"""Several monitors in one run: a ``std`` and a ``mad`` monitor log apart, both keep their state through a
checkpoint, share one layout and one HParams entry; the CLI keeps one monitor per name."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from events import layout, load, scalars
from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger

from lightning_selrel import C3DClassifier, MotionContextDataModule, SelectiveRelevanceMonitor
from lightning_selrel.commands import main
from lightning_selrel.metrics import tags
from lightning_selrel.monitor import dashboard

SHAPE = (16, 16, 16)


def _run(tmp_path: Path, monitors: list, ckpt: Path | None = None, max_epochs: int = 1, loggers=None) -> pl.Trainer:
    dm = MotionContextDataModule(clip_shape=SHAPE, train_size=8, val_size=32, test_size=6, batch_size=4)
    torch.manual_seed(0)
    model = C3DClassifier(num_classes=4, width=2, fc_dim=8, clip_shape=SHAPE, class_names=dm.class_names)
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=max_epochs,
        limit_train_batches=1,
        num_sanity_val_steps=0,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        logger=loggers if loggers is not None else TensorBoardLogger(tmp_path, name="", version=""),
        callbacks=list(monitors),
    )
    trainer.fit(model, dm, ckpt_path=ckpt)
    return trainer


def _pair(**options) -> list[SelectiveRelevanceMonitor]:
    common = {"methods": ["dtd"], "num_clips": 4, "num_videos": 1, "fps": 4, "num_conflict_clips": 4, **options}
    return [
        SelectiveRelevanceMonitor(threshold="std", **common),
        SelectiveRelevanceMonitor(threshold="mad", name="mad", seed=3, **common),
    ]


def test_a_std_and_a_mad_monitor_log_apart_share_the_layout_and_both_resume(tmp_path):
    first = _pair()
    trainer = _run(tmp_path / "run", first)
    assert [m.state_key for m in first] == ["SelectiveRelevanceMonitor", "SelectiveRelevanceMonitor[mad]"]
    ckpt = tmp_path / "run" / "last.ckpt"
    trainer.save_checkpoint(ckpt)
    saved = torch.load(ckpt, weights_only=True)["callbacks"]
    assert saved["SelectiveRelevanceMonitor"]["probe_indices"] == first[0].probe_indices
    assert saved["SelectiveRelevanceMonitor[mad]"]["probe_indices"] == first[1].probe_indices
    assert first[0].probe_indices["val"] != first[1].probe_indices["val"]  # two seeds: two probe sets kept apart

    events = load(tmp_path / "run")
    logged = scalars(events)
    unnamed, named = tags.method_tag("dtd", "spatial_bias"), "selrel/mad/dtd/spatial_bias"
    assert unnamed in logged and named in logged
    assert "selrel/mad/behaviour/conflict_motion_share" in logged and "selrel_band/mad/dtd/spatial_bias/lower" in logged
    assert logged[unnamed] != logged[named]  # other clips, other rule: not one value logged twice
    gifs = events.Tags()["images"]
    assert any(t.startswith("selrel/dtd/clip_") for t in gifs) and any(
        t.startswith("selrel/mad/dtd/clip_") for t in gifs
    )
    assert "selrel/mad/per_class/spatial_bias" in gifs
    assert (tmp_path / "run" / "selrel_per_class.csv").is_file()
    assert (tmp_path / "run" / "selrel_mad_per_class.csv").is_file()

    # TensorBoard shows a run's last layout: it holds both monitors' categories, and each chart matches its tags
    shown = layout(events)
    titles = {c.title for c in shown.category}
    assert {"selrel: spatial bias", "selrel (mad): spatial bias"} <= titles
    patterns = {
        c.title: [t for chart in c.chart for t in [*chart.multiline.tag, *(s.value for s in chart.margin.series)]]
        for c in shown.category
    }
    assert dashboard.exact(named) in patterns["selrel (mad): spatial bias"]
    assert dashboard.exact(unnamed) in patterns["selrel: spatial bias"]

    resumed = _pair()
    _run(tmp_path / "resumed", resumed, ckpt=ckpt, max_epochs=2)
    assert resumed[0].probe_indices == first[0].probe_indices  # each restored from its own state
    assert resumed[1].probe_indices == first[1].probe_indices


def test_the_first_monitor_writes_one_hparams_entry_with_both_monitors_columns(tmp_path):
    monitors = _pair()
    _run(tmp_path, monitors)
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.plugins.hparams import plugin_data_pb2

    (events_file,) = tmp_path.glob("events.out.tfevents.*")
    written = [
        value.metadata.plugin_data.content
        for event in EventFileLoader(str(events_file)).Load()
        for value in event.summary.value
        if value.tag == "_hparams_/experiment"
    ]
    ours = [content for content in written if b"selrel/" in content]
    assert len(ours) == 1 and written[0] == ours[0]  # one entry for both monitors, before Lightning's (shown first)
    experiment = plugin_data_pb2.HParamsPluginData.FromString(ours[0]).experiment
    columns = [m.name.tag for m in experiment.metric_infos]
    assert "selrel/dtd/spatial_bias" in columns and "selrel/mad/dtd/spatial_bias" in columns
    params = {h.name for h in experiment.hparam_infos}
    assert {"selrel/threshold", "selrel/mad/threshold"} <= params


def test_a_csv_logger_gets_each_monitors_files_apart(tmp_path):
    csv_logger = CSVLogger(tmp_path, name="csv", version="")
    _run(tmp_path, _pair(), loggers=[csv_logger])
    folder = Path(csv_logger.log_dir)
    assert list((folder / "selrel" / "dtd").glob("clip_*/step_*.gif"))
    assert list((folder / "selrel" / "mad" / "dtd").glob("clip_*/step_*.gif"))
    assert list((folder / "selrel" / "mad" / "per_class").glob("step_*.png"))
    assert (folder / "selrel_mad_per_class.csv").is_file() and (folder / "selrel_per_class.csv").is_file()


@pytest.mark.parametrize(
    ("name", "match"),
    [("dtd", "already a group"), ("behaviour", "already a group"), ("a/b", "letters, digits"), ("a b", "letters")],
)
def test_a_name_that_would_mix_with_other_tags_is_refused(name, match):
    with pytest.raises(ValueError, match=match):
        SelectiveRelevanceMonitor(name=name)


def test_two_unnamed_monitors_are_refused_by_lightning_and_the_cli_keeps_one_per_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    preset = tmp_path / "mad.yaml"
    preset.write_text(
        "trainer:\n  callbacks+:\n    - class_path: lightning_selrel.SelectiveRelevanceMonitor\n"
        "      init_args:\n        name: mad\n        threshold: mad\n"
    )
    cli = main(["--config", str(preset), "--trainer.logger=false"], run=False)
    monitors = [c for c in cli.trainer.callbacks if isinstance(c, SelectiveRelevanceMonitor)]
    assert [(m.name, m.threshold) for m in monitors] == [(None, "std"), ("mad", "mad")]  # the default and the named
    cli = main(["--config", str(preset), "--config", str(preset), "--trainer.logger=false"], run=False)
    assert sum(isinstance(c, SelectiveRelevanceMonitor) for c in cli.trainer.callbacks) == 2  # one per name
    with pytest.raises(RuntimeError, match="more than one"):
        _run(tmp_path / "twice", [SelectiveRelevanceMonitor(num_clips=2), SelectiveRelevanceMonitor(num_clips=2)])
