"""``python -m lightning_selrel explain``: selective explanations of a video file or a live stream.

Offline (``--video FILE``) a window of the model's clip length slides over the video by ``--stride``
frames (default: the clip length); a last window aligned with the end covers the tail, and a video
shorter than one clip is loop-padded as in training. Live (``--source 0``, a URL, or a file played at
its frame rate) a reader thread keeps the last clip-length frames in a ring buffer and the explainer
takes the newest window whenever it is free: frames that arrive meanwhile are dropped, never queued.

Each window is classified, explained with every ``--methods`` entry, and reduced to its selective
relevance; motion precision is measured against optical flow of the window's frames. Outputs:

- ``--out`` (.mp4, .avi or .gif; prefer .mp4 live: a GIF is kept in memory until the end):
  input | baseline | selective panels with the prediction, one row per method. Offline every
  frame is written once, drawn from the first window it is new in, at the video's frame rate.
  Live the newest frame of each window is written, held for as many source frames as arrived
  until the next window, so the recording plays at the stream's pace.
- ``--json``: per window the frames, prediction, metrics and timings, and a summary; undefined
  values (a map without positive relevance has no precision) are ``null``.
- ``--show``: a window (``cv2.imshow``) where a display exists; ``q`` or Esc quits.

The model, its clip shape, class names and normalisation come from the checkpoint
(:func:`lightning_selrel.models.checkpoint.load_classifier`). Frames are resized and centre-cropped as the data
module validated (:meth:`lightning_selrel.data.frames.FramePrep.for_checkpoint`). Exit codes: 0 done (live:
also when stopped with Ctrl-C), 2 bad input (one line on stderr naming it and the fix), 130 an
offline run stopped with Ctrl-C (its outputs are still finished and playable).
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import json
import math
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from lightning_selrel.commands.config_file import ConfigFileError, add_config_option, expand_config
from lightning_selrel.commands.stream import (
    Outputs,
    StatusLine,
    StreamError,
    VideoSink,
    display_unavailable,
    open_source,
)
from lightning_selrel.commands.windows import WindowExplainer, json_safe, run_live, run_offline
from lightning_selrel.data.frames import FramePrep, FramePrepError
from lightning_selrel.files import unwritable
from lightning_selrel.metrics.flow import FLOW_METHODS
from lightning_selrel.models.checkpoint import CheckpointError, load_classifier
from lightning_selrel.relevance.methods import available_methods, check_methods, check_model
from lightning_selrel.relevance.selective import THRESHOLDS

__all__ = ["ExplainError", "build_parser", "main", "resolve_target", "run"]


class ExplainError(RuntimeError):
    """A bad argument or checkpoint; the one-line message names it and the fix."""


# -- command -------------------------------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    """Argument errors as one line on stderr, exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"explain: error: {message}; see --help\n")


