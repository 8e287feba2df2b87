"""Does static-bias mitigation make the model use motion, and does the monitor show it? Side by side in one run.

For each camera (still, and panning at 1.5 px/frame) it trains the default model (small C3D, seed 0, the default
budget of 3 epochs on 1024 clips of the built-in ``cue: both`` data, where class lives in motion and in context
alike) without mitigation and with each mitigation of :mod:`lightning_selrel.mitigation` (same seed, data and
budget), plus the two probe models as the ends of the scale (``cue: motion``, ``cue: context``), each with the
spatial-bias monitor at the last epoch (32 probe clips, 256 cue-conflict clips). It reports per run:

- ``conflict``: the share of predictions on cue-conflict clips that follow the motion (of those that follow a
  cue; 1 = motion, 0 = context), and ``p(motion)``, the motion class's share of the two cues' probability;
- ``frozen``: accuracy on the probe clips frozen to one frame (1 = decides without motion); ``reliance``: the
  probability lost when frozen;
- spatial bias per method (DTD, Guided Backprop, Guided GradCAM; ``std``, n = 4);
- ``val/acc`` on the ``cue: both`` validation set (the probe models on their own cue's);

then, per camera, Spearman's rank correlation over the runs between each method's spatial bias and the conflict
motion share (-1: spatial bias ranks the models exactly as behaviour does). A second table gives the cost of
each mitigation as a share of a training step, timed in the same run on the same batches.

    .venv/bin/python benchmarks/bench_mitigation.py --out /tmp/mitigation   # about 25 minutes on 2 CPU cores
    .venv/bin/python benchmarks/bench_mitigation.py --cameras 0 --runs none stillmix --epochs 8
    .venv/bin/python benchmarks/bench_mitigation.py --calibration calibration/calibration.json   # also calibrated
    tensorboard --logdir /tmp/mitigation    # the runs side by side: Scalars, HParams (mitigation column)

``--out`` receives one TensorBoard run per camera and run (``cam0/stillmix``, ...) and ``results.json``.
"""

from __future__ import annotations

import argparse
import functools
import json
import time
import warnings
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import TensorBoardLogger

from lightning_selrel import MotionContextDataModule, SelectiveRelevanceMonitor, StaticBiasMitigation, VideoClassifier
from lightning_selrel.metrics import tags
from lightning_selrel.metrics.functional import rank_correlation

METHODS = ("dtd", "guided_backprop", "guided_gradcam")
#: ``--optimizer``: ``adam``, the default run's (configs/synthetic.yaml: Adam, lr 1e-3), or ``sgd``, the classifier's
#: own fallback when it is built in Python without one (SGD, lr 1e-3, momentum 0.9).
OPTIMIZERS = {
    "adam": functools.partial(torch.optim.Adam, lr=1e-3),
    "sgd": functools.partial(torch.optim.SGD, lr=1e-3, momentum=0.9),
}
RUNS = ("context", "none", "background_erasing", "stillmix", "stillmix_batch", "stillmix_all", "motion")
DEFAULT_RUNS = ("context", "none", "background_erasing", "stillmix", "stillmix_batch", "motion")
#: Run name -> (the data's cue, the mitigation callback's options or None).
SETUPS = {
    "none": ("both", None),
    "background_erasing": ("both", {"method": "background_erasing"}),
    "stillmix": ("both", {"method": "stillmix"}),
    "stillmix_batch": ("both", {"method": "stillmix", "bank_size": 0}),  # frames of the batch, no bank
    "stillmix_all": ("both", {"method": "stillmix", "p": 1.0}),  # every clip mixed, not the paper's half
    "motion": ("motion", None),
    "context": ("context", None),
}


def fit(
    run: str, camera: float, epochs: int, out: Path, seed: int, calibration: str | None = None, optimizer: str = "adam"
) -> dict:
    cue, mitigation = SETUPS[run]
    pl.seed_everything(seed, verbose=False)
    data = MotionContextDataModule(cue=cue, camera_speed=camera, seed=seed)
    model = VideoClassifier(
        num_classes=4,
        width=8,
        fc_dim=128,
        clip_shape=(16, 48, 48),
        dropout=0.2,
        class_names=data.class_names,
        optimizer=OPTIMIZERS[optimizer],
    )
    monitor = SelectiveRelevanceMonitor(
        methods=list(METHODS),
        num_clips=32,
        every_n_epochs=epochs,
        num_videos=1,
        num_conflict_clips=256,
        seed=seed,
        calibration=calibration,
    )
    callbacks: list = [monitor]
    if mitigation is not None:
        callbacks.append(StaticBiasMitigation(**mitigation, seed=seed))
    trainer = pl.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        logger=TensorBoardLogger(out, name=f"cam{camera:g}", version=run),
        callbacks=callbacks,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        log_every_n_steps=8,
    )
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(model, data)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    return {"metrics": metrics, "seconds": time.perf_counter() - started, "cue": cue}


