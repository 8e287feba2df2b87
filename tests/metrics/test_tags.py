"""Tag names are defined once: the scores the metrics compute, the explain command's report and the monitor agree."""

from __future__ import annotations

import torch

from lightning_selrel.commands.windows import METRICS
from lightning_selrel.metrics import tags
from lightning_selrel.metrics.functional import clip_scores


def test_clip_scores_compute_exactly_the_named_scores():
    relevance = torch.randn(2, 4, 5, 5, generator=torch.Generator().manual_seed(0))
    selective = relevance * (relevance > 1)
    moving = relevance.abs() > 0.5
    assert tuple(clip_scores(relevance, selective, flow=moving, exact=moving)) == tags.SCORES
    no_truth = {*tags.SELECTIVITY, tags.NONEMPTY}
    assert set(clip_scores(relevance, selective)) == no_truth  # no ground truth, no precision
    assert METRICS == tags.WINDOW_METRICS and set(tags.WINDOW_METRICS) <= set(tags.SCORES) | set(tags.TIMINGS)


def test_tag_helpers_and_the_fractions():
    assert tags.method_tag("dtd", "spatial_bias") == "selrel/dtd/spatial_bias"
    assert tags.agreement_tag("agreement_core", "dtd", "gradcam") == "selrel/agreement_core/dtd_vs_gradcam"
    assert set(tags.FRACTIONS) == set(tags.SCORES) | set(tags.SHARES) and not set(tags.TIMINGS) & set(tags.FRACTIONS)
    assert len(set(tags.SCORES)) == len(tags.SCORES)
