"""UCF101DataModule and the frame cache on a tiny UCF-101-shaped tree of real .avi files."""

from __future__ import annotations

import json
import os
import random
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from ucf_fixture import CLASS_INDEX, noise_video, write_ucf_tree, write_video

from lightning_selrel.ucf101 import UCF101Clips, UCF101DataModule, main, read_class_index, read_split
from lightning_selrel.video_cache import build_cache, cache_entry, decode_video

RESIZE = (20, 24)
CROP = 16
CLIP_LEN = 16
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return write_ucf_tree(tmp_path_factory.mktemp("ucf"))


def make_dm(root, **kwargs) -> UCF101DataModule:
    options = dict(clip_len=CLIP_LEN, resize=RESIZE, crop=CROP, batch_size=4, num_workers=0)
    options.update(kwargs)
    return UCF101DataModule(str(root), **options)


def quiet_setup(dm: UCF101DataModule, stage: str = "fit") -> UCF101DataModule:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dm.setup(stage)
    return dm


# -- annotations ----------------------------------------------------------------------------------
def test_split_files_parse_with_crlf_blank_lines_and_handstand_spelling(tree):
    names = read_class_index(tree.annotations / "classInd.txt")
    assert names == CLASS_INDEX
    train = read_split(tree.annotations / "trainlist01.txt", names)
    test = read_split(tree.annotations / "testlist01.txt", names)
    assert len(train) == 6 and len(test) == 3
    assert ("HandstandPushups/v_HandStandPushups_g01_c01.avi", 1) in train  # 1-indexed in the file, 0 here
    assert [label for _, label in test] == [0, 1, 2]  # test list: label from the folder name


def test_split_label_that_disagrees_with_its_folder_fails(tmp_path):
    bad = tmp_path / "trainlist01.txt"
    bad.write_text("YoYo/v_YoYo_g01_c01.avi 1\n")
    with pytest.raises(ValueError, match=r"trainlist01.txt, line 1: label 1 disagrees with folder 'YoYo'"):
        read_split(bad, CLASS_INDEX)
    bad.write_text("Unknown/v_x.avi 1\n")
    with pytest.raises(ValueError, match="'Unknown'.*not in classInd"):
        read_split(bad, CLASS_INDEX)


def test_class_index_with_a_gap_fails(tmp_path):
    path = tmp_path / "classInd.txt"
    path.write_text("1 A\n3 B\n")
    with pytest.raises(ValueError, match="without gaps"):
        read_class_index(path)


# -- construction ---------------------------------------------------------------------------------
def test_model_links_are_available_right_after_init(tree):
    dm = make_dm(tree.root)  # annotations found beside the root: root/../ucfTrainTestlist
    assert dm.annotation_dir == tree.annotations
    assert dm.num_classes == 3
    assert dm.class_names == CLASS_INDEX
    assert dm.clip_shape == (CLIP_LEN, CROP, CROP)


def test_missing_root_or_split_file_fails_at_construction(tree, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"(?s)root .*nowhere.* is not a folder.*expected layout"):
        make_dm(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match=r"(?s)trainlist02.txt not found \(split=2\).*expected layout"):
        make_dm(tree.root, split=2)
    (tmp_path / "videos").mkdir()
    with pytest.raises(FileNotFoundError, match="no classInd.txt found in .*videos"):
        make_dm(tmp_path / "videos")
    with pytest.raises(ValueError, match="crop 32 does not fit"):
        make_dm(tree.root, crop=32)


def test_class_in_the_lists_without_a_folder_fails_in_setup(tmp_path):
    tree = write_ucf_tree(tmp_path)
    shutil.rmtree(tree.root / "YoYo")
    dm = make_dm(tree.root)
    with pytest.raises(FileNotFoundError, match=r"(?s)lists classes with no folder in .*UCF-101: \['YoYo'\]"):
        dm.setup("fit")


# -- setup and items ------------------------------------------------------------------------------
def test_setup_skips_the_corrupt_video_with_one_warning(tree):
    dm = make_dm(tree.root)
    with pytest.warns(UserWarning) as record:
        dm.setup("fit")
    messages = [str(w.message) for w in record]
    assert sum(str(tree.corrupt) in m for m in messages) == 1
    assert any("train: 5 videos, 1 skipped" in m for m in messages)
    assert list(dm.skipped) == [str(tree.corrupt)]
    assert len(dm.train_dataloader().dataset) == 5
    assert len(dm.val_dataloader().dataset) == 3


