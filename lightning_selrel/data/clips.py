"""Clips of UCF-101 videos, with the train or the evaluation transforms (a map-style dataset).

Items are ``(clip, label)``: ``clip`` uint8 RGB (3, T, H, W) in pixel scale, ``label`` a 0-indexed class.
Training clips take a random window of ``clip_len`` frames, a random ``crop`` square and a horizontal flip
with probability 0.5; evaluation clips take ``clips_per_video`` evenly spaced windows (one centred window by
default) and the centre crop. Frames are first resized to ``resize``; videos shorter than ``clip_len`` are
loop-padded. Decoding, loop padding and the crop geometry are :mod:`lightning_selrel.data.frames`, shared with the
``explain`` command, so inference sees exactly the validation transform.

A video that fails while training (a truncated file whose header claims more frames than it holds, a file
that changed) never stops the epoch: the dataset warns once for that file and uses the next readable video in
the list instead (deterministic), and a truncated file is used with the frames it has.
"""

from __future__ import annotations

import random
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from lightning_selrel.data.cache import read_frames
from lightning_selrel.data.frames import VideoDecodeError, centre_crop_box, decode_video, decode_window, loop_indices

__all__ = ["UCF101Clips", "Video"]


@dataclass(frozen=True)
class Video:
    """One usable video.

    Attributes:
        path: The video file.
        label: 0-indexed class.
        frames: Frame count (exact with a cache; the container's claim without one).
        cache: The data file of its cache entry (``.jpegs`` or ``.npy``: :mod:`lightning_selrel.data.cache`), or
            None to decode the file.
    """

    path: Path
    label: int
    frames: int
    cache: Path | None = None


class UCF101Clips(Dataset):
    """Clips of a list of videos, with the train or the evaluation transforms.

    Args:
        videos: The videos (all readable when listed; see the module notes for failures).
        clip_len: Frames per clip, T.
        resize: Frame size (H, W) before cropping; must match the cache's.
        crop: Side of the square crop.
        train: Random window, crop and flip when True; evenly spaced windows and centre crop when False.
        clips_per_video: Windows per video when ``train`` is False (the dataset has
            ``len(videos) * clips_per_video`` items, video-major).

    Items are ``(clip, label)``: uint8 (3, T, crop, crop) and int.
    """

    def __init__(
        self,
        videos: Sequence[Video],
        *,
        clip_len: int,
        resize: Sequence[int],
        crop: int,
        train: bool,
        clips_per_video: int = 1,
    ) -> None:
        if not videos:
            raise ValueError("UCF101Clips needs at least one video")
        self.videos = list(videos)
        self.clip_len = int(clip_len)
        self.resize = (int(resize[0]), int(resize[1]))
        self.crop = int(crop)
        self.train = train
        self.clips_per_video = 1 if train else int(clips_per_video)
        self._frames: dict[int, int] = {}  # corrected frame counts of truncated files, per process
        self._bad: set[int] = set()  # videos that failed in this process

    def __len__(self) -> int:
        return len(self.videos) * self.clips_per_video

    @property
    def labels(self) -> list[int]:
        """The class of every item, without decoding (items are video-major: ``clips_per_video`` per video)."""
        return [video.label for video in self.videos for _ in range(self.clips_per_video)]

    def frame_ids(self, frames: int, clip: int) -> np.ndarray:
        """Indices (T,) of the frames of window ``clip`` in a video of ``frames`` frames, loop-padded."""
        span = frames - self.clip_len
        if span <= 0:
            return loop_indices(frames, self.clip_len)  # loop padding: frames repeat from the start
        if self.train:
            start = random.randint(0, span)
        else:  # window centres evenly spaced; one window is the centred one
            start = (span * (2 * clip + 1)) // (2 * self.clips_per_video)
        return np.arange(start, start + self.clip_len)

    def crop_box(self) -> tuple[int, int, bool]:
        """Top, left and horizontal flip of the crop."""
        height, width = self.resize
        if self.train:
            return random.randint(0, height - self.crop), random.randint(0, width - self.crop), random.random() < 0.5
        return (*centre_crop_box(self.resize, (self.crop, self.crop)), False)

    def read_clip(self, index: int, clip: int = 0) -> np.ndarray:
        """Frames (T, crop, crop, 3) uint8 RGB of window ``clip`` of video ``index``, transforms applied.

        Raises:
            VideoDecodeError, OSError, ValueError: If the video cannot be read.
        """
        video = self.videos[index]
        ids = self.frame_ids(self._frames.get(index, video.frames), clip)
        top, left, flip = self.crop_box()
        rows, cols = slice(top, top + self.crop), slice(left, left + self.crop)
        if video.cache is not None:  # reads (and, for JPEG, decodes) only the window's frames
            clip_frames = read_frames(video.cache, ids, (rows, cols))
        else:
            first, count = int(ids.min()), int(ids.max()) + 1 - int(ids.min())
            frames = decode_window(video.path, first, count, self.resize)  # (<= count, H, W, 3)
            if len(frames) < count:  # the container claimed more frames than the file holds
                frames, first = decode_video(video.path, self.resize), 0
                self._frames[index] = len(frames)
                warnings.warn(
                    f"{video.path} claims {video.frames} frames but only {len(frames)} decode "
                    "(truncated file?); using those",
                    RuntimeWarning,
                    stacklevel=2,
                )
                ids = self.frame_ids(len(frames), clip)
            clip_frames = frames[ids - first, rows, cols]
        if flip:
            clip_frames = clip_frames[:, :, ::-1]
        return clip_frames  # (T, crop, crop, 3)

    def __getitem__(self, item: int) -> tuple[torch.Tensor, int]:
        index, clip = divmod(int(item), self.clips_per_video)
        for step in range(len(self.videos)):
            candidate = (index + step) % len(self.videos)
            if candidate in self._bad:
                continue
            try:
                frames = self.read_clip(candidate, clip)
            except (VideoDecodeError, OSError, ValueError) as error:
                self._bad.add(candidate)
                warnings.warn(
                    f"skipping unreadable video {self.videos[candidate].path} ({error}); "
                    "using the next video in the list instead",
                    RuntimeWarning,
                    stacklevel=2,
                )
                continue
            # NumPy's transposing copy is ~20x faster than torch's permute().contiguous() on uint8.
            clip_tensor = torch.from_numpy(np.ascontiguousarray(frames.transpose(3, 0, 1, 2)))
            return clip_tensor, self.videos[candidate].label  # (3, T, crop, crop), int
        raise RuntimeError(f"none of the {len(self.videos)} videos of this dataset can be read")
