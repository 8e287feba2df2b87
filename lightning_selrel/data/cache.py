"""A cache of decoded videos, compact (JPEG frames) or raw (memory-mapped uint8); decoding is
:mod:`lightning_selrel.data.frames`.

Decoding a video for every training clip is the bottleneck of video training. The cache decodes each video once
(:func:`lightning_selrel.data.frames.decode_video`), resizes its frames and stores them in one of two formats
(:data:`CACHE_FORMATS`); :func:`read_frames` gives any frames of an entry back as RGB uint8 (N, H, W, 3):

- ``"jpeg"`` (the default): every frame a JPEG (quality 90 by default) in one ``.jpegs`` file per video, with a
  frame index in its header, so a clip reads only the bytes of its own frames (one read) and decodes those. On
  the public footage 8-12x smaller than ``"npy"`` (PSNR 37-40 dB); per worker it reads clips as fast as ``"npy"``
  read from disk, about a tenth as fast as ``"npy"`` already in the page cache (``benchmarks/bench_cache.py``).
- ``"npy"``: one uncompressed ``.npy`` array (T, H, W, 3) read with ``np.load(mmap_mode="r")``: the fastest when the
  whole cache fits in memory; 66 kB a frame at 128 x 171 (all of UCF-101: about 165 GB).

The ``.jpegs`` file: ``SRJPEG01`` (8 bytes), then frame count, height and width (three little-endian uint32),
then T + 1 little-endian uint64 offsets of the frames in the data that follows (the last one is the data's size),
then the JPEG data. It is data only: nothing in it is executed.

Layout: ``cache_dir/<H>x<W>/<relative path of the video, its extension replaced>.npy`` (``"npy"``, the layout of
caches written before formats existed) or ``cache_dir/<H>x<W>-jpeg<quality>/<relative path>.jpegs`` (the video's
whole name kept, so that ``clip.mp4`` and ``clip.webm`` in one folder do not share an entry), each with a sidecar
``.json`` holding the key (relative path, size and ``mtime_ns`` of the source, resize) and the frame count. An entry
is valid only when its sidecar matches the source file as it is now, so a changed video is decoded again. Both files
are written to a temporary name and moved into place with :func:`os.replace`, the sidecar last: an interrupted build
leaves no entry that looks valid. A video that cannot be decoded gets a sidecar with ``frames: 0`` and its error, so
later runs skip it without decoding it again.

The sidecar is checked against the data, not only the source: an entry whose header or size does not match the
frame count and size the sidecar records (a truncated copy, an overwritten header) is damaged, and is decoded
again from its source, counted in :attr:`CacheSummary.damaged` (cheap: a header read and a ``stat`` per entry).
The sidecar also keeps a BLAKE2b checksum of the data file; ``verify=True`` (``cache --verify``) reads every entry
whole and re-decodes those whose bytes changed (random bytes written into an entry keep its size).

Build it outside training with ``python -m lightning_selrel cache --root DIR --cache-dir DIR``
(:mod:`lightning_selrel.commands.cache`); ``shard=(k, n)`` (``--shard K/N``) builds every n-th video from the
k-th, so n processes or nodes build one cache together without doing any video twice.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import struct
import threading
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from tqdm.auto import tqdm

from lightning_selrel.data.frames import C3D_RESIZE, VIDEO_EXTENSIONS, VideoDecodeError, decode_video

__all__ = [
    "CACHE_FORMATS",
    "DEFAULT_JPEG_QUALITY",
    "CacheEntry",
    "CacheSummary",
    "build_cache",
    "build_cache_entry",
    "cache_entry",
    "check_format",
    "choose_format",
    "read_frames",
]

log = logging.getLogger(__name__)

_CACHE_VERSION = 1

#: The cache's formats: ``"jpeg"`` (compact, the default) and ``"npy"`` (raw, memory-mapped).
CACHE_FORMATS = ("jpeg", "npy")
#: JPEG quality of the ``"jpeg"`` format (OpenCV's scale, 1-100).
DEFAULT_JPEG_QUALITY = 90

_MAGIC = b"SRJPEG01"
_HEAD = struct.Struct("<8sIII")  # magic, frames, height, width


# -- cache ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CacheEntry:
    """Where one video's cached frames live.

    Attributes:
        array: The data file: ``.npy`` (frames (T, H, W, 3)) or ``.jpegs`` (see the module notes).
        sidecar: The ``.json`` file with the key and the frame count.
    """

    array: Path
    sidecar: Path

    @property
    def format(self) -> str:
        """``"jpeg"`` or ``"npy"``, from the data file's name."""
        return "jpeg" if self.array.suffix == ".jpegs" else "npy"

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


