"""UCF-101 with its official train/test splits, as a LightningDataModule.

Clips are yielded as ``(clip, label)``: ``clip`` uint8 RGB (3, T, H, W) in pixel scale, ``label`` a
0-indexed class (:class:`~lightning_selrel.data.clips.UCF101Clips`). Training takes the train list;
validation and test both take the test list, as the paper. Frames are first resized to ``resize``
(128 x 171, as C3D).

Damaged input:

- A missing root, annotation folder or split file fails at construction; a class in the lists with
  no folder fails in :meth:`UCF101DataModule.setup`, before training starts. Messages name the path
  and the expected layout.
- A listed video that is missing, cannot be opened or has no frame is skipped in ``setup`` with a
  warning naming it (the first ten individually, then a count); ``setup`` ends with the number of
  skipped videos, and :attr:`UCF101DataModule.skipped` maps each to its reason. Without a cache the
  check opens each video and decodes its first frame; with a cache the check is the full decoding
  that built it.
- A video that still fails while training never stops the epoch (see
  :mod:`lightning_selrel.data.clips`).

The split files are read by :mod:`lightning_selrel.data.ucf101.splits`, the clips by
:mod:`lightning_selrel.data.clips`. Build the frame cache outside training with
``python -m lightning_selrel cache --root DIR --cache-dir DIR`` (see :mod:`lightning_selrel.data.cache`).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from lightning_selrel._lightning import MisconfigurationException, pl, rank_zero_info, rank_zero_warn
from lightning_selrel.data.cache import build_cache, cache_entry
from lightning_selrel.data.clips import UCF101Clips, Video
from lightning_selrel.data.frames import C3D_CROP, C3D_RESIZE, VideoDecodeError, probe_video
from lightning_selrel.data.ucf101.splits import LAYOUT, FolderIndex, read_class_index, read_split

# read_class_index, read_split, UCF101Clips and Video lived here before: kept importable for one release.
__all__ = ["UCF101DataModule", "UCF101Clips", "Video", "read_class_index", "read_split"]

_MAX_SKIP_WARNINGS = 10


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
        resize: tuple[int, int] = C3D_RESIZE,
        crop: int = C3D_CROP,
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
        index = FolderIndex(self.root)
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
            raise MisconfigurationException(
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

    def long_clips(self, stage: str, factor: int) -> UCF101Clips:
        """Clips of ``factor`` times ``clip_len`` frames from the same videos (train list for ``"train"``, test list
        otherwise), with the stage's transforms; short videos are loop-padded (``calibrate``'s speed task)."""
        train = stage == "train"
        return UCF101Clips(
            self._load("train" if train else "test"),
            clip_len=factor * self.clip_len,
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


if __name__ == "__main__":  # the cache command's old address, kept for one release
    from lightning_selrel.data.cache import main

    raise SystemExit(main(prog="python -m lightning_selrel.data.ucf101.datamodule"))
