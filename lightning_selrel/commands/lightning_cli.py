"""The LightningCLI of ``fit``, ``validate``, ``test`` and ``predict``, around :class:`VideoClassifier` by default and
any LightningModule with ``--model mypkg.MyModule`` (LightningCLI's subclass mode).

With no arguments, ``fit`` trains a small C3D on the built-in motion/context data on a CPU in a
few minutes; ``configs/synthetic.yaml`` spells out exactly these defaults (a test keeps the two in
step). Any other data module is chosen with ``--data CLASS`` or a config's ``data: class_path:``;
the data module's ``num_classes``, ``clip_shape`` and ``class_names`` flow into the model, so a
checkpoint carries everything needed to rebuild and annotate it.
"""

from __future__ import annotations

import inspect
import os
import re
import sys
import traceback
from pathlib import Path
from typing import Any, NoReturn

from jsonargparse import Namespace
from typing_extensions import override

from lightning_selrel._lightning import (
    PACKAGE,
    ArgsType,
    DummyLogger,
    LightningArgumentParser,
    LightningCLI,
    MisconfigurationException,
    SaveConfigCallback,
    pl,
)
from lightning_selrel.files import CheckpointError, describe, is_lightning_checkpoint, load_file, unwritable
from lightning_selrel.models.architectures import CLASSIFIER_PATHS, check_architecture, check_model_class, import_path
from lightning_selrel.monitor.calibration import CalibrationError

__all__ = [
    "CALLBACK_DEFAULTS",
    "DATA_DEFAULT",
    "MODEL_CLASS",
    "MODEL_DEFAULTS",
    "TRAINER_DEFAULTS",
    "DEBUG_ENV",
    "SelrelCLI",
    "cli_options",
    "configuration_error",
    "prog",
    "run_lightning_cli",
]

#: The model's class path by default: this project's classifier (``--model mypkg.MyModule`` trains another).
MODEL_CLASS = "lightning_selrel.VideoClassifier"
# The small model the default run trains (the standard C3D is width 64, fc_dim 4096).
MODEL_DEFAULTS: dict[str, Any] = {
    "model": {
        "class_path": MODEL_CLASS,
        "init_args": {
            "width": 8,
            "fc_dim": 128,
            "dropout": 0.2,
            "optimizer": {"class_path": "torch.optim.Adam", "init_args": {"lr": 1e-3}},
            "scheduler": {
                "class_path": "torch.optim.lr_scheduler.ReduceLROnPlateau",
                "init_args": {"mode": "min", "factor": 0.1, "patience": 10},
            },
        },
    }
}
DATA_DEFAULT: dict[str, Any] = {"class_path": "lightning_selrel.MotionContextDataModule"}
TRAINER_DEFAULTS: dict[str, Any] = {
    "max_epochs": 3,
    "log_every_n_steps": 8,
}
# The monitor is a default of `trainer.callbacks`, not a forced callback: it shows in --print_config,
# a config's own `callbacks:` list replaces it, and `callbacks+:` presets add to it.
MONITOR = "lightning_selrel.SelectiveRelevanceMonitor"
CALLBACK_DEFAULTS: list[dict[str, Any]] = [{"class_path": MONITOR}]
#: What ``predict`` adds when the configuration has no prediction writer.
PREDICTION_WRITER = "lightning_selrel.ClipPredictionWriter"


#: Set to 1 to see the traceback of a configuration error instead of its one line.
DEBUG_ENV = "LIGHTNING_SELREL_DEBUG"


def debugging() -> bool:
    """Whether :data:`DEBUG_ENV` asks for tracebacks: ``1``, ``true``, ``yes`` or ``on`` (``0``, ``false``, empty:
    no)."""
    return os.environ.get(DEBUG_ENV, "").strip().lower() in ("1", "true", "yes", "on")


_PACKAGE = str(Path(__file__).resolve().parents[1])  # lightning_selrel/
# Errors a run raises on purpose when its configuration cannot work: one line each, before or during setup.
_CONFIGURATION_ERRORS = (MisconfigurationException, CheckpointError, CalibrationError)
_RAISED_BY_US = (ValueError, TypeError, FileNotFoundError, NotADirectoryError, PermissionError)


