"""Metrics: class == functional == a plain NumPy loop; accumulation; skipped clips; DDP-ready states."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torchmetrics.utilities.data import dim_zero_sum

from lightning_selrel.metrics import (
    MotionPrecision,
    RelevanceAgreement,
    Selectivity,
    motion_precision,
    relevance_agreement,
    selectivity,
    spatial_bias,
)

SHAPE = (4, 5, 6, 7)  # (B, T, H, W)


# --- slow, obvious references: one clip at a time, straight from METHOD.md section 3 -------------------------------
def ref_clip_values(kind: str, a: np.ndarray, b: np.ndarray) -> dict[str, float] | None:
    """Values of one clip (T, H, W), or None when the clip has no value."""
    if kind == "precision":
        relevant = a > 0
        return None if relevant.sum() == 0 else {"v": (relevant & b).sum() / relevant.sum()}
    if kind == "selectivity":
        if (a > 0).sum() == 0:
            return None
        mass = np.clip(b, 0, None).sum() / np.clip(a, 0, None).sum()
        return {"area": (b > 0).sum() / (a > 0).sum(), "mass": mass, "bias": 1 - mass}
    if (a > 0).sum() == 0 or (b > 0).sum() == 0:
        return None
    return {"v": ((a > 0) & (b > 0)).sum() / ((a > 0) | (b > 0)).sum()}


def ref_aggregate(kind: str, a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """Mean and population std (np.std, ddof=0) over the valid clips, and the counts."""
    per_clip = [ref_clip_values(kind, x, y) for x, y in zip(a, b, strict=True)]
    valid = [v for v in per_clip if v is not None]
    out = {"count": len(valid), "skipped": len(per_clip) - len(valid)}
    for key in valid[0] if valid else []:
        values = np.array([v[key] for v in valid])
        out[key], out[key + "_std"] = values.mean(), values.std()
    return out


def make_batch(kind: str, seed: int, n: int = SHAPE[0]) -> tuple[torch.Tensor, torch.Tensor]:
    """Random inputs for ``kind``; clip 1 has no positive relevance (for agreement: in the second map)."""
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(n, *SHAPE[1:], generator=g, dtype=torch.float64) + 0.3 * torch.rand(n, 1, 1, 1, generator=g)
    a[1] = -a[1].abs()
    if kind == "precision":
        return a, torch.rand(a.shape, generator=g) < 0.4
    if kind == "selectivity":
        return a, a * (torch.rand(a.shape, generator=g) < 0.2)
    b = torch.randn(a.shape, generator=g, dtype=torch.float64)
    a[1] = torch.randn(a.shape[1:], generator=g, dtype=torch.float64)
    b[1] = 0.0
    return a, b


FUNCTIONAL = {
    "precision": lambda a, b: {"v": motion_precision(a, b)},
    "selectivity": lambda a, b: {**selectivity(a, b)._asdict(), "bias": spatial_bias(a, b)},
    "agreement": lambda a, b: {"v": relevance_agreement(a, b)},
}
CLASSES = {"precision": MotionPrecision, "selectivity": Selectivity, "agreement": RelevanceAgreement}
# Keys of compute() -> keys of the reference.
KEYS = {
    "precision": {"mean": "v", "std": "v_std"},
    "selectivity": {
        "area": "area", "area_std": "area_std", "mass": "mass", "mass_std": "mass_std",
        "spatial_bias": "bias", "spatial_bias_std": "bias_std",
    },
    "agreement": {"mean": "v", "std": "v_std"},
}  # fmt: skip


def assert_matches_reference(result: dict[str, torch.Tensor], reference: dict[str, float], kind: str) -> None:
    assert result["count"].item() == reference["count"] and result["skipped"].item() == reference["skipped"]
    for ours, theirs in KEYS[kind].items():
        np.testing.assert_allclose(result[ours].item(), reference[theirs], rtol=1e-9, atol=1e-12, err_msg=ours)


@pytest.mark.parametrize("kind", sorted(FUNCTIONAL))
def test_functional_equals_numpy_per_clip(kind):
    a, b = make_batch(kind, seed=0)
    values = FUNCTIONAL[kind](a, b)
    for i in range(a.shape[0]):
        reference = ref_clip_values(kind, a[i].numpy(), b[i].numpy())
        for key, value in values.items():
            assert value.shape == (a.shape[0],)
            if reference is None:
                assert value[i].isnan(), f"clip {i} has no value, got {value[i]}"
            else:
                np.testing.assert_allclose(value[i].item(), reference[key], rtol=1e-12)
                assert 0.0 <= value[i].item() <= 1.0


@pytest.mark.parametrize("kind", sorted(CLASSES))
def test_class_equals_numpy_reference_and_accumulates(kind):
    batches = [make_batch(kind, seed=s, n=n) for s, n in ((1, 4), (2, 3), (3, 5))]
    a = torch.cat([x for x, _ in batches])
    b = torch.cat([y for _, y in batches])
    reference = ref_aggregate(kind, a.numpy(), b.numpy())
    assert reference["skipped"] == 3

    once, several = CLASSES[kind](), CLASSES[kind]()
    once.update(a, b)
    for x, y in batches:
        several.update(x, y)
    assert_matches_reference(once.compute(), reference, kind)
    assert_matches_reference(several.compute(), reference, kind)


@pytest.mark.parametrize("kind", sorted(CLASSES))
def test_all_zero_relevance_is_skipped_without_warnings(kind):
    metric = CLASSES[kind]()
    zeros = torch.zeros(3, 4, 5, 5)
    second = torch.zeros(3, 4, 5, 5, dtype=torch.bool) if kind == "precision" else zeros
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        metric.update(zeros, second)
        result = metric.compute()
    assert result["count"].item() == 0 and result["skipped"].item() == 3
    means = [v for k, v in result.items() if k not in ("count", "skipped")]
    assert means and all(v.isnan() for v in means)


def test_selectivity_of_the_full_and_empty_selection():
    relevance = torch.randn(2, 4, 6, 6, generator=torch.Generator().manual_seed(4))
    full, empty = selectivity(relevance, relevance), selectivity(relevance, torch.zeros_like(relevance))
    ones = torch.ones(2, dtype=torch.float64)
    assert torch.equal(full.area, ones) and torch.allclose(full.mass, ones)
    assert (empty.area == 0).all() and (empty.mass == 0).all()
    assert torch.allclose(spatial_bias(relevance, torch.zeros_like(relevance)), ones)


def test_precision_against_hand_computed_clip():
    relevance = torch.tensor([[[[1.0, 2.0], [-1.0, 0.0]]]])  # (1, 1, 2, 2): two relevant voxels
    motion = torch.tensor([[[[True, False], [True, True]]]])
    assert motion_precision(relevance, motion).item() == 0.5  # one of the two relevant voxels moves
    assert motion_precision(relevance[0], motion[0]).shape == ()  # a single clip (T, H, W) gives a scalar


@pytest.mark.parametrize("kind", sorted(CLASSES))
def test_states_are_sums_for_exact_ddp_sync(kind):
    metric = CLASSES[kind]()
    assert metric.full_state_update is False and metric.is_differentiable is False
    values = {"precision": ["precision"], "selectivity": ["area", "mass"], "agreement": ["iou"]}[kind]
    expected = {f"{v}_{s}" for v in values for s in ("sum", "sumsq")} | {"count", "skipped"}
    assert set(metric._reductions) == expected
    assert all(reduction is dim_zero_sum for reduction in metric._reductions.values())


def test_forward_returns_the_batch_and_accumulates():
    metric = MotionPrecision()
    (a1, m1), (a2, m2) = make_batch("precision", seed=5), make_batch("precision", seed=6)
    batch = metric(a1, m1)
    assert batch["count"].item() == 3 and torch.isclose(batch["mean"], motion_precision(a1, m1).nanmean())
    metric(a2, m2)
    reference = ref_aggregate("precision", torch.cat([a1, a2]).numpy(), torch.cat([m1, m2]).numpy())
    assert_matches_reference(metric.compute(), reference, "precision")


def test_higher_is_better():
    assert MotionPrecision.higher_is_better is True
    assert Selectivity.higher_is_better is None and RelevanceAgreement.higher_is_better is None


def test_reset_and_gradient_inputs():
    metric = Selectivity()
    relevance = torch.randn(2, 3, 4, 4, requires_grad=True)
    metric.update(relevance, relevance * (relevance > 1))
    assert metric.compute()["count"].item() == 2 and not metric.mass_sum.requires_grad
    metric.reset()
    metric.update(torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 4))
    assert metric.compute()["count"].item() == 0


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: motion_precision(torch.ones(2, 3, 4, 4), torch.ones(2, 3, 4, 4)), TypeError, "bool"),
        (lambda: motion_precision(torch.ones(2, 3, 4, 4), torch.ones(2, 2, 4, 4).bool()), ValueError, "same shape"),
        (lambda: selectivity(torch.ones(4, 4), torch.ones(4, 4)), ValueError, r"\(\.\.\., T, H, W\)"),
        (lambda: relevance_agreement(np.ones((2, 2, 2)), torch.ones(2, 2, 2)), TypeError, "torch.Tensor"),
    ],
)
def test_bad_inputs_raise_clear_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()