def _folder(resize: Sequence[int], format: str, quality: int) -> str:
    size = f"{int(resize[0])}x{int(resize[1])}"
    return size if format == "npy" else f"{size}-jpeg{int(quality)}"


def check_format(format: str, quality: int = DEFAULT_JPEG_QUALITY) -> None:
    """Raises ValueError naming the value and the choices if ``format`` or ``quality`` cannot be used."""
    if format not in CACHE_FORMATS:
        raise ValueError(f"cache format {format!r} is not one of {', '.join(map(repr, CACHE_FORMATS))}")
    if isinstance(quality, bool) or not isinstance(quality, int) or not 1 <= quality <= 100:
        raise ValueError(f"JPEG quality {quality!r} must be an integer from 1 to 100 (default {DEFAULT_JPEG_QUALITY})")


def cache_entry(
    cache_dir: str | os.PathLike,
    relative: str | os.PathLike,
    resize: Sequence[int],
    format: str = "jpeg",
    quality: int = DEFAULT_JPEG_QUALITY,
) -> CacheEntry:
    """The cache files of the video at ``relative`` (a path inside the dataset root) for ``resize``, in ``format``
    (``quality``: the JPEG quality of the ``"jpeg"`` format)."""
    check_format(format, quality)
    base = Path(cache_dir) / _folder(resize, format, quality) / Path(relative)
    if format == "npy":  # the names raw caches had before formats existed (the video's extension replaced)
        return CacheEntry(array=base.with_suffix(".npy"), sidecar=base.with_suffix(".json"))
    # the video's whole name kept: clip.mp4 and clip.webm side by side get entries of their own
    return CacheEntry(array=base.with_name(base.name + ".jpegs"), sidecar=base.with_name(base.name + ".json"))


def choose_format(cache_dir: str | os.PathLike, resize: Sequence[int], quality: int = DEFAULT_JPEG_QUALITY) -> str:
    """The format a cache folder is used in when none is asked for: ``"jpeg"``, unless the folder already holds a
    raw (``"npy"``) cache for ``resize`` and no JPEG one (a cache built before formats existed is not decoded
    again)."""
    root = Path(cache_dir)
    raw, jpeg = root / _folder(resize, "npy", quality), root / _folder(resize, "jpeg", quality)
    return "npy" if raw.is_dir() and not jpeg.is_dir() else "jpeg"


def _key(source: Path, relative: str | os.PathLike, resize: Sequence[int], format: str, quality: int) -> dict:
    stat = source.stat()
    key = {
        "version": _CACHE_VERSION,
        "source": Path(relative).as_posix(),
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "resize": [int(resize[0]), int(resize[1])],
    }
    if format == "jpeg":  # npy sidecars keep the key they had before formats existed
        key.update(format="jpeg", quality=int(quality))
    return key


# -- the .jpegs file -----------------------------------------------------------------------------
def _jpeg_index(handle) -> tuple[int, int, int, np.ndarray, int]:
    """``(frames, height, width, offsets, data_start)`` of an open ``.jpegs`` file.

    Raises:
        ValueError: If the header is not one.
    """
    head = handle.read(_HEAD.size)
    if len(head) != _HEAD.size:
        raise ValueError("its header is cut short")
    magic, frames, height, width = _HEAD.unpack(head)
    if magic != _MAGIC:
        raise ValueError("it does not start as a .jpegs file")
    if 8 * (frames + 1) > os.fstat(handle.fileno()).st_size - _HEAD.size:  # never read what the file cannot hold
        raise ValueError("its frame index is cut short")
    raw = handle.read(8 * (frames + 1))
    if len(raw) != 8 * (frames + 1):
        raise ValueError("its frame index is cut short")
    offsets = np.frombuffer(raw, dtype="<u8").astype(np.int64)
    if offsets[0] != 0 or np.any(np.diff(offsets) <= 0):
        raise ValueError("its frame index is not increasing")
    return frames, height, width, offsets, _HEAD.size + len(raw)


