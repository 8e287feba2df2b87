"""The built-in motion/context dataset: determinism, exact motion masks, and the cue semantics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lightning_selrel.data.synthetic import MotionContextDataModule, MotionContextDataset

SHAPE = (16, 32, 32)


def test_items_have_the_documented_types_and_shapes():
    clip, label, mask = MotionContextDataset(size=4, clip_shape=SHAPE)[1]
    assert clip.dtype == torch.uint8 and clip.shape == (3, *SHAPE)
    assert isinstance(label, int) and label == 1
    assert mask.dtype == torch.bool and mask.shape == SHAPE
    assert mask.any(dim=(1, 2)).all(), "the object is visible (and moving) in every frame"


def test_clips_are_deterministic_from_the_seed_and_split():
    a = MotionContextDataset(size=6, clip_shape=SHAPE, seed=3)
    b = MotionContextDataset(size=6, clip_shape=SHAPE, seed=3)
    for i in range(6):
        for x, y in zip(a[i][::2], b[i][::2], strict=True):
            assert torch.equal(x, y)
    other_seed = MotionContextDataset(size=6, clip_shape=SHAPE, seed=4)
    other_split = MotionContextDataset(size=6, clip_shape=SHAPE, seed=3, split="val")
    assert not torch.equal(a[0][0], other_seed[0][0])
    assert not torch.equal(a[0][0], other_split[0][0])


@pytest.mark.parametrize("cue", ["motion", "context", "both"])
def test_motion_mask_marks_exactly_the_moving_pixels(cue):
    ds = MotionContextDataset(size=12, clip_shape=SHAPE, cue=cue, noise=0.0, num_objects=2)
    for i in range(len(ds)):
        clip, _, mask = ds[i]
        frames = clip.permute(1, 2, 3, 0).numpy().astype(int)  # (T, H, W, 3)
        m = mask.numpy()
        # Static pixels never change: wherever the mask is off, the pixel shows the same background.
        background = np.where(m[..., None], -1, frames)
        reference = background.max(axis=0)  # the background value (every pixel is uncovered in some frame)
        assert (reference >= 0).all()
        assert ((background == reference) | m[..., None]).all()
        # Marked pixels are covered by an object: they differ from the background there.
        differs = (frames != reference).any(axis=-1)
        assert differs[m].mean() > 0.95
        assert not differs[~m].any()


def _nearest_centroid_accuracy(features: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Fit class means on the first half, classify the second half by the nearest mean."""
    half = len(labels) // 2
    centroids = np.stack([features[:half][labels[:half] == c].mean(axis=0) for c in range(k)])
    dist = ((features[half:, None, :] - centroids[None]) ** 2).sum(axis=-1)
    return float((dist.argmin(axis=1) == labels[half:]).mean())


