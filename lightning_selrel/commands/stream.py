"""Sources and sinks of the ``explain`` command: where frames come from and where annotated frames go.

A source is a video file, a camera index or a stream URL, opened with OpenCV (:func:`open_source`). In live
use a :class:`StreamReader` thread pushes preprocessed frames (:class:`lightning_selrel.data.frames.FramePrep`)
into a :class:`RingBuffer` that holds only the last ``T`` frames; the explainer takes the newest window
whenever it is free: frames that arrive while it works are *dropped*, never queued, so what is shown never
falls behind the stream. :class:`Outputs` sends each rendered frame to a :class:`VideoSink` (``.mp4`` (mp4v),
``.avi`` (MJPG) or ``.gif``, checked to read back) and/or a window on screen, with a :class:`StatusLine` on
the terminal.

Every user-facing failure raises :class:`StreamError` with one line that names the file or value and
the fix.
"""

from __future__ import annotations

import math
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import cv2
import numpy as np

from lightning_selrel.data.frames import VideoDecodeError, open_video
from lightning_selrel.monitor.render import encode_gif

__all__ = [
    "Outputs",
    "RingBuffer",
    "Source",
    "StatusLine",
    "StreamError",
    "StreamReader",
    "VideoSink",
    "Window",
    "count_frames",
    "display_unavailable",
    "open_source",
]


class StreamError(RuntimeError):
    """A source, a frame size or an output that cannot be used; the message names it and the fix."""


# -- sources -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Source:
    """What was opened.

    Attributes:
        spec: As given: a path, a camera index or a URL.
        kind: ``"file"``, ``"camera"`` or ``"url"``.
        fps: Frame rate the container or device reports; None when it reports none.
        frames: Frame count a file claims; None for cameras and streams.
        first: The first frame, decoded while opening (BGR, (h, w, 3) uint8): a camera cannot rewind.
    """

    spec: str
    kind: str
    fps: float | None
    frames: int | None
    first: np.ndarray

    @property
    def size(self) -> tuple[int, int]:
        """(h, w) of the decoded frames."""
        return int(self.first.shape[0]), int(self.first.shape[1])


def _kind(spec: str) -> str:
    if spec.strip().isdigit():
        return "camera"
    return "url" if "://" in spec else "file"


def open_source(spec: str | int | os.PathLike) -> tuple[cv2.VideoCapture, Source]:
    """Open a video file, a camera (``"0"``) or a stream URL and decode its first frame.

    Returns:
        The open capture, positioned after the first frame, and its :class:`Source`.

    Raises:
        StreamError: If the source is missing, does not open, or yields no frame.
    """
    spec = str(spec)
    kind = _kind(spec)
    if kind == "file" and not Path(spec).is_file():
        raise StreamError(f"video file {spec} not found: check the path (a camera is a number such as 0)")
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)  # our message replaces OpenCV's warnings
    if kind != "camera":  # and FFmpeg's, about a damaged file or stream (read once, when OpenCV first uses FFmpeg;
        os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # -8 is AV_LOG_QUIET): a truncation is ours to report
    try:
        if kind == "camera":
            capture = cv2.VideoCapture(int(spec))
            if not capture.isOpened():
                capture.release()
                raise StreamError(
                    f"camera {spec} does not open: no camera at that index, or another program uses it; "
                    "try another index or pass a video file or stream URL to --source"
                )
        else:
            try:
                capture = open_video(spec)
            except VideoDecodeError:
                what = "stream URL" if kind == "url" else "video file"
                raise StreamError(
                    f"{what} {spec} does not open: OpenCV cannot read it (unsupported, corrupt, or unreachable); "
                    "convert it to .mp4/.avi or check the address"
                ) from None
        ok, first = capture.read()
    finally:
        cv2.utils.logging.setLogLevel(level)
    if not ok or first is None:
        capture.release()
        raise StreamError(f"{kind} {spec} opens but yields no frame (empty or corrupt): pass another video/source")
    fps = capture.get(cv2.CAP_PROP_FPS)
    frames = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) if kind == "file" else 0
    fps = float(fps) if fps and math.isfinite(fps) and 0 < fps < 1000 else None
    return capture, Source(spec, kind, fps, frames if frames > 0 else None, first)


