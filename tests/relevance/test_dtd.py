"""DTD: conservation, equality with captum's LRP (z+ everywhere), zB and pooling rules against slow
references that follow the definitions literally, and the errors."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from captum.attr import LRP
from captum.attr._utils.lrp_rules import Alpha1_Beta0_Rule, EpsilonRule
from torch import nn

from lightning_selrel.models.classifier import C3DClassifier
from lightning_selrel.relevance.dtd import dtd, dtd_layers

pytestmark = pytest.mark.usefixtures("one_thread")


def small_classifier(seed: int = 0, clip_shape=(16, 16, 16), zero_bias: bool = True) -> C3DClassifier:
    torch.manual_seed(seed)
    model = C3DClassifier(num_classes=5, width=4, fc_dim=32, clip_shape=clip_shape)
    for module in model.modules():
        if isinstance(module, (nn.Conv3d, nn.Linear)):
            nn.init.normal_(module.weight, std=(2.0 / module.weight[0].numel()) ** 0.5)
            if zero_bias:
                nn.init.zeros_(module.bias)
            else:
                nn.init.uniform_(module.bias, -0.1, 0.1)
    return model.eval()


def pixel_clips(batch: int = 2, shape=(16, 16, 16), seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (batch, 3, *shape), generator=g, dtype=torch.uint8)


# -- conservation ---------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("options", [{}, {"first_rule": "zplus"}, {"maxpool": "proportional"}, {"target": [0, 4]}])
@pytest.mark.parametrize("start", ["one", "logit"])
def test_conservation_input_relevance_sums_to_the_starting_value(dtype, options, start):
    model = small_classifier().to(dtype)
    clips = pixel_clips()
    relevance, logits, target = dtd(model, clips, start=start, **options)
    assert relevance.shape == clips.shape and relevance.dtype == dtype
    logit = logits.gather(1, target[:, None])[:, 0]
    assert logit.abs().min() > 1e-3  # a meaningful logit to conserve
    expected = logit if start == "logit" else torch.ones_like(logit)
    torch.testing.assert_close(relevance.sum(dim=(1, 2, 3, 4)), expected, rtol=1e-3, atol=0)
    with torch.no_grad():
        torch.testing.assert_close(logits, model(clips.to(dtype)))  # the logits of the real forward


def test_conservation_holds_with_biases_too():
    """z+ and zB denominators leave the biases out, so a layer passes on all the relevance it gets
    (less only where a neuron's z is exactly 0): the bias's share goes to the inputs."""
    model = small_classifier(zero_bias=False).double()
    relevance, logits, target = dtd(model, pixel_clips(), start="logit")
    torch.testing.assert_close(
        relevance.sum(dim=(1, 2, 3, 4)), logits.gather(1, target[:, None])[:, 0], rtol=1e-6, atol=0
    )
    relevance, _, _ = dtd(model, pixel_clips())
    torch.testing.assert_close(relevance.sum(dim=(1, 2, 3, 4)), torch.ones(2, dtype=torch.float64), rtol=1e-6, atol=0)


def test_the_default_start_is_the_logit_started_map_divided_by_the_logit():
    """z+ and zB are linear in the output relevance: the pattern does not depend on the starting value."""
    model = small_classifier(zero_bias=False).double()
    clips = pixel_clips(batch=3)
    one, logits, target = dtd(model, clips, target=[0, 2, 4])
    classic, _, _ = dtd(model, clips, target=[0, 2, 4], start="logit")
    logit = logits.gather(1, target[:, None])[:, 0].view(-1, 1, 1, 1, 1)
    torch.testing.assert_close(one * logit, classic, rtol=1e-9, atol=1e-12)
    with pytest.raises(ValueError, match="start must be 'one' or 'logit'"):
        dtd(model, clips, start="probability")


def test_an_untrained_default_model_has_positive_relevance_on_every_clip():
    """With seed 1 most clips of the untrained default model have negative logits: a logit-started map is then
    <= 0 everywhere (7 of 8 clips had no positive voxel), the default start gives every clip positive relevance."""
    from lightning_selrel import MotionContextDataset

    dataset = MotionContextDataset(size=8, split="val")
    clips = torch.stack([dataset[i][0] for i in range(8)])
    torch.manual_seed(1)
    model = C3DClassifier(num_classes=4, width=8, fc_dim=128, clip_shape=(16, 48, 48), dropout=0.2).eval()
    classic, logits, target = dtd(model, clips, start="logit")
    assert (logits.gather(1, target[:, None]) < 0).sum() >= 6  # the case the default start is for
    assert ((classic > 0).flatten(1).sum(1) == 0).sum() >= 6
    for labels in (None, [dataset[i][1] for i in range(8)]):
        relevance, _, _ = dtd(model, clips, target=labels)
        assert ((relevance > 0).flatten(1).sum(1) > 0).all()
        assert (relevance >= 0).all()


# -- captum's LRP with z+ (Alpha1_Beta0) everywhere ---------------------------------------------------
def test_zplus_everywhere_matches_captum_lrp_alpha1_beta0():
    """Captum's LRP only knows the layer types in ``SUPPORTED_LAYERS_WITH_RULES`` (Conv2d, not Conv3d)
    and raises a TypeError for any other one that has no ``rule`` attribute. Captum's documented way
    out is to set ``module.rule`` explicitly, which is what we do: ``Alpha1_Beta0_Rule`` (z+) on
    every Conv3d and Linear, and ``EpsilonRule`` (relevance passes, up to eps) on Flatten, which
    captum does not know either. MaxPool3d gets captum's default (EpsilonRule = winner-takes-all).
    Captum sees the bare C3D on normalised clips (it does not know our Normalize); ours explains
    the classifier on pixel clips, whose relevance is that of the normalised input. Both start from
    the logit (captum multiplies its normalised relevance by the model output, which is a logit)."""
    model = small_classifier().double()
    clips = pixel_clips()
    target = torch.tensor([1, 3])
    ours, logits, _ = dtd(model, clips, target, first_rule="zplus", start="logit")

    net = copy.deepcopy(model.net)
    normalised = model.normalize(clips).double().requires_grad_()
    with pytest.raises(TypeError, match="Conv3d"):  # what we work around
        LRP(copy.deepcopy(net)).attribute(normalised, target=target)
    for module in net.modules():
        if isinstance(module, (nn.Conv3d, nn.Linear)):
            module.rule = Alpha1_Beta0_Rule()
        elif isinstance(module, nn.Flatten):
            module.rule = EpsilonRule()
    theirs = LRP(net).attribute(normalised, target=target).detach()

    assert theirs.shape == ours.shape
    torch.testing.assert_close(theirs.sum(dim=(1, 2, 3, 4)), logits.gather(1, target[:, None])[:, 0], rtol=1e-3, atol=0)
    torch.testing.assert_close(ours, theirs, rtol=1e-3, atol=1e-3 * theirs.abs().max().item())


# -- zB against a literal reference ---------------------------------------------------------------------
def linear_map(layer: nn.Module, in_shape: tuple[int, ...]) -> np.ndarray:
    """The matrix (out_units, in_units) of a bias-free layer, by applying it to every unit vector."""
    n = int(np.prod(in_shape))
    basis = torch.eye(n, dtype=torch.float64).reshape(n, *in_shape)
    with torch.no_grad():
        out = (
            torch.nn.functional.conv3d(basis, layer.weight, None, layer.stride, layer.padding)
            if isinstance(layer, nn.Conv3d)
            else basis.reshape(n, -1) @ layer.weight.T
        )
    return out.reshape(n, -1).T.numpy()


def reference_two_layer(model: nn.Sequential, x: torch.Tensor, low: np.ndarray, high: np.ndarray, target: int):
    """First layer zB, second (Linear, the logits) z+, following the definitions with loops, one clip."""
    first, second = model[0] if not isinstance(model[0], nn.Flatten) else model[1], model[-1]
    in_shape = tuple(x.shape)
    w1 = linear_map(first, in_shape)  # (J, I)
    b1 = first.bias.detach().numpy()
    x_flat, l_flat, h_flat = x.numpy().ravel(), low.ravel(), high.ravel()
    bias = np.repeat(b1, w1.shape[0] // b1.size)  # conv bias per output unit (channel-major)
    a = np.maximum(w1 @ x_flat + bias, 0)  # hidden activations (J,)
    w2 = second.weight.detach().numpy()  # (K, J)
    logit = w2[target] @ a + second.bias.detach().numpy()[target]

    hidden = np.zeros_like(a)  # z+ for the logits layer
    denom = sum(a[j] * max(w2[target, j], 0) for j in range(a.size))
    for j in range(a.size):
        hidden[j] = a[j] * max(w2[target, j], 0) / denom * logit

    relevance = np.zeros_like(x_flat)  # zB for the first layer
    for j in range(w1.shape[0]):
        if hidden[j] == 0:
            continue
        terms = [
            x_flat[i] * w1[j, i] - l_flat[i] * max(w1[j, i], 0) - h_flat[i] * min(w1[j, i], 0)
            for i in range(x_flat.size)
        ]
        total = sum(terms)
        for i in range(x_flat.size):
            relevance[i] += terms[i] / total * hidden[j]
    return relevance.reshape(in_shape), logit


@pytest.mark.parametrize("first", ["conv", "linear"])
def test_zb_matches_literal_reference(first):
    torch.manual_seed(1)
    in_shape = (2, 3, 4, 4)  # (C, T, H, W)
    if first == "conv":
        model = nn.Sequential(
            nn.Conv3d(2, 3, kernel_size=(2, 3, 3), padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 4 * 4 * 4, 4)
        )
    else:
        model = nn.Sequential(nn.Flatten(), nn.Linear(int(np.prod(in_shape)), 10), nn.ReLU(), nn.Linear(10, 4))
    model = model.double()
    with torch.no_grad():
        for module in model:
            if hasattr(module, "bias"):
                module.bias.uniform_(-0.2, 0.2)
    low = torch.tensor([-1.0, -2.0], dtype=torch.float64).view(2, 1, 1, 1)
    high = torch.tensor([1.5, 0.5], dtype=torch.float64).view(2, 1, 1, 1)
    x = low + (high - low) * torch.rand(2, *in_shape, dtype=torch.float64)
    target = [0, 3]
    ours, logits, _ = dtd(model, x, target, bounds=(low, high), start="logit")
    for b in range(2):
        ref, logit = reference_two_layer(
            model, x[b], low.expand(in_shape).numpy(), high.expand(in_shape).numpy(), target[b]
        )
        np.testing.assert_allclose(logits[b, target[b]].item(), logit, rtol=1e-10)
        np.testing.assert_allclose(ours[b].numpy(), ref, rtol=1e-6, atol=1e-12)  # eps = 1e-9 in ours


def test_normalize_bounds_are_the_pixel_range():
    """Default zB bounds of a classifier = explicit pixel bounds = normalised bounds on the bare C3D."""
    model = small_classifier().double()
    clips = pixel_clips()
    default, _, _ = dtd(model, clips)
    explicit, _, _ = dtd(model, clips, bounds=(0.0, 255.0))
    low, high = model.normalize.bounds()
    bare, _, _ = dtd(model.net, model.normalize(clips).double(), bounds=(low.double(), high.double()))
    torch.testing.assert_close(default, explicit)
    torch.testing.assert_close(default, bare)
    wrong, _, _ = dtd(model, clips, bounds=(-10.0, 300.0))
    assert not torch.allclose(default, wrong)


# -- pooling ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("pool", ["max_proportional", "avg"])
def test_proportional_pooling_matches_windows_by_hand(pool):
    """Relevance of each 2x2x2 window is shared in proportion to its (positive) inputs."""
    torch.manual_seed(2)
    pool_layer = nn.MaxPool3d(2) if pool.startswith("max") else nn.AvgPool3d(2)
    model = nn.Sequential(pool_layer, nn.Flatten(), nn.Linear(2 * 1 * 2 * 2, 3)).double()
    x = torch.rand(2, 2, 2, 4, 4, dtype=torch.float64) + 0.1
    options = {"maxpool": "proportional"} if pool.startswith("max") else {}
    ours, _, target = dtd(model, x, first_rule="zplus", start="logit", **options)
    # Relevance at the pool's output, z+ for the Linear, by hand.
    pooled = pool_layer(x).flatten(1)  # (B, 8)
    w_pos = model[2].weight.clamp(min=0)[target]  # (B, 8)
    logit = model(x).gather(1, target[:, None])
    r_out = (pooled * w_pos / (pooled * w_pos).sum(1, keepdim=True) * logit).view(2, 2, 1, 2, 2)
    expected = torch.zeros_like(x)
    for b, c, h, w in np.ndindex(2, 2, 2, 2):
        window = x[b, c, 0:2, 2 * h : 2 * h + 2, 2 * w : 2 * w + 2]
        expected[b, c, 0:2, 2 * h : 2 * h + 2, 2 * w : 2 * w + 2] = window / window.sum() * r_out[b, c, 0, h, w]
    torch.testing.assert_close(ours, expected)


def test_maxpool_winner_takes_all():
    model = nn.Sequential(nn.MaxPool3d(2), nn.Flatten(), nn.Linear(2 * 1 * 2 * 2, 3)).double()
    x = torch.rand(1, 2, 2, 4, 4, dtype=torch.float64) + 0.1
    ours, _, _ = dtd(model, x, first_rule="zplus")
    winners = torch.nn.functional.max_unpool3d(*nn.MaxPool3d(2, return_indices=True)(x), 2, output_size=x.shape[2:])
    assert ((ours != 0) <= (winners != 0)).all() and (ours[winners == 0] == 0).all()


def test_weights_are_untouched_and_inference_mode_works():
    model = small_classifier()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    clips = pixel_clips()
    reference, _, _ = dtd(model, clips)
    with torch.inference_mode():
        inside, _, _ = dtd(model, clips)
    torch.testing.assert_close(inside, reference)
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key


# -- errors ------------------------------------------------------------------------------------------
def test_unknown_layer_raises_type_error_naming_it():
    model = nn.Sequential(nn.Conv3d(3, 2, 3, padding=1), nn.Tanh(), nn.Flatten(), nn.Linear(2 * 4 * 4 * 4, 3))
    with pytest.raises(TypeError, match="Tanh"):
        dtd(model, torch.rand(1, 3, 4, 4, 4), bounds=(0.0, 1.0))


def test_a_model_with_its_own_forward_is_walked_and_an_untraceable_one_is_named():
    class Wrapped(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Linear(4, 2)

        def forward(self, x):
            return self.body(x)

    relevance, _, _ = dtd(Wrapped().double(), torch.rand(3, 4, dtype=torch.float64), bounds=(0.0, 1.0))
    torch.testing.assert_close(relevance.sum(dim=1), torch.ones(3, dtype=torch.float64))

    class Branching(Wrapped):
        def forward(self, x):
            if x.sum() > 0:  # data-dependent control flow: torch.fx cannot trace it
                return self.body(x)
            return -self.body(x)

    with pytest.raises(TypeError, match="Branching cannot be traced .*control flow"):
        dtd(Branching(), torch.rand(1, 4), bounds=(0.0, 1.0))


def test_zb_without_bounds_or_normalize_raises():
    model = small_classifier()
    with pytest.raises(ValueError, match="bounds="):
        dtd(model.net, model.normalize(pixel_clips()))
    dtd(model.net, model.normalize(pixel_clips()), first_rule="zplus")  # z+ needs no bounds


def test_batchnorm_must_follow_a_convolution_and_models_with_two_inputs_are_named():
    model = nn.Sequential(nn.BatchNorm3d(3), nn.Conv3d(3, 2, 3, padding=1), nn.Flatten(), nn.Linear(2 * 64, 3))
    with pytest.raises(TypeError, match="folds BatchNorm3d into the Conv3d it follows"):
        dtd(model.eval(), torch.rand(1, 3, 4, 4, 4), bounds=(0.0, 1.0))

    class TwoInputs(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 2)

        def forward(self, x, y):
            return self.fc(x + y)

    with pytest.raises(TypeError, match="one input"):
        dtd(TwoInputs(), torch.rand(1, 4), bounds=(0.0, 1.0))


def test_layer_walk_of_classifier_and_nested_sequential():
    names = [name for name, _ in dtd_layers(small_classifier())]
    assert names[:3] == ["normalize", "net.conv1a", "net.relu1a"] and names[-1] == "net.fc8"
    nested = nn.Sequential(nn.Sequential(nn.Flatten(), nn.Linear(4, 3)), nn.ReLU(), nn.Linear(3, 2))
    assert [name for name, _ in dtd_layers(nested)] == ["0.0", "0.1", "1", "2"]


# -- residual networks, BatchNorm and global pooling -------------------------------------------------
def residual_classifier(arch: str, seed: int = 0) -> C3DClassifier:
    """A small R3D-18 / R(2+1)D-18 with non-trivial BatchNorm scales and zero biases (BN beta and running mean 0)."""
    torch.manual_seed(seed)
    model = C3DClassifier(num_classes=5, width=4, clip_shape=(8, 32, 32), arch=arch)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm3d):
                module.weight.uniform_(0.5, 1.5)
                module.running_var.uniform_(0.5, 2.0)
    return model.eval().double()


@pytest.mark.parametrize("arch", ["r3d_18", "r2plus1d_18"])
@pytest.mark.parametrize("start", ["one", "logit"])
def test_conservation_on_residual_networks_with_zero_biases(arch, start):
    model = residual_classifier(arch)
    clips = pixel_clips(batch=2, shape=(8, 32, 32))
    relevance, logits, target = dtd(model, clips, start=start)
    logit = logits.gather(1, target[:, None])[:, 0]
    expected = logit if start == "logit" else torch.ones_like(logit)
    torch.testing.assert_close(relevance.sum(dim=(1, 2, 3, 4)), expected, rtol=1e-3, atol=0)
    with torch.no_grad():
        torch.testing.assert_close(logits, model(clips.double()))  # BatchNorm in eval semantics
    assert (relevance >= 0).all()  # z+ and zB with a positive start


class TinyResidual(nn.Module):
    """conv-bn-relu, a residual block (conv-bn-relu-conv-bn plus the identity), relu, global mean, linear."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv3d(2, 3, 3, padding=1, bias=False)
        self.bn0 = nn.BatchNorm3d(3)
        self.relu0 = nn.ReLU()
        self.conv1 = nn.Conv3d(3, 3, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm3d(3)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv3d(3, 3, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm3d(3)
        self.relu2 = nn.ReLU()
        self.fc = nn.Linear(3, 4)

    def forward(self, x):
        x = self.relu0(self.bn0(self.stem(x)))
        out = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        x = self.relu2(out + x)
        return self.fc(x.mean(dim=(2, 3, 4)))


def folded(conv: nn.Conv3d, bn: nn.BatchNorm3d) -> tuple[np.ndarray, np.ndarray]:
    """The dense matrix (out, in) and bias of bn(conv(.)) on a (C, 2, 2, 2) input, by unit vectors."""
    n = conv.in_channels * 8
    basis = torch.eye(n, dtype=torch.float64).reshape(n, conv.in_channels, 2, 2, 2)
    with torch.no_grad():
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        w = torch.nn.functional.conv3d(basis, conv.weight, None, 1, 1) * scale.view(1, -1, 1, 1, 1)
        bias = (bn.bias - bn.running_mean * scale).view(-1, 1, 1, 1).expand(-1, 2, 2, 2).reshape(-1)
    return w.reshape(n, -1).T.numpy(), bias.numpy()


def reference_residual(model: TinyResidual, x: np.ndarray, low: float, high: float, target: int) -> np.ndarray:
    """The rules written out with loops on dense matrices: zB at the stem (folded BN), z+ in the block, the
    residual sum split by positive parts, the mean's z-rule, z+ at the head; relevance 1 at the target."""
    w0, b0 = folded(model.stem, model.bn0)
    w1, b1 = folded(model.conv1, model.bn1)
    w2, b2 = folded(model.conv2, model.bn2)
    wf = model.fc.weight.detach().numpy()
    xv = x.ravel()
    a0 = np.maximum(w0 @ xv + b0, 0)
    a1 = np.maximum(w1 @ a0 + b1, 0)
    z2 = w2 @ a1 + b2
    a2 = np.maximum(z2 + a0, 0)
    pooled = a2.reshape(3, 8).mean(axis=1)

    def zplus(w: np.ndarray, a: np.ndarray, r_out: np.ndarray) -> np.ndarray:
        r = np.zeros_like(a)
        for j in range(w.shape[0]):
            denominator = sum(a[i] * max(w[j, i], 0) for i in range(a.size)) + 1e-9
            for i in range(a.size):
                r[i] += a[i] * max(w[j, i], 0) / denominator * r_out[j]
        return r

    r_pooled = zplus(wf[target : target + 1], pooled, np.array([1.0]))  # the head
    r_a2 = np.zeros_like(a2)
    for c in range(3):  # the mean: each channel's relevance in proportion to its voxels
        block = a2[c * 8 : (c + 1) * 8]
        r_a2[c * 8 : (c + 1) * 8] = block / (block.sum() + 1e-9) * r_pooled[c]
    r_out, r_skip = np.zeros_like(a2), np.zeros_like(a2)  # the residual sum (relu passes relevance through)
    for i in range(a2.size):
        p, q = max(z2[i], 0), max(a0[i], 0)
        share = 0.5 if p + q <= 0 else p / (p + q)
        r_out[i], r_skip[i] = r_a2[i] * share, r_a2[i] * (1 - share)
    r_a1 = zplus(w2, a1, r_out)
    r_a0 = zplus(w1, a0, r_a1) + r_skip
    relevance = np.zeros_like(xv)  # zB at the stem
    for j in range(w0.shape[0]):
        terms = [xv[i] * w0[j, i] - low * max(w0[j, i], 0) - high * min(w0[j, i], 0) for i in range(xv.size)]
        total = sum(terms)
        total += 1e-9 if total >= 0 else -1e-9
        for i in range(xv.size):
            relevance[i] += terms[i] / total * r_a0[j]
    return relevance.reshape(x.shape)


def test_a_tiny_residual_network_equals_the_rules_written_out():
    torch.manual_seed(3)
    model = TinyResidual().double()
    with torch.no_grad():
        for bn in (model.bn0, model.bn1, model.bn2):
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.2, 0.2)
            bn.running_mean.uniform_(-0.3, 0.3)
            bn.running_var.uniform_(0.5, 2.0)
    model.eval()
    x = torch.rand(2, 2, 2, 2, 2, dtype=torch.float64)
    ours, logits, target = dtd(model, x, bounds=(0.0, 1.0))
    for b in range(2):
        expected = reference_residual(model, x[b].numpy(), 0.0, 1.0, int(target[b]))
        np.testing.assert_allclose(ours[b].numpy(), expected, rtol=1e-6, atol=1e-10)


@pytest.mark.parametrize("arch", ["r3d_18", "r2plus1d_18"])
def test_the_model_is_untouched_also_after_an_exception(arch):
    model = residual_classifier(arch).float().train()
    model.net.layer2.train(False)  # a mixed mode must come back as it was
    modes = [(name, m.training) for name, m in model.named_modules()]
    state = {k: v.clone() for k, v in model.state_dict().items()}
    hooks = sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in model.modules())
    clips = pixel_clips(batch=2, shape=(8, 32, 32))
    from lightning_selrel import explain

    explain(model, clips, "dtd")
    with pytest.raises(ValueError, match="target class indices"):
        explain(model, clips, "dtd", target=[0, 99])
    assert [(name, m.training) for name, m in model.named_modules()] == modes
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key  # BatchNorm statistics included: folding used temporaries
    after = sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in model.modules())
    assert after == hooks


