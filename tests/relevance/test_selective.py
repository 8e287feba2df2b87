"""Selective relevance: the Sobel step against scipy, the threshold's per-clip behaviour, and edge cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

import lightning_selrel.relevance.selective as selective_module
from lightning_selrel.relevance.selective import SelectiveRelevance, selective_relevance, temporal_edges


def scipy_edges(relevance: np.ndarray, signed: bool = False) -> np.ndarray:
    """Reference, one clip (T, H, W) at a time: scipy's Sobel along T with 'nearest' (= replicate) padding."""
    clips = relevance.reshape(-1, *relevance.shape[-3:])  # (B, T, H, W)
    out = np.stack([ndimage.sobel(clip, axis=0, mode="nearest") for clip in clips])
    out = np.clip(out, 0, None) if signed else np.abs(out)
    return out.reshape(relevance.shape)


def moving_blob(t: int = 8, size: int = 24, sigma: float = 2.0, step: int = 2) -> tuple[torch.Tensor, np.ndarray]:
    """A Gaussian blob moving right by ``step`` px/frame; returns the map (T, H, W) and the centres (T, 2)."""
    yy, xx = np.mgrid[:size, :size]
    centres = np.array([(size / 2, 4 + step * i) for i in range(t)])
    frames = [np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma**2)) for cy, cx in centres]
    return torch.tensor(np.stack(frames), dtype=torch.float32), centres


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("shape", [(2, 8, 10, 12), (1, 16, 7, 5), (3, 3, 1, 4), (5, 6, 6), (2, 1, 4, 4)])
@pytest.mark.parametrize("signed", [False, True])
def test_temporal_edges_equal_scipy(dtype, shape, signed):
    rng = np.random.default_rng(sum(shape))
    relevance = rng.standard_normal(shape)
    edges = temporal_edges(torch.tensor(relevance, dtype=dtype), signed=signed)
    assert edges.shape == shape and edges.dtype == dtype
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    np.testing.assert_allclose(edges.numpy(), scipy_edges(relevance, signed), rtol=tol, atol=tol)


def test_scipy_sign_convention_is_next_minus_previous():
    ramp = torch.arange(5, dtype=torch.float64).view(5, 1, 1).expand(5, 3, 3).contiguous()  # rising in time
    assert (temporal_edges(ramp, signed=True)[1:-1] > 0).all()
    assert (temporal_edges(-ramp, signed=True) == 0).all()  # falling relevance: no increase anywhere


def test_static_map_selects_nothing_and_has_zero_edges():
    spatial = torch.rand(20, 20, generator=torch.Generator().manual_seed(0)) * 3.7 - 1.1
    static = spatial.expand(16, 20, 20).contiguous()  # float32, random values repeated over T
    assert (temporal_edges(static) == 0).all()  # replicate padding: no artefact in frames 0 and T-1
    selective, mask = selective_relevance(static.unsqueeze(0), return_mask=True)
    assert not mask.any() and (selective == 0).all()
    assert not selective_relevance(static, n_std=0.0).any()  # the floor alone rejects it


def test_rounding_noise_over_time_selects_nothing():
    g = torch.Generator().manual_seed(5)
    spatial = torch.rand(20, 20, generator=g)
    nearly_static = spatial * (1 + 1e-6 * torch.randn(16, 1, 1, generator=g))  # float32 rounding-level changes
    assert temporal_edges(nearly_static).max() > 0
    assert selective_relevance(nearly_static, floor=0.0, return_mask=True).mask.any()  # std alone is fooled
    assert not selective_relevance(nearly_static, return_mask=True).mask.any()  # the floor is not


def test_all_zero_map_selects_nothing_without_nan():
    selective, mask = selective_relevance(torch.zeros(2, 8, 6, 6), return_mask=True)
    assert not mask.any() and not selective.isnan().any()


