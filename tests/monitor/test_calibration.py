"""Calibration: the references' data, the scale and its recommendation, the file, and the monitor's use of it."""

from __future__ import annotations

import json
import math
import os

import pytest
import torch
from pytorch_lightning.utilities.exceptions import MisconfigurationException

from lightning_selrel import MotionContextDataModule, SelectiveRelevanceMonitor
from lightning_selrel.monitor import calibration as cal
from lightning_selrel.monitor.behaviour import freeze


def test_frozen_clips_repeat_one_frame_and_evaluation_is_repeatable():
    dataset = MotionContextDataModule(clip_shape=(8, 16, 16), val_size=4).val_set
    frozen = cal.FrozenClips(dataset, random_frame=False, seed=1)
    clip, label = frozen[2]
    assert label == dataset[2][1] and clip.shape == (3, 8, 16, 16)
    assert all(torch.equal(clip[:, 0], clip[:, t]) for t in range(8))
    assert torch.equal(frozen[2][0], clip)  # the same frame every time in evaluation


def test_speed_clips_hold_the_same_frames_so_a_frozen_clip_cannot_tell_them_apart():
    datamodule = MotionContextDataModule(clip_shape=(8, 16, 16), val_size=3)
    speed = cal.SpeedClips(datamodule.long_clips("val", 3), clip_len=8)
    assert len(speed) == 6
    normal, slow_label = speed[2]
    fast, fast_label = speed[3]
    assert (slow_label, fast_label) == (0, 1) and normal.shape == fast.shape == (3, 8, 16, 16)
    assert torch.equal(freeze(normal[None]), freeze(fast[None]))  # both freeze to frame 12 of the long clip
    assert not torch.equal(normal, fast)
    with pytest.raises(cal.CalibrationError, match="needs 3 x 8"):
        cal.SpeedClips(datamodule.val_set, clip_len=8)[0]


def _per_clip(motion: float, static: float) -> tuple[dict, dict]:
    grid = {"std": {"4": [motion - 0.01, motion, motion + 0.01]}, "mad": {"4": [0.5, 0.5, 0.5]}}
    other = {"std": {"4": [static - 0.01, static, static + 0.01]}, "mad": {"4": [0.5, 0.5, float("nan")]}}
    return {"dtd": grid}, {"dtd": other}


def test_the_scale_and_the_recommendation():
    motion, static = _per_clip(0.6, 0.9)
    scale = cal.scale_of(motion, static)
    point = scale["dtd"]["std"]["4"]
    assert point["gap"] == pytest.approx(0.3) and point["motion"]["std"] == pytest.approx((2 / 3) ** 0.5 * 0.01)
    assert point["separation"] == pytest.approx(0.3 / point["motion"]["std"])
    assert math.isnan(scale["dtd"]["mad"]["4"]["separation"])  # no spread, no separation
    assert cal.recommend(scale) == {
        "method": "dtd",
        "threshold": "std",
        "n_std": 4.0,
        "gap": point["gap"],
        "separation": point["separation"],
    }
    assert cal.recommend(cal.scale_of(*_per_clip(0.9, 0.6))) is None  # an inverted scale recommends nothing
    assert cal.calibrated(0.75, point) == pytest.approx(0.5) and cal.calibrated(0.95, point) > 1.0  # not clipped


def test_the_judge_refuses_references_that_did_not_do_their_job():
    good = {"motion": {"accuracy": 0.9}, "static": {"accuracy": 0.8, "classes": 4, "unchanged_frozen": 0.95}}
    assert cal.judge(good) is None
    lazy = {**good, "motion": {"accuracy": 0.6}}
    assert "the motion reference did not learn its task" in cal.judge(lazy)
    blind = {**good, "static": {"accuracy": 0.3, "classes": 4, "unchanged_frozen": 0.95}}
    assert "the static reference did not learn its task" in cal.judge(blind)
    moving = {**good, "static": {"accuracy": 0.8, "classes": 4, "unchanged_frozen": 0.5}}
    assert "the static reference is not static: its prediction changes on 50%" in cal.judge(moving)
    assert cal.learned(0.75, 2) and not cal.learned(0.74, 2) and cal.learned(0.625, 4)


