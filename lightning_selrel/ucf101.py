"""UCF-101 with its official train/test splits, as a LightningDataModule.

Clips are yielded as ``(clip, label)``: ``clip`` uint8 RGB (3, T, H, W) in pixel scale, ``label`` a
0-indexed class. Training clips take a random window of ``clip_len`` frames, a random ``crop`` square
and a horizontal flip with probability 0.5; validation and test clips (both from the test list, as
the paper) take ``clips_per_video`` evenly spaced windows (one centred window by default) and a centre
crop. Frames are first resized to ``resize`` (128 x 171, as C3D). Videos shorter than ``clip_len`` are
loop-padded: frames repeat from the start.

Damaged input:

- A missing root, annotation folder or split file fails at construction; a class in the lists with
  no folder fails in :meth:`UCF101DataModule.setup`, before training starts. Messages name the path
  and the expected layout.
- A listed video that is missing, cannot be opened or has no frame is skipped in ``setup`` with a
  warning naming it (the first ten individually, then a count); ``setup`` ends with the number of
  skipped videos, and :attr:`UCF101DataModule.skipped` maps each to its reason. Without a cache the
  check opens each video and decodes its first frame; with a cache the check is the full decoding
  that built it.
- A video that still fails while training (a truncated file whose header claims more frames than it
  holds, a file that changed) never stops the epoch: the dataset warns once for that file and
  uses the next readable video in the list instead (deterministic), and a truncated file is used
  with the frames it has.

Build the frame cache outside training with ``python -m lightning_selrel.ucf101 --root DIR
--cache-dir DIR`` (see :mod:`lightning_selrel.video_cache`).
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_info, rank_zero_warn
from torch.utils.data import DataLoader, Dataset

from .video_cache import VideoDecodeError, build_cache, cache_entry, decode_video, decode_window, probe_video

__all__ = ["UCF101DataModule", "UCF101Clips", "Video", "read_class_index", "read_split", "main"]

LAYOUT = """expected layout:
  UCF-101/                  <- root: one folder of .avi files per class
    ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi
    ...
  ucfTrainTestlist/         <- annotation_dir; by default looked for as root/ucfTrainTestlist,
    classInd.txt               root/../ucfTrainTestlist, then root itself
    trainlist01.txt  testlist01.txt  (and 02, 03)"""

_MAX_SKIP_WARNINGS = 10


# -- annotations -------------------------------------------------------------------------------
def _lines(path: Path) -> list[tuple[int, str]]:
    """Non-blank lines of a text file with their 1-based numbers; CRLF and surrounding spaces dropped."""
    text = path.read_text(encoding="utf-8-sig")
    return [(number, line.strip()) for number, line in enumerate(text.splitlines(), start=1) if line.strip()]


def read_class_index(path: str | os.PathLike) -> list[str]:
    """Class names from ``classInd.txt`` ("1 ApplyEyeMakeup" per line), in 0-indexed order.

    Raises:
        FileNotFoundError: If the file does not exist.
        ValueError: If a line is malformed or the indices are not 1 .. N without gaps or repeats.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"class index {path} not found\n{LAYOUT}")
    entries: dict[int, str] = {}
    for number, line in _lines(path):
        parts = line.split()
        if len(parts) != 2 or not parts[0].isdigit():
            raise ValueError(f"{path}, line {number}: expected '<index> <ClassName>', got {line!r}")
        index = int(parts[0])
        if index in entries:
            raise ValueError(f"{path}, line {number}: index {index} appears twice")
        entries[index] = parts[1]
    if sorted(entries) != list(range(1, len(entries) + 1)):
        raise ValueError(f"{path}: class indices must be 1 .. N without gaps, got {sorted(entries)}")
    names = [entries[i] for i in range(1, len(entries) + 1)]
    lowered = [name.lower() for name in names]
    if len(set(lowered)) != len(lowered):
        raise ValueError(f"{path}: class names must differ other than in case, got {names}")
    return names


