"""Writes a tiny UCF-101-shaped tree of real .avi files (MJPG, written and read back by OpenCV).

Layout under ``base``::

    UCF-101/ApplyEyeMakeup/v_ApplyEyeMakeup_g0{1,2,3}_c01.avi
    UCF-101/HandStandPushups/v_HandStandPushups_g0{1,2,3}_c01.avi   (classInd says HandstandPushups)
    UCF-101/YoYo/v_YoYo_g0{1,2,3}_c01.avi
    ucfTrainTestlist/classInd.txt, trainlist01.txt, testlist01.txt  (CRLF, a blank line)

g01 and g02 of each class are in the train list, g03 in the test list. Special files:
``v_HandStandPushups_g02_c01.avi`` is short (``short_frames``), ``v_YoYo_g02_c01.avi`` is garbage bytes,
and with ``truncated=True`` the test video ``v_YoYo_g03_c01.avi`` is cut in half (its header still
claims every frame). Frames are uniform noise, so any window, crop or flip is identifiable.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from lightning_selrel.data.ucf101.datamodule import UCF101DataModule

CLASS_INDEX = ["ApplyEyeMakeup", "HandstandPushups", "YoYo"]  # as classInd.txt spells them
FOLDERS = ["ApplyEyeMakeup", "HandStandPushups", "YoYo"]  # as the folders are spelled


@dataclass(frozen=True)
class UcfTree:
    """Paths of a written tree."""

    base: Path
    root: Path
    annotations: Path
    short: Path
    corrupt: Path
    truncated: Path | None
    frames: int
    short_frames: int


def write_video(path: Path, frames: np.ndarray, fps: int = 25) -> None:
    """Writes RGB frames (T, H, W, 3) uint8 as an MJPG .avi."""
    height, width = frames.shape[1:3]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (width, height))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write MJPG video {path}")
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()


def noise_video(frames: int, size: tuple[int, int], seed: int) -> np.ndarray:
    """Uniform noise frames (T, H, W, 3) uint8."""
    return np.random.default_rng(seed).integers(0, 256, (frames, *size, 3), dtype=np.uint8)


def write_ucf_tree(
    base: Path,
    *,
    frames: int = 24,
    short_frames: int = 10,
    size: tuple[int, int] = (32, 40),
    truncated: bool = False,
) -> UcfTree:
    """Writes the tree described in the module docstring under ``base`` and returns its paths."""
    root = base / "UCF-101"
    annotations = base / "ucfTrainTestlist"
    annotations.mkdir(parents=True)
    train_lines, test_lines = [], []
    seed = 0
    for label, (name, folder) in enumerate(zip(CLASS_INDEX, FOLDERS, strict=True), start=1):
        (root / folder).mkdir(parents=True)
        for group in (1, 2, 3):
            file_name = f"v_{folder}_g{group:02d}_c01.avi"
            length = short_frames if (folder, group) == ("HandStandPushups", 2) else frames
            seed += 1
            write_video(root / folder / file_name, noise_video(length, size, seed))
            if group < 3:
                train_lines.append(f"{name}/{file_name} {label}")  # the lists use classInd's spelling
            else:
                test_lines.append(f"{name}/{file_name}")
    corrupt = root / "YoYo" / "v_YoYo_g02_c01.avi"
    corrupt.write_bytes(np.random.default_rng(99).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    truncated_path = None
    if truncated:
        truncated_path = root / "YoYo" / "v_YoYo_g03_c01.avi"
        data = truncated_path.read_bytes()
        truncated_path.write_bytes(data[: len(data) // 2])
    (annotations / "classInd.txt").write_bytes(
        "".join(f"{i} {name}\r\n" for i, name in enumerate(CLASS_INDEX, start=1)).encode()
    )
    (annotations / "trainlist01.txt").write_bytes(("\r\n".join(train_lines) + "\r\n\r\n").encode())
    (annotations / "testlist01.txt").write_bytes(("\r\n".join(test_lines) + "\r\n").encode())
    return UcfTree(
        base=base,
        root=root,
        annotations=annotations,
        short=root / "HandStandPushups" / "v_HandStandPushups_g02_c01.avi",
        corrupt=corrupt,
        truncated=truncated_path,
        frames=frames,
        short_frames=short_frames,
    )


# What the UCF-101 tests build their data modules with: tiny frames and crops.
RESIZE = (20, 24)
CROP = 16
CLIP_LEN = 16


def make_dm(root, **kwargs) -> UCF101DataModule:
    options = dict(clip_len=CLIP_LEN, resize=RESIZE, crop=CROP, batch_size=4, num_workers=0)
    options.update(kwargs)
    return UCF101DataModule(str(root), **options)


def quiet_setup(dm: UCF101DataModule, stage: str = "fit") -> UCF101DataModule:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dm.setup(stage)
    return dm