def build_parser(prog: str = "python -m lightning_selrel explain") -> argparse.ArgumentParser:
    """The command's options (``python -m lightning_selrel explain --help``)."""
    parser = _Parser(
        prog=prog,
        description="Selective explanations of a video file (--video) or a live stream (--source).",
        epilog="Frames: as the checkpoint's data module validated (UCF-101: resized to 128x171, centre crop; "
        "built-in data: scaled to the clip, aspect kept); --resize overrides. Live: frames that arrive "
        "while a window is explained are dropped, not queued; Ctrl-C stops and finishes the outputs. "
        "Exit codes: 0 done, 2 bad input, 130 offline run interrupted.",
    )
    add_config_option(parser)
    parser.add_argument("--ckpt", required=True, help="checkpoint (.ckpt) written by fit")
    parser.add_argument(
        "--model-class",
        help="the checkpoint's LightningModule as module.Class, for your own model (default: this project's)",
    )
    parser.add_argument(
        "--trust-arch",
        action="append",
        metavar="CLASS_PATH",
        help="let the checkpoint's architecture be this class path (mypkg.MyNet): a checkpoint naming a class path is "
        "refused, before anything is imported, unless you trust it here (repeatable; c3d, r3d_18, r2plus1d_18 "
        "always load)",
    )
    parser.add_argument(
        "--clip-shape", type=int, nargs=3, metavar=("T", "H", "W"), help="clip shape, when the checkpoint does not say"
    )
    parser.add_argument(
        "--layer",
        help="the GradCAM family's layer, a dotted module name (default: the layer the network declares, else "
        "its last Conv3d)",
    )
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--video", help="video file, explained window by window")
    where.add_argument(
        "--source", help="live: camera index (0), stream URL, or a video file (played at its frame rate)"
    )
    parser.add_argument("--out", help="annotated video: .mp4, .avi or .gif")
    parser.add_argument("--json", help="report: per window and summary")
    parser.add_argument("--show", action="store_true", help="show the panels in a window (needs a display)")
    parser.add_argument(
        "--panel-size",
        type=int,
        default=240,
        metavar="PX",
        help="height of each panel in pixels, drawn on the source frame's region under the model's crop with the "
        "relevance upsampled onto it (default 240); 0: the model's own input, enlarged",
    )
    parser.add_argument(
        "--methods", nargs="+", default=["dtd"], help=f"default dtd; one row each, of {', '.join(available_methods())}"
    )
    parser.add_argument(
        "--n-std", type=float, default=4.0, help="selective threshold in std of the edge map (default 4)"
    )
    parser.add_argument(
        "--threshold",
        default="std",
        choices=THRESHOLDS,
        help="selective threshold rule: std (the paper's n-std of the edge map) or mad (robust to widespread "
        "change such as camera motion); default std",
    )
    parser.add_argument(
        "--target",
        metavar="CLASS",
        help="explain this class (an index, or a name of the checkpoint's classes) in every window instead of the "
        "predicted one; the report gives both",
    )
    parser.add_argument("--stride", type=int, help="offline: frames between window starts (default: clip length)")
    parser.add_argument(
        "--resize", type=int, nargs=2, metavar=("H", "W"), help="resize frames to exactly H x W, then centre-crop"
    )
    parser.add_argument(
        "--flow",
        default="farneback",
        choices=[*FLOW_METHODS, "none"],
        help="optical flow for motion precision (default farneback)",
    )
    parser.add_argument(
        "--flow-threshold", type=float, default=0.5, help="moving: flow above this many pixels (default 0.5)"
    )
    parser.add_argument(
        "--fps", type=float, help="frame rate of the source and the output (default: the source's, else 25)"
    )
    parser.add_argument(
        "--realtime",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="live: deliver a file's frames at its frame rate (default: on for files)",
    )
    parser.add_argument("--max-windows", type=int, help="stop after this many windows")
    parser.add_argument("--duration", type=float, help="live: stop after this many seconds")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--quiet", action="store_true", help="no status line")
    return parser


