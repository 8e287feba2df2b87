"""Heatmap GIFs: frame count, panels, colour scale, and the TensorBoard image summary."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from events import images, load
from PIL import Image
from torch.utils.tensorboard import SummaryWriter

from lightning_selrel.monitor.render import colour_scale, encode_gif, overlay, render_panels, write_gif


def _clip(t=16, h=24, w=32, static=False):
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (3, 1, h, w), dtype=np.uint8)
    return np.repeat(frame, t, axis=1) if static else rng.integers(0, 256, (3, t, h, w), dtype=np.uint8)


def test_panels_have_one_frame_per_clip_frame_and_three_panels():
    clip = _clip()
    rel = torch.randn(16, 24, 32)
    frames = render_panels(clip, rel, rel * (rel > 1), title="true: a | pred: b (0.90)")
    assert frames.dtype == np.uint8 and frames.shape[0] == 16
    zoom = 4  # 24 px clips are enlarged to at least 96 px
    assert frames.shape[2] == 3 * 32 * zoom
    header = frames.shape[1] - 24 * zoom
    # The left panel is the input, enlarged.
    np.testing.assert_array_equal(
        frames[3, header:, : 32 * zoom : zoom], clip[:, 3, ::1, :].transpose(1, 2, 0).repeat(zoom, 0)
    )


def test_gif_has_as_many_frames_as_the_clip_even_when_the_clip_is_static():
    clip = _clip(static=True)
    zero = torch.zeros(16, 24, 32)
    gif = encode_gif(render_panels(clip, zero, zero), fps=10)
    assert gif[:6] == b"GIF89a"
    image = Image.open(io.BytesIO(gif))
    assert image.n_frames == 16
    assert image.info["duration"] == 100 and image.info["loop"] == 0


def test_colour_scale_and_overlay():
    rel = np.zeros((2, 4, 4), dtype=np.float32)
    assert colour_scale(rel) == 1.0  # an empty map still renders
    rel[0, 0, 0], rel[1, 0, 0] = 3.0, -3.0
    frames = np.full((2, 4, 4, 3), 128, dtype=np.uint8)
    out = overlay(frames, rel, scale=3.0)
    assert out[0, 0, 0, 0] > out[0, 0, 0, 2]  # positive: red/yellow
    assert out[1, 0, 0, 2] > out[1, 0, 0, 0]  # negative: blue
    np.testing.assert_array_equal(out[0, 1, 1], out[1, 2, 2])  # zero relevance: just the dimmed frame


def test_bad_frames_fail_clearly():
    with pytest.raises(ValueError, match="uint8"):
        encode_gif(np.zeros((2, 4, 4, 3), dtype=np.float32))


def test_gif_is_an_image_summary_tensorboard_reads(tmp_path):
    frames = render_panels(_clip(), torch.randn(16, 24, 32), torch.zeros(16, 24, 32))
    writer = SummaryWriter(tmp_path)
    write_gif(writer, "selrel/dtd/clip_0", frames, global_step=7)
    writer.close()
    (event,) = images(load(tmp_path))["selrel/dtd/clip_0"]
    assert event.step == 7 and event.encoded_image_string[:6] == b"GIF89a"
    assert (event.height, event.width) == frames.shape[1:3]


def test_panels_drawn_on_display_frames_put_the_relevance_where_it_is():
    clip = _clip(t=4, h=16, w=16)
    display = np.full((4, 160, 160, 3), 100, dtype=np.uint8)  # the source region at 10x the model's size
    rel = np.zeros((4, 16, 16), dtype=np.float32)
    rel[:, 2:4, 12:14] = 1.0  # top right of the model's input
    frames = render_panels(clip, rel, rel, title="a title", display=display)
    assert frames.shape[2] == 3 * 160
    header = frames.shape[1] - 160
    assert header >= 40  # labels scaled with the panels
    baseline = frames[0, header:, 160:320].astype(int)
    hot, cold = baseline[20:40, 120:140], baseline[120:140, 20:40]  # rows 2..4, columns 12..14, upsampled
    assert (hot[..., 0] - hot[..., 2]).mean() > 50 and abs(cold[..., 0] - cold[..., 2]).mean() < 5
    np.testing.assert_array_equal(frames[0, header:, :160], display[0])  # the input panel is the display frame
