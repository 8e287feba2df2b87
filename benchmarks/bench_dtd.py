"""DTD against one input gradient on the same clip, batch 1: the cost of the graph walk and its rules.

Run ``.venv/bin/python benchmarks/bench_dtd.py``. Networks (random weights, eval mode):

- ``c3d``: the standard C3D (width 64, fc_dim 4096, 16 x 112 x 112 clips, 101 classes): compute-bound;
- ``c3d_small``: the default run's C3D (width 8, fc_dim 128, 16 x 48 x 48, 4 classes): here the per-node
  overhead of the walk is what DTD pays for;
- ``r2plus1d_18``: R(2+1)D-18 (width 64, 16 x 112 x 112, 101 classes), the residual walk.

The yardstick is forward + backward to the float input (``torch.autograd.grad``) for the predicted class. Calls
are interleaved (one DTD, one gradient, repeat) so that a change of machine load hits both alike; the median
ratio over the repeats is reported, and the median times. Target: DTD <= 1.6x one input gradient.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_explain import input_gradient  # noqa: E402  (the same yardstick as the paper's Table 4)

from lightning_selrel.models.classifier import VideoClassifier  # noqa: E402
from lightning_selrel.relevance.dtd import dtd  # noqa: E402

NETWORKS = {
    "c3d": {"arch": "c3d", "width": 64, "fc_dim": 4096, "clip_shape": [16, 112, 112], "num_classes": 101},
    "c3d_small": {"arch": "c3d", "width": 8, "fc_dim": 128, "clip_shape": [16, 48, 48], "num_classes": 4},
    "r2plus1d_18": {"arch": "r2plus1d_18", "width": 64, "clip_shape": [16, 112, 112], "num_classes": 101},
}


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure(name: str, repeats: int) -> dict[str, float]:
    torch.manual_seed(0)
    model = VideoClassifier(**NETWORKS[name]).eval()
    for p in model.parameters():
        p.requires_grad_(False)  # as the monitor explains: no weight gradients in either
    shape = NETWORKS[name]["clip_shape"]
    clips = torch.randint(0, 256, (1, 3, *shape), dtype=torch.uint8).float()
    run_dtd = lambda: dtd(model, clips, pixel_input=True)  # noqa: E731
    run_grad = lambda: input_gradient(model, clips)  # noqa: E731
    run_dtd(), run_grad()  # warm-up: the trace, allocator, threads
    dtd_s, grad_s = [], []
    for _ in range(repeats):
        dtd_s.append(timed(run_dtd))
        grad_s.append(timed(run_grad))
    ratios = [a / b for a, b in zip(dtd_s, grad_s, strict=True)]
    return {
        "dtd_ms": 1e3 * statistics.median(dtd_s),
        "grad_ms": 1e3 * statistics.median(grad_s),
        "ratio": statistics.median(ratios),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--networks", nargs="+", default=list(NETWORKS), choices=list(NETWORKS))
    parser.add_argument("--repeats", type=int, default=7, help="timed pairs per network (default 7)")
    args = parser.parse_args(argv)
    print(
        f"# DTD vs input gradient, batch 1, CPU ({platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} threads, torch {torch.__version__}), median of {args.repeats} interleaved pairs"
    )
    print("| network | DTD ms | input gradient ms | DTD / gradient |")
    print("|---|---:|---:|---:|")
    for name in args.networks:
        row = measure(name, args.repeats)
        print(f"| {name} | {row['dtd_ms']:.1f} | {row['grad_ms']:.1f} | {row['ratio']:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