def main(
    argv: Sequence[str] | None = None,
    *,
    on_window: Callable[[dict[str, Any]], None] | None = None,
    prog: str = "python -m lightning_selrel explain",
) -> int:
    """Run the command with ``argv`` (default ``sys.argv[1:]``); returns the exit code.

    ``on_window`` is passed to :func:`run_live` (a hook for tests).
    """
    parser = build_parser(prog)
    try:
        args = parser.parse_args(expand_config(parser, sys.argv[1:] if argv is None else argv))
    except ConfigFileError as error:
        print(f"explain: error: {error}", file=sys.stderr)
        return 2
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else 2
    try:
        return run(args, on_window)
    except (ExplainError, StreamError, CheckpointError, FramePrepError) as error:
        print(f"explain: error: {' '.join(str(error).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # before the loops (they handle Ctrl-C themselves): nothing written yet
        print("explain: interrupted before the first window", file=sys.stderr)
        return 130


def _check_args(args: argparse.Namespace) -> list[str]:
    methods = [m for entry in args.methods for m in entry.split(",") if m]
    try:
        check_methods(methods)
    except ValueError as error:
        raise ExplainError(f"--methods {' '.join(args.methods)}: {error}") from None
    for name, value, low in (
        ("--n-std", args.n_std, 0),
        ("--stride", args.stride, 1),
        ("--fps", args.fps, 1e-3),
        ("--max-windows", args.max_windows, 1),
        ("--duration", args.duration, 1e-3),
        ("--threads", args.threads, 1),
        ("--flow-threshold", args.flow_threshold, 0),
    ):
        if value is not None and not (math.isfinite(value) and value >= low):
            raise ExplainError(f"{name} {value}: must be a finite number of at least {low}")
    if args.clip_shape is not None and min(args.clip_shape) < 1:
        raise ExplainError(f"--clip-shape {' '.join(map(str, args.clip_shape))}: T, H and W must be positive")
    if args.panel_size != 0 and not 32 <= args.panel_size <= 2160:
        raise ExplainError(
            f"--panel-size {args.panel_size}: use 0 (the model's input) or 32 to 2160 pixels (default 240)"
        )
    if args.video is not None and args.video.strip().isdigit():
        raise ExplainError(f"--video {args.video} is a camera index: use --source {args.video} for a live stream")
    if args.out and Path(args.out).suffix.lower() not in VideoSink.CODECS:
        raise ExplainError(f"--out {args.out}: use a .mp4, .avi or .gif file name")
    for option in ("out", "json"):
        path = getattr(args, option)
        if path:
            _check_writable(f"--{option}", Path(path))
    if args.out and args.json and Path(args.out).resolve() == Path(args.json).resolve():
        raise ExplainError(f"--out and --json are the same file {args.out}: pass two names")
    for option in ("out", "json"):  # an output must never replace an input
        for source in ("video", "ckpt"):
            output, given = getattr(args, option), getattr(args, source, None)
            if output and given and _same_file(output, given):
                raise ExplainError(
                    f"--{option} {output} is the --{source} file: writing it would destroy the input; pass another name"
                )
    if args.show and (reason := display_unavailable()):
        if not args.out:
            raise ExplainError(f"--show: {reason}; pass --out FILE.mp4 to record the explanations instead")
        print(f"explain: --show: {reason}; writing to {args.out} instead", file=sys.stderr)
        args.show = False
    if not (args.out or args.json or args.show):
        raise ExplainError("nothing to write: pass --out FILE.mp4 (or .gif), --json FILE.json and/or --show")
    return methods


def _num_classes(model: torch.nn.Module) -> int | None:
    """The classifier's number of classes where it says (its hyperparameters, else its last Linear layer)."""
    hparams = getattr(model, "hparams", None) or {}
    if isinstance(hparams.get("num_classes"), int):
        return int(hparams["num_classes"])
    linear = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    return int(linear[-1].out_features) if linear else None


def resolve_target(value: str | None, class_names: Sequence[str] | None, num_classes: int | None) -> int | None:
    """``--target``: a class index, or a name of ``class_names`` (exact, then case-insensitive); None: the prediction.

    Raises:
        ValueError: Naming the valid indices and a few of the names.
    """
    if value is None:
        return None
    names = list(class_names or [])
    count = num_classes if num_classes is not None else len(names) or None
    text = str(value).strip()
    if text.lstrip("-").isdigit():
        index = int(text)
        if index < 0 or (count is not None and index >= count):
            raise ValueError(f"class index out of range: the checkpoint has classes 0 to {(count or 1) - 1}")
        return index
    for candidates in (names, [n.lower() for n in names]):
        key = text if candidates is names else text.lower()
        if key in candidates:
            return candidates.index(key)
    shown = ", ".join(names[:8]) + (", ..." if len(names) > 8 else "")
    raise ValueError(
        f"no class of that name; pass an index 0 to {(count or 1) - 1}"
        + (f" or one of the checkpoint's names ({shown})" if names else " (the checkpoint has no class names)")
    )


def _same_file(first: str, second: str) -> bool:
    """The two names are one file: the same resolved path, or (both existing) ``os.path.samefile``."""
    a, b = Path(first).expanduser(), Path(second).expanduser()
    if a.resolve() == b.resolve():
        return True
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def _check_writable(option: str, path: Path) -> None:
    """The output can be written: its folder exists and is writable, and the name is not a folder."""
    folder = path.resolve().parent
    if not folder.is_dir():
        raise ExplainError(f"{option} {path}: folder {folder} does not exist; create it")
    if path.is_dir():
        raise ExplainError(f"{option} {path} is a folder; pass a file name")
    reason = unwritable(folder)  # by writing: os.access says yes to root on a read-only mount or under /proc
    if reason is not None:
        raise ExplainError(f"{option} {path}: folder {folder} cannot be written ({reason}); choose another")
    if len(_staged(path).name.encode()) > 255:  # the temporary name the output is written under must fit too
        raise ExplainError(f"{option} {path}: the file name is too long (at most ~230 bytes); pass a shorter one")
    if path.exists() and not os.access(path, os.W_OK):
        raise ExplainError(f"{option} {path} exists and cannot be replaced (permission denied); choose another name")
    _sweep_partials(path)


def _sweep_partials(path: Path) -> None:
    """Remove the temporary files of ``path`` that an earlier run, killed before it could (kill -9, power loss),
    left beside it: ``.<stem>.partial-<pid><suffix>`` of a process that no longer runs. Says so, once each."""
    for partial in path.parent.glob(f".{glob.escape(path.stem)}.partial-*{glob.escape(path.suffix)}"):
        pid = partial.name[len(f".{path.stem}.partial-") : len(partial.name) - len(path.suffix)]
        if not pid.isdigit() or int(pid) == os.getpid() or _running(int(pid)):
            continue
        with contextlib.suppress(OSError):
            partial.unlink()
            print(
                f"explain: removed {partial}, left by an earlier run that was stopped before it finished",
                file=sys.stderr,
            )


def _running(pid: int) -> bool:
    """Whether process ``pid`` exists (signal 0 checks without sending anything)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True


def _truncation(source: Any, body: dict[str, Any]) -> list[str]:
    """A file that ends before the frame count its header claims (truncated or damaged), in one line."""
    read, claimed = body["summary"].get("frames_read"), source.frames
    if source.kind != "file" or not claimed or read is None or read >= claimed or body["stopped"] != "end of video":
        return []
    return [
        f"{source.spec} ends after {read} of the {claimed} frames its header claims (truncated or damaged); "
        f"the report covers the {read} frames it has"
    ]


def _short(source: Any, body: dict[str, Any], clip_len: int) -> list[str]:
    """A video shorter than one clip: every window is its frames looped, which the report should say."""
    read = body["summary"].get("frames_read")
    if source.kind != "file" or read is None or read >= clip_len:
        return []
    return [
        f"{source.spec} has {read} frame(s), fewer than one clip of {clip_len}: the window repeats them (a still "
        "image explained as a loop shows no motion)"
    ]


def _staged(path: Path) -> Path:
    """A temporary name beside ``path`` with its suffix (the video writer picks the container by it)."""
    return path.with_name(f".{path.stem}.partial-{os.getpid()}{path.suffix}")


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ExplainError(f"--device {name}: not a device; use cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ExplainError(f"--device {name}: CUDA is not available here; use --device cpu")
    return device


def _report_head(
    args: argparse.Namespace,
    loaded: Any,
    source: Any,
    prep: FramePrep,
    clip_shape: Sequence[int],
    methods: list[str],
    fps: float,
    pace: float | None,
    stride: int,
) -> dict[str, Any]:
    """The JSON report's description of the run (the windows and summary are added as they are explained)."""
    live = args.video is None
    return {
        "checkpoint": str(args.ckpt),
        "mode": "live" if live else "offline",
        "source": {
            "spec": source.spec,
            "kind": source.kind,
            "fps": source.fps,
            "frames": source.frames,
            "size": list(source.size),
        },
        "clip_shape": list(clip_shape),
        "class_names": list(loaded.class_names),
        "methods": methods,
        "target": "predicted" if args.target is None else args.target,
        "n_std": args.n_std,
        "threshold": args.threshold,
        "flow": {"method": args.flow, "threshold": args.flow_threshold},
        "preprocessing": prep.describe(source.size),
        "output_fps": fps,
        "panel_size": args.panel_size,
        **({"pace_fps": pace} if live else {"stride": stride}),
    }


def _explain_to_outputs(
    args: argparse.Namespace,
    explainer: WindowExplainer,
    capture: Any,
    source: Any,
    prep: FramePrep,
    outputs: Outputs,
    report: dict[str, Any],
    *,
    pace: float | None,
    stride: int,
    on_window: Callable[[dict[str, Any]], None] | None,
) -> tuple[dict[str, Any], list[str], list[Path]]:
    """Explain every window into ``--out`` / ``--json``; returns the run's body (windows, summary), its warnings and
    the files written (an interrupted run writes beside a complete earlier output of the same name, not over it)."""
    live = args.video is None
    fps = report["output_fps"]
    # Outputs are written to temporary names and moved into place at the end: a run that fails never replaces an
    # existing --out or --json (one stopped with Ctrl-C finishes and keeps what it explained).
    staged = {Path(p): _staged(Path(p)) for p in (args.out, args.json) if p}
    existing = {final for final in staged if final.exists()}
    written: list[Path] = []
    committed = False
    try:  # the reader thread (live) or run_offline releases the capture
        outputs.sink = VideoSink(staged[Path(args.out)], fps, label=args.out) if args.out else None
        if live:
            body = run_live(
                explainer,
                capture,
                source,
                prep,
                pace_fps=pace,
                outputs=outputs,
                max_windows=args.max_windows,
                duration=args.duration,
                on_window=on_window,
            )
        else:
            body = run_offline(
                explainer, capture, source, prep, stride=stride, outputs=outputs, max_windows=args.max_windows
            )
        outputs.close()  # finishes the video (it must read back)
        report.update(body)
        warnings = _truncation(source, body) + _short(source, body, int(report["clip_shape"][0]))
        destinations = {final: final for final in staged}
        if body["stopped"] == "interrupted":  # a partial result never replaces a complete earlier one
            for final in staged:
                if final in existing:
                    destinations[final] = final.with_name(f"{final.stem}.interrupted{final.suffix}")
                    warnings.append(
                        f"interrupted: {final} from an earlier run is kept; this run's partial result is "
                        f"{destinations[final]}"
                    )
        if warnings:
            report["warnings"] = warnings
        if args.json:
            staged[Path(args.json)].write_text(json.dumps(json_safe(report), indent=1, allow_nan=False) + "\n")
        for final, temporary in staged.items():
            if temporary.exists():
                os.replace(temporary, destinations[final])
        written.extend(destinations[final] for final in staged)
        committed = True
    finally:
        if not committed:
            with contextlib.suppress(Exception):
                outputs.close()
            for temporary in staged.values():
                temporary.unlink(missing_ok=True)
    return body, warnings, written


def run(args: argparse.Namespace, on_window: Callable[[dict[str, Any]], None] | None = None) -> int:
    """The command on parsed ``args``; raises its errors (:func:`main` prints them as one line)."""
    methods = _check_args(args)
    device = _device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    live = args.video is None
    capture, source = open_source(args.source if live else args.video)  # before the slow part: typos fail fast
    try:
        loaded = load_classifier(
            args.ckpt,
            device,
            model_class=args.model_class,
            clip_shape=args.clip_shape,
            trust_arch=args.trust_arch,
            trust_fix="pass --trust-arch {arch}",
            model_class_fix="pass --model-class {name}",
        )
        model, datamodule, clip_shape = loaded.model, loaded.datamodule, loaded.clip_shape
        check_model(model, methods, layer=args.layer)
        prep = FramePrep.for_checkpoint(clip_shape[1:], datamodule, args.resize)
    except ValueError as error:  # what the model lacks for these methods (check_model)
        capture.release()
        raise ExplainError(f"--ckpt {args.ckpt}: {error}") from None
    except BaseException:
        capture.release()
        raise
    fps = args.fps or source.fps or 25.0
    realtime = args.realtime if args.realtime is not None else source.kind == "file"
    pace = fps if live and realtime else None
    stride = args.stride or int(clip_shape[0])
    if stride > int(clip_shape[0]):
        capture.release()
        raise ExplainError(
            f"--stride {stride}: at most the model's clip length {clip_shape[0]}: every frame must be explained"
        )
    flow = None if args.flow == "none" else args.flow
    try:
        target = resolve_target(args.target, loaded.class_names, _num_classes(model))
    except ValueError as error:
        capture.release()
        raise ExplainError(f"--target {args.target}: {error}") from None
    explainer = WindowExplainer(
        model,
        methods,
        args.n_std,
        flow,
        args.flow_threshold,
        args.threshold,
        clip_shape=clip_shape,
        class_names=loaded.class_names,
        layer=args.layer,
        panel_size=args.panel_size,
        target=target,
    )
    outputs = Outputs(show=args.show, status=StatusLine(None if args.quiet else sys.stderr))
    report = _report_head(args, loaded, source, prep, clip_shape, methods, fps, pace if live else None, stride)
    body, warnings, written_files = _explain_to_outputs(
        args, explainer, capture, source, prep, outputs, report, pace=pace, stride=stride, on_window=on_window
    )
    for warning in warnings:
        print(f"explain: warning: {warning}", file=sys.stderr)
    summary = body["summary"]
    rate = f"{summary['windows_per_s']:.2f} windows/s" if summary["windows_per_s"] else "-"
    written = "".join(f"; wrote {p}" for p in written_files)
    print(f"explain: {summary['windows']} windows ({rate}), stopped: {body['stopped']}{written}")
    return 130 if body["stopped"] == "interrupted" and not live else 0
