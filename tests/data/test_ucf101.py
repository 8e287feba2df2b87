"""UCF101DataModule on a tiny UCF-101-shaped tree of real .avi files: links, layout errors, setup, the preset."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import pytest
from ucf_fixture import (
    CLASS_INDEX,
    CLIP_LEN,
    CROP,
    make_dm,
    write_ucf_tree,
)

REPO = Path(__file__).resolve().parents[2]


def test_model_links_are_available_right_after_init(ucf_tree):
    dm = make_dm(ucf_tree.root)  # annotations found beside the root: root/../ucfTrainTestlist
    assert dm.annotation_dir == ucf_tree.annotations
    assert dm.num_classes == 3
    assert dm.class_names == CLASS_INDEX
    assert dm.clip_shape == (CLIP_LEN, CROP, CROP)


def test_missing_root_or_split_file_fails_at_construction(ucf_tree, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"(?s)root .*nowhere.* is not a folder.*expected layout"):
        make_dm(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match=r"(?s)trainlist02.txt not found \(split=2\).*expected layout"):
        make_dm(ucf_tree.root, split=2)
    (tmp_path / "videos").mkdir()
    with pytest.raises(FileNotFoundError, match="no classInd.txt found in .*videos"):
        make_dm(tmp_path / "videos")
    with pytest.raises(ValueError, match="crop 32 does not fit"):
        make_dm(ucf_tree.root, crop=32)


def test_class_in_the_lists_without_a_folder_fails_in_setup(tmp_path):
    tree = write_ucf_tree(tmp_path)
    shutil.rmtree(tree.root / "YoYo")
    dm = make_dm(tree.root)
    with pytest.raises(FileNotFoundError, match=r"(?s)lists classes with no folder in .*UCF-101: \['YoYo'\]"):
        dm.setup("fit")


def test_setup_skips_the_corrupt_video_with_one_warning(ucf_tree):
    dm = make_dm(ucf_tree.root)
    with pytest.warns(UserWarning) as record:
        dm.setup("fit")
    messages = [str(w.message) for w in record]
    assert sum(str(ucf_tree.corrupt) in m for m in messages) == 1
    assert any("train: 5 videos, 1 skipped" in m for m in messages)
    assert list(dm.skipped) == [str(ucf_tree.corrupt)]
    assert len(dm.train_dataloader().dataset) == 5
    assert len(dm.val_dataloader().dataset) == 3


def test_fit_fast_dev_run_with_the_ucf101_preset(ucf_tree, tmp_path):
    from lightning_selrel import commands as cli

    args = [
        "fit",
        "--config",
        str(REPO / "configs" / "c3d_ucf101.yaml"),
        "--data.root",
        str(ucf_tree.root),
        "--data.cache_dir",
        str(tmp_path / "cache"),
        "--data.clip_len=16",
        "--data.resize=[20,24]",
        "--data.crop=16",
        "--data.batch_size=2",
        "--data.num_workers=0",
        "--model.width=4",
        "--model.fc_dim=16",
        "--trainer.fast_dev_run=1",
        "--trainer.accelerator=cpu",
        "--trainer.devices=1",
        "--trainer.logger=false",
        "--trainer.enable_progress_bar=false",
        "--trainer.default_root_dir",
        str(tmp_path),
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cli.main(args)
    assert (tmp_path / "cache" / "20x24-jpeg90").is_dir()  # the default format
