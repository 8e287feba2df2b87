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

The sidecar is checked against the data, not only the source: an entry whose ``.npy`` header or size does not
match the frame count and size the sidecar records (a truncated copy, an overwritten header) is damaged, and is
decoded again from its source, counted in :attr:`CacheSummary.damaged` (cheap: a header read and a ``stat`` per
entry). The sidecar also keeps a BLAKE2b checksum of the ``.npy`` file; ``verify=True`` (``cache --verify``) reads
every entry whole and re-decodes those whose bytes changed (random bytes written into an entry keep its size).

Disk cost: 128 x 171 x 3 bytes = 66 kB per frame; all of UCF-101 (about 2.5 million frames) takes
about 165 GB.

Build it outside training with ``python -m lightning_selrel cache --root DIR --cache-dir DIR``
(:mod:`lightning_selrel.commands.cache`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from lightning_selrel.data.frames import C3D_RESIZE, VIDEO_EXTENSIONS, VideoDecodeError, decode_video

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
        built: Videos decoded and written in this call (the damaged ones included).
        reused: Videos whose valid entry was already there.
        failed: Undecodable videos, mapped to the reason.
        frames: Frame count of every usable video, by source path.
    """

    built: int = 0
    reused: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    frames: dict[str, int] = field(default_factory=dict)
    #: Entries found damaged (their data did not match their sidecar) and decoded again, by source: why.
    damaged: dict[str, str] = field(default_factory=dict)


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


def _valid_frames(entry: CacheEntry, key: dict, *, verify: bool = False) -> tuple[int | None, str | None]:
    """``(frames, damage)``: the frame count a valid entry records (0 for a known-bad video), or None when it must
    be built; ``damage`` says why an entry whose sidecar matches its source is nevertheless rebuilt."""
    meta = entry.read()
    if meta is None or any(meta.get(name) != value for name, value in key.items()):
        return None, None
    frames = int(meta.get("frames", -1))
    if frames < 0:
        return None, None
    if frames == 0:
        return 0, None
    damage = entry_damage(entry, meta, verify=verify)
    return (None, damage) if damage else (frames, None)


def entry_damage(entry: CacheEntry, meta: dict, *, verify: bool = False) -> str | None:
    """Why the ``.npy`` of an entry does not hold what its sidecar says (None: it does). Reads the header and the
    size; with ``verify``, the whole file against the sidecar's checksum (entries written before it have none)."""
    if not entry.array.is_file():
        return "its .npy file is missing"
    expected = (int(meta["frames"]), *(int(v) for v in meta["resize"]), 3)
    try:
        array = np.load(entry.array, mmap_mode="r")
    except Exception as error:  # a damaged header raises what NumPy's parser meets: ValueError, SyntaxError, ...
        return f"its .npy file does not read ({type(error).__name__})"
    if tuple(array.shape) != expected or array.dtype != np.uint8:
        return f"its .npy file holds {array.dtype} {tuple(array.shape)}, the sidecar says uint8 {expected}"
    size = entry.array.stat().st_size
    if size != array.offset + array.nbytes:
        return f"its .npy file has {size} bytes, {array.offset + array.nbytes} expected"
    if verify and meta.get("blake2b") and _checksum(entry.array) != meta["blake2b"]:
        return "its .npy file's bytes changed since it was written (checksum)"
    return None


def _checksum(path: Path) -> str:
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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
    source: str | os.PathLike,
    relative: str | os.PathLike,
    cache_dir: str | os.PathLike,
    resize: Sequence[int],
    *,
    verify: bool = False,
) -> tuple[int, bool, str | None]:
    """Makes sure the cache holds a valid entry for one video.

    Args:
        source: The video file.
        relative: Its path inside the dataset root (names the entry).
        cache_dir: Root folder of the cache.
        resize: Frame size (H, W) to store.

        verify: Also compare the whole ``.npy`` with the sidecar's checksum.

    Returns:
        ``(frames, built, damage)``: the frame count (0 when the video cannot be decoded; its sidecar then
        records the error), whether it was decoded in this call, and why an existing entry was found damaged
        (None if it was not).

    Raises:
        OSError: If the source cannot be stat'ed or the cache cannot be written.
    """
    source = Path(source)
    entry = cache_entry(cache_dir, relative, resize)
    key = _key(source, relative, resize)
    frames, damage = _valid_frames(entry, key, verify=verify)
    if frames is not None:
        return frames, False, None
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
    if video is not None:
        meta["blake2b"] = _checksum(entry.array)
    _write_atomic(entry.sidecar, lambda handle: handle.write(json.dumps(meta, indent=1).encode()))
    return meta["frames"], True, damage


def build_cache(
    root: str | os.PathLike,
    cache_dir: str | os.PathLike,
    resize: Sequence[int] = C3D_RESIZE,
    videos: Iterable[str | os.PathLike] | None = None,
    *,
    workers: int | None = None,
    progress: bool = False,
    verify: bool = False,
) -> CacheSummary:
    """Decodes every video under ``root`` once into the cache; valid entries are reused.

    Args:
        root: Dataset root; entries are named by the video's path relative to it.
        cache_dir: Root folder of the cache (created if needed).
        resize: Frame size (H, W) to store.
        videos: Paths of the videos to cache (absolute, or relative to ``root``). Default: every video file
            under ``root`` (the extensions of :data:`~lightning_selrel.data.frames.VIDEO_EXTENSIONS`).
        workers: Threads decoding in parallel (OpenCV releases the GIL while decoding). Default:
            the number of CPU cores, at most 8.
        progress: A progress bar on a terminal; elsewhere (a log file) a line every 500 videos and at the end.
        verify: Read every entry whole and compare it with its sidecar's checksum (damaged entries are decoded
            again either way: a damaged header or size is found without it).

    Returns:
        A :class:`CacheSummary`.

    Raises:
        FileNotFoundError: If ``root`` is not a folder.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"video root {root} is not a folder; pass the folder that holds the class folders")
    if videos is None:
        sources = sorted(p for p in root.rglob("*") if p.suffix.lower() in VIDEO_EXTENSIONS and p.is_file())
    else:
        sources = [root / Path(video) for video in videos]  # an absolute path stays absolute
    workers = workers or min(8, os.cpu_count() or 1)
    summary = CacheSummary()

    def one(source: Path) -> tuple[Path, int, bool, str | None]:
        return (source, *build_cache_entry(source, source.relative_to(root), cache_dir, resize, verify=verify))

    bar = tqdm(total=len(sources), desc="cache", unit="video", disable=None if progress else True)  # None: a tty
    with ThreadPoolExecutor(max_workers=workers) as pool, bar:
        for done, (source, frames, built, damage) in enumerate(pool.map(one, sources), start=1):
            bar.update()
            summary.built += int(built)
            summary.reused += int(not built)
            if damage is not None:
                summary.damaged[str(source)] = damage
                log.warning("cache: %s: the cached entry was damaged (%s); decoded it again", source, damage)
            if frames > 0:
                summary.frames[str(source)] = frames
            else:
                meta = cache_entry(cache_dir, source.relative_to(root), resize).read() or {}
                summary.failed[str(source)] = meta.get("error") or "no decodable frame"
            if progress and bar.disable and (done % 500 == 0 or done == len(sources)):  # a log, not a terminal
                log.info("cache: %d / %d videos (%d decoded)", done, len(sources), summary.built)
    return summary