def count_frames(path: str | os.PathLike) -> int:
    """Frames OpenCV decodes from a video file (0 if it does not open): for checking outputs."""
    capture = cv2.VideoCapture(str(path))
    count = 0
    try:
        while capture.isOpened() and capture.grab():
            count += 1
    finally:
        capture.release()
    return count


# -- ring buffer ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Window:
    """The frames one explanation sees.

    Attributes:
        frames: uint8 (n, H, W, 3) RGB, oldest first; n < capacity only when the source ended early.
        first: Stream index of ``frames[0]``.
        newest: Stream index of ``frames[-1]``.
        arrived: ``time.monotonic()`` when the newest frame arrived (the start of its latency).
        display: The frames as drawn for a person (n, H', W', 3) uint8 RGB, when the reader kept them.
    """

    frames: np.ndarray
    first: int
    newest: int
    arrived: float
    display: np.ndarray | None = None


class RingBuffer:
    """The last ``capacity`` frames of a stream, thread-safe; old frames are overwritten, never queued.

    Every frame from the ``capacity``-th on completes a window. A frame is *dropped* when its window
    was never taken because a newer frame arrived first: at the end of a stream of ``n >= capacity``
    frames, ``windows_taken + frames_dropped == n - capacity + 1`` (a queue would drop none and fall
    ever further behind).
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self.capacity = int(capacity)
        self._frames: deque[np.ndarray] = deque(maxlen=self.capacity)
        self._stamps: deque[float] = deque(maxlen=self.capacity)
        self._displays: deque[np.ndarray | None] = deque(maxlen=self.capacity)
        self._cond = threading.Condition(threading.RLock())
        self._taken = -1  # stream index of the newest frame of the last window taken
        self._skipped = 0  # frames before that one whose window was not taken
        self.frames_read = 0
        self.windows_taken = 0
        self.closed = False

    def push(self, frame: np.ndarray, stamp: float | None = None, display: np.ndarray | None = None) -> None:
        """Add the newest frame (arrival time ``stamp``, default now; ``display``: the frame as drawn for a
        person); the oldest falls out when full."""
        with self._cond:
            self._frames.append(frame)
            self._displays.append(display)
            self._stamps.append(time.monotonic() if stamp is None else stamp)
            self.frames_read += 1
            self._cond.notify_all()

    def close(self) -> None:
        """The source has ended: a last, shorter window may be taken; then :attr:`exhausted` is True."""
        with self._cond:
            self.closed = True
            self._cond.notify_all()

    @property
    def exhausted(self) -> bool:
        """Closed, and every frame pushed is at or before the last window taken."""
        return self.closed and self.frames_read - 1 <= self._taken

    @property
    def frames_dropped(self) -> int:
        """Frames whose window was skipped for a newer one (once closed, also those after the last window)."""
        with self._cond:
            pending = self.frames_read - 1 - max(self._taken, self.capacity - 2) if self.closed else 0
            return self._skipped + max(0, pending)

    def take(self, timeout: float | None = None) -> Window | None:
        """The newest window, as soon as it holds a frame not taken before and is full (or the source ended).

        Returns:
            The window, or None on timeout or when the buffer is exhausted.
        """
        with self._cond:
            fresh = lambda: self.frames_read - 1 > self._taken  # noqa: E731
            ready = lambda: fresh() and (len(self._frames) == self.capacity or self.closed)  # noqa: E731
            if not self._cond.wait_for(lambda: ready() or self.exhausted, timeout) or not ready():
                return None
            newest = self.frames_read - 1
            self._skipped += max(0, newest - max(self._taken + 1, self.capacity - 1))
            self._taken = newest
            self.windows_taken += 1
            first = newest - len(self._frames) + 1
            shown = None if any(d is None for d in self._displays) else np.stack(self._displays)
            return Window(np.stack(self._frames), first, newest, self._stamps[-1], shown)  # (n, H, W, 3)


class StreamReader(threading.Thread):
    """Reads a capture as fast as it delivers (or at ``pace_fps``) into a :class:`RingBuffer`.

    Args:
        capture: An open capture; the reader releases it when it stops.
        source: The opened source (its first frame is pushed first).
        prep: Preprocessing of each BGR frame to the model's RGB crop (a
            :class:`~lightning_selrel.data.frames.FramePrep`), done here, off the explainer's thread.
        ring: Where frames go; closed when the source ends or the reader stops.
        pace_fps: Deliver a file's frames at this rate, as a camera would (None: as fast as decoded).
        display: What to keep of each BGR frame to draw the panels on (the source's region under the crop at a
            readable size, :meth:`~lightning_selrel.commands.windows.WindowExplainer.display_frame`); None: nothing.
    """

    def __init__(
        self,
        capture: cv2.VideoCapture,
        source: Source,
        prep: Callable[[np.ndarray], np.ndarray],
        ring: RingBuffer,
        pace_fps: float | None,
        display: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> None:
        super().__init__(name="selrel-frame-reader", daemon=True)
        self.capture, self.source, self.prep, self.ring, self.pace_fps = capture, source, prep, ring, pace_fps
        self.display = display
        self.error: BaseException | None = None
        self._stop_event = threading.Event()

    def run(self) -> None:
        start, index, frame = time.monotonic(), 0, self.source.first
        try:
            while not self._stop_event.is_set():
                if frame is None:
                    ok, frame = self.capture.read()
                    if not ok:
                        break
                rgb = self.prep(frame)
                shown = self.display(frame) if self.display is not None else None
                if self.pace_fps:
                    delay = start + index / self.pace_fps - time.monotonic()
                    if delay > 0 and self._stop_event.wait(delay):
                        break
                self.ring.push(rgb, display=shown)
                index, frame = index + 1, None
        except BaseException as error:  # handed to the explainer's thread
            self.error = error
        finally:
            self.ring.close()
            self.capture.release()

    def stop(self, timeout: float = 5.0) -> None:
        """Ask the reader to stop and wait for it (a camera read may take one frame interval)."""
        self._stop_event.set()
        if self.is_alive():
            self.join(timeout)


# -- sinks ---------------------------------------------------------------------------------------
def display_unavailable() -> str | None:
    """Why ``cv2.imshow`` cannot open a window here, or None when it can."""
    gui = [line for line in cv2.getBuildInformation().splitlines() if line.strip().startswith("GUI:")]
    if gui and gui[0].split(":", 1)[1].strip().upper() == "NONE":
        return "this OpenCV build has no GUI (opencv-python-headless)"
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return "no display ($DISPLAY is not set)"
    return None


class VideoSink:
    """Writes uint8 RGB frames (H, W, 3) to ``.mp4`` (H.264 where OpenCV's build can encode it, which browsers,
    notebooks and W&B play; else MPEG-4 part 2, ``mp4v``), ``.avi`` (MJPG) or ``.gif``. :attr:`codec` says which.

    The writer opens at the first frame (its size fixes the video's); odd sizes are padded to even.
    A GIF is kept in memory and encoded by :meth:`close` (prefer .mp4 for long live sessions).
    :meth:`close` checks that OpenCV reads a video back, so a finished sink leaves a playable file.
    """

    #: Codecs tried in order per file type (PyPI's opencv-python has no H.264 encoder: it writes mp4v).
    CODECS: dict[str, tuple[str, ...] | None] = {".mp4": ("avc1", "mp4v"), ".avi": ("MJPG",), ".gif": None}

    def __init__(self, path: str | os.PathLike, fps: float, label: str | os.PathLike | None = None) -> None:
        self.path = Path(path)
        self.label = str(label if label is not None else path)  # what messages call it (the final name)
        self.fps = float(fps)
        suffix = self.path.suffix.lower()
        if suffix not in self.CODECS:
            raise StreamError(f"--out {self.label}: unknown video type {suffix!r}; use a .mp4, .avi or .gif file name")
        if not self.path.parent.is_dir():
            raise StreamError(f"--out {self.label}: folder {self.path.parent} does not exist; create it first")
        self._codecs = self.CODECS[suffix]
        self._codec: str | None = None if self._codecs is None else self._codecs[-1]
        self._writer: cv2.VideoWriter | None = None
        self._gif: list[np.ndarray] = []
        self.frames_written = 0

    def write(self, frame: np.ndarray, repeat: int = 1) -> None:
        """Append ``frame`` (H, W, 3) uint8 RGB ``repeat`` times."""
        frame = np.pad(frame, ((0, frame.shape[0] % 2), (0, frame.shape[1] % 2), (0, 0)))  # even for mp4v
        if self._codecs is None:
            self._gif.extend([frame] * repeat)
        else:
            if self._writer is None:
                self._writer = self._open((frame.shape[1], frame.shape[0]))
            bgr = cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)
            for _ in range(repeat):
                self._writer.write(bgr)
        self.frames_written += repeat

    @property
    def codec(self) -> str | None:
        """The codec the file is written with (None for a GIF)."""
        return self._codec

    def _open(self, size: tuple[int, int]) -> cv2.VideoWriter:
        """The first writer of :attr:`CODECS` that opens (OpenCV's complaint about a missing encoder silenced)."""
        level = cv2.utils.logging.getLogLevel()
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
        try:
            for codec in self._codecs or ():
                writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*codec), self.fps, size)
                if writer.isOpened():
                    self._codec = codec
                    return writer
                writer.release()
        finally:
            cv2.utils.logging.setLogLevel(level)
        raise StreamError(
            f"--out {self.label}: OpenCV cannot write {'/'.join(self._codecs or ())} video here; try .avi"
        )

    def close(self) -> None:
        """Finish the file; raises :class:`StreamError` if it does not read back."""
        if self._codecs is None:
            if self._gif:
                self.path.write_bytes(encode_gif(np.stack(self._gif), fps=self.fps))
                self._gif = []
            return
        if self._writer is None:
            return
        self._writer.release()
        self._writer = None
        capture = cv2.VideoCapture(str(self.path))
        readable = capture.isOpened() and capture.read()[0]
        capture.release()
        if not readable:
            raise StreamError(f"--out {self.label} was written but does not read back; try an .avi file name")


