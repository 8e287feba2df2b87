"""The Lightning this package runs on: ``pytorch_lightning`` (the default), or the unified ``lightning`` package's
``lightning.pytorch``, chosen once per process, before any of it is imported:

1. the environment variable ``LIGHTNING_SELREL_LIGHTNING``: ``lightning`` or ``pytorch_lightning``;
2. else the one the process has already imported (``import lightning.pytorch as pl`` before this package: a
   notebook or script of the unified package gets callbacks its Trainer accepts);
3. else ``pytorch_lightning`` where installed (a dependency of this package), else ``lightning``.

The two are separate namespaces with separate class hierarchies (``lightning.pytorch.Trainer`` rejects a
``pytorch_lightning.Callback``), so they never mix in one process: every module of this package imports Lightning
from here. Runs on either; the suite runs on both (``tests/test_lightning_package.py``).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys

__all__ = [
    "ENV",
    "PACKAGE",
    "ArgsType",
    "BasePredictionWriter",
    "Callback",
    "DummyLogger",
    "LRSchedulerCallable",
    "LightningArgumentParser",
    "LightningCLI",
    "MLFlowLogger",
    "MisconfigurationException",
    "OptimizerCallable",
    "SaveConfigCallback",
    "TensorBoardLogger",
    "WandbLogger",
    "pl",
    "rank_zero_info",
    "rank_zero_warn",
]

#: Set to ``lightning`` or ``pytorch_lightning`` to choose.
ENV = "LIGHTNING_SELREL_LIGHTNING"
_CHOICES = {"pytorch_lightning": "pytorch_lightning", "lightning": "lightning.pytorch"}


def _choose() -> str:
    asked = os.environ.get(ENV, "").strip()
    if asked:
        if asked not in _CHOICES:
            raise ImportError(f"{ENV}={asked!r}: choose one of {', '.join(_CHOICES)}")
        return _CHOICES[asked]
    if "lightning.pytorch" in sys.modules and "pytorch_lightning" not in sys.modules:
        return "lightning.pytorch"
    if "pytorch_lightning" in sys.modules or importlib.util.find_spec("pytorch_lightning") is not None:
        return "pytorch_lightning"
    return "lightning.pytorch"


#: The module path of the Lightning in use: ``pytorch_lightning`` or ``lightning.pytorch``.
PACKAGE = _choose()
pl = importlib.import_module(PACKAGE)
_cli = importlib.import_module(f"{PACKAGE}.cli")
_logger = importlib.import_module(f"{PACKAGE}.loggers.logger")

Callback = pl.callbacks.Callback
BasePredictionWriter = pl.callbacks.BasePredictionWriter
TensorBoardLogger = pl.loggers.TensorBoardLogger
WandbLogger = pl.loggers.WandbLogger
MLFlowLogger = pl.loggers.MLFlowLogger
DummyLogger = _logger.DummyLogger
MisconfigurationException = importlib.import_module(f"{PACKAGE}.utilities.exceptions").MisconfigurationException
rank_zero_info = pl.utilities.rank_zero_info
rank_zero_warn = pl.utilities.rank_zero_warn
ArgsType = _cli.ArgsType
LightningArgumentParser = _cli.LightningArgumentParser
LightningCLI = _cli.LightningCLI
SaveConfigCallback = _cli.SaveConfigCallback
OptimizerCallable = _cli.OptimizerCallable
LRSchedulerCallable = _cli.LRSchedulerCallable
