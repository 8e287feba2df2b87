"""Decoding a clip: seeking to the window (``decode_window``, the default) against decoding from the first frame
(``seek=False``, the reference), on the same files, in one run.

    .venv/bin/python benchmarks/bench_decode.py [--seconds 60] [--repeats 5]

For each file (generated 128 x 171 videos of ``--seconds`` at 25 fps in MPEG-4 and MJPG, and the public clips of
``../shared/footage/`` where present): milliseconds per 16-frame clip at the start, the middle and the end, both
ways, and their ratio; then clips per second of one worker decoding windows at random positions, against the clips
per second one training step of the default small C3D consumes on this machine (16 x 112 x 112 clips, batch 8,
forward and backward), so that the number of workers a GPU-less run needs reads directly.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lightning_selrel.data.frames import C3D_RESIZE, decode_window  # noqa: E402
from lightning_selrel.models.classifier import VideoClassifier  # noqa: E402

FOOTAGE = Path(__file__).resolve().parents[2] / "shared" / "footage"


def generated(folder: Path, codec: str, suffix: str, seconds: int) -> Path:
    path = folder / f"generated_{codec}{suffix}"
    rng = np.random.default_rng(0)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*codec), 25, (C3D_RESIZE[1], C3D_RESIZE[0]))
    for t in range(25 * seconds):
        frame = rng.integers(30, 70, (*C3D_RESIZE, 3), dtype=np.uint8)
        x = (3 * t) % (C3D_RESIZE[1] - 24)
        frame[50:74, x : x + 24] = (200, (5 * t) % 256, 90)
        writer.write(frame)
    writer.release()
    return path


def frames_of(path: Path) -> int:
    capture = cv2.VideoCapture(str(path))
    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    capture.release()
    return count


def ms_per_clip(path: Path, start: int, seek: bool, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        decode_window(path, start, 16, C3D_RESIZE, seek=seek)
        times.append(time.perf_counter() - began)
    return 1000 * float(np.median(times))


def training_clips_per_second(repeats: int) -> float:
    torch.manual_seed(0)
    model = VideoClassifier(num_classes=101, width=8, fc_dim=128, clip_shape=(16, 112, 112))
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    clips = torch.randint(0, 256, (8, 3, 16, 112, 112), dtype=torch.uint8)
    labels = torch.randint(0, 101, (8,))
    times = []
    for step in range(repeats + 1):
        began = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(model(clips), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step:  # the first step warms up
            times.append(time.perf_counter() - began)
    return 8 / float(np.median(times))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=60, help="length of the generated videos")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        files = [
            generated(Path(folder), "mp4v", ".mp4", args.seconds),
            generated(Path(folder), "MJPG", ".avi", args.seconds),
        ]
        if FOOTAGE.is_dir():
            files += sorted(p for p in FOOTAGE.iterdir() if p.suffix in (".mp4", ".avi"))
        print("| file | frames | where | seeking, ms/clip | from the first frame, ms/clip | ratio |")
        print("|---|---:|---|---:|---:|---:|")
        random_rates = []
        for path in files:
            total = frames_of(path)
            for where, start in (("start", 0), ("middle", total // 2 - 8), ("end", total - 16)):
                fast = ms_per_clip(path, start, True, args.repeats)
                slow = ms_per_clip(path, start, False, args.repeats)
                print(f"| {path.name} | {total} | {where} | {fast:.1f} | {slow:.1f} | {slow / fast:.1f}x |")
            starts = np.random.default_rng(0).integers(0, total - 16, 3 * args.repeats)
            began = time.perf_counter()
            for start in starts:
                decode_window(path, int(start), 16, C3D_RESIZE)
            random_rates.append((path.name, len(starts) / (time.perf_counter() - began)))
        consumed = training_clips_per_second(args.repeats)
        print("\n| file | clips/s, one worker, random windows | workers to feed one CPU training process |")
        print("|---|---:|---:|")
        for name, rate in random_rates:
            print(f"| {name} | {rate:.0f} | {consumed / rate:.2f} |")
        print(
            f"\nOne training step of the small C3D (batch 8, 16 x 112 x 112, forward + backward) on this machine "
            f"consumes {consumed:.1f} clips/s."
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