class _SaveConfigOnStart(SaveConfigCallback):
    """Lightning's SaveConfigCallback, writing ``config.yaml`` when the run starts instead of in ``setup``: every
    check of the data, the callbacks and the model runs first, so a run that fails there leaves no log folder."""

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._stage = stage

    def _save(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().setup(trainer, pl_module, getattr(self, "_stage", "fit"))

    @override
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._save(trainer, pl_module)

    @override
    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._save(trainer, pl_module)

    @override
    def on_test_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._save(trainer, pl_module)

    @override
    def on_predict_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._save(trainer, pl_module)


def _ours(error: BaseException) -> bool:
    """Raised by this package's own code (its innermost frame is in lightning_selrel)."""
    frames = traceback.extract_tb(error.__traceback__)
    return bool(frames) and frames[-1].filename.startswith(_PACKAGE)


def _owner(error: BaseException) -> str | None:
    """The class whose method raised ``error`` (the innermost frame of this package with a ``self``)."""
    tb, owner = error.__traceback__, None
    while tb is not None:
        frame = tb.tb_frame
        this = frame.f_locals.get("self") if frame.f_code.co_filename.startswith(_PACKAGE) else None
        if this is not None and not isinstance(this, LightningCLI):  # the CLI's own checks need no prefix
            owner = type(this).__name__
        tb = tb.tb_next
    return owner


def configuration_error(error: BaseException) -> str | None:
    """The one-line message of a configuration error, or None for anything else (a bug keeps its traceback).

    A configuration error is one of the exceptions runs raise on purpose (MisconfigurationException, a checkpoint
    or calibration error), or a ValueError / TypeError / OSError raised by this package's own code (its checks of
    arguments, files and data), also when jsonargparse wrapped it in its own error. Errors raised once training
    has started are not passed here (:class:`SelrelCLI` marks them).
    """
    chain, current = [], error
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    for candidate in chain:
        if isinstance(candidate, _CONFIGURATION_ERRORS) or (isinstance(candidate, _RAISED_BY_US) and _ours(candidate)):
            text = (
                " ".join(str(candidate).strip().splitlines()[0].split())
                if str(candidate).strip()
                else type(candidate).__name__
            )
            owner = _owner(candidate)
            return f"{owner}: {text}" if owner and not text.startswith(owner) else text
    return None


class OneLineParser(LightningArgumentParser):
    """LightningCLI's parser, saying a parse error in one line (jsonargparse prints the whole usage, about 60 lines,
    and for a value of a nested option a list of every type it tried): what is wrong, the value, and ``--help``.
    ``LIGHTNING_SELREL_DEBUG=1`` restores jsonargparse's own output."""

    @override
    def error(self, message: str, ex: Exception | None = None) -> NoReturn:
        if debugging() or not self.exit_on_error:
            super().error(message, ex)
        sys.stderr.write(f"{self.prog.replace(' [options]', '')}: error: {condensed(message)}; see --help\n")
        self.exit(2)


def condensed(message: str) -> str:
    """jsonargparse's many-line parse error as one line: for a nested option (``--data.init_args.cue=sideways``) the
    option, its value and the innermost reason (``expected one of 'motion', 'context', ...``), for a float given
    ``nan`` or ``inf`` that it must be a finite number, else the message's first line."""
    lines = [line.strip().removeprefix("- ") for line in message.splitlines() if line.strip()]
    if not lines:
        return "the command line does not parse"
    given = next((line for line in lines if line.startswith("Given value:")), "")
    # an option of a class given as --data.KEY=VALUE: jsonargparse names it in its outermost "Given value" line
    nested = next(
        (found for line in lines if (found := re.search(r"NestedArg\(key='([^']+)', val='([^']*)'\)", line))), None
    )
    group = re.match(r'Parser key "([^"]+)"', lines[0])
    # the innermost error: after "Errors:", the first line that is not a heading ("...:") nor the NoneType branch
    details = lines[lines.index("Errors:") + 1 :] if "Errors:" in lines else lines[1:]
    reason = next(
        (
            line
            for line in details
            if not line.endswith(":")
            and "NoneType" not in line
            and not line.startswith(("Given value", "Subtypes", "Does not validate against any"))
        ),
        None,
    )
    if reason is not None:
        value = reason.split(". Got value: ")[-1] if ". Got value: " in reason else given[len("Given value: ") :]
        reason = reason.split(". Got value")[0].replace("Expected a ", "expected ", 1)
        reason = re.sub(r"typing\.Literal\[(.*)\]", r"one of \1", reason)
        reason = re.sub(r"<class '([^']+)'>", r"\1", reason)
    if nested is None:
        if group and reason:
            return f"--{group.group(1)}{'=' + value if value else ''}: {reason}"
        return lines[0] if not lines[0].endswith(":") or len(lines) == 1 else f"{lines[0]} {lines[1]}"
    key, value = nested.groups()
    option = f"--{group.group(1)}.init_args.{key}" if group else key
    if value.strip().lower() in ("nan", "inf", "+inf", "-inf", "infinity", "-infinity"):
        return f"{option}={value}: {key} must be a finite number"
    return f"{option}={value}: {reason or 'not a valid value'}"


class SelrelCLI(LightningCLI):
    """LightningCLI with the data module's shape and classes linked into the model, configuration errors in one
    line (:func:`configuration_error`), and checks of the log folder and ``--ckpt_path`` before any work."""

    @override
    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        # Lists, not tuples: Lightning compares the model's and the data module's hyperparameters. A user's module
        # that takes none of these is built without them.
        parser.link_arguments("data.num_classes", "model.init_args.num_classes", apply_on="instantiate")
        parser.link_arguments("data.clip_shape", "model.init_args.clip_shape", compute_fn=list, apply_on="instantiate")
        parser.link_arguments(
            "data.class_names", "model.init_args.class_names", compute_fn=list, apply_on="instantiate"
        )
        parser.set_defaults({"data": DATA_DEFAULT, "trainer.callbacks": CALLBACK_DEFAULTS, **MODEL_DEFAULTS})

    @override
    def _parse_ckpt_path(self) -> None:
        """The checkpoint's hyperparameters applied to the configuration, as Lightning's own method does, after saying
        what a file that cannot be resumed from is, and refusing a model class path or an ``arch`` class path that
        the user's own configuration does not name (a checkpoint is data; the configuration is code). Unlike
        Lightning's, a user's module gets only the hyperparameters its constructor takes: LightningCLI records the
        data module's linked values (``clip_shape``, ...) even for a module that does not take them, and would pass
        them back on resume."""
        subcommand = self.config.get("subcommand")
        if not subcommand:
            return
        config = self.config[subcommand]
        ckpt_path = config.get("ckpt_path")
        checkpoint = self._check_ckpt_path(ckpt_path)
        if checkpoint is None:
            return
        model = config.get("model")
        chosen = model.get("class_path") if isinstance(model, Namespace) else None
        fix = "name it yourself with --model {name} (your configuration is yours to trust)"
        check_model_class(checkpoint, ckpt_path, chosen, fix=fix)  # before Lightning's loader imports it
        own = model.get("init_args.arch") if isinstance(model, Namespace) and chosen in CLASSIFIER_PATHS else None
        fix = "name it yourself with --model.arch {arch} (your configuration is yours to trust)"
        check_architecture(checkpoint, ckpt_path, own, fix=fix)
        hparams = dict(checkpoint.get("hyper_parameters") or {})
        hparams.pop("_instantiator", None)
        if not hparams:
            return
        self._check_resume_settings(subcommand, ckpt_path, hparams)
        if "_class_path" in hparams:  # trusted by now: the configuration's class or this project's classifier
            class_path = hparams.pop("_class_path")
            hparams = {"class_path": class_path, "dict_kwargs": _accepted(class_path, hparams)}
        self.config = self.parser.parse_object({subcommand: {"model": hparams}}, self.config)

    def _check_resume_settings(self, subcommand: str, ckpt_path: str, hparams: dict[str, Any]) -> None:
        """A setting the command line or a config asks for that the checkpoint contradicts is refused in one line:
        Lightning would apply the checkpoint's value (the network its weights fit) and say nothing; the data's
        ``num_classes`` and ``clip_shape`` must be the checkpoint's too, or the weights do not load."""
        config = self.config[subcommand]
        model = config.get("model")
        class_path = model.get("class_path") if isinstance(model, Namespace) else None
        asked = model.get("init_args") if isinstance(model, Namespace) else None
        saved_class = hparams.get("_class_path", MODEL_CLASS)
        same_class = class_path == saved_class or {class_path, saved_class} <= CLASSIFIER_PATHS
        linked = ("num_classes", "clip_shape", "class_names")
        if isinstance(asked, Namespace) and same_class and class_path is not None:
            defaults = _defaults(class_path)
            for key, saved in hparams.items():
                if key.startswith("_") or key in linked or key not in asked:
                    continue
                value = asked.get(key)
                unchanged = key in defaults and _same(value, defaults[key])
                if not unchanged and not _same(value, saved):
                    raise MisconfigurationException(
                        f"--ckpt_path {ckpt_path} holds a model with {key}={saved!r}, and the configuration asks for "
                        f"{key}={value!r}: the checkpoint's weights fit its own {key}; drop --model.{key} (or "
                        "train a new model without --ckpt_path)"
                    )
        data = config.get("data")
        data_args = data.get("init_args") if isinstance(data, Namespace) else None
        if isinstance(data_args, Namespace):
            for key in ("num_classes", "clip_shape"):
                given, saved = data_args.get(key), hparams.get(key)
                if given is not None and saved is not None and not _same(given, saved):
                    shown = [list(v) if isinstance(v, (list, tuple)) else v for v in (saved, given)]
                    raise MisconfigurationException(
                        f"--ckpt_path {ckpt_path} holds a model for {key}={shown[0]} and the data give "
                        f"{key}={shown[1]}: set --data.init_args.{key} to the checkpoint's (or train a new model "
                        "without --ckpt_path)"
                    )

    @override
    def _run_subcommand(self, subcommand: str) -> None:
        self._check_log_folder()
        self._check_last(subcommand)
        # Lightning creates the logger's folder (an empty event file) just before the setup checks; a run that fails
        # there must not leave it behind.
        logger = self.trainer.logger
        log_dir = None if logger is None or isinstance(logger, DummyLogger) else getattr(logger, "log_dir", None)
        new = _missing_folders([Path(log_dir)]) if log_dir else set()
        new |= getattr(self, "_new_folders", set())  # those the Trainer itself may have made before this point
        try:
            super()._run_subcommand(subcommand)
        except Exception as error:
            if self.trainer.fit_loop.epoch_loop.batch_progress.total.started > 0:
                error._selrel_started = True  # type: ignore[attr-defined]  # it trained: a traceback, not one line
            elif log_dir and self.trainer.is_global_zero:
                _remove_debris(Path(log_dir), new)
            raise

    def _check_last(self, subcommand: str) -> None:
        """``--ckpt_path last`` must find a ``last*.ckpt``: Lightning otherwise warns among many lines and trains from
        scratch. A ModelCheckpoint without a ``dirpath`` writes into this run's new version folder, which has none."""
        if self.config[subcommand].get("ckpt_path") != "last":
            return
        folders = [Path(cb.dirpath) for cb in self.trainer.checkpoint_callbacks if getattr(cb, "dirpath", None)]
        if any(list(folder.glob("last*.ckpt")) for folder in folders):
            return
        where = ", ".join(str(f) for f in folders) or "this run's new version folder (no dirpath configured)"
        raise MisconfigurationException(
            f"--ckpt_path last: no last*.ckpt in {where}; pass the checkpoint file itself "
            "(lightning_logs/version_N/checkpoints/...ckpt), or give ModelCheckpoint a dirpath and save_last: true"
        )

    def _check_log_folder(self) -> None:
        """The logger's folder must be writable before anything runs (the nearest existing folder is checked)."""
        logger = self.trainer.logger
        folder = getattr(logger, "root_dir", None) or getattr(logger, "save_dir", None)
        if logger is None or folder is None or isinstance(logger, DummyLogger):
            return
        path = Path(folder).expanduser().resolve()
        existing = next((p for p in (path, *path.parents) if p.exists()), None)
        if existing is not None and not existing.is_dir():
            raise MisconfigurationException(
                f"log folder {path}: {existing} is a file, not a folder; pass --trainer.default_root_dir DIR"
            )
        reason = unwritable(existing) if existing is not None else None  # by writing, not os.access (root)
        if reason is not None:
            raise MisconfigurationException(
                f"log folder {path} cannot be written ({existing}: {reason}); pass --trainer.default_root_dir "
                "DIR (or the logger's save_dir) where you can write"
            )

    @staticmethod
    def _check_ckpt_path(ckpt_path: Any) -> Any:
        """``--ckpt_path`` must be a Lightning checkpoint: say what the file is and what to pass instead. Returns the
        checkpoint (read with ``weights_only=True``), or None for a name Lightning resolves (``last``, ...)."""
        if not isinstance(ckpt_path, str) or ckpt_path in ("last", "best", "hpc", "registry") or "://" in ckpt_path:
            return None
        fix = (
            "pass a .ckpt written by fit (lightning_logs/version_N/checkpoints/), or bare weights as --model.pretrained"
        )
        checkpoint = load_file(ckpt_path, what="--ckpt_path", fix=fix, mmap=True)
        if not is_lightning_checkpoint(checkpoint):
            raise CheckpointError(
                f"--ckpt_path {ckpt_path} is {describe(checkpoint)}, not a Lightning checkpoint to resume: {fix}"
            )
        return checkpoint

    @override
    def before_instantiate_classes(self) -> None:
        """Keep one monitor per name: a preset that adds one (``callbacks/selrel_monitor.yaml``) replaces the default,
        a named one (``name: mad``) joins it; and
        the default logger without Lightning's ``hp_metric`` placeholder (the monitor writes the HParams entry)."""
        config = self.config[self.subcommand] if self.subcommand else self.config
        # the folders this run would create (the root and the logger's), before the Trainer makes any of them
        roots = [Path(config.trainer.default_root_dir or os.getcwd())]
        logger_args = getattr(config.trainer.logger, "init_args", None)
        if isinstance(logger_args, Namespace) and logger_args.get("save_dir"):
            roots.append(Path(str(logger_args.get("save_dir"))))
        self._new_folders = _missing_folders([r.expanduser().absolute() for r in roots])
        if config.trainer.logger in (None, True):  # what the Trainer would build, with the placeholder off
            config.trainer.logger = Namespace(
                class_path=f"{PACKAGE}.loggers.TensorBoardLogger",
                init_args=Namespace(save_dir=config.trainer.default_root_dir or os.getcwd(), default_hp_metric=False),
            )
        callbacks = config.trainer.callbacks
        if self.subcommand == "predict" and not any("PredictionWriter" in _class_path(c) for c in callbacks or []):
            # predict keeps what it predicts: one row per clip in the run's folder (a writer of the config's wins)
            callbacks = config.trainer.callbacks = [*(callbacks or []), Namespace(class_path=PREDICTION_WRITER)]
        if not isinstance(callbacks, list):
            return
        # one monitor per name: a later one of the same name (unnamed: the default's) replaces the earlier
        last: dict[Any, int] = {}
        for i, callback in enumerate(callbacks):
            if _class_path(callback).endswith("SelectiveRelevanceMonitor"):
                last[_monitor_name(callback)] = i
        kept = set(last.values())
        callbacks[:] = [
            c for i, c in enumerate(callbacks) if i in kept or not _class_path(c).endswith("SelectiveRelevanceMonitor")
        ]


def _defaults(class_path: str) -> dict[str, Any]:
    """What the command line gives a model's arguments when nobody sets them: the CLI's own defaults for this
    project's classifier (:data:`MODEL_DEFAULTS`), else the constructor's."""
    parameters = inspect.signature(import_path(class_path).__init__).parameters
    out = {k: p.default for k, p in parameters.items() if p.default is not inspect.Parameter.empty}
    if class_path in CLASSIFIER_PATHS:
        out.update(MODEL_DEFAULTS["model"]["init_args"])
    return out


def _same(a: Any, b: Any) -> bool:
    """Equal as configuration values (a tuple and a list of the same items are the same)."""
    normal = [list(v) if isinstance(v, (list, tuple)) else v for v in (a, b)]
    return normal[0] == normal[1]


def _accepted(class_path: str, hparams: dict[str, Any]) -> dict[str, Any]:
    """The hyperparameters the constructor of ``class_path`` takes (all of them when it takes ``**kwargs``)."""
    parameters = inspect.signature(import_path(class_path).__init__).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return hparams
    return {k: v for k, v in hparams.items() if k in parameters}


def _monitor_name(callback: Any) -> str | None:
    """A configured monitor's ``name`` (None: unnamed)."""
    init = getattr(callback, "init_args", None)
    if init is None and isinstance(callback, dict):
        init = callback.get("init_args")
    name = (init.get("name") if isinstance(init, dict) else getattr(init, "name", None)) if init is not None else None
    return name or None


def _class_path(callback: Any) -> str:
    return str(
        getattr(callback, "class_path", "") or (callback.get("class_path", "") if isinstance(callback, dict) else "")
    )


def run_lightning_cli(args: ArgsType = None, *, run: bool = True) -> SelrelCLI | None:
    """The LightningCLI subcommands (``fit``, ``validate``, ``test``, ``predict``) with ``args`` or ``sys.argv``; a
    configuration error is one line on stderr and exit status 2 (set ``LIGHTNING_SELREL_DEBUG=1`` for its
    traceback)."""
    argv = sys.argv[1:] if args is None else args
    try:
        if isinstance(argv, (list, tuple)):
            _check_config_files([str(a) for a in argv])
        return SelrelCLI(args=args, run=run, **cli_options())
    except Exception as error:
        message = None if getattr(error, "_selrel_started", False) else configuration_error(error)
        if message is None or debugging():
            raise
        print(f"{prog()} {_subcommand(argv)}: error: {message}".replace("  ", " "), file=sys.stderr)
        raise SystemExit(2) from None


def _check_config_files(argv: list[str]) -> None:
    """Every ``--config FILE`` of the command line must be a text file (jsonargparse reads a binary one into a
    UnicodeDecodeError deep in its parser): name the file and what it is instead."""
    for i, token in enumerate(argv):
        if token == "--config" and i + 1 < len(argv):
            path = Path(argv[i + 1])
        elif token.startswith("--config="):
            path = Path(token.split("=", 1)[1])
        else:
            continue
        if not path.is_file():
            continue  # jsonargparse also takes a YAML string here, and says itself what is missing
        try:
            path.read_text(encoding="utf-8")
        except UnicodeDecodeError as error:
            raise MisconfigurationException(
                f"--config {path} is not a text (YAML) file (byte {error.start}: {error.reason}); pass a configuration "
                "such as configs/synthetic.yaml"
            ) from None
        except OSError as error:
            raise MisconfigurationException(f"--config {path} cannot be read ({error.strerror})") from None


def _missing_folders(paths: list[Path]) -> set[Path]:
    """The folders among ``paths`` and their ancestors that do not exist yet."""
    return {folder for path in paths for folder in (path, *path.parents) if not folder.exists()}


def _remove_debris(log_dir: Path, new: set[Path]) -> None:
    """Remove what a refused run left: its log folder if it holds nothing but TensorBoard event files, and every
    folder above it that this run created (``new``) and that is now empty."""
    log_dir = log_dir.absolute()
    if log_dir not in new or not log_dir.is_dir():
        return
    if any(not (p.is_file() and p.name.startswith("events.out.tfevents.")) for p in log_dir.iterdir()):
        return  # something was written on purpose: keep it
    for path in log_dir.iterdir():
        path.unlink()
    for folder in (log_dir, *log_dir.parents):
        if folder not in new or not folder.is_dir() or any(folder.iterdir()):
            break
        folder.rmdir()


def prog() -> str:
    """The program as the user typed it: ``lightning-selrel`` or ``python -m lightning_selrel``."""
    name = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else ""
    return "lightning-selrel" if name.startswith("lightning-selrel") else "python -m lightning_selrel"


def _subcommand(argv: Any) -> str:
    first = (
        next((a for a in argv if isinstance(a, str) and not a.startswith("-")), "")
        if isinstance(argv, (list, tuple))
        else ""
    )
    return first if first in ("fit", "validate", "test", "predict") else ""


def cli_options() -> dict[str, Any]:
    """How the command line builds its LightningCLI (``calibrate`` reads its configuration the same way)."""
    return {
        "model_class": pl.LightningModule,
        "subclass_mode_model": True,  # --model mypkg.MyModule; the project's classifier by default
        "subclass_mode_data": True,
        "trainer_defaults": TRAINER_DEFAULTS,
        "seed_everything_default": 0,
        "auto_configure_optimizers": False,  # the model takes its optimiser and scheduler as arguments
        "save_config_callback": _SaveConfigOnStart,  # config.yaml once the setup checks have passed
        "parser_class": OneLineParser,  # a parse error in one line
        "parser_kwargs": {"prog": prog(), "description": "Train, validate, test or predict (a LightningCLI)."},
    }