def read_split(path: str | os.PathLike, class_names: Sequence[str]) -> list[tuple[str, int]]:
    """Entries of a train or test list as (relative video path, 0-indexed label).

    The label comes from the class folder in the path, matched to ``class_names`` case-insensitively
    (UCF-101 spells ``HandstandPushups`` in classInd and ``HandStandPushups`` elsewhere). A label
    given on the line (train lists, 1-indexed) must agree with it.

    Raises:
        FileNotFoundError: If the file does not exist.
        ValueError: If a line names an unknown class or its label disagrees with its folder.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"split file {path} not found\n{LAYOUT}")
    by_name = {name.lower(): label for label, name in enumerate(class_names)}
    entries = []
    for number, line in _lines(path):
        parts = line.replace("\\", "/").split()
        relative = parts[0]
        folder = relative.split("/")[0] if "/" in relative else ""
        label = by_name.get(folder.lower())
        if label is None:
            raise ValueError(
                f"{path}, line {number}: class folder {folder!r} of {relative!r} is not in classInd.txt; "
                "use the classInd.txt that came with these split files"
            )
        if len(parts) > 1 and parts[1].isdigit() and int(parts[1]) - 1 != label:
            raise ValueError(
                f"{path}, line {number}: label {parts[1]} disagrees with folder {folder!r}, which is "
                f"class {label + 1} in classInd.txt; use the classInd.txt that came with these split files"
            )
        entries.append((relative, label))
    return entries


class _FolderIndex:
    """Case-insensitive lookup of ``Class/video.avi`` under the root, one directory listing per folder."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.folders = {entry.name.lower(): entry.name for entry in os.scandir(root) if entry.is_dir()}
        self._files: dict[str, dict[str, str]] = {}

    def folder(self, name: str) -> str | None:
        return self.folders.get(name.lower())

    def resolve(self, relative: str) -> Path | None:
        folder_name, file_name = relative.split("/", 1)
        folder = self.folder(folder_name)
        if folder is None:
            return None
        if folder not in self._files:
            self._files[folder] = {entry.name.lower(): entry.name for entry in os.scandir(self.root / folder)}
        actual = self._files[folder].get(file_name.lower())
        return self.root / folder / actual if actual is not None else None


