"""Proof that mitigation moves the model, on the built-in ``cue: both`` data (slow: two default trainings).

The default run's seed, data and budget (1024 clips, 3 epochs, the small C3D; SGD, the classifier's fallback
optimiser, see below) without and with StillMix mixing
every training clip (``p: 1``; the paper's ``p: 0.5`` moves the conflict share less, 0.12 -> 0.38, and leaves
frozen-clip accuracy at 1.0: README, "Fixing static bias"): the mitigated model follows the motion on more
cue-conflict clips, is wrong on more frozen clips and loses more confidence when a clip is frozen, while val/acc
stays within 0.08 of the unmitigated model's. The numbers are ``benchmarks/bench_mitigation.py --optimizer sgd``'s
(``none`` and ``stillmix_all``, camera 0): conflict share 0.122 -> 0.476, frozen accuracy 1.000 -> 0.750, val/acc
1.000 -> 0.969 at seed 0, the seed of this test. At seeds 1 and 2 (``--seed``) the direction holds and the size does
not: 0.008 -> 0.095 and 0.000 -> 0.088, frozen accuracy 1.000 -> 0.969, val/acc 0.973 and 1.000. So the test asks
for the direction with a margin every measured seed clears (+0.05), not seed 0's size: a float-level difference of
another machine changes the trajectory (README). Seed 0 itself shows it: on 2026-12-04 (torch 2.13.0, pytorch-lightning
2.6.6, here and in CI alike, the same code) this test and the benchmark both read conflict share 0.192 -> 0.482,
frozen accuracy 1.000 -> 0.688 and val/acc 1.000 -> 0.949, a loss of 0.051 against the 0.000-0.031 measured before.
So "about the same accuracy" is asked as a loss of at most 0.08 (ACCURACY_MARGIN): above every measured loss, and far
below what a mitigation that breaks the task costs (a model that has lost the motion and the context reads 0.25 on
four classes).
"""

from __future__ import annotations

import functools
import warnings

import pytest
import pytorch_lightning as pl
import torch

from lightning_selrel import C3DClassifier, MotionContextDataModule, SelectiveRelevanceMonitor, StaticBiasMitigation
from lightning_selrel.metrics import tags

#: The classifier's fallback optimiser, written out (SGD, lr 1e-3, momentum 0.9): with it the model learns the
#: motion cue too and StillMix moves it within the default budget; with the CLI's Adam the model locks onto the
#: context within an epoch and StillMix needs more epochs (README, "Fixing static bias").
SGD = functools.partial(torch.optim.SGD, lr=1e-3, momentum=0.9)

#: The most val/acc StillMix may cost (module docstring: measured losses 0.000-0.051).
ACCURACY_MARGIN = 0.08


def _fit(tmp_path, mitigation: StaticBiasMitigation | None) -> dict[str, float]:
    pl.seed_everything(0, verbose=False)
    data = MotionContextDataModule(seed=0)
    model = C3DClassifier(num_classes=4, width=8, fc_dim=128, clip_shape=(16, 48, 48), dropout=0.2, optimizer=SGD)
    monitor = SelectiveRelevanceMonitor(
        methods=["dtd"], num_clips=32, every_n_epochs=3, num_videos=0, num_conflict_clips=256, seed=0
    )
    trainer = pl.Trainer(
        max_epochs=3,
        accelerator="cpu",
        default_root_dir=tmp_path,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[monitor] + ([mitigation] if mitigation is not None else []),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(model, data)
    return {k: float(v) for k, v in trainer.callback_metrics.items()}


@pytest.mark.slow
def test_stillmix_makes_the_model_follow_the_motion_at_about_the_same_accuracy(tmp_path):
    plain = _fit(tmp_path / "none", None)
    mixed = _fit(tmp_path / "stillmix", StaticBiasMitigation(method="stillmix", p=1.0, seed=0))
    share, reliance, frozen = (tags.behaviour_tag(n) for n in ("conflict_motion_share", "reliance", "acc_frozen"))
    summary = {k: (round(plain[k], 3), round(mixed[k], 3)) for k in (share, reliance, frozen, "val/acc")}
    assert mixed[share] >= plain[share] + 0.05, summary
    assert mixed[frozen] < plain[frozen] and mixed[reliance] > plain[reliance], summary
    assert mixed["val/acc"] >= plain["val/acc"] - ACCURACY_MARGIN, summary
