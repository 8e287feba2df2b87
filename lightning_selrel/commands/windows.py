"""Windows explained over a source: the loops behind ``python -m lightning_selrel explain``.

:class:`WindowExplainer` classifies one window, explains it with each method, keeps the selective
relevance, measures it against optical flow and renders input | baseline | selective panels (one
row per method). :func:`run_offline` slides windows over a video file; :func:`run_live` explains
the newest window of a stream whenever it is free (frames that arrive meanwhile are dropped, see
:class:`~lightning_selrel.commands.stream.RingBuffer`). Both return the report's ``windows`` and ``summary``;
:func:`json_safe` turns undefined values (NaN) into ``null``.
"""

from __future__ import annotations

import math
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import torch

from lightning_selrel.commands.stream import Outputs, RingBuffer, Source, StreamError, StreamReader
from lightning_selrel.data.frames import FramePrep, loop_pad
from lightning_selrel.metrics.flow import motion_mask
from lightning_selrel.metrics.functional import clip_scores
from lightning_selrel.metrics.tags import TIMINGS, WINDOW_METRICS
from lightning_selrel.monitor.render import render_panels
from lightning_selrel.relevance.measure import explain_selective
from lightning_selrel.relevance.methods import method_options

__all__ = ["METRICS", "WindowExplainer", "json_safe", "run_live", "run_offline", "summarise"]

# Per method and window, in the report; fractions in [0, 1] (see metrics.clip_scores) or milliseconds.
METRICS = WINDOW_METRICS


# -- one window ----------------------------------------------------------------------------------
@dataclass
class WindowExplainer:
    """Classifies, explains and measures one window, and renders its panels (one row per method)."""

    model: torch.nn.Module
    methods: Sequence[str] = ("dtd",)
    n_std: float = 4.0
    flow: str | None = "farneback"
    flow_threshold: float = 0.5
    threshold: str = "std"
    clip_shape: Sequence[int] | None = None  # default: the model's
    class_names: Sequence[str] | None = None  # default: the model's, else class indices
    layer: str | None = None  # the GradCAM family's layer (default: the one the model declares, else its last Conv3d)
    panel_size: int = 240  # panel height in pixels, drawn on the source frames; 0: the model's input, enlarged
    target: int | None = None  # the class explained in every window (None: the predicted one)

    def __post_init__(self) -> None:
        if self.clip_shape is None:
            self.clip_shape = tuple(self.model.clip_shape)
        if self.class_names is None:
            self.class_names = list(getattr(self.model, "class_names", None) or [])

    @property
    def clip_len(self) -> int:
        return int(self.clip_shape[0])

    def display_frame(self, prep: FramePrep) -> Callable[[np.ndarray], np.ndarray] | None:
        """What the loops keep of each decoded BGR frame to draw the panels on (None: the model's input)."""
        if not self.panel_size:
            return None
        return lambda frame: prep.display(frame, int(self.panel_size))

    def __call__(
        self, frames: np.ndarray, first: int, real: int | None = None, display: np.ndarray | None = None
    ) -> tuple[dict[str, Any], np.ndarray]:
        """Explain frames (T, H, W, 3) uint8 RGB starting at stream frame ``first``.

        Args:
            frames: The window, loop-padded if the source had fewer than T frames.
            first: Stream index of ``frames[0]``.
            real: Frames of the source in the window (default T); fewer means loop-padded.
            display: The same frames as the person sees them (T', H', W', 3) uint8 RGB (:meth:`display_frame`),
                to draw the panels on, loop-padded here when T' < T as ``frames`` were; None: the model's input,
                enlarged.

        Returns:
            The window's record (prediction, per-method metrics and timings) and the rendered panels
            uint8 (T, rows * H', W', 3).
        """
        clip = torch.from_numpy(np.ascontiguousarray(frames.transpose(3, 0, 1, 2)))  # (3, T, H, W)
        if display is not None and len(display) < len(frames):
            display = loop_pad(display, len(frames))
        t0 = time.perf_counter()
        motion = motion_mask(clip, threshold=self.flow_threshold, method=self.flow) if self.flow else None
        real = len(frames) if real is None else real
        record: dict[str, Any] = {"start": first, "end": first + real - 1, "loop_padded": real < len(frames)}
        record.update(prediction=None, methods={}, flow_ms=(time.perf_counter() - t0) * 1000.0)
        batch = clip[None].to(next(self.model.parameters()).device)  # (1, 3, T, H, W), once for all methods
        rows = []
        for method in self.methods:
            options = method_options(method, layer=self.layer)
            result = explain_selective(
                self.model, batch, method, self.target, n_std=self.n_std, threshold=self.threshold, **options
            )
            rel, sel = result.relevance[0].cpu(), result.selective[0].cpu()  # (T, H, W)
            if record["prediction"] is None:
                probability, index = result.logits[0].softmax(dim=-1).max(dim=-1)
                names = self.class_names
                record["prediction"] = {
                    "index": int(index),
                    "name": names[int(index)] if int(index) < len(names) else str(int(index)),
                    "probability": float(probability),
                }
                if self.target is not None:  # the class the maps explain, when it is not the prediction
                    chosen = int(self.target)
                    record["explained"] = {
                        "index": chosen,
                        "name": names[chosen] if chosen < len(names) else str(chosen),
                        "probability": float(result.logits[0].softmax(dim=-1)[chosen]),
                    }
            scores = clip_scores(rel[None], sel[None], flow=motion[None] if motion is not None else None)
            timing = dict(zip(TIMINGS, (result.explain_ms, result.selective_ms), strict=True))
            record["methods"][method] = {  # a score the window has no ground truth for is None (JSON null)
                name: timing[name] if name in timing else float(scores[name][0]) if name in scores else None
                for name in METRICS
            }
            pred = record["prediction"]
            title = f"{pred['name']} ({pred['probability']:.2f}) | frames {first}-{record['end']} | n={self.n_std:g}"
            if "explained" in record:
                title += f" | explaining {record['explained']['name']}"
            labels = ("input", method, "selective")
            rows.append(render_panels(clip, rel, sel, title=title, labels=labels, display=display))
        return record, np.concatenate(rows, axis=1)  # (T, rows * H', W', 3)


