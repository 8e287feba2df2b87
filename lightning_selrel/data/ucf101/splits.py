"""UCF-101's official split files: ``classInd.txt``, ``trainlist0N.txt`` and ``testlist0N.txt``.

``classInd.txt`` holds ``1 ApplyEyeMakeup`` lines (1-indexed), a train list ``ApplyEyeMakeup/v_..._g08_c01.avi 1``
lines and a test list paths only. The class folder of a path decides its label, matched case-insensitively:
UCF-101 spells ``HandstandPushups`` in classInd and ``HandStandPushups`` for the folder.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

__all__ = ["LAYOUT", "FolderIndex", "read_class_index", "read_split"]

LAYOUT = """expected layout:
  UCF-101/                  <- root: one folder of .avi files per class
    ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi
    ...
  ucfTrainTestlist/         <- annotation_dir; by default looked for as root/ucfTrainTestlist,
    classInd.txt               root/../ucfTrainTestlist, then root itself
    trainlist01.txt  testlist01.txt  (and 02, 03)"""


def _lines(path: Path) -> list[tuple[int, str]]:
    """Non-blank lines of a text file with their 1-based numbers; CRLF and surrounding spaces dropped."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        raise ValueError(
            f"{path} is not a UTF-8 text file (byte {error.start}: {error.reason}); use the split files as "
            "UCF-101 distributes them (or save yours as UTF-8)"
        ) from None
    return [(number, line.strip()) for number, line in enumerate(text.splitlines(), start=1) if line.strip()]


def read_class_index(path: str | os.PathLike) -> list[str]:
    """Class names from ``classInd.txt`` ("1 ApplyEyeMakeup" per line), in 0-indexed order.

    Raises:
        FileNotFoundError: If the file does not exist.
        ValueError: If a line is malformed or the indices are not 1 .. N without gaps or repeats.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"class index {path} not found\n{LAYOUT}")
    entries: dict[int, str] = {}
    for number, line in _lines(path):
        parts = line.split()
        if len(parts) != 2 or not parts[0].isdigit():
            raise ValueError(f"{path}, line {number}: expected '<index> <ClassName>', got {line!r}")
        index = int(parts[0])
        if index in entries:
            raise ValueError(f"{path}, line {number}: index {index} appears twice")
        entries[index] = parts[1]
    if not entries:
        raise ValueError(f"{path} lists no class; it needs a '<index> <ClassName>' line per class\n{LAYOUT}")
    if sorted(entries) != list(range(1, len(entries) + 1)):
        raise ValueError(f"{path}: class indices must be 1 .. N without gaps, got {sorted(entries)}")
    names = [entries[i] for i in range(1, len(entries) + 1)]
    lowered = [name.lower() for name in names]
    if len(set(lowered)) != len(lowered):
        raise ValueError(f"{path}: class names must differ other than in case, got {names}")
    return names


def read_split(path: str | os.PathLike, class_names: Sequence[str]) -> list[tuple[str, int]]:
    """Entries of a train or test list as (relative video path, 0-indexed label).

    The label comes from the class folder in the path, matched to ``class_names`` case-insensitively
    (UCF-101 spells ``HandstandPushups`` in classInd and ``HandStandPushups`` elsewhere). A label
    given on the line (train lists, 1-indexed) must agree with it.

    Raises:
        FileNotFoundError: If the file does not exist.
        ValueError: If a line names an unknown class or its label disagrees with its folder.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"split file {path} not found\n{LAYOUT}")
    by_name = {name.lower(): label for label, name in enumerate(class_names)}
    entries = []
    for number, line in _lines(path):
        parts = line.replace("\\", "/").split()
        relative = parts[0]
        folder = relative.split("/")[0] if "/" in relative else ""
        label = by_name.get(folder.lower())
        if label is None:
            raise ValueError(
                f"{path}, line {number}: class folder {folder!r} of {relative!r} is not in classInd.txt; "
                "use the classInd.txt that came with these split files"
            )
        if len(parts) > 1 and parts[1].isdigit() and int(parts[1]) - 1 != label:
            raise ValueError(
                f"{path}, line {number}: label {parts[1]} disagrees with folder {folder!r}, which is "
                f"class {label + 1} in classInd.txt; use the classInd.txt that came with these split files"
            )
        entries.append((relative, label))
    return entries


class FolderIndex:
    """Case-insensitive lookup of ``Class/video.avi`` under the root, one directory listing per folder."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.folders = {entry.name.lower(): entry.name for entry in os.scandir(root) if entry.is_dir()}
        self._files: dict[str, dict[str, str]] = {}

    def folder(self, name: str) -> str | None:
        return self.folders.get(name.lower())

    def resolve(self, relative: str) -> Path | None:
        folder_name, file_name = relative.split("/", 1)
        folder = self.folder(folder_name)
        if folder is None:
            return None
        if folder not in self._files:
            self._files[folder] = {entry.name.lower(): entry.name for entry in os.scandir(self.root / folder)}
        actual = self._files[folder].get(file_name.lower())
        return self.root / folder / actual if actual is not None else None
