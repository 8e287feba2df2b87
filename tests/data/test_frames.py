"""Frames: decoding, loop padding, and the resize / centre-crop geometry that training and ``explain`` share."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from ucf_fixture import write_ucf_tree, write_video

from lightning_selrel.data.frames import (
    C3D_CROP,
    C3D_RESIZE,
    FramePrep,
    FramePrepError,
    decode_video,
    decode_window,
    loop_indices,
    loop_pad,
    open_video,
)
from lightning_selrel.data.ucf101.datamodule import UCF101DataModule


def test_frame_prep_follows_the_checkpoints_data():
    ucf = {"_class_path": "lightning_selrel.data.ucf101.datamodule.UCF101DataModule", "resize": [128, 171], "crop": 112}
    synthetic = {"_class_path": "lightning_selrel.data.synthetic.MotionContextDataModule", "clip_shape": [16, 48, 48]}
    clip_hw = (112, 112)
    # UCF-101 preset: a 320 x 240 video becomes exactly the training frames, 128 x 171, then crop 112.
    assert FramePrep.for_checkpoint(clip_hw, ucf).resized_size((240, 320)) == (128, 171)
    # Any other size too: the data module's validation transform resizes to exactly 128 x 171.
    assert FramePrep.for_checkpoint(clip_hw, ucf).resized_size((360, 640)) == (128, 171)
    no_data = FramePrep.for_checkpoint(clip_hw, {})
    assert no_data.ratio == pytest.approx(C3D_RESIZE[0] / C3D_CROP)  # no data module: C3D's ratio, aspect kept
    assert FramePrep.for_checkpoint(clip_hw, synthetic).resized_size((240, 320)) == (112, 149)  # short side = clip
    assert FramePrep.for_checkpoint(clip_hw, ucf, resize=(120, 200)).resized_size((240, 320)) == (120, 200)
    # A frame of the clip size is used as it is (RGB) without a fixed resize.
    frame = np.random.default_rng(0).integers(0, 256, (112, 112, 3), dtype=np.uint8)
    np.testing.assert_array_equal(FramePrep.for_checkpoint(clip_hw, synthetic)(frame), frame[..., ::-1])
    # Resize, then the centre crop of training (UCF101Clips.crop_box).
    big = np.random.default_rng(1).integers(0, 256, (240, 320, 3), dtype=np.uint8)
    expected = cv2.cvtColor(cv2.resize(big, (171, 128), interpolation=cv2.INTER_LINEAR), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(FramePrep.for_checkpoint(clip_hw, ucf)(big), expected[8:120, 29:141])
    with pytest.raises(FramePrepError, match=r"--resize 100 100\) are smaller than the model's clip 112x112"):
        FramePrep.for_checkpoint(clip_hw, {}, resize=(100, 100))


def test_loop_padding_repeats_from_the_first_frame():
    assert loop_indices(3, 8).tolist() == [0, 1, 2, 0, 1, 2, 0, 1]
    frames = np.arange(3)[:, None] * np.ones((3, 2))
    assert loop_pad(frames, 5)[:, 0].tolist() == [0, 1, 2, 0, 1]


def test_decoding_a_window_equals_the_same_frames_of_the_whole_video(tmp_path):
    video = np.random.default_rng(2).integers(0, 256, (12, 24, 32, 3), dtype=np.uint8)
    path = tmp_path / "v.avi"
    write_video(path, video, fps=25)
    whole = decode_video(path, resize=(16, 20))
    assert whole.shape == (12, 16, 20, 3) and whole.dtype == np.uint8
    np.testing.assert_array_equal(decode_window(path, 3, 5, resize=(16, 20)), whole[3:8])
    assert len(decode_window(path, 10, 5)) == 2 and len(decode_window(path, 20, 5)) == 0  # the video ends early
    open_video(path).release()


def test_explain_preprocesses_a_video_exactly_as_the_ucf101_validation_transform(tmp_path):
    """Training and inference share one geometry: the explain command's FramePrep, rebuilt from the data module's
    hyperparameters as a checkpoint saves them, gives the data module's validation clip of the same file."""
    tree = write_ucf_tree(tmp_path / "ucf", size=(240, 320), frames=40)
    datamodule = UCF101DataModule(root=str(tree.root), num_workers=0, batch_size=2)
    datamodule.setup("validate")
    clips = datamodule.val_dataloader().dataset
    clip, _ = clips[0]  # (3, 16, 112, 112), the centre window and the centre crop
    video = clips.videos[0]
    window = clips.frame_ids(video.frames, 0)
    prep = FramePrep.for_checkpoint((C3D_CROP, C3D_CROP), dict(datamodule.hparams))
    capture = cv2.VideoCapture(str(video.path))
    decoded = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        decoded.append(frame)
    capture.release()
    ours = np.stack([prep(decoded[i]) for i in window])  # (16, 112, 112, 3) RGB
    np.testing.assert_array_equal(ours, clip.permute(1, 2, 3, 0).numpy())
    assert prep.resize == C3D_RESIZE


