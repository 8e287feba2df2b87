"""``python -m lightning_selrel calibrate``: a scale for spatial bias on the user's own data.

Takes the same ``--config`` / ``--model.*`` / ``--data.*`` options as ``fit`` and, with that architecture and data
module, trains the static and the motion reference (:mod:`lightning_selrel.monitor.calibration`) on a small budget,
explains the same validation probe clips with every method over a grid of ``n_std`` and both threshold rules, and
writes ``calibration.json``, ``calibration.png`` and ``calibration.md`` into ``--out``. Then::

    python -m lightning_selrel fit --config ... --trainer.callbacks.init_args.calibration=OUT/calibration.json

logs ``selrel/<m>/spatial_bias_calibrated``: 0 at the motion reference, 1 at the static reference.

Phases: (1) the static reference trains on frozen clips, (2) the motion reference on normal versus 3x speed (the
windows that move); each trains until learned or ``--epochs`` is spent, keeps its best validation state and
recovers from a collapse (:class:`~lightning_selrel.monitor.calibration.ReferenceSteward`), is then checked
(accuracy, frozen-clip accuracy, predictions unchanged when the probe clips are frozen) and explained on the
probe clips, drawn apart from the configured monitor's, at the monitor's settings; (3) the paired scale and the
recommendation, chosen on one half of the probe clips and measured on the other. Nothing is written before the
end, and the JSON last: Ctrl-C leaves no half-written calibration. Exit codes: 0 done (also when it refuses to
recommend; the report says why), 2 bad input, 130 interrupted.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from lightning_selrel._lightning import pl
from lightning_selrel.commands.lightning_cli import SelrelCLI, cli_options, configuration_error, debugging
from lightning_selrel.files import unwritable
from lightning_selrel.monitor import calibration as cal
from lightning_selrel.monitor.behaviour import freeze
from lightning_selrel.monitor.callback import SelectiveRelevanceMonitor
from lightning_selrel.monitor.probe_set import choose_indices, dataset_labels
from lightning_selrel.relevance.methods import available_methods, check_methods

__all__ = ["build_parser", "main"]


def build_parser(prog: str = "python -m lightning_selrel calibrate") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Train a motion-only and a static-only reference with your model and data, and measure the "
        "spatial bias of both over a grid of n_std: a scale and a recommended setting. Every other option "
        "(--config, --model.*, --data.*, --trainer.*) is read as `fit` reads it.",
        epilog="Exit codes: 0 done (also when no setting is recommended: see calibration.md), 2 bad input, "
        "130 interrupted (nothing written).",
    )
    parser.add_argument("--out", default="calibration", help="output folder (default ./calibration)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing calibration in --out")
    parser.add_argument(
        "--epochs",
        type=int,
        default=8,
        help="the most training epochs of each reference; it stops earlier once it has learned (default 8)",
    )
    parser.add_argument(
        "--train-clips",
        type=int,
        default=1024,
        help="training clips per reference and epoch; a smaller training set is repeated, each time with new "
        "random windows where the data module draws them (default 1024)",
    )
    parser.add_argument("--val-clips", type=int, default=128, help="validation clips of each reference (default 128)")
    parser.add_argument("--probe-clips", type=int, default=32, help="probe clips explained (default 32)")
    parser.add_argument(
        "--methods",
        nargs="+",
        default=None,
        help=f"explanation methods (default all: {', '.join(available_methods())})",
    )
    parser.add_argument(
        "--n-std-grid", type=float, nargs="+", default=list(cal.DEFAULT_GRID), help="n_std values (default 1 .. 6)"
    )
    parser.add_argument(
        "--min-separation",
        type=float,
        default=cal.MIN_SEPARATION,
        help=f"the least paired separation to recommend a setting or use one (default {cal.MIN_SEPARATION:g})",
    )
    parser.add_argument(
        "--min-motion",
        type=float,
        default=cal.MIN_MOTION,
        help="grey levels by which the mean frame difference of a window's 3x clip must differ from its normal clip's "
        f"for it to take part in the speed task: still windows cannot tell speeds apart (default {cal.MIN_MOTION:g}; "
        "0 keeps every window)",
    )
    parser.add_argument(
        "--min-probe-motion",
        type=float,
        default=cal.MIN_PROBE_MOTION,
        help="grey levels of mean absolute frame difference below which a probe clip counts as still and is replaced "
        "by another: on a still shot a motion model has no motion to use, and the references' spatial bias there "
        f"says nothing about moving clips (default {cal.MIN_PROBE_MOTION:g}; 0 keeps every clip)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the probe draw and of the subsets (default 0)")
    parser.add_argument("--accelerator", default="auto", help="training accelerator (default auto)")
    return parser


def _say(text: str) -> None:
    print(f"calibrate: {text}", file=sys.stderr, flush=True)


def _check(args: argparse.Namespace) -> list[str]:
    for name in ("epochs", "train_clips", "val_clips", "probe_clips"):
        if getattr(args, name) < 1:
            raise cal.CalibrationError(f"--{name.replace('_', '-')} {getattr(args, name)}: must be at least 1")
    if args.probe_clips < 3:
        raise cal.CalibrationError(f"--probe-clips {args.probe_clips}: at least 3 are needed for a spread over clips")
    if not args.min_motion >= 0:
        raise cal.CalibrationError(f"--min-motion {args.min_motion}: must be >= 0")
    if not args.min_probe_motion >= 0:
        raise cal.CalibrationError(f"--min-probe-motion {args.min_probe_motion}: must be >= 0")
    if not args.min_separation > 0:
        raise cal.CalibrationError(f"--min-separation {args.min_separation}: must be positive")
    if any(not (math.isfinite(n) and n >= 0) for n in args.n_std_grid):
        raise cal.CalibrationError(f"--n-std-grid {args.n_std_grid}: every n_std must be a finite number >= 0")
    try:
        methods = check_methods(args.methods or list(available_methods()))
    except ValueError as error:
        raise cal.CalibrationError(f"--methods: {error}") from None
    out = Path(args.out).expanduser()
    if out.exists() and not out.is_dir():
        raise cal.CalibrationError(f"--out {args.out} is a file, not a folder; pass a folder for the calibration")
    existing = next((p for p in (out, *out.resolve().parents) if p.exists()), None)
    reason = unwritable(existing) if existing is not None else None  # by writing: os.access says yes to root
    if reason is not None:
        raise cal.CalibrationError(f"--out {args.out} cannot be written ({existing}: {reason}); pass another folder")
    json_path = out / "calibration.json"
    if json_path.exists() and not args.overwrite:
        raise cal.CalibrationError(f"--out {args.out}: {json_path} exists; pass --overwrite or another --out")
    return methods


def _configured(fit_args: Sequence[str]) -> Any:
    """The user's model and data module, from the same configuration ``fit`` reads (not instantiated twice)."""
    with warnings.catch_warnings():  # the configuration comes as `args` while sys.argv holds `calibrate ...`
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
        try:
            return SelrelCLI(args=list(fit_args), run=False, **cli_options())
        except Exception as error:  # the same one line fit gives for the same option (debugging: the traceback)
            message = configuration_error(error)
            if message is None or debugging():
                raise
            raise cal.CalibrationError(message) from None


