"""How wrong is the optical-flow motion mask? Flow-marked voxels against the exact moving voxels of the built-in
data, over flow thresholds: the measurement that picks the monitor's default ``flow_threshold``.

Run ``.venv/bin/python benchmarks/bench_flow_threshold.py [--clips 64] [--camera-speed 0 1]`` (about a minute).
For validation clips of the default built-in data (16 x 48 x 48, noise 4, one moving square; with
``--camera-speed`` also a panning camera), the flow magnitude of every clip is computed once per flow method and
thresholded at each value; against the exact mask it reports:

- ``pooled IoU``: over all clips together (the voxels both mark over the voxels either marks);
- ``IoU per clip``: the mean over clips of each clip's IoU, the number the monitor logs as
  ``selrel/probe/flow_iou`` (:func:`~lightning_selrel.metrics.functional.mask_iou`; clips where neither marks
  anything left out);
- ``marked``: the share of voxels flow marks, next to the exact share;
- ``precision``: the share of flow-marked voxels that truly move; ``recall``: the share of moving voxels marked.

Motion precision measured against flow inherits these errors: with a precision of 0.25, three quarters of what
flow calls motion is not.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lightning_selrel.data.synthetic import MotionContextDataModule  # noqa: E402
from lightning_selrel.metrics.flow import flow_magnitude_per_frame  # noqa: E402
from lightning_selrel.metrics.functional import mask_iou  # noqa: E402

THRESHOLDS = (0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0)


def measure(clips: int, camera_speed: float, methods: list[str], seed: int) -> dict[str, list[dict[str, float]]]:
    val = MotionContextDataModule(val_size=clips, camera_speed=camera_speed, seed=seed).val_set
    exact = torch.stack([torch.as_tensor(val[i][2]).bool() for i in range(clips)]).numpy()
    rows: dict[str, list[dict[str, float]]] = {}
    for method in methods:
        magnitude = np.stack(
            [flow_magnitude_per_frame(torch.as_tensor(val[i][0]), method=method) for i in range(clips)]
        )
        rows[method] = []
        for threshold in THRESHOLDS:
            marked = magnitude > threshold
            both, either = (marked & exact).sum(), (marked | exact).sum()
            rows[method].append(
                {
                    "threshold": threshold,
                    "iou": both / max(either, 1),
                    "iou_per_clip": float(mask_iou(torch.from_numpy(marked), torch.from_numpy(exact)).nanmean()),
                    "marked": marked.mean(),
                    "exact": exact.mean(),
                    "precision": both / max(marked.sum(), 1),
                    "recall": both / max(exact.sum(), 1),
                }
            )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=64)
    parser.add_argument("--camera-speed", type=float, nargs="+", default=[0.0, 1.0])
    parser.add_argument("--methods", nargs="+", default=["farneback", "dis"])
    parser.add_argument("--seed", type=int, default=0, help="seed of the built-in clips (default 0, the default run's)")
    args = parser.parse_args(argv)
    for speed in args.camera_speed:
        rows = measure(args.clips, speed, args.methods, args.seed)
        print(f"\ncamera speed {speed:g} px/frame, {args.clips} validation clips, seed {args.seed}\n")
        print("| flow | threshold px | pooled IoU | IoU per clip | marked | exact | precision | recall |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        for method, results in rows.items():
            best = max(results, key=lambda r: r["iou"])["threshold"]
            for r in results:
                mark = " (best)" if r["threshold"] == best else ""
                print(
                    f"| {method} | {r['threshold']:g}{mark} | {r['iou']:.3f} | {r['iou_per_clip']:.3f} | "
                    f"{r['marked']:.3f} | {r['exact']:.3f} | "
                    f"{r['precision']:.3f} | {r['recall']:.3f} |"
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