# -- the walk and its rules ------------------------------------------------------------------------
def layer_by_layer(model: C3DClassifier, clips: torch.Tensor) -> torch.Tensor:
    """DTD on C3D as a plain loop over its layers, the way zennit's sequential DTD runs: forward keeping each layer's
    input, then backward from the predicted class with z+, zB at conv1a and winner-takes-all pooling."""
    from lightning_selrel.relevance.dtd import ops

    with torch.no_grad():
        x = model.normalize(clips.float())
        low, high = (model.normalize(torch.full((1, *clips.shape[1:]), v)) for v in (0.0, 255.0))
        low, high = torch.minimum(low, high), torch.maximum(low, high)
        inputs, a = [], x
        for layer in model.net:
            inputs.append(a)
            a = layer(a)
        target = a.argmax(1)
        r = torch.zeros_like(a).scatter_(1, target[:, None], 1.0)
        layers = list(model.net)
        for i in reversed(range(len(layers))):
            layer, a = layers[i], inputs[i]
            if isinstance(layer, (nn.Conv3d, nn.Linear)):
                if i == 0:
                    r = ops.zb(layer, a, low, high, r, 1e-9, layer.weight)
                else:
                    nonneg = isinstance(layers[i - 1], (nn.ReLU, nn.MaxPool3d, nn.Dropout, nn.Flatten))
                    r = ops.zplus(layer, a, nonneg, r, 1e-9, layer.weight)
            elif isinstance(layer, nn.MaxPool3d):
                _, indices = nn.functional.max_pool3d(
                    a, layer.kernel_size, layer.stride, layer.padding, layer.dilation, layer.ceil_mode, True
                )
                r = ops.maxpool(layer, (a, indices), r, "winner", 1e-9)
            elif isinstance(layer, nn.Flatten):
                r = r.reshape(a.shape)
    return r


