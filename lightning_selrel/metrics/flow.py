"""Motion ground truth from raw frames: dense optical flow (OpenCV) and the moving-voxel mask I_O.

Motion precision (docs/method.md, section 3) needs to know which voxels of a clip move. Flow is computed
between consecutive grayscale frames, once per probe clip (it does not depend on the model), so this
module favours clarity over speed. Two OpenCV methods are offered by name:

* ``"farneback"``: :func:`cv2.calcOpticalFlowFarneback`, defaults tuned for small (48-112 px) frames.
* ``"dis"``: :func:`cv2.DISOpticalFlow_create` (dense inverse search) with a named preset.

Frames are uint8 RGB clips of shape (3, T, H, W), the layout of the data module before
normalisation. Flow is returned as float32 NumPy (it comes from OpenCV); the mask as a torch bool
tensor (it meets the relevance).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import cv2
import numpy as np
import torch

__all__ = ["FLOW_METHODS", "flow_magnitude_per_frame", "motion_mask", "optical_flow"]

# Farneback on 48-112 px frames: 3 pyramid levels (a 112 px frame is 28 px at the top) follow
# displacements of several pixels per frame; a 9 px window keeps small moving objects apart from
# their background while averaging out noise.
_FARNEBACK_DEFAULTS: dict[str, Any] = {
    "pyr_scale": 0.5,
    "levels": 3,
    "winsize": 9,
    "iterations": 3,
    "poly_n": 5,
    "poly_sigma": 1.1,
    "flags": 0,
}
_DIS_PRESETS = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}
# Keyword -> setter of cv2.DISOpticalFlow, to override single settings of a preset.
_DIS_SETTERS = {
    "finest_scale": "setFinestScale",
    "patch_size": "setPatchSize",
    "patch_stride": "setPatchStride",
    "gradient_descent_iterations": "setGradientDescentIterations",
    "variational_refinement_iterations": "setVariationalRefinementIterations",
    "variational_refinement_alpha": "setVariationalRefinementAlpha",
    "variational_refinement_delta": "setVariationalRefinementDelta",
    "variational_refinement_gamma": "setVariationalRefinementGamma",
    "use_mean_normalization": "setUseMeanNormalization",
    "use_spatial_propagation": "setUseSpatialPropagation",
}


def _grayscale(frames: np.ndarray | torch.Tensor) -> np.ndarray:
    """uint8 frames (C, T, H, W), C = 3 (RGB) or 1, to contiguous grayscale (T, H, W) uint8."""
    if isinstance(frames, torch.Tensor):
        frames = frames.detach().cpu().numpy()
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[0] not in (1, 3):
        raise ValueError(f"frames must have shape (3, T, H, W) (RGB) or (1, T, H, W), got {frames.shape}")
    if frames.dtype != np.uint8:
        raise TypeError(
            f"frames must be raw uint8 pixels, got {frames.dtype}; pass the clip before normalisation "
            "(values 0-255, e.g. `clip.to(torch.uint8)`)"
        )
    _, t, h, w = frames.shape
    if t < 2:
        raise ValueError(f"optical flow needs at least 2 frames, got T={t} (frames of shape {frames.shape})")
    if frames.shape[0] == 1:
        return np.ascontiguousarray(frames[0])  # (T, H, W)
    rgb = np.ascontiguousarray(frames.transpose(1, 2, 3, 0)).reshape(t * h, w, 3)  # (T*H, W, 3)
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).reshape(t, h, w)  # (T, H, W)


def _farneback(gray: np.ndarray, **params: Any) -> np.ndarray:
    unknown = sorted(set(params) - set(_FARNEBACK_DEFAULTS))
    if unknown:
        raise TypeError(f"unknown Farneback parameters {unknown}; valid: {sorted(_FARNEBACK_DEFAULTS)}")
    options = {**_FARNEBACK_DEFAULTS, **params}
    pairs = zip(gray[:-1], gray[1:], strict=True)  # (frame t, frame t + 1)
    flows = [cv2.calcOpticalFlowFarneback(prev, nxt, None, **options) for prev, nxt in pairs]
    return np.stack(flows)  # (T-1, H, W, 2)


def _dis(gray: np.ndarray, *, preset: str = "medium", **params: Any) -> np.ndarray:
    if preset not in _DIS_PRESETS:
        raise ValueError(f"unknown DIS preset {preset!r}; valid: {sorted(_DIS_PRESETS)}")
    unknown = sorted(set(params) - set(_DIS_SETTERS))
    if unknown:
        raise TypeError(f"unknown DIS parameters {unknown}; valid: ['preset'] + {sorted(_DIS_SETTERS)}")
    dis = cv2.DISOpticalFlow_create(_DIS_PRESETS[preset])
    for name, value in params.items():
        getattr(dis, _DIS_SETTERS[name])(value)
    flows = [dis.calc(prev, nxt, None) for prev, nxt in zip(gray[:-1], gray[1:], strict=True)]
    return np.stack(flows)  # (T-1, H, W, 2)


FLOW_METHODS: dict[str, Callable[..., np.ndarray]] = {"farneback": _farneback, "dis": _dis}


def optical_flow(frames: np.ndarray | torch.Tensor, *, method: str = "farneback", **params: Any) -> np.ndarray:
    """Dense optical flow between consecutive frames of a clip.

    ``flow[t]`` maps frame ``t`` to frame ``t + 1``: the pixel at (y, x) in frame t is found near
    (y + dy, x + dx) in frame t + 1, so a pattern moving right has ``dx > 0`` and one moving down
    has ``dy > 0``.

    Args:
        frames: Raw uint8 clip, RGB of shape (3, T, H, W) (or grayscale (1, T, H, W)), as a torch
            tensor (any device) or a NumPy array. T >= 2.
        method: ``"farneback"`` or ``"dis"`` (see :data:`FLOW_METHODS`).
        **params: Settings of the method. Farneback: ``pyr_scale``, ``levels``, ``winsize``,
            ``iterations``, ``poly_n``, ``poly_sigma``, ``flags`` (OpenCV's names). DIS: ``preset``
            (``"ultrafast"``, ``"fast"``, ``"medium"``; default ``"medium"``) and overrides such as
            ``finest_scale`` or ``patch_size``.

    Returns:
        Float32 NumPy array of shape (T-1, H, W, 2): (dx, dy) in pixels.

    Raises:
        ValueError: If the method is unknown (the message lists the valid ones), the frames have the
            wrong shape, or T < 2.
        TypeError: If the frames are not uint8 or a parameter is unknown.
    """
    if method not in FLOW_METHODS:
        raise ValueError(f"unknown optical flow method {method!r}; valid: {sorted(FLOW_METHODS)}")
    gray = _grayscale(frames)  # (T, H, W)
    return FLOW_METHODS[method](gray, **params).astype(np.float32, copy=False)


def flow_magnitude_per_frame(
    frames: np.ndarray | torch.Tensor, *, method: str = "farneback", **params: Any
) -> np.ndarray:
    """Motion magnitude of every frame: the larger flow magnitude towards either neighbour.

    Frame t gets ``max(|flow[t-1]|, |flow[t]|)`` (the flows t-1 -> t and t -> t+1); frames 0 and
    T-1 use the single flow they have. The result has T frames, like the relevance.

    Args:
        frames: Raw uint8 clip (3, T, H, W), see :func:`optical_flow`.
        method: Flow method name.
        **params: Settings of the method.

    Returns:
        Float32 NumPy array of shape (T, H, W), in pixels.
    """
    flow = optical_flow(frames, method=method, **params)  # (T-1, H, W, 2)
    magnitude = np.hypot(flow[..., 0], flow[..., 1])  # (T-1, H, W)
    per_frame = np.empty((magnitude.shape[0] + 1, *magnitude.shape[1:]), dtype=np.float32)  # (T, H, W)
    per_frame[0] = magnitude[0]
    per_frame[-1] = magnitude[-1]
    np.maximum(magnitude[:-1], magnitude[1:], out=per_frame[1:-1])
    return per_frame


def motion_mask(
    frames: np.ndarray | torch.Tensor, *, threshold: float = 0.5, method: str = "farneback", **flow_params: Any
) -> torch.Tensor:
    """The moving-voxel mask I_O of a clip: flow magnitude above ``threshold`` pixels.

    Args:
        frames: Raw uint8 clip (3, T, H, W), see :func:`optical_flow`.
        threshold: Magnitude in pixels per frame above which a pixel moves. Flow is never exactly 0
            on real video; 0.5 px is above the sub-pixel jitter that noise and compression cause, and
            below the slowest motion a 112 px clip shows clearly (about 1 px/frame).
        method: Flow method name.
        **flow_params: Settings of the method.

    Returns:
        Bool tensor of shape (T, H, W) on the CPU.

    Raises:
        ValueError: If ``threshold`` is negative or not finite, or see :func:`optical_flow`.
    """
    if not (np.isfinite(threshold) and threshold >= 0):
        raise ValueError(f"threshold must be a finite number of pixels >= 0, got {threshold}")
    magnitude = flow_magnitude_per_frame(frames, method=method, **flow_params)  # (T, H, W)
    return torch.from_numpy(magnitude > threshold)
