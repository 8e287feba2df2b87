"""VideoListDataModule: a small Kinetics-shaped tree (class folders of .mp4, .avi, .mkv and .webm files, MMAction2
lists, a label map) checked, cached and trained on with the monitor, its bad inputs named by file and line, and
two DDP processes on it."""

from __future__ import annotations

import warnings
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import pytorch_lightning as pl
import torch

from lightning_selrel import C3DClassifier, SelectiveRelevanceMonitor, VideoListDataModule
from lightning_selrel.metrics import tags

CLASSES = ("abseiling", "air_drumming", "archery")
CODECS = {".mp4": "mp4v", ".avi": "MJPG", ".mkv": "MJPG", ".webm": "VP80"}


def _write(path: Path, frames: np.ndarray) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*CODECS[path.suffix]), 25, frames.shape[2:0:-1])
    assert writer.isOpened(), path
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()


def _moving(label: int, seed: int, frames: int = 24, size: tuple[int, int] = (24, 32)) -> np.ndarray:
    """A class-coloured square moving one way per class over a noisy background."""
    rng = np.random.default_rng(seed)
    video = rng.integers(30, 60, (frames, *size, 3), dtype=np.uint8)
    for t in range(frames):
        x = (4 + t * (label + 1)) % (size[1] - 6)
        video[t, 8:14, x : x + 6] = (200 if label == 0 else 60, 200 if label == 1 else 60, 200 if label == 2 else 60)
    return video


@pytest.fixture(scope="module")
def kinetics(tmp_path_factory) -> SimpleNamespace:
    """root/<class>/<id>.<ext>, train.txt / val.txt ('path label'), label_map.txt: four files per class, every
    container once per class and split."""
    base = tmp_path_factory.mktemp("kinetics")
    root, train, val = base / "videos", [], []
    for label, name in enumerate(CLASSES):
        (root / name).mkdir(parents=True)
        for number, ext in enumerate(CODECS):
            relative = f"{name}/{name}_{number:03d}{ext}"
            _write(root / relative, _moving(label, seed=10 * label + number))
            (train if number % 2 == 0 else val).append(f"{relative} {label}")
            relative = f"{name}/{name}_{number + 10:03d}{ext}"
            _write(root / relative, _moving(label, seed=100 + 10 * label + number))
            (val if number % 2 == 0 else train).append(f"{relative} {label}")
    (base / "train.txt").write_text("\n".join(train) + "\n")
    (base / "val.txt").write_text("# MMAction2's ann_file format\n" + "\n".join(val) + "\n\n")
    (base / "label_map.txt").write_text("\n".join(CLASSES) + "\n")
    return SimpleNamespace(base=base, root=root, train=base / "train.txt", val=base / "val.txt")


def _module(kinetics, **options) -> VideoListDataModule:
    defaults = dict(
        root=str(kinetics.root),
        train_list=str(kinetics.train),
        val_list=str(kinetics.val),
        class_names=str(kinetics.base / "label_map.txt"),
        clip_len=16,
        resize=(20, 24),
        crop=16,
        batch_size=4,
        num_workers=0,
        seed=0,
    )
    return VideoListDataModule(**{**defaults, **options})


def test_the_lists_every_container_and_the_clips(kinetics):
    dm = _module(kinetics, clips_per_video=2)
    assert dm.class_names == list(CLASSES) and dm.num_classes == 3 and dm.clip_shape == (16, 16, 16)
    dm.setup("fit")
    train, val = dm.train_dataloader().dataset, dm.val_dataloader().dataset
    assert len(train.videos) == len(val.videos) == 12 and not dm.skipped
    assert {v.path.suffix for v in train.videos} == set(CODECS)
    clip, label = val[0]
    assert clip.dtype == torch.uint8 and clip.shape == (3, 16, 16, 16) and label in (0, 1, 2)
    long = dm.long_clips("val", 3)  # calibrate's interface: factor x T frames of the same videos
    assert long[0][0].shape == (3, 48, 16, 16)
    assert len(dm.test_dataloader().dataset) == len(val)  # test_list defaults to val_list


def test_without_class_names_the_labels_name_the_classes(kinetics):
    dm = _module(kinetics, class_names=None)
    assert dm.class_names == ["0", "1", "2"]


