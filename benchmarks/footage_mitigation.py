"""Mitigation on real footage: the default small C3D trained on ``../shared/footage/`` without and with each
static-bias mitigation, and what the monitor's behavioural views and spatial bias show.

The tree is ``footage_calibration.py``'s: each public clip one class (the classes *are* the scenes), its first two
thirds for training and its last third for validation, 48 x 48. There is no cue-conflict data here (the footage
has no second label), so the behavioural reading is the frozen-clip accuracy, the share of predictions unchanged
when frozen and the reliance. Every run has the same seed, data and budget.

    .venv/bin/python benchmarks/footage_mitigation.py --work /tmp/footage_mitigation   # about 10 minutes
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
import warnings
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import TensorBoardLogger

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from footage_calibration import FOOTAGE, SIZE, write_tree  # noqa: E402

from lightning_selrel import SelectiveRelevanceMonitor, StaticBiasMitigation, UCF101DataModule, VideoClassifier  # noqa: E402
from lightning_selrel.metrics import tags  # noqa: E402

METHODS = ("dtd", "guided_backprop", "guided_gradcam")
#: The default run's optimiser (configs/synthetic.yaml: Adam, lr 1e-3); the classifier's own fallback is SGD.
ADAM = functools.partial(torch.optim.Adam, lr=1e-3)
RUNS = {"none": None, "stillmix": {"method": "stillmix"}, "background_erasing": {"method": "background_erasing"}}


def fit(run: str, root: Path, annotations: Path, epochs: int, out: Path, seed: int, clips: int) -> dict[str, float]:
    pl.seed_everything(seed, verbose=False)
    data = UCF101DataModule(
        str(root),
        str(annotations),
        resize=SIZE,
        crop=48,
        batch_size=16,
        num_workers=0,
        clips_per_video=clips,
        seed=seed,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data.setup("fit")
    model = VideoClassifier(
        num_classes=data.num_classes,
        width=8,
        fc_dim=128,
        clip_shape=(16, 48, 48),
        dropout=0.2,
        class_names=data.class_names,
        optimizer=ADAM,
    )
    callbacks: list = [
        SelectiveRelevanceMonitor(methods=list(METHODS), num_clips=24, every_n_epochs=epochs, num_videos=1, seed=seed)
    ]
    if RUNS[run] is not None:
        callbacks.append(StaticBiasMitigation(**RUNS[run], seed=seed))
    trainer = pl.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        logger=TensorBoardLogger(out, name="footage", version=run),
        callbacks=callbacks,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        log_every_n_steps=4,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(model, data)
    return {k: float(v) for k, v in trainer.callback_metrics.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--footage", type=Path, default=FOOTAGE)
    parser.add_argument("--work", type=Path, default=Path("footage_mitigation"), help="tree and TensorBoard runs")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--clips-per-video", type=int, default=128, help="training windows per video and epoch")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if not args.footage.is_dir():
        print(f"footage folder {args.footage} not found (see ../shared/footage/README.md)", file=sys.stderr)
        return 2
    root, annotations = write_tree(args.footage, args.work / "tree")
    rows = []
    for run in RUNS:
        started = time.perf_counter()
        m = fit(run, root, annotations, args.epochs, args.work / "runs", args.seed, args.clips_per_video)
        print(f"{run}: {time.perf_counter() - started:.0f} s", flush=True)

        def get(tag: str, metrics: dict = m) -> str:
            return f"{metrics[tag]:.3f}" if tag in metrics else "-"

        behaviour = [get(tags.behaviour_tag(n)) for n in ("acc", "acc_frozen", "unchanged_frozen", "reliance")]
        bias = [get(tags.method_tag(method, "spatial_bias")) for method in METHODS]
        rows.append(f"| {run} | {get('val/acc')} | " + " | ".join(behaviour + bias) + " |")
    print(f"\n**Real footage** ({args.epochs} epochs, seed {args.seed}, 24 validation probe clips):\n")
    print(
        "| run | val/acc | probe acc | frozen acc | unchanged when frozen | reliance | "
        + " | ".join(f"spatial bias {m}" for m in METHODS)
        + " |"
    )
    print("|---|" + "---:|" * (5 + len(METHODS)))
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
