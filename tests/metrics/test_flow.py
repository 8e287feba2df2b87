"""Motion ground truth: optical flow on synthetic clips with known motion."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from lightning_selrel.metrics.flow import FLOW_METHODS, flow_magnitude_per_frame, motion_mask, optical_flow


def texture(size: tuple[int, int], seed: int, sigma: float = 1.5) -> np.ndarray:
    """Smooth random uint8 texture: features of a few pixels that flow can follow."""
    noise = ndimage.gaussian_filter(np.random.default_rng(seed).standard_normal(size), sigma)
    return ((noise - noise.min()) / (noise.max() - noise.min()) * 255).astype(np.uint8)


def as_rgb(gray: np.ndarray) -> np.ndarray:
    """(T, H, W) grey frames to a (3, T, H, W) RGB clip."""
    return np.stack([gray, gray, gray])


def translating_clip(size: int = 48, step: int = 2) -> np.ndarray:
    """Texture cut from a larger canvas: moves right by ``step`` px/frame for 3 frames, then down. (3, 7, H, W)."""
    canvas = texture((size + 20, size + 20), seed=0)
    offsets = [(0, step * t) for t in range(4)] + [(step * t, 3 * step) for t in range(1, 4)]  # (dy, dx)
    frames = [canvas[10 - dy : 10 - dy + size, 10 - dx : 10 - dx + size] for dy, dx in offsets]
    return as_rgb(np.stack(frames))


@pytest.mark.parametrize("method", sorted(FLOW_METHODS))
def test_translation_direction_and_magnitude(method):
    flow = optical_flow(translating_clip(), method=method)
    assert flow.shape == (6, 48, 48, 2) and flow.dtype == np.float32
    interior = flow[:, 8:-8, 8:-8]  # (T-1, h, w, 2)
    expected = np.array([[2, 0]] * 3 + [[0, 2]] * 3, dtype=np.float32)  # (dx, dy) per step
    error = np.linalg.norm(interior - expected[:, None, None], axis=-1)  # (T-1, h, w)
    assert np.median(error) < 0.2 * 2  # within 20% of the 2 px displacement
    assert (error < 0.4).mean() > 0.9
    right, down = interior[:3], interior[3:]
    assert (right[..., 0] > 0).mean() > 0.95 and (down[..., 1] > 0).mean() > 0.95


def test_torch_input_gives_the_same_flow():
    clip = translating_clip()
    np.testing.assert_array_equal(optical_flow(torch.from_numpy(clip)), optical_flow(clip))


@pytest.mark.parametrize("method", sorted(FLOW_METHODS))
def test_static_clip_has_no_motion(method):
    clip = as_rgb(np.stack([texture((40, 40), seed=1)] * 5))
    mask = motion_mask(clip, method=method)
    assert mask.shape == (5, 40, 40) and mask.dtype == torch.bool
    assert not mask.any()


def test_per_frame_magnitude_is_max_of_both_neighbours():
    clip = translating_clip()
    magnitude = np.hypot(*np.moveaxis(optical_flow(clip), -1, 0))  # (T-1, H, W)
    per_frame = flow_magnitude_per_frame(clip)  # (T, H, W)
    assert per_frame.shape == (7, 48, 48)
    np.testing.assert_array_equal(per_frame[0], magnitude[0])
    np.testing.assert_array_equal(per_frame[-1], magnitude[-1])
    np.testing.assert_array_equal(per_frame[3], np.maximum(magnitude[2], magnitude[3]))


@pytest.mark.parametrize("method", sorted(FLOW_METHODS))
def test_moving_square_over_static_background(method):
    size, side, steps = 48, 12, 6
    background, square = texture((size, size), seed=2), texture((side, side), seed=3, sigma=1.0) // 2 + 128
    frames, on_square = [], np.zeros((steps, size, size), dtype=bool)
    for t in range(steps):
        frame = background.copy()
        frame[18 : 18 + side, 8 + 2 * t : 8 + 2 * t + side] = square  # moves right by 2 px/frame
        frames.append(frame)
        on_square[t, 18 : 18 + side, 8 + 2 * t : 8 + 2 * t + side] = True
    mask = motion_mask(as_rgb(np.stack(frames)), method=method).numpy()
    far = np.ones_like(on_square)
    far[:, 12:36, 2:42] = False  # background more than 6 px from every position of the square
    assert mask[on_square].mean() > 0.9
    assert mask[far].mean() < 0.02


def test_threshold_controls_the_mask():
    clip = translating_clip()
    assert motion_mask(clip, threshold=0.5)[:, 8:-8, 8:-8].all()
    assert not motion_mask(clip, threshold=10.0).any()


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"method": "lucas"}, ValueError, r"valid: \['dis', 'farneback'\]"),
        ({"method": "farneback", "winsze": 9}, TypeError, "winsize"),
        ({"method": "dis", "preset": "slow"}, ValueError, "medium"),
        ({"method": "dis", "patchsize": 8}, TypeError, "patch_size"),
        ({"threshold": -1.0}, ValueError, "threshold"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        motion_mask(translating_clip(), **kwargs)


@pytest.mark.parametrize(
    ("frames", "error", "match"),
    [
        (np.zeros((3, 1, 8, 8), dtype=np.uint8), ValueError, "at least 2 frames"),
        (np.zeros((3, 4, 8, 8), dtype=np.float32), TypeError, "uint8"),
        (np.zeros((4, 8, 8, 3), dtype=np.uint8), ValueError, r"\(3, T, H, W\)"),
    ],
)
def test_bad_frames_raise_clear_errors(frames, error, match):
    with pytest.raises(error, match=match):
        optical_flow(frames)
