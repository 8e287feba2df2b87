"""``python -m lightning_selrel cache``: build the frame cache (:mod:`lightning_selrel.data.cache`) outside training."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

from lightning_selrel.data.cache import build_cache
from lightning_selrel.data.frames import C3D_RESIZE

__all__ = ["build_parser", "main"]


def build_parser(prog: str = "python -m lightning_selrel cache") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Decode every .avi under ROOT once into the memory-mapped frame cache used by "
        "UCF101DataModule(cache_dir=...). Entries already valid are kept; interrupted builds resume.",
    )
    parser.add_argument("--root", required=True, help="the UCF-101/ folder of class folders")
    parser.add_argument("--cache-dir", required=True, help="where to write the cache")
    parser.add_argument(
        "--resize", type=int, nargs=2, default=C3D_RESIZE, metavar=("H", "W"), help="frame size (default 128 171)"
    )
    parser.add_argument("--workers", type=int, default=None, help="decoding threads (default: cores, at most 8)")
    return parser


def main(argv: Sequence[str] | None = None, prog: str = "python -m lightning_selrel cache") -> int:
    """``python -m lightning_selrel cache --root DIR --cache-dir DIR``: decode every video once."""
    args = build_parser(prog).parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    summary = build_cache(args.root, args.cache_dir, args.resize, workers=args.workers, progress=True)
    print(f"{summary.built} videos decoded, {summary.reused} already cached, {len(summary.failed)} unreadable")
    for path, reason in sorted(summary.failed.items()):
        print(f"  unreadable: {path}: {reason}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(prog="python -m lightning_selrel.commands.cache"))
