"""SelectiveRelevanceMonitor: preconditions, when it runs, the probe set, stages, loggers, DDP."""

from __future__ import annotations

import csv
import re
import warnings
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from events import FRACTIONS, images, layout, load, scalars
from pytorch_lightning.loggers import TensorBoardLogger
from pytorch_lightning.utilities.exceptions import MisconfigurationException

from lightning_selrel import C3DClassifier, MotionContextDataModule, SelectiveRelevanceMonitor
from lightning_selrel.commands import main
from lightning_selrel.metrics import tags

REPO = Path(__file__).resolve().parents[2]
SHAPE = (16, 16, 16)
# Scores of the selective map: a method whose selective map is empty on every clip has none of them.


def gifs_and_charts(events) -> dict:
    return images(events)


def _setup(val_size: int = 8, **monitor_kwargs):
    dm = MotionContextDataModule(clip_shape=SHAPE, train_size=8, val_size=val_size, test_size=6, batch_size=4)
    torch.manual_seed(0)
    model = C3DClassifier(num_classes=4, width=2, fc_dim=8, clip_shape=SHAPE, class_names=dm.class_names)
    monitor = SelectiveRelevanceMonitor(**{"num_clips": 4, "fps": 4, **monitor_kwargs})
    return dm, model, monitor


_TRAINER_OPTIONS = dict(
    accelerator="cpu",
    devices=1,
    max_epochs=1,
    limit_train_batches=1,
    num_sanity_val_steps=0,
    enable_progress_bar=False,
    enable_model_summary=False,
)


def _trainer(tmp_path, monitor, logger=True, **kwargs) -> pl.Trainer:
    options = dict(
        _TRAINER_OPTIONS,
        default_root_dir=tmp_path,
        logger=TensorBoardLogger(tmp_path, name="", version="") if logger else False,
        callbacks=[monitor],
    )
    options.update(kwargs)
    return pl.Trainer(**options)


def test_unknown_method_and_bad_arguments_fail_at_construction():
    with pytest.raises(ValueError, match="valid methods: .*dtd.*gradcam.*guided_backprop"):
        SelectiveRelevanceMonitor(methods=["dtd", "lrp"])
    with pytest.raises(ValueError, match="target"):
        SelectiveRelevanceMonitor(target="truth")
    with pytest.raises(ValueError, match="n_std"):
        SelectiveRelevanceMonitor(n_std=-1)
    for name in ("n_std", "flow_threshold", "fps"):  # NaN and inf pass every comparison: refused by name
        for value in (float("nan"), float("inf")):
            with pytest.raises(ValueError, match=f"{name} must be a (positive )?finite number"):
                SelectiveRelevanceMonitor(**{name: value})
    with pytest.raises(ValueError, match="flow_method"):
        SelectiveRelevanceMonitor(flow_method="lucas-kanade")
    with pytest.raises(ValueError, match="twice"):
        SelectiveRelevanceMonitor(methods=["dtd", "dtd"])


