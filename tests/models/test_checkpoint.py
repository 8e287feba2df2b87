"""Checkpoint files: every kind of unusable file is told apart in one line, and a classifier rebuilds from its own."""

from __future__ import annotations

import collections
import pathlib

import numpy as np
import pytest
import pytorch_lightning as pl
import torch

from lightning_selrel import C3DClassifier
from lightning_selrel.files import CheckpointError, describe, is_lightning_checkpoint, load_file
from lightning_selrel.models.checkpoint import load_classifier


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    base = tmp_path_factory.mktemp("checkpoints")
    torch.manual_seed(0)
    model = C3DClassifier(num_classes=3, width=2, fc_dim=8, clip_shape=(16, 16, 16), class_names=["a", "b", "c"])
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False)
    trainer.strategy.connect(model)
    trainer.save_checkpoint(base / "model.ckpt")
    whole = (base / "model.ckpt").read_bytes()
    (base / "truncated.ckpt").write_bytes(whole[: len(whole) // 2])
    (base / "random.ckpt").write_bytes(np.random.default_rng(1).integers(0, 256, 3000, dtype=np.uint8).tobytes())
    (base / "text.ckpt").write_text("not a checkpoint\n")
    (base / "empty.ckpt").write_bytes(b"")
    torch.save(model.state_dict(), base / "weights.pth")
    torch.save({"weights": torch.zeros(3), "path": pathlib.PurePosixPath("x")}, base / "objects.pth")
    torch.save({"a": torch.zeros(3)}, base / "legacy.pth", _use_new_zipfile_serialization=False)
    legacy = (base / "legacy.pth").read_bytes()
    (base / "legacy_truncated.pth").write_bytes(legacy[: len(legacy) // 2])
    return base


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("missing.ckpt", "not found"),
        ("empty.ckpt", "the file is empty"),
        ("random.ckpt", "it is not a PyTorch file"),
        ("text.ckpt", "it is not a PyTorch file"),
        ("truncated.ckpt", "it is a PyTorch file, but damaged or truncated"),
        ("legacy_truncated.pth", "legacy format), but truncated"),
        ("objects.pth", "Unsupported global: GLOBAL pathlib.PurePosixPath: it holds Python objects"),
    ],
)
def test_every_unusable_file_says_what_it_is_in_one_line(files, name, reason):
    with pytest.raises(CheckpointError) as error:
        load_file(files / name, fix="pass a .ckpt")
    message = str(error.value)
    assert reason in message and str(files / name) in message and "\n" not in message, message
    assert message.endswith("pass a .ckpt") or "if you trust the file" in message
    assert "holds Python objects" not in message or name == "objects.pth"  # random bytes are not "objects"


def test_usable_files_and_what_they_are(files):
    checkpoint = load_file(files / "model.ckpt", mmap=True)
    assert is_lightning_checkpoint(checkpoint) and describe(checkpoint).startswith("a Lightning checkpoint (epoch 0")
    weights = load_file(files / "weights.pth")
    assert not is_lightning_checkpoint(weights)
    assert describe(weights).startswith("a bare state dict of ") and "weights only" in describe(weights)
    assert (
        describe({"state_dict": {"w": {"x": 1}}})
        == "a state dict wrapped under 'state_dict' (weights only, no training state)"
    )
    assert load_file(files / "legacy.pth", mmap=True)["a"].shape == (3,)  # a legacy file cannot be mapped: read whole
    assert describe(collections.OrderedDict()) == "a dict with keys []" and describe(torch.zeros(2, 3)).endswith(
        "(2, 3)"
    )


def test_load_classifier_rebuilds_the_model_and_names_what_is_not_one(files):
    loaded = load_classifier(files / "model.ckpt")
    assert loaded.class_names == ["a", "b", "c"] and not loaded.model.training and loaded.datamodule == {}
    assert loaded.clip_shape == (16, 16, 16)
    with pytest.raises(
        CheckpointError, match=r"weights.pth is a bare state dict of \d+ tensors .*not a Lightning checkpoint"
    ):
        load_classifier(files / "weights.pth")
    with pytest.raises(CheckpointError, match="random.ckpt with torch.load.*not a PyTorch file"):
        load_classifier(files / "random.ckpt")


class _RunsCode:
    def __reduce__(self):
        import os

        return (os.system, ("echo this must never run",))


def test_a_pickle_that_asks_to_run_code_is_named_as_such(tmp_path):
    """The pattern is checked against the installed torch's own message for a blocked global."""
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": _RunsCode()}, path)
    with pytest.raises(CheckpointError, match=r"it asks to run code \((posix|nt)\.system\), refused"):
        load_file(path)
