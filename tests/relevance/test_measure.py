"""The timed explain-then-select step that the monitor and the explain command share."""

from __future__ import annotations

import pytest
import torch

from lightning_selrel import C3DClassifier, explain_with_logits
from lightning_selrel.relevance.measure import TimedSelective, explain_selective
from lightning_selrel.relevance.selective import selective_relevance

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("threshold", ["std", "mad"])
def test_explain_selective_is_explain_then_select_with_both_timings(threshold):
    torch.manual_seed(0)
    model = C3DClassifier(num_classes=4, width=2, fc_dim=8, clip_shape=(16, 16, 16)).eval()
    clips = torch.randint(0, 256, (3, 3, 16, 16, 16), dtype=torch.uint8)
    result = explain_selective(model, clips, "guided_backprop", [0, 1, 2], n_std=2.0, threshold=threshold)
    assert isinstance(result, TimedSelective)
    expected = explain_with_logits(model, clips, "guided_backprop", [0, 1, 2])
    torch.testing.assert_close(result.relevance, expected.relevance)
    torch.testing.assert_close(result.logits, expected.logits)
    assert torch.equal(result.selective, selective_relevance(result.relevance, n_std=2.0, threshold=threshold))
    assert result.explain_ms > 0 and result.selective_ms > 0
