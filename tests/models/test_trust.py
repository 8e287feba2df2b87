"""A checkpoint is data: the ``arch`` it records never makes the program import or call code the user did not trust.

A crafted checkpoint (the release fixture with ``arch`` set to a class path of a module lying next to it) goes
through every way a checkpoint is loaded: ``load_classifier``, ``C3DClassifier.load_from_checkpoint``, ``explain
--ckpt`` and ``validate --ckpt_path``. Each refuses in one line naming the file, the class path and the fix, and the
module is neither imported nor called; the explicit trust (``trust_arch=``, ``trust_architecture``, ``--trust-arch``,
``--model.arch``) loads it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from ucf_fixture import write_video

from lightning_selrel import C3DClassifier
from lightning_selrel.commands import main
from lightning_selrel.files import CheckpointError
from lightning_selrel.models import architectures
from lightning_selrel.models.checkpoint import load_classifier

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "release_0_1_0"
MODULE = "selrel_crafted_arch"
ARCH = f"{MODULE}.Net"

CRAFTED_MODULE = """
import pathlib
HERE = pathlib.Path(__file__).parent
(HERE / "IMPORTED").write_text("imported")
from lightning_selrel.models.c3d import C3D


class Net(C3D):
    def __init__(self, **kwargs):
        (HERE / "CALLED").write_text(repr(sorted(kwargs)))
        super().__init__(**kwargs)
"""


@pytest.fixture
def crafted(tmp_path, monkeypatch) -> Path:
    """The release checkpoint naming ``selrel_crafted_arch.Net``, the module beside it and importable."""
    checkpoint = torch.load(FIXTURES / "c3d_synthetic.ckpt", map_location="cpu", weights_only=True)
    checkpoint["hyper_parameters"]["arch"] = ARCH
    torch.save(checkpoint, tmp_path / "crafted.ckpt")
    (tmp_path / f"{MODULE}.py").write_text(CRAFTED_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))  # as `python -m` puts the working folder first
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(architectures, "_TRUSTED", set())
    sys.modules.pop(MODULE, None)
    yield tmp_path / "crafted.ckpt"
    sys.modules.pop(MODULE, None)


def _untouched(folder: Path) -> None:
    assert not (folder / "IMPORTED").exists() and not (folder / "CALLED").exists()
    assert MODULE not in sys.modules


def _one_line(capsys) -> str:
    lines = [line for line in capsys.readouterr().err.strip().splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert "Traceback" not in lines[0]
    return lines[0]


def test_load_classifier_refuses_before_any_import(crafted):
    with pytest.raises(CheckpointError, match=rf"checkpoint {crafted} names the architecture class path '{ARCH}'"):
        load_classifier(crafted)
    with pytest.raises(CheckpointError, match="trust_arch="):
        load_classifier(crafted, model_class="lightning_selrel.C3DClassifier")  # --model-class is no trust
    _untouched(crafted.parent)


def test_load_from_checkpoint_refuses_before_any_import(crafted):
    with pytest.raises(CheckpointError, match=rf"'{ARCH}': a checkpoint is data"):
        C3DClassifier.load_from_checkpoint(crafted)
    with open(crafted, "rb") as stream, pytest.raises(CheckpointError, match=ARCH):
        C3DClassifier.load_from_checkpoint(stream)
    _untouched(crafted.parent)


def test_a_module_of_the_standard_library_is_not_imported_either(crafted):
    checkpoint = torch.load(crafted, weights_only=True)
    checkpoint["hyper_parameters"]["arch"] = "this.d"  # importing `this` prints the Zen of Python
    torch.save(checkpoint, crafted)
    sys.modules.pop("this", None)
    with pytest.raises(CheckpointError, match="'this.d'"):
        load_classifier(crafted)
    assert "this" not in sys.modules


def test_explain_refuses_in_one_line_and_writes_nothing(crafted, capsys):
    frames = np.random.default_rng(0).integers(0, 255, (20, 48, 48, 3), dtype=np.uint8)
    video = crafted.parent / "clip.avi"
    write_video(video, frames)
    with pytest.raises(SystemExit) as exit_:
        main(["explain", "--ckpt", str(crafted), "--video", str(video), "--out", "o.mp4", "--methods", "dtd"])
    assert exit_.value.code == 2
    line = _one_line(capsys)
    assert str(crafted) in line and ARCH in line and f"--trust-arch {ARCH}" in line
    assert not (crafted.parent / "o.mp4").exists()
    _untouched(crafted.parent)


def test_validate_with_the_crafted_checkpoint_refuses_before_any_log_folder(crafted, capsys):
    runs = crafted.parent / "runs"
    with pytest.raises(SystemExit) as exit_:
        main(["validate", "--config", str(FIXTURES / "config.yaml"), "--ckpt_path", str(crafted), _root(runs)])
    assert exit_.value.code == 2
    line = _one_line(capsys)
    assert ARCH in line and f"--model.arch {ARCH}" in line
    assert not runs.exists()
    _untouched(crafted.parent)


def _root(runs: Path) -> str:
    return f"--trainer.default_root_dir={runs}"


def test_explicit_trust_loads_it(crafted):
    loaded = load_classifier(crafted, trust_arch=ARCH)
    assert type(loaded.model.net).__module__ == MODULE and (crafted.parent / "CALLED").exists()
    clips = torch.randint(0, 256, (1, 3, 16, 48, 48), dtype=torch.uint8)
    with torch.no_grad():
        assert loaded.model(clips).shape == (1, 4)
    with pytest.raises(CheckpointError):  # trust is for that one path
        C3DClassifier.load_from_checkpoint(crafted, trust_arch="other.Net")
    architectures.trust_architecture(ARCH)
    assert type(C3DClassifier.load_from_checkpoint(crafted).net).__name__ == "Net"
    with pytest.raises(ValueError, match="class path"):
        architectures.trust_architecture("evil")


def test_the_users_own_model_arch_is_trust(crafted):
    runs = crafted.parent / "runs"
    config = str(FIXTURES / "config.yaml")
    cli = main(
        ["validate", "--config", config, "--ckpt_path", str(crafted), f"--model.arch={ARCH}", _root(runs)]
        + [f"--trainer.logger.init_args.save_dir={runs}"]
    )
    assert type(cli.model.net).__name__ == "Net" and (crafted.parent / "CALLED").exists()


def test_registered_names_and_release_checkpoints_load_as_before():
    loaded = load_classifier(FIXTURES / "c3d_synthetic.ckpt")
    assert loaded.model.hparams["arch"] == "c3d"
    for arch in architectures.ARCHITECTURES:
        assert architectures.is_trusted(arch)
    assert not architectures.is_trusted(ARCH) and architectures.is_trusted(ARCH, trust=[ARCH])
