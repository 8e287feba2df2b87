"""Sources and sinks of the explain command: the ring buffer that drops frames instead of queueing them."""

from __future__ import annotations

import cv2
import numpy as np

from lightning_selrel.commands.stream import RingBuffer


def test_ring_buffer_keeps_the_newest_window_and_counts_drops():
    ring = RingBuffer(4)
    assert ring.take(timeout=0.01) is None  # not full yet
    for i in range(6):
        ring.push(np.full((1,), i))
    window = ring.take(timeout=0)
    assert (window.first, window.newest) == (2, 5) and window.frames[:, 0].tolist() == [2, 3, 4, 5]
    assert ring.take(timeout=0.01) is None  # nothing new: the same window is never explained twice
    for i in range(6, 10):
        ring.push(np.full((1,), i))
    assert ring.take(timeout=0).newest == 9
    # Frames 3 and 4 (complete windows never taken) and 6, 7, 8 were dropped, not queued.
    assert ring.frames_dropped == 5 and ring.windows_taken + ring.frames_dropped == 10 - 4 + 1
    ring.push(np.full((1,), 10))
    ring.close()
    assert ring.take(timeout=0).newest == 10 and ring.exhausted and ring.take(timeout=5) is None

    short = RingBuffer(4)  # a source shorter than one window: one short window once it has ended
    for i in range(2):
        short.push(np.full((1,), i))
    short.close()
    window = short.take(timeout=0)
    assert window.frames.shape[0] == 2 and short.exhausted and short.frames_dropped == 0


def test_ring_buffer_keeps_display_frames_beside_the_model_frames():
    ring = RingBuffer(2)
    for i in range(3):
        ring.push(np.full((1,), i), display=np.full((2,), 10 * i))
    window = ring.take(timeout=0)
    assert window.frames[:, 0].tolist() == [1, 2] and window.display[:, 0].tolist() == [10, 20]
    plain = RingBuffer(2)
    for i in range(2):
        plain.push(np.full((1,), i))
    assert plain.take(timeout=0).display is None


def test_the_status_line_is_for_a_terminal_and_mp4_prefers_h264(tmp_path):
    import io

    from lightning_selrel.commands.stream import StatusLine, VideoSink

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal, log = Terminal(), io.StringIO()
    for stream in (terminal, log):
        line = StatusLine(stream, interval=0)
        line.update("3 windows")
        line.close()
    assert terminal.getvalue() == "\r3 windows\n" and log.getvalue() == ""
    sink = VideoSink(tmp_path / "out.mp4", fps=10)
    sink.write(np.zeros((16, 16, 3), np.uint8), repeat=3)
    sink.close()
    assert sink.codec in ("avc1", "mp4v")  # H.264 where OpenCV's build has the encoder (PyPI's does not)
    capture = cv2.VideoCapture(str(tmp_path / "out.mp4"))
    assert capture.read()[0]
    capture.release()