def test_the_walk_equals_a_layer_by_layer_loop_on_c3d_bit_for_bit():
    """The graph walk performs exactly the operations of the sequential loop: the same bits (so zennit's on C3D)."""
    model = small_classifier(seed=4, clip_shape=(16, 32, 32), zero_bias=False)
    clips = pixel_clips(batch=3, shape=(16, 32, 32), seed=5)
    ours, _, _ = dtd(model, clips)
    assert torch.equal(ours, layer_by_layer(model, clips))


def test_the_composite_picks_one_rule_per_node():
    from lightning_selrel.relevance.dtd import dtd_graph
    from lightning_selrel.relevance.dtd import rules as R

    model = residual_classifier("r3d_18")
    graph = dtd_graph(model)
    rules = R.rules_for(graph, first_rule="zb", maxpool="winner", sum_rule="positive")
    chosen = dict(zip(graph.steps, rules, strict=True))
    by_kind: dict[str, set[type]] = {}
    for step, rule in chosen.items():
        by_kind.setdefault(step.kind, set()).add(type(rule))
    assert by_kind["batchnorm"] == {R.FoldedBatchNorm} and by_kind["add"] == {R.PositiveSplit}
    assert by_kind["weighted"] == {R.ZPlus} and by_kind["relu"] == {R.ReLU}
    first = [s for s in graph.steps if s.first_layer]
    assert len(first) == 1 and isinstance(chosen[first[0]].inner, R.ZB)  # the stem's conv + BN pair
    signed = R.rules_for(graph, first_rule="zplus", maxpool="proportional", sum_rule="signed")
    assert {type(r) for s, r in zip(graph.steps, signed, strict=True) if s.kind == "add"} == {R.SignedSplit}
    assert all(not isinstance(r, R.FoldedBatchNorm) or type(r.inner) is R.ZPlus for r in signed)


