"""Mistakes on the command line (cli.py's error path): each fails before any work with one line naming the value
and the fix, exit status 2, no traceback, and leaves no log folder behind and no existing file changed."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
import yaml
from tiny_cli import TINY as TINY_ARGS
from ucf_fixture import write_ucf_tree

from lightning_selrel.commands.dispatch import COMMANDS, front_door_help, main
from lightning_selrel.commands.lightning_cli import DEBUG_ENV

REPO = Path(__file__).resolve().parents[2]
TINY = [*TINY_ARGS, "--trainer.max_epochs=1"]
MONITOR = "lightning_selrel.SelectiveRelevanceMonitor"


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


def fails(args: list[str], capsys) -> str:
    """Run ``fit``-style ``args`` in-process; they must exit 2 with one line. Returns that line."""
    with pytest.raises(SystemExit) as exit_:
        main(args)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines, "no message"
    return lines[-1]


def no_logs(folder: Path) -> bool:
    return not (folder / "lightning_logs").exists()


def monitor_config(tmp_path: Path, **init_args) -> str:
    path = tmp_path / "monitor.yaml"
    path.write_text(yaml.safe_dump({"trainer": {"callbacks": [{"class_path": MONITOR, "init_args": init_args}]}}))
    return str(path)


def checksum(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- configuration errors -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("init_args", "expected"),
    [
        ({"methods": ["dtd", "nope"]}, "SelectiveRelevanceMonitor: unknown explanation method(s) ['nope']; valid"),
        ({"n_std": -1}, "SelectiveRelevanceMonitor: n_std must be"),
        ({"num_clips": 0}, "SelectiveRelevanceMonitor: num_clips must be"),
    ],
    ids=["method", "n_std", "num_clips"],
)
def test_a_bad_monitor_argument_is_its_own_one_line_message(init_args, expected, tmp_path, capsys):
    line = fails(["fit", *TINY, "--config", monitor_config(tmp_path, **init_args)], capsys)
    assert line.startswith("python -m lightning_selrel fit: error: ") and expected in line
    assert "Namespace" not in line and "Expected a" not in line  # not jsonargparse's wrapper
    assert no_logs(tmp_path)


@pytest.mark.parametrize(
    ("option", "expected"),
    [
        ("--data.init_args.batch_size=0", "MotionContextDataModule: batch_size must be"),
        ("--data.init_args.num_workers=-1", "MotionContextDataModule: num_workers must be"),
        ("--data.init_args.train_size=-3", "MotionContextDataModule: train_size must be"),
        ("--data.init_args.clip_shape=[8,8,8]", "C3D: clip_shape (8, 8, 8) is too small"),
        ("--data.init_args.num_classes=1", "num_classes must be at least 4, got 1"),
    ],
    ids=["batch_size", "num_workers", "train_size", "clip_shape", "num_classes"],
)
def test_a_bad_data_argument_fails_in_the_constructor(option, expected, tmp_path, capsys):
    line = fails(["fit", *TINY, option], capsys)
    assert expected in line and "Namespace" not in line
    assert no_logs(tmp_path)


def _ucf_args(tree) -> list[str]:
    return [
        "--data=lightning_selrel.UCF101DataModule",
        f"--data.root={tree.root}",
        "--data.resize=[20,24]",
        "--data.crop=16",
        "--data.clip_len=16",
        "--data.batch_size=2",
        "--data.num_workers=0",
        "--model.width=2",
        "--model.fc_dim=8",
        "--trainer.max_epochs=1",
        "--trainer.callbacks=[]",
        "--trainer.enable_progress_bar=false",
    ]


def test_ucf101_layout_errors_and_a_one_class_model_are_one_line(tmp_path, capsys):
    tree = write_ucf_tree(tmp_path / "data")
    (tree.annotations / "classInd.txt").unlink()
    line = fails(["fit", *_ucf_args(tree)], capsys)
    assert "UCF101DataModule: no classInd.txt found in" in line and "pass annotation_dir" in line
    assert no_logs(tmp_path)

    # One class in the index: the model (linked to it) refuses to be a one-class classifier.
    one = write_ucf_tree(tmp_path / "one")
    (one.annotations / "classInd.txt").write_text("1 ApplyEyeMakeup\n")
    for name in ("trainlist01.txt", "testlist01.txt"):
        path = one.annotations / name
        path.write_text("".join(f"{line}\n" for line in path.read_text().splitlines() if "ApplyEyeMakeup" in line))
    line = fails(["fit", *_ucf_args(one)], capsys)
    assert "VideoClassifier: num_classes must be an integer >= 2" in line
    assert no_logs(tmp_path)

    # Every listed video unreadable: found in setup, still before training and without a log folder.
    bad = write_ucf_tree(tmp_path / "bad")
    for video in bad.root.rglob("*.avi"):
        video.write_bytes(b"not a video")
    line = fails(["fit", *_ucf_args(bad)], capsys)
    assert "none of the 6 videos of" in line and "can be read" in line
    assert no_logs(tmp_path)


def test_debug_variable_shows_the_traceback(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(DEBUG_ENV, "1")
    with pytest.raises(Exception, match="batch_size must be"):
        main(["fit", *TINY, "--data.init_args.batch_size=0"])
    for off in ("0", "false", ""):  # a value that says no is no
        monkeypatch.setenv(DEBUG_ENV, off)
        line = fails(["fit", *TINY, "--data.init_args.batch_size=0"], capsys)
        assert "batch_size must be" in line, off


def test_python_m_shows_one_line_and_no_traceback(tmp_path):
    """As a user runs it: the whole stderr of a mistake is Lightning's banner at most, then our line."""
    result = subprocess.run(
        [sys.executable, "-m", "lightning_selrel", "fit", *TINY, "--data.init_args.batch_size=0"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("python -m lightning_selrel fit: error: MotionContextDataModule: batch_size must be")
    assert no_logs(tmp_path)


# -- found before training ------------------------------------------------------------------------
def test_an_empty_validation_set_fails_in_setup_when_something_needs_it(tmp_path, capsys):
    empty = "--data.init_args.val_size=0"
    line = fails(["fit", *TINY, empty], capsys)  # the default monitor explains validation clips
    assert "validation set is empty" in line and "data.val_size > 0" in line
    assert no_logs(tmp_path)
    line = fails(["fit", *TINY, empty, "--trainer.callbacks=[]"], capsys)  # the default scheduler steps on val/loss
    assert "scheduler steps on val/loss" in line and "--model.scheduler" in line
    assert no_logs(tmp_path)


def test_without_monitor_and_a_scheduler_that_needs_no_validation_it_trains_and_says_so(tmp_path):
    args = [*TINY, "--data.init_args.val_size=0", "--trainer.callbacks=[]"]
    args += ["--model.scheduler=torch.optim.lr_scheduler.StepLR", "--model.scheduler.step_size=10"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cli = main(["fit", *args])
    assert cli.trainer.state.finished and cli.trainer.current_epoch == 1
    said = [w for w in caught if "training without validation" in str(w.message)]
    assert len(said) == 1


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A checkpoint of one short epoch with the monitor (seed 0, 4 probe clips)."""
    base = tmp_path_factory.mktemp("trained")
    args = [*TINY, f"--trainer.default_root_dir={base}", "--trainer.limit_train_batches=1"]
    cli = main(["fit", *args, "--config", monitor_config(base, num_clips=4, num_videos=0, seed=0)])
    (ckpt,) = Path(cli.trainer.log_dir, "checkpoints").glob("*.ckpt")
    return ckpt


def test_ckpt_path_that_is_not_a_lightning_checkpoint_fails_before_training(trained, tmp_path, capsys):
    bare = tmp_path / "weights.pth"
    torch.save(torch.load(trained, weights_only=False)["state_dict"], bare)
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(trained.read_bytes()[:5000])
    random = tmp_path / "random.ckpt"
    random.write_bytes(bytes(range(256)) * 40)
    cases = {
        bare: ["is a bare state dict", "--model.pretrained"],
        truncated: ["damaged"],
        random: ["not a"],
        tmp_path / "missing.ckpt": ["not found"],
    }
    for path, expected in cases.items():
        before = checksum(path) if path.exists() else None
        line = fails(["fit", *TINY, f"--ckpt_path={path}"], capsys)
        assert str(path) in line and all(e in line for e in expected), line
        assert "holds Python objects" not in line
        assert no_logs(tmp_path) and (checksum(path) if path.exists() else None) == before


def test_an_unusable_log_folder_is_named_before_any_work(tmp_path, capsys):
    blocker = tmp_path / "logs"
    blocker.write_text("a file where the log folder should be\n")
    line = fails(["fit", *TINY, f"--trainer.default_root_dir={blocker}/run"], capsys)
    assert f"{blocker} is a file, not a folder" in line and "--trainer.default_root_dir" in line
    assert blocker.read_text() == "a file where the log folder should be\n"


def test_a_resume_with_other_probe_settings_says_which_probe_set_it_keeps(trained, tmp_path):
    args = [*TINY, "--trainer.max_epochs=2", "--trainer.limit_train_batches=1", f"--ckpt_path={trained}"]
    config = monitor_config(tmp_path, num_clips=4, num_videos=0, seed=7)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        main(["fit", *args, "--config", config])
    said = [str(w.message) for w in caught if "probe set" in str(w.message)]
    assert len(said) == 1 and "seed=7 (the checkpoint's: 0)" in said[0] and "keeping the checkpoint's" in said[0]


# -- the front door -------------------------------------------------------------------------------
def test_front_door_lists_every_command(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: python -m lightning_selrel <command>")
    for name in COMMANDS:
        assert f"\n  {name} " in out, name
    assert "spatial bias" in front_door_help()
    assert main(["explain", "--help"]) is None  # each command keeps its own help (exit status 0)
    assert capsys.readouterr().out.startswith("usage: python -m lightning_selrel explain")


def test_front_door_names_the_program_as_typed(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "lightning_selrel", "--help"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0 and result.stdout.startswith("usage: python -m lightning_selrel <command>")
    assert "__main__.py" not in result.stdout and "calibrate" in result.stdout and "explain" in result.stdout
