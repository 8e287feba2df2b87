"""Video frames, one definition for training and inference: decoding, loop padding, resize and centre crop.

The UCF-101 data (:mod:`lightning_selrel.data.clips`), the frame cache (:mod:`lightning_selrel.data.cache`)
and the ``explain`` command all take their frames from here, so a clip the command explains is preprocessed
exactly as the validation clips the model was trained and checked on:

- :func:`open_video`, :func:`probe_video`, :func:`decode_window`, :func:`decode_video`: OpenCV decoding to
  RGB uint8 frames (T, H, W, 3), optionally resized (bilinear) by :func:`to_rgb`;
- :func:`loop_indices`, :func:`loop_pad`: videos shorter than a clip repeat from their first frame;
- :func:`centre_crop_box` and :class:`FramePrep`: the resize-then-centre-crop geometry, and
  :meth:`FramePrep.for_checkpoint`, which rebuilds a data module's validation geometry from the
  hyperparameters a checkpoint saved.

C3D's frame geometry (the paper, and the UCF-101 preset): frames resized to 128 x 171, clips cropped to
112 x 112 (:data:`C3D_RESIZE`, :data:`C3D_CROP`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

__all__ = [
    "C3D_CROP",
    "C3D_RESIZE",
    "FramePrep",
    "FramePrepError",
    "VideoDecodeError",
    "centre_crop_box",
    "decode_video",
    "decode_window",
    "loop_indices",
    "loop_pad",
    "open_video",
    "probe_video",
    "to_rgb",
    "VIDEO_EXTENSIONS",
]

#: Video file extensions ``cache`` looks for under a root (a data module's lists may name any file OpenCV reads).
VIDEO_EXTENSIONS = (".avi", ".mp4", ".mkv", ".webm", ".mov", ".m4v")

#: C3D's frame size before cropping (H, W) and crop side (Tran et al., 2015; the UCF-101 preset).
C3D_RESIZE: tuple[int, int] = (128, 171)
C3D_CROP: int = 112


class VideoDecodeError(RuntimeError):
    """A video file could not be opened or yielded no frame."""


class FramePrepError(ValueError):
    """A frame geometry that cannot work (a crop larger than the frames); the message names it and the fix."""


# -- decoding ----------------------------------------------------------------------------------
def open_video(path: str | os.PathLike) -> cv2.VideoCapture:
    """An open OpenCV capture of a video file (or stream URL).

    Raises:
        VideoDecodeError: If OpenCV cannot open it.
    """
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        capture.release()
        raise VideoDecodeError(f"OpenCV cannot open video {path} (missing, unreadable or not a video)")
    return capture


def to_rgb(frame: np.ndarray, resize: Sequence[int] | None) -> np.ndarray:
    """One decoded BGR frame (h, w, 3) to RGB (H, W, 3), resized (bilinear) to ``resize`` = (H, W) if given."""
    if resize is not None and (frame.shape[0], frame.shape[1]) != (resize[0], resize[1]):
        frame = cv2.resize(frame, (int(resize[1]), int(resize[0])), interpolation=cv2.INTER_LINEAR)
    return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)


def probe_video(path: str | os.PathLike) -> int:
    """Cheap check that a video is readable: opens it and decodes its first frame.

    Returns:
        The frame count the container claims (``CAP_PROP_FRAME_COUNT``), at least 1. The count may be
        too high for a truncated file; readers must cope with fewer frames (see :func:`decode_window`).

    Raises:
        VideoDecodeError: If the file cannot be opened or its first frame cannot be decoded.
    """
    capture = open_video(path)
    try:
        ok, _ = capture.read()
        if not ok:
            raise VideoDecodeError(f"video {path} has no decodable frame (empty or corrupt)")
        return max(1, int(capture.get(cv2.CAP_PROP_FRAME_COUNT)))
    finally:
        capture.release()


def decode_window(
    path: str | os.PathLike, start: int, length: int, resize: Sequence[int] | None = None, *, seek: bool = True
) -> np.ndarray:
    """Frames ``start .. start + length - 1`` of a video.

    The decoder seeks to ``start`` (OpenCV's FFmpeg backend seeks to the keyframe before it and decodes forward
    to the frame), so a window costs what decoding from its keyframe costs, not what decoding from the first frame
    does: on a 60-second 25 fps MPEG-4 video 5 / 6 / 9 ms per 16-frame clip at the start / middle / end, against
    5 / 82 / 185 ms from the first frame (``benchmarks/bench_decode.py``). A file with one keyframe in a long
    stretch (short H.264 clips) gains nothing.
    Where the decoder does not land on ``start`` (it reports another position: a container without an index),
    the frames are reached by decoding from the first frame instead. The frames are the same as
    :func:`decode_video`'s and the cache's either way (tests on MPEG-4, MJPG, VP8 and H.264 files, and on the
    public footage).

    Args:
        path: Video file.
        start: Index of the first frame wanted.
        length: Number of frames wanted.
        resize: Output (H, W); None keeps the decoded size.
        seek: Seek to ``start`` (default); False decodes from the first frame.

    Returns:
        uint8 RGB frames (n, H, W, 3) with ``n <= length``: fewer when the video ends early (a short or
        truncated file), 0 when it ends before ``start``.

    Raises:
        VideoDecodeError: If the file cannot be opened.
    """
    capture = _at_frame(path, start, seek)
    frames: list[np.ndarray] = []
    if capture is not None:
        try:
            while len(frames) < length:
                ok, frame = capture.read()
                if not ok:
                    break
                frames.append(to_rgb(frame, resize))
        finally:
            capture.release()
    if not frames:
        shape = (0, *(resize if resize is not None else (0, 0)), 3)
        return np.zeros(shape, dtype=np.uint8)
    return np.stack(frames)  # (n, H, W, 3)


def _at_frame(path: str | os.PathLike, start: int, seek: bool) -> cv2.VideoCapture | None:
    """An open capture whose next frame is frame ``start`` (by seeking, else by decoding up to it), or None when the
    video ends before it."""
    capture = open_video(path)
    if start <= 0:
        return capture
    if seek:
        capture.set(cv2.CAP_PROP_POS_FRAMES, start)
        if round(capture.get(cv2.CAP_PROP_POS_FRAMES)) == start:
            return capture
        capture.release()  # it landed elsewhere: decode from the first frame
        capture = open_video(path)
    for _ in range(start):
        if not capture.grab():
            capture.release()
            return None
    return capture


def decode_video(path: str | os.PathLike, resize: Sequence[int] | None = None) -> np.ndarray:
    """Every decodable frame of a video, uint8 RGB (T, H, W, 3) with T >= 1.

    Decoding stops at the first unreadable frame, so a truncated file yields the frames before the damage.

    Raises:
        VideoDecodeError: If the file cannot be opened or yields no frame.
    """
    frames = decode_window(path, 0, 2**62, resize)
    if len(frames) == 0:
        raise VideoDecodeError(f"video {path} has no decodable frame (empty or corrupt)")
    return frames


# -- loop padding ------------------------------------------------------------------------------
def loop_indices(frames: int, length: int) -> np.ndarray:
    """Indices (length,) that repeat a video of ``frames`` frames from its start: 0, 1, ..., frames-1, 0, 1, ..."""
    return np.arange(length) % frames


def loop_pad(frames: np.ndarray, length: int) -> np.ndarray:
    """Frames (n, ...) repeated from the start to ``length`` frames, as training pads short videos."""
    return frames[loop_indices(len(frames), length)]


# -- geometry ----------------------------------------------------------------------------------
def centre_crop_box(frame_hw: Sequence[int], crop_hw: Sequence[int]) -> tuple[int, int]:
    """Top and left of the centre (crop_h, crop_w) crop of a (h, w) frame (rounded towards the top left)."""
    return (int(frame_hw[0]) - int(crop_hw[0])) // 2, (int(frame_hw[1]) - int(crop_hw[1])) // 2


@dataclass(frozen=True)
class FramePrep:
    """Bring decoded frames to a model's clip (H, W): resize, then take the centre crop.

    Rule: with ``resize`` frames are resized to exactly (H', W') before the crop (the UCF-101 data module's
    validation transform: 128 x 171, then the centre 112 x 112); without it, frames already of the clip size
    are used as they are, and other frames are scaled, keeping their aspect ratio, so the crop covers
    ``1 / ratio`` of their shorter fitting side (ratio 1: the whole frame is the clip, as the built-in data).
    Resizing is bilinear and converts BGR to RGB (:func:`to_rgb`, the decoder's).

    Attributes:
        clip_hw: (H, W) of the model's clips.
        resize: (H', W') to resize to before cropping, or None for the aspect-keeping rule.
        ratio: Resized side / crop side for the aspect-keeping rule, >= 1.
        rule: Where the geometry came from, for reports.
    """

    clip_hw: tuple[int, int]
    resize: tuple[int, int] | None = None
    ratio: float = 1.0
    rule: str = "frames scaled to the clip, aspect kept"

    def __post_init__(self) -> None:
        if not self.ratio >= 1.0:
            raise FramePrepError(f"resize ratio {self.ratio} is below 1: the crop would not fit; use a ratio >= 1")
        if self.resize is not None and (self.resize[0] < self.clip_hw[0] or self.resize[1] < self.clip_hw[1]):
            raise FramePrepError(
                f"frames resized to {self.resize[0]}x{self.resize[1]} ({self.rule}) are smaller than the model's clip "
                f"{self.clip_hw[0]}x{self.clip_hw[1]} (H x W): pass a size of at least that"
            )

    @classmethod
    def for_checkpoint(
        cls, clip_hw: Sequence[int], datamodule: Mapping[str, Any], resize: Sequence[int] | None = None
    ) -> FramePrep:
        """The geometry of the data a model was trained on, from the data-module hyperparameters its checkpoint
        saved: ``resize`` (an explicit override, ``--resize H W``) wins; a data module with ``resize`` and
        ``crop`` (UCF-101) gives its validation transform, resize to exactly ``resize`` and centre crop; one
        without (the built-in data, whose frames are the whole clip) scales frames to the clip; a checkpoint
        without a data module gets C3D's ratio 128/112 with the aspect kept.
        """
        hw = (int(clip_hw[0]), int(clip_hw[1]))
        if resize is not None:
            size = (int(resize[0]), int(resize[1]))
            return cls(hw, resize=size, rule=f"--resize {size[0]} {size[1]}")
        name = str(datamodule.get("_class_path", "the checkpoint's data module")).rsplit(".", 1)[-1]
        if "resize" in datamodule and "crop" in datamodule:
            size = (int(datamodule["resize"][0]), int(datamodule["resize"][1]))
            return cls(hw, resize=size, rule=f"{name}'s validation transform: resize {list(size)}, centre crop")
        if datamodule:
            return cls(hw, rule=f"{name} has no resize/crop: frames are the whole clip")
        return cls(hw, ratio=min(C3D_RESIZE) / C3D_CROP, rule="no data module in the checkpoint: C3D ratio 128/112")

    def resized_size(self, frame_hw: Sequence[int]) -> tuple[int, int] | None:
        """(H', W') frames of size ``frame_hw`` are resized to before cropping; None: no resize."""
        if self.resize is not None:
            return self.resize
        (h, w), (ch, cw) = (int(frame_hw[0]), int(frame_hw[1])), self.clip_hw
        if (h, w) == (ch, cw):
            return None
        scale = self.ratio * max(ch / h, cw / w)
        return max(ch, round(h * scale)), max(cw, round(w * scale))

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        """One decoded BGR frame (h, w, 3) uint8 to the RGB crop (H, W, 3) uint8."""
        rgb = to_rgb(frame, self.resized_size(frame.shape[:2]))  # (H', W', 3)
        top, left = centre_crop_box(rgb.shape[:2], self.clip_hw)
        return np.ascontiguousarray(rgb[top : top + self.clip_hw[0], left : left + self.clip_hw[1]])

    def crop_region(self, frame_hw: Sequence[int]) -> tuple[int, int, int, int]:
        """(top, left, height, width) of the region of a (h, w) source frame that the model's crop covers."""
        h, w = int(frame_hw[0]), int(frame_hw[1])
        size = self.resized_size((h, w)) or (h, w)
        scale_y, scale_x = size[0] / h, size[1] / w
        top, left = centre_crop_box(size, self.clip_hw)
        height, width = max(1, round(self.clip_hw[0] / scale_y)), max(1, round(self.clip_hw[1] / scale_x))
        return min(round(top / scale_y), h - height), min(round(left / scale_x), w - width), height, width

    def display(self, frame: np.ndarray, height: int) -> np.ndarray:
        """The source frame's region under the model's crop, at ``height`` pixels (RGB uint8): what a person looks
        at, sharper than the model's small input; relevance is drawn over it."""
        top, left, h, w = self.crop_region(frame.shape[:2])
        width = max(1, round(height * self.clip_hw[1] / self.clip_hw[0]))
        region = frame[top : top + h, left : left + w]
        shrink = h > height
        resized = cv2.resize(region, (width, height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
        return cv2.cvtColor(resized, cv2.COLOR_BGR2RGB)

    def describe(self, frame_hw: Sequence[int]) -> str:
        size = self.resized_size(frame_hw) or tuple(frame_hw)
        return (
            f"{frame_hw[0]}x{frame_hw[1]} -> resize {size[0]}x{size[1]} -> centre crop "
            f"{self.clip_hw[0]}x{self.clip_hw[1]} (H x W; {self.rule})"
        )
