"""Overhead of the spatial-bias monitor on the default run: whole-process wall time of
`python -m lightning_selrel fit` with the monitor (the default) and without it (`--trainer.callbacks=[]`),
measured in the same session, alternating, each in a fresh process and a fresh directory.

    python benchmarks/bench_monitor_overhead.py            # 1 pair (about 5 minutes on 2 CPU cores)
    python benchmarks/bench_monitor_overhead.py --repeats 2

Prints a Markdown table: seconds per run, val/acc reached, and the ratio with / without (target <= 1.15).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def run(extra: list[str]) -> tuple[float, float]:
    """Seconds for the whole process, and the last val/acc it logged."""
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "lightning_selrel", "fit", "--trainer.enable_progress_bar=false", *extra],
            cwd=tmp,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        seconds = time.perf_counter() - start
        (logdir,) = Path(tmp, "lightning_logs").iterdir()
        events = EventAccumulator(str(logdir))
        events.Reload()
        return seconds, events.Scalars("val/acc")[-1].value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=1, help="pairs of runs (alternating with/without)")
    args = parser.parse_args()
    times: dict[str, list[float]] = {"with monitor (default)": [], "without monitor": []}
    accs: dict[str, list[float]] = {k: [] for k in times}
    for _ in range(args.repeats):
        for label, extra in (("without monitor", ["--trainer.callbacks=[]"]), ("with monitor (default)", [])):
            seconds, acc = run(extra)
            times[label].append(seconds)
            accs[label].append(acc)
            print(f"{label}: {seconds:.1f} s, val/acc {acc:.3f}", file=sys.stderr)
    base = statistics.median(times["without monitor"])
    print("| default `fit` (whole process) | seconds | val/acc | ratio |")
    print("|---|---:|---:|---:|")
    for label in ("without monitor", "with monitor (default)"):
        t = statistics.median(times[label])
        print(f"| {label} | {t:.1f} | {statistics.median(accs[label]):.3f} | {t / base:.3f} |")


if __name__ == "__main__":
    main()