def _features(ds: MotionContextDataset) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Motion and background statistics measured from the pixels and masks alone."""
    motion, background, labels = [], [], []
    for i in range(len(ds)):
        clip, label, mask = ds[i]
        m = mask.numpy()
        t_idx, y_idx, x_idx = np.nonzero(m)
        first, last = t_idx == t_idx.min(), t_idx == t_idx.max()
        dx = x_idx[last].mean() - x_idx[first].mean()
        dy = y_idx[last].mean() - y_idx[first].mean()
        motion.append(np.array([dx, dy]) / (np.hypot(dx, dy) + 1e-9))  # direction of travel
        frame = clip[:, 0].permute(1, 2, 0).numpy().astype(float)  # (H, W, 3)
        colour = frame[~m[0]].mean(axis=0) / 255.0
        gray = frame.mean(axis=-1)
        gy, gx = np.gradient(gray)
        # Orientation of the background texture from the structure tensor (doubled angle).
        jxx, jyy, jxy = (gx * gx)[~m[0]].sum(), (gy * gy)[~m[0]].sum(), (gx * gy)[~m[0]].sum()
        angle = np.arctan2(2 * jxy, jxx - jyy)
        background.append(np.concatenate([colour, [np.cos(angle), np.sin(angle)]]))
        labels.append(label)
    return np.stack(motion), np.stack(background), np.array(labels)


@pytest.mark.parametrize("cue", ["motion", "context", "both"])
def test_the_cue_decides_what_predicts_the_label(cue):
    k = 4
    ds = MotionContextDataset(size=400, num_classes=k, clip_shape=SHAPE, cue=cue, seed=11)
    motion, background, labels = _features(ds)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(labels))  # balanced labels come in order; shuffle before splitting
    motion, background, labels = motion[order], background[order], labels[order]
    motion_acc = _nearest_centroid_accuracy(motion, labels, k)
    background_acc = _nearest_centroid_accuracy(background, labels, k)
    chance = 1.0 / k
    if cue in ("motion", "both"):
        assert motion_acc > 0.9
    else:
        assert motion_acc < chance + 0.12, "in `context`, motion must not predict the label"
    if cue in ("context", "both"):
        assert background_acc > 0.9
    else:
        assert background_acc < chance + 0.12, "in `motion`, the background must not predict the label"


def test_bad_parameters_fail_clearly():
    with pytest.raises(ValueError, match="cue must be one of"):
        MotionContextDataset(size=1, cue="colour")
    with pytest.raises(ValueError, match="at least 4"):
        MotionContextDataset(size=1, num_classes=3)
    with pytest.raises(ValueError, match="clip_shape"):
        MotionContextDataset(size=1, clip_shape=(1, 32, 32))


def test_datamodule_batches_and_links():
    dm = MotionContextDataModule(num_classes=5, clip_shape=SHAPE, train_size=10, val_size=6, batch_size=4)
    assert dm.num_classes == 5 and dm.clip_shape == SHAPE and len(dm.class_names) == 5
    clips, labels, masks = next(iter(dm.val_dataloader()))
    assert clips.shape == (4, 3, *SHAPE) and clips.dtype == torch.uint8
    assert labels.dtype == torch.int64 and masks.shape == (4, *SHAPE) and masks.dtype == torch.bool
    # Validation order is fixed (the monitor's probe set relies on it).
    again = next(iter(dm.val_dataloader()))[0]
    assert torch.equal(clips, again)


def test_a_panning_camera_translates_the_whole_background_and_the_mask_keeps_the_objects():
    ds = MotionContextDataset(size=6, clip_shape=SHAPE, cue="motion", noise=0.0, camera_speed=1.5, seed=2)
    still = MotionContextDataset(size=6, clip_shape=SHAPE, cue="motion", noise=0.0, seed=2)
    t_len = SHAPE[0]
    for i in range(len(ds)):
        clip, label, mask = ds[i]
        camera = ds.params(i).camera
        assert abs(np.hypot(*camera) - 1.5) < 1e-9 and still.params(i).camera == (0.0, 0.0)
        assert ds.params(i).direction == still.params(i).direction and label == still[i][1]  # same scene
        frames = clip.permute(1, 2, 3, 0).numpy().astype(int)  # (T, H, W, 3)
        m = mask.numpy()
        offsets = [
            (round(camera[0] * (t - (t_len - 1) / 2)), round(camera[1] * (t - (t_len - 1) / 2))) for t in range(t_len)
        ]
        dx, dy = offsets[-1][0] - offsets[0][0], offsets[-1][1] - offsets[0][1]
        assert abs(dx) + abs(dy) >= 10  # the view really moved over the clip
        # Where neither frame shows an object, frame T-1 is frame 0 shifted by the camera's displacement.
        h, w = SHAPE[1:]
        ys, xs = np.mgrid[max(0, -dy) : min(h, h - dy), max(0, -dx) : min(w, w - dx)]
        later_y, later_x = ys + dy, xs + dx
        free = ~m[-1, ys, xs] & ~m[0, later_y, later_x]
        np.testing.assert_array_equal(frames[-1, ys, xs][free], frames[0, later_y, later_x][free])
        assert m.any(axis=(1, 2)).sum() >= t_len // 2  # the mask still marks the (scene-moving) objects


def test_object_size_is_a_range_of_the_frame_side():
    big = MotionContextDataset(size=8, clip_shape=SHAPE, noise=0.0, object_size=(0.5, 0.7))
    small = MotionContextDataset(size=8, clip_shape=SHAPE, noise=0.0)
    for ds, (low, high) in ((big, (0.5, 0.7)), (small, (1 / 6, 1 / 4))):
        for i in range(len(ds)):
            side = ds[i][2].numpy().sum(axis=(1, 2)).max() ** 0.5  # an unclipped frame: side x side pixels
            assert int(low * SHAPE[1]) - 1 <= side <= int(high * SHAPE[1]) + 1, (ds.object_size, side)


def test_camera_and_object_options_are_validated():
    with pytest.raises(ValueError, match="camera_speed"):
        MotionContextDataset(size=1, camera_speed=-1.0)
    with pytest.raises(ValueError, match="object_size"):
        MotionContextDataset(size=1, object_size=(0.5, 0.2))
    dm = MotionContextDataModule(clip_shape=SHAPE, train_size=4, val_size=4, camera_speed=1.0, object_size=[0.3, 0.4])
    assert dm.val_set.camera_speed == 1.0 and dm.val_set.object_size == (0.3, 0.4)


def test_conflict_clips_move_as_their_class_and_show_another_class_in_the_background():
    from lightning_selrel.data.conflict import ConflictClips, conflict_item

    dm = MotionContextDataModule(val_size=24, test_size=8)
    conflict = dm.conflict_clips("val")
    assert isinstance(conflict, ConflictClips) and len(conflict) == 24 and conflict.labels == dm.val_set.labels
    contexts = []
    for i in range(24):
        clip, motion, context = conflict[i]
        twin, p = dm.val_set.params(i), conflict.clips.params(i)
        assert clip.dtype == torch.uint8 and clip.shape == (3, 16, 48, 48)
        assert motion == twin.label and context != motion and p.context_label == context
        # The motion is the twin's (direction, speed, camera); the background is the other class's.
        assert (p.direction, p.speed, p.camera) == (twin.direction, twin.speed, twin.camera)
        assert p.bg_orientation != twin.bg_orientation
        contexts.append((motion - context) % 4)
    assert set(contexts) == {1, 2, 3}  # every other class appears as the context
    assert len(dm.conflict_clips("test")) == 8
    with pytest.raises(ValueError, match="stage must be 'val' or 'test'"):
        dm.conflict_clips("train")
    with pytest.raises(ValueError, match="for evaluation, not a training set"):
        MotionContextDataModule(cue="conflict")
    with pytest.raises(ValueError, match="motion_label = context_label = 2"):
        conflict_item((clip, 2, 2), 5, "mine")
    with pytest.raises(ValueError, match=r"mine: item 5 must be \(clip, motion_label, context_label\)"):
        conflict_item((clip, 2), 5, "mine")
    with pytest.raises(ValueError, match="cue='conflict'"):
        ConflictClips(dm.val_set)
