"""One method on a batch of clips: explain, keep the selective relevance, and time both (the paper's Table 4).

The monitor and the ``explain`` command both call :func:`explain_selective`; the per-clip scores of what it
returns are :func:`lightning_selrel.metrics.functional.clip_scores`.
"""

from __future__ import annotations

import time
from typing import Any, NamedTuple

import torch
from torch import Tensor

from lightning_selrel.relevance.methods import explain_with_logits
from lightning_selrel.relevance.selective import Threshold, selective_relevance

__all__ = ["TimedSelective", "explain_selective"]


class TimedSelective(NamedTuple):
    """One explanation, its selective map, and what each cost (milliseconds for the whole batch)."""

    relevance: Tensor  # (B, T, H, W) float32
    selective: Tensor  # (B, T, H, W)
    logits: Tensor  # (B, num_classes)
    explain_ms: float
    selective_ms: float


def explain_selective(
    model: torch.nn.Module,
    clips: Tensor,
    method: str,
    target: Tensor | int | None = None,
    *,
    n_std: float = 4.0,
    threshold: Threshold = "std",
    signed: bool = False,
    **options: Any,
) -> TimedSelective:
    """Explain ``clips`` with ``method`` and keep the selective relevance, timing both steps.

    Args:
        model: The classifier; its forward takes the clips as the data yields them.
        clips: (B, C, T, H, W) in pixel scale.
        method: An explanation method (:func:`lightning_selrel.relevance.methods.available_methods`).
        target: The class per clip (None: the predicted one).
        n_std: Threshold of the selective step, in (robust) standard deviations.
        threshold: Its rule, ``"std"`` or ``"mad"`` (:func:`lightning_selrel.relevance.selective.selective_relevance`).
        signed: Keep only relevance that appears over time.
        **options: Options of the method (e.g. ``layer=`` for the GradCAM family).

    Returns:
        A :class:`TimedSelective`; on CUDA the clock waits for the device's queued work.
    """
    start = time.perf_counter()
    explanation = explain_with_logits(model, clips, method, target, **options)
    middle = _elapsed_ms(start, explanation.relevance.device)
    start = time.perf_counter()
    selective = selective_relevance(explanation.relevance, n_std=n_std, threshold=threshold, signed=signed)
    end = _elapsed_ms(start, selective.device)
    return TimedSelective(explanation.relevance, selective, explanation.logits, middle, end)


def _elapsed_ms(start: float, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - start) * 1000.0
