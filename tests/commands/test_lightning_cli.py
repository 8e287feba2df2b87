"""The command line: in-process runs, every preset loads, presets compose, typos are named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from pytorch_lightning.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint
from tiny_cli import TINY

from lightning_selrel.commands import main

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


def test_fit_fast_dev_run_in_process():
    cli = main(["fit", *TINY, "--trainer.fast_dev_run=1"])
    assert cli.trainer.state.finished
    assert {"train/loss", "val/loss", "val/acc"} <= set(cli.trainer.callback_metrics)
    # The data module's classes, shape and names flowed into the model (and so into checkpoints).
    assert cli.model.hparams.num_classes == 4 and list(cli.model.hparams.clip_shape) == [16, 16, 16]
    assert cli.model.class_names == cli.datamodule.class_names


def test_fit_twice_in_the_same_directory_writes_logs_and_checkpoints(tmp_path):
    short = ["--trainer.max_epochs=1", "--trainer.limit_train_batches=1", "--trainer.limit_val_batches=1"]
    for _ in range(2):
        main(["fit", *TINY, *short])
    for version in ("version_0", "version_1"):
        run = tmp_path / "lightning_logs" / version
        assert list(run.glob("events.out.tfevents.*")), version
        assert list((run / "checkpoints").glob("*.ckpt")), version
        assert (run / "config.yaml").is_file()


@pytest.mark.parametrize("subcommand", ["validate", "test", "predict"])
def test_other_subcommands_run(subcommand):
    extra = ["--trainer.logger=false"]
    if subcommand == "predict":
        extra.append("--trainer.limit_predict_batches=1")
    cli = main([subcommand, *TINY, *extra])
    assert cli.trainer.state.finished


def test_synthetic_preset_spells_out_the_defaults():
    """configs/synthetic.yaml is the default run written down: the two must not drift apart."""
    defaults = main([], run=False).config
    preset = main(["--config", str(REPO / "configs" / "synthetic.yaml")], run=False).config
    for ns in (defaults, preset):
        ns.pop("config", None)
        ns.pop("__default_config__", None)
    as_plain = lambda ns: json.loads(json.dumps(ns.as_dict()))  # noqa: E731 (tuples and lists alike)
    assert as_plain(preset) == as_plain(defaults)


PRESETS = sorted((REPO / "configs").glob("*.yaml")) + sorted((REPO / "callbacks").glob("*.yaml"))


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_preset_loads(preset, tmp_path):
    args = ["--config", str(preset)]
    text = yaml.safe_load(preset.read_text())
    if "ucf101" in str(text.get("data", {}).get("class_path", "")).lower():
        from ucf_fixture import write_ucf_tree

        args += ["--data.root", str(write_ucf_tree(tmp_path / "ucf").root)]
    main(args + ["--trainer.logger=false"], run=False)


def test_callback_presets_compose():
    cli = main(
        [
            "--config",
            str(REPO / "callbacks" / "checkpoint.yaml"),
            "--config",
            str(REPO / "callbacks" / "early_stopping.yaml"),
            "--config",
            str(REPO / "callbacks" / "lr_monitor.yaml"),
            "--trainer.logger=false",
        ],
        run=False,
    )
    kinds = {type(c) for c in cli.trainer.callbacks}
    assert {ModelCheckpoint, EarlyStopping, LearningRateMonitor} <= kinds
    checkpoint = next(c for c in cli.trainer.callbacks if isinstance(c, ModelCheckpoint))
    assert checkpoint.monitor == "val/acc"


def test_debug_overlay_is_a_fast_dev_run():
    cli = main(["--config", str(REPO / "configs" / "debug.yaml")], run=False)
    assert cli.trainer.fast_dev_run


def test_misspelled_option_is_named(capsys):
    with pytest.raises(SystemExit):
        main(["fit", "--model.widht=8"])
    assert "widht" in capsys.readouterr().err


def test_misspelled_config_key_is_named(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  fc_dimm: 16\n")
    with pytest.raises(SystemExit):
        main(["fit", "--config", str(bad)])
    assert "fc_dimm" in capsys.readouterr().err


def test_fit_any_architecture_by_name():
    cli = main(["fit", *TINY, "--model.arch=r2plus1d_18", "--trainer.fast_dev_run=1"])
    assert type(cli.model.net).__name__ == "R2Plus1D18" and cli.trainer.state.finished


def test_the_mitigation_preset_adds_stillmix_next_to_the_default_monitor():
    from lightning_selrel import SelectiveRelevanceMonitor, StaticBiasMitigation

    cli = main(
        ["--config", str(REPO / "callbacks" / "static_bias_mitigation.yaml"), "--trainer.logger=false"], run=False
    )
    mitigation = [c for c in cli.trainer.callbacks if isinstance(c, StaticBiasMitigation)]
    assert len(mitigation) == 1 and any(isinstance(c, SelectiveRelevanceMonitor) for c in cli.trainer.callbacks)
    assert (mitigation[0].method, mitigation[0].p, mitigation[0].alpha, mitigation[0].bank_size) == (
        "stillmix",
        1.0,  # every clip: the paper's 0.5 did not move the default run (README, "Fixing static bias")
        200.0,
        256,
    )


def test_predict_writes_one_row_per_clip_into_the_run_folder(tmp_path, capsys):
    import csv

    cli = main(["predict", *TINY, "--data.init_args.test_size=8"])  # two batches of 4
    path = Path(cli.trainer.log_dir) / "predictions.csv"
    rows = list(csv.DictReader(path.open()))
    assert len(rows) == 8 and [int(r["index"]) for r in rows] == list(range(8))  # the test set, in order
    names = cli.datamodule.class_names
    for row in rows:
        assert row["name"] == names[int(row["predicted"])] and 0 <= float(row["probability"]) <= 1
        assert int(row["label"]) == int(row["index"]) % 4  # the built-in test clip i is of class i % 4
    # A writer of the user's own replaces the default one: JSON, top 2.
    out = tmp_path / "mine.json"
    writer = {"class_path": "lightning_selrel.ClipPredictionWriter", "init_args": {"output": str(out), "top_k": 2}}
    cli = main(["predict", *TINY, f"--trainer.callbacks+={json.dumps(writer)}"])
    data = json.loads(out.read_text())
    assert (
        len(data) == 4
        and {"top2", "top2_probability"} <= set(data[0])
        and data[0]["probability"] >= data[0]["top2_probability"]
    )
    assert not (Path(cli.trainer.log_dir) / "predictions.csv").exists()


def test_a_prediction_writer_names_a_bad_output(tmp_path):
    from lightning_selrel import ClipPredictionWriter

    with pytest.raises(ValueError, match="use a .csv or .json file name"):
        ClipPredictionWriter("out.txt")
    with pytest.raises(ValueError, match="top_k must be an integer >= 1"):
        ClipPredictionWriter(top_k=0)
