"""Real footage (``../shared/footage/``, absent from a user's clone: skipped then): the speed task leaves out the
windows of a clip where nothing moves, and keeps the others."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import pytest

from lightning_selrel import UCF101DataModule
from lightning_selrel.monitor import calibration as cal

REPO = Path(__file__).resolve().parents[2]
FOOTAGE = REPO.parent / "shared" / "footage"

pytestmark = pytest.mark.skipif(not FOOTAGE.is_dir(), reason=f"no real footage at {FOOTAGE} (see its README)")


@pytest.fixture(scope="module")
def footage_tree(tmp_path_factory):
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        from footage_calibration import write_tree
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    return write_tree(FOOTAGE, tmp_path_factory.mktemp("footage"))


@pytest.fixture(scope="module")
def footage_data(footage_tree):
    """The footage's data module as the benchmark builds it (48 x 48 crops, four clips per validation video)."""
    root, annotations = footage_tree
    datamodule = UCF101DataModule(
        str(root), str(annotations), resize=(56, 74), crop=48, batch_size=4, num_workers=0, clips_per_video=4
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        datamodule.setup("fit")
    return datamodule


@pytest.mark.slow
def test_the_speed_task_leaves_out_the_still_clip_of_the_footage(footage_data):
    windows = footage_data.long_clips("val", cal.SPEED_FACTOR)
    speed = cal.SpeedClips(windows, clip_len=16)
    names = [video.path.parent.name for video in windows.videos]
    still = {names[i // 4] for i in range(len(windows)) if i not in speed.kept}
    # The NTU clip (a person standing, filmed at 1920 x 1080) changes by 0.2 grey levels between the speeds; the
    # two others by 2-8.
    assert still == {"S001C001P001R001A001Rgb"}, still
    assert speed.still == 4 and len(speed) == 2 * 8


@pytest.mark.slow
def test_the_probe_leaves_out_the_validation_clips_of_a_person_standing(footage_data):
    val = footage_data.val_dataloader().dataset
    names = [video.path.parent.name for video in val.videos]
    moving = {names[i // 4]: [] for i in range(len(val))}
    for i in range(len(val)):
        moving[names[i // 4]].append(cal.moves(val[i][0]))
    # The person standing changes by 0.6-0.7 grey levels from frame to frame, the two moving clips by 2.8-4.1
    # (the treadmill) and 0.3-19 (the demo, quiet at its start).
    assert moving["S001C001P001R001A001Rgb"] == [False] * 4, moving
    assert moving["Test"] == [True] * 4, moving
    assert not cal.moves(val[0][0], cal.MIN_PROBE_MOTION) and cal.moves(val[0][0], 0.0)
