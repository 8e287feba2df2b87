"""The probe set: a fixed draw that a resume keeps, items that are checked, and each rank's contiguous share."""

from __future__ import annotations

import pytest
import torch
from pytorch_lightning.utilities.exceptions import MisconfigurationException

from lightning_selrel import MotionContextDataset, motion_mask
from lightning_selrel.monitor.probe_set import check_item, choose_indices, load_probe


def test_the_draw_is_fixed_by_the_seed_and_a_stored_draw_is_kept_when_it_fits():
    first = choose_indices(100, 8, seed=3)
    assert first == sorted(first) and len(set(first)) == 8 and choose_indices(100, 8, seed=3) == first
    assert choose_indices(100, 8, seed=4) != first
    assert choose_indices(100, 8, seed=4, stored=first) == first  # a resume keeps the saved probe set
    with pytest.warns(UserWarning, match="drawing a new probe set"):
        assert len(choose_indices(100, 6, seed=3, stored=first)) == 6
    with pytest.warns(UserWarning, match="only 5 clips"):
        assert choose_indices(5, 8, seed=0) == [0, 1, 2, 3, 4]


def test_items_that_do_not_fit_are_named():
    clip = torch.zeros(3, 4, 8, 8, dtype=torch.uint8)
    assert check_item((clip, 1), 0, "val")[1] == 1
    with pytest.raises(MisconfigurationException, match="val item 3 is a Tensor"):
        check_item(clip, 3, "val")
    with pytest.raises(MisconfigurationException, match=r"clip of shape \(4, 8, 8\)"):
        check_item((clip[0], 1), 0, "val")
    with pytest.raises(MisconfigurationException, match="third element of test item 2"):
        check_item((clip, 1, torch.zeros(3)), 2, "test", owner="calibrate")


def test_each_rank_loads_its_contiguous_share_with_the_motion_masks():
    dataset = MotionContextDataset(size=10, clip_shape=(8, 16, 16), split="val")
    indices = [1, 4, 5, 7, 9]
    whole = load_probe(dataset, indices)
    assert whole.positions == [0, 1, 2, 3, 4] and whole.indices == indices
    assert torch.equal(whole.clips[1], dataset[4][0]) and whole.labels.tolist() == [dataset[i][1] for i in indices]
    assert torch.equal(whole.exact_masks[2], dataset[5][2])
    assert torch.equal(whole.flow_masks[3], motion_mask(dataset[7][0]))
    shares = [load_probe(dataset, indices, world_size=2, rank=r) for r in (0, 1)]
    assert [s.positions for s in shares] == [[0, 1, 2], [3, 4]]
    assert torch.equal(torch.cat([s.clips for s in shares]), whole.clips)
    empty = load_probe(dataset, indices[:1], world_size=2, rank=1)  # more ranks than clips: an empty share
    assert empty.clips.shape == (0, 3, 8, 16, 16) and empty.exact_masks.shape == (0, 8, 16, 16)
