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
    clip_scores,
    motion_mass_precision,
    motion_precision,
    rank_correlation,
    relevance_agreement,
    relevant_area,
    selectivity,
    spatial_bias,
)

SHAPE = (4, 5, 6, 7)  # (B, T, H, W)


# --- slow, obvious references: one clip at a time, straight from docs/method.md, section 3 ------------------------
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


# --- what makes each number informative for every method (issue: "no metric fixed by the clip alone") -------------
def ref_relevant_area(clip: np.ndarray, relevant: str, fraction: float) -> np.ndarray:
    """A clip's relevant voxels by sorting, straight from the definitions (ties with the cut included)."""
    positive = clip > 0
    if relevant == "positive":
        return positive
    ordered = np.sort(clip.ravel())[::-1]
    if relevant == "top":
        cut = ordered[int(np.ceil(fraction * clip.size)) - 1]
    else:
        mass = np.clip(ordered, 0, None)
        held, needed = np.cumsum(mass), fraction * mass.sum()
        cut = ordered[min(int(np.searchsorted(held, needed - 1e-12 * mass.sum())), clip.size - 1)]
    return positive & (clip >= cut)


@pytest.mark.parametrize(("relevant", "fraction"), [("positive", 0.1), ("top", 0.1), ("top", 0.37), ("mass", 0.5)])
def test_relevant_area_and_what_uses_it_equal_numpy(relevant, fraction):
    a, b = make_batch("agreement", seed=12)
    selective = a * (torch.rand(a.shape, generator=torch.Generator().manual_seed(3)) < 0.3)
    areas = relevant_area(a, relevant, fraction)
    area = selectivity(a, selective, relevant=relevant, fraction=fraction).area
    iou = relevance_agreement(a, b, relevant=relevant, fraction=fraction)
    for i in range(a.shape[0]):
        ref_a = ref_relevant_area(a[i].numpy(), relevant, fraction)
        ref_b = ref_relevant_area(b[i].numpy(), relevant, fraction)
        np.testing.assert_array_equal(areas[i].numpy(), ref_a)
        if ref_a.any():
            np.testing.assert_allclose(area[i].item(), (ref_a & (selective[i].numpy() > 0)).sum() / ref_a.sum())
        else:
            assert area[i].isnan()
        if ref_a.any() and ref_b.any():
            np.testing.assert_allclose(iou[i].item(), (ref_a & ref_b).sum() / (ref_a | ref_b).sum())
        else:
            assert iou[i].isnan()
    held = (a.clamp(min=0) * relevant_area(a, "mass", 0.5)).sum(dim=(1, 2, 3)) / a.clamp(min=0).sum(dim=(1, 2, 3))
    assert (held[~held.isnan()] >= 0.5).all()  # the core holds at least half of the positive mass


def test_mass_precision_equals_numpy_and_weighs_by_relevance():
    a, motion = make_batch("precision", seed=13)
    ours = motion_mass_precision(a, motion)
    for i in range(a.shape[0]):
        positive = np.clip(a[i].numpy(), 0, None)
        if positive.sum() == 0:
            assert ours[i].isnan()
        else:
            np.testing.assert_allclose(
                ours[i].item(), (positive * motion[i].numpy()).sum() / positive.sum(), rtol=1e-12
            )
    relevance = torch.tensor([[[[3.0, 1.0], [0.5, -2.0]]]])  # every positive voxel relevant, unequal mass
    moving = torch.tensor([[[[True, False], [False, True]]]])
    assert motion_precision(relevance, moving).item() == pytest.approx(1 / 3)
    assert motion_mass_precision(relevance, moving).item() == pytest.approx(3 / 4.5)


def test_no_baseline_metric_is_fixed_by_the_clip_or_the_other_method():
    """R > 0 is every voxel of a DTD map: its paper precision is then the clip's moving share and its paper
    agreement the other method's positive share (measured exactly). The mass precision, the core selectivity
    and the core agreement are not fixed by the clip or by the other method, for any method."""
    from lightning_selrel import C3DClassifier, MotionContextDataset, available_methods, explain
    from lightning_selrel.relevance.selective import selective_relevance

    torch.manual_seed(0)
    dataset = MotionContextDataset(size=4, clip_shape=(16, 32, 32), split="val")
    clips = torch.stack([dataset[i][0] for i in range(4)])
    moving = torch.stack([dataset[i][2] for i in range(4)])
    share = moving.flatten(1).double().mean(1)
    model = C3DClassifier(num_classes=4, width=4, fc_dim=16, clip_shape=(16, 32, 32)).eval()
    maps = {m: explain(model, clips, m) for m in available_methods()}
    dtd_map = maps["dtd"]
    assert (dtd_map > 0).flatten(1).double().mean(1).min() > 0.99
    torch.testing.assert_close(motion_precision(dtd_map, moving), share, atol=0.01, rtol=0)  # the pitfall
    gb_share = (maps["guided_backprop"] > 0).flatten(1).double().mean(1)
    torch.testing.assert_close(relevance_agreement(dtd_map, maps["guided_backprop"]), gb_share, atol=0.01, rtol=0)
    for method, rel in maps.items():
        sel = selective_relevance(rel, threshold="mad")
        scores = clip_scores(rel, sel, exact=moving)
        core_share = relevant_area(rel, "mass", 0.5).flatten(1).double().mean(1)
        assert (scores["mask_precision_mass"] - share).abs().min() > 1e-3, method
        kept = (sel > 0).flatten(1).any(dim=1)  # an empty selective map fixes both at 0: not the pitfall
        assert kept.any(), method
        core_kept = scores["selectivity_core"][kept] - (sel > 0).flatten(1).double().mean(1)[kept]
        assert core_kept.abs().min() > 1e-3, method
        for other, rel_other in maps.items():
            if other == method:
                continue
            core = relevance_agreement(rel, rel_other, relevant="mass", fraction=0.5)
            other_core = relevant_area(rel_other, "mass", 0.5).flatten(1).double().mean(1)
            assert ((core - other_core).abs() > 1e-3).all() and ((core - core_share).abs() > 1e-3).all(), (
                method,
                other,
            )


@pytest.mark.parametrize("seed", [0, 3])
def test_rank_correlation_equals_scipy(seed):
    from scipy.stats import spearmanr

    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 4, (25,), generator=g).double()  # ties
    y = torch.randn(25, generator=g, dtype=torch.float64)
    y[5] = float("nan")
    keep = ~y.isnan()
    assert rank_correlation(x, y) == pytest.approx(spearmanr(x[keep], y[keep]).statistic, abs=1e-12)
    assert torch.isnan(torch.tensor(rank_correlation(torch.ones(5), torch.arange(5.0))))