def test_moving_blob_selects_only_near_its_trajectory():
    relevance, centres = moving_blob()
    selective, mask = selective_relevance(relevance, n_std=2.0, return_mask=True)
    assert mask.any()
    t, y, x = mask.nonzero(as_tuple=True)
    dist = np.hypot(y.numpy() - centres[t.numpy(), 0], x.numpy() - centres[t.numpy(), 1])
    assert dist.max() < 3 * 2.0 + 2  # within the blob's extent (3 sigma) plus one step
    assert torch.equal(selective, relevance * mask)
    far = torch.ones_like(mask)
    far[:, 6:18] = False  # rows away from the blob (it moves along row 12)
    assert not mask[far].any()


def test_clip_mask_independent_of_the_rest_of_the_batch():
    blob, _ = moving_blob()
    other = torch.randn(8, 24, 24, generator=torch.Generator().manual_seed(1)) * 1000.0
    alone = selective_relevance(blob.unsqueeze(0), return_mask=True).mask[0]
    together = selective_relevance(torch.stack([blob, other, torch.zeros_like(blob)]), return_mask=True).mask
    assert alone.any()
    assert torch.equal(together[0], alone)
    assert not together[2].any()


def test_return_forms_shape_dtype_and_gradient():
    relevance = torch.randn(2, 6, 5, 5, dtype=torch.float64, requires_grad=True)
    plain = selective_relevance(relevance)
    result = selective_relevance(relevance, return_mask=True)
    assert isinstance(result, SelectiveRelevance)
    assert torch.equal(plain, result.selective) and result.mask.dtype == torch.bool
    assert plain.shape == relevance.shape and plain.dtype == torch.float64
    plain.sum().backward()  # gradient flows through R, masked by M
    assert torch.equal(relevance.grad, result.mask.to(torch.float64))
    single = selective_relevance(relevance.detach()[1], return_mask=True)
    assert single.mask.shape == (6, 5, 5) and torch.equal(single.mask, result.mask[1])


def test_larger_n_std_selects_a_subset():
    relevance = torch.randn(1, 8, 12, 12, generator=torch.Generator().manual_seed(2))
    loose = selective_relevance(relevance, n_std=1.0, return_mask=True).mask
    strict = selective_relevance(relevance, n_std=3.0, return_mask=True).mask
    assert strict.sum() < loose.sum() and not (strict & ~loose).any()


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: temporal_edges(torch.zeros(4, 4)), ValueError, "shape"),
        (lambda: temporal_edges(torch.zeros(1, 1, 4, 4, 4)), ValueError, "sum per-channel"),
        (lambda: temporal_edges(torch.zeros(2, 4, 4, dtype=torch.long)), TypeError, "floating"),
        (lambda: temporal_edges(np.zeros((2, 4, 4))), TypeError, "torch.Tensor"),
        (lambda: selective_relevance(torch.zeros(0, 4, 4)), ValueError, "empty"),
        (lambda: selective_relevance(torch.zeros(2, 4, 4), n_std=-1.0), ValueError, "n_std"),
        (lambda: selective_relevance(torch.zeros(2, 4, 4), floor=float("nan")), ValueError, "floor"),
        (lambda: selective_relevance(torch.zeros(2, 4, 4), threshold="otsu"), ValueError, r"\['std', 'mad'\]"),
    ],
)
def test_bad_inputs_raise_clear_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    relevance = torch.randn(3, 8, 16, 16, generator=torch.Generator().manual_seed(3))
    cpu = selective_relevance(relevance, return_mask=True)
    gpu = selective_relevance(relevance.cuda(), return_mask=True)
    assert gpu.mask.is_cuda
    torch.testing.assert_close(temporal_edges(relevance.cuda()).cpu(), temporal_edges(relevance))
    assert (gpu.mask.cpu() != cpu.mask).float().mean() < 1e-3  # only voxels at the threshold may differ


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_selects_what_float32_selects(dtype):
    relevance = torch.zeros(2, 16, 20, 20)
    relevance[:, :, 2:6, 2:6] = 3.0  # static: never selected
    relevance[:, 8:, 10:15, 10:15] += 5.0  # appears at t = 8: selected around it
    _, mask32 = selective_relevance(relevance, return_mask=True)
    _, mask16 = selective_relevance(relevance.to(dtype), return_mask=True)
    assert mask32.any() and torch.equal(mask16, mask32)