# -- loops ---------------------------------------------------------------------------------------
def run_offline(
    explainer: WindowExplainer,
    capture: cv2.VideoCapture,
    source: Source,
    prep: FramePrep,
    *,
    stride: int,
    outputs: Outputs,
    max_windows: int | None = None,
) -> dict[str, Any]:
    """Slide a window over a video file; returns ``{"stopped", "windows", "summary"}``."""
    length, records = explainer.clip_len, []
    recent, shown = deque(maxlen=length), deque(maxlen=length)  # model input and display frames
    display = explainer.display_frame(prep)
    state = {"written": -1, "stopped": "end of video"}
    started = time.perf_counter()
    expected = None
    if source.frames:  # the strided windows, plus one for the tail
        span = max(source.frames - length, 0)
        expected = span // stride + 1 + (span % stride > 0)

    def process(frames: np.ndarray, first: int, real: int, tail: bool = False) -> bool:
        record, rendered = explainer(frames, first, real, np.stack(shown) if display is not None else None)
        record["tail"] = tail
        records.append(record)
        for t in range(max(0, state["written"] + 1 - first), real):  # frames not written by earlier windows
            if not outputs.emit(rendered[t]):
                state["stopped"] = "window closed"
                return False
        state["written"] = first + real - 1
        pred, wps = record["prediction"], len(records) / (time.perf_counter() - started)
        total = f"/{expected}" if expected else ""
        outputs.status.update(
            f"window {len(records)}{total} | {wps:.2f} windows/s | {pred['name']} ({pred['probability']:.2f})"
        )
        if max_windows is not None and len(records) >= max_windows:
            state["stopped"] = "max_windows"
        return state["stopped"] == "end of video"

    frame, index, last_start = source.first, 0, None
    try:
        while frame is not None:
            recent.append(prep(frame))
            if display is not None:
                shown.append(display(frame))
            start = index - length + 1
            if start >= 0 and start % stride == 0:
                last_start = start
                if not process(np.stack(recent), start, length):
                    break
            ok, frame = capture.read()
            frame, index = (frame if ok else None), index + 1
        if frame is None and index < length:  # shorter than one clip: loop-padded as in training
            process(loop_pad(np.stack(recent), length), 0, index)
        elif frame is None and last_start != index - length:  # the tail after the last full stride
            process(np.stack(recent), index - length, length, tail=True)
    except KeyboardInterrupt:
        state["stopped"] = "interrupted"
    finally:
        capture.release()
    wall = time.perf_counter() - started
    summary = summarise(records, explainer.methods, wall)
    summary["frames_read"] = index + (frame is not None)
    return {"stopped": state["stopped"], "windows": records, "summary": summary}