def test_fit_logs_every_tag_the_gifs_and_the_layout(tmp_path):
    dm, model, monitor = _setup(methods=["dtd", "gradcam", "gradcam_t"], num_videos=1)
    with pytest.warns(UserWarning, match="no spatial bias, selectivity or selective precision for gradcam: its layer "):
        _trainer(tmp_path, monitor).fit(model, dm)
    events = load(tmp_path)
    logged = scalars(events)
    for name in FRACTIONS + ("explain_ms", "selective_ms"):
        assert f"selrel/dtd/{name}" in logged, f"selrel/dtd/{name}"
        if name in FRACTIONS:
            assert 0.0 <= logged[f"selrel/dtd/{name}"][-1][1] <= 1.0, name
    # C3D's conv5b resolves 2 time steps of 16 frames: GradCAM's selective map cannot show motion, so only the
    # scores of its baseline map are logged.
    assert (
        set(monitor.unresolved) == {"gradcam", "gradcam_t"}
        and "resolves 2 time step(s)" in monitor.unresolved["gradcam"]
    )
    for m in ("gradcam", "gradcam_t"):
        assert {f"selrel/{m}/{name}" for name in ("precision", "precision_mass", "mask_precision")} <= set(logged)
        assert not {
            f"selrel/{m}/{name}" for name in ("spatial_bias", "selectivity_mass", "selective_no_relevance")
        } & set(logged)
    assert logged["selrel/dtd/selective_no_relevance"][-1][1] < 1.0
    assert 0.0 < logged[tags.FLOW_IOU][-1][1] < 1.0 and tags.FLOW_IOU + "_std" in logged
    assert {"selrel/agreement/dtd_vs_gradcam", "selrel/agreement/gradcam_vs_gradcam_t_std"} <= set(logged)
    gifs = {tag: v for tag, v in images(events).items() if "/clip_" in tag}
    assert set(gifs) == {"selrel/dtd/clip_0", "selrel/gradcam/clip_0", "selrel/gradcam_t/clip_0"}
    # The GIFs sit at the step of the scalars they illustrate.
    assert gifs["selrel/dtd/clip_0"][0].step == logged["selrel/dtd/precision"][0][0]
    charts = {chart.title: chart for c in layout(events).category for chart in c.chart}
    bias = [re.sub(r"\\(.)", r"\1", t[:-1]) for t in charts["spatial bias, all methods"].multiline.tag]
    # The layout is written once the monitor knows what it can measure: no chart of GradCAM's selective scores.
    assert bias == ["selrel/dtd/spatial_bias"]
    assert not [title for title in charts if title.startswith("gradcam") and "baseline map" not in title]
    assert "gradcam: motion mass precision of the baseline map (flow, exact masks)" in charts
    # Every chart's regular expressions match exactly the tags they name, never a _std companion (TensorBoard
    # applies them with re.match); every margin chart's three tags are logged.
    for title, chart in charts.items():
        for pattern in chart.multiline.tag:
            matched = [tag for tag in logged if re.match(pattern, tag)]
            assert matched in ([re.sub(r"\\(.)", r"\1", pattern[:-1])], []), (title, pattern, matched)
        for series in chart.margin.series:  # all three logged, or none (a mean without any valid clip)
            present = {series.value, series.lower, series.upper} & set(logged)
            assert present in (set(), {series.value, series.lower, series.upper}), (title, series)
    # The behavioural cross-check and its relation to spatial bias.
    for name in tags.BEHAVIOUR:
        assert 0.0 <= logged[tags.behaviour_tag(name)][-1][1] <= 1.0 or name == "reliance", name
    assert -1.0 <= logged[tags.behaviour_tag("reliance")][-1][1] <= 1.0
    # (No rank correlation here: an untrained model's reliance is 0 at the resolution of 0.001 on every clip.)
    # The built-in data offer cue-conflict clips: all 8 validation clips' conflict twins are predicted.
    assert len(monitor._conflicts["val"].indices) == 8
    assert 0.0 <= logged[tags.behaviour_tag("conflict_neither_share")][-1][1] <= 1.0
    assert 0.0 < logged[tags.behaviour_tag("conflict_motion_prob")][-1][1] < 1.0
    assert tags.behaviour_tag("conflict_motion_prob_std") in logged
    assert "cue conflict: p(motion class) / (p(motion) + p(context)), mean +- std" in charts
    # The per-class view: a text table, a bar chart and a CSV in the run's folder.
    assert "selrel/per_class/spatial_bias" in gifs_and_charts(events)
    assert events.Tensors("selrel/per_class/text_summary")
    rows = (tmp_path / "selrel_per_class.csv").read_text().splitlines()
    assert rows[0].startswith("epoch,step,class_index,class,clips,acc,reliance,spatial_bias_dtd") and len(rows) > 1


