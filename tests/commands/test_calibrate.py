"""The calibrate command: bad input in one line, an existing calibration never replaced, Ctrl-C writes nothing."""

from __future__ import annotations

import hashlib

import pytest

from lightning_selrel import MotionContextDataModule
from lightning_selrel.commands.calibrate import main
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
