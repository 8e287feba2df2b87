"""The frame cache's formats on real footage: size, build rate and clips per second of one worker, the compact
``jpeg`` format against the raw ``npy`` one (the reference: the cache before formats existed), in one run.

    .venv/bin/python benchmarks/bench_cache.py [--clips 300] [--quality 90]

Input: the public clips of ``../shared/footage/`` (required), cached at the training resolution (128 x 171). For
each format:

- bytes per frame, GB per hour of video at 25 frames/s, and the ratio to ``npy``;
- build rate: source frames decoded, resized and written per second (four threads);
- clips per second of one worker (one process, the training transform: random 16-frame window, 112 crop, flip,
  channel-first tensor), **warm** (the entry in the page cache) and **cold** (each entry dropped from the page cache
  before its clip is read, ``posix_fadvise(DONTNEED)``: what a cache larger than memory costs, on this machine's
  disk), and decoding the source video itself (no cache) for comparison;
- the JPEG error (PSNR of the cached frames against the decoded ones).

A training step consumes clips at a rate the same run measures (the standard C3D of the UCF-101 preset at 112 px,
batch 8, forward and backward, on the CPU): the number of workers a run needs is that rate over a worker's.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lightning_selrel.data.cache import build_cache, cache_entry, read_frames  # noqa: E402
from lightning_selrel.data.clips import UCF101Clips, Video  # noqa: E402
from lightning_selrel.data.frames import C3D_CROP, C3D_RESIZE, decode_video, probe_video  # noqa: E402
from lightning_selrel.models.classifier import VideoClassifier  # noqa: E402

FOOTAGE = Path(__file__).resolve().parents[2] / "shared" / "footage"
FORMATS = ("npy", "jpeg")


def drop_from_page_cache(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def clips_per_second(dataset: UCF101Clips, clips: int, cold: bool) -> float:
    random.seed(0)
    began = time.perf_counter()
    for item in range(clips):
        index = item % len(dataset.videos)
        if cold and dataset.videos[index].cache is not None:
            drop_from_page_cache(dataset.videos[index].cache)
        dataset[index]
    return clips / (time.perf_counter() - began)


def consumption(steps: int = 6) -> float:
    """Clips per second one CPU training step of the standard C3D (width 64, fc 4096: the UCF-101 preset's) at
    112 px consumes (batch 8)."""
    torch.manual_seed(0)
    model = VideoClassifier(num_classes=101, clip_shape=(16, C3D_CROP, C3D_CROP))
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    batch = torch.randint(0, 256, (8, 3, 16, C3D_CROP, C3D_CROP), dtype=torch.uint8)
    labels = torch.randint(0, 101, (8,))
    times = []
    for _ in range(steps):
        began = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(model(batch), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - began)
    return 8 / float(np.median(times[1:]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=300, help="clips read per measurement")
    parser.add_argument("--quality", type=int, default=90)
    args = parser.parse_args()
    sources = sorted(p for p in FOOTAGE.glob("*") if p.suffix in (".avi", ".mp4"))
    if not sources:
        raise SystemExit(f"no footage at {FOOTAGE}: this benchmark measures real video")
    frames = {p: probe_video(p) for p in sources}
    total = sum(frames.values())
    decoded = {p: decode_video(p, C3D_RESIZE) for p in sources}
    torch.set_num_threads(1)  # one worker
    rows = {}
    with tempfile.TemporaryDirectory() as work:
        cache = Path(work)
        for format in FORMATS:
            began = time.perf_counter()
            summary = build_cache(FOOTAGE, cache, C3D_RESIZE, sources, format=format, quality=args.quality, workers=4)
            build = time.perf_counter() - began
            entries = {p: cache_entry(cache, p.relative_to(FOOTAGE), C3D_RESIZE, format, args.quality) for p in sources}
            size = sum(entry.array.stat().st_size for entry in entries.values())
            errors = []
            for p, entry in entries.items():
                got = read_frames(entry.array, np.arange(summary.frames[str(p)])).astype(np.float64)
                errors.append(np.mean((got - decoded[p][: len(got)]) ** 2))
            mse = float(np.mean(errors))
            videos = [Video(path=p, label=0, frames=summary.frames[str(p)], cache=entries[p].array) for p in sources]
            dataset = UCF101Clips(videos, clip_len=16, resize=C3D_RESIZE, crop=C3D_CROP, train=True)
            rows[format] = {
                "bytes/frame": size / total,
                "GB/hour": size / total * 25 * 3600 / 1e9,
                "build frames/s": total / build,
                "warm": clips_per_second(dataset, args.clips, cold=False),
                "cold": clips_per_second(dataset, args.clips, cold=True),
                "psnr": float("inf") if mse == 0 else 10 * np.log10(255**2 / mse),
            }
        plain = UCF101Clips(
            [Video(path=p, label=0, frames=frames[p]) for p in sources],
            clip_len=16,
            resize=C3D_RESIZE,
            crop=C3D_CROP,
            train=True,
        )
        no_cache = clips_per_second(plain, max(30, args.clips // 10), cold=False)
    eats = consumption()

    print(f"footage: {len(sources)} clips, {total} frames, cached at {C3D_RESIZE[0]} x {C3D_RESIZE[1]}; one worker\n")
    print(
        "| format | bytes / frame | GB / hour of video (25 fps) | size vs npy | build, frames/s | clips/s warm "
        "| clips/s cold | cold vs npy | PSNR dB |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    ref = rows["npy"]
    for format in FORMATS:
        row = rows[format]
        name = f"`{format}`" + (f" (quality {args.quality})" if format == "jpeg" else "")
        smaller = ref["bytes/frame"] / row["bytes/frame"]
        print(
            f"| {name} | {row['bytes/frame']:,.0f} | {row['GB/hour']:.2f} | 1/{smaller:.1f} "
            f"| {row['build frames/s']:.0f} | {row['warm']:.0f} | {row['cold']:.0f} | {row['cold'] / ref['cold']:.2f}x "
            f"| {row['psnr']:.1f} |"
        )
    print(f"| no cache (decode the source) | - | - | - | - | {no_cache:.1f} | - | - | - |")
    print(
        f"\none CPU training step of the standard C3D (the UCF-101 preset's) at 112 px consumes {eats:.1f} clips/s; "
        f"jpeg warm / npy warm = {rows['jpeg']['warm'] / ref['warm']:.2f}x, "
        f"jpeg cold / npy cold = {rows['jpeg']['cold'] / ref['cold']:.2f}x"
    )


if __name__ == "__main__":
    main()
