"""``python -m lightning_selrel``: the front door, as a callable function.

``fit``, ``validate``, ``test`` and ``predict`` are a LightningCLI (:mod:`.lightning_cli`); ``explain``,
``calibrate`` and ``cache`` are commands of their own (:mod:`.explain`, :mod:`.calibrate`, :mod:`.cache`), imported
only when called. With no arguments, ``fit`` trains a small C3D on the built-in motion/context data on a CPU in a few
minutes (``configs/synthetic.yaml`` spells out these defaults).
"""

from __future__ import annotations

import sys

from lightning_selrel._lightning import ArgsType
from lightning_selrel.commands.lightning_cli import DEBUG_ENV, SelrelCLI, prog, run_lightning_cli

__all__ = ["COMMANDS", "console", "front_door_help", "main"]


def main(args: ArgsType = None, *, run: bool = True) -> SelrelCLI | None:
    """Run the command line (``fit``, ``validate``, ``test``, ``predict``) with ``args`` or ``sys.argv``.

    Tests call ``main(["fit", "--trainer.fast_dev_run=1"])`` in-process. ``explain ...`` runs
    :mod:`lightning_selrel.commands.explain` and ``cache ...`` :func:`lightning_selrel.commands.cache.main` instead:
    they return None when they succeed and raise ``SystemExit`` with their exit code otherwise.
    """
    argv = sys.argv[1:] if args is None else args
    if run and isinstance(argv, (list, tuple)) and (not argv or argv[0] in ("-h", "--help")):
        print(front_door_help())
        raise SystemExit(0 if argv else 2)
    if isinstance(argv, (list, tuple)) and argv[:1] in (["explain"], ["cache"], ["calibrate"]):
        if argv[0] == "explain":  # imported here: `fit` does not load the commands
            from lightning_selrel.commands.explain import main as command
        elif argv[0] == "calibrate":
            from lightning_selrel.commands.calibrate import main as command
        else:
            from lightning_selrel.commands.cache import main as command
        code = command(list(argv[1:]), prog=f"{prog()} {argv[0]}")
        if code:
            raise SystemExit(code)
        return None
    return run_lightning_cli(args, run=run)


#: Every command of the front door and its purpose, in the order a newcomer meets them.
COMMANDS = {
    "fit": "train a model with the spatial-bias monitor (the default run: no other option needed)",
    "validate": "evaluate a checkpoint on the validation set, the monitor included",
    "test": "evaluate a checkpoint on the test set",
    "predict": "predict the classes of the test clips",
    "calibrate": "train a motion-only and a static-only reference on your data: a scale for spatial bias",
    "explain": "selective explanations of a video file or a live stream, from a checkpoint",
    "cache": "decode UCF-101 once into a memory-mapped frame cache",
}


def front_door_help() -> str:
    """The top-level help: what the project does and every command."""
    program = prog()
    width = max(len(name) for name in COMMANDS)
    lines = [
        f"usage: {program} <command> [options]",
        "",
        "Selective relevance for video models: train C3D and its successors with PyTorch Lightning and watch, in",
        "TensorBoard, how much of their relevance is motion and how much is static context (spatial bias).",
        "",
        "commands:",
        *(f"  {name.ljust(width)}  {purpose}" for name, purpose in COMMANDS.items()),
        "",
        f"Run `{program} <command> --help` for a command's options; presets: --config configs/*.yaml (README.md).",
        f"Configuration errors are one line; set {DEBUG_ENV}=1 to see their traceback.",
    ]
    return "\n".join(lines)


def console() -> None:
    """Entry point of the ``lightning-selrel`` script: like ``python -m lightning_selrel``, exit status 0 on success."""
    main()