def test_eval_clips_are_uint8_centre_window_and_centre_crop(tree):
    dm = quiet_setup(make_dm(tree.root))
    dataset = dm.val_dataloader().dataset
    for index, video in enumerate(dataset.videos):
        clip, label = dataset[index]
        assert clip.dtype == torch.uint8 and clip.shape == (3, CLIP_LEN, CROP, CROP)
        assert label == video.label == index
        full = decode_video(video.path, RESIZE)  # (T, H, W, 3)
        start = (tree.frames - CLIP_LEN) // 2
        top, left = (RESIZE[0] - CROP) // 2, (RESIZE[1] - CROP) // 2
        expected = full[start : start + CLIP_LEN, top : top + CROP, left : left + CROP]
        np.testing.assert_array_equal(clip.permute(1, 2, 3, 0).numpy(), expected)
    clips, labels = next(iter(dm.val_dataloader()))
    assert clips.shape == (3, 3, CLIP_LEN, CROP, CROP) and labels.dtype == torch.int64


def test_short_video_is_loop_padded(tree):
    dm = quiet_setup(make_dm(tree.root))
    dataset = dm.train_dataloader().dataset
    index = next(i for i, v in enumerate(dataset.videos) if v.path == tree.short)
    random.seed(0)
    clip = dataset.read_clip(index)  # (T, crop, crop, 3)
    n = tree.short_frames
    assert clip.shape[0] == CLIP_LEN
    np.testing.assert_array_equal(clip[n:], clip[: CLIP_LEN - n])
    assert not np.array_equal(clip[1], clip[0])