def run_live(
    explainer: WindowExplainer,
    capture: cv2.VideoCapture,
    source: Source,
    prep: FramePrep,
    *,
    pace_fps: float | None,
    outputs: Outputs,
    max_windows: int | None = None,
    duration: float | None = None,
    on_window: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Explain the newest window of a stream whenever the explainer is free; returns the report body.

    ``on_window(record)`` runs after each window (tests raise ``KeyboardInterrupt`` from it). Stops at
    the end of the source, after ``max_windows`` windows or ``duration`` seconds, on Ctrl-C, or when
    the viewer quits.
    """
    length, records = explainer.clip_len, []
    ring = RingBuffer(length)
    reader = StreamReader(capture, source, prep, ring, pace_fps, display=explainer.display_frame(prep))
    stopped, last_newest, first_take = "source ended", None, None
    started = time.monotonic()
    reader.start()
    try:
        while True:
            if duration is not None and time.monotonic() - started >= duration:
                stopped = "duration"
                break
            window = ring.take(timeout=0.1)
            if window is None:
                if ring.exhausted:
                    break
                continue
            first_take = first_take or time.monotonic()
            real = len(window.frames)
            frames = window.frames if real == length else loop_pad(window.frames, length)
            record, rendered = explainer(frames, window.first, real, window.display)
            repeat = 1 if last_newest is None else window.newest - last_newest
            last_newest = window.newest
            keep_going = outputs.emit(rendered[real - 1], repeat)  # the newest frame, as the paper shows it
            done = time.monotonic()
            record.update(
                latency_ms=(done - window.arrived) * 1000, time_s=done - started, frames_dropped=ring.frames_dropped
            )
            records.append(record)
            pred, wps = record["prediction"], len(records) / max(done - first_take, 1e-9)
            outputs.status.update(
                f"{len(records)} windows | {wps:.2f} windows/s | latency {record['latency_ms']:.0f} ms | "
                f"dropped {ring.frames_dropped}/{ring.frames_read} frames | {pred['name']} ({pred['probability']:.2f})"
            )
            if on_window is not None:
                on_window(record)
            if not keep_going:
                stopped = "window closed"
                break
            if max_windows is not None and len(records) >= max_windows:
                stopped = "max_windows"
                break
    except KeyboardInterrupt:
        stopped = "interrupted"
    finally:
        reader.stop()
    if reader.error is not None and stopped == "source ended":
        raise StreamError(f"reading {source.kind} {source.spec} failed: {reader.error}")
    last_done = records[-1]["time_s"] + started if records else time.monotonic()
    summary = summarise(records, explainer.methods, last_done - (first_take or last_done))
    latency = [r["latency_ms"] for r in records]
    fps = pace_fps or source.fps
    summary.update(
        frames_read=ring.frames_read,
        frames_dropped=ring.frames_dropped,
        # Each frame from the T-th on completes a window: explained as the newest frame of one, or dropped.
        frames_dropped_share=ring.frames_dropped / max(1, ring.frames_read - length + 1),
        latency_ms_mean=float(np.mean(latency)) if latency else None,
        latency_ms_max=float(np.max(latency)) if latency else None,
        source_fps=fps,
        windows_per_source_frame=summary["windows_per_s"] / fps if fps and summary["windows_per_s"] else None,
    )
    return {"stopped": stopped, "windows": records, "summary": summary}


# -- report --------------------------------------------------------------------------------------
def summarise(records: Sequence[dict[str, Any]], methods: Sequence[str], seconds: float) -> dict[str, Any]:
    """Means over windows (undefined values skipped), window count and windows/s."""
    per_method = {}
    for method in methods:
        values = {k: [r["methods"][method][k] for r in records] for k in METRICS}
        per_method[method] = {k: _mean(v) for k, v in values.items()}
        per_method[method]["no_relevance"] = sum(not _finite(v) for v in values["selectivity_mass"])
    return {
        "windows": len(records),
        "seconds": seconds,
        "windows_per_s": len(records) / seconds if seconds > 0 and records else None,
        "flow_ms": _mean([r["flow_ms"] for r in records]),
        "predictions": dict(Counter(r["prediction"]["name"] for r in records)),
        "methods": per_method,
    }


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _mean(values: Sequence[Any]) -> float | None:
    kept = [float(v) for v in values if _finite(v)]
    return sum(kept) / len(kept) if kept else None


def json_safe(value: Any) -> Any:
    """Plain JSON types, with ``None`` (null) for NaN and infinities."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (np.generic, torch.Tensor)):
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return value