def test_a_per_class_probe_set_draws_k_clips_of_every_class(tmp_path):
    dm, model, monitor = _setup(val_size=20, per_class=2, behaviour=False)
    _trainer(tmp_path, monitor).fit(model, dm)
    indices = monitor.probe_indices["val"]
    assert sorted(i % 4 for i in indices) == [0, 0, 1, 1, 2, 2, 3, 3]  # clip i is of class i % 4
    table = load(tmp_path).Tensors("selrel/per_class/text_summary")[-1].tensor_proto.string_val[0].decode()
    assert table.count("| moves ") == 4 and "| 2 |" in table  # one row per class, 2 clips each
    assert not any(tag.startswith("selrel/behaviour/") for tag in scalars(load(tmp_path)))
    with pytest.raises(ValueError, match="per_class must be at least 1"):
        SelectiveRelevanceMonitor(per_class=0)


def test_the_cli_run_has_one_hparams_entry_with_the_comparison_and_no_placeholder(tmp_path, monkeypatch):
    from tensorboard.plugins.hparams import plugin_data_pb2

    monkeypatch.chdir(tmp_path)
    tiny = [
        "--model.width=2",
        "--model.fc_dim=8",
        "--data.init_args.clip_shape=[16,16,16]",
        "--data.init_args.val_size=8",
    ]
    options = ["--trainer.max_epochs=1", "--trainer.limit_train_batches=1", "--trainer.enable_progress_bar=false"]
    main(["fit", *tiny, "--data.init_args.train_size=8", "--data.init_args.batch_size=4", *options])
    events = load(tmp_path / "lightning_logs" / "version_0")
    assert "hp_metric" not in scalars(events)
    content = events.PluginTagToContent("hparams")
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
    assert [m.name.tag for m in experiment.metric_infos][:2] == ["val/acc", "selrel/dtd/spatial_bias"]
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"]).session_start_info
    assert start.hparams["selrel/threshold"].string_value == "std" and start.hparams["lr"].number_value == 1e-3
    assert start.hparams["data/cue"].string_value == "both" and start.hparams["model/width"].number_value == 2


def test_no_validation_data_fails_before_training(tmp_path):
    dm, model, monitor = _setup()
    with pytest.raises(MisconfigurationException, match="validation"):
        _trainer(tmp_path, monitor, limit_val_batches=0).fit(model, dm)

    class NoVal(MotionContextDataModule):
        val_dataloader = pl.LightningDataModule.val_dataloader

    no_val = NoVal(clip_shape=SHAPE, train_size=8, batch_size=4)
    with pytest.raises(MisconfigurationException, match="needs validation data"):
        _trainer(tmp_path, monitor).fit(model, no_val)


def test_never_during_the_sanity_check_and_only_every_n_epochs(tmp_path, monkeypatch):
    dm, model, monitor = _setup(every_n_epochs=2)
    epochs = []
    run = monitor._run
    monkeypatch.setattr(monitor, "_run", lambda trainer, *a: (epochs.append(trainer.current_epoch), run(trainer, *a)))
    _trainer(tmp_path, monitor, max_epochs=4, num_sanity_val_steps=1).fit(model, dm)
    assert epochs == [1, 3]


def test_fewer_validation_clips_than_num_clips_uses_them_all_and_says_so_once(tmp_path):
    dm, model, monitor = _setup(val_size=3, num_clips=8)
    with pytest.warns(UserWarning, match="only 3 clips") as record:
        _trainer(tmp_path, monitor, max_epochs=2).fit(model, dm)
    assert sum("only 3 clips" in str(w.message) for w in record) == 1
    assert monitor.probe_indices["val"] == [0, 1, 2]