def test_several_evenly_spaced_clips_per_video(tree):
    dm = quiet_setup(make_dm(tree.root, clips_per_video=3), "validate")
    dataset = dm.val_dataloader().dataset
    assert len(dataset) == 9
    span = tree.frames - CLIP_LEN
    assert [int(dataset.frame_ids(tree.frames, c)[0]) for c in range(3)] == [span // 6, span // 2, 5 * span // 6]
    assert dataset[4][1] == 1  # item 4 is the second clip of video 1


def test_train_transforms_crop_inside_the_frame_and_flip(tmp_path):
    tree = write_ucf_tree(tmp_path, frames=20)
    dm = quiet_setup(make_dm(tree.root, cache_dir=str(tmp_path / "cache")))
    dataset = dm.train_dataloader().dataset
    full = np.load(dataset.videos[0].cache)  # (T, H, W, 3)
    assert full.shape == (20, *RESIZE, 3)

    def window(t: int, y: int, x: int, flip: bool) -> np.ndarray:
        return full[t : t + CLIP_LEN, y : y + CROP, x : x + CROP][:, :, :: -1 if flip else 1]

    random.seed(0)
    seen_flips, seen_offsets = set(), set()
    for _ in range(30):
        clip = dataset[0][0].permute(1, 2, 3, 0).numpy()  # (T, crop, crop, 3)
        candidates = [
            (t, y, x, flip)
            for t in range(20 - CLIP_LEN + 1)
            for y in range(RESIZE[0] - CROP + 1)
            for x in range(RESIZE[1] - CROP + 1)
            for flip in (False, True)
        ]
        candidates = [c for c in candidates if np.array_equal(clip[0, 0], window(*c)[0, 0])]  # cheap first pass
        matches = [c for c in candidates if np.array_equal(clip, window(*c))]
        assert len(matches) == 1, "a training clip must be one window and crop of the resized video"
        seen_offsets.add(matches[0][:3])
        seen_flips.add(matches[0][3])
    assert seen_flips == {False, True}
    assert len(seen_offsets) > 5


# -- cache ----------------------------------------------------------------------------------------
def test_cache_gives_the_same_clips_as_decoding(tree, tmp_path):
    direct = quiet_setup(make_dm(tree.root))
    cached = quiet_setup(make_dm(tree.root, cache_dir=str(tmp_path / "cache")))
    assert cached.skipped == direct.skipped == {str(tree.corrupt): cached.skipped[str(tree.corrupt)]}
    for split in ("train", "val"):
        a = getattr(direct, f"{split}_dataloader")().dataset
        b = getattr(cached, f"{split}_dataloader")().dataset
        assert [v.frames for v in a.videos] == [v.frames for v in b.videos]
        assert all(v.cache is None for v in a.videos) and all(v.cache.is_file() for v in b.videos)
        for index in range(len(a)):
            random.seed(index)  # the same window, crop and flip in both
            clip_a, label_a = a[index]
            random.seed(index)
            clip_b, label_b = b[index]
            assert label_a == label_b
            torch.testing.assert_close(clip_a, clip_b, rtol=0, atol=0)


def test_cache_is_reused_and_rebuilt_when_the_source_changes(tmp_path):
    tree = write_ucf_tree(tmp_path)
    cache = tmp_path / "cache"
    first = build_cache(tree.root, cache, RESIZE, workers=1)
    assert (first.built, first.reused, list(first.failed)) == (9, 0, [str(tree.corrupt)])
    entry = cache_entry(cache, Path("YoYo/v_YoYo_g02_c01.avi"), RESIZE)
    assert json.loads(entry.sidecar.read_text())["frames"] == 0 and not entry.array.exists()

    second = build_cache(tree.root, cache, RESIZE, workers=1)
    assert (second.built, second.reused) == (0, 9)  # the corrupt file is not decoded again

    changed = tree.root / "YoYo" / "v_YoYo_g01_c01.avi"
    write_video(changed, noise_video(30, (32, 40), seed=1234))
    os.utime(changed, ns=(1, 1))  # a new mtime even on coarse file systems
    third = build_cache(tree.root, cache, RESIZE, workers=1)
    assert (third.built, third.reused) == (1, 8)
    np.testing.assert_array_equal(
        np.load(cache_entry(cache, changed.relative_to(tree.root), RESIZE).array), decode_video(changed, RESIZE)
    )
    leftovers = [p for p in cache.rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []


def test_interrupted_entry_is_rebuilt(tmp_path):
    tree = write_ucf_tree(tmp_path)
    cache = tmp_path / "cache"
    build_cache(tree.root, cache, RESIZE, workers=1)
    entry = cache_entry(cache, Path("ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi"), RESIZE)
    entry.sidecar.unlink()  # as if killed after the array was written and before the sidecar
    assert build_cache(tree.root, cache, RESIZE, workers=1).built == 1
    assert json.loads(entry.sidecar.read_text())["frames"] == tree.frames


def test_cache_command_line(tmp_path, capsys):
    tree = write_ucf_tree(tmp_path)
    args = ["--root", str(tree.root), "--cache-dir", str(tmp_path / "cache"), "--resize", "20", "24"]
    assert main(args) == 0
    assert "9 videos decoded, 0 already cached, 1 unreadable" in capsys.readouterr().out
    main(args)
    assert "0 videos decoded, 9 already cached" in capsys.readouterr().out
    assert (tmp_path / "cache" / "20x24" / "YoYo" / "v_YoYo_g01_c01.npy").is_file()


# -- failures during an epoch ---------------------------------------------------------------------
def test_truncated_video_is_used_with_the_frames_it_has(tmp_path):
    tree = write_ucf_tree(tmp_path, truncated=True)
    dm = quiet_setup(make_dm(tree.root), "validate")
    dataset = dm.val_dataloader().dataset
    index = next(i for i, v in enumerate(dataset.videos) if v.path == tree.truncated)
    assert dataset.videos[index].frames == tree.frames  # what the header claims
    with pytest.warns(RuntimeWarning, match=r"v_YoYo_g03_c01.avi claims 24 frames but only \d+ decode"):
        clip, label = dataset[index]
    assert clip.shape == (3, CLIP_LEN, CROP, CROP) and label == 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once per file
        dataset[index]


def test_video_that_fails_mid_epoch_is_replaced_by_the_next(tmp_path):
    tree = write_ucf_tree(tmp_path)
    dm = quiet_setup(make_dm(tree.root))
    dataset: UCF101Clips = dm.train_dataloader().dataset
    dataset.videos[0].path.write_bytes(b"not a video any more")
    with pytest.warns(RuntimeWarning, match="skipping unreadable video .*v_ApplyEyeMakeup_g01_c01.avi"):
        clip, label = dataset[0]
    assert clip.shape == (3, CLIP_LEN, CROP, CROP) and label == dataset.videos[1].label
    random.seed(1)
    expected = dataset[1][0]
    random.seed(1)
    torch.testing.assert_close(dataset[0][0], expected, rtol=0, atol=0)  # deterministic substitute


# -- training through the CLI ---------------------------------------------------------------------
def test_fit_fast_dev_run_with_the_ucf101_preset(tree, tmp_path):
    from lightning_selrel import cli

    args = [
        "fit",
        "--config",
        str(REPO / "configs" / "c3d_ucf101.yaml"),
        "--data.root",
        str(tree.root),
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
    assert (tmp_path / "cache" / "20x24").is_dir()
