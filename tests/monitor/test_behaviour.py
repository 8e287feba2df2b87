"""Behaviour with the motion removed: the clip variants, and the scores of models whose reliance is known."""

from __future__ import annotations

import math

import torch
from torch import nn

from lightning_selrel.monitor.behaviour import BEHAVIOUR, behaviour, freeze, reverse, shuffle, time_permutation


def test_variants_remove_or_scramble_the_motion_and_keep_the_frames():
    clips = torch.arange(2 * 3 * 6 * 2 * 2).reshape(2, 3, 6, 2, 2)
    frozen = freeze(clips)
    assert frozen.shape == clips.shape and torch.equal(frozen, clips[:, :, 3:4].expand_as(clips))
    assert torch.equal(reverse(clips)[:, :, 0], clips[:, :, -1])
    order = time_permutation(6, seed=1)
    assert sorted(order.tolist()) == list(range(6)) and order.tolist() != list(range(6))
    assert torch.equal(time_permutation(6, seed=1), order)  # fixed by its seed
    assert torch.equal(shuffle(clips, order)[:, :, 0], clips[:, :, order[0]])
    assert time_permutation(1).tolist() == [0]


class MiddleFrame(nn.Module):
    """Decides from the middle frame only: its prediction cannot change when the clip is frozen."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(3, 2)

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        return self.head(clips[:, :, clips.shape[2] // 2].float().mean(dim=(2, 3)))


class FrameDifference(nn.Module):
    """Decides from how much the frames change: class 1 when they do, class 0 when they do not."""

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        change = (clips[:, :, 1:].float() - clips[:, :, :-1].float()).abs().mean(dim=(1, 2, 3, 4))
        return torch.stack([torch.zeros_like(change), 10.0 * (change - 0.5)], dim=1)


def test_a_static_model_relies_on_nothing_and_a_motion_model_on_everything():
    g = torch.Generator().manual_seed(0)
    moving = torch.randint(0, 256, (6, 3, 8, 4, 4), generator=g, dtype=torch.uint8)
    labels = torch.ones(6, dtype=torch.long)
    static = behaviour(MiddleFrame().train(), moving, labels, batch_size=4)
    assert tuple(static) == BEHAVIOUR and all(v.dtype == torch.float64 and v.shape == (6,) for v in static.values())
    assert (static["unchanged_frozen"] == 1).all() and (static["reliance"].abs() < 1e-6).all()
    assert torch.equal(static["acc"], static["acc_frozen"]) and (static["contrasted_acc"] == 0).all()

    motion = behaviour(FrameDifference(), moving, labels)
    assert (motion["acc"] == 1).all() and (motion["acc_frozen"] == 0).all()  # frozen: no change, class 0
    assert (motion["unchanged_frozen"] == 0).all() and (motion["contrasted_acc"] == 1).all()
    assert (motion["acc_shuffled"] == 1).all() and (motion["acc_reversed"] == 1).all()  # still changing
    assert (motion["reliance"] > 0.9).all()


def test_modes_are_restored_and_an_empty_share_gives_empty_scores():
    model = MiddleFrame().train()
    scores = behaviour(model, torch.zeros(0, 3, 8, 4, 4), torch.zeros(0, dtype=torch.long))
    assert all(v.shape == (0,) for v in scores.values())
    behaviour(model, torch.zeros(2, 3, 8, 4, 4), torch.zeros(2, dtype=torch.long))
    assert model.training and model.head.training


class ReadsCue(nn.Module):
    """Predicts the class written in pixel (0, 0, 0, ``position``) of each clip: position 0 holds the motion's
    class, 1 the context's (a stand-in for a model that follows one cue)."""

    def __init__(self, position: int, num_classes: int = 4) -> None:
        super().__init__()
        self.position, self.num_classes = position, num_classes

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        chosen = clips[:, 0, 0, 0, self.position].long()
        return 5.0 * nn.functional.one_hot(chosen, self.num_classes).float()


def test_conflict_scores_say_which_cue_the_prediction_follows():
    from lightning_selrel.monitor.behaviour import conflict_scores, conflict_summary

    motion, context = torch.tensor([0, 1, 2, 3]), torch.tensor([1, 2, 3, 0])
    clips = torch.zeros(4, 3, 4, 2, 3, dtype=torch.uint8)
    clips[:, 0, 0, 0, 0], clips[:, 0, 0, 0, 1] = motion, context
    clips[:, 0, 0, 0, 2] = torch.tensor([2, 3, 0, 1])  # a third class, neither cue's
    follows_motion = conflict_summary(conflict_scores(ReadsCue(0), clips, motion, context, batch_size=3))
    assert follows_motion["conflict_motion_share"] == 1.0 and follows_motion["conflict_neither_share"] == 0.0
    assert follows_motion["conflict_motion_prob"] > 0.99 and follows_motion["conflict_motion_prob_std"] < 1e-6
    follows_context = conflict_summary(conflict_scores(ReadsCue(1), clips, motion, context))
    assert follows_context["conflict_motion_share"] == 0.0 and follows_context["conflict_motion_prob"] < 0.01
    neither = conflict_summary(conflict_scores(ReadsCue(2), clips, motion, context))
    assert neither["conflict_neither_share"] == 1.0 and math.isnan(neither["conflict_motion_share"])
    assert abs(neither["conflict_motion_prob"] - 0.5) < 1e-9  # both cues' classes equally unlikely
    empty = conflict_scores(ReadsCue(0), clips[:0], motion[:0], context[:0])
    assert all(v.shape == (0,) for v in empty.values()) and conflict_summary(empty) == {}
