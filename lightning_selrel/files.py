"""Files this project reads: PyTorch files read safely, and what a loaded file is.

Every file is read with ``torch.load(weights_only=True)``, which never executes a pickle. When it fails,
:func:`load_file` tells why in one line: the file is missing or empty, is not a PyTorch file at all (text,
random bytes), is a PyTorch file that is damaged or truncated, or holds Python objects that
``weights_only`` refuses (naming the first one). :func:`describe` says what a loaded object is (a Lightning
checkpoint, a bare state dict, ...), so callers can tell a user what to pass instead.

Nothing here imports the rest of the package: the models, the monitor and the commands all read files through it.
"""

from __future__ import annotations

import os
import pickle
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

__all__ = ["CheckpointError", "describe", "is_lightning_checkpoint", "load_file", "unwritable"]

_ZIP_MAGIC = b"PK\x03\x04"  # torch.save's default format is a zip archive
_PICKLE_PROTOCOL = 0x80  # the legacy format starts with a pickle (protocol 2 or later)
_WRAPPERS = ("state_dict", "model_state_dict", "model", "net")


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used; the one-line message names the file, what it is, and the fix."""


def _first_bytes(path: Path, n: int = 4) -> bytes:
    with open(path, "rb") as handle:
        return handle.read(n)


def _reason(path: Path, error: BaseException) -> str:
    """What is wrong with a file ``torch.load(weights_only=True)`` refused, in a few words."""
    head = _first_bytes(path)
    if not head:
        return "the file is empty"
    blocked = re.search(r"unsupported GLOBAL (\S+) whose module \S+ is blocked", str(error), re.IGNORECASE)
    if blocked:
        return f"it asks to run code ({blocked.group(1)}), refused: do not load this file"
    found = re.search(r"Unsupported global: GLOBAL (\S+)", str(error))
    if found:
        return (
            f"Unsupported global: GLOBAL {found.group(1)}: it holds Python objects that weights_only refuses; if "
            "you trust the file, convert it once: torch.save(torch.load(PATH, weights_only=False)['state_dict'], "
            "'weights.pth')"
        )
    if head.startswith(_ZIP_MAGIC):
        return "it is a PyTorch file, but damaged or truncated (its zip archive cannot be read)"
    if head[0] == _PICKLE_PROTOCOL:
        if isinstance(error, EOFError):
            return "it is a PyTorch file (legacy format), but truncated"
        return "it is a PyTorch file (legacy format), but damaged"
    return "it is not a PyTorch file (neither a zip archive nor a pickle: text, random bytes or another format)"


def load_file(path: str | os.PathLike, *, what: str = "checkpoint", fix: str = "", mmap: bool = False) -> Any:
    """``torch.load(path, map_location="cpu", weights_only=True)``, with every failure as one clear line.

    Args:
        path: The file.
        what: What the caller expected, for the message ("checkpoint", "C3D weights", ...).
        fix: What to pass instead, appended to the message.
        mmap: Memory-map the tensors (only the small pickled part is read now); legacy-format files,
            which cannot be memory-mapped, are read whole.

    Raises:
        CheckpointError: If the file is missing or ``torch.load`` refuses it.
    """
    path = Path(path).expanduser()
    tail = f"; {fix}" if fix else ""
    if not path.is_file():
        raise CheckpointError(f"{what} {path} not found{tail}")
    try:
        try:
            return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
        except RuntimeError as error:
            if not (mmap and "mmap" in str(error)):
                raise
            return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError, AttributeError) as error:
        reason = _reason(path, error)
        message = f"cannot read {what} {path} with torch.load(weights_only=True) ({reason}){tail}"
        raise CheckpointError(message) from error


def is_lightning_checkpoint(obj: Any) -> bool:
    """Whether a loaded object is a Lightning checkpoint (``Trainer.save_checkpoint``), not bare weights."""
    return isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping) and "global_step" in obj


def describe(obj: Any) -> str:
    """What a loaded checkpoint object is, in a few words (for messages)."""
    if is_lightning_checkpoint(obj):
        return f"a Lightning checkpoint (epoch {obj.get('epoch', '?')}, step {obj.get('global_step', '?')})"
    if isinstance(obj, Mapping):
        tensors = sum(isinstance(v, torch.Tensor) for v in obj.values())
        if tensors:
            return f"a bare state dict of {tensors} tensors (weights only, no training state)"
        inner = next((key for key in _WRAPPERS if isinstance(obj.get(key), Mapping)), None)
        if inner is not None:
            return f"a state dict wrapped under {inner!r} (weights only, no training state)"
        return f"a dict with keys {list(obj)[:8]}"
    if isinstance(obj, torch.Tensor):
        return f"a single tensor of shape {tuple(obj.shape)}"
    return f"a {type(obj).__name__}"


def unwritable(folder: str | os.PathLike) -> str | None:
    """Why nothing can be written in ``folder`` (an existing one), found by writing: a temporary file is created
    and removed. ``os.access`` says yes to root on a read-only mount or under /proc; this does not. None: it can."""
    import tempfile

    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".selrel-write-test-"):
            return None
    except OSError as error:
        return error.strerror or str(error)