def local_magnitude(clip: np.ndarray) -> np.ndarray:
    """The temporal Sobel's stencil applied to |R| (weights |k|: [1, 0, 1] along T, [1, 2, 1] along H and W)."""
    out = ndimage.correlate1d(np.abs(clip), [1.0, 0.0, 1.0], axis=0, mode="nearest")
    for axis in (1, 2):
        out = ndimage.correlate1d(out, [1.0, 2.0, 1.0], axis=axis, mode="nearest")
    return out


def numpy_selective(relevance: np.ndarray, n_std: float = 4.0, floor: float = 1e-3, threshold="std") -> np.ndarray:
    """Reference mask, one clip at a time: scipy edges, NumPy's two-pass std or a sorted lower median and the mean
    deviation, and the floor relative to the local magnitude."""
    masks = []
    for clip in relevance.reshape(-1, *relevance.shape[-3:]):
        edges = scipy_edges(clip)
        above_floor = edges > floor * local_magnitude(clip)
        if threshold == "std":
            tau = n_std * edges.std()
        else:
            lower_median = lambda x: np.sort(x.ravel())[(x.size - 1) // 2]  # noqa: E731
            centre = lower_median(edges)
            deviation = np.abs(edges.astype(np.float64) - centre)
            spread = max(1.482602218505602 * lower_median(deviation), np.sqrt(np.pi / 2) * deviation.mean())
            tau = centre + n_std * spread
        masks.append((edges > tau) & above_floor)
    return np.stack(masks).reshape(relevance.shape)


@pytest.mark.parametrize("threshold", ["std", "mad"])
@pytest.mark.parametrize("shape", [(3, 8, 10, 12), (1, 16, 7, 5), (2, 1, 4, 4), (4, 2, 1, 9), (6, 6, 6)])
def test_mask_equals_numpy_reference(shape, threshold):
    rng = np.random.default_rng(sum(shape))
    relevance = rng.standard_normal(shape) * rng.uniform(0.1, 10.0, size=shape[:1] + (1,) * (len(shape) - 1))
    relevance[..., : shape[-2] // 2, :] += 0.5  # part of every clip carries a static offset
    selective, mask = selective_relevance(torch.tensor(relevance), n_std=1.5, threshold=threshold, return_mask=True)
    expected = numpy_selective(relevance, n_std=1.5, threshold=threshold)
    np.testing.assert_array_equal(mask.numpy(), expected)
    np.testing.assert_array_equal(selective.numpy(), relevance * expected)


def test_the_floor_is_relative_to_the_local_magnitude():
    """A voxel whose relevance changes by less than ``floor`` of its neighbourhood's magnitude is constant."""
    relevance = torch.ones(1, 8, 6, 6, dtype=torch.float64)
    relevance[0, 4:] += 0.01  # a 1% change at t = 4
    for floor, kept in ((4e-3, True), (6e-3, False)):  # the change is 0.01 / 2.01 of the stencil's |R|
        mask = selective_relevance(relevance, n_std=0.0, floor=floor, return_mask=True).mask
        assert bool(mask.any()) is kept, floor


def block_appearing(share: float, size: tuple[int, int, int] = (16, 48, 48)) -> torch.Tensor:
    """A map of 0.1 where a block of +1 covering ``share`` of the frame appears at t = 8 (the issue's case)."""
    t, h, w = size
    relevance = torch.full(size, 0.1)
    side = int(round((share * h * w) ** 0.5))
    relevance[t // 2 :, :side, :side] += 1.0
    return relevance


def test_the_papers_rule_collapses_when_change_is_widespread_and_mad_does_not():
    """n * std(G) selects nothing once p (1 - p) > 1 / n^2 of the voxels change (p > 6.7% at n = 4): here the
    block changes 2 of 16 frames, so it covers 59% of the frame at p = 7.4%. The robust rule keeps the block's
    block at every share (the mean-deviation floor of its spread selects a share p while p < 1 / (1.2533 n), 20%
    at n = 4)."""
    half, most = block_appearing(0.5), block_appearing(0.59)
    assert selective_relevance(half, return_mask=True).mask.sum() == 2178
    assert not selective_relevance(most, return_mask=True).mask.any()
    for share in (0.05, 0.5, 0.59, 0.8, 1.0):
        mask = selective_relevance(block_appearing(share), threshold="mad", return_mask=True).mask
        edges = temporal_edges(block_appearing(share))
        strong = edges >= edges.max() / 2  # the block's own change, not the smoothing's weak rim around it
        assert bool((mask <= (edges > 1e-3)).all()) and torch.equal(mask & strong, strong), share


def moving_square(size: tuple[int, int, int] = (16, 48, 48), side: int = 10) -> torch.Tensor:
    """Relevance 1 on a ``side`` x ``side`` square moving one pixel right per frame, 0 elsewhere."""
    relevance = torch.zeros(size)
    for t in range(size[0]):
        relevance[t, 10 : 10 + side, 5 + t : 5 + side + t] = 1.0
    return relevance


def test_mad_responds_to_n_std_when_most_of_the_clip_is_static():
    """Over this still clip the median and MAD of G_t are 0, so a threshold of median + n * MAD kept the same
    1,488 voxels at every n from 0.5 to 100; the mean-deviation floor of the spread makes n count again, and
    noise of 1e-6 everywhere (which makes the MAD tiny but not 0) changes almost nothing."""
    relevance = moving_square()
    grid = (0.5, 1.0, 4.0, 10.0, 100.0)
    kept = [int(selective_relevance(relevance, n_std=n, threshold="mad", return_mask=True).mask.sum()) for n in grid]
    changing = int((temporal_edges(relevance) > 4e-3).sum())  # above the floor: 1e-3 of the stencil on |R|
    assert kept[0] == changing == 1488 and kept == sorted(kept, reverse=True) and kept[-1] == 0, kept
    assert len(set(kept)) >= 4, kept
    noisy = relevance + 1e-6 * torch.rand(relevance.shape, generator=torch.Generator().manual_seed(0))
    for n, count in zip(grid, kept, strict=True):
        mask = selective_relevance(noisy, n_std=n, threshold="mad", return_mask=True).mask
        assert abs(int(mask.sum()) - count) <= 0.02 * count + 2, (n, int(mask.sum()), count)


def test_a_hot_static_voxel_does_not_empty_the_map_of_the_moving_ones():
    """The floor is about rounding, so a static voxel thousands of times larger than the moving relevance
    changes nothing elsewhere (the floor relative to max|R| kept 448 of 592 voxels at 1e4 and none at 1e5)."""
    relevance = torch.zeros(16, 48, 48)
    for t in range(16):
        relevance[t, 10:20, 5 + t : 15 + t] = 1.0  # a 10 x 10 square moving right
    alone = selective_relevance(relevance, return_mask=True).mask
    assert alone.sum() > 500
    for hot in (1e4, 1e5, 1e9):
        peaky = relevance.clone()
        peaky[:, 40, 40] = hot
        assert torch.equal(selective_relevance(peaky, return_mask=True).mask, alone), hot


@pytest.mark.parametrize("chunk_voxels", [1, 2000, 3000])
def test_cpu_chunks_give_the_same_result_as_one_pass(monkeypatch, chunk_voxels):
    g = torch.Generator().manual_seed(7)
    relevance = torch.randn(5, 8, 10, 12, generator=g) * torch.tensor([1.0, 100.0, 0.0, 1e-3, 7.0]).view(5, 1, 1, 1)
    whole = selective_relevance(relevance, return_mask=True)
    edges = temporal_edges(relevance)
    # a clip has 960 voxels: chunks of 1 clip; of 2, 2 and 1; of 3 and 2
    monkeypatch.setattr(selective_module, "CPU_CHUNK_VOXELS", chunk_voxels)
    chunked = selective_relevance(relevance, return_mask=True)
    assert torch.equal(chunked.mask, whole.mask) and torch.equal(chunked.selective, whole.selective)
    assert torch.equal(temporal_edges(relevance), edges)
    graded = relevance.clone().requires_grad_()
    selective_relevance(graded).sum().backward()
    assert torch.equal(graded.grad, whole.mask.float())


def test_non_contiguous_input_gives_the_contiguous_result():
    relevance = torch.randn(3, 8, 12, 10, generator=torch.Generator().manual_seed(8))
    strided = relevance.transpose(2, 3).contiguous().transpose(2, 3)  # same values, other memory layout
    assert not strided.is_contiguous()
    assert torch.equal(temporal_edges(strided), temporal_edges(relevance))
    assert torch.equal(selective_relevance(strided), selective_relevance(relevance))
    before = relevance.clone()
    # strided, offset into the storage, and a single clip (T, H, W) at an offset
    for view in (relevance[:, ::2], relevance[1:], relevance[2], relevance[:, :, 1:]):
        result = selective_relevance(view, return_mask=True)
        expected = selective_relevance(view.contiguous(), return_mask=True)
        assert torch.equal(result.selective, expected.selective) and torch.equal(result.mask, expected.mask)
        assert torch.equal(temporal_edges(view), temporal_edges(view.contiguous()))
    assert torch.equal(relevance, before)  # the caller's tensor is never written


def test_threshold_of_a_clip_is_bit_identical_alone_and_in_a_batch(monkeypatch):
    """A batched dot product or sum rounds differently with the batch size; the CPU reduces clip by clip."""
    clips = torch.randn(20, 8, 16, 16, generator=torch.Generator().manual_seed(10)).relu_()
    edges = temporal_edges(clips)
    for rule in ("std", "mad"):
        batched = selective_module._thresholds(edges, 4.0, rule).flatten().tolist()  # one chunk of 20
        alone = [selective_module._thresholds(edges[i : i + 1], 4.0, rule) for i in range(20)]
        assert batched == [torch.tensor(a, dtype=torch.float32).item() for a in alone]
    monkeypatch.setattr(selective_module, "CPU_CHUNK_VOXELS", 3 * clips[0].numel())  # chunks of 3, last one 2
    for rule in ("std", "mad"):
        masks = selective_relevance(clips, threshold=rule, return_mask=True).mask
        for i in (0, 18, 19):
            assert torch.equal(selective_relevance(clips[i], threshold=rule, return_mask=True).mask, masks[i])


def test_the_device_branch_runs_without_a_cpu(monkeypatch):
    """CI has no GPU: meta tensors take the non-CPU branch (one chunk, thresholds kept as tensors) for shapes."""
    for shape, dtype in (((3, 8, 6, 5), torch.float32), ((1, 4, 3, 3), torch.float16), ((6, 2, 2), torch.bfloat16)):
        relevance = torch.empty(shape, dtype=dtype, device="meta")
        for rule in ("std", "mad"):
            selective, mask = selective_relevance(relevance, threshold=rule, return_mask=True)
            assert selective.shape == mask.shape == shape and selective.dtype == dtype and mask.dtype == torch.bool
        assert temporal_edges(relevance, signed=True).shape == shape


def test_host_and_device_thresholds_agree():
    """The CPU finishes the per-clip thresholds in Python floats, CUDA in float64 tensors: same numbers."""
    g = torch.Generator().manual_seed(9)
    scale = torch.tensor([1e3, 1e6], dtype=torch.float64)
    moments = torch.rand(6, 2, generator=g, dtype=torch.float64) * scale  # sum, sum of squares
    moments[0] = 0.0  # all-zero clip
    moments[1, 1] = moments[1, 0] ** 2 / 100 * (1 - 1e-12)  # cancellation: E[x^2] - E[x]^2 just below zero
    for n_std in (4.0, 0.0, 2.5):
        host = selective_module._limits_on_host(moments.tolist(), 100, n_std)
        device = selective_module._limits_on_device(moments, 100, n_std)
        assert host == device.tolist()
