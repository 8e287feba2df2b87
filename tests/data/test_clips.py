"""UCF101Clips: windows, crops, flips and loop padding, and videos that fail during an epoch."""

from __future__ import annotations

import random
import warnings

import numpy as np
import pytest
import torch
from ucf_fixture import (
    CLIP_LEN,
    CROP,
    RESIZE,
    make_dm,
    quiet_setup,
    write_ucf_tree,
)

from lightning_selrel.data.cache import read_frames
from lightning_selrel.data.clips import UCF101Clips
from lightning_selrel.data.frames import decode_video


def test_eval_clips_are_uint8_centre_window_and_centre_crop(ucf_tree):
    dm = quiet_setup(make_dm(ucf_tree.root))
    dataset = dm.val_dataloader().dataset
    for index, video in enumerate(dataset.videos):
        clip, label = dataset[index]
        assert clip.dtype == torch.uint8 and clip.shape == (3, CLIP_LEN, CROP, CROP)
        assert label == video.label == index
        full = decode_video(video.path, RESIZE)  # (T, H, W, 3)
        start = (ucf_tree.frames - CLIP_LEN) // 2
        top, left = (RESIZE[0] - CROP) // 2, (RESIZE[1] - CROP) // 2
        expected = full[start : start + CLIP_LEN, top : top + CROP, left : left + CROP]
        np.testing.assert_array_equal(clip.permute(1, 2, 3, 0).numpy(), expected)
    clips, labels = next(iter(dm.val_dataloader()))
    assert clips.shape == (3, 3, CLIP_LEN, CROP, CROP) and labels.dtype == torch.int64


def test_short_video_is_loop_padded(ucf_tree):
    dm = quiet_setup(make_dm(ucf_tree.root))
    dataset = dm.train_dataloader().dataset
    index = next(i for i, v in enumerate(dataset.videos) if v.path == ucf_tree.short)
    random.seed(0)
    clip = dataset.read_clip(index)  # (T, crop, crop, 3)
    n = ucf_tree.short_frames
    assert clip.shape[0] == CLIP_LEN
    np.testing.assert_array_equal(clip[n:], clip[: CLIP_LEN - n])
    assert not np.array_equal(clip[1], clip[0])


def test_several_evenly_spaced_clips_per_video(ucf_tree):
    dm = quiet_setup(make_dm(ucf_tree.root, clips_per_video=3), "validate")
    dataset = dm.val_dataloader().dataset
    assert len(dataset) == 9
    span = ucf_tree.frames - CLIP_LEN
    assert [int(dataset.frame_ids(ucf_tree.frames, c)[0]) for c in range(3)] == [span // 6, span // 2, 5 * span // 6]
    assert dataset[4][1] == 1  # item 4 is the second clip of video 1


def test_train_transforms_crop_inside_the_frame_and_flip(tmp_path):
    tree = write_ucf_tree(tmp_path, frames=20)
    dm = quiet_setup(make_dm(tree.root, cache_dir=str(tmp_path / "cache")))
    dataset = dm.train_dataloader().dataset
    full = read_frames(dataset.videos[0].cache, np.arange(20))  # (T, H, W, 3): the JPEG cache's frames
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
