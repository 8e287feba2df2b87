"""Clips per second from .avi decoding vs the frame cache (both formats), and what C3D consumes.

Writes a small UCF-101-shaped tree of synthetic XVID videos (UCF-101's own codec, 320 x 240), then,
in one process and on the same videos with the same training transforms (random 16-frame window,
random 112 crop of 128 x 171 frames, flip):

1. clips/s decoding the .avi files (``UCF101DataModule(cache_dir=None)``),
2. clips/s reading the cache (``cache_dir`` set), after building it once, in each format (``cache_format``:
   ``npy``, memory-mapped, and ``jpeg``, the compact default; the entries in the page cache, as on a machine whose
   memory holds the cache; ``benchmarks/bench_cache.py`` also reads them cold, on real footage),
3. clips/s the standard C3D (width 64, fc 4096) consumes in training on this machine: SGD steps,
   forward and backward, at batch 8 of 16 x 112 x 112 clips.

Run: ``python benchmarks/bench_ucf101_cache.py`` (about two minutes on 2 CPU cores; ``--help`` for sizes).
Prints a Markdown table. Rates are per data-loading process; ``num_workers`` processes multiply them.
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

import cv2
import numpy as np
import torch

from lightning_selrel.data.ucf101.datamodule import UCF101DataModule
from lightning_selrel.models.c3d import C3D


def write_tree(base: Path, videos: int, frames: int, size: tuple[int, int], classes: int = 4) -> Path:
    """A UCF-101-shaped tree: ``classes`` folders of XVID videos with a moving texture, and split files."""
    root, annotations = base / "UCF-101", base / "ucfTrainTestlist"
    annotations.mkdir(parents=True)
    rng = np.random.default_rng(0)
    height, width = size
    names = [f"Class{c}" for c in range(classes)]
    train = []
    for index in range(videos):
        label = index % classes
        folder = root / names[label]
        folder.mkdir(parents=True, exist_ok=True)
        file_name = f"v_{names[label]}_g{index:02d}_c01.avi"
        # A smooth texture (blurred noise) that slides sideways: compresses like camera footage.
        texture = cv2.GaussianBlur(rng.integers(0, 256, (height, width + frames * 2, 3), dtype=np.uint8), (9, 9), 3)
        writer = cv2.VideoWriter(str(folder / file_name), cv2.VideoWriter_fourcc(*"XVID"), 25, (width, height))
        if not writer.isOpened():
            raise RuntimeError("OpenCV cannot write XVID here")
        for t in range(frames):
            writer.write(np.ascontiguousarray(texture[:, 2 * t : 2 * t + width]))
        writer.release()
        train.append(f"{names[label]}/{file_name} {label + 1}")
    (annotations / "classInd.txt").write_text("".join(f"{i + 1} {n}\n" for i, n in enumerate(names)))
    (annotations / "trainlist01.txt").write_text("\n".join(train) + "\n")
    (annotations / "testlist01.txt").write_text("\n".join(line.split()[0] for line in train[:classes]) + "\n")
    return root


def clips_per_second(dataset, clips: int) -> float:
    random.seed(0)  # the same windows, crops and flips for every source
    dataset[0]  # warm-up: imports, first file open
    start = time.perf_counter()
    for index in range(clips):
        clip, _ = dataset[index % len(dataset)]
    elapsed = time.perf_counter() - start
    assert clip.shape == (3, 16, 112, 112) and clip.dtype == torch.uint8
    return clips / elapsed


def c3d_training_clips_per_second(batch: int, steps: int) -> float:
    torch.manual_seed(0)
    net = C3D(num_classes=101)
    optimizer = torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.9)

    def step(size: int) -> None:
        clips = torch.randn(size, 3, 16, 112, 112)  # (B, 3, T, H, W)
        optimizer.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(net(clips), torch.randint(0, 101, (size,))).backward()
        optimizer.step()

    step(1)  # warm-up at batch 1: first-call costs without a full step (tens of seconds on a CPU)
    start = time.perf_counter()
    for _ in range(steps):
        step(batch)
    return batch * steps / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", type=int, default=20)
    parser.add_argument("--frames", type=int, default=120, help="frames per video")
    parser.add_argument("--size", type=int, nargs=2, default=(240, 320), metavar=("H", "W"))
    parser.add_argument("--clips", type=int, default=200, help="clips timed per source")
    parser.add_argument("--batch", type=int, default=8, help="C3D training batch")
    parser.add_argument("--steps", type=int, default=1, help="C3D training steps timed")
    parser.add_argument("--workdir", type=Path, default=None, help="where to write videos (default: a temp dir)")
    args = parser.parse_args(argv)

    base = Path(tempfile.mkdtemp(dir=args.workdir))
    try:
        root = write_tree(base, args.videos, args.frames, tuple(args.size))
        common = dict(batch_size=args.batch, num_workers=0, seed=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            direct = UCF101DataModule(str(root), **common)
            direct.setup("fit")
            build_s, cache_mb, rates = {}, {}, {}
            for format, suffix in (("npy", ".npy"), ("jpeg", ".jpegs")):
                cached = UCF101DataModule(str(root), cache_dir=str(base / "cache"), cache_format=format, **common)
                start = time.perf_counter()
                cached.prepare_data()
                build_s[format] = time.perf_counter() - start
                cached.setup("fit")
                cache_mb[format] = sum(p.stat().st_size for p in (base / "cache").rglob(f"*{suffix}")) / 2**20
                rates[format] = clips_per_second(cached.train_dataloader().dataset, args.clips)
        avi = clips_per_second(direct.train_dataloader().dataset, args.clips)
        mmap = rates["npy"]
        c3d = c3d_training_clips_per_second(args.batch, args.steps)
    finally:
        shutil.rmtree(base, ignore_errors=True)

    print(
        f"\n{args.videos} XVID videos of {args.frames} frames at {args.size[0]}x{args.size[1]}; train transforms "
        f"(16 x 112 x 112 from 128 x 171); one process; torch {torch.__version__}, OpenCV {cv2.__version__}, "
        f"{torch.get_num_threads()} torch threads\n"
    )
    print("| source | clips/s | ms / clip | vs .avi |")
    print("|---|---:|---:|---:|")
    print(f"| .avi, decoded per clip | {avi:.1f} | {1000 / avi:.2f} | 1.0x |")
    print(f"| cache, memory-mapped .npy | {mmap:.1f} | {1000 / mmap:.2f} | {mmap / avi:.1f}x |")
    jpeg = rates["jpeg"]
    print(f"| cache, JPEG frames (.jpegs, the default) | {jpeg:.1f} | {1000 / jpeg:.2f} | {jpeg / avi:.1f}x |")
    print(f"| C3D training consumes (batch {args.batch}, fwd + bwd, CPU) | {c3d:.2f} | {1000 / c3d:.0f} | - |")
    for format in ("npy", "jpeg"):
        print(
            f"\n{format} cache: built in {build_s[format]:.1f} s ({args.videos / build_s[format]:.1f} videos/s), "
            f"{cache_mb[format]:.1f} MiB on disk. Cache / .avi: {rates[format] / avi:.1f}x; cache / C3D training: "
            f"{rates[format] / c3d:.0f}x."
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
