"""Any video dataset given as annotation lists, as a LightningDataModule (:class:`VideoListDataModule`), and the
machinery it shares with :class:`~lightning_selrel.data.ucf101.datamodule.UCF101DataModule` (:class:`VideoDataModule`):
checking every listed video in ``setup``, the frame cache, clip sampling and transforms, ``long_clips``, loaders.

A list is MMAction2's ``ann_file`` format for videos, the format most video datasets (Kinetics, HMDB-51,
Something-Something, ...) are distributed in or converted to: one ``relative/path label`` per line, ``label`` a
0-indexed class, the path relative to ``root``; blank lines and lines starting with ``#`` are skipped::

    abseiling/0347ZoDXyP0_000095_000105.mp4 0
    air_drumming/03V2idM7_KY_000003_000013.mp4 1

``class_names`` is an optional file of one name per line, in label order (Kinetics' ``label_map.txt``); without
it the classes are named by their index and counted as the largest label + 1 over the lists. Clips are yielded as
``(clip, label)``: uint8 RGB (3, T, H, W) in pixel scale (:class:`~lightning_selrel.data.clips.UCF101Clips`), any
container OpenCV reads (``.mp4``, ``.avi``, ``.mkv``, ``.webm``, ...).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Literal

from torch.utils.data import DataLoader

from lightning_selrel._lightning import MisconfigurationException, pl, rank_zero_info, rank_zero_warn
from lightning_selrel.data.cache import DEFAULT_JPEG_QUALITY, build_cache, cache_entry, check_format, choose_format
from lightning_selrel.data.clips import UCF101Clips, Video
from lightning_selrel.data.frames import C3D_CROP, C3D_RESIZE, VIDEO_EXTENSIONS, VideoDecodeError, probe_video
from lightning_selrel.data.loaders import clip_loader

__all__ = ["VIDEO_EXTENSIONS", "VideoDataModule", "VideoListDataModule", "read_class_names", "read_video_list"]

_MAX_SKIP_WARNINGS = 10
LIST_FORMAT = (
    "a video list has one 'relative/path label' line per video (MMAction2's ann_file), label a 0-indexed class, "
    "the path relative to root"
)


def _text(path: Path, what: str) -> str:
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} not found")
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        raise ValueError(f"{what} {path} is not a UTF-8 text file (byte {error.start}: {error.reason})") from None


def read_video_list(path: str | os.PathLike) -> list[tuple[str, int]]:
    """``(relative path, label)`` of every line of a video list (see the module notes).

    Raises:
        FileNotFoundError: If the file does not exist.
        ValueError: Naming the file and line of a malformed entry, or an empty list.
    """
    path = Path(path).expanduser()
    entries = []
    for number, raw in enumerate(_text(path, "video list").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.rsplit(maxsplit=1)
        if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
            raise ValueError(f"{path}, line {number}: expected 'relative/path label', got {line!r}; {LIST_FORMAT}")
        label = int(parts[1])
        if label < 0:
            raise ValueError(f"{path}, line {number}: label {label} is negative; labels are 0-indexed classes")
        entries.append((parts[0], label))
    if not entries:
        raise ValueError(f"video list {path} lists no video; {LIST_FORMAT}")
    return entries


def read_class_names(path: str | os.PathLike) -> list[str]:
    """Class names, one per line in label order (blank lines skipped).

    Raises:
        FileNotFoundError, ValueError: For a missing, non-text, empty file or repeated names.
    """
    path = Path(path).expanduser()
    names = [line.strip() for line in _text(path, "class_names").splitlines() if line.strip()]
    if not names:
        raise ValueError(f"class_names {path} lists no class; one name per line, in label order")
    if len(set(names)) != len(names):
        repeated = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"class_names {path} names a class twice: {repeated}")
    return names


class VideoDataModule(pl.LightningDataModule):
    """What every video-file data module of this package does; a subclass says where the lists come from.

    A subclass sets the attributes of :meth:`_configure` and implements :attr:`class_names` and :meth:`_entries`
    (``(relative path, label, file or None if missing)`` of one split), and may rename its splits
    (:attr:`split_of`: the list each of ``train``, ``val`` and ``test`` reads).
    """

    #: The list each stage reads.
    split_of = {"train": "train", "val": "val", "test": "test"}
    #: How messages name the dataset.
    dataset_name = "video list"

    def _configure(
        self,
        root: str,
        clip_len: int,
        resize: tuple[int, int],
        crop: int,
        batch_size: int,
        num_workers: int,
        cache_dir: str | None,
        clips_per_video: int,
        seed: int | None,
        pin_memory: bool | None = None,
        prepare_data_per_node: bool = True,
        cache_format: Literal["jpeg", "npy"] | None = None,
        cache_quality: int = DEFAULT_JPEG_QUALITY,
    ) -> None:
        resize = (int(resize[0]), int(resize[1]))
        if min(clip_len, crop, batch_size, clips_per_video) < 1 or num_workers < 0:
            raise ValueError(
                "clip_len, crop, batch_size and clips_per_video must be positive and num_workers >= 0, got "
                f"{clip_len}, {crop}, {batch_size}, {clips_per_video} and {num_workers}"
            )
        if crop > min(resize):
            raise ValueError(f"crop {crop} does not fit in frames resized to {resize}; use crop <= {min(resize)}")
        self.root = Path(root).expanduser()
        self.clip_len, self.resize, self.crop = int(clip_len), resize, int(crop)
        self.batch_size, self.num_workers, self.clips_per_video = batch_size, num_workers, clips_per_video
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir is not None else None
        check_format(cache_format or "jpeg", cache_quality)
        self.cache_format, self.cache_quality = cache_format, cache_quality
        self._format: str | None = None  # the format in use, chosen at the first use of the cache
        self.seed = seed
        self.pin_memory = pin_memory
        self.prepare_data_per_node = bool(prepare_data_per_node)  # Lightning's switch: False = global rank 0 only
        self.skipped: dict[str, str] = {}  # video path -> why it was skipped
        self._videos: dict[str, list[Video]] = {}

    # -- what the model is linked to ------------------------------------------------------------------
    @property
    def class_names(self) -> list[str]:  # pragma: no cover - overridden
        raise NotImplementedError

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def clip_shape(self) -> tuple[int, int, int]:
        """(T, H, W) of the clips: (clip_len, crop, crop)."""
        return self.clip_len, self.crop, self.crop

    # -- the lists ------------------------------------------------------------------------------------
    def _entries(self, which: str) -> list[tuple[str, int, Path | None]]:  # pragma: no cover - overridden
        raise NotImplementedError

    def _list_name(self, which: str) -> str:
        """How messages name the list ``which``."""
        return which

    # -- preparation ----------------------------------------------------------------------------------
    def prepare_data(self) -> None:
        """Decodes every listed video into the cache (when ``cache_dir`` is set), with a progress bar; one process
        per node (Lightning's default; ``prepare_data_per_node=False`` on a shared file system: see
        docs/ucf101.md)."""
        if self.cache_dir is None:
            return
        lists = sorted(set(self.split_of.values()))
        files = {path for which in lists for _, _, path in self._entries(which) if path is not None}
        rank_zero_info(f"{self.dataset_name} cache {self.cache_dir}: checking {len(files)} videos")
        summary = build_cache(
            self.root,
            self.cache_dir,
            self.resize,
            sorted(files),
            workers=self._threads(),
            progress=True,
            **self._cache_options(),
        )
        damaged = f", {len(summary.damaged)} of them damaged in the cache" if summary.damaged else ""
        rank_zero_info(
            f"{self.dataset_name} cache {self.cache_dir}: {summary.built} videos decoded{damaged}, {summary.reused} "
            f"reused, {len(summary.failed)} unreadable"
        )

    def _cache_options(self) -> dict:
        """``format`` and ``quality`` of the cache, the format chosen once (see ``cache_format``)."""
        if self._format is None:
            self._format = self.cache_format or choose_format(self.cache_dir, self.resize, self.cache_quality)
            if self.cache_format is None and self._format == "npy":
                rank_zero_info(
                    f"{self.dataset_name} cache {self.cache_dir}: using the raw (npy) cache it holds; "
                    "cache_format='jpeg' builds the compact one (8-12x smaller)"
                )
        return {"format": self._format, "quality": self.cache_quality}

    def _threads(self) -> int:
        return max(1, min(self.num_workers, os.cpu_count() or 1))

    def _frame_counts(self, files: list[Path]) -> dict[Path, int | str]:
        """Frame count, or the reason it is unusable, of each file: from the cache or a cheap probe."""
        if self.cache_dir is not None:
            summary = build_cache(
                self.root, self.cache_dir, self.resize, files, workers=self._threads(), **self._cache_options()
            )
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

    def _shared_frame_counts(self, files: list[Path]) -> dict[Path, int | str]:
        """:meth:`_frame_counts` on global rank 0 alone, sent to the other ranks: a multi-GPU run opens each video
        once in ``setup``, not once per rank (every rank still reads the lists)."""
        trainer = self.trainer  # Lightning sets it before setup; None when the module is used on its own
        if trainer is None or trainer.world_size <= 1:
            return self._frame_counts(files)
        counts = self._frame_counts(files) if trainer.is_global_zero else None
        return trainer.strategy.broadcast(counts, src=0)

    def _load(self, which: str) -> list[Video]:
        if which in self._videos:
            return self._videos[which]
        entries = self._entries(which)
        skipped: dict[str, str] = {}
        for rel, _, path in entries:
            if path is None:
                skipped[str(self.root / rel)] = f"listed in {self._list_name(which)} but not found"
        counts = self._shared_frame_counts([path for _, _, path in entries if path is not None])
        videos = []
        options = self._cache_options() if self.cache_dir is not None else None
        for _, label, path in entries:
            if path is None:
                continue
            count = counts[path]
            if isinstance(count, str):
                skipped[str(path)] = count
                continue
            cache = None
            if options is not None:
                cache = cache_entry(
                    self.cache_dir, path.relative_to(self.root), self.resize, options["format"], options["quality"]
                ).array
            videos.append(Video(path=path, label=label, frames=count, cache=cache))
        for number, (path, reason) in enumerate(sorted(skipped.items())):
            if path in self.skipped:
                continue
            self.skipped[path] = reason
            if number < _MAX_SKIP_WARNINGS:
                rank_zero_warn(f"skipping video {path}: {reason}")
        if not videos:
            raise MisconfigurationException(
                f"none of the {len(entries)} videos of {self._list_name(which)} can be read "
                f"(first reasons: {list(skipped.values())[:3]}); check root={self.root} and OpenCV's video support"
            )
        summary = f"{self._describe(which)}: {len(videos)} videos, {len(skipped)} skipped"
        if skipped:
            rank_zero_warn(f"{summary} (unreadable or missing; see {type(self).__name__}.skipped for the list)")
        else:
            rank_zero_info(summary)
        self._videos[which] = videos
        return videos

    def _describe(self, which: str) -> str:
        return f"{self.dataset_name} {which}"

    def setup(self, stage: str | None = None) -> None:
        """Reads the lists and checks every video: the training and validation lists for ``fit``, the
        validation list for ``validate``, the test list for ``test`` and ``predict``."""
        wanted = {
            None: ("train", "val", "test"),
            "fit": ("train", "val"),
            "validate": ("val",),
            "test": ("test",),
            "predict": ("test",),
        }.get(stage, ("train", "val", "test"))
        for which in dict.fromkeys(self.split_of[s] for s in wanted):
            self._load(which)

    # -- loaders --------------------------------------------------------------------------------------
    def _dataset(self, stage: str, train: bool, clip_len: int | None = None) -> UCF101Clips:
        return UCF101Clips(
            self._load(self.split_of[stage]),
            clip_len=clip_len or self.clip_len,
            resize=self.resize,
            crop=self.crop,
            train=train,
            clips_per_video=self.clips_per_video,
        )

    def long_clips(self, stage: str, factor: int) -> UCF101Clips:
        """Clips of ``factor`` times ``clip_len`` frames from the same videos (the training list for ``"train"``,
        the validation list otherwise), with the stage's transforms; short videos are loop-padded (``calibrate``'s
        speed task)."""
        train = stage == "train"
        return self._dataset("train" if train else "val", train=train, clip_len=factor * self.clip_len)

    def _loader(self, dataset: UCF101Clips, shuffle: bool) -> DataLoader:
        return clip_loader(
            dataset,
            batch_size=self.batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            seed=self.seed,
            pin_memory=self.pin_memory,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self._dataset("train", train=True), shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self._dataset("val", train=False), shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self._dataset("test", train=False), shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self.test_dataloader()


class VideoListDataModule(VideoDataModule):
    """Any video dataset given as annotation lists (see the module notes): train on ``train_list``, validate on
    ``val_list``, test and predict on ``test_list`` (default: ``val_list``).

    Args:
        root: The folder the lists' paths are relative to.
        train_list, val_list, test_list: Video lists, ``relative/path label`` per line (MMAction2's format).
        class_names: A file of one class name per line, in label order (default: the labels' indices).
        clip_len: Frames per clip, T.
        resize: Frame size (H, W) before cropping (C3D: 128 x 171).
        crop: Side of the square crop (C3D: 112).
        batch_size: Clips per batch.
        num_workers: Data loader processes (also the threads that check or cache videos in setup).
        cache_dir: Folder of the decoded-frame cache (see :mod:`lightning_selrel.data.cache`); None decodes
            every clip from its video.
        clips_per_video: Evenly spaced windows per video for validation and test.
        seed: Seeds the training shuffle (None: the global seed).
        pin_memory: Page-locked batches for a faster copy to the GPU (default: on when CUDA is available).
        prepare_data_per_node: Build the cache once per node (Lightning's default); False builds it on global rank
            0 alone, for nodes that share one file system (they would otherwise decode the same videos).
        cache_format: ``"jpeg"`` (compact: 8-12x smaller) or ``"npy"`` (raw, memory-mapped: fastest when the cache
            fits in memory); see :mod:`lightning_selrel.data.cache`. Default: ``"jpeg"``, unless ``cache_dir``
            already holds a raw cache of these frames and no JPEG one.
        cache_quality: JPEG quality of the ``"jpeg"`` cache (1-100).

    Raises:
        FileNotFoundError: If ``root``, a list or the class names file is missing.
        ValueError: If a list or the class names file is malformed, a label has no class name, or an argument is
            out of range; each message names the file and line.
    """

    dataset_name = "video list"

    def __init__(
        self,
        root: str,
        train_list: str,
        val_list: str,
        test_list: str | None = None,
        class_names: str | None = None,
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
            raise FileNotFoundError(f"root {self.root} is not a folder; pass the folder the lists' paths start from")
        self.lists = {
            "train": Path(train_list).expanduser(),
            "val": Path(val_list).expanduser(),
            "test": Path(test_list if test_list is not None else val_list).expanduser(),
        }
        self._entries_read = {which: read_video_list(path) for which, path in self.lists.items()}
        largest = max(label for entries in self._entries_read.values() for _, label in entries)
        if class_names is not None:
            self._class_names = read_class_names(class_names)
            if largest >= len(self._class_names):
                which, (rel, label) = next(
                    (w, e) for w, entries in self._entries_read.items() for e in entries if e[1] == largest
                )
                raise ValueError(
                    f"{self.lists[which]}: {rel} has label {label}, and {class_names} names "
                    f"{len(self._class_names)} classes (0 .. {len(self._class_names) - 1})"
                )
        else:
            self._class_names = [str(i) for i in range(largest + 1)]

    @property
    def class_names(self) -> list[str]:
        return list(self._class_names)

    def _list_name(self, which: str) -> str:
        return str(self.lists[which])

    def _entries(self, which: str) -> list[tuple[str, int, Path | None]]:
        out = []
        for rel, label in self._entries_read[which]:
            path = self.root / rel
            out.append((rel, label, path if path.is_file() else None))
        return out
