"""Calibration: the references' data, the scale and its recommendation, the file, and the monitor's use of it."""

from __future__ import annotations

import json
import math
import os

import numpy as np
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


class _LongClips(torch.utils.data.Dataset):
    """Long clips (3, 24, 8, 8): item 0 still (noise only), item 1 a bright bar moving one pixel per frame."""

    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: int):
        g = torch.Generator().manual_seed(index)
        clip = torch.randint(100, 110, (3, 24, 8, 8), generator=g, dtype=torch.uint8)
        if index == 1:
            for t in range(24):
                clip[:, t, :, (t // 3) % 8] = 250
        return clip, 0


def test_speed_clips_leave_out_windows_that_do_not_move():
    """A still window cannot tell normal from 3x speed: evaluation keeps the moving one, training draws again."""
    evaluation = cal.SpeedClips(_LongClips(), clip_len=8)
    assert evaluation.kept == [1] and evaluation.still == 1 and len(evaluation) == 2
    everything = cal.SpeedClips(_LongClips(), clip_len=8, min_motion=0)
    assert everything.kept == [0, 1] and everything.still == 0
    training = cal.SpeedClips(_LongClips(), clip_len=8, train=True)
    assert len(training) == 4  # training keeps the count, and replaces a still draw by a moving one
    normal, label = training[0]
    assert label == 0 and torch.equal(normal, training._pair(1)[0])
    assert cal.motion_energy(torch.zeros(3, 1, 4, 4)) == 0.0


class _Counted(_LongClips):
    """:class:`_LongClips` that counts its reads."""

    def __init__(self) -> None:
        self.reads = 0

    def __getitem__(self, index: int):
        self.reads += 1
        return super().__getitem__(index)


def test_an_evaluation_pass_reads_each_long_clip_once():
    """The normal and the fast item of a pair come from one long clip: an evaluation loader reads it once, not
    twice (training draws a new window at every access, so it reads it for each item)."""
    long_clips = _Counted()
    evaluation = cal.SpeedClips(long_clips, clip_len=8, min_motion=0)
    loader = torch.utils.data.DataLoader(evaluation, batch_size=2, shuffle=False)
    first = torch.cat([clips for clips, _ in loader])
    assert long_clips.reads == 2 and len(first) == 4
    second = torch.cat([clips for clips, _ in loader])
    assert long_clips.reads == 4 and torch.equal(first, second)
    assert torch.equal(first[3], evaluation._pair(1)[1])  # the memo gives what reading again gives
    training = cal.SpeedClips(long_clips, clip_len=8, min_motion=0, train=True)
    before = long_clips.reads
    training[2], training[3]
    assert long_clips.reads == before + 2


def _per_clip(motion: float, static: float, clips: int = 8) -> tuple[dict, dict]:
    """Per-clip spatial bias of both references at dtd/std/4: a shared per-clip level (the clip decides most of
    the value) plus each reference's own offset and a small paired noise; mad has no spread and a missing clip."""
    level = [0.4 * ((3 * i) % clips) / clips for i in range(clips)]  # 0 .. 0.35, the same clip for both
    noise = [0.004 * ((-1) ** i) * (1 + i % 3) for i in range(clips)]
    low = [motion + a for a in level]
    high = [static + a + e for a, e in zip(level, noise, strict=True)]
    grid = {"std": {"4": low}, "mad": {"4": [0.5] * clips}}
    other = {"std": {"4": high}, "mad": {"4": [0.5] * (clips - 1) + [float("nan")]}}
    return {"dtd": grid}, {"dtd": other}


def test_the_scale_is_paired_over_clips_and_the_recommendation_is_measured_on_the_held_out_half():
    motion, static = _per_clip(0.6, 0.9)
    scale = cal.scale_of(motion, static)
    point = scale["dtd"]["std"]["4"]
    low, high = np.array(motion["dtd"]["std"]["4"]), np.array(static["dtd"]["std"]["4"])
    d = high - low
    assert point["gap"] == pytest.approx(d.mean()) and point["separation"] == pytest.approx(d.mean() / d.std())
    assert point["clips"] == 8 and point["motion"]["std"] == pytest.approx(low.std())
    unpaired = (high.mean() - low.mean()) / np.sqrt((low.var() + high.var()) / 2)
    assert point["separation"] > 5 * unpaired  # the clip's own level cancels in the pairs
    select, held_out = cal.halves(8)
    assert select == [0, 2, 4, 6] and held_out == [1, 3, 5, 7]
    assert point["held_out"]["separation"] == pytest.approx(d[held_out].mean() / d[held_out].std())
    assert point["select"]["separation"] == pytest.approx(d[select].mean() / d[select].std())
    assert math.isnan(scale["dtd"]["mad"]["4"]["separation"])  # no spread, no separation
    recommended = cal.recommend(scale)
    assert recommended == {
        "method": "dtd",
        "threshold": "std",
        "n_std": 4.0,
        "gap": point["held_out"]["gap"],
        "separation": point["held_out"]["separation"],
        "selection_separation": point["select"]["separation"],
        "clips": 4,
    }
    assert cal.recommend(scale, minimum=point["held_out"]["separation"] + 1) is None  # below the minimum
    assert cal.recommend(cal.scale_of(*_per_clip(0.9, 0.6))) is None  # an inverted scale recommends nothing
    bias = (point["motion"]["mean"] + point["static"]["mean"]) / 2
    assert cal.calibrated(bias, point) == pytest.approx(0.5) and cal.calibrated(1.5, point) > 1.0  # not clipped
    with pytest.raises(cal.CalibrationError, match="8 motion values but 7 static"):
        cal.scale_of(motion, {"dtd": {"std": {"4": high[:7].tolist()}}})


def test_calibrated_values_never_blow_up_or_invert():
    """References 0.800 / 0.801 mapped 0.85 to +50; references in the wrong order mapped 0.90 to -1.0. Both are
    settings where the references do not separate: no value there, and the reason."""
    close = {"motion": {"mean": 0.800}, "static": {"mean": 0.801}, "gap": 0.001, "separation": 0.1}
    inverted = {"motion": {"mean": 0.80}, "static": {"mean": 0.70}, "gap": -0.1, "separation": -3.0}
    assert math.isnan(cal.calibrated(0.85, close)) and math.isnan(cal.calibrated(0.90, inverted))
    assert "below the minimum of 1" in cal.unusable(close)
    assert "does not read above the motion reference" in cal.unusable(inverted)
    assert cal.unusable({**close, "separation": 1.2}) is None and cal.calibrated(0.8005, {**close, "separation": 1.2})


def test_the_judge_refuses_references_that_did_not_do_their_job():
    good = {"motion": {"accuracy": 0.9}, "static": {"accuracy": 0.8, "classes": 4, "unchanged_frozen": 0.95}}
    assert cal.judge(good) is None
    lazy = {**good, "motion": {"accuracy": 0.6}}
    assert "the motion reference did not learn its task" in cal.judge(lazy) and "raise --epochs" in cal.judge(lazy)
    history = {"best_epoch": 3, "history": [{"epoch": 3, "train_accuracy": 0.93}]}
    memorised = {**good, "motion": {"accuracy": 0.61, "training": history}}
    assert "it learned its training clips (0.93) but does not carry the task to new windows" in cal.judge(memorised)
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
    fields["settings"] = {
        "clip_shape": [16, 16, 16],
        "signed": False,
        "target": "predicted",
        "gradcam_layer": None,
        "normalisation": None,
    }
    return cal.Calibration(**{**fields, **overrides})


def test_the_file_round_trips_and_a_wrong_file_is_named(tmp_path):
    written = cal.write_outputs(_calibration(references={"motion": _ref(), "static": _ref(4)}), tmp_path / "out")
    assert set(written) == {"calibration.json", "calibration.png", "calibration.md"}
    loaded = cal.load_calibration(tmp_path / "out")  # the folder or the file
    assert loaded.point("dtd", "std", 4)["gap"] == pytest.approx(0.3, abs=0.01) and loaded.recommended["n_std"] == 4.0
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
    (tmp_path / "v1.json").write_text(json.dumps({"version": 1, "scale": {}}))
    for path, message in (
        (tmp_path / "missing.json", "not found"),
        (tmp_path / "bad.json", "not a calibration of version"),
        (tmp_path / "v1.json", "version 1, which did not record the settings"),
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
    with pytest.raises(cal.CalibrationError, match=r"made at signed=False, these maps use signed=True"):
        SelectiveRelevanceMonitor(methods=["dtd"], signed=True, calibration=path)
    with pytest.raises(cal.CalibrationError, match=r"made at target='predicted', these maps use target='label'"):
        SelectiveRelevanceMonitor(methods=["dtd"], target="label", calibration=path)
    monitor = SelectiveRelevanceMonitor(methods=["dtd"], calibration=path)
    probe = type("Probe", (), {"clips": torch.zeros(1, 3, 16, 32, 32)})()
    with pytest.raises(
        MisconfigurationException, match=r"made for clips \[16, 16, 16\] .*the probe clips are \[16, 32, 32\]"
    ):
        monitor._check_calibration(probe)


def test_the_monitor_refuses_a_refused_calibration_and_skips_a_setting_that_does_not_separate(tmp_path):
    refused = _calibration(references={"motion": _ref(), "static": _ref(4)}, recommended=None, refused="lazy")
    cal.write_outputs(refused, tmp_path / "refused")
    with pytest.raises(cal.CalibrationError, match=r"was refused by calibrate \(lazy\); its scale has no meaning"):
        SelectiveRelevanceMonitor(methods=["dtd"], calibration=str(tmp_path / "refused"))
    cal.write_outputs(_calibration(references={"motion": _ref(), "static": _ref(4)}), tmp_path / "ok")
    monitor = SelectiveRelevanceMonitor(methods=["dtd"], threshold="mad", calibration=str(tmp_path / "ok"))
    assert "no paired spread" in monitor.uncalibrated["dtd"]
    probe = type("Probe", (), {"clips": torch.zeros(1, 3, 16, 16, 16)})()
    with pytest.warns(UserWarning, match="no calibrated spatial bias for dtd: in .* no paired spread there"):
        monitor._check_calibration(probe)


def test_the_monitor_says_when_its_clips_are_still_but_the_scale_was_measured_on_moving_ones(tmp_path, recwarn):
    probe_info = {"min_probe_motion": cal.MIN_PROBE_MOTION, "still_left_out": [3]}
    cal.write_outputs(_calibration(references={"motion": _ref(), "static": _ref(4)}, probe=probe_info), tmp_path)
    monitor = SelectiveRelevanceMonitor(methods=["dtd"], calibration=str(tmp_path))
    moving = torch.zeros(3, 3, 16, 16, 16, dtype=torch.uint8)
    for t in range(16):
        moving[:, :, t, :, t] = 255  # a bar moving by a pixel a frame
    moving[0] = 128  # one still clip
    assert not cal.moves(moving[0]) and cal.moves(moving[1])
    with pytest.warns(UserWarning, match=r"1 of this rank's 3 probe clips hardly move .* measured on moving clips"):
        monitor._check_calibration(type("Probe", (), {"clips": moving})())


def test_the_monitor_refuses_a_calibration_of_another_layer_or_normalisation(tmp_path):
    from lightning_selrel import C3DClassifier

    model = C3DClassifier(num_classes=4, width=4, fc_dim=8, clip_shape=(16, 16, 16))
    settings = cal.map_settings(
        model, ["gradcam"], clip_shape=[16, 16, 16], signed=False, target="predicted", gradcam_layer=None
    )
    assert settings["gradcam_layer"] == "net.conv5b" and settings["normalisation"]["mean"] == pytest.approx(
        list(model.normalize.mean.flatten().tolist())
    )
    motion, static = _per_clip(0.6, 0.9)
    scale = cal.scale_of({"gradcam": motion["dtd"]}, {"gradcam": static["dtd"]})
    calibration = _calibration(
        methods=["gradcam"], scale=scale, references={"motion": _ref(), "static": _ref(4)}, settings=settings
    )
    cal.write_outputs(calibration, tmp_path)
    trainer = type("Trainer", (), {"limit_val_batches": 1.0})()
    SelectiveRelevanceMonitor(methods=["gradcam"], calibration=str(tmp_path)).setup(trainer, model, "validate")
    with pytest.raises(MisconfigurationException, match=r"made at gradcam_layer='net.conv5b', .*'net.conv4b'"):
        SelectiveRelevanceMonitor(methods=["gradcam"], calibration=str(tmp_path), gradcam_layer="net.conv4b").setup(
            trainer, model, "validate"
        )
    # A monitor of methods that read no layer does not compare it (the file still names the one gradcam read).
    motion, static = _per_clip(0.6, 0.9)
    both = cal.scale_of(
        {"gradcam": motion["dtd"], "dtd": motion["dtd"]}, {"gradcam": static["dtd"], "dtd": static["dtd"]}
    )
    cal.write_outputs(
        _calibration(
            methods=["gradcam", "dtd"], scale=both, references={"motion": _ref(), "static": _ref(4)}, settings=settings
        ),
        tmp_path / "both",
    )
    SelectiveRelevanceMonitor(methods=["dtd"], calibration=str(tmp_path / "both")).setup(trainer, model, "validate")
    other = C3DClassifier(num_classes=4, width=4, fc_dim=8, clip_shape=(16, 16, 16), mean=(0, 0, 0), std=(1, 1, 1))
    with pytest.raises(MisconfigurationException, match=r"made at normalisation=.* these maps use normalisation="):
        SelectiveRelevanceMonitor(methods=["gradcam"], calibration=str(tmp_path)).setup(trainer, other, "validate")


def test_a_method_that_orders_the_references_the_wrong_way_is_flagged_even_in_a_refused_calibration():
    def grid(std: float, mad: float) -> dict:
        return {"std": {"4": [std + 0.01 * i for i in range(8)]}, "mad": {"4": [mad + 0.01 * i for i in range(8)]}}

    motion = {"dtd": grid(0.6, 0.6), "gradcam": grid(0.9, 0.9)}
    static = {"dtd": grid(0.9, 0.9), "gradcam": grid(0.85, 0.9)}  # below under std, equal under mad
    scale = cal.scale_of(motion, static)
    references = {"motion": _ref(), "static": _ref()}
    refused = _calibration(
        methods=["dtd", "gradcam"], scale=scale, recommended=None, refused="the motion reference", references=references
    )
    flagged = cal.cannot_tell(refused)
    assert set(flagged) == {"gradcam"} and "gap -0.050 (std), gap +0.000 (mad)" in flagged["gradcam"]
    assert "cannot tell a motion model from a context model" in flagged["gradcam"]
    assert "**gradcam cannot tell motion from context here**" in cal.report_markdown(refused)
    static["gradcam"] = grid(0.85, 0.95)  # right way under one rule: not flagged
    assert cal.cannot_tell(_calibration(methods=["dtd", "gradcam"], scale=cal.scale_of(motion, static))) == {}


def test_a_hand_edited_calibration_is_refused_field_by_field_before_any_work(tmp_path):
    from lightning_selrel import C3DClassifier

    cal.write_outputs(_calibration(references={"motion": _ref(), "static": _ref(4)}), tmp_path / "good")
    good = json.loads((tmp_path / "good" / "calibration.json").read_text())

    def edited(change) -> str:
        data = json.loads(json.dumps(good))
        change(data)
        path = tmp_path / f"edit{len(list(tmp_path.glob('edit*')))}.json"
        path.write_text(json.dumps(data))  # json writes NaN and Infinity as the bare words, as an editor would
        return str(path)

    def point(data):
        return data["scale"]["dtd"]["std"]["4"]

    cases = {
        "scale.dtd.std.4.motion.mean must be a finite number or null, got 'abc'": lambda d: point(d)["motion"].update(
            mean="abc"
        ),
        "scale.dtd.std.4 is missing or not a point, got 0.5": lambda d: d["scale"]["dtd"]["std"].update({"4": 0.5}),
        "scale.dtd.std.4.motion is missing": lambda d: point(d).pop("motion"),
        "scale.dtd.std.4.static.mean must be a finite number or null, got inf": lambda d: point(d)["static"].update(
            mean=float("inf")
        ),
        "scale.dtd.std.4.gap must be a finite number or null, got nan": lambda d: point(d).update(gap=float("nan")),
        "clip_shape must be [T, H, W] of positive integers, got 'abc'": lambda d: d.update(clip_shape="abc"),
        "methods is missing": lambda d: d.pop("methods"),
        "probe.min_probe_motion must be null or a finite number >= 0, got -1": lambda d: d["probe"].update(
            min_probe_motion=-1
        ),
        "clip_shape is missing": lambda d: d.pop("clip_shape"),
        "scale must be a mapping of method -> rule -> n_std -> point, got list": lambda d: d.update(scale=[1]),
        "scale.dtd.std is missing (the file declares ['std', 'mad']; it holds ['mad', 'sdt'])": lambda d: d["scale"][
            "dtd"
        ].update(sdt=d["scale"]["dtd"].pop("std")),
    }
    for message, change in cases.items():
        path = edited(change)
        with pytest.raises(cal.CalibrationError) as error:
            SelectiveRelevanceMonitor(methods=["dtd"], calibration=path)
        text = str(error.value)
        assert text.startswith(f"calibration {path}: ") and message in text and "calibrate again" in text, text
    # Clips of another shape: refused at set-up, with the model in hand (before any training step).
    other = edited(lambda d: d.update(clip_shape=[8, 16, 16]))
    monitor = SelectiveRelevanceMonitor(methods=["dtd"], calibration=other)
    model = C3DClassifier(num_classes=4, width=2, fc_dim=8, clip_shape=(16, 16, 16))
    with pytest.raises(cal.CalibrationError, match=r"made for clips \[8, 16, 16\] \(T, H, W\), the model takes"):
        monitor.calibration.check_model(other, model, ["dtd"], None)
    with pytest.raises(MisconfigurationException, match=r"made for clips \[8, 16, 16\]"):
        monitor.setup(type("T", (), {"limit_val_batches": 0})(), model, "validate")