def test_the_signed_split_follows_the_signed_values_and_conserves():
    from lightning_selrel.relevance.dtd.rules import PositiveSplit, SignedSplit

    x, y = torch.tensor([3.0, 1.0, -1.0]), torch.tensor([-2.9, 1.0, -1.0])
    signed_x, signed_y = SignedSplit.shares(x, y, 1e-9)
    torch.testing.assert_close(signed_x[:2], torch.tensor([30.0, 0.5]), rtol=1e-4, atol=0)
    torch.testing.assert_close(signed_x + signed_y, torch.ones(3))
    positive_x, _ = PositiveSplit.shares(x, y, 1e-9)
    torch.testing.assert_close(positive_x, torch.tensor([1.0, 0.5, 0.5]))
    model = residual_classifier("r3d_18")
    clips = pixel_clips(batch=2, shape=(8, 32, 32))
    relevance, _, _ = dtd(model, clips, sum_rule="signed")
    positive, _, _ = dtd(model, clips)
    assert not torch.equal(relevance, positive) and (relevance < 0).any()  # shares of both signs reach the input
    # The sum itself conserves, but z+ below drops what reaches a neuron with z+ = 0 (a negative branch can now get
    # relevance): the map sums to 1 only approximately, unlike the positive split's.
    torch.testing.assert_close(relevance.sum(dim=(1, 2, 3, 4)), torch.ones(2, dtype=torch.float64), rtol=0.05, atol=0)
    with pytest.raises(ValueError, match="sum_rule must be"):
        dtd(model, clips, sum_rule="norm")