def _write_jpegs(handle, video: np.ndarray, quality: int) -> None:
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
    frames = []
    for frame in video:  # RGB -> OpenCV's BGR
        ok, data = cv2.imencode(".jpg", np.ascontiguousarray(frame[..., ::-1]), params)
        if not ok:  # pragma: no cover - OpenCV encodes any uint8 image
            raise OSError("OpenCV could not encode a frame as JPEG")
        frames.append(data.tobytes())
    offsets = np.zeros(len(frames) + 1, dtype="<u8")
    offsets[1:] = np.cumsum([len(data) for data in frames])
    handle.write(_HEAD.pack(_MAGIC, len(frames), video.shape[1], video.shape[2]))
    handle.write(offsets.tobytes())
    for data in frames:
        handle.write(data)


def _decode_jpeg(data: bytes | memoryview, path: Path, index: int) -> np.ndarray:
    frame = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if frame is None:
        raise ValueError(f"cache entry {path}: frame {index} does not decode; rebuild it with `cache --verify`")
    return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)


def read_frames(
    path: str | os.PathLike, ids: Sequence[int] | np.ndarray, region: tuple[slice, slice] | None = None
) -> np.ndarray:
    """Frames ``ids`` (any order, repeats allowed) of a cache entry's data file, RGB uint8 (N, H, W, 3).

    A ``.npy`` entry is memory-mapped (only those frames' bytes are read); a ``.jpegs`` entry is read in one
    read from the first to the last frame asked for, and each distinct frame decoded once. ``region``: the
    ``(rows, cols)`` of a crop, applied as the frames are read.

    Raises:
        OSError: If the file cannot be read.
        ValueError: If it is not a cache entry, or ``ids`` are outside it.
    """
    path = Path(path)
    ids = np.asarray(ids, dtype=np.int64)
    rows, cols = region if region is not None else (slice(None), slice(None))
    if path.suffix != ".jpegs":
        return np.asarray(np.load(path, mmap_mode="r")[ids, rows, cols])  # reads only these frames
    with open(path, "rb") as handle:
        try:
            frames, _, _, offsets, start = _jpeg_index(handle)
        except ValueError as error:
            raise ValueError(f"cache entry {path}: {error}; rebuild it with `cache --verify`") from None
        if ids.size == 0 or ids.min() < 0 or ids.max() >= frames:
            raise ValueError(f"cache entry {path} has {frames} frames; frames {ids.min()}..{ids.max()} asked for")
        first, last = int(ids.min()), int(ids.max())
        handle.seek(start + int(offsets[first]))
        span = handle.read(int(offsets[last + 1] - offsets[first]))
    if len(span) != offsets[last + 1] - offsets[first]:
        raise ValueError(f"cache entry {path} is cut short; rebuild it with `cache --verify`")
    view = memoryview(span)
    base = int(offsets[first])
    decoded = {
        int(i): _decode_jpeg(view[int(offsets[i]) - base : int(offsets[i + 1]) - base], path, int(i))[rows, cols]
        for i in np.unique(ids)
    }
    return np.stack([decoded[int(i)] for i in ids])


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
    """Why the data file of an entry does not hold what its sidecar says (None: it does). Reads the header and the
    size; with ``verify``, the whole file against the sidecar's checksum (entries written before it have none)."""
    if not entry.array.is_file():
        return f"its {entry.array.suffix} file is missing"
    damage = _jpeg_damage(entry, meta) if entry.format == "jpeg" else _npy_damage(entry, meta)
    if damage is None and verify and meta.get("blake2b") and _checksum(entry.array) != meta["blake2b"]:
        return f"its {entry.array.suffix} file's bytes changed since it was written (checksum)"
    return damage


def _jpeg_damage(entry: CacheEntry, meta: dict) -> str | None:
    expected = (int(meta["frames"]), *(int(v) for v in meta["resize"]))
    try:
        with open(entry.array, "rb") as handle:
            frames, height, width, offsets, start = _jpeg_index(handle)
    except (OSError, ValueError) as error:
        return f"its .jpegs file does not read ({error})"
    if (frames, height, width) != expected:
        return f"its .jpegs file holds {frames} frames of {height} x {width}, the sidecar says {expected}"
    size = entry.array.stat().st_size
    if size != start + int(offsets[-1]):
        return f"its .jpegs file has {size} bytes, {start + int(offsets[-1])} expected"
    return None


