"""Module paths of release 0.1.0, kept for one release: ``import lightning_selrel.ucf101`` still works, warns once
that it moved, and gives the module that now holds its names (the same module object, so classes are identical).

The paths are resolved by a finder on ``sys.meta_path`` that knows only the names below: nothing is imported until
an old path is asked for, and a new path never goes through it. Remove this file in 0.3.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings
from types import ModuleType

#: Old module (release 0.1.0) -> the module that now defines its public names.
MOVED: dict[str, str] = {
    "architectures": "models.architectures",
    "behaviour": "monitor.behaviour",
    "calibration": "monitor.calibration",
    "checkpoint": "models.checkpoint",
    "classifier": "models.classifier",
    "cli": "commands",
    "cli_calibrate": "commands.calibrate",
    "cli_explain": "commands.explain",
    "dashboard": "monitor.dashboard",
    "dtd": "relevance.dtd",
    "explain": "relevance.methods",
    "flow": "metrics.flow",
    "frames": "data.frames",
    "measure": "relevance.measure",
    "model": "models.c3d",
    "probe_set": "monitor.probe_set",
    "render": "monitor.render",
    "resnet3d": "models.resnet3d",
    "selective": "relevance.selective",
    "stream": "commands.stream",
    "synthetic": "data.synthetic",
    "tags": "metrics.tags",
    "ucf101": "data.ucf101",
    "ucf101_clips": "data.clips",
    "ucf101_lists": "data.ucf101.splits",
    "video_cache": "data.cache",
    "weights": "models.weights",
    "windows": "commands.windows",
}
_PACKAGE = __name__.rpartition(".")[0]


class _MovedLoader(importlib.abc.Loader):
    def __init__(self, new: str) -> None:
        self.new = new

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        warnings.warn(
            f"{spec.name} moved to {self.new} in lightning_selrel 0.2; the old path works until 0.3",
            DeprecationWarning,
            stacklevel=2,
        )
        module = importlib.import_module(self.new)
        self._own = (module.__spec__, module.__loader__)
        return module

    def exec_module(self, module: ModuleType) -> None:
        """Nothing to run: the new module is already imported. The import system has just set the old path's spec
        on it; its own spec and loader are put back, so the module is exactly the one at the new path."""
        module.__spec__, module.__loader__ = self._own


class _MovedFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: object = None, target: object = None):  # noqa: ANN201
        package, _, leaf = fullname.rpartition(".")
        if package != _PACKAGE or leaf not in MOVED:
            return None
        return importlib.machinery.ModuleSpec(fullname, _MovedLoader(f"{_PACKAGE}.{MOVED[leaf]}"))


def install() -> None:
    """Put the finder on ``sys.meta_path`` (once)."""
    if not any(isinstance(finder, _MovedFinder) for finder in sys.meta_path):
        sys.meta_path.append(_MovedFinder())