# -- dataset -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Video:
    """One usable video.

    Attributes:
        path: The video file.
        label: 0-indexed class.
        frames: Frame count (exact with a cache; the container's claim without one).
        cache: Its cached frames (T, H, W, 3) ``.npy``, or None to decode the file.
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

    def frame_ids(self, frames: int, clip: int) -> np.ndarray:
        """Indices (T,) of the frames of window ``clip`` in a video of ``frames`` frames, loop-padded."""
        span = frames - self.clip_len
        if span <= 0:
            return np.arange(self.clip_len) % frames  # loop padding: frames repeat from the start
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
        return (height - self.crop) // 2, (width - self.crop) // 2, False

    def read_clip(self, index: int, clip: int = 0) -> np.ndarray:
        """Frames (T, crop, crop, 3) uint8 RGB of window ``clip`` of video ``index``, transforms applied.

        Raises:
            VideoDecodeError, OSError, ValueError: If the video cannot be read.
        """
        video = self.videos[index]
        ids = self.frame_ids(self._frames.get(index, video.frames), clip)
        top, left, flip = self.crop_box()
        rows, cols = slice(top, top + self.crop), slice(left, left + self.crop)
        if video.cache is not None:
            frames = np.load(video.cache, mmap_mode="r")  # (T_video, H, W, 3), read lazily
            clip_frames = frames[ids, rows, cols]  # reads only the window's frames
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


# -- data module -------------------------------------------------------------------------------
class UCF101DataModule(pl.LightningDataModule):
    """UCF-101 clips for training (train list) and for validation and test (test list).

    Args:
        root: The ``UCF-101/`` folder with one folder of ``.avi`` files per class.
        annotation_dir: Folder with ``classInd.txt``, ``trainlist0N.txt``, ``testlist0N.txt``.
            Default: the first of ``root/ucfTrainTestlist``, ``root/../ucfTrainTestlist``, ``root``
            that holds ``classInd.txt``.
        split: Official split, 1, 2 or 3.
        clip_len: Frames per clip, T.
        resize: Frame size (H, W) before cropping (C3D: 128 x 171).
        crop: Side of the square crop (C3D: 112).
        batch_size: Clips per batch.
        num_workers: Data loader processes (also the threads that check or cache videos in setup).
        cache_dir: Folder of the decoded-frame cache; built by :meth:`prepare_data` (and completed
            by :meth:`setup`) when set, reused on later runs. None decodes the ``.avi`` per clip.
        clips_per_video: Evenly spaced windows per video for validation and test.
        seed: Seeds the training shuffle and, through it, the data loader workers' augmentation.
            None leaves both to the global seed (``seed_everything``).

    Raises:
        FileNotFoundError: If ``root``, the annotation folder or a split file is missing.
        ValueError: If an argument is out of range.
    """

    def __init__(
        self,
        root: str,
        annotation_dir: str | None = None,
        split: int = 1,
        clip_len: int = 16,
        resize: tuple[int, int] = (128, 171),
        crop: int = 112,
        batch_size: int = 32,
        num_workers: int = 4,
        cache_dir: str | None = None,
        clips_per_video: int = 1,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        if split not in (1, 2, 3):
            raise ValueError(f"split must be 1, 2 or 3 (the official UCF-101 splits), got {split}")
        resize = (int(resize[0]), int(resize[1]))
        if min(clip_len, crop, batch_size, clips_per_video) < 1 or num_workers < 0:
            raise ValueError(
                "clip_len, crop, batch_size and clips_per_video must be positive and num_workers >= 0, got "
                f"{clip_len}, {crop}, {batch_size}, {clips_per_video} and {num_workers}"
            )
        if crop > min(resize):
            raise ValueError(f"crop {crop} does not fit in frames resized to {resize}; use crop <= {min(resize)}")
        self.save_hyperparameters()
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise FileNotFoundError(f"UCF-101 root {self.root} is not a folder\n{LAYOUT}")
        self.annotation_dir = self._find_annotations(annotation_dir)
        self.split_files = {
            "train": self.annotation_dir / f"trainlist{split:02d}.txt",
            "test": self.annotation_dir / f"testlist{split:02d}.txt",
        }
        for path in self.split_files.values():
            if not path.is_file():
                raise FileNotFoundError(f"split file {path} not found (split={split})\n{LAYOUT}")
        self.split = split
        self.clip_len, self.resize, self.crop = int(clip_len), resize, int(crop)
        self.batch_size, self.num_workers, self.clips_per_video = batch_size, num_workers, clips_per_video
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir is not None else None
        self.seed = seed
        self.skipped: dict[str, str] = {}  # video path -> why it was skipped
        self._class_names: list[str] | None = None
        self._videos: dict[str, list[Video]] = {}

    def _find_annotations(self, annotation_dir: str | None) -> Path:
        if annotation_dir is not None:
            found = Path(annotation_dir).expanduser()
            if not (found / "classInd.txt").is_file():
                raise FileNotFoundError(f"annotation_dir {found} has no classInd.txt\n{LAYOUT}")
            return found
        candidates = [self.root / "ucfTrainTestlist", self.root.parent / "ucfTrainTestlist", self.root]
        for candidate in candidates:
            if (candidate / "classInd.txt").is_file():
                return candidate
        tried = ", ".join(str(c) for c in candidates)
        raise FileNotFoundError(
            f"no classInd.txt found in {tried}; pass annotation_dir (the unpacked UCF101TrainTestSplits "
            f"folder)\n{LAYOUT}"
        )

    # -- what the model is linked to --------------------------------------------------------------
    @property
    def class_names(self) -> list[str]:
        """Class names in label order, read from ``classInd.txt`` on first use."""
        if self._class_names is None:
            self._class_names = read_class_index(self.annotation_dir / "classInd.txt")
        return list(self._class_names)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def clip_shape(self) -> tuple[int, int, int]:
        """(T, H, W) of the clips: (clip_len, crop, crop)."""
        return self.clip_len, self.crop, self.crop

    # -- preparation -------------------------------------------------------------------------------
    def _entries(self, which: str) -> list[tuple[str, int, Path | None]]:
        """(relative path, label, resolved file or None if missing) of one list; fails on a missing class."""
        index = _FolderIndex(self.root)
        entries = read_split(self.split_files[which], self.class_names)
        missing = sorted({rel.split("/")[0] for rel, _ in entries if index.folder(rel.split("/")[0]) is None})
        if missing:
            raise FileNotFoundError(
                f"{self.split_files[which]} lists classes with no folder in {self.root}: {missing}; "
                f"root must be the folder that holds the class folders\n{LAYOUT}"
            )
        return [(rel, label, index.resolve(rel)) for rel, label in entries]

    def prepare_data(self) -> None:
        """Decodes every video of the split into the cache (when ``cache_dir`` is set); one process."""
        if self.cache_dir is None:
            return
        files = {path for which in ("train", "test") for _, _, path in self._entries(which) if path is not None}
        summary = build_cache(self.root, self.cache_dir, self.resize, sorted(files), workers=self._threads())
        rank_zero_info(
            f"UCF-101 cache {self.cache_dir}: {summary.built} videos decoded, {summary.reused} reused, "
            f"{len(summary.failed)} unreadable"
        )

    def _threads(self) -> int:
        return max(1, min(self.num_workers, os.cpu_count() or 1))

    def _frame_counts(self, files: list[Path]) -> dict[Path, int | str]:
        """Frame count, or the reason it is unusable, of each file: from the cache or a cheap probe."""
        if self.cache_dir is not None:
            summary = build_cache(self.root, self.cache_dir, self.resize, files, workers=self._threads())
            counts: dict[Path, int | str] = {Path(p): n for p, n in summary.frames.items()}
            counts.update({Path(p): reason for p, reason in summary.failed.items()})
            return counts

        def probe(path: Path) -> int | str:
            try:
                return probe_video(path)
            except VideoDecodeError as error:
                return str(error)

        with ThreadPoolExecutor(max_workers=self._threads()) as pool:
            return dict(zip(files, pool.map(probe, files), strict=True))

    def _load(self, which: str) -> list[Video]:
        if which in self._videos:
            return self._videos[which]
        entries = self._entries(which)
        skipped: dict[str, str] = {}
        for rel, _, path in entries:
            if path is None:
                skipped[str(self.root / rel)] = f"listed in {self.split_files[which].name} but not found"
        counts = self._frame_counts([path for _, _, path in entries if path is not None])
        videos = []
        for _, label, path in entries:
            if path is None:
                continue
            count = counts[path]
            if isinstance(count, str):
                skipped[str(path)] = count
                continue
            cache = None
            if self.cache_dir is not None:
                cache = cache_entry(self.cache_dir, path.relative_to(self.root), self.resize).array
            videos.append(Video(path=path, label=label, frames=count, cache=cache))
        for number, (path, reason) in enumerate(sorted(skipped.items())):
            if path in self.skipped:
                continue
            self.skipped[path] = reason
            if number < _MAX_SKIP_WARNINGS:
                rank_zero_warn(f"skipping video {path}: {reason}")
        if not videos:
            raise RuntimeError(
                f"none of the {len(entries)} videos of {self.split_files[which]} can be read "
                f"(first reasons: {list(skipped.values())[:3]}); check root={self.root} and OpenCV's video support"
            )
        summary = f"UCF-101 split {self.split} {which}: {len(videos)} videos, {len(skipped)} skipped"
        if skipped:
            rank_zero_warn(f"{summary} (unreadable or missing; see UCF101DataModule.skipped for the list)")
        else:
            rank_zero_info(summary)
        self._videos[which] = videos
        return videos

    def setup(self, stage: str | None = None) -> None:
        """Reads the split lists and checks every video (train list for ``fit``; test list always)."""
        if stage in (None, "fit"):
            self._load("train")
        self._load("test")

    # -- loaders -------------------------------------------------------------------------------------
    def _dataset(self, which: str, train: bool) -> UCF101Clips:
        return UCF101Clips(
            self._load(which),
            clip_len=self.clip_len,
            resize=self.resize,
            crop=self.crop,
            train=train,
            clips_per_video=self.clips_per_video,
        )

    def _loader(self, dataset: UCF101Clips, shuffle: bool) -> DataLoader:
        generator = torch.Generator().manual_seed(self.seed) if shuffle and self.seed is not None else None
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            generator=generator,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self._dataset("train", train=True), shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self._dataset("test", train=False), shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self._dataset("test", train=False), shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self.test_dataloader()


# -- command line: build the cache outside training ------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    """``python -m lightning_selrel.ucf101 --root DIR --cache-dir DIR``: decode every video once."""
    parser = argparse.ArgumentParser(
        prog="python -m lightning_selrel.ucf101",
        description="Decode every .avi under ROOT once into the memory-mapped frame cache used by "
        "UCF101DataModule(cache_dir=...). Entries already valid are kept; interrupted builds resume.",
    )
    parser.add_argument("--root", required=True, help="the UCF-101/ folder of class folders")
    parser.add_argument("--cache-dir", required=True, help="where to write the cache")
    parser.add_argument("--resize", type=int, nargs=2, default=(128, 171), metavar=("H", "W"), help="frame size")
    parser.add_argument("--workers", type=int, default=None, help="decoding threads (default: cores, at most 8)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    summary = build_cache(args.root, args.cache_dir, args.resize, workers=args.workers, progress=True)
    print(f"{summary.built} videos decoded, {summary.reused} already cached, {len(summary.failed)} unreadable")
    for path, reason in sorted(summary.failed.items()):
        print(f"  unreadable: {path}: {reason}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