def test_display_frames_are_the_source_region_under_the_models_crop():
    ucf = {"_class_path": "lightning_selrel.data.ucf101.datamodule.UCF101DataModule", "resize": [128, 171], "crop": 112}
    prep = FramePrep.for_checkpoint((112, 112), ucf)
    # 240 x 320 -> 128 x 171 -> crop rows 8..120, columns 29..141: rows 15..225 and columns 54..264 of the source.
    assert prep.crop_region((240, 320)) == (15, 54, 210, 210)
    big = np.random.default_rng(2).integers(0, 256, (240, 320, 3), dtype=np.uint8)
    shown = prep.display(big, 210)  # at the region's own size: the region itself, RGB
    np.testing.assert_array_equal(shown, big[15:225, 54:264, ::-1])
    assert prep.display(big, 240).shape == (240, 240, 3)
    # The built-in data: frames scaled to the clip, aspect kept, so the crop is the central square.
    synthetic = FramePrep.for_checkpoint((48, 48), {"_class_path": "MotionContextDataModule"})
    assert synthetic.crop_region((240, 320)) == (0, 40, 240, 240)
    wide = FramePrep((32, 64))  # a non-square clip keeps its aspect on screen
    assert wide.display(big, 100).shape == (100, 200, 3)


# -- seeking: the same frames as decoding from the first frame, at any position ---------------------------------
FOOTAGE = Path(__file__).resolve().parents[2].parent / "shared" / "footage"


def _long_video(path: Path, codec: str, frames: int = 200) -> Path:
    """A moving, noisy video long enough that a window at its end lies many keyframes away from the start."""
    rng = np.random.default_rng(0)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*codec), 25, (48, 32))
    if not writer.isOpened():
        pytest.skip(f"OpenCV cannot write {codec} here")
    for t in range(frames):
        frame = rng.integers(20, 40, (32, 48, 3), dtype=np.uint8)
        frame[10:20, (2 * t) % 38 : (2 * t) % 38 + 10] = (t % 256, 200, 90)
        writer.write(frame)
    writer.release()
    return path


@pytest.mark.parametrize(("suffix", "codec"), [(".mp4", "mp4v"), (".avi", "MJPG"), (".mkv", "MJPG"), (".webm", "VP80")])
def test_a_seeking_window_is_the_same_as_decoding_from_the_start(tmp_path, suffix, codec):
    path = _long_video(tmp_path / f"long{suffix}", codec)
    whole = decode_video(path)
    assert len(whole) == 200
    for start in (0, 1, 47, 120, 184, 199):
        sought = decode_window(path, start, 16)
        np.testing.assert_array_equal(sought, whole[start : start + 16])
        np.testing.assert_array_equal(sought, decode_window(path, start, 16, seek=False))
    assert len(decode_window(path, 200, 16)) == 0 and len(decode_window(path, 500, 16)) == 0


@pytest.mark.slow
@pytest.mark.skipif(not FOOTAGE.is_dir(), reason=f"no real footage at {FOOTAGE} (see its README)")
@pytest.mark.parametrize("name", ["demo.mp4", "test.avi", "S001C001P001R001A001_rgb.avi"])
def test_seeking_on_real_footage_gives_the_frames_of_sequential_decoding(name):
    path = FOOTAGE / name
    whole = decode_video(path, (64, 80))
    for start in (0, len(whole) // 3, len(whole) // 2, len(whole) - 16):
        np.testing.assert_array_equal(decode_window(path, start, 16, (64, 80)), whole[start : start + 16])
