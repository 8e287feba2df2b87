"""The mitigations as batch transforms: what they blend in, with what weight, to which clips, and reproducibly."""

from __future__ import annotations

import pytest
import torch

from lightning_selrel.mitigation.blend import background_erasing, blend_still, still_mix


def _clips(b: int = 6, t: int = 5) -> torch.Tensor:
    """Clip i, frame j holds the value 10 i + j everywhere: where a blended value comes from is readable."""
    values = 10 * torch.arange(b).view(b, 1, 1, 1, 1) + torch.arange(t).view(1, 1, t, 1, 1)
    return values.expand(b, 3, t, 2, 2).to(torch.uint8).contiguous()


def test_blend_still_repeats_the_frame_over_time_and_keeps_the_dtype():
    clips = _clips(2).float()
    frames = torch.full((2, 3, 2, 2), 100.0)
    out = blend_still(clips, frames, torch.tensor([1.0, 0.5]))
    assert torch.equal(out[0], clips[0]) and torch.allclose(out[1], 0.5 * clips[1] + 50)
    assert blend_still(_clips(2), frames, torch.tensor([0.25, 0.25])).dtype == torch.uint8
    with pytest.raises(ValueError, match=r"\(B, C, T, H, W\)"):
        blend_still(clips[0], frames, torch.ones(1))


def test_background_erasing_adds_a_frame_of_the_same_clip_with_a_weight_up_to_max_weight():
    clips = _clips().double()
    g = torch.Generator().manual_seed(0)
    out = background_erasing(clips, max_weight=0.3, generator=g)
    for i in range(6):
        # x' = (1 - w) x + w x_k: the frame differences shrink by (1 - w), and x_k is one of the clip's own frames
        keep = float((out[i, 0, 1, 0, 0] - out[i, 0, 0, 0, 0]) / (clips[i, 0, 1, 0, 0] - clips[i, 0, 0, 0, 0]))
        assert 0.7 <= keep <= 1.0
        added = (out[i, 0, 0, 0, 0] - keep * clips[i, 0, 0, 0, 0]) / (1 - keep)
        assert round(float(added)) - 10 * i in range(5) and abs(float(added) - round(float(added))) < 1e-3
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert torch.equal(background_erasing(clips, generator=g1), background_erasing(clips, generator=g2))
    assert torch.equal(background_erasing(clips, p=0.0), clips)


def test_still_mix_blends_a_frame_of_another_clip_into_a_share_p_and_keeps_the_motion():
    clips = _clips(8).double()
    g = torch.Generator().manual_seed(0)
    out = still_mix(clips, alpha=200.0, p=1.0, generator=g)
    for i in range(8):
        lam = float((out[i, 0, 1, 0, 0] - out[i, 0, 0, 0, 0]) / (clips[i, 0, 1, 0, 0] - clips[i, 0, 0, 0, 0]))
        assert 0.4 < lam < 0.6  # Beta(200, 200)
        source = float((out[i, 0, 0, 0, 0] - lam * clips[i, 0, 0, 0, 0]) / (1 - lam))
        assert not 10 * i <= source <= 10 * i + 4, "the still frame comes from another clip"
        motion = lam * (clips[i, 0, 1:] - clips[i, 0, :-1])  # the frame differences, scaled: the motion stays
        assert torch.allclose(out[i, 0, 1:] - out[i, 0, :-1], motion, atol=1e-4)
    mixed = sum(not torch.equal(a, b) for a, b in zip(still_mix(clips, p=0.5, generator=g), clips, strict=True))
    assert 0 < mixed < 8
    assert torch.equal(still_mix(clips[:1], p=1.0), clips[:1])  # a batch of one has no other clip
    bank = torch.full((3, 3, 2, 2), 200.0, dtype=torch.float64)
    banked = still_mix(clips, p=1.0, frames=bank, generator=g)
    lam = (banked[:, 0, 1, 0, 0] - banked[:, 0, 0, 0, 0]) / 1.0
    assert torch.allclose(banked[:, 0, 0, 0, 0], lam * clips[:, 0, 0, 0, 0] + (1 - lam) * 200, atol=1e-3)
