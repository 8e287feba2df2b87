"""Cost of each baseline explanation and of the selective step (the paper's Table 4), per clip.

Run ``.venv/bin/python benchmarks/bench_explain.py`` (the standard C3D: width 64, fc_dim 4096, and the
standard R(2+1)D-18: width 64; 16 x 112 x 112 clips, 101 classes, random weights; batches 1 and 8) or add
``--quick`` for small variants that run in about a minute (checks the script; on a small model per-op overhead
dominates, so its ratios say nothing about the standard networks). ``--archs c3d`` times C3D alone.

The yardstick is one input gradient on the same clips: forward + backward to the input
(``torch.autograd.grad``), eval mode. Every ratio is measured in this run: method / input
gradient, and selective step / GradCAM. Measurements are interleaved (one repeat of every method,
then the next repeat) so that a change in machine load hits all methods alike; the median of the
repeats is reported. Targets: DTD <= 2x one input gradient; selective step <= 1% of GradCAM and
< 0.5 ms per clip on CPU.

The run fits its repeats into ``--budget`` seconds (default 300): each batch size gets an equal
share of what is left and repeats rounds (up to 5, at least 1) while the next one fits. Only the
first batch size gets a warm-up round; it warms the code paths for the larger ones, whose single
round may fill their share (on 2 busy CPU cores a batch-8 round of the standard C3D takes ~2 min).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lightning_selrel.models.classifier import VideoClassifier  # noqa: E402
from lightning_selrel.relevance.methods import explain  # noqa: E402
from lightning_selrel.relevance.selective import selective_relevance  # noqa: E402

METHODS = ("dtd", "gradcam", "gradcam_t", "guided_backprop", "guided_gradcam")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--quick", action="store_true", help="small C3D (width 8, fc_dim 256, 16x56x56), batches 1 and 2"
    )
    parser.add_argument("--batches", type=int, nargs="+", default=None, help="batch sizes (default: 1 8)")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats per cell (default: from --budget)")
    parser.add_argument(
        "--budget", type=float, default=None, help="seconds the run may take (default 300; 20 with --quick)"
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--archs", nargs="+", default=["c3d", "r2plus1d_18"], help="networks (default: c3d r2plus1d_18)"
    )
    return parser.parse_args(argv)


def timed(fn: Callable[[], object], device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def input_gradient(model: VideoClassifier, clips: torch.Tensor) -> torch.Tensor:
    """The yardstick: forward + backward to the float pixel clip, for the predicted class."""
    with torch.enable_grad():
        x = clips.float().requires_grad_()
        logits = model(x)  # (B, num_classes)
        score = logits.gather(1, logits.argmax(1, keepdim=True)).sum()
        (grad,) = torch.autograd.grad(score, x)
    return grad


def scipy_selective(relevance: np.ndarray, n_std: float = 4.0, floor: float = 1e-3) -> np.ndarray:
    """The selective step written plainly with SciPy, clip by clip: the reference for our torch version
    (the paper's rule, and the floor relative to the Sobel stencil applied to |R|)."""
    out = np.empty_like(relevance)
    for i, clip in enumerate(relevance):
        edges = np.abs(ndimage.sobel(clip, axis=0, mode="nearest"))
        magnitude = ndimage.correlate1d(np.abs(clip), [1.0, 0.0, 1.0], axis=0, mode="nearest")
        for axis in (1, 2):
            magnitude = ndimage.correlate1d(magnitude, [1.0, 2.0, 1.0], axis=axis, mode="nearest")
        out[i] = clip * ((edges > n_std * edges.std()) & (edges > floor * magnitude))
    return out


def bench_batch(
    model: VideoClassifier, batch: int, shape: tuple[int, int, int], args, device, budget: float, warm_up: bool
) -> dict:
    """Times every cell at one batch size: interleaved rounds while the next round fits ``budget``."""
    started = time.perf_counter()
    g = torch.Generator().manual_seed(batch)
    clips = torch.randint(0, 256, (batch, 3, *shape), generator=g, dtype=torch.uint8).to(device)
    cells: dict[str, Callable[[], object]] = {"input gradient": lambda: input_gradient(model, clips)}
    for method in METHODS:
        cells[method] = lambda method=method: explain(model, clips, method)

    if warm_up:
        for fn in cells.values():
            timed(fn, device)
    times: dict[str, list[float]] = {name: [] for name in cells}
    max_rounds = args.repeats or 5
    for _ in range(max_rounds):  # one round of every cell, then the next round
        round_start = time.perf_counter()
        for name, fn in cells.items():
            times[name].append(timed(fn, device))
        last = time.perf_counter() - round_start
        if not args.repeats and time.perf_counter() - started + last > budget:
            break

    relevance = explain(model, clips, "gradcam")  # (B, T, H, W)
    select = lambda: selective_relevance(relevance, n_std=4.0)  # noqa: E731
    for _ in range(3):
        select()
    sel_times = [timed(select, device) for _ in range(50)]
    result = {name: statistics.median(ts) / batch for name, ts in times.items()}
    result["selective"] = statistics.median(sel_times) / batch
    select_mad = lambda: selective_relevance(relevance, n_std=4.0, threshold="mad")  # noqa: E731
    select_mad()
    result["selective, mad"] = statistics.median(timed(select_mad, device) for _ in range(50)) / batch
    if device.type == "cpu":  # small element-wise work: OpenMP's barriers cost more than they save
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            select()
            result["selective, 1 thread"] = statistics.median(timed(select, device) for _ in range(50)) / batch
        finally:
            torch.set_num_threads(threads)
        reference = relevance.numpy()
        # float32 rounding differs between the two, so a voxel exactly at the threshold may flip
        result["_differ"] = float(np.mean(scipy_selective(reference) != select().numpy()))
        reference_times = [timed(lambda: scipy_selective(reference), device) for _ in range(20)]
        result["scipy"] = statistics.median(reference_times) / batch
    result["_repeats"] = len(times["dtd"])
    result["_warm_up"] = warm_up
    result["_round"] = sum(statistics.median(ts) for ts in times.values())
    return result


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    device = torch.device(args.device)
    batches = args.batches or ([1, 2] if args.quick else [1, 8])
    if args.budget is None:
        args.budget = (20.0 if args.quick else 300.0) * len(args.archs)
    print(
        f"device {device}, torch {torch.__version__}, threads {torch.get_num_threads()}, "
        f"{platform.processor() or platform.machine()}, load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    start = time.perf_counter()
    for k, arch in enumerate(args.archs):
        if args.quick:
            config = dict(num_classes=101, width=8, fc_dim=256, clip_shape=(16, 56, 56), arch=arch)
        else:
            config = dict(num_classes=101, width=64, fc_dim=4096, clip_shape=(16, 112, 112), arch=arch)
        torch.manual_seed(0)
        model = VideoClassifier(**config).to(device).eval()
        size = sum(p.numel() for p in model.parameters()) / 1e6
        shape = tuple(config["clip_shape"])
        print(f"\n{arch}: {config}, {size:.1f} M parameters", flush=True)
        results: dict[int, dict] = {}
        arch_budget = (args.budget - (time.perf_counter() - start)) / (len(args.archs) - k)
        arch_start = time.perf_counter()
        for i, batch in enumerate(batches):
            # An equal share of what is left; only the first batch size gets a warm-up round (it warms
            # the code paths for the others, whose single round may already fill their share).
            share = (arch_budget - (time.perf_counter() - arch_start)) / (len(batches) - i)
            results[batch] = r = bench_batch(model, batch, shape, args, device, share, warm_up=i == 0)
            print(
                f"batch {batch}: {'warm-up round + ' if r['_warm_up'] else ''}{r['_repeats']} timed "
                f"round(s) of {r['_round']:.1f} s",
                flush=True,
            )
        report(arch, results, batches, selective=k == 0)
    print(f"\ntotal {time.perf_counter() - start:.0f} s")


def report(arch: str, results: dict[int, dict], batches: list[int], selective: bool) -> None:
    """The Markdown table of one network, its selective-step rows (the map is the same for every network) and the
    verdicts on the targets."""
    print()
    header = f"| {arch}, per clip |" + "".join(f" batch {b}: ms | ratio |" for b in batches)
    print(header)
    print("|---|" + "---:|---:|" * len(batches))
    for name in ("input gradient", *METHODS):
        row = f"| {name} |"
        for b in batches:
            r = results[b]
            row += f" {1e3 * r[name]:.1f} | {r[name] / r['input gradient']:.2f}x grad |"
        print(row)
    if selective:
        for name, label in (
            ("selective", "selective step (n=4)"),
            ("selective, 1 thread", "selective step, 1 thread"),
            ("selective, mad", "selective step, `mad` rule"),
        ):
            if name not in results[batches[0]]:
                continue
            row = f"| {label} |"
            for b in batches:
                r = results[b]
                row += f" {1e3 * r[name]:.3f} | {100 * r[name] / r['gradcam']:.3f}% of gradcam |"
            print(row)
        if "scipy" in results[batches[0]]:
            row = "| selective step, SciPy reference (`ndimage.sobel`) |"
            for b in batches:
                r = results[b]
                row += f" {1e3 * r['scipy']:.3f} | ours {r['scipy'] / r['selective']:.1f}x faster |"
            print(row)
            print(
                "(share of voxels where ours and SciPy's selective maps differ: "
                + ", ".join(f"batch {b}: {results[b]['_differ']:.1e}" for b in batches)
                + ")"
            )
    print("\nTargets:")
    verdict = lambda ok: "met" if ok else "MISSED"  # noqa: E731
    for b in batches:
        r = results[b]
        line = f"- {arch}, batch {b}: DTD {r['dtd'] / r['input gradient']:.2f}x input gradient (target <= 2x: "
        line += f"{verdict(r['dtd'] <= 2 * r['input gradient'])})"
        if selective:
            one_thread = r.get("selective, 1 thread")
            line += (
                f"; selective step {100 * r['selective'] / r['gradcam']:.3f}% of GradCAM (target <= 1%: "
                f"{verdict(r['selective'] <= 0.01 * r['gradcam'])}) and {1e3 * r['selective']:.3f} ms/clip "
                f"(target < 0.5 ms: {verdict(r['selective'] < 5e-4)})"
            )
            if one_thread:
                line += f"; 1 thread {1e3 * one_thread:.3f} ms/clip ({verdict(one_thread < 5e-4)})"
        print(line)


if __name__ == "__main__":
    main()