def _phases(args: argparse.Namespace, datamodule: Any, class_names: list[str], clip_len: int) -> dict[str, tuple]:
    """Per reference: its task, class count and names, and its training and validation clips."""
    train_set, val_set = datamodule.train_dataloader().dataset, datamodule.val_dataloader().dataset
    half = max(1, args.train_clips // 2)  # each long window gives two speed clips
    return {
        "static": (
            "frozen clips, true labels",
            len(class_names),
            class_names,
            cal.FrozenClips(cal.subset(train_set, args.train_clips, args.seed, repeat=True), random_frame=True),
            cal.FrozenClips(cal.subset(val_set, args.val_clips, args.seed), random_frame=False, seed=args.seed),
        ),
        "motion": (
            "normal vs 3x speed, same videos and positions",
            2,
            list(cal.SPEED_CLASSES),
            cal.SpeedClips(
                cal.subset(datamodule.long_clips("train", cal.SPEED_FACTOR), half, args.seed, repeat=True),
                clip_len,
                min_motion=args.min_motion,
                train=True,
            ),
            _moving_windows(datamodule, args, clip_len),
        ),
    }


def _moving_windows(datamodule: Any, args: argparse.Namespace, clip_len: int) -> cal.SpeedClips:
    """The motion reference's validation pairs: the windows of the validation videos that move."""
    windows = cal.subset(datamodule.long_clips("val", cal.SPEED_FACTOR), max(1, args.val_clips // 2), args.seed)
    val = cal.SpeedClips(windows, clip_len, min_motion=args.min_motion)
    if len(val) == 0:
        raise cal.CalibrationError(
            f"none of the {len(windows)} validation windows moves enough for the speed task (the frame differences of "
            f"its 3x and normal clips differ by less than {args.min_motion:g} grey levels): the motion reference "
            "cannot be validated on these videos; use videos with motion, or lower --min-motion"
        )
    if val.still:
        _say(f"{val.still} of {len(windows)} validation windows do not move enough to tell speeds apart: left out")
    return val


def _references(
    args: argparse.Namespace,
    model: pl.LightningModule,
    phases: dict[str, tuple],
    probe: tuple[torch.Tensor, torch.Tensor],
    methods: list[str],
    loaders: tuple[int, int, bool],
    started: float,
    map_options: dict[str, Any],
) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """Train each reference, say what it learned, and explain the probe clips with it: (references, biases)."""
    batch_size, workers, progress = loaders
    probe_clips, probe_labels = probe
    references: dict[str, dict[str, Any]] = {}
    biases: dict[str, Any] = {}
    for step, (name, (task, classes, names, train, val)) in enumerate(phases.items(), start=1):
        _say(f"[{step}/3] the {name} reference: training on {task} ({len(train)} clips, up to {args.epochs} epochs)")
        data = cal.ReferenceData(train, val, batch_size, workers)
        loader = DataLoader(val, batch_size=batch_size, num_workers=workers)
        seen = DataLoader(cal.subset(train, len(val), args.seed + 1), batch_size=batch_size, num_workers=workers)
        steward = cal.ReferenceSteward(loader, classes, seen)
        reference = cal.train_reference(
            cal.reference_like(model, classes, names), data, steward, args.epochs, args.accelerator, progress
        )
        device = next(reference.parameters()).device
        clips = probe_clips.to(device)
        labels = probe_labels if name == "static" else torch.zeros(len(probe_labels), dtype=torch.long)
        references[name] = {
            "task": task,
            "classes": classes,
            "accuracy": cal.evaluate(reference, loader)[0],
            "frozen_accuracy": cal.evaluate(reference, loader, freeze)[0],
            **cal.reference_behaviour(reference, clips, labels, batch_size),
            "training": steward.report,
        }
        if isinstance(val, cal.SpeedClips):
            references[name]["still_windows_left_out"] = val.still
        _say(f"      {steward.describe()}")
        _say(
            f"      accuracy {references[name]['accuracy']:.3f}, frozen-clip accuracy "
            f"{references[name]['frozen_accuracy']:.3f}, probe clips unchanged when frozen "
            f"{references[name]['unchanged_frozen']:.3f} ({cal.elapsed(started)})"
        )
        target = None if map_options["target"] == "predicted" else labels.to(device)
        with tqdm(total=len(methods), desc=f"explaining the probe clips ({name})", disable=not progress) as bar:
            biases[name] = cal.per_clip_bias(
                reference,
                clips,
                methods,
                args.n_std_grid,
                batch_size=batch_size,
                progress=lambda _: bar.update(),
                signed=map_options["signed"],
                target=target,
                layer=map_options["gradcam_layer"],
            )
    return references, biases


def run(args: argparse.Namespace, fit_args: Sequence[str]) -> int:
    started = time.perf_counter()
    methods = _check(args)
    cli = _configured(fit_args)
    model, datamodule = cli.model, cli.datamodule
    progress = cli.config.trainer.get("enable_progress_bar") is not False  # as the configuration asks, like fit
    if not callable(getattr(datamodule, "long_clips", None)):
        raise cal.CalibrationError(
            f"{type(datamodule).__name__} has no long_clips(stage, factor): calibrate's motion reference needs "
            "windows of 3 T frames from the same videos (see lightning_selrel.monitor.calibration); the "
            "built-in data and UCF101DataModule have it"
        )
    datamodule.prepare_data()
    datamodule.setup("fit")
    val_set = datamodule.val_dataloader().dataset
    clip_len = (
        int(model.clip_shape[0]) if hasattr(model, "clip_shape") else int(torch.as_tensor(val_set[0][0]).shape[1])
    )
    class_names = list(getattr(model, "class_names", None) or [str(i) for i in range(model.hparams["num_classes"])])
    phases = _phases(args, datamodule, class_names, clip_len)
    batch_size = int(getattr(datamodule, "batch_size", 8))
    workers = int(getattr(datamodule, "num_workers", 0))
    monitor = _monitor_of(cli.trainer)
    map_options = {"signed": monitor.signed, "target": monitor.target, "gradcam_layer": monitor.gradcam_layer}
    _say(
        f"explaining as the {'configured' if monitor.configured else 'default'} monitor does: signed={monitor.signed}, "
        f"target={monitor.target}, gradcam_layer={monitor.gradcam_layer or 'the model default'}"
    )
    indices, kept_apart, still = _probe_indices(val_set, args, monitor)
    items = [val_set[i] for i in indices]
    probe_clips = torch.stack([torch.as_tensor(item[0]) for item in items])  # (N, 3, T, H, W)
    probe_labels = torch.tensor([int(item[1]) for item in items])
    settings = cal.map_settings(model, methods, clip_shape=probe_clips.shape[2:], **map_options)
    references, biases = _references(
        args, model, phases, (probe_clips, probe_labels), methods, (batch_size, workers, progress), started, map_options
    )
    _say(f"[3/3] the scale over n_std {args.n_std_grid} and rules {list(cal.THRESHOLDS)}")
    scale = cal.scale_of(biases["motion"], biases["static"])
    refused = cal.judge(references)
    recommended = None if refused else cal.recommend(scale, args.min_separation)
    if recommended is None and refused is None:
        refused = cal.why_none(scale, args.min_separation)
    result = cal.Calibration(
        methods=methods,
        clip_shape=[int(s) for s in probe_clips.shape[2:]],
        n_std_grid=[float(n) for n in args.n_std_grid],
        thresholds=list(cal.THRESHOLDS),
        references=references,
        scale=scale,
        recommended=recommended,
        refused=refused,
        probe={
            "num_clips": len(indices),
            "seed": args.seed,
            "indices": indices,
            "kept_apart_from": kept_apart,
            "min_probe_motion": float(args.min_probe_motion),
            "still_left_out": still,
            "halves": "even positions choose the setting, odd positions measure it",
        },
        settings=settings,
        min_separation=float(args.min_separation),
        source={
            "model": type(model).__name__,
            "model_hparams": {k: v for k, v in dict(model.hparams).items() if k != "class_names"},
            "data": type(datamodule).__name__,
            "data_hparams": dict(getattr(datamodule, "hparams", {}) or {}),
            "epochs": args.epochs,
            "train_clips": args.train_clips,
            "seconds": round(time.perf_counter() - started, 1),
        },
    )
    _report(result, args.out, started)
    return 0


class _MonitorOptions:
    """The options of the monitor a calibration is for: the configured SelectiveRelevanceMonitor's, else the
    defaults."""

    def __init__(self, monitor: Any | None) -> None:
        self.configured = monitor is not None
        monitor = monitor if monitor is not None else SelectiveRelevanceMonitor()
        self.signed, self.target, self.gradcam_layer = monitor.signed, monitor.target, monitor.gradcam_layer or None
        self.num_clips, self.seed, self.per_class = monitor.num_clips, monitor.seed, monitor.per_class


def _monitor_of(trainer: Any) -> _MonitorOptions:
    found = [c for c in getattr(trainer, "callbacks", []) if isinstance(c, SelectiveRelevanceMonitor)]
    return _MonitorOptions(found[0] if found else None)


def _probe_indices(
    val_set: Any, args: argparse.Namespace, monitor: _MonitorOptions
) -> tuple[list[int], list[int], list[int]]:
    """The calibration's probe clips, drawn from the validation clips the monitor does not explain (so that the
    monitor's numbers are not read on the clips that made the scale) and moving (:func:`~cal.moves`), the
    monitor's clips kept apart, and the still clips drawn and left out."""
    size = len(val_set)
    labels = dataset_labels(val_set) if monitor.per_class is not None else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the monitor says so itself when it has fewer clips than it asks for
        theirs = choose_indices(size, monitor.num_clips, monitor.seed, labels=labels, per_class=monitor.per_class)
    monitored = set(theirs)
    rest = [i for i in range(size) if i not in monitored]
    if len(rest) < 3:
        _say(
            f"only {len(rest)} validation clips are not the monitor's {len(theirs)}: the probe clips overlap the "
            "monitor's (recorded in calibration.json); a larger validation set keeps them apart"
        )
        rest, theirs = list(range(size)), []
    elif len(rest) < args.probe_clips:
        _say(
            f"{len(rest)} validation clips are not the monitor's: the probe set has at most {len(rest)}, not "
            f"{args.probe_clips}"
        )
    drawn = [rest[i] for i in choose_indices(len(rest), args.probe_clips, args.seed, owner="calibrate")]
    kept, still = _moving(val_set, drawn, args.min_probe_motion)
    if still:  # replaced by moving clips of the rest, in a seeded order, as far as there are any
        chosen = set(drawn)
        others = [i for i in rest if i not in chosen]
        order = np.random.default_rng([args.seed, 1]).permutation(len(others))[: 4 * args.probe_clips]
        queue = [others[i] for i in order]  # at most 4 x --probe-clips more clips decoded, however still the data
        while len(kept) < len(drawn) and queue:
            batch, queue = queue[: len(drawn) - len(kept)], queue[len(drawn) - len(kept) :]
            more, less = _moving(val_set, batch, args.min_probe_motion)
            kept, still = kept + more, still + less
        _say(
            f"{len(still)} of the validation clips looked at hardly move (mean frame difference below "
            f"{args.min_probe_motion:g} grey levels, --min-probe-motion): left out of the probe set, which has "
            f"{len(kept)} clips"
        )
    if len(kept) < 3:
        raise cal.CalibrationError(
            f"only {len(kept)} of the validation clips looked at move (mean frame difference at least "
            f"{args.min_probe_motion:g} grey levels): spatial bias cannot be calibrated on still clips; use videos "
            "with motion, or lower --min-probe-motion (pixels are read in 0-255)"
        )
    return sorted(kept), theirs, sorted(still)


def _moving(val_set: Any, indices: Sequence[int], minimum: float) -> tuple[list[int], list[int]]:
    """``indices`` split into the clips that move and those that do not (:func:`~cal.moves`)."""
    if minimum <= 0:
        return list(indices), []
    flags = [cal.moves(torch.as_tensor(val_set[i][0]), minimum) for i in indices]
    return [i for i, f in zip(indices, flags, strict=True) if f], [
        i for i, f in zip(indices, flags, strict=True) if not f
    ]


def _report(result: Any, out: str, started: float) -> None:
    written = cal.write_outputs(result, out)
    recommended, refused = result.recommended, result.refused
    if recommended is None:
        _say(f"no setting recommended: {refused}")
    else:
        _say(
            f"recommended: {recommended['method']} with threshold {recommended['threshold']} and n_std "
            f"{recommended['n_std']:g} (chosen on half of the probe clips, separation "
            f"{recommended['selection_separation']:.2f}; on the other half gap {recommended['gap']:.3f}, separation "
            f"{recommended['separation']:.2f})"
        )
    if 4.0 in result.n_std_grid:  # the paper's n: a method that orders the references wrongly there is flagged
        for reason in cal.cannot_tell(result, 4.0).values():
            _say(f"warning: {reason}")
    print(f"calibrate: wrote {', '.join(str(p) for p in written.values())} in {cal.elapsed(started)}")


def main(argv: Sequence[str] | None = None, prog: str = "python -m lightning_selrel calibrate") -> int:
    """Run the command with ``argv`` (default ``sys.argv[1:]``); returns the exit code."""
    parser = build_parser(prog)
    try:
        args, fit_args = parser.parse_known_args(argv)
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else 2
    try:
        return run(args, fit_args)
    except cal.CalibrationError as error:
        print(f"calibrate: error: {' '.join(str(error).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("calibrate: interrupted; nothing was written", file=sys.stderr)
        return 130