def test_probe_set_is_fixed_and_survives_a_resume(tmp_path):
    dm, model, monitor = _setup(val_size=32, seed=1)
    trainer = _trainer(tmp_path, monitor)
    trainer.fit(model, dm)
    first = monitor.probe_indices["val"]
    assert len(first) == 4
    ckpt = tmp_path / "epoch1.ckpt"
    trainer.save_checkpoint(ckpt)

    other_seed = SelectiveRelevanceMonitor(num_clips=4, seed=2)
    fresh = _trainer(tmp_path / "fresh", other_seed)
    fresh.fit(C3DClassifier(num_classes=4, width=2, fc_dim=8, clip_shape=SHAPE), dm)
    assert other_seed.probe_indices["val"] != first  # a different seed draws other clips ...

    resumed_monitor = SelectiveRelevanceMonitor(num_clips=4, seed=2)
    resumed = _trainer(tmp_path / "resumed", resumed_monitor, max_epochs=2)
    resumed.fit(C3DClassifier(num_classes=4, width=2, fc_dim=8, clip_shape=SHAPE), dm, ckpt_path=ckpt)
    assert resumed_monitor.probe_indices["val"] == first  # ... but a resume keeps the saved probe set


def test_a_changed_num_clips_on_resume_draws_a_new_probe_set_and_says_so(tmp_path):
    dm, model, monitor = _setup(val_size=32)
    trainer = _trainer(tmp_path, monitor)
    trainer.fit(model, dm)
    ckpt = tmp_path / "epoch1.ckpt"
    trainer.save_checkpoint(ckpt)
    more = SelectiveRelevanceMonitor(num_clips=6)
    with pytest.warns(UserWarning, match="drawing a new probe set"):
        _trainer(tmp_path / "resumed", more, max_epochs=2).fit(model, dm, ckpt_path=ckpt)
    assert len(more.probe_indices["val"]) == 6


def test_a_third_item_that_is_not_a_motion_mask_is_a_clear_error(tmp_path):
    class WithIds(MotionContextDataModule):
        def val_dataloader(self):
            items = [(clip, label, torch.tensor(i)) for i, (clip, label, _) in enumerate(self.val_set)]
            return torch.utils.data.DataLoader(items, batch_size=4)

    dm = WithIds(clip_shape=SHAPE, train_size=8, val_size=8, batch_size=4)
    _, model, monitor = _setup()
    with pytest.raises(MisconfigurationException, match=r"third element of val item \d+ has shape \(\)"):
        _trainer(tmp_path, monitor).fit(model, dm)


def test_validate_and_test_work_under_inference_mode(tmp_path):
    dm, model, monitor = _setup(methods=["dtd", "guided_backprop"])
    trainer = _trainer(tmp_path, monitor)
    assert trainer.validate_loop.inference_mode and trainer.test_loop.inference_mode  # Lightning's default
    trainer.validate(model, dm)
    assert 0 <= float(trainer.callback_metrics["selrel/dtd/spatial_bias"]) <= 1
    trainer.test(model, dm)
    assert 0 <= float(trainer.callback_metrics["selrel/guided_backprop/selective_mask_precision"]) <= 1
    assert monitor.probe_indices["test"] and monitor.probe_indices["val"]


def test_without_a_logger_scalars_are_logged_media_skipped_with_one_warning(tmp_path):
    dm, model, monitor = _setup(methods=["gradcam"])
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        trainer = _trainer(tmp_path, monitor, logger=False, max_epochs=2)
        trainer.fit(model, dm)
    assert sum("no logger (none configured, or fast_dev_run)" in str(w.message) for w in record) == 1
    assert "selrel/gradcam/precision" in trainer.callback_metrics


def test_fast_dev_run_does_not_crash(tmp_path):
    dm, model, monitor = _setup(methods=["dtd"])
    trainer = pl.Trainer(fast_dev_run=1, callbacks=[monitor], enable_progress_bar=False, default_root_dir=tmp_path)
    with pytest.warns(UserWarning, match="no logger"):
        trainer.fit(model, dm)
    assert "selrel/dtd/selectivity_mass" in trainer.callback_metrics


