"""``python -m lightning_selrel cache``: build the frame cache (:mod:`lightning_selrel.data.cache`) outside training."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from lightning_selrel.data.cache import CACHE_FORMATS, DEFAULT_JPEG_QUALITY, build_cache, choose_format
from lightning_selrel.data.frames import C3D_RESIZE
from lightning_selrel.files import unwritable

__all__ = ["build_parser", "main"]


def build_parser(prog: str = "python -m lightning_selrel cache") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Decode every video under ROOT (.avi, .mp4, .mkv, .webm, .mov, .m4v) once into the "
        "frame cache used by UCF101DataModule / VideoListDataModule(cache_dir=...). Entries already "
        "valid are kept; interrupted builds resume. Several processes or nodes build one cache together with "
        "--shard K/N (K = 0 .. N-1), each video once.",
    )
    parser.add_argument(
        "--root", required=True, help="the dataset's root: UCF-101/, or the folder a list's paths start from"
    )
    parser.add_argument("--cache-dir", required=True, help="where to write the cache")
    parser.add_argument(
        "--resize", type=int, nargs=2, default=C3D_RESIZE, metavar=("H", "W"), help="frame size (default 128 171)"
    )
    parser.add_argument(
        "--format",
        choices=CACHE_FORMATS,
        default=None,
        help="jpeg: compact, 8-12x smaller (the default); npy: raw uint8, memory-mapped, fastest when the cache fits "
        "in memory. Default: jpeg, unless --cache-dir already holds a raw cache of these frames and no JPEG one",
    )
    parser.add_argument(
        "--quality", type=int, default=DEFAULT_JPEG_QUALITY, help="JPEG quality, 1-100 (default %(default)s)"
    )
    parser.add_argument(
        "--shard",
        default="0/1",
        metavar="K/N",
        help="build only every N-th video of the sorted list, from the K-th (0-based): run K = 0 .. N-1 on N "
        "processes or nodes (a job array: --shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT); default 0/1, all",
    )
    parser.add_argument("--workers", type=int, default=None, help="decoding threads (default: cores, at most 8)")
    parser.add_argument(
        "--verify",
        action="store_true",
        help="read every cached entry whole and compare it with the checksum its sidecar keeps; decode damaged "
        "ones again (a damaged header or size is found and repaired without it)",
    )
    return parser


def _check(args: argparse.Namespace) -> str | None:
    """What is wrong with the options, in one line (naming the value and the fix), or None."""
    root, cache = Path(args.root).expanduser(), Path(args.cache_dir).expanduser()
    if not root.is_dir():
        return (
            f"--root {args.root}: {'is a file, not' if root.exists() else 'no such'} folder; pass the UCF-101/ folder"
        )
    if _shard(args.shard) is None:
        return f"--shard {args.shard}: expected K/N with 0 <= K < N (the K-th of N shards, from 0), e.g. 0/4"
    if not 1 <= args.quality <= 100:
        return f"--quality {args.quality}: must be from 1 to 100 (default {DEFAULT_JPEG_QUALITY})"
    if args.workers is not None and args.workers < 1:
        return f"--workers {args.workers}: must be at least 1 (leave it out for the default: cores, at most 8)"
    if min(args.resize) < 1:
        return f"--resize {args.resize[0]} {args.resize[1]}: H and W must be positive (default 128 171)"
    if cache.exists() and not cache.is_dir():
        return f"--cache-dir {args.cache_dir} is a file, not a folder; pass a folder for the cache"
    existing = next((p for p in (cache, *cache.parents) if p.exists()), None)
    reason = unwritable(existing) if existing is not None else None  # by writing, not os.access (root)
    if reason is not None:
        return f"--cache-dir {args.cache_dir} cannot be written ({existing}: {reason}); pass another folder"
    return None


def _shard(text: str) -> tuple[int, int] | None:
    """``(k, n)`` of ``K/N``, or None when it is not one."""
    parts = text.split("/")
    if len(parts) != 2 or not all(part.strip().isdigit() for part in parts):
        return None
    index, count = int(parts[0]), int(parts[1])
    return (index, count) if 0 <= index < count else None


def main(argv: Sequence[str] | None = None, prog: str = "python -m lightning_selrel cache") -> int:
    """``python -m lightning_selrel cache --root DIR --cache-dir DIR``: decode every video once (exit 2: bad
    options, in one line)."""
    args = build_parser(prog).parse_args(argv)
    problem = _check(args)
    if problem is not None:
        print(f"cache: error: {problem}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    format = args.format or choose_format(args.cache_dir, args.resize, args.quality)
    if args.format is None and format == "npy":
        print(
            f"{args.cache_dir} holds a raw (npy) cache of these frames: completing it (--format jpeg: the compact one)"
        )
    shard = _shard(args.shard)
    try:
        summary = build_cache(
            args.root,
            args.cache_dir,
            args.resize,
            format=format,
            quality=args.quality,
            shard=shard,
            workers=args.workers,
            progress=True,
            verify=args.verify,
        )
    except ValueError as error:  # found before anything is written (two videos sharing a raw entry)
        print(f"cache: error: {error}", file=sys.stderr)
        return 2
    where = f" (shard {shard[0]}/{shard[1]})" if shard[1] > 1 else ""
    print(
        f"{format} cache{where}: {summary.built} videos decoded ({len(summary.damaged)} of them damaged in the "
        f"cache), {summary.reused} already cached{' and verified' if args.verify else ''}, "
        f"{len(summary.failed)} unreadable"
    )
    for path, reason in sorted(summary.failed.items()):
        print(f"  unreadable: {path}: {reason}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(prog="python -m lightning_selrel.commands.cache"))