def cost(seed: int, steps: int = 20) -> dict[str, float]:
    """Milliseconds of a training step (forward, backward, Adam) and of each mitigation's batch hook, on the
    same batches of the default run, interleaved so that machine noise hits both alike."""
    torch.manual_seed(seed)
    data = MotionContextDataModule(seed=seed)
    model = VideoClassifier(num_classes=4, width=8, fc_dim=128, clip_shape=(16, 48, 48), dropout=0.2)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    batches = [next(iter(data.train_dataloader())) for _ in range(2)]
    hooks = {name: StaticBiasMitigation(**(SETUPS[name][1] or {}), seed=seed) for name in SETUPS if SETUPS[name][1]}

    class _Trainer:  # what the hook reads of a Trainer
        global_rank, global_step = 0, 0

    times: dict[str, list[float]] = {"step": [], **{name: [] for name in hooks}}
    for i in range(steps):
        clips, labels, _ = batches[i % 2]
        for name, hook in hooks.items():
            trial = clips.clone()
            _Trainer.global_step = i
            started = time.perf_counter()
            hook.on_train_batch_start(_Trainer(), model, (trial, labels), i)  # type: ignore[arg-type]
            times[name].append(time.perf_counter() - started)
        started = time.perf_counter()
        model.train()
        loss = torch.nn.functional.cross_entropy(model(clips), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        times["step"].append(time.perf_counter() - started)
    median = {name: sorted(values[2:])[len(values[2:]) // 2] * 1000 for name, values in times.items()}
    return {"step_ms": median["step"], **{f"{n}_ms": median[n] for n in hooks}}


def row(run: str, result: dict) -> str:
    m = result["metrics"]

    def get(tag: str, digits: int = 3) -> str:
        return f"{m[tag]:.{digits}f}" if tag in m else "-"

    behaviour = tags.behaviour_tag
    bias = " | ".join(get(tags.method_tag(method, "spatial_bias")) for method in METHODS)
    if any(tags.method_tag(method, tags.CALIBRATED) in m for method in METHODS):
        bias += " | " + " | ".join(get(tags.method_tag(method, tags.CALIBRATED), 2) for method in METHODS)
    return (
        f"| {run} | {result['cue']} | {get(behaviour('conflict_motion_share'))} | "
        f"{get(behaviour('conflict_motion_prob'))} | {get(behaviour('acc_frozen'))} | {get(behaviour('reliance'))} "
        f"| {bias} | {get('val/acc')} |"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cameras", type=float, nargs="+", default=[0.0, 1.5], help="camera speeds, px/frame")
    parser.add_argument("--runs", nargs="+", default=list(DEFAULT_RUNS), choices=list(RUNS))
    parser.add_argument("--epochs", type=int, default=3, help="training epochs of every run (default 3, as fit)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("mitigation_runs"))
    parser.add_argument("--no-cost", action="store_true", help="skip the timing table")
    parser.add_argument(
        "--optimizer",
        choices=list(OPTIMIZERS),
        default="adam",
        help="adam: the default run's (default); sgd: the classifier's fallback (SGD 1e-3, momentum 0.9)",
    )
    parser.add_argument(
        "--calibration",
        help="a calibration.json of `python -m lightning_selrel calibrate` on the built-in data: also calibrated "
        "spatial bias (0 = its motion reference, 1 = its static one)",
    )
    args = parser.parse_args(argv)
    results: dict = {}
    for camera in args.cameras:
        results[f"{camera:g}"] = {}
        for run in args.runs:
            result = fit(run, camera, args.epochs, args.out, args.seed, args.calibration, args.optimizer)
            results[f"{camera:g}"][run] = result
            print(f"camera {camera:g}, {run}: {result['seconds']:.0f} s", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=1))
    for camera, runs in results.items():
        print(f"\n**camera {camera} px/frame**, {args.epochs} epochs, seed {args.seed}, {args.optimizer}:\n")
        print(
            "| run | trained on | conflict motion share | p(motion) | frozen acc | reliance | "
            + " | ".join(f"spatial bias {m}" for m in METHODS)
            + "".join(f" | calibrated {m}" for m in METHODS if args.calibration)
            + " | val/acc |"
        )
        print("|---|---|" + "---:|" * (5 + len(METHODS) * (2 if args.calibration else 1)))
        for run, result in runs.items():
            print(row(run, result))
        share = torch.tensor(
            [r["metrics"].get(tags.behaviour_tag("conflict_motion_share"), float("nan")) for r in runs.values()]
        )
        cells = []
        for method in METHODS:
            bias = torch.tensor(
                [r["metrics"].get(tags.method_tag(method, "spatial_bias"), float("nan")) for r in runs.values()]
            )
            cells.append(f"{method} {rank_correlation(bias, share):+.2f}")
        print(f"\nSpearman over the {len(runs)} runs, spatial bias vs conflict motion share: {', '.join(cells)}")
    if not args.no_cost:
        timing = cost(args.seed)
        print("\n| mitigation | ms per batch of 32 | share of a training step |\n|---|---:|---:|")
        for name in SETUPS:
            if f"{name}_ms" in timing:
                print(f"| {name} | {timing[f'{name}_ms']:.2f} | {timing[f'{name}_ms'] / timing['step_ms']:.1%} |")
        print(f"| (training step: forward, backward, Adam) | {timing['step_ms']:.1f} | 100% |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
