"""The ``explain`` command: offline and live paths, outputs and reports, bad input.

Videos are written here with OpenCV (MJPG .avi): a bright square moving right over a static noise
background. The model is a tiny random C3D (16 x 16 x 16 clips) saved as a Lightning checkpoint.
The live path is tested by streaming a file at its frame rate through the same reader thread and
ring buffer a camera uses.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from PIL import Image, ImageSequence
from ucf_fixture import write_video

from lightning_selrel import C3DClassifier
from lightning_selrel import commands as cli
from lightning_selrel.commands.explain import main
from lightning_selrel.commands.stream import StreamError, count_frames, display_unavailable
from lightning_selrel.commands.windows import WindowExplainer

REPO = Path(__file__).resolve().parents[2]
NAMES = ["left", "right", "up", "down"]
PANEL_H = 34 + 96  # --panel-size 0, render_panels: header + 16 px frames enlarged 6x

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: a tiny model is many times faster on one thread


def moving_square(frames: int, size: tuple[int, int] = (24, 32), seed: int = 0) -> np.ndarray:
    """RGB frames (T, H, W, 3): static noise with a bright 6 px square moving 1 px per frame."""
    height, width = size
    background = np.random.default_rng(seed).integers(0, 90, (height, width, 3), dtype=np.uint8)
    video = np.repeat(background[None], frames, axis=0)
    for t in range(frames):
        x = t % (width - 6)
        video[t, height // 3 : height // 3 + 6, x : x + 6] = 230
    return video


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> SimpleNamespace:
    base = tmp_path_factory.mktemp("explain")
    torch.manual_seed(0)
    model = C3DClassifier(num_classes=4, width=2, fc_dim=8, clip_shape=(16, 16, 16), class_names=NAMES)
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False)
    trainer.strategy.connect(model)
    trainer.save_checkpoint(base / "tiny.ckpt")
    write_video(base / "clip40.avi", moving_square(40), fps=25)
    write_video(base / "short.avi", moving_square(10), fps=25)
    write_video(base / "live.avi", moving_square(60), fps=50)
    (base / "garbage.avi").write_bytes(np.random.default_rng(1).integers(0, 256, 3000, dtype=np.uint8).tobytes())
    (base / "text.ckpt").write_text("not a checkpoint\n")
    torch.save({"weights": torch.zeros(3)}, base / "other.ckpt")
    return SimpleNamespace(base=base, ckpt=base / "tiny.ckpt", **{p.stem: p for p in base.glob("*.avi")})


def read_json(path: Path) -> dict:
    def refuse(constant: str):
        raise AssertionError(f"{path} holds {constant}: not valid JSON")

    return json.loads(path.read_text(), parse_constant=refuse)


# -- offline -------------------------------------------------------------------------------------
def test_offline_writes_a_playable_mp4_and_a_nan_free_report(files, tmp_path, capsys):
    out, report = tmp_path / "out.mp4", tmp_path / "report.json"
    args = ["--ckpt", str(files.ckpt), "--video", str(files.clip40), "--out", str(out), "--json", str(report)]
    assert main([*args, "--stride", "8", "--methods", "dtd,gradcam"]) == 0
    captured = capsys.readouterr()
    assert "\r" not in captured.err  # the status line is for a terminal, not for a captured or logged stream
    assert "wrote" in captured.out

    capture = cv2.VideoCapture(str(out))
    ok, frame = capture.read()
    capture.release()
    # One row per method, input | baseline | selective, each panel 240 px (--panel-size) of the source under the
    # crop, with a header whose text grows with it.
    assert ok and frame.shape[1:] == (3 * 240, 3) and 2 * (240 + 40) <= frame.shape[0] <= 2 * (240 + 100)
    assert count_frames(out) == 40  # every frame once, at the video's rate

    data = read_json(report)
    assert [w["start"] for w in data["windows"]] == [0, 8, 16, 24] and data["stride"] == 8
    window = data["windows"][0]
    assert window["end"] == 15 and window["prediction"]["name"] in NAMES
    assert 0 <= window["prediction"]["probability"] <= 1
    for method in ("dtd", "gradcam"):
        values = window["methods"][method]
        assert set(values) == {
            "precision",
            "selective_precision",
            "precision_mass",
            "selective_precision_mass",
            "selectivity_area",
            "selectivity_core",
            "selectivity_mass",
            "spatial_bias",
            "spatial_bias_nonempty",
            "explain_ms",
            "selective_ms",
        }
        assert all(v is None or np.isfinite(v) for v in values.values())
        assert values["explain_ms"] > 0
    summary = data["summary"]
    assert summary["windows"] == 4 and summary["windows_per_s"] > 0 and summary["frames_read"] == 40
    assert set(summary["methods"]) == {"dtd", "gradcam"}
    assert "no data module" in data["preprocessing"] and data["class_names"] == NAMES


def test_offline_gif_covers_the_tail_and_loop_pads_a_short_video(files, tmp_path):
    gif, report = tmp_path / "out.gif", tmp_path / "report.json"
    assert main(["--ckpt", str(files.ckpt), "--video", str(files.clip40), "--json", str(report), "--quiet"]) == 0
    windows = read_json(report)["windows"]
    assert [(w["start"], w["tail"]) for w in windows] == [(0, False), (16, False), (24, True)]

    args = ["--ckpt", str(files.ckpt), "--video", str(files.short), "--out", str(gif), "--json", str(report)]
    assert main([*args, "--quiet", "--panel-size", "0"]) == 0
    (window,) = read_json(report)["windows"]
    assert window["loop_padded"] and (window["start"], window["end"]) == (0, 9)
    with Image.open(gif) as image:
        assert image.n_frames == 10 and image.size == (3 * 96, PANEL_H)  # the 10 real frames


def test_offline_ctrl_c_finishes_the_video(files, tmp_path, monkeypatch):
    calls = []
    explain = WindowExplainer.__call__

    def interrupt_second(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return explain(self, *args, **kwargs)

    monkeypatch.setattr(WindowExplainer, "__call__", interrupt_second)
    out, report = tmp_path / "out.mp4", tmp_path / "report.json"
    args = ["--ckpt", str(files.ckpt), "--video", str(files.clip40), "--out", str(out), "--json", str(report)]
    assert main([*args, "--quiet"]) == 130
    assert count_frames(out) == 16 and read_json(report)["stopped"] == "interrupted"

    # Again over these complete outputs: the interrupted result goes beside them, and the report says so.
    complete = {path: path.read_bytes() for path in (out, report)}
    calls.clear()
    assert main([*args, "--quiet"]) == 130
    assert {path: path.read_bytes() for path in (out, report)} == complete
    beside = tmp_path / "report.interrupted.json"
    assert count_frames(tmp_path / "out.interrupted.mp4") == 16 and read_json(beside)["stopped"] == "interrupted"
    assert any("from an earlier run is kept" in w for w in read_json(beside)["warnings"])


def test_a_killed_runs_partial_output_is_swept_and_a_short_video_is_said(files, tmp_path, capsys):
    child = subprocess.Popen(["true"])  # noqa: S607
    child.wait()  # a pid that no longer runs
    stale = tmp_path / f".out.partial-{child.pid}.mp4"
    stale.write_bytes(b"half a video")
    mine = tmp_path / f".out.partial-{os.getpid()}x.mp4"  # not a pid: left alone
    mine.write_bytes(b"x")
    report = tmp_path / "report.json"
    args = ["--ckpt", str(files.ckpt), "--video", str(files.short), "--out", str(tmp_path / "out.mp4")]
    assert main([*args, "--json", str(report), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert not stale.exists() and mine.exists() and f"removed {stale}" in err
    warning = next(w for w in read_json(report)["warnings"] if "fewer than one clip" in w)
    assert "10 frame(s), fewer than one clip of 16" in warning and "warning: " in err


# -- live ----------------------------------------------------------------------------------------
def test_live_drops_frames_instead_of_queueing(files, tmp_path):
    """60 frames at 50 fps while every window takes >= 60 ms: most windows must be skipped."""
    out, report = tmp_path / "live.mp4", tmp_path / "live.json"
    args = ["--ckpt", str(files.ckpt), "--source", str(files.live), "--out", str(out), "--json", str(report)]
    started = time.monotonic()
    assert main([*args, "--quiet"], on_window=lambda record: time.sleep(0.06)) == 0
    elapsed = time.monotonic() - started

    data = read_json(report)
    summary, windows = data["summary"], data["windows"]
    assert data["stopped"] == "source ended" and data["pace_fps"] == 50
    assert summary["frames_read"] == 60  # the reader kept up with the source
    assert summary["windows"] + summary["frames_dropped"] == 60 - 16 + 1
    assert summary["frames_dropped"] > 0 and summary["windows"] < 45
    # Each window starts from the newest frame: latency stays bounded instead of growing, and the
    # last window reaches the end of the stream. A queue of 45 windows at >= 60 ms would lag by seconds.
    assert windows[-1]["end"] == 59
    assert max(w["latency_ms"] for w in windows) < 1000
    assert elapsed < 1.2 + 3.0
    assert [w["end"] for w in windows] == sorted({w["end"] for w in windows})
    # Each explained frame is held for the source frames that arrived meanwhile: real-time playback.
    assert count_frames(out) == windows[-1]["end"] - windows[0]["end"] + 1


def test_live_ctrl_c_leaves_a_playable_file_and_no_thread(files, tmp_path):
    out, report = tmp_path / "live.mp4", tmp_path / "live.json"
    seen = []

    def interrupt_third(record):
        seen.append(record)
        if len(seen) == 3:
            raise KeyboardInterrupt

    args = ["--ckpt", str(files.ckpt), "--source", str(files.live), "--out", str(out), "--json", str(report)]
    assert main([*args, "--quiet"], on_window=interrupt_third) == 0
    data = read_json(report)
    assert data["stopped"] == "interrupted" and len(data["windows"]) == 3
    assert count_frames(out) >= 3
    assert not [t for t in threading.enumerate() if t.name == "selrel-frame-reader"]

    gif = tmp_path / "live.gif"  # --max-windows stops as well, and a GIF is written at the end
    assert (
        main(
            [
                "--ckpt",
                str(files.ckpt),
                "--source",
                str(files.live),
                "--out",
                str(gif),
                "--max-windows",
                "2",
                "--quiet",
                "--no-realtime",
            ]
        )
        == 0
    )
    with Image.open(gif) as image:
        assert sum(frame.info["duration"] for frame in ImageSequence.Iterator(image)) > 0


@pytest.mark.skipif(display_unavailable() is None, reason="a display exists here")
def test_show_without_a_display_falls_back_to_the_file(files, tmp_path, capsys):
    out = tmp_path / "live.mp4"
    args = ["--ckpt", str(files.ckpt), "--source", str(files.live), "--show", "--max-windows", "1", "--quiet"]
    assert main([*args, "--out", str(out)]) == 0
    assert "writing to" in capsys.readouterr().err and count_frames(out) == 1
    assert main(args) == 2
    assert "pass --out" in capsys.readouterr().err


# -- bad input -----------------------------------------------------------------------------------
def test_bad_input_is_one_line_naming_the_value(files, tmp_path, capsys):
    ckpt, video, json_out = str(files.ckpt), str(files.clip40), str(tmp_path / "r.json")
    cases = {
        "missing.avi": ["--ckpt", ckpt, "--video", "missing.avi", "--json", json_out],
        "garbage.avi": ["--ckpt", ckpt, "--video", str(files.garbage), "--json", json_out],
        "camera 7": ["--ckpt", ckpt, "--source", "7", "--json", json_out],
        "--video 0 is a camera index": ["--ckpt", ckpt, "--video", "0", "--json", json_out],
        "missing.ckpt": ["--ckpt", "missing.ckpt", "--video", video, "--json", json_out],
        "text.ckpt with torch.load(weights_only=True) (it is not a PyTorch file": [
            "--ckpt",
            str(files.base / "text.ckpt"),
            "--video",
            video,
            "--json",
            json_out,
        ],
        "other.ckpt is a bare state dict of 1 tensors (weights only, no training state), not a Lightning checkpoint": [
            "--ckpt",
            str(files.base / "other.ckpt"),
            "--video",
            video,
            "--json",
            json_out,
        ],
        "lrp": ["--ckpt", ckpt, "--video", video, "--methods", "lrp", "--json", json_out],
        "--resize 8 8": ["--ckpt", ckpt, "--video", video, "--resize", "8", "8", "--json", json_out],
        "--stride 17": ["--ckpt", ckpt, "--video", video, "--stride", "17", "--json", json_out],
        "--target 4: class index out of range: the checkpoint has classes 0 to 3": [
            *("--ckpt", ckpt, "--video", video, "--target", "4", "--json", json_out)
        ],
        "--target sideways: no class of that name; pass an index 0 to 3 or one of the checkpoint's names (left,": [
            *("--ckpt", ckpt, "--video", video, "--target", "sideways", "--json", json_out)
        ],
        "out.mov": ["--ckpt", ckpt, "--video", video, "--out", "out.mov"],
        "--n-std inf: must be a finite number": [
            "--ckpt",
            ckpt,
            "--video",
            video,
            "--n-std",
            "inf",
            "--json",
            json_out,
        ],
        "--clip-shape 0 16 16: T, H and W must be positive": [
            *("--ckpt", ckpt, "--video", video, "--clip-shape", "0", "16", "16", "--json", json_out)
        ],
        "records clips of 16 x 16 x 16 (T x H x W) and --clip-shape asks for 8 x 16 x 16": [
            *("--ckpt", ckpt, "--video", video, "--clip-shape", "8", "16", "16", "--json", json_out)
        ],
        "is the --video file: writing it would destroy the input": ["--ckpt", ckpt, "--video", video, "--out", video],
        "--json " + ckpt + " is the --ckpt file": ["--ckpt", ckpt, "--video", video, "--json", ckpt],
        "nothing to write": ["--ckpt", ckpt, "--video", video],
        "--ckpt": ["--video", video],
    }
    for expected, args in cases.items():
        assert main(args) == 2, expected
        err = capsys.readouterr().err
        assert err.startswith("explain: error: ") and err.count("\n") == 1, err
        assert expected in err and "Traceback" not in err, err
    assert not (tmp_path / "r.json").exists()
    assert files.clip40.stat().st_size > 1000 and files.ckpt.stat().st_size > 1000  # the inputs are intact


def test_python_m_dispatches_explain(files, tmp_path, capsys):
    report = tmp_path / "r.json"
    assert cli.main(["explain", "--ckpt", str(files.ckpt), "--video", str(files.short), "--json", str(report)]) is None
    assert read_json(report)["summary"]["windows"] == 1
    with pytest.raises(SystemExit) as exit_:
        cli.main(["explain", "--ckpt", "missing.ckpt", "--video", str(files.short), "--json", str(report)])
    assert exit_.value.code == 2
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--help"])
    assert exit_.value.code == 0 and "fit" in capsys.readouterr().out
    # The real entry point: exit code 2 and one line, no traceback.
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "lightning_selrel",
            "explain",
            "--ckpt",
            str(files.ckpt),
            "--video",
            "nope.avi",
            "--json",
            str(report),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and "video file nope.avi not found" in result.stderr
    assert "Traceback" not in result.stderr


def test_explain_a_user_written_model_named_by_its_class(files, tmp_path, capsys):
    from user_model import UserClassifier

    torch.manual_seed(0)
    model = UserClassifier(class_names=NAMES)
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False)
    trainer.strategy.connect(model)
    ckpt = tmp_path / "user.ckpt"
    trainer.save_checkpoint(ckpt)
    report = tmp_path / "user.json"
    args = [
        "--ckpt",
        str(ckpt),
        "--video",
        str(files.clip40),
        "--json",
        str(report),
        "--quiet",
        "--methods",
        "dtd,gradcam",
    ]
    assert main([*args, "--model-class", "user_model.UserClassifier"]) == 2  # no clip shape anywhere: say so
    assert "pass --clip-shape T H W" in capsys.readouterr().err
    assert main([*args, "--model-class", "user_model.UserClassifier", "--clip-shape", "16", "16", "16"]) == 0
    data = read_json(report)
    assert data["clip_shape"] == [16, 16, 16] and data["windows"][0]["prediction"]["name"] in NAMES
    assert data["windows"][0]["methods"]["dtd"]["spatial_bias"] is not None
    assert main([*args]) == 2  # without --model-class it is not this project's classifier
    assert "name its class with --model-class" in capsys.readouterr().err


# -- nothing is lost -----------------------------------------------------------------------------
def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _one_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("explain: error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err.strip()


def test_unwritable_outputs_are_named_before_any_work(files, tmp_path, capsys, monkeypatch):
    base = ["--ckpt", str(files.ckpt), "--video", str(files.clip40)]
    calls = []
    monkeypatch.setattr(WindowExplainer, "__call__", lambda *a, **k: calls.append(1))  # must never run
    folder = tmp_path / "a_folder"
    folder.mkdir()
    cases = {
        f"--out {tmp_path}/missing/out.mp4: folder {tmp_path}/missing does not exist": [
            "--out",
            str(tmp_path / "missing" / "out.mp4"),
        ],
        f"--json {tmp_path}/missing/r.json: folder {tmp_path}/missing does not exist": [
            "--json",
            str(tmp_path / "missing" / "r.json"),
        ],
        f"--json {folder} is a folder; pass a file name": ["--json", str(folder)],
        "--panel-size 8: use 0": ["--json", str(tmp_path / "r.json"), "--panel-size", "8"],
        "--out and --json are the same file": ["--out", str(tmp_path / "x.gif"), "--json", str(tmp_path / "x.gif")],
        # Found by writing, not by os.access (which says yes to root): /proc takes no new file.
        "--json /proc/x.json: folder /proc cannot be written": ["--json", "/proc/x.json"],
        # A legal 250-character name whose temporary name would pass 255 bytes.
        "the file name is too long": ["--json", str(tmp_path / ("r" * 245 + ".json"))],
    }
    for expected, args in cases.items():
        assert main([*base, *args, "--quiet"]) == 2, expected
        assert expected in _one_line(capsys)
    assert not calls and sorted(p.name for p in tmp_path.iterdir()) == ["a_folder"]


def test_a_failed_run_never_replaces_existing_outputs(files, tmp_path, capsys, monkeypatch):
    out, report = tmp_path / "out.mp4", tmp_path / "r.json"
    args = ["--ckpt", str(files.ckpt), "--video", str(files.clip40), "--out", str(out), "--json", str(report)]
    assert main([*args, "--quiet", "--panel-size", "0"]) == 0  # a good earlier run
    before = {p: _sha(p) for p in (out, report)}
    capsys.readouterr()

    calls = []
    explain = WindowExplainer.__call__

    def fail_second(self, *a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise StreamError("reading the video failed half-way")
        return explain(self, *a, **k)

    monkeypatch.setattr(WindowExplainer, "__call__", fail_second)
    assert main([*args, "--quiet"]) == 2
    assert "reading the video failed half-way" in _one_line(capsys)
    assert {p: _sha(p) for p in (out, report)} == before  # untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4", "r.json"]  # no partial files left

    monkeypatch.setattr(WindowExplainer, "__call__", explain)
    assert main([*args, "--quiet"]) == 0  # a run that succeeds replaces them
    assert _sha(out) != before[out] and sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4", "r.json"]


def test_random_bytes_ckpt_is_not_a_checkpoint(files, tmp_path, capsys):
    random = tmp_path / "random.ckpt"
    random.write_bytes(bytes(range(256)) * 40)
    args = ["--ckpt", str(random), "--video", str(files.clip40), "--json", str(tmp_path / "r.json")]
    assert main(args) == 2
    line = _one_line(capsys)
    assert "random.ckpt" in line and "not a PyTorch file" in line and "Python objects" not in line
    assert not (tmp_path / "r.json").exists()


def test_a_truncated_video_is_reported_in_the_log_and_the_report(files, tmp_path):
    """As a user runs it (a fresh process, so FFmpeg's own logging is first configured by the command): the
    warning names the file and both frame counts, and no FFmpeg line reaches stderr."""
    data = files.clip40.read_bytes()
    truncated = tmp_path / "truncated.avi"
    truncated.write_bytes(data[: len(data) // 2])
    report = tmp_path / "r.json"
    command = [sys.executable, "-m", "lightning_selrel", "explain", "--ckpt", str(files.ckpt), "--quiet"]
    result = subprocess.run(
        [*command, "--video", str(truncated), "--json", str(report)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines and all(line.startswith("explain: warning: ") for line in lines), result.stderr
    data = read_json(report)
    claimed, read = data["source"]["frames"], data["summary"]["frames_read"]
    assert read < claimed == 40
    (warning,) = data["warnings"]
    assert f"ends after {read} of the 40 frames its header claims" in warning and "truncated.avi" in warning
    assert warning in lines[0]


def test_target_explains_one_class_in_every_window_and_the_report_gives_both(files, tmp_path):
    report, predicted = tmp_path / "target.json", tmp_path / "predicted.json"
    args = ["--ckpt", str(files.ckpt), "--video", str(files.clip40), "--methods", "dtd,gradcam"]
    assert main([*args, "--json", str(predicted)]) == 0
    assert main([*args, "--json", str(report), "--target", "LEFT"]) == 0  # a name, case-insensitive
    data, plain = read_json(report), read_json(predicted)
    assert data["target"] == "LEFT" and plain["target"] == "predicted"
    for window, base in zip(data["windows"], plain["windows"], strict=True):
        assert window["explained"]["index"] == 0 and window["explained"]["name"] == "left"
        assert window["prediction"] == base["prediction"] and "explained" not in base
        assert 0 <= window["explained"]["probability"] <= 1
    # The maps explain another class than the prediction (the tiny model predicts "up" everywhere), and GradCAM's
    # map depends on the class it explains (z+ DTD barely does: docs/method.md).
    assert all(b["prediction"]["name"] != "left" for b in plain["windows"])
    pairs = zip(data["windows"], plain["windows"], strict=True)
    values = [(w["methods"]["gradcam"], b["methods"]["gradcam"]) for w, b in pairs]
    names = ("precision_mass", "selectivity_mass", "spatial_bias")
    assert any(w[name] != b[name] for w, b in values for name in names), values


def test_explain_video_returns_the_report_and_raises_what_the_command_would_print(files, tmp_path):
    import lightning_selrel
    from lightning_selrel.commands.explain import ExplainError

    report = lightning_selrel.explain_video(
        files.ckpt, files.clip40, methods=["dtd"], stride=8, n_std=2, flow="none", target=1
    )
    assert [w["start"] for w in report["windows"]] == [0, 8, 16, 24] and report["n_std"] == 2.0
    assert report["windows"][0]["explained"]["name"] == "right" and report["target"] == "1"
    out = tmp_path / "clip.gif"
    lightning_selrel.explain_video(files.ckpt, files.clip40, out=out, max_windows=1)
    assert out.is_file()
    with pytest.raises(ExplainError, match="--stride 17: at most the model's clip length 16"):
        lightning_selrel.explain_video(files.ckpt, files.clip40, stride=17)
    with pytest.raises(ValueError, match="unrecognized arguments: --colour red"):
        lightning_selrel.explain_video(files.ckpt, files.clip40, colour="red")
    assert list(tmp_path.iterdir()) == [out]


def test_a_config_file_gives_the_options_and_the_command_line_overrides_it(files, tmp_path, capsys):
    config = tmp_path / "explain.yaml"
    config.write_text(
        f"ckpt: {files.ckpt}\nvideo: {files.clip40}\nmethods: [dtd, gradcam]\nn_std: 2\n"
        "threshold: mad\nquiet: true\nmax-windows: 1\n"
    )
    report = tmp_path / "report.json"
    assert main(["--config", str(config), "--json", str(report), "--n-std", "3"]) == 0
    data = read_json(report)
    assert set(data["windows"][0]["methods"]) == {"dtd", "gradcam"} and len(data["windows"]) == 1
    assert data["n_std"] == 3.0 and data["threshold"] == "mad"  # the command line wins over the file
    for text, message in [
        ("n_sdt: 2\n", "'n_sdt' is not an option of this command; did you mean 'n-std'?"),
        ("- 1\n- 2\n", "holds a list, not a mapping"),
        ("quiet: maybe\n", "quiet is a switch: true or false"),
        ("n_std: [1, {a: 2}]\n", "n_std takes plain values"),
        ("n_std: [\n", "is not YAML"),
    ]:
        config.write_text(text)
        assert main(["--config", str(config), "--ckpt", str(files.ckpt), "--video", str(files.clip40)]) == 2
        line = _one_line(capsys)
        assert str(config) in line and message in line, (text, line)
    assert main(["--config", str(tmp_path / "missing.yaml")]) == 2
    assert "missing.yaml: no such file" in _one_line(capsys)
    config.write_text("n_std: -1\n")  # checked as the command line is
    assert main(["--config", str(config), "--ckpt", str(files.ckpt), "--video", str(files.clip40)]) == 2
    assert "--n-std" in _one_line(capsys)
