"""Live selective explanations on CPU: windows/s and latency through the ``explain --source`` code path.

Run ``.venv/bin/python benchmarks/bench_stream.py`` (about 2.5 minutes here) or add ``--quick`` (small
model only, about 20 s). A synthetic 320 x 240 video (textured background, squares moving in
straight lines) is written at 25 fps and streamed at that rate through the live path: the reader
thread and ring buffer (:mod:`lightning_selrel.commands.stream`), :func:`lightning_selrel.commands.windows.run_live`
with flow metrics, rendering and an .mp4 writer, exactly as ``python -m lightning_selrel explain
--source FILE --out OUT.mp4`` runs. Models have random weights (speed does not depend on them):

- small: the default run's C3D (width 8, fc_dim 128, 16 x 48 x 48, 4 classes);
- C3D: the standard network (width 64, fc_dim 4096, 16 x 112 x 112, 101 classes).

Every ratio is measured in this run. ``windows/s / fps`` is the share of the source's frames that
became the newest frame of an explained window (1.0: every frame explained); the rest were dropped
so that latency stays bounded. ``queue lag`` is how far behind a queue that explained every window
would be at the end of the stream (windows x mean window time - stream length), the lag the ring
buffer avoids. On 2 CPU cores shared with other work, torch's default of 2 intra-op threads was
several times slower than 1 for the small model (its second thread mostly waits); ``explain
--threads N`` chooses.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lightning_selrel.commands.stream import Outputs, VideoSink, open_source  # noqa: E402
from lightning_selrel.commands.windows import WindowExplainer, run_live  # noqa: E402
from lightning_selrel.data.frames import FramePrep  # noqa: E402
from lightning_selrel.models.classifier import VideoClassifier  # noqa: E402

MODELS = {
    "small": dict(num_classes=4, width=8, fc_dim=128, clip_shape=(16, 48, 48)),
    "C3D": dict(num_classes=101, width=64, fc_dim=4096, clip_shape=(16, 112, 112)),
}
# (model, method, seconds of stream, torch threads or None for the default): streams long enough for
# several windows of the slow cases. The small model also runs on one thread (see the module docstring).
FULL = [
    ("small", "gradcam", 8, None),
    ("small", "gradcam", 8, 1),
    ("small", "dtd", 8, None),
    ("small", "dtd", 8, 1),
    ("C3D", "gradcam", 20, None),
    ("C3D", "dtd", 30, None),
]
QUICK = [("small", "gradcam", 4, None), ("small", "dtd", 4, None)]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small model only, 4 s streams")
    parser.add_argument("--fps", type=float, default=25.0, help="frame rate of the synthetic video")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads for every case")
    return parser.parse_args(argv)


def write_video(path: Path, seconds: float, fps: float, size: tuple[int, int] = (240, 320)) -> int:
    """A synthetic MJPG video of moving squares over a static grating; returns its frame count."""
    height, width = size
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:height, 0:width]
    grating = (60 + 40 * np.sin((xx + 0.5 * yy) / 9.0))[..., None] * np.array([0.6, 0.9, 1.0])
    background = np.clip(grating + rng.normal(0, 6, (height, width, 3)), 0, 255).astype(np.uint8)
    frames = int(seconds * fps)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (width, height))
    for t in range(frames):
        frame = background.copy()
        for k, (vx, vy) in enumerate(((3, 1), (-2, 2))):
            x, y = (40 + 80 * k + vx * t) % (width - 30), (60 + 50 * k + vy * t) % (height - 30)
            frame[y : y + 30, x : x + 30] = (230, 200 - 80 * k, 60 + 120 * k)
        writer.write(frame)
    writer.release()
    return frames


def run(model_name: str, method: str, seconds: float, fps: float, folder: Path, threads: int) -> dict:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = VideoClassifier(**MODELS[model_name]).eval()
    video = folder / f"stream_{seconds:g}s.avi"
    if not video.exists():
        write_video(video, seconds, fps)
    prep = FramePrep.for_checkpoint(model.clip_shape[1:], {})  # C3D's ratio 128/112, aspect kept
    explainer = WindowExplainer(model, [method])
    t, h, w = model.clip_shape
    explainer(np.zeros((t, h, w, 3), dtype=np.uint8), 0)  # warm-up: first-call costs are not streaming costs
    capture, source = open_source(video)
    outputs = Outputs(sink=VideoSink(folder / f"{model_name}_{method}.mp4", fps))
    try:
        body = run_live(explainer, capture, source, prep, pace_fps=fps, outputs=outputs)
    finally:
        outputs.close()
    summary, windows = body["summary"], body["windows"]
    latency = sorted(r["latency_ms"] for r in windows)
    window_s = statistics.mean(np.diff([r["time_s"] for r in windows])) if len(windows) > 2 else float("nan")
    needed = summary["frames_read"] - t + 1
    return {
        "model": model_name,
        "method": method,
        "threads": threads,
        "stream_s": summary["frames_read"] / fps,
        "windows": summary["windows"],
        "wps": summary["windows_per_s"],
        "ratio": summary["windows_per_source_frame"],
        "latency_mean": statistics.mean(latency),
        "latency_p95": latency[min(len(latency) - 1, int(0.95 * len(latency)))],
        "explain_ms": summary["methods"][method]["explain_ms"],
        "dropped": summary["frames_dropped_share"],
        "queue_lag": max(0.0, needed * window_s - summary["frames_read"] / fps),
    }


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    default_threads = torch.get_num_threads()
    cases = QUICK if args.quick else FULL
    started = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for model_name, method, seconds, threads in cases:
            threads = args.threads or threads or default_threads
            rows.append(run(model_name, method, seconds, args.fps, Path(folder), threads))
            print(f"  {model_name} {method} ({threads} threads): {rows[-1]['windows']} windows", file=sys.stderr)
    print(
        f"\nLive path on CPU ({platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}), "
        f"synthetic 320x240 video streamed at {args.fps:g} fps, Farneback flow metrics, .mp4 output; "
        f"{time.perf_counter() - started:.0f} s in all.\n"
    )
    print(
        "| model | method | threads | stream s | windows | windows/s | windows/s / fps | latency mean / p95 ms "
        "| explain ms | frames dropped | queue lag s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['model']} | {r['method']} | {r['threads']} | {r['stream_s']:.0f} | {r['windows']} | "
            f"{r['wps']:.2f} | {r['ratio']:.3f} | {r['latency_mean']:.0f} / {r['latency_p95']:.0f} | "
            f"{r['explain_ms']:.0f} | {100 * r['dropped']:.0f}% | {r['queue_lag']:.1f} |"
        )


if __name__ == "__main__":
    main()
