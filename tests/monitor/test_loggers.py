"""Every logger gets what it can show: Weights & Biases (offline) its videos, tables, chart and config; MLflow (a
local file store) its artifacts, metrics and params; several loggers at once each theirs. Read back from what each
wrote. Needs the ``[wandb]`` and ``[mlflow]`` extras (skipped without)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import CSVLogger, MLFlowLogger, TensorBoardLogger, WandbLogger

from lightning_selrel import C3DClassifier, MotionContextDataModule, SelectiveRelevanceMonitor
from lightning_selrel.metrics import tags

SHAPE = (16, 16, 16)


def _fit(tmp_path: Path, loggers: list, **monitor_options) -> pl.Trainer:
    dm = MotionContextDataModule(clip_shape=SHAPE, train_size=8, val_size=8, batch_size=4)
    torch.manual_seed(0)
    model = C3DClassifier(num_classes=4, width=2, fc_dim=8, clip_shape=SHAPE, class_names=dm.class_names)
    options = {"methods": ["dtd"], "num_clips": 2, "num_videos": 1, "fps": 4, "num_conflict_clips": 4}
    monitor = SelectiveRelevanceMonitor(**{**options, **monitor_options})
    trainer = pl.Trainer(
        accelerator="cpu",
        max_epochs=2,
        limit_train_batches=1,
        num_sanity_val_steps=0,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        default_root_dir=tmp_path,
        logger=loggers,
        callbacks=[monitor],
    )
    trainer.fit(model, dm)
    return trainer


def test_wandb_offline_gets_videos_the_per_class_table_and_chart_and_the_config(tmp_path, monkeypatch, caplog):
    pytest.importorskip("wandb", reason="pip install -e '.[wandb]'")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    logger = WandbLogger(save_dir=str(tmp_path), project="selrel-test", offline=True)
    with caplog.at_level("INFO"):
        _fit(tmp_path, [logger])
    run = logger.experiment
    config, summary = dict(run.config), dict(run.summary)  # offline, the run's record is W&B's own binary file
    files = Path(run.dir)  # .../wandb/offline-run-<time>-<id>/files/: the media as W&B stored them
    run.finish()
    videos = sorted((files / "media" / "videos").rglob("*.gif"))
    assert len(videos) == 2 and all(v.read_bytes()[:6] in (b"GIF89a", b"GIF87a") for v in videos)  # 2 epochs
    assert any(p.name.startswith("clip_") for p in videos)
    tables = sorted((files / "media" / "table").rglob("*.table.json"))
    assert len(tables) == 2
    table = json.loads(tables[-1].read_text())
    assert "spatial_bias_dtd" in table["columns"] and len(table["data"]) >= 1
    assert list((files / "media" / "images").rglob("*.png"))  # the per-class chart
    assert config["selrel/n_std"] == 4.0 and "mitigation" in config
    assert 0.0 <= summary[tags.method_tag("dtd", "spatial_bias")] <= 1.0  # runs compare in W&B's table by it
    assert "W&B run" in caplog.text


@pytest.fixture
def file_store(monkeypatch):
    """MLflow 3 refuses its local file store unless asked (it prefers a database): the issue asks for the file store."""
    pytest.importorskip("mlflow", reason="pip install -e '.[mlflow]'")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")


def test_mlflow_gets_artifacts_metrics_and_params_in_a_local_store(tmp_path, caplog, file_store):
    from mlflow.tracking import MlflowClient

    store = (tmp_path / "mlruns").as_uri()
    logger = MLFlowLogger(experiment_name="selrel-test", tracking_uri=store)
    with caplog.at_level("INFO"):
        _fit(tmp_path, [logger])
    client = MlflowClient(tracking_uri=store)
    run = client.get_run(logger.run_id)
    assert run.data.params["selrel/n_std"] == "4.0"
    history = client.get_metric_history(logger.run_id, tags.method_tag("dtd", "spatial_bias"))
    assert len(history) == 2 and all(0.0 <= m.value <= 1.0 for m in history)

    def listing(path: str | None = None) -> list[str]:
        out = []
        for item in client.list_artifacts(logger.run_id, path):
            out += listing(item.path) if item.is_dir else [item.path]
        return out

    artifacts = listing()
    assert sum(a.endswith(".gif") and a.startswith("selrel/dtd/clip_") for a in artifacts) == 2
    assert sum(a.startswith("selrel/per_class/") and a.endswith(".png") for a in artifacts) == 2
    assert any(a.endswith(".md") for a in artifacts) and any(a.endswith(".json") for a in artifacts)
    local = Path(client.download_artifacts(logger.run_id, "selrel_per_class.csv", str(tmp_path / "down")))
    rows = list(csv.DictReader(io.StringIO(local.read_text())))
    assert {row["epoch"] for row in rows} == {"0", "1"} and "spatial_bias_dtd" in rows[0]
    assert "MLflow run's artifacts" in caplog.text


def test_several_loggers_at_once_each_get_theirs(tmp_path, monkeypatch, file_store):
    pytest.importorskip("wandb", reason="pip install -e '.[wandb]'")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    board = TensorBoardLogger(tmp_path, name="tb", version="")
    table = CSVLogger(tmp_path, name="csv", version="")
    wandb_logger = WandbLogger(save_dir=str(tmp_path), project="selrel-test", offline=True)
    mlflow_logger = MLFlowLogger(experiment_name="selrel-test", tracking_uri=(tmp_path / "mlruns").as_uri())
    _fit(tmp_path, [board, table, wandb_logger, mlflow_logger], name="mad", threshold="mad")
    files = Path(wandb_logger.experiment.dir)
    wandb_logger.experiment.finish()
    assert list(Path(board.log_dir).glob("events.out.tfevents.*"))
    assert list((Path(table.log_dir) / "selrel" / "mad" / "dtd").glob("clip_*/step_*.gif"))
    assert list((Path(table.log_dir) / "selrel" / "mad" / "per_class").glob("step_*.png"))
    assert list((files / "media" / "videos" / "selrel" / "mad").rglob("*.gif"))  # W&B under the monitor's name
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=(tmp_path / "mlruns").as_uri())
    names = [a.path for a in client.list_artifacts(mlflow_logger.run_id)]
    assert "selrel_mad_per_class.csv" in names
    # file media are for the loggers without media of their own: none beside W&B's or MLflow's stores
    assert not (tmp_path / "selrel").exists() and not (tmp_path / "mlruns" / "selrel").exists()
