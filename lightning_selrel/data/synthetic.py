"""The built-in motion/context dataset: procedural clips with ground-truth motion, no download.

Each clip is a textured static background (a colour grating over fine static texture) with one or
more textured squares moving across it in straight lines. The ``cue`` decides what carries the
class:

- ``"motion"``: the direction in which the objects move. Background orientation and colour, object
  appearance, speed and position are drawn independently of the class, so a model can only succeed
  by looking at how things move over time.
- ``"context"``: the orientation and colour of the background. The objects still move, but their
  direction is drawn independently of the class, so only static context predicts it.
- ``"both"``: the two agree, as in real datasets (a pool and a swimming motion).
- ``"conflict"``: the two disagree (cue-conflict clips, as Geirhos et al. 2019's shape-vs-texture images for
  image models): the objects move in the direction of the clip's class (its label), the background shows
  another class, ``context_label``, drawn from a stream of its own. Everything else is the same draw as
  ``"both"``'s clip of that index, so a conflict clip is its ``"both"`` twin with another background. These
  clips test behaviour (:meth:`MotionContextDataModule.conflict_clips`); they are not for training.

Two options make the clips look more like real footage, where the selective threshold and optical
flow are harder pressed (both off by default):

- ``camera_speed``: the camera pans at this many pixels per frame in a random direction per clip
  (independent of the class). The whole scene translates in the image: the background moves, and the
  objects move by their own motion minus the camera's. The class still lives in the objects' motion in
  the *scene*, so a motion model must read motion relative to the background.
- ``object_size``: the side of the moving squares as a range of fractions of the frame's shorter side
  (default 1/6 to 1/4); ``(0.5, 0.7)`` gives large actors that fill much of the frame.

Every clip is a pure function of ``(seed, split, index)``: nothing is read from disk and two
workers, or two runs, render the same pixels. Items are ``(clip, label, motion_mask)`` with
``clip`` uint8 (3, T, H, W), ``label`` an int and ``motion_mask`` bool (T, H, W), True exactly on the
pixels covered by a moving object in that frame. With a panning camera the background moves in the
image too but is not in the mask: the mask marks what moves in the scene (the motion that carries the
class), while optical flow marks every pixel that moves in the image.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from lightning_selrel._lightning import pl
from lightning_selrel.data.conflict import ConflictClips
from lightning_selrel.data.loaders import clip_loader

__all__ = ["Cue", "MotionContextDataset", "MotionContextDataModule", "ClipParams"]

Cue = Literal["motion", "context", "both", "conflict"]
_CUES = ("motion", "context", "both", "conflict")
_SPLITS = {"train": 0, "val": 1, "test": 2}


@dataclass(frozen=True)
class ClipParams:
    """The latent variables of one clip, drawn before rendering (useful to test the cue semantics).

    Attributes:
        label: The class.
        direction: Direction of motion in the scene in radians (0 = right, pi/2 = down), shared by all objects.
        speed: Pixels per frame.
        bg_orientation: Orientation of the background grating in radians, in [0, pi).
        bg_hue: Hue of the background in [0, 1).
        camera: Camera velocity (dx, dy) in pixels per frame; (0, 0) without ``camera_speed``.
        context_label: The class the background shows: ``label`` for the cues ``"context"`` and ``"both"``,
            another class for ``"conflict"``, None for ``"motion"`` (a random background).
    """

    label: int
    direction: float
    speed: float
    bg_orientation: float
    bg_hue: float
    camera: tuple[float, float] = (0.0, 0.0)
    context_label: int | None = None


def _hue_to_rgb(hue: float, saturation: float, value: float) -> np.ndarray:
    """HSV to RGB in [0, 255] for one colour (numpy only, no colorsys round trip per pixel)."""
    h = (hue % 1.0) * 6.0
    c = value * saturation
    x = c * (1 - abs(h % 2 - 1))
    r, g, b = [(c, x, 0), (x, c, 0), (0, c, x), (0, x, c), (x, 0, c), (c, 0, x)][int(h) % 6]
    m = value - c
    return np.array([r + m, g + m, b + m], dtype=np.float32) * 255.0


def _camera_offset(camera: tuple[float, float], offset: float) -> tuple[int, int]:
    """The camera's displacement (dx, dy) in whole pixels ``offset`` frames from the clip's middle."""
    return int(round(camera[0] * offset)), int(round(camera[1] * offset))


def _floor(value: float) -> int:
    """``floor`` that forgives float rounding just below an integer (48 * (1/6) is 8, not 7.999...)."""
    return math.floor(value + 1e-9)


class MotionContextDataset(Dataset):
    """Procedural clips whose class lives in motion, in static context, or in both.

    Args:
        size: Number of clips.
        num_classes: Number of classes (at least 4). Class k moves in direction ``2 pi k / K`` and/or
            shows a background grating at orientation ``pi k / K`` with hue ``k / K``.
        clip_shape: (T, H, W) of every clip; T >= 2.
        cue: What carries the class: ``"motion"``, ``"context"`` or ``"both"``; ``"conflict"`` for cue-conflict
            clips (motion shows the label, the background another class: see :meth:`params`).
        noise: Standard deviation of per-frame Gaussian pixel noise, in pixel levels (0-255).
        num_objects: Moving squares per clip (all move in the clip's direction).
        speed: Range (low, high) of object speed in pixels per frame.
        seed: Base seed; together with ``split`` and the index it fixes every pixel.
        split: ``"train"``, ``"val"`` or ``"test"``; the three draw disjoint random streams.
        camera_speed: Camera pan in pixels per frame, in a random direction per clip (0: a still camera).
        object_size: Range (low, high) of the objects' side, as fractions of the frame's shorter side.
    """

    def __init__(
        self,
        *,
        size: int,
        num_classes: int = 4,
        clip_shape: Sequence[int] = (16, 48, 48),
        cue: Cue = "both",
        noise: float = 4.0,
        num_objects: int = 1,
        speed: tuple[float, float] = (1.5, 2.5),
        seed: int = 0,
        split: str = "train",
        camera_speed: float = 0.0,
        object_size: tuple[float, float] = (1 / 6, 1 / 4),
    ) -> None:
        if cue not in _CUES:
            raise ValueError(f"cue must be one of {list(_CUES)}, got {cue!r}")
        if num_classes < 4:
            raise ValueError(f"num_classes must be at least 4, got {num_classes}")
        if split not in _SPLITS:
            raise ValueError(f"split must be one of {list(_SPLITS)}, got {split!r}")
        clip_shape = tuple(int(s) for s in clip_shape)
        if len(clip_shape) != 3 or clip_shape[0] < 2 or min(clip_shape[1:]) < 8:
            raise ValueError(f"clip_shape must be (T, H, W) with T >= 2 and H, W >= 8, got {clip_shape}")
        if size < 0 or num_objects < 1 or noise < 0 or not 0 < speed[0] <= speed[1]:
            raise ValueError(
                f"invalid dataset parameters: size={size} (>= 0), num_objects={num_objects} (>= 1), "
                f"noise={noise} (>= 0), speed={speed} (0 < low <= high)"
            )
        if not (math.isfinite(camera_speed) and camera_speed >= 0):
            raise ValueError(f"camera_speed must be a finite number of pixels per frame >= 0, got {camera_speed}")
        if len(object_size) != 2 or not 0 < object_size[0] <= object_size[1] <= 1:
            raise ValueError(
                f"object_size must be (low, high) fractions of the frame with 0 < low <= high <= 1, got {object_size}"
            )
        self.size = int(size)
        self.num_classes = int(num_classes)
        self.clip_shape: tuple[int, int, int] = clip_shape  # type: ignore[assignment]
        self.cue: Cue = cue
        self.noise = float(noise)
        self.num_objects = int(num_objects)
        self.speed = (float(speed[0]), float(speed[1]))
        self.seed = int(seed)
        self.split = split
        self.camera_speed = float(camera_speed)
        self.object_size = (float(object_size[0]), float(object_size[1]))

    def __len__(self) -> int:
        return self.size

    def like(self, **changes: Any) -> MotionContextDataset:
        """The same scenes with some options changed (``clip_shape=``, ``cue=``, ...): every other draw stays."""
        options = dict(
            size=self.size,
            num_classes=self.num_classes,
            clip_shape=self.clip_shape,
            cue=self.cue,
            noise=self.noise,
            num_objects=self.num_objects,
            speed=self.speed,
            seed=self.seed,
            split=self.split,
            camera_speed=self.camera_speed,
            object_size=self.object_size,
        )
        return MotionContextDataset(**{**options, **changes})

    @property
    def labels(self) -> list[int]:
        """The class of every clip, without rendering any (clip ``i`` is of class ``i % num_classes``)."""
        return [i % self.num_classes for i in range(self.size)]

    def _rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, _SPLITS[self.split], index])

    def params(self, index: int) -> ClipParams:
        """The latent variables of clip ``index`` (the same draw :meth:`__getitem__` renders)."""
        return self._draw(index, self._rng(index))

    def _camera(self, index: int) -> tuple[float, float]:
        """Camera velocity of clip ``index``, from a stream of its own: the other draws, and so every clip
        of a still camera, are the same whatever ``camera_speed`` is."""
        if self.camera_speed == 0:
            return 0.0, 0.0
        angle = np.random.default_rng([self.seed, _SPLITS[self.split], index, 1]).uniform(0.0, 2 * math.pi)
        return self.camera_speed * math.cos(angle), self.camera_speed * math.sin(angle)

    def _context_class(self, index: int, label: int) -> int:
        """The class the background shows: the label, or for ``"conflict"`` another class, uniform over the
        other K - 1 from a stream of its own (the other draws stay those of the ``"both"`` clip)."""
        if self.cue != "conflict":
            return label
        shift = np.random.default_rng([self.seed, _SPLITS[self.split], index, 2]).integers(1, self.num_classes)
        return (label + int(shift)) % self.num_classes

    def _draw(self, index: int, rng: np.random.Generator) -> ClipParams:
        k = self.num_classes
        label = index % k  # balanced classes; the loader shuffles (see `labels`)
        # Both cues are always drawn, so the random stream is the same whatever the cue.
        random_direction = rng.uniform(0.0, 2 * math.pi)
        random_orientation = rng.uniform(0.0, math.pi)
        random_hue = rng.uniform(0.0, 1.0)
        jitter_dir, jitter_ori, jitter_hue = rng.uniform(-0.5, 0.5, size=3)
        speed = rng.uniform(*self.speed)
        shown = self._context_class(index, label)  # the class of the background
        class_direction = 2 * math.pi * (label + 0.4 * jitter_dir) / k
        class_orientation = math.pi * (shown + 0.4 * jitter_ori) / k
        class_hue = (shown + 0.4 * jitter_hue) / k
        by_motion = self.cue in ("motion", "both", "conflict")
        by_context = self.cue in ("context", "both", "conflict")
        return ClipParams(
            label=label,
            direction=class_direction if by_motion else random_direction,
            speed=speed,
            bg_orientation=(class_orientation if by_context else random_orientation) % math.pi,
            bg_hue=(class_hue if by_context else random_hue) % 1.0,
            camera=self._camera(index),
            context_label=shown if by_context else None,
        )

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, torch.Tensor]:
        if not 0 <= index < self.size:
            raise IndexError(f"index {index} out of range for a dataset of {self.size} clips")
        rng = self._rng(index)
        p = self._draw(index, rng)
        t_len, height, width = self.clip_shape
        # The camera's offset at frame t, rounded to whole pixels so the static texture stays exact.
        offsets = [_camera_offset(p.camera, t - (t_len - 1) / 2) for t in range(t_len)]
        margin = max((max(abs(dx), abs(dy)) for dx, dy in offsets), default=0)
        background = self._background(p, rng, margin)  # (H + 2 margin, W + 2 margin, 3) float32
        frames = np.stack(
            [background[margin + dy : margin + dy + height, margin + dx : margin + dx + width] for dx, dy in offsets]
        )  # (T, H, W, 3)
        mask = np.zeros((t_len, height, width), dtype=bool)
        vx, vy = p.speed * math.cos(p.direction), p.speed * math.sin(p.direction)
        short = min(height, width)
        low, high = self.object_size
        for _ in range(self.num_objects):
            side = int(rng.integers(max(4, _floor(short * low)), max(5, _floor(short * high)) + 1))
            texture = self._object_texture(side, rng)  # (side, side, 3)
            # The trajectory is centred near the middle so the object crosses the frame.
            cx = width / 2 + rng.uniform(-0.15, 0.15) * width
            cy = height / 2 + rng.uniform(-0.15, 0.15) * height
            for t in range(t_len):
                offset = t - (t_len - 1) / 2
                # Image position = scene position - camera offset.
                x0 = int(round(cx + vx * offset - side / 2)) - offsets[t][0]
                y0 = int(round(cy + vy * offset - side / 2)) - offsets[t][1]
                xa, xb = max(x0, 0), min(x0 + side, width)
                ya, yb = max(y0, 0), min(y0 + side, height)
                if xa >= xb or ya >= yb:
                    continue
                frames[t, ya:yb, xa:xb] = texture[ya - y0 : yb - y0, xa - x0 : xb - x0]
                mask[t, ya:yb, xa:xb] = True
        if self.noise > 0:
            frames = frames + rng.normal(0.0, self.noise, size=frames.shape).astype(np.float32)
        clip = np.clip(np.rint(frames), 0, 255).astype(np.uint8).transpose(3, 0, 1, 2)  # (3, T, H, W)
        return torch.from_numpy(np.ascontiguousarray(clip)), p.label, torch.from_numpy(mask)

    def _background(self, p: ClipParams, rng: np.random.Generator, margin: int = 0) -> np.ndarray:
        """A colour grating at ``p.bg_orientation`` over a fine static texture, (H + 2 margin, W + 2 margin, 3)
        in [0, 255]: the frame plus ``margin`` pixels on every side for the camera to pan over."""
        _, height, width = self.clip_shape
        yy, xx = np.mgrid[-margin : height + margin, -margin : width + margin].astype(np.float32)
        period = rng.uniform(7.0, 11.0)
        phase = rng.uniform(0.0, 2 * math.pi)
        along = xx * math.cos(p.bg_orientation) + yy * math.sin(p.bg_orientation)
        wave = 0.5 + 0.5 * np.sin(2 * math.pi * along / period + phase)  # (H', W') in [0, 1]
        light = _hue_to_rgb(p.bg_hue, 0.6, 0.85)
        dark = _hue_to_rgb(p.bg_hue, 0.8, 0.35)
        image = dark + (light - dark) * wave[..., None]
        texture = rng.normal(0.0, 10.0, size=(height + 2 * margin, width + 2 * margin, 1)).astype(np.float32)
        return (image + texture).astype(np.float32)

    @staticmethod
    def _object_texture(side: int, rng: np.random.Generator) -> np.ndarray:
        """A random two-colour checkerboard, so every pixel of a moving object changes over time."""
        cell = int(rng.integers(2, 4))
        a = _hue_to_rgb(rng.uniform(), rng.uniform(0.2, 0.9), rng.uniform(0.8, 1.0))
        b = _hue_to_rgb(rng.uniform(), rng.uniform(0.2, 0.9), rng.uniform(0.05, 0.3))
        yy, xx = np.mgrid[0:side, 0:side]
        checker = ((yy // cell + xx // cell) % 2).astype(np.float32)[..., None]
        return a + (b - a) * checker

    def class_names(self) -> list[str]:
        """Readable names: what each class looks like under this cue."""
        names = []
        for k in range(self.num_classes):
            direction = f"moves {round(360 * k / self.num_classes)}deg"
            stripes = f"stripes {round(180 * k / self.num_classes)}deg"
            both = f"{direction}, {stripes}"
            names.append({"motion": direction, "context": stripes, "both": both, "conflict": direction}[self.cue])
        return names


class MotionContextDataModule(pl.LightningDataModule):
    """Train/val/test splits of :class:`MotionContextDataset`, the CLI's default data.

    Batches are ``(clips uint8 (B, 3, T, H, W), labels int64 (B,), motion_masks bool (B, T, H, W))``.

    Args:
        num_classes: Number of classes (at least 4).
        clip_shape: (T, H, W) of every clip.
        cue: What carries the class: ``"motion"``, ``"context"`` or ``"both"`` (the data to train on; the
            cue-conflict clips of the monitor's behavioural test come from :meth:`conflict_clips`).
        train_size: Training clips per epoch (at least 1).
        val_size: Validation clips (0 turns validation off; the monitor and the default scheduler need it).
        test_size: Test (and predict) clips.
        noise: Per-frame Gaussian pixel noise, in pixel levels.
        num_objects: Moving objects per clip.
        batch_size: Clips per batch.
        num_workers: DataLoader worker processes (rendering is cheap: 0 is usually fastest).
        seed: Seed of the clips (independent of the training seed).
        camera_speed: Camera pan in pixels per frame, in a random direction per clip (0: a still camera).
        object_size: Range (low, high) of the objects' side, as fractions of the frame's shorter side;
            ``[0.5, 0.7]`` gives large actors.
    """

    def __init__(
        self,
        num_classes: int = 4,
        clip_shape: Sequence[int] = (16, 48, 48),
        cue: Cue = "both",
        train_size: int = 1024,
        val_size: int = 256,
        test_size: int = 256,
        noise: float = 4.0,
        num_objects: int = 1,
        batch_size: int = 32,
        num_workers: int = 0,
        seed: int = 0,
        camera_speed: float = 0.0,
        object_size: tuple[float, float] = (1 / 6, 1 / 4),
    ) -> None:
        super().__init__()
        if cue == "conflict":
            raise ValueError(
                "cue 'conflict' makes cue-conflict clips for evaluation, not a training set: train with cue "
                "motion, context or both; the monitor reads the conflict clips from conflict_clips(stage)"
            )
        for name, value, low in (
            ("train_size", train_size, 1),
            ("val_size", val_size, 0),
            ("test_size", test_size, 0),
            ("batch_size", batch_size, 1),
            ("num_workers", num_workers, 0),
        ):
            if not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        clip_shape = [int(s) for s in clip_shape]  # a plain list in the hyperparameters, as the model's
        object_size = (float(object_size[0]), float(object_size[1]))
        self.save_hyperparameters()
        common = dict(
            num_classes=num_classes,
            clip_shape=clip_shape,
            cue=cue,
            noise=noise,
            num_objects=num_objects,
            seed=seed,
            camera_speed=camera_speed,
            object_size=object_size,
        )
        # Datasets are cheap to construct (clips render lazily), so errors surface at construction.
        self.train_set = MotionContextDataset(size=train_size, split="train", **common)
        self.val_set = MotionContextDataset(size=val_size, split="val", **common)
        self.test_set = MotionContextDataset(size=test_size, split="test", **common)
        self.batch_size = batch_size
        self.num_workers = num_workers

    @property
    def num_classes(self) -> int:
        return self.train_set.num_classes

    @property
    def clip_shape(self) -> tuple[int, int, int]:
        return self.train_set.clip_shape

    @property
    def class_names(self) -> list[str]:
        return self.train_set.class_names()

    def long_clips(self, stage: str, factor: int) -> MotionContextDataset:
        """The clips of ``stage`` (``"train"``, ``"val"``, ``"test"``) with ``factor`` times as many frames: the same
        scenes, whose middle T frames are the objects' positions of the usual clips (``calibrate``'s speed task)."""
        base = {"train": self.train_set, "val": self.val_set, "test": self.test_set}[stage]
        t, h, w = base.clip_shape
        return base.like(clip_shape=(factor * t, h, w))

    def conflict_clips(self, stage: str) -> ConflictClips:
        """Cue-conflict clips for the monitor's behavioural test: the clips of ``stage`` (``"val"``, ``"test"``)
        with the objects' motion of their class and the background of another. Items are ``(clip uint8
        (3, T, H, W), motion_label, context_label)``; any data module may offer a ``conflict_clips(stage)`` with
        such items (see :class:`~lightning_selrel.data.conflict.ConflictClips`)."""
        if stage not in ("val", "test"):
            raise ValueError(f"conflict clips are for evaluation: stage must be 'val' or 'test', got {stage!r}")
        return ConflictClips((self.val_set if stage == "val" else self.test_set).like(cue="conflict"))

    def _loader(self, dataset: Dataset, shuffle: bool) -> DataLoader:
        return clip_loader(dataset, batch_size=self.batch_size, shuffle=shuffle, num_workers=self.num_workers)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, shuffle=False)