def test_cli_keeps_one_monitor_and_the_preset_wins(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cli = main(["--trainer.logger=false"], run=False)
    assert sum(isinstance(c, SelectiveRelevanceMonitor) for c in cli.trainer.callbacks) == 1
    preset = tmp_path / "monitor.yaml"
    preset.write_text(
        "trainer:\n  callbacks+:\n    - class_path: lightning_selrel.SelectiveRelevanceMonitor\n"
        "      init_args:\n        n_std: 2.0\n"
    )
    cli = main(["--config", str(preset), "--config", str(REPO / "callbacks" / "lr_monitor.yaml")], run=False)
    monitors = [c for c in cli.trainer.callbacks if isinstance(c, SelectiveRelevanceMonitor)]
    assert len(monitors) == 1 and monitors[0].n_std == 2.0
    cli = main(["--trainer.callbacks=[]"], run=False)  # and it can be switched off
    assert not any(isinstance(c, SelectiveRelevanceMonitor) for c in cli.trainer.callbacks)


@pytest.mark.slow
def test_ddp_two_processes_match_one_process(tmp_path):
    """2 CPU processes (gloo): each explains its share, metrics sync exactly, rank 0 alone writes media."""
    methods = ["dtd", "guided_backprop"]
    dm, model, monitor = _setup(val_size=12, num_clips=5, methods=methods, num_videos=2)
    ddp = _trainer(tmp_path / "ddp", monitor, strategy="ddp_spawn", devices=2)
    ddp.validate(model, dm)
    single_monitor = SelectiveRelevanceMonitor(num_clips=5, methods=methods, num_videos=2)
    single = _trainer(tmp_path / "single", single_monitor)
    single.validate(model, dm)
    ddp_metrics, single_metrics = ddp.callback_metrics, single.callback_metrics
    compared = [k for k in single_metrics if k.startswith("selrel/") and "_ms" not in k]
    assert len(compared) > 30
    for key in compared:
        torch.testing.assert_close(ddp_metrics[key].double(), single_metrics[key].double(), atol=1e-6, rtol=1e-6)
    assert len(list((tmp_path / "ddp").rglob("events.out.tfevents.*"))) == 1
    written = images(load(tmp_path / "ddp"))
    gifs = {tag: v for tag, v in written.items() if "/clip_" in tag}
    assert set(gifs) == {f"selrel/{m}/clip_{k}" for m in methods for k in (0, 1)}
    assert all(len(v) == 1 for v in gifs.values())
    assert len(written["selrel/per_class/spatial_bias"]) == 1  # rank 0 alone, from every rank's clips
    # The per-class table gathers every rank's clips: the same rows as one process.
    read = [list(csv.DictReader((tmp_path / run / "selrel_per_class.csv").open())) for run in ("ddp", "single")]
    assert len(read[0]) == len(read[1]) >= 2
    for ddp_row, single_row in zip(*read, strict=True):
        assert ddp_row["class"] == single_row["class"] and ddp_row["clips"] == single_row["clips"]
        for key in ("acc", "reliance", "spatial_bias_dtd", "spatial_bias_guided_backprop"):
            assert float(ddp_row[key]) == pytest.approx(float(single_row[key]), abs=1e-6), key


def test_a_user_written_lightning_module_trains_with_the_monitor(tmp_path):
    """Any LightningModule whose forward takes the clips as the data yields them: DTD walks its graph (its own
    normalisation, residual block, BatchNorm, global pooling), captum's GradCAM finds its last Conv3d."""
    from user_model import UserClassifier

    dm = MotionContextDataModule(clip_shape=SHAPE, train_size=8, val_size=8, batch_size=4)
    torch.manual_seed(0)
    model = UserClassifier(class_names=dm.class_names)
    monitor = SelectiveRelevanceMonitor(num_clips=4, num_videos=1, fps=4)  # the default methods
    _trainer(tmp_path, monitor, max_epochs=1, limit_train_batches=2).fit(model, dm)
    logged = scalars(load(tmp_path))
    for method in ("dtd", "gradcam", "guided_backprop", "guided_gradcam"):
        assert 0.0 <= logged[tags.method_tag(method, "spatial_bias")][-1][1] <= 1.0, method
        assert logged[tags.method_tag(method, "no_relevance")][-1][1] == 0.0 or method != "dtd"
    assert tags.behaviour_tag("acc_frozen") in logged and "selrel/dtd/clip_0" in images(load(tmp_path))


def test_a_model_that_cannot_be_explained_fails_before_training(tmp_path):
    dm, _, _ = _setup()

    class NoConvolution(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.head = torch.nn.Linear(3 * 16 * 16 * 16, 4)

        def forward(self, clips):
            return self.head(clips.float().flatten(1))

        def training_step(self, batch, batch_idx):  # pragma: no cover - never reached
            raise AssertionError("trained before the check")

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    with pytest.raises(MisconfigurationException, match="GradCAM family needs a 5-D convolutional layer"):
        _trainer(tmp_path, SelectiveRelevanceMonitor(methods=["gradcam"], num_clips=2)).fit(NoConvolution(), dm)

    class Tanh(NoConvolution):
        def forward(self, clips):
            return torch.tanh(self.head(clips.float().flatten(1)))

    with pytest.raises(MisconfigurationException, match="dtd cannot explain Tanh: DTD has no rule for function 'tanh'"):
        _trainer(tmp_path, SelectiveRelevanceMonitor(methods=["dtd"], num_clips=2)).fit(Tanh(), dm)


def test_a_csv_logger_gets_the_gifs_the_per_class_view_and_the_hparams_as_files(tmp_path, caplog):
    from PIL import Image
    from pytorch_lightning.loggers import CSVLogger

    dm, model, monitor = _setup(methods=["dtd"], num_videos=1)
    csv_logger = CSVLogger(tmp_path / "csv", name="", version="")
    tensorboard = TensorBoardLogger(tmp_path / "tb", name="", version="")
    with caplog.at_level("INFO"):
        trainer = pl.Trainer(
            **{
                **_TRAINER_OPTIONS,
                "default_root_dir": tmp_path,
                "max_epochs": 2,
                "logger": [tensorboard, csv_logger],
                "callbacks": [monitor],
            }
        )
        trainer.fit(model, dm)
    folder = Path(csv_logger.log_dir)
    gifs = sorted((folder / "selrel" / "dtd" / "clip_0").glob("step_*.gif"))
    assert len(gifs) == 2 and all(Image.open(g).n_frames == 16 for g in gifs)  # one per monitored epoch
    charts = sorted((folder / "selrel" / "per_class").glob("step_*.png"))
    tables = sorted((folder / "selrel" / "per_class").glob("step_*.md"))
    assert len(charts) == 2 and len(tables) == 2 and "Spatial bias per class" in tables[-1].read_text()
    rows = (folder / "selrel_per_class.csv").read_text().splitlines()
    assert rows[0].startswith("epoch,step,class_index,class") and len(rows) > 2
    assert "selrel/methods" in (folder / "hparams.yaml").read_text()  # through the logger's own log_hyperparams
    assert not list(folder.glob("**/.*.tmp*"))  # written whole
    # TensorBoard, next to it, still gets everything in its event file.
    assert "selrel/dtd/clip_0" in images(load(tmp_path / "tb"))
    notes = [r.getMessage() for r in caplog.records if "go to" in r.getMessage()]
    assert len(notes) == 1 and "CSVLogger" in notes[0] and str(folder / "selrel") in notes[0]


@pytest.mark.parametrize("strategy", ["FSDPStrategy", "DeepSpeedStrategy"])
def test_a_sharding_strategy_is_refused_at_setup_instead_of_hanging(strategy):
    from types import SimpleNamespace

    sharded = type(strategy, (), {})()
    trainer = SimpleNamespace(strategy=sharded)
    with pytest.raises(MisconfigurationException, match=f"cannot serve the {strategy} strategy.*strategy=ddp"):
        SelectiveRelevanceMonitor().setup(trainer, None, "fit")