def _npy_damage(entry: CacheEntry, meta: dict) -> str | None:
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
    format: str = "jpeg",
    quality: int = DEFAULT_JPEG_QUALITY,
    verify: bool = False,
) -> tuple[int, bool, str | None]:
    """Makes sure the cache holds a valid entry for one video.

    Args:
        source: The video file.
        relative: Its path inside the dataset root (names the entry).
        cache_dir: Root folder of the cache.
        resize: Frame size (H, W) to store.
        format: ``"jpeg"`` or ``"npy"`` (:data:`CACHE_FORMATS`).
        quality: JPEG quality of the ``"jpeg"`` format.
        verify: Also compare the whole data file with the sidecar's checksum.

    Returns:
        ``(frames, built, damage)``: the frame count (0 when the video cannot be decoded; its sidecar then
        records the error), whether it was decoded in this call, and why an existing entry was found damaged
        (None if it was not).

    Raises:
        OSError: If the source cannot be stat'ed or the cache cannot be written.
    """
    source = Path(source)
    entry = cache_entry(cache_dir, relative, resize, format, quality)
    key = _key(source, relative, resize, format, quality)
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
    if video is not None and format == "jpeg":
        _write_atomic(entry.array, lambda handle: _write_jpegs(handle, video, quality))
    elif video is not None:
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
    format: str = "jpeg",
    quality: int = DEFAULT_JPEG_QUALITY,
    shard: tuple[int, int] = (0, 1),
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
        format: ``"jpeg"`` (compact, default) or ``"npy"`` (raw, memory-mapped); see the module notes.
        quality: JPEG quality of the ``"jpeg"`` format (1-100).
        shard: ``(k, n)``: only every n-th video of the sorted list, from the k-th (0-based): n processes or nodes
            given k = 0 .. n-1 build the cache together, each video once. The summary covers the shard's videos.
        workers: Threads decoding in parallel (OpenCV releases the GIL while decoding and encoding). Default:
            the number of CPU cores, at most 8.
        progress: A progress bar on a terminal; elsewhere (a log file) a line every 500 videos and at the end.
        verify: Read every entry whole and compare it with its sidecar's checksum (damaged entries are decoded
            again either way: a damaged header or size is found without it).

    Returns:
        A :class:`CacheSummary`.

    Raises:
        FileNotFoundError: If ``root`` is not a folder.
        ValueError: If ``format``, ``quality`` or ``shard`` cannot be used, or two videos would share an ``npy``
            entry (their names differ only by extension).
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"video root {root} is not a folder; pass the folder that holds the class folders")
    check_format(format, quality)
    index, count = (int(v) for v in shard)
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"shard {index}/{count}: needs 0 <= k < n (k-th of n shards, from 0)")
    if videos is None:
        sources = sorted(p for p in root.rglob("*") if p.suffix.lower() in VIDEO_EXTENSIONS and p.is_file())
    else:
        sources = sorted(root / Path(video) for video in videos)  # an absolute path stays absolute
    if format == "npy":  # raw entries drop the video's extension: clip.avi and clip.mp4 would share one
        seen: dict[Path, Path] = {}
        for source in sources:
            array = cache_entry(cache_dir, source.relative_to(root), resize, format, quality).array
            if array in seen:
                raise ValueError(
                    f"{seen[array]} and {source} would share the raw cache entry {array} (the npy format names "
                    "entries without the video's extension); use the jpeg format, which keeps the whole name"
                )
            seen[array] = source
    sources = sources[index::count]
    workers = workers or min(8, os.cpu_count() or 1)
    summary = CacheSummary()

    def one(source: Path) -> tuple[Path, int, bool, str | None]:
        relative = source.relative_to(root)
        return (
            source,
            *build_cache_entry(source, relative, cache_dir, resize, format=format, quality=quality, verify=verify),
        )

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
                meta = cache_entry(cache_dir, source.relative_to(root), resize, format, quality).read() or {}
                summary.failed[str(source)] = meta.get("error") or "no decodable frame"
            if progress and bar.disable and (done % 500 == 0 or done == len(sources)):  # a log, not a terminal
                log.info("cache: %d / %d videos (%d decoded)", done, len(sources), summary.built)
    return summary
