"""The commands as functions, for notebooks and scripts: :func:`explain_video` and :func:`calibrate` run what
``python -m lightning_selrel explain`` / ``calibrate`` run and return the report instead of printing it.

Options are the commands' own, as keyword arguments (``n_std=2`` for ``--n-std 2``, ``flow="none"``,
``show=True`` for a flag, a list for several values); a mistake raises the error the command would print, and
nothing is written then. Neither function touches matplotlib's backend or the caller's ``sys.argv``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["calibrate", "explain_video"]


def _argv(options: dict[str, Any], negatable: Sequence[str] = ()) -> list[str]:
    """Keyword options as command-line arguments: ``key_name=value`` -> ``--key-name value``; True -> the flag,
    False -> nothing (``--no-key`` for the options in ``negatable``), None -> nothing, a list -> its values."""
    argv: list[str] = []
    for key, value in options.items():
        flag = "--" + key.replace("_", "-")
        if value is None:
            continue
        if isinstance(value, bool):
            if value:
                argv.append(flag)
            elif key in negatable:
                argv.append("--no-" + key.replace("_", "-"))
            continue
        values = [str(v) for v in value] if isinstance(value, (list, tuple)) else [str(value)]
        argv += [flag, *values]
    return argv


def _parse(parser: argparse.ArgumentParser, argv: list[str], known: bool = False) -> Any:
    """Parse like the command, raising ValueError (with argparse's message) instead of exiting."""

    def refuse(message: str) -> None:
        raise ValueError(f"{parser.prog}: {message}")

    parser.error = refuse  # type: ignore[method-assign]
    return parser.parse_known_args(argv) if known else parser.parse_args(argv)


def explain_video(
    ckpt: str | Path,
    video: str | Path,
    *,
    out: str | Path | None = None,
    methods: Sequence[str] = ("dtd",),
    target: int | str | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Explain a video file window by window with a checkpoint; returns the report ``explain --json`` writes (the
    head: source, preprocessing, settings; ``windows``: per window the prediction and each method's scores;
    ``summary``). ``out`` also writes the annotated video (.mp4, .avi or .gif).

    Example::

        report = explain_video("model.ckpt", "clip.avi", methods=["dtd", "gradcam"], n_std=4, target="left")
        report["summary"]["methods"]["dtd"]["spatial_bias"]
    """
    from lightning_selrel.commands.explain import build_parser, run

    with tempfile.TemporaryDirectory(prefix="selrel-explain-") as folder:
        report = Path(folder) / "report.json"
        argv = ["--ckpt", str(ckpt), "--video", str(video), "--json", str(report), "--quiet"]
        argv += ["--methods", *methods] + (["--out", str(out)] if out is not None else [])
        argv += ["--target", str(target)] if target is not None else []
        args = _parse(build_parser(), argv + _argv(options, negatable=("realtime",)))
        run(args)
        return json.loads(report.read_text())


def calibrate(out: str | Path = "calibration", *fit_args: str, overwrite: bool = False, **options: Any) -> Any:
    """Train the two references and measure the scale, as ``python -m lightning_selrel calibrate --out OUT``;
    returns the :class:`~lightning_selrel.monitor.calibration.Calibration` it wrote to ``OUT/calibration.json``.

    ``fit_args`` are the configuration, as ``fit`` takes it (``"--config", "configs/x.yaml"``,
    ``"--data.init_args.root=DIR"``); ``options`` are calibrate's own (``epochs=8``, ``probe_clips=32``, ...).

    Raises:
        CalibrationError: What the command would print for bad input (nothing is written then).
    """
    from lightning_selrel.commands.calibrate import build_parser, run
    from lightning_selrel.monitor.calibration import CalibrationError, load_calibration

    argv = ["--out", str(out)] + (["--overwrite"] if overwrite else []) + _argv(options)
    args, rest = _parse(build_parser(), argv + list(fit_args), known=True)
    try:
        code = run(args, rest)
    except SystemExit as exit_:  # the LightningCLI refused the configuration (its message is printed above)
        raise CalibrationError(f"the configuration {' '.join(fit_args)} was refused (exit {exit_.code})") from None
    if code != 0:
        raise CalibrationError(f"calibrate exited with code {code}; nothing usable in {out}")
    return load_calibration(Path(out) / "calibration.json")
