"""A memory-mapped cache of decoded videos (decoding itself is :mod:`lightning_selrel.data.frames`).

Decoding an ``.avi`` for every training clip is the bottleneck of video training. The cache decodes
each video once (:func:`lightning_selrel.data.frames.decode_video`), resizes its frames and stores them as one
uncompressed ``.npy`` array (T, H, W, 3) (RGB, uint8) that a dataset reads with
``np.load(mmap_mode="r")``: a clip then touches only the bytes of its own frames.

Layout: ``cache_dir/<H>x<W>/<relative path of the video>.npy`` plus a sidecar ``.json`` holding the
key (relative path, size and ``mtime_ns`` of the source, resize) and the frame count. An entry is
valid only when its sidecar matches the source file as it is now, so a changed video is decoded
again. Both files are written to a temporary name and moved into place with :func:`os.replace`, the
sidecar last: an interrupted build leaves no entry that looks valid. A video that cannot be decoded
gets a sidecar with ``frames: 0`` and its error, so later runs skip it without decoding it again.

Disk cost: 128 x 171 x 3 bytes = 66 kB per frame; all of UCF-101 (about 2.5 million frames) takes
about 165 GB.

Build it outside training with ``python -m lightning_selrel cache --root DIR --cache-dir DIR``
(:mod:`lightning_selrel.commands.cache`).
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lightning_selrel.data.frames import C3D_RESIZE, VideoDecodeError, decode_video

__all__ = ["CacheEntry", "CacheSummary", "build_cache", "build_cache_entry", "cache_entry"]

log = logging.getLogger(__name__)

_CACHE_VERSION = 1


# -- cache ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CacheEntry:
    """Where one video's cached frames live.

    Attributes:
        array: The ``.npy`` file with frames (T, H, W, 3).
        sidecar: The ``.json`` file with the key and the frame count.
    """

    array: Path
    sidecar: Path

    def read(self) -> dict | None:
        """The sidecar's content, or None when it is missing or unreadable."""
        try:
            return json.loads(self.sidecar.read_text())
        except (OSError, ValueError):
            return None


@dataclass
class CacheSummary:
    """What :func:`build_cache` did.

    Attributes:
        built: Videos decoded and written in this call.
        reused: Videos whose valid entry was already there.
        failed: Undecodable videos, mapped to the reason.
        frames: Frame count of every usable video, by source path.
    """

    built: int = 0
    reused: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    frames: dict[str, int] = field(default_factory=dict)


def cache_entry(cache_dir: str | os.PathLike, relative: str | os.PathLike, resize: Sequence[int]) -> CacheEntry:
    """The cache files of the video at ``relative`` (a path inside the dataset root) for ``resize``."""
    base = Path(cache_dir) / f"{int(resize[0])}x{int(resize[1])}" / Path(relative)
    return CacheEntry(array=base.with_suffix(".npy"), sidecar=base.with_suffix(".json"))


def _key(source: Path, relative: str | os.PathLike, resize: Sequence[int]) -> dict:
    stat = source.stat()
    return {
        "version": _CACHE_VERSION,
        "source": Path(relative).as_posix(),
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "resize": [int(resize[0]), int(resize[1])],
    }


def _valid_frames(entry: CacheEntry, key: dict) -> int | None:
    """Frame count recorded by a valid entry (0 for a known-bad video); None when it must be built."""
    meta = entry.read()
    if meta is None or any(meta.get(name) != value for name, value in key.items()):
        return None
    frames = int(meta.get("frames", -1))
    if frames > 0 and not entry.array.is_file():
        return None
    return frames if frames >= 0 else None


def _temp_name(final: Path) -> Path:
    return final.with_name(f".{final.name}.{os.getpid()}.{threading.get_ident()}.tmp")


def _write_atomic(final: Path, write) -> None:
    temp = _temp_name(final)
    try:
        with open(temp, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, final)
    finally:
        if temp.exists():
            temp.unlink()


def build_cache_entry(
    source: str | os.PathLike, relative: str | os.PathLike, cache_dir: str | os.PathLike, resize: Sequence[int]
) -> tuple[int, bool]:
    """Makes sure the cache holds a valid entry for one video.

    Args:
        source: The video file.
        relative: Its path inside the dataset root (names the entry).
        cache_dir: Root folder of the cache.
        resize: Frame size (H, W) to store.

    Returns:
        ``(frames, built)``: the frame count (0 when the video cannot be decoded; its sidecar then
        records the error) and whether it was decoded in this call.

    Raises:
        OSError: If the source cannot be stat'ed or the cache cannot be written.
    """
    source = Path(source)
    entry = cache_entry(cache_dir, relative, resize)
    key = _key(source, relative, resize)
    frames = _valid_frames(entry, key)
    if frames is not None:
        return frames, False
    entry.array.parent.mkdir(parents=True, exist_ok=True)
    entry.sidecar.unlink(missing_ok=True)  # from here on, no valid-looking entry until the end
    try:
        video = decode_video(source, resize)  # (T, H, W, 3)
        error = None
    except VideoDecodeError as exc:
        video, error = None, str(exc)
    if video is not None:
        _write_atomic(entry.array, lambda handle: np.save(handle, np.ascontiguousarray(video)))
    else:
        entry.array.unlink(missing_ok=True)
    meta = {**key, "frames": 0 if video is None else int(video.shape[0]), "error": error}
    _write_atomic(entry.sidecar, lambda handle: handle.write(json.dumps(meta, indent=1).encode()))
    return meta["frames"], True


def build_cache(
    root: str | os.PathLike,
    cache_dir: str | os.PathLike,
    resize: Sequence[int] = C3D_RESIZE,
    videos: Iterable[str | os.PathLike] | None = None,
    *,
    workers: int | None = None,
    progress: bool = False,
) -> CacheSummary:
    """Decodes every video under ``root`` once into the cache; valid entries are reused.

    Args:
        root: Dataset root; entries are named by the video's path relative to it.
        cache_dir: Root folder of the cache (created if needed).
        resize: Frame size (H, W) to store.
        videos: Paths of the videos to cache (absolute, or relative to ``root``). Default: every
            ``.avi`` file under ``root``.
        workers: Threads decoding in parallel (OpenCV releases the GIL while decoding). Default:
            the number of CPU cores, at most 8.
        progress: Log a line every 500 videos.

    Returns:
        A :class:`CacheSummary`.

    Raises:
        FileNotFoundError: If ``root`` is not a folder.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"video root {root} is not a folder; pass the folder that holds the class folders")
    if videos is None:
        sources = sorted(root.rglob("*.avi"))
    else:
        sources = [root / Path(video) for video in videos]  # an absolute path stays absolute
    workers = workers or min(8, os.cpu_count() or 1)
    summary = CacheSummary()

    def one(source: Path) -> tuple[Path, int, bool]:
        frames, built = build_cache_entry(source, source.relative_to(root), cache_dir, resize)
        return source, frames, built

    with ThreadPoolExecutor(max_workers=workers) as pool:
        for done, (source, frames, built) in enumerate(pool.map(one, sources), start=1):
            summary.built += int(built)
            summary.reused += int(not built)
            if frames > 0:
                summary.frames[str(source)] = frames
            else:
                meta = cache_entry(cache_dir, source.relative_to(root), resize).read() or {}
                summary.failed[str(source)] = meta.get("error") or "no decodable frame"
            if progress and done % 500 == 0:
                log.info("cache: %d / %d videos (%d decoded)", done, len(sources), summary.built)
    return summary
