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
:mod:`lightning_selrel.data.clips`; checking, caching, sampling and loading are those of every video data module
(:class:`~lightning_selrel.data.video_list.VideoDataModule`), of which this is the case whose lists are UCF-101's
split files. Build the frame cache outside training with
``python -m lightning_selrel cache --root DIR --cache-dir DIR`` (see :mod:`lightning_selrel.data.cache`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from lightning_selrel.data.cache import DEFAULT_JPEG_QUALITY
from lightning_selrel.data.clips import UCF101Clips, Video
from lightning_selrel.data.frames import C3D_CROP, C3D_RESIZE
from lightning_selrel.data.ucf101.splits import LAYOUT, FolderIndex, read_class_index, read_split
from lightning_selrel.data.video_list import VideoDataModule

# read_class_index, read_split, UCF101Clips and Video lived here before: kept importable for one release.
__all__ = ["UCF101DataModule", "UCF101Clips", "Video", "read_class_index", "read_split"]


# -- data module -------------------------------------------------------------------------------
class UCF101DataModule(VideoDataModule):
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
        pin_memory: Page-locked batches for a faster copy to the GPU (default: on when CUDA is available).
        prepare_data_per_node: Build the cache once per node (default); False: on global rank 0 alone, for nodes
            that share one file system.
        cache_format: ``"jpeg"`` (compact: 8-12x smaller) or ``"npy"`` (raw, memory-mapped: fastest when the cache
            fits in memory); see :mod:`lightning_selrel.data.cache`. Default: ``"jpeg"``, unless ``cache_dir``
            already holds a raw cache of these frames and no JPEG one.
        cache_quality: JPEG quality of the ``"jpeg"`` cache (1-100).

    Raises:
        FileNotFoundError: If ``root``, the annotation folder or a split file is missing.
        ValueError: If an argument is out of range.
    """

    split_of = {"train": "train", "val": "test", "test": "test"}  # validation is the test list, as the paper
    dataset_name = "UCF-101"

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
        pin_memory: bool | None = None,
        prepare_data_per_node: bool = True,
        cache_format: Literal["jpeg", "npy"] | None = None,
        cache_quality: int = DEFAULT_JPEG_QUALITY,
    ) -> None:
        super().__init__()
        if split not in (1, 2, 3):
            raise ValueError(f"split must be 1, 2 or 3 (the official UCF-101 splits), got {split}")
        self._configure(
            root,
            clip_len,
            resize,
            crop,
            batch_size,
            num_workers,
            cache_dir,
            clips_per_video,
            seed,
            pin_memory,
            prepare_data_per_node,
            cache_format,
            cache_quality,
        )
        self.save_hyperparameters()
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
        self._class_names: list[str] | None = None

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

    @property
    def class_names(self) -> list[str]:
        """Class names in label order, read from ``classInd.txt`` on first use."""
        if self._class_names is None:
            self._class_names = read_class_index(self.annotation_dir / "classInd.txt")
        return list(self._class_names)

    def _list_name(self, which: str) -> str:
        return str(self.split_files[which])

    def _describe(self, which: str) -> str:
        return f"UCF-101 split {self.split} {which}"

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


if __name__ == "__main__":  # the cache command's old address, kept for one release
    from lightning_selrel.data.cache import main

    raise SystemExit(main(prog="python -m lightning_selrel.data.ucf101.datamodule"))