def _calibration(**overrides) -> cal.Calibration:
    motion, static = _per_clip(0.6, 0.9)
    scale = cal.scale_of(motion, static)
    fields = dict(
        methods=["dtd"],
        clip_shape=[16, 16, 16],
        n_std_grid=[4.0],
        thresholds=["std", "mad"],
        references={"motion": {}, "static": {}},
        scale=scale,
        recommended=cal.recommend(scale),
        refused=None,
    )
    return cal.Calibration(**{**fields, **overrides})


def test_the_file_round_trips_and_a_wrong_file_is_named(tmp_path):
    written = cal.write_outputs(_calibration(references={"motion": _ref(), "static": _ref(4)}), tmp_path / "out")
    assert set(written) == {"calibration.json", "calibration.png", "calibration.md"}
    loaded = cal.load_calibration(tmp_path / "out")  # the folder or the file
    assert loaded.point("dtd", "std", 4)["gap"] == pytest.approx(0.3) and loaded.recommended["n_std"] == 4.0
    assert "mad" in loaded.scale["dtd"] and loaded.scale["dtd"]["mad"]["4"]["separation"] is None  # NaN -> null
    assert (
        "**Recommended: `dtd` with `threshold: std` and `n_std: 4`**"
        in (tmp_path / "out" / "calibration.md").read_text()
    )
    with pytest.raises(cal.CalibrationError, match="no n_std 2; it measured n_std"):
        loaded.point("dtd", "std", 2.0)
    with pytest.raises(cal.CalibrationError, match="no method 'gradcam'"):
        loaded.point("gradcam", "std", 4.0)
    (tmp_path / "bad.json").write_text(json.dumps({"version": 99}))
    for path, message in (
        (tmp_path / "missing.json", "not found"),
        (tmp_path / "bad.json", "not a calibration of version"),
    ):
        with pytest.raises(cal.CalibrationError, match=message):
            cal.load_calibration(path)


def _ref(classes: int = 2) -> dict:
    return {"task": "t", "classes": classes, "accuracy": 0.9, "frozen_accuracy": 0.5, "unchanged_frozen": 1.0}


def test_an_interrupted_write_leaves_no_half_written_calibration(tmp_path, monkeypatch):
    out = tmp_path / "out"
    calibration = _calibration(references={"motion": _ref(), "static": _ref(4)})
    original = os.replace

    def interrupt_at_the_json(source, target):
        if str(target).endswith("calibration.json"):
            raise KeyboardInterrupt
        original(source, target)

    monkeypatch.setattr(os, "replace", interrupt_at_the_json)
    with pytest.raises(KeyboardInterrupt):
        cal.write_outputs(calibration, out)
    assert not (out / "calibration.json").exists() and not list(out.glob(".*.tmp"))


def test_the_monitor_refuses_a_calibration_for_another_setting_or_clip(tmp_path):
    cal.write_outputs(_calibration(references={"motion": _ref(), "static": _ref(4)}), tmp_path)
    path = str(tmp_path / "calibration.json")
    with pytest.raises(cal.CalibrationError, match="no n_std 2"):
        SelectiveRelevanceMonitor(methods=["dtd"], n_std=2.0, calibration=path)
    with pytest.raises(cal.CalibrationError, match="no method 'gradcam'"):
        SelectiveRelevanceMonitor(methods=["dtd", "gradcam"], calibration=path)
    monitor = SelectiveRelevanceMonitor(methods=["dtd"], calibration=path)
    probe = type("Probe", (), {"clips": torch.zeros(1, 3, 16, 32, 32)})()
    with pytest.raises(
        MisconfigurationException, match=r"made for clips \[16, 16, 16\] .*the probe clips are \[16, 32, 32\]"
    ):
        monitor._check_calibration(probe)
