"""The bad-input table: a careless or hostile user's inputs, one row each, through the front door
(``python -m lightning_selrel ...`` run in-process). Every row: exit status 2, one line naming the culprit (the
words in the row), no traceback, and nothing written: no log folder, no output, no input changed. The cases that
train, kill or interrupt live beside the command they test (test_errors.py, test_calibrate.py,
test_explain_command.py, tests/models/test_trust.py); their list is in docs/reliability.md."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from tiny_cli import TINY
from ucf_fixture import write_ucf_tree, write_video

from lightning_selrel.commands import main


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> SimpleNamespace:
    """A tiny trained checkpoint, a short video, a UCF-shaped tree, a binary file: the inputs the rows spoil."""
    base = tmp_path_factory.mktemp("inputs")
    trained = main(
        ["fit", *TINY, "--trainer.max_epochs=1", "--trainer.limit_train_batches=1"]
        + [
            "--trainer.limit_val_batches=1",
            "--trainer.callbacks=[]",
            "--trainer.logger=false",
            f"--trainer.default_root_dir={base / 'run'}",
        ]
    )
    ckpt = base / "tiny.ckpt"
    trained.trainer.save_checkpoint(ckpt)
    video = base / "clip.avi"
    frames = np.full((24, 16, 16, 3), 40, dtype=np.uint8)
    frames[:, 4:10, 4:10] = 220
    write_video(video, frames, fps=25)
    binary = base / "clip.mp4"
    binary.write_bytes(bytes(range(256)) * 8)
    tree = write_ucf_tree(base / "ucf")
    return SimpleNamespace(base=base, ckpt=ckpt, video=video, binary=binary, tree=tree)


def _ucf(tree, annotations: Path) -> list[str]:
    return [
        "--data=lightning_selrel.UCF101DataModule",
        f"--data.root={tree.root}",
        f"--data.annotation_dir={annotations}",
        "--data.resize=[20,24]",
        "--data.crop=16",
        "--data.clip_len=16",
        "--data.num_workers=0",
        "--model.width=2",
        "--model.fc_dim=8",
    ]


def _spoiled_annotations(inputs, work: Path, class_index: bytes) -> Path:
    folder = work / "lists"
    shutil.copytree(inputs.tree.annotations, folder)
    (folder / "classInd.txt").write_bytes(class_index)
    return folder


# (id, the command line from (inputs, a fresh folder), words the one line must contain)
ROWS = [
    (
        "fit: a refusal in set-up leaves no folder behind",
        lambda i, w: [
            "fit",
            *TINY,
            f"--trainer.default_root_dir={w / 'new' / 'runs'}",
            "--trainer.limit_val_batches=0",
        ],
        "limit_val_batches=0 turns validation off",
    ),
    ("fit: --config a binary file", lambda i, w: ["fit", "--config", str(i.binary)], "is not a text (YAML) file"),
    (
        "fit: a float option given nan",
        lambda i, w: ["fit", *TINY, "--trainer.callbacks.init_args.n_std=nan"],
        "n_std must be a finite number",
    ),
    (
        "fit: a choice not among the choices",
        lambda i, w: ["fit", *TINY, "--data.init_args.cue=sideways"],
        "--data.init_args.cue=sideways: expected one of 'motion', 'context', 'both'",
    ),
    ("fit: a number that is not one", lambda i, w: ["fit", *TINY, "--trainer.max_epochs=abc"], "expected int"),
    (
        "fit: classInd.txt not UTF-8",
        lambda i, w: ["fit", *_ucf(i.tree, _spoiled_annotations(i, w, b"1 Apply\xffEyeMakeup\n"))],
        "classInd.txt is not a UTF-8 text file",
    ),
    (
        "fit: classInd.txt empty",
        lambda i, w: ["fit", *_ucf(i.tree, _spoiled_annotations(i, w, b""))],
        "classInd.txt lists no class",
    ),
    (
        "validate: --ckpt_path with another --model.width",
        lambda i, w: ["validate", *TINY, f"--ckpt_path={i.ckpt}", "--model.width=16"],
        "holds a model with width=2, and the configuration asks for width=16",
    ),
    (
        "fit: resume with other clips",
        lambda i, w: ["fit", *TINY, f"--ckpt_path={i.ckpt}", "--data.init_args.clip_shape=[16,24,24]"],
        "holds a model for clip_shape=[16, 16, 16] and the data give clip_shape=[16, 24, 24]",
    ),
    (
        "predict: a checkpoint of another class count",
        lambda i, w: ["predict", *TINY, f"--ckpt_path={i.ckpt}", "--data.init_args.num_classes=3"],
        "holds a model for num_classes=4 and the data give num_classes=3",
    ),
    (
        "fit: --ckpt_path last without a last checkpoint",
        lambda i, w: ["fit", *TINY, "--ckpt_path=last"],
        "--ckpt_path last: no last*.ckpt in this run's new version folder",
    ),
    (
        "explain: --config with a misspelled key",
        lambda i, w: (
            ["explain", "--config", str(_write(w / "e.yaml", "n_sdt: 2\n")), "--ckpt", str(i.ckpt)]
            + ["--video", str(i.video)]
        ),
        "'n_sdt' is not an option of this command; did you mean 'n-std'?",
    ),
    (
        "explain: --n-std inf",
        lambda i, w: ["explain", "--ckpt", str(i.ckpt), "--video", str(i.video), "--n-std", "inf"],
        "--n-std",
    ),
    (
        "explain: --clip-shape with a zero",
        lambda i, w: ["explain", "--ckpt", str(i.ckpt), "--video", str(i.video), "--clip-shape", "0", "16", "16"],
        "--clip-shape 0 16 16",
    ),
    (
        "explain: --out over its own --video",
        lambda i, w: ["explain", "--ckpt", str(i.ckpt), "--video", str(i.video), "--out", str(i.video)],
        "--video",
    ),
    (
        "explain: --ckpt a binary file",
        lambda i, w: ["explain", "--ckpt", str(i.binary), "--video", str(i.video), "--json", str(w / "r.json")],
        "clip.mp4",
    ),
    (
        "calibrate: --n-std-grid inf",
        lambda i, w: ["calibrate", "--out", str(w / "cal"), "--n-std-grid", "4", "inf", *TINY],
        "--n-std-grid",
    ),
    (
        "calibrate: --out an existing file",
        lambda i, w: ["calibrate", "--out", str(_write(w / "cal.txt", "mine\n")), *TINY],
        "--out",
    ),
    (
        "calibrate: a bad fit option, the one line fit gives",
        lambda i, w: ["calibrate", "--out", str(w / "cal"), *TINY, "--data.init_args.batch_size=0"],
        "batch_size must be an integer >= 1, got 0",
    ),
    (
        "cache: --workers -1",
        lambda i, w: ["cache", "--root", str(i.tree.root), "--cache-dir", str(w / "cache"), "--workers", "-1"],
        "--workers",
    ),
    (
        "fit: a cache format that does not exist",
        lambda i, w: (
            ["fit", *_ucf(i.tree, i.tree.annotations), f"--data.cache_dir={w / 'cache'}"] + ["--data.cache_format=png"]
        ),
        "--data.init_args.cache_format=png: expected one of 'jpeg', 'npy'",
    ),
    (
        "fit: a JPEG quality out of range",
        lambda i, w: (
            ["fit", *_ucf(i.tree, i.tree.annotations), f"--data.cache_dir={w / 'cache'}"] + ["--data.cache_quality=0"]
        ),
        "JPEG quality 0 must be an integer from 1 to 100",
    ),
    (
        "cache: --quality out of range",
        lambda i, w: ["cache", "--root", str(i.tree.root), "--cache-dir", str(w / "cache"), "--quality", "0"],
        "--quality 0: must be from 1 to 100",
    ),
    (
        "cache: --shard out of range",
        lambda i, w: ["cache", "--root", str(i.tree.root), "--cache-dir", str(w / "cache"), "--shard", "4/4"],
        "--shard 4/4: expected K/N with 0 <= K < N",
    ),
    (
        "cache: --root missing",
        lambda i, w: ["cache", "--root", str(w / "nowhere"), "--cache-dir", str(w / "cache")],
        "nowhere",
    ),
]


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _snapshot(folder: Path) -> dict[str, str]:
    """Every file (by content) and folder under ``folder``."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "folder"
        for p in folder.rglob("*")
    }


@pytest.mark.parametrize(("row", "command", "words"), ROWS, ids=[row[0] for row in ROWS])
def test_a_bad_input_is_one_line_exit_2_and_nothing_written(inputs, tmp_path, monkeypatch, capsys, row, command, words):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "work").mkdir()
    argv = command(inputs, tmp_path / "work")
    before, inputs_before = _snapshot(tmp_path), _snapshot(inputs.base)
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2, row
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines and "Traceback" not in err, err[-2000:]
    assert words in lines[-1], (row, lines[-1])
    assert _snapshot(tmp_path) == before, "something was written"
    assert _snapshot(inputs.base) == inputs_before, "an input was changed"
    assert not (tmp_path / "lightning_logs").exists()