def test_the_cache_gives_the_same_clips(kinetics, tmp_path):
    plain = _module(kinetics)
    cached = _module(kinetics, cache_dir=str(tmp_path / "cache"), cache_format="npy")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cached.prepare_data()
    plain.setup("validate")
    cached.setup("validate")
    a, b = plain.val_dataloader().dataset, cached.val_dataloader().dataset
    assert all(v.cache is not None and v.cache.is_file() for v in b.videos)
    for index in range(len(a)):
        assert torch.equal(a[index][0], b[index][0])
    assert sorted(p.suffix for p in (tmp_path / "cache").rglob("*.npy")) == [".npy"] * 24


@pytest.mark.parametrize(
    ("train_text", "class_names", "message"),
    [
        ("abseiling/abseiling_000.mp4\n", None, "line 1: expected 'relative/path label'"),
        ("abseiling/abseiling_000.mp4 zero\n", None, "line 1: expected 'relative/path label'"),
        ("abseiling/abseiling_000.mp4 -1\n", None, "label -1 is negative"),
        ("# nothing\n\n", None, "lists no video"),
        ("abseiling/abseiling_000.mp4 7\n", "label_map.txt", "has label 7, and"),
        ("abseiling/\xff.mp4 0\n", None, None),
    ],
    ids=["no label", "a word label", "negative", "empty", "label without a name", "latin-1 path"],
)
def test_a_bad_list_is_named_by_file_and_line(kinetics, tmp_path, train_text, class_names, message):
    bad = tmp_path / "train.txt"
    bad.write_bytes(train_text.encode("latin-1"))
    names = str(kinetics.base / class_names) if class_names else None
    if message is None:  # not UTF-8
        with pytest.raises(ValueError, match="is not a UTF-8 text file") as raised:
            _module(kinetics, train_list=str(bad), class_names=names)
    else:
        with pytest.raises(ValueError, match=message) as raised:
            _module(kinetics, train_list=str(bad), class_names=names)
    assert str(bad) in str(raised.value) or str(kinetics.base) in str(raised.value)


def test_missing_and_unreadable_videos_are_skipped_and_named(kinetics, tmp_path):
    listed = tmp_path / "val.txt"
    broken = kinetics.root / "archery" / "broken.mp4"
    broken.write_bytes(b"not a video")
    try:
        listed.write_text(kinetics.val.read_text() + "archery/gone.mp4 2\narchery/broken.mp4 2\n")
        dm = _module(kinetics, val_list=str(listed))
        with pytest.warns(UserWarning, match="skipping video"):
            dm.setup("validate")
        assert set(dm.skipped) == {str(kinetics.root / "archery" / "gone.mp4"), str(broken)}
        assert "but not found" in dm.skipped[str(kinetics.root / "archery" / "gone.mp4")]
    finally:
        broken.unlink()


def _fit(kinetics, monitor: SelectiveRelevanceMonitor, **trainer_options) -> pl.Trainer:
    """One epoch of a tiny C3D on the list, with ``monitor``."""
    dm = _module(kinetics)
    torch.manual_seed(0)
    model = C3DClassifier(num_classes=3, width=2, fc_dim=8, clip_shape=(16, 16, 16), class_names=dm.class_names)
    trainer = pl.Trainer(
        accelerator="cpu",
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        callbacks=[monitor],
        **trainer_options,
    )
    trainer.fit(model, dm)
    return trainer


def test_it_trains_with_the_monitor(kinetics):
    monitor = SelectiveRelevanceMonitor(methods=["dtd", "guided_backprop"], num_clips=4, num_videos=0)
    trainer = _fit(kinetics, monitor)
    assert 0.0 <= float(trainer.callback_metrics[tags.method_tag("dtd", "spatial_bias")]) <= 1.0
    assert tags.behaviour_tag("acc_frozen") in trainer.callback_metrics


@pytest.mark.slow
def test_two_ddp_processes_train_on_the_list_with_the_monitor(kinetics):
    monitor = SelectiveRelevanceMonitor(methods=["dtd"], num_clips=4, num_videos=0)
    trainer = _fit(kinetics, monitor, devices=2, strategy="ddp_spawn")
    assert 0.0 <= float(trainer.callback_metrics[tags.method_tag("dtd", "spatial_bias")]) <= 1.0