# -- what a person sees -----------------------------------------------------------------------
class StatusLine:
    """One status line on a terminal stream, overwritten with ``\\r`` at most every ``interval`` seconds; nothing
    on a stream that is not a terminal (a log file or a pipe would collect every ``\\r`` line), unless
    ``terminal_only=False``."""

    def __init__(self, stream: TextIO | None = sys.stderr, interval: float = 0.5, terminal_only: bool = True) -> None:
        if stream is not None and terminal_only and not _is_terminal(stream):
            stream = None
        self.stream, self.interval, self._last, self._width = stream, interval, -math.inf, 0

    def update(self, text: str) -> None:
        now = time.monotonic()
        if self.stream is None or now - self._last < self.interval:
            return
        self._last = now
        self.stream.write("\r" + text.ljust(self._width))
        self.stream.flush()
        self._width = len(text)

    def close(self) -> None:
        if self.stream is not None and self._width:
            self.stream.write("\n")
            self.stream.flush()
            self._width = 0


def _is_terminal(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # closed, or not a file
        return False


class Outputs:
    """Where rendered frames go: a :class:`VideoSink`, a window on screen, or both."""

    def __init__(self, sink: VideoSink | None = None, show: bool = False, status: StatusLine | None = None) -> None:
        self.sink, self.status = sink, status or StatusLine(None)
        self.title = "lightning_selrel explain (q: quit)" if show else None

    def emit(self, frame: np.ndarray, repeat: int = 1) -> bool:
        """Write and/or show a frame (H, W, 3) uint8 RGB; False when the viewer asked to quit."""
        if self.sink is not None:
            self.sink.write(frame, repeat)
        if self.title is not None:
            cv2.imshow(self.title, cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
            if cv2.waitKey(1) & 0xFF in (ord("q"), 27):
                return False
        return True

    def close(self) -> None:
        """Finish the video file (it reads back afterwards) and close the window."""
        self.status.close()
        if self.title is not None:
            cv2.destroyAllWindows()
        if self.sink is not None:
            self.sink.close()
