"""The calibrate command: bad input in one line, an existing calibration never replaced, Ctrl-C writes nothing."""

from __future__ import annotations

import argparse
import hashlib

import pytest
import torch

from lightning_selrel import MotionContextDataModule
from lightning_selrel.commands.calibrate import _MonitorOptions, _probe_indices, main
from lightning_selrel.monitor import calibration as cal

TINY = [
    "--model.width=2",
    "--model.fc_dim=8",
    "--data.init_args.clip_shape=[16,16,16]",
    "--data.init_args.train_size=8",
    "--data.init_args.val_size=8",
    "--data.init_args.batch_size=4",
    "--train-clips=8",
    "--val-clips=4",
    "--probe-clips=4",
    "--epochs=1",
    "--methods=dtd",
    "--trainer.enable_progress_bar=false",
]


class NoLongClips(MotionContextDataModule):
    """A data module without the long_clips protocol."""

    long_clips = None


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


def _one_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("calibrate: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--probe-clips=2"], "--probe-clips 2: at least 3"),
        (["--methods", "dtd", "nope"], "--methods: unknown explanation method(s) ['nope']"),
        (["--epochs=0"], "--epochs 0: must be at least 1"),
        (["--n-std-grid", "2", "inf"], "--n-std-grid [2.0, inf]: every n_std must be a finite number >= 0"),
        (["--out=/proc/selrel_calibration"], "--out /proc/selrel_calibration cannot be written (/proc:"),
        (["--out=/proc/version"], "--out /proc/version is a file, not a folder"),
        (["--data=test_calibrate.NoLongClips"], "NoLongClips has no long_clips(stage, factor)"),
        (["--min-separation=0"], "--min-separation 0.0: must be positive"),
        (["--min-motion=-1"], "--min-motion -1.0: must be >= 0"),
        (["--min-motion=1000"], "none of the 2 validation windows moves enough for the speed task"),
        (["--min-probe-motion=-1"], "--min-probe-motion -1.0: must be >= 0"),
        (["--min-probe-motion=1000"], "only 0 of the validation clips looked at move (mean frame difference at"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, message, capsys, tmp_path):
    assert main([*TINY, *args]) == 2
    assert message in _one_line(capsys)
    assert not (tmp_path / "calibration").exists()


def test_an_existing_calibration_is_never_replaced_without_overwrite(tmp_path, capsys):
    out = tmp_path / "calibration"
    out.mkdir()
    (out / "calibration.json").write_text('{"version": 1}')
    before = hashlib.sha256((out / "calibration.json").read_bytes()).hexdigest()
    assert main(TINY) == 2
    assert "calibration.json exists; pass --overwrite or another --out" in _one_line(capsys)
    assert hashlib.sha256((out / "calibration.json").read_bytes()).hexdigest() == before


def test_ctrl_c_writes_nothing(tmp_path, monkeypatch, capsys):
    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cal, "per_clip_bias", interrupt)
    assert main(TINY) == 130
    assert "interrupted; nothing was written" in capsys.readouterr().err
    assert not (tmp_path / "calibration").exists()


def test_calibrate_as_a_function_returns_the_calibration_and_raises_on_bad_input(tmp_path):
    import lightning_selrel

    cli_args = [a for a in TINY if a.startswith("--model") or a.startswith("--data") or a.startswith("--trainer")]
    options = dict(train_clips=8, val_clips=4, probe_clips=4, epochs=1, methods=["dtd"])
    result = lightning_selrel.calibrate(tmp_path / "cal", *cli_args, **options)
    assert isinstance(result, cal.Calibration) and result.methods == ["dtd"]
    assert (tmp_path / "cal" / "calibration.md").is_file()
    with pytest.raises(cal.CalibrationError, match="calibration.json exists; pass --overwrite"):
        lightning_selrel.calibrate(tmp_path / "cal", *cli_args, **options)
    again = lightning_selrel.calibrate(tmp_path / "cal", *cli_args, overwrite=True, **options)
    assert again.clip_shape == result.clip_shape
    with pytest.raises(cal.CalibrationError, match="--epochs 0: must be at least 1"):
        lightning_selrel.calibrate(tmp_path / "other", *cli_args, **{**options, "epochs": 0})
    assert not (tmp_path / "other").exists()


def test_ctrl_c_while_a_reference_trains_exits_130_and_keeps_the_old_calibration(tmp_path, monkeypatch, capsys):
    import signal

    out = tmp_path / "calibration"
    out.mkdir()
    (out / "calibration.json").write_text('{"version": 2}')

    def interrupt(self, trainer, pl_module, batch, batch_idx):
        raise KeyboardInterrupt  # Ctrl-C inside Lightning's training loop, which catches it and exits 1

    monkeypatch.setattr(cal.ReferenceSteward, "on_train_batch_start", interrupt, raising=False)
    handler = signal.getsignal(signal.SIGINT)
    assert main([*TINY, "--overwrite"]) == 130
    assert "interrupted; nothing was written" in capsys.readouterr().err
    assert (out / "calibration.json").read_text() == '{"version": 2}'  # the old one kept
    assert signal.getsignal(signal.SIGINT) is handler  # Ctrl-C works again afterwards


class _Clips:
    """A validation set of 40 clips (3, 16, 8, 8) in 0-255: the even ones still (one frame, a little JPEG-like
    quantisation noise), the odd ones a bar moving by a pixel a frame."""

    def __len__(self) -> int:
        return 40

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        g = torch.Generator().manual_seed(index)
        clip = (128 + torch.randint(-1, 2, (3, 1, 8, 8), generator=g).float()).repeat(1, 16, 1, 1)
        if index % 2:
            clip = torch.zeros(3, 16, 8, 8)
            for t in range(16):
                clip[:, t, :, t % 8] = 255.0
        return clip, 0


def _probe_args(**changes) -> argparse.Namespace:
    return argparse.Namespace(**{"probe_clips": 8, "seed": 0, "min_probe_motion": cal.MIN_PROBE_MOTION, **changes})


def test_still_probe_clips_are_replaced_by_moving_ones_and_recorded():
    """On a still shot a motion model has no motion to use: the probe set takes the moving clips, as many as asked
    for, disjoint from the monitor's, and names the still ones it drew; --min-probe-motion 0 keeps the old draw."""
    monitor = _MonitorOptions(None)  # the default monitor: 8 clips, seed 0
    kept, theirs, still = _probe_indices(_Clips(), _probe_args(), monitor)
    assert len(kept) == 8 and all(i % 2 for i in kept) and not set(kept) & set(theirs)
    assert still and all(i % 2 == 0 for i in still) and not set(still) & set(kept)
    assert _probe_indices(_Clips(), _probe_args(), monitor) == (kept, theirs, still)  # seeded
    everything, _, none = _probe_indices(_Clips(), _probe_args(min_probe_motion=0), monitor)
    assert none == [] and len(everything) == 8 and any(i % 2 == 0 for i in everything)
    assert set(everything) - set(still) <= set(kept)  # the drawn moving clips stay; only the still ones change
    with pytest.raises(cal.CalibrationError, match="lower --min-probe-motion"):
        _probe_indices(_Clips(), _probe_args(min_probe_motion=300), monitor)
